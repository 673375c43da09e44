"""Solutions of exercises/configuration.py."""


def bigger_run():
    return ["model.n_layer=6", "model.n_head=6", "model.n_embd=384", "model.block_size=256",
            "model.dropout=0.2", "training.batch_size=64", "training.max_iters=5000",
            "schedule.total=5000", "schedule.min_lr=1e-4"]  # lr stays at the file's 1e-3


def _bigger_run_without_schedule():
    """Trains 5000 steps but leaves the schedule at 2000: the rate sits at min_lr for 3000."""
    return [o for o in bigger_run() if not o.startswith("schedule.total")]


def first_error():
    # n_embd = 128 is not divisible by 3 heads; the message names the field that holds the value
    return "model.n_embd: must be divisible by n_head=3, got 128"


WRONG = {
    "bigger_run": [_bigger_run_without_schedule,
                   lambda: [o.replace("n_layer", "n_layers") for o in bigger_run()]],
    "first_error": [lambda: "model.n_head: must divide n_embd=128, got 3"],
}
