"""Training: the YAML config, the `Trainer` loop, its metrics and progress, and checkpoints."""

from nima.training.checkpoint import (
    best_checkpoint,
    checkpoint_info,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    repair_best,
    repair_run_dir,
    save_checkpoint,
)
from nima.training.config import Config, ConfigError, load_config
from nima.training.trainer import FitResult, Trainer, TrainingError, load_run, prepare_data
