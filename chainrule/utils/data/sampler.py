"""`chainrule.utils.data.sampler`, as `torch.utils.data.sampler`."""

from ...data.samplers import *  # noqa: F403
from ...data.samplers import __all__  # noqa: F401
