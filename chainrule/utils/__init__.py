"""`cr.utils`: PyTorch's `torch.utils` paths; `cr.utils.data` is `cr.data`."""

from . import data

__all__ = ["data"]
