"""Undoing broadcasting, the one place it happens: a gradient is summed back to its input's shape.

These two ops are the engine's own (each is the other's derivative); every other op lives in
`chainrule.ops`.
"""

import numpy as np

from .op import Op, apply, vjp
from .tensor import Tensor


def sum_to_array(g, shape):
    """Sum `g` over the axes that broadcasting added or stretched so it has `shape`."""
    if g.shape == shape:
        return g
    if not shape:
        return _add_reduce(g, None)
    lead = g.ndim - len(shape)
    if lead:
        g = _add_reduce(g, tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = _add_reduce(g, stretched, keepdims=True)
    return g


_add_reduce = np.add.reduce


def sum_to(g, shape):
    """`sum_to_array` for arrays and for Tensors (recorded, for higher-order gradients)."""
    if isinstance(g, Tensor):
        return g if g.shape == shape else apply(SUM_TO, (g,), {"shape": shape})
    return sum_to_array(g, shape)


def broadcast_to(x, shape):
    if isinstance(x, Tensor):
        return x if x.shape == shape else apply(BROADCAST_TO, (x,), {"shape": shape})
    return np.broadcast_to(x, shape)


# Sum over broadcast axes.
SUM_TO = Op(
    "sum_to",
    sum_to_array,
    derivatives={
        "x": vjp("broadcast_to(g, x.shape)", lambda g, x, out, shape: broadcast_to(g, x.shape))
    },
    params=("shape",),
    formula="sum_to(x)",
)

BROADCAST_TO = Op(
    "broadcast_to",
    np.broadcast_to,
    derivatives={"x": vjp("sum_to(g, x.shape)", lambda g, x, out, shape: sum_to(g, x.shape))},
    params=("shape",),
    formula="broadcast_to(x)",
)
