"""Optimizers, learning-rate schedules, gradient clipping and loss scaling."""

from nima.optim.adam import Adam, AdamW, param_groups_for_decay
from nima.optim.amp import GradScaler
from nima.optim.clip import clip_grad_norm_
from nima.optim.optimizer import Optimizer
from nima.optim.schedule import Constant, Linear, LRScheduler, Noam, WarmupCosine
from nima.optim.sgd import SGD
