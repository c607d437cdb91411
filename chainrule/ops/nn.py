"""Fused operations for neural networks: one node where a decomposition would cost extra passes
over memory (a linear layer, softmax, log-softmax)."""

import numpy as np

from ..engine.dims import normalize_dim
from ..engine.op import Op, apply, vjp
from . import array_or_tensor as xp
from .build import as_tensor, call, promote_pair, to
from .linalg import matrix_product


def _linear(x, weight, bias):
    out = matrix_product(x, weight.T)
    if bias is not None:
        out += bias
    return out


def _linear_grad_weight(g, x, weight, bias, out):
    return g.reshape(-1, g.shape[-1]).mT @ x.reshape(-1, x.shape[-1])


def _linear_grad_bias(g, x, weight, bias, out):
    return g.sum(0) if g.ndim == 2 else g.reshape(-1, g.shape[-1]).sum(0)


LINEAR = Op(
    "linear",
    _linear,
    ("x", "weight", "bias"),
    {
        "x": vjp("g @ weight", lambda g, x, weight, bias, out: matrix_product(g, weight)),
        "weight": vjp("sum_to(g.mT @ x, weight.shape)", _linear_grad_weight),
        "bias": vjp("sum_to(g, bias.shape)", _linear_grad_bias),
    },
    formula="x @ weight.mT + bias",
)


def linear(input, weight, bias=None):  # noqa: A002 - PyTorch's argument names
    """x @ weight.T + bias, for weight of shape (out_features, in_features)."""
    x, weight = as_tensor(input), as_tensor(weight)
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {tuple(x.shape)} does not fit weight of shape "
            f"{tuple(weight.shape)} (the input's last dim must equal weight.shape[1])"
        )
    if x.dtype != weight.dtype:
        x, weight = promote_pair(x, weight)
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"linear: bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)"
            )
        if bias.dtype != weight.dtype:
            bias = to(bias, weight.dtype)
    # apply, not call: a missing bias stays None rather than becoming a tensor. A vector input
    # is a batch of one, so that the op (and its formulas) only ever see matrices and batches.
    if x.ndim == 1:
        return apply(LINEAR, (x.reshape(1, -1), weight, bias), {}).reshape(-1)
    return apply(LINEAR, (x, weight, bias), {})


# The forward is the softmax derivative code uses (cross-entropy's gradient), on arrays.
SOFTMAX = Op(
    "softmax",
    xp.softmax,
    params=("dim",),
    derivatives={
        "x": vjp(
            "out * (g - sum(g * out, dim, True))",
            lambda g, x, out, dim: out * (g - xp.sum(g * out, dim, True)),
        ),
    },
    formula="softmax(x)",
)


def _log_softmax(x, dim):
    shifted = x - np.max(x, axis=dim, keepdims=True)
    shifted -= np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))
    return shifted


LOG_SOFTMAX = Op(
    "log_softmax",
    _log_softmax,
    params=("dim",),
    derivatives={
        "x": vjp(
            "g - exp(out) * sum(g, dim, True)",
            lambda g, x, out, dim: g - xp.exp(out) * xp.sum(g, dim, True),
        ),
    },
    formula="log_softmax(x)",
)


def _dim(x, dim, name):
    if dim is None:
        raise TypeError(f"{name}: give dim= (the axis that sums to 1), as PyTorch requires")
    return normalize_dim(dim, x.ndim)


def softmax(input, dim=None):  # noqa: A002
    x = as_tensor(input)
    return call(SOFTMAX, (x,), dim=_dim(x, dim, "softmax"))


def log_softmax(input, dim=None):  # noqa: A002
    x = as_tensor(input)
    return call(LOG_SOFTMAX, (x,), dim=_dim(x, dim, "log_softmax"))


def _cross_entropy(x, index, scale):
    shifted = x - x.max(axis=1, keepdims=True)
    log_normalizer = np.log(np.exp(shifted).sum(axis=1))
    picked = shifted[np.arange(len(index)), index]
    return np.asarray((log_normalizer - picked).sum() * scale, dtype=x.dtype)


def _cross_entropy_grad(g, x, out, index, scale):
    if not isinstance(g, np.ndarray):  # create_graph: the same formula in differentiable ops
        return (xp.softmax(x, 1) - xp.onehot(index, x.shape[1], x.dtype)) * (g * scale)
    p = xp.softmax(x, 1)
    p[np.arange(len(index)), index] -= 1
    p *= g * scale
    return p


# Mean (or sum) over rows of -log softmax(x)[index], fused: one pass each way.
CROSS_ENTROPY = Op(
    "cross_entropy",
    _cross_entropy,
    params=("index", "scale"),
    derivatives={
        "x": vjp("(softmax(x, 1) - onehot(index, x.shape[1])) * g * scale", _cross_entropy_grad),
    },
    formula="cross_entropy(x)",
)


def cross_entropy_indices(logits, index, scale):
    """Softmax cross-entropy of (N, C) logits with N class indices, times `scale` (1/N for the
    mean): the training hot path, one node instead of log-softmax, gather and sum."""
    return call(CROSS_ENTROPY, (logits,), index=index, scale=scale)
