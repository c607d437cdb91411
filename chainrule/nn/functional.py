"""`chainrule.nn.functional` (F): layer functions and losses. Losses are built from stable pieces
(log-softmax, log1p(exp) without overflow), so large logits give finite, exact values."""

import numpy as np

from ..engine.tensor import Tensor
from ..ops import (
    abs as _abs,
    as_tensor,
    gather,
    gelu,
    linear,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
    where,
)

__all__ = [
    "binary_cross_entropy_with_logits", "cross_entropy", "gelu", "l1_loss", "linear",
    "log_softmax", "mse_loss", "nll_loss", "relu", "sigmoid", "softmax", "softplus", "tanh",
]


def _reduce(loss, reduction, name):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def _same_shape(name, input, target):  # noqa: A002
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: input has shape {tuple(input.shape)} but target has shape {tuple(target.shape)}; "
            "they must match (reshape one of them)"
        )


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    input, target = as_tensor(input), as_tensor(target)
    _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean"):  # noqa: A002
    input, target = as_tensor(input), as_tensor(target)
    _same_shape("l1_loss", input, target)
    return _reduce(_abs(input - target), reduction, "l1_loss")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):  # noqa: A002
    """Negative log-likelihood of class indices, given log-probabilities (N, C, ...)."""
    logp = as_tensor(input)
    index = np.asarray(target.data if isinstance(target, Tensor) else target)
    return _nll(logp, index, weight, ignore_index, reduction, 0.0)


def _nll(logp, index, weight, ignore_index, reduction, label_smoothing):
    classes = logp.shape[1] if logp.ndim > 1 else logp.shape[0]
    if index.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: class-index targets must be integers, got {index.dtype}")
    batch_shape = (logp.shape[0],) + logp.shape[2:] if logp.ndim > 1 else ()
    if index.shape != batch_shape:
        raise ValueError(
            f"cross_entropy: input of shape {tuple(logp.shape)} needs targets of shape {batch_shape}, "
            f"got {tuple(index.shape)}"
        )
    valid = index != ignore_index
    safe = np.where(valid, index, 0)
    if ((safe < 0) | (safe >= classes)).any():
        bad = int(safe[(safe < 0) | (safe >= classes)][0])
        raise IndexError(f"cross_entropy: target class {bad} is out of range for {classes} classes")
    class_dim = 1 if logp.ndim > 1 else 0
    picked = gather(logp, class_dim, np.expand_dims(safe, class_dim)).squeeze(class_dim)
    w = np.ones(classes, dtype=logp.dtype) if weight is None else np.asarray(
        weight.data if isinstance(weight, Tensor) else weight, dtype=logp.dtype)
    sample_w = np.where(valid, w[safe], 0).astype(logp.dtype)
    loss = -picked * sample_w
    if label_smoothing:
        shape = [1] * logp.ndim
        shape[class_dim] = classes
        smooth = -(logp * w.reshape(shape)).sum(class_dim) * np.where(valid, 1.0, 0.0).astype(logp.dtype)
        loss = loss * (1 - label_smoothing) + smooth * (label_smoothing / classes)
    if reduction == "mean":
        return loss.sum() / sample_w.sum()
    return _reduce(loss, reduction, "cross_entropy")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",  # noqa: A002
                  label_smoothing=0.0):
    """Softmax cross-entropy of logits (N, C, ...) with class indices (N, ...) or class
    probabilities (same shape as input), as in PyTorch."""
    logits = as_tensor(input)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    class_dim = 1 if logits.ndim > 1 else 0
    logp = log_softmax(logits, class_dim)
    target_data = target.data if isinstance(target, Tensor) else np.asarray(target)
    if target_data.dtype.kind == "f":
        target = as_tensor(target)
        _same_shape("cross_entropy", logits, target)
        classes = logits.shape[class_dim]
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        if weight is not None:
            shape = [1] * logits.ndim
            shape[class_dim] = classes
            target = target * as_tensor(weight).reshape(shape)
        loss = -(logp * target).sum(class_dim)
        if reduction == "mean":
            return loss.sum() / (loss.data.size if loss.ndim else 1)
        return _reduce(loss, reduction, "cross_entropy")
    return _nll(logp, target_data, weight, ignore_index, reduction, label_smoothing)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",  # noqa: A002
                                     pos_weight=None):
    """-[p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed as (1 - y) x +
    (1 + (p - 1) y) log(1 + exp(-x)), which never overflows."""
    x, y = as_tensor(input), as_tensor(target)
    _same_shape("binary_cross_entropy_with_logits", x, y)
    log1p_exp_neg = softplus(-x, threshold=np.inf)
    if pos_weight is None:
        loss = (1 - y) * x + log1p_exp_neg
    else:
        loss = (1 - y) * x + (1 + (as_tensor(pos_weight) - 1) * y) * log1p_exp_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")

