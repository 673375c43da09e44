"""`GenerationConfig`: the one validated type of decoding settings — each field's range, the
rules between fields, Hugging Face's choice of strategy, and `updated`."""

from __future__ import annotations

import dataclasses

import pytest

from nima.generation import GenerationConfig
from nima.settings import SettingsError


@pytest.mark.parametrize(("fields", "strategy"), [
    (dict(), "greedy"), (dict(do_sample=True), "sample"), (dict(num_beams=3), "beam"),
    (dict(target_entropy=2.0), "entropy"), (dict(target_entropy=2.0, num_beams=2), "beam"),
    (dict(strategy="sample", target_entropy=1.0), "sample"),
])
def test_the_strategy_is_chosen_as_hugging_face_chooses(fields: dict, strategy: str) -> None:
    assert GenerationConfig(**fields).resolved_strategy == strategy


@pytest.mark.parametrize(("fields", "message"), [
    (dict(max_new_tokens=-1), "GenerationConfig.max_new_tokens: must be >= 0, got -1"),
    (dict(max_new_tokens=2.0), "GenerationConfig.max_new_tokens: expected int, got float 2.0"),
    (dict(temperature=-0.5), "GenerationConfig.temperature: must be > 0, got -0.5"),
    (dict(temperature=float("nan")), "GenerationConfig.temperature: must be a finite number"),
    (dict(top_p=0.0), "GenerationConfig.top_p: must be > 0, got 0.0"),
    (dict(top_k="40"), "GenerationConfig.top_k: expected int, got str '40'"),
    (dict(num_beams=0), "GenerationConfig.num_beams: must be >= 1, got 0"),
    (dict(eos_token_id=-1), "GenerationConfig.eos_token_id: must be >= 0, got -1"),
    (dict(do_sample="yes"), "GenerationConfig.do_sample: expected bool, got str 'yes'"),
    (dict(stop_strings=("",)), "GenerationConfig.stop_strings: must be non-empty strings"),
    (dict(stop_strings=(3,)), r"GenerationConfig.stop_strings\[0\]: expected str, got int 3"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences: at most num_beams=2"),
    (dict(strategy="greedy", num_beams=2), "GenerationConfig.num_beams: 2 beams need"),
    (dict(min_temp=2.0, max_temp=1.0), "GenerationConfig.min_temp: must be <= max_temp"),
    (dict(num_beams=2, stop_strings=("x",)), "stop_strings: not supported with beam search"),
])
def test_every_bad_value_is_named_with_its_value(fields: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        GenerationConfig(**fields)


def test_updated_checks_and_suggests() -> None:
    config = GenerationConfig(do_sample=True, top_k=40)
    assert config.updated(top_k=None, temperature=0.5) == GenerationConfig(do_sample=True,
                                                                            temperature=0.5)
    assert config.updated(stop_strings="\n\n").stop_strings == ("\n\n",)
    assert config.updated(stop_strings=["a", "b"]).stop_strings == ("a", "b")
    with pytest.raises(SettingsError, match=r"GenerationConfig\.temprature: unknown key; did "
                                            r"you mean 'temperature'"):
        config.updated(temprature=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.top_k = 3  # a value, not a bag of settings to mutate


def test_pad_id_falls_back_to_eos_then_zero() -> None:
    assert GenerationConfig().pad_id == 0
    assert GenerationConfig(eos_token_id=7).pad_id == 7
    assert GenerationConfig(eos_token_id=7, pad_token_id=2).pad_id == 2
