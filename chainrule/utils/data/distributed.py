"""`torch.utils.data.distributed`'s path, for `chainrule.data.DistributedSampler`."""

from ...data.samplers import DistributedSampler

__all__ = ["DistributedSampler"]
