"""Training: checkpoints (and the pieces of the training loop)."""

from nima.training.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from nima.training.config import Config, ConfigError, load_config
