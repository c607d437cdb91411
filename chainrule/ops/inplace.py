"""In-place operations, for optimizers and data preparation.

PyTorch's rules, with messages that say what to do: a leaf that requires grad may be changed in place
only under `no_grad`; a tensor in a graph is rebound to the result (its old value stays intact for the
nodes that saved it); and any change bumps the tensor's version, so a backward that would read a value
saved before the change refuses.
"""

import numpy as np

from ..engine.state import state
from ..engine.tensor import Tensor
from . import elementwise as ew


def _operand(value):
    return value.data if isinstance(value, Tensor) else value


def _inplace(name, x, compute, mutate, *operands):
    recording = state.enabled and (x.requires_grad or any(
        isinstance(v, Tensor) and v.requires_grad for v in operands))
    if recording:
        if x.grad_fn is None and x.requires_grad:
            raise RuntimeError(
                f"{name} on a leaf tensor that requires grad: an in-place change would be lost to "
                "autograd. Do it under `with cr.no_grad():` (as optimizers do) or on a copy"
            )
        result = compute()
        x._bump_version()
        x.data, x.grad_fn, x.requires_grad = result.data.astype(x.dtype, copy=False), result.grad_fn, True
        return x
    mutate()
    x._bump_version()
    return x


def add_(x, other, alpha=1):
    o = _operand(other)

    def mutate():
        np.add(x.data, o if alpha == 1 else np.multiply(o, alpha), out=x.data, casting="same_kind")

    return _inplace("add_", x, lambda: ew.add(x, other if alpha == 1 else ew.mul(other, alpha)), mutate, other)


def sub_(x, other, alpha=1):
    o = _operand(other)

    def mutate():
        np.subtract(x.data, o if alpha == 1 else np.multiply(o, alpha), out=x.data, casting="same_kind")

    return _inplace("sub_", x, lambda: ew.sub(x, other if alpha == 1 else ew.mul(other, alpha)), mutate, other)


def mul_(x, other):
    o = _operand(other)
    return _inplace("mul_", x, lambda: ew.mul(x, other),
                    lambda: np.multiply(x.data, o, out=x.data, casting="same_kind"), other)


def div_(x, other):
    o = _operand(other)
    return _inplace("div_", x, lambda: ew.div(x, other),
                    lambda: np.divide(x.data, o, out=x.data, casting="same_kind"), other)


def fill_(x, value):
    v = _operand(value)

    def compute():
        return ew.add(ew.mul(x, 0.0), value)

    return _inplace("fill_", x, compute, lambda: x.data.fill(v) if np.ndim(v) == 0 else x.data.__setitem__(..., v), value)


def zero_(x):
    return fill_(x, 0)


def copy_(x, src):
    src_data = _operand(src)
    if np.broadcast_shapes(np.shape(src_data), x.shape) != x.shape:
        raise ValueError(f"copy_: cannot copy shape {np.shape(src_data)} into shape {tuple(x.shape)}")

    def compute():
        from .shape import broadcast_to, to

        return to(broadcast_to(src, x.shape), x.dtype) + ew.mul(x, 0.0)

    def mutate():
        np.copyto(x.data, src_data, casting="unsafe")

    return _inplace("copy_", x, compute, mutate, src)


def clamp_(x, min=None, max=None):  # noqa: A002
    def mutate():
        np.clip(x.data, -np.inf if min is None else min, np.inf if max is None else max, out=x.data)

    return _inplace("clamp_", x, lambda: ew.clamp(x, min, max), mutate)
