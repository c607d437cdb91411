"""`chainrule.utils.data`: the module path of `torch.utils.data`, for `chainrule.data`."""

from ...data import *  # noqa: F403 - the same names, under PyTorch's path
from ...data import __all__  # noqa: F401
from . import dataloader, dataset, distributed, sampler  # noqa: F401
