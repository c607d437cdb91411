"""`cr.backends`: PyTorch's backend switches, answered as on a CPU-only machine."""

from . import cudnn, mps

__all__ = ["cudnn", "mps"]
