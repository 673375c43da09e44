r"""Exercises of the Configuration reference (docs/configuration.md)."""

from pathlib import Path

from exercises import equal
from nima.settings import SettingsError
from nima.training import load_config

BABY_GPT = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_char.yaml"


def bigger_run() -> list[str]:
    r"""Overrides for a bigger run.

    Return the `--set` overrides (strings `"section.key=value"`) that turn
    `configs/shakespeare_char.yaml` into nanoGPT's GPU Shakespeare model: 6 layers, 6 heads,
    384 wide, a context of 256, dropout 0.2, batch 64, 5000 iterations with the cosine decay
    lasting all 5000, and a learning rate that ends at a tenth of its start, which stays
    $10^{-3}$. Keys are listed on this page.
    """
    raise NotImplementedError


def check_bigger_run(bigger_run) -> None:
    """Loads the shipped config with your overrides (so every key and value is validated) and
    compares the fields."""
    try:
        config = load_config(BABY_GPT, list(bigger_run()))
    except SettingsError as error:
        raise AssertionError(f"load_config refused an override: {error}") from None
    expected = {"model.n_layer": 6, "model.n_head": 6, "model.n_embd": 384,
                "model.block_size": 256, "model.dropout": 0.2, "training.batch_size": 64,
                "training.max_iters": 5000, "schedule.total": 5000, "optimizer.lr": 1e-3,
                "schedule.min_lr": 1e-4}
    for key, value in expected.items():
        section, field = key.split(".")
        equal(getattr(getattr(config, section), field), value, key)


def first_error() -> str:
    r"""Predict the message.

    `load_config("configs/shakespeare_char.yaml", ["model.n_head=3"])`: which full error message
    does it raise? Work it out from the rules on this page, then return it as a string.
    """
    raise NotImplementedError


def check_first_error(first_error) -> None:
    """Runs the call and compares with the `SettingsError`'s message."""
    try:
        load_config(BABY_GPT, ["model.n_head=3"])
    except SettingsError as error:
        equal(str(first_error()).strip(), str(error), "the message")
    else:
        raise AssertionError("load_config accepted n_head=3; the exercise is out of date")
