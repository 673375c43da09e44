"""Training: the YAML config, the `Trainer` loop, its metrics and progress, and checkpoints."""

from nima.training.checkpoint import (
    checkpoint_info,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from nima.training.config import Config, ConfigError, load_config
from nima.training.trainer import FitResult, Trainer, TrainingError, load_run, prepare_data
