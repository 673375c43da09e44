"""`import nima.nn.functional as F`: the same functions as `nima.functional`, under the path
PyTorch users reach for."""

from nima.functional import *  # noqa: F403
from nima.functional import __all__  # noqa: F401
