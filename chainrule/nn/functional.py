"""`chainrule.nn.functional` (F): layer functions and losses. Losses are built from stable pieces
(log-softmax, log1p(exp) without overflow), so large logits give finite, exact values."""

import numpy as np

from ..engine.function import Function
from ..engine.tensor import Tensor
from ..ops import (
    abs as _abs,
)
from ..ops import (
    as_tensor,
    clamp,
    exp,
    gather,
    gelu,
    linear,
    log,
    log_softmax,
    matmul,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
    where,
)
from ..ops import conv as _conv
from ..ops.build import promote_pair
from ..ops.creation import default_generator
from ..ops.nn import cross_entropy_indices
from ..ops.shape import to

__all__ = [
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "gelu",
    "l1_loss",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "relu",
    "scaled_dot_product_attention",
    "sigmoid",
    "softmax",
    "softplus",
    "tanh",
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
            f"{name}: input has shape {tuple(input.shape)} but target has shape "
            f"{tuple(target.shape)}; they must match (reshape one of them)"
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
    index = np.asarray(target._data if isinstance(target, Tensor) else target)
    return _nll(logp, index, weight, ignore_index, reduction, 0.0)


def _nll(logp, index, weight, ignore_index, reduction, label_smoothing):
    classes = logp.shape[1] if logp.ndim > 1 else logp.shape[0]
    if index.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: class-index targets must be integers, got {index.dtype}")
    batch_shape = (logp.shape[0],) + logp.shape[2:] if logp.ndim > 1 else ()
    if index.shape != batch_shape:
        raise ValueError(
            f"cross_entropy: input of shape {tuple(logp.shape)} needs targets of shape "
            f"{batch_shape}, got {tuple(index.shape)}"
        )
    valid = index != ignore_index
    safe = np.where(valid, index, 0)
    if ((safe < 0) | (safe >= classes)).any():
        bad = int(safe[(safe < 0) | (safe >= classes)][0])
        raise IndexError(f"cross_entropy: target class {bad} is out of range for {classes} classes")
    class_dim = 1 if logp.ndim > 1 else 0
    picked = gather(logp, class_dim, np.expand_dims(safe, class_dim)).squeeze(class_dim)
    w = (
        np.ones(classes, dtype=logp.dtype)
        if weight is None
        else np.asarray(weight._data if isinstance(weight, Tensor) else weight, dtype=logp.dtype)
    )
    sample_w = np.where(valid, w[safe], 0).astype(logp.dtype)
    loss = -picked * sample_w
    if label_smoothing:
        shape = [1] * logp.ndim
        shape[class_dim] = classes
        smooth = -(logp * w.reshape(shape)).sum(class_dim) * np.where(valid, 1.0, 0.0).astype(
            logp.dtype
        )
        loss = loss * (1 - label_smoothing) + smooth * (label_smoothing / classes)
    if reduction == "mean":
        return loss.sum() / sample_w.sum()
    return _reduce(loss, reduction, "cross_entropy")


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",  # noqa: A002
    label_smoothing=0.0,
):
    """Softmax cross-entropy of logits (N, C, ...) with class indices (N, ...) or class
    probabilities (same shape as input), as in PyTorch."""
    logits = as_tensor(input)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    class_dim = 1 if logits.ndim > 1 else 0
    target_data = target._data if isinstance(target, Tensor) else np.asarray(target)
    if (
        logits.ndim == 2
        and target_data.dtype.kind in "iu"
        and weight is None
        and not label_smoothing
        and reduction in ("mean", "sum")
        and target_data.shape == logits.shape[:1]
        and target_data.size
        and target_data.min() >= 0
        and target_data.max() < logits.shape[1]
        and (ignore_index < 0 or ignore_index >= logits.shape[1] or ignore_index not in target_data)
    ):
        scale = 1.0 / target_data.shape[0] if reduction == "mean" else 1.0
        return cross_entropy_indices(logits, target_data, scale)
    logp = log_softmax(logits, class_dim)
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
            return loss.sum() / (loss._data.size if loss.ndim else 1)
        return _reduce(loss, reduction, "cross_entropy")
    return _nll(logp, target_data, weight, ignore_index, reduction, label_smoothing)


def binary_cross_entropy_with_logits(
    input,
    target,
    weight=None,
    reduction="mean",  # noqa: A002
    pos_weight=None,
):
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


# PyTorch's floor for x (1 - x) in the gradient: 1e-12 as a float32, widened.
_BCE_EPSILON = float(np.float32(1e-12))


class _BinaryCrossEntropy(Function):
    """Elementwise -[y max(log x, -100) + (1 - y) max(log(1 - x), -100)] with PyTorch's
    gradients: (x - y) / max(x (1 - x), 1e-12) for x, log(1 - x) - log(x) for y; both written
    in ops, so they are differentiable again."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        with np.errstate(divide="ignore"):
            log_x = np.maximum(np.log(x._data), -100)
            log_1mx = np.maximum(np.log1p(-x._data), -100)
        return Tensor._wrap(-(y._data * log_x + (1 - y._data) * log_1mx))

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        grad_x = g * (x - y) / clamp(x * (1 - x), min=_BCE_EPSILON)
        grad_y = None
        if y.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_y = g * (log(1 - x) - log(x))
        return grad_x, grad_y


def binary_cross_entropy(input, target, weight=None, reduction="mean"):  # noqa: A002
    """-[y log x + (1 - y) log(1 - x)] of probabilities x, each log clamped at -100 as in
    PyTorch, so that x of exactly 0 or 1 gives a finite loss; the gradient is PyTorch's."""
    x, y = as_tensor(input), as_tensor(target)
    _same_shape("binary_cross_entropy", x, y)
    values = x._data
    if values.size and ((values < 0) | (values > 1)).any():
        raise ValueError(
            "binary_cross_entropy: all elements of input should be between 0 and 1 (got "
            f"{values.min():.4g} to {values.max():.4g}); for logits use "
            "binary_cross_entropy_with_logits"
        )
    if y.dtype != x.dtype:
        y = y.to(x.dtype)
    loss = _BinaryCrossEntropy.apply(x, y)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def _piecewise_quadratic(name, input, target, reduction, width, scale_linear):  # noqa: A002
    x, y = as_tensor(input), as_tensor(target)
    _same_shape(name, x, y)
    diff = x - y
    size = _abs(diff)
    if width == 0:
        return _reduce(size, reduction, name)
    quadratic = 0.5 * diff * diff
    if scale_linear:  # Huber: delta (|d| - delta / 2) beyond delta
        loss = where(size < width, quadratic, width * (size - 0.5 * width))
    else:  # smooth L1: the Huber loss divided by beta
        loss = where(size < width, quadratic / width, size - 0.5 * width)
    return _reduce(loss, reduction, name)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):  # noqa: A002
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (the L1 loss when beta is 0)."""
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    return _piecewise_quadratic("smooth_l1_loss", input, target, reduction, beta, False)


def huber_loss(input, target, reduction="mean", delta=1.0):  # noqa: A002
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2)."""
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    return _piecewise_quadratic("huber_loss", input, target, reduction, delta, True)


def silu(input, inplace=False):  # noqa: A002
    x = as_tensor(input)
    return x * sigmoid(x)


def leaky_relu(input, negative_slope=0.01, inplace=False):  # noqa: A002
    x = as_tensor(input)
    return where(x > 0, x, x * negative_slope)


def elu(input, alpha=1.0, inplace=False):  # noqa: A002
    x = as_tensor(input)
    # exp of the clamped input: the branch where() drops must not overflow into the gradient.
    return where(x > 0, x, alpha * (exp(clamp(x, max=0)) - 1))


__all__ += ["binary_cross_entropy", "elu", "huber_loss", "leaky_relu", "silu", "smooth_l1_loss"]


# ---- layer functions (the training toolkit) -----------------------------------------------------

__all__ += ["conv2d", "dropout", "embedding", "layer_norm", "max_pool2d"]


def _pair(value, name, what):
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    raise TypeError(f"{name}: {what} must be an int or a pair of ints, got {value!r}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D cross-correlation of input (N, C, H, W) or (C, H, W) with weight (O, C/groups, KH, KW),
    as torch.nn.functional.conv2d; padding is an int, a pair, 'valid' or 'same'."""
    x, weight = as_tensor(input), as_tensor(weight)
    stride, dilation = _pair(stride, "conv2d", "stride"), _pair(dilation, "conv2d", "dilation")
    trim = (0, 0)  # 'same' with an even total padding: rows/columns to drop at the start
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if stride != (1, 1):
            raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride}")
        if weight.ndim == 4:
            # PyTorch pads total // 2 before and the rest after; pad the larger half on both
            # sides and drop the extra leading row or column of the output.
            totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
            padding = tuple((t + 1) // 2 for t in totals)
            trim = tuple(t % 2 for t in totals)
    elif isinstance(padding, str):
        raise ValueError(
            f"conv2d: padding must be an int, a pair of ints, 'valid' or 'same', not {padding!r}"
        )
    padding = _pair(padding, "conv2d", "padding")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"conv2d: stride and dilation must be >= 1 and padding >= 0, got "
            f"stride={stride}, dilation={dilation}, padding={padding}"
        )
    if weight.ndim != 4:
        raise ValueError(
            f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), "
            f"got shape {tuple(weight.shape)}"
        )
    unbatched = x.ndim == 3
    if x.ndim not in (3, 4):
        raise ValueError(
            f"conv2d: expected input of shape (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}"
        )
    if unbatched:
        x = x.unsqueeze(0)
    out_channels, cg, kh, kw = weight.shape
    if groups < 1 or x.shape[1] % groups or out_channels % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide both the input channels "
            f"({x.shape[1]}) and the output channels ({out_channels})"
        )
    if x.shape[1] != cg * groups:
        raise ValueError(
            f"conv2d: weight of shape {tuple(weight.shape)} with groups={groups} expects input "
            f"with "
            f"{cg * groups} channels, got input of shape {tuple(x.shape)}"
        )
    for size, pad, dil, k, axis in (
        (x.shape[2], padding[0], dilation[0], kh, "height"),
        (x.shape[3], padding[1], dilation[1], kw, "width"),
    ):
        if size + 2 * pad < dil * (k - 1) + 1:
            raise ValueError(
                f"conv2d: the kernel (size {k}, dilation {dil}) is larger than the padded input "
                f"{axis} {size + 2 * pad} (input shape {tuple(x.shape)}, padding {padding})"
            )
    if x.dtype != weight.dtype:
        x, weight = promote_pair(x, weight)
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (out_channels,):
            raise ValueError(
                f"conv2d: bias has shape {tuple(bias.shape)}, expected ({out_channels},)"
            )
        if bias.dtype != weight.dtype:
            bias = to(bias, weight.dtype)
    out = _conv.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if trim[0]:
        out = out.narrow(2, 1, out.shape[2] - 1)
    if trim[1]:
        out = out.narrow(3, 1, out.shape[3] - 1)
    return out.squeeze(0) if unbatched else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):  # noqa: A002
    """The maximum of each window of input (N, C, H, W) or (C, H, W), as
    torch.nn.functional.max_pool2d (stride defaults to kernel_size; ceil_mode keeps a last
    window that runs over the edge, if it starts inside the input or the left padding)."""
    x = as_tensor(input)
    kernel = _pair(kernel_size, "max_pool2d", "kernel_size")
    stride = kernel if stride is None or stride == () else _pair(stride, "max_pool2d", "stride")
    padding = _pair(padding, "max_pool2d", "padding")
    dilation = _pair(dilation, "max_pool2d", "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError(
            f"max_pool2d: kernel_size, stride and dilation must be >= 1, got "
            f"{kernel}, {stride}, {dilation}"
        )
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2 or min(padding) < 0:
        raise ValueError(
            f"max_pool2d: padding {padding} must be between 0 and half the kernel size {kernel}"
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            f"max_pool2d: expected input of shape (N, C, H, W) or (C, H, W), "
            f"got shape {tuple(x.shape)}"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"max_pool2d: expected a floating-point input, got {x.dtype}")
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    for size, pad, dil, k, axis in (
        (x.shape[2], padding[0], dilation[0], kernel[0], "height"),
        (x.shape[3], padding[1], dilation[1], kernel[1], "width"),
    ):
        if size + 2 * pad < dil * (k - 1) + 1:
            raise ValueError(
                f"max_pool2d: the window (size {k}, dilation {dil}) is larger than "
                f"the padded input {axis} {size + 2 * pad} (input shape "
                f"{tuple(x.shape)})"
            )
    extra = (0, 0)
    if ceil_mode:
        extra = tuple(
            _ceil_mode_overhang(size, k, s, p, d)
            for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)
        )
    out = _conv.max_pool2d(x, kernel, stride, padding, dilation, extra)
    return out.squeeze(0) if unbatched else out


def _ceil_mode_overhang(size, kernel, stride, pad, dilation):
    """How far past the padded input the last window reaches under ceil_mode (PyTorch's rule:
    round the window count up, but drop a window that would start in the right padding)."""
    span = dilation * (kernel - 1) + 1
    count = -(-(size + 2 * pad - span) // stride) + 1
    if (count - 1) * stride >= size + pad:
        count -= 1
    return max(0, (count - 1) * stride + span - (size + 2 * pad))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """(x - mean) / sqrt(var + eps) * weight + bias over the last len(normalized_shape) dims,
    with the biased variance, as torch.nn.functional.layer_norm."""
    x = as_tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape) :]) != shape or x.ndim < len(shape):
        raise ValueError(
            f"layer_norm: expected input whose last dimensions are {shape}, "
            f"got shape {tuple(x.shape)}"
        )
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    centered = x - x.mean(dims, keepdim=True)
    variance = (centered * centered).mean(dims, keepdim=True)
    out = centered / (variance + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0):  # noqa: A002
    """Rows of `weight` (num_embeddings, embedding_dim) picked by integer `input` of any shape; the
    row at padding_idx gets no gradient, as in torch.nn.functional.embedding. With max_norm, the
    looked-up rows whose norm exceeds it are first scaled down in place (PyTorch's renorm)."""
    index = np.asarray(input._data if isinstance(input, Tensor) else input)
    weight = as_tensor(weight)
    if index.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {index.dtype}")
    if weight.ndim != 2:
        raise ValueError(
            f"embedding: weight must be 2-D (num_embeddings, embedding_dim), "
            f"got shape {tuple(weight.shape)}"
        )
    rows = weight.shape[0]
    if index.size and (index.min() < 0 or index.max() >= rows):
        bad = int(index[(index < 0) | (index >= rows)].flat[0])
        raise IndexError(f"embedding: index {bad} is out of range for {rows} embeddings")
    if max_norm is not None:
        _renorm_rows(weight, np.unique(index), max_norm, norm_type)
    out = weight[index]
    if padding_idx is not None:
        padding_idx = padding_idx % rows
        # The padding row's value passes through, its gradient is cut.
        keep = np.expand_dims(index != padding_idx, -1)
        out = where(keep, out, out.detach())
    return out


def _renorm_rows(weight, rows, max_norm, norm_type):
    """Scale rows of `weight` whose norm exceeds max_norm to (just under) it, in place and outside
    the graph, with PyTorch's 1e-7 guard."""
    data = weight._data
    norms = np.linalg.norm(data[rows], ord=norm_type, axis=1)
    over = norms > max_norm
    if over.any():
        scale = (max_norm / (norms[over] + 1e-7)).astype(data.dtype)
        data[rows[over]] *= scale[:, None]
        weight._bump_version()


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability p and scale the rest by 1/(1-p) while training; the mask
    is drawn from the generator `cr.manual_seed` sets."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    x = as_tensor(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * np.zeros(x.shape, dtype=x.dtype)
    keep = default_generator().random(x.shape) >= p
    return x * (keep * (1.0 / (1.0 - p))).astype(x.dtype)


def scaled_dot_product_attention(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
):
    """softmax(query @ key^T * scale + bias) @ value over the last two dims, as PyTorch's
    reference: scale defaults to 1/sqrt(E); a boolean attn_mask keeps the positions that are
    True, a float one is added; is_causal keeps key positions up to each query's own (not
    together with attn_mask, as in PyTorch); a query row with every position masked attends to nothing (its
    output and gradients are 0, as PyTorch's safe softmax gives); dropout_p drops attention
    weights (whatever the module's mode, as in PyTorch). Composed of recorded ops, so its
    gradients are theirs."""
    q, k, v = as_tensor(query), as_tensor(key), as_tensor(value)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            "scaled_dot_product_attention: query, key and value need at least 2 dims (..., L, E), "
            f"got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: query {tuple(q.shape)} and key {tuple(k.shape)} must "
            f"share the last dim (E), key and value {tuple(v.shape)} the sequence dim (S)"
        )
    if enable_gqa and k.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        k, v = _repeat_heads(k, q.shape[-3]), _repeat_heads(v, q.shape[-3])
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True (fold the causal triangle into the mask instead)"
        )
    length, source = q.shape[-2], k.shape[-2]
    scores = matmul(q, k.mT) * (1.0 / np.sqrt(q.shape[-1]) if scale is None else float(scale))
    if is_causal:
        # Added, as PyTorch's reference adds its bias: 0 where a query sees a key, -inf
        # elsewhere. Every query sees the first key, so no row is left empty.
        causal = np.tril(np.ones((length, source), dtype=bool))
        weights = softmax(scores + np.where(causal, 0.0, -np.inf).astype(scores.dtype), -1)
    elif attn_mask is not None:
        mask = as_tensor(attn_mask)
        if mask.dtype == bool:
            mask = Tensor._wrap(np.where(mask._data, 0.0, -np.inf).astype(scores.dtype))
        scores = scores + mask
        dead = np.isneginf(scores._data).all(axis=-1, keepdims=True)
        if dead.any():
            # A fully masked row: a finite stand-in keeps NaN out of softmax and its gradient.
            weights = where(dead, 0.0, softmax(where(dead, 0.0, scores), -1))
        else:
            weights = softmax(scores, -1)
    else:
        weights = softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return matmul(weights, v)


def _repeat_heads(x, heads):
    """(..., Hk, S, E) with each head repeated to make `heads` of them (repeat_interleave)."""
    groups = x.shape[-3]
    if heads % groups:
        raise ValueError(
            f"scaled_dot_product_attention: enable_gqa needs the query's {heads} heads to be a "
            f"multiple of the key's and value's {groups}"
        )
    wide = x.unsqueeze(-3).expand(*x.shape[:-2], heads // groups, *x.shape[-2:])
    return wide.reshape(*x.shape[:-3], heads, *x.shape[-2:])
