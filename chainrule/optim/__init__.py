"""`chainrule.optim`: optimizers and learning-rate schedules whose updates are PyTorch's, so
trajectories can be compared step by step."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
