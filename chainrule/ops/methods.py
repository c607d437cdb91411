"""Attach operators and methods to Tensor, so `a * b` and `x.sum()` call the ops declared here.
The engine defines Tensor without knowing any op; this is the one place they meet."""

import math

import numpy as np

from ..engine import autograd, dtypes
from ..engine.device import CPU, check_device, is_device, no_gpu_message
from ..engine.tensor import Tensor
from . import creation, indexing, inplace, linalg, nn, shape
from . import elementwise as ew
from . import reduction as red


def _reflected(fn):
    return lambda self, other: fn(other, self)


# ---- device and dtype conversion, as in PyTorch on a CPU-only machine ----------------------------
_TYPE_NAMES = {
    "torch.FloatTensor": dtypes.float32,
    "torch.DoubleTensor": dtypes.float64,
    "torch.LongTensor": dtypes.int64,
    "torch.IntTensor": dtypes.int32,
    "torch.BoolTensor": dtypes.bool_,
}
_NAMES_OF_TYPES = {v: k for k, v in _TYPE_NAMES.items()}


def _to(self, *args, dtype=None, device=None, copy=False, non_blocking=False, memory_format=None):
    """`to(dtype)`, `to(device)`, `to(device, dtype)`, `to(other)`: the same tensor when nothing
    changes (unless copy=True), as in PyTorch; a device other than the CPU is refused."""
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif is_device(arg):
            device = arg
        else:
            dtype = arg
    check_device("to", device)
    out = self if dtype is None else shape.to(self, dtype)
    return shape.clone(out) if copy and out is self else out


def _type(self, dtype=None, non_blocking=False):
    """With no dtype, PyTorch's type name ('torch.FloatTensor'); else `to(dtype)`, also given
    as such a name."""
    if dtype is None:
        return _NAMES_OF_TYPES[self.dtype]
    if isinstance(dtype, str) and dtype.startswith("torch."):
        if dtype not in _TYPE_NAMES:
            raise TypeError(f"type(): unknown type {dtype!r}; known: {', '.join(_TYPE_NAMES)}")
        dtype = _TYPE_NAMES[dtype]
    return shape.to(self, dtype)


def _cpu(self, memory_format=None):
    return self


def _cuda(self, device=None, non_blocking=False, memory_format=None):
    raise RuntimeError(no_gpu_message("Tensor.cuda()"))


def _format(self, spec):
    # As PyTorch: a 0-d tensor formats as its number (f"{loss:.4f}"), others only without a spec.
    if self.ndim == 0:
        return format(self.item(), spec)
    return object.__format__(self, spec)


# PyTorch ops chainrule does not have yet, each with what to use meanwhile: a program meets one
# line of explanation (from `Tensor.x` here, from `cr.x` in chainrule/__init__).
NOT_YET = {
    "repeat": "not in chainrule yet: x.expand(...) then .reshape(...) for whole-tensor copies",
    "index_select": "not in chainrule yet: x[index] along dim 0, or cr.gather",
    "masked_select": "not in chainrule yet: x[mask] (boolean indexing)",
    "nonzero": "not in chainrule yet: numpy.nonzero(x.numpy())",
    "unique": "not in chainrule yet: numpy.unique(x.numpy())",
    "scatter_": "not in chainrule yet: x[index] = values, or cr.where with a one-hot mask",
}


def _missing_attribute(self, name):
    hint = NOT_YET.get(name)
    if hint is None:
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
    raise AttributeError(f"chainrule's Tensor has no {name!r} (PyTorch's Tensor.{name}): {hint}")


TORCH_SURFACE = {
    "nelement": lambda self: self.numel(),
    # log(x) / log(base): within an ulp of PyTorch's log10/log2, until they are ops of their own.
    "log10": lambda self: ew.log(self) / math.log(10),
    "log2": lambda self: ew.log(self) / math.log(2),
    "to": _to,
    "type": _type,
    "cpu": _cpu,
    "cuda": _cuda,
    "get_device": lambda self: -1,  # PyTorch's answer for a CPU tensor
    "__format__": _format,
    "__getattr__": _missing_attribute,
    "half": lambda self: shape.to(self, np.float16),  # refused by as_dtype, naming float32
    "bfloat16": lambda self: shape.to(self, dtypes.bfloat16),
    "type_as": lambda self, other: shape.to(self, other.dtype),
    "float": lambda self: shape.to(self, dtypes.float32),
    "double": lambda self: shape.to(self, dtypes.float64),
    "long": lambda self: shape.to(self, dtypes.int64),
    "int": lambda self: shape.to(self, dtypes.int32),
    "bool": lambda self: shape.to(self, dtypes.bool_),
}
CONVERSION_PROPERTIES = {
    "device": lambda self: CPU,
    "is_cuda": lambda self: False,
    "is_cpu": lambda self: True,
}


def _setitem(self, index, value):
    indexing.setitem(self, index, value)


def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d self / d leaf into every leaf's `.grad` (see engine.autograd)."""
    autograd.backward(self, gradient, retain_graph, create_graph, inputs)


METHODS = {
    "backward": backward,
    # operators
    "__add__": ew.add,
    "__radd__": _reflected(ew.add),
    "__sub__": ew.sub,
    "__rsub__": _reflected(ew.sub),
    "__mul__": ew.mul,
    "__rmul__": _reflected(ew.mul),
    "__truediv__": ew.div,
    "__rtruediv__": _reflected(ew.div),
    "__pow__": ew.pow,
    "__rpow__": _reflected(ew.pow),
    "__matmul__": linalg.matmul,
    "__rmatmul__": _reflected(linalg.matmul),
    "__neg__": ew.neg,
    "__abs__": ew.abs,
    "__pos__": lambda self: self,
    "__eq__": ew.eq,
    "__ne__": ew.ne,
    "__lt__": ew.lt,
    "__le__": ew.le,
    "__gt__": ew.gt,
    "__ge__": ew.ge,
    "__and__": ew.logical_and,
    "__or__": ew.logical_or,
    "__invert__": ew.logical_not,
    "__getitem__": indexing.getitem,
    "__setitem__": _setitem,
    "__iadd__": inplace.add_,
    "__isub__": inplace.sub_,
    "__imul__": inplace.mul_,
    "__itruediv__": inplace.div_,
    # arithmetic and elementwise functions
    "add": lambda self, other, alpha=1: ew.add(self, other if alpha == 1 else ew.mul(other, alpha)),
    "sub": lambda self, other, alpha=1: ew.sub(self, other if alpha == 1 else ew.mul(other, alpha)),
    "mul": ew.mul,
    "div": ew.div,
    "pow": ew.pow,
    "neg": ew.neg,
    "exp": ew.exp,
    "log": ew.log,
    "log1p": ew.log1p,
    "sqrt": ew.sqrt,
    "abs": ew.abs,
    "sin": ew.sin,
    "cos": ew.cos,
    "tanh": ew.tanh,
    "sigmoid": ew.sigmoid,
    "relu": ew.relu,
    "clamp": ew.clamp,
    "clip": ew.clamp,
    "maximum": ew.maximum,
    "minimum": ew.minimum,
    "sign": ew.sign,
    "erf": ew.erf,
    "where": lambda self, condition, other: ew.where(condition, self, other),
    "masked_fill": ew.masked_fill,
    "eq": ew.eq,
    "ne": ew.ne,
    "lt": ew.lt,
    "le": ew.le,
    "gt": ew.gt,
    "ge": ew.ge,
    "isnan": ew.isnan,
    "isfinite": ew.isfinite,
    "logical_not": ew.logical_not,
    # reductions
    "sum": red.sum,
    "mean": red.mean,
    "var": red.var,
    "std": red.std,
    "amax": red.amax,
    "amin": red.amin,
    "prod": red.prod,
    "logsumexp": red.logsumexp,
    "norm": red.norm,
    "max": red.max,
    "min": red.min,
    "argmax": red.argmax,
    "argmin": red.argmin,
    "gather": red.gather,
    "cumsum": red.cumsum,
    "sort": red.sort,
    "argsort": red.argsort,
    "topk": red.topk,
    # shape
    "reshape": shape.reshape,
    "view": shape.view,
    "transpose": shape.transpose,
    "swapaxes": shape.transpose,
    "permute": shape.permute,
    "expand": shape.expand,
    "broadcast_to": shape.broadcast_to,
    "squeeze": shape.squeeze,
    "unsqueeze": shape.unsqueeze,
    "flatten": shape.flatten,
    "split": shape.split,
    "chunk": shape.chunk,
    "narrow": shape.narrow,
    "t": shape.t,
    "tril": shape.tril,
    "triu": shape.triu,
    "roll": shape.roll,
    "flip": shape.flip,
    "clone": shape.clone,
    "contiguous": lambda self: self,
    "expand_as": lambda self, other: shape.expand(self, other.shape),
    "view_as": lambda self, other: shape.reshape(self, other.shape),
    "reshape_as": lambda self, other: shape.reshape(self, other.shape),
    # linear algebra and nn
    "matmul": linalg.matmul,
    "mm": linalg.matmul,
    "dot": linalg.dot,
    "softmax": lambda self, dim: nn.softmax(self, dim),
    "log_softmax": lambda self, dim: nn.log_softmax(self, dim),
    # dtype and device
    **TORCH_SURFACE,
    # in place
    "add_": inplace.add_,
    "sub_": inplace.sub_,
    "mul_": inplace.mul_,
    "div_": inplace.div_,
    "zero_": inplace.zero_,
    "fill_": inplace.fill_,
    "copy_": inplace.copy_,
    "clamp_": inplace.clamp_,
    "masked_fill_": inplace.masked_fill_,
    "multinomial": creation.multinomial,
    "new_zeros": lambda self, *size: creation.zeros(*size, dtype=self.dtype),
    "new_ones": lambda self, *size: creation.ones(*size, dtype=self.dtype),
}

PROPERTIES = {"T": shape.T, "mT": shape.mT, **CONVERSION_PROPERTIES}


def install():
    for name, fn in METHODS.items():
        setattr(Tensor, name, fn)
    for name, fn in PROPERTIES.items():
        setattr(Tensor, name, property(fn))
