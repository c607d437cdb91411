"""Convolution and max pooling, as im2col: a strided window view of the input (no copy), then one
batched matrix product per direction.

conv2d's two gradients are themselves ops (`conv2d_grad_input`, `conv2d_grad_weight`), and the
three are closed under differentiation (each is bilinear in its two inputs), so
`create_graph=True` gives gradients of gradients through a convolution.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..engine.op import Op, vjp
from ..engine.tensor import Tensor
from .build import call
from .indexing import INDEX_ADD

# ---- im2col -------------------------------------------------------------------------------------


def _pad(x, padding):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _windows(xp, kernel, stride, dilation):
    """(N, C, OH, OW, KH, KW) view of the padded input: window (oh, ow) at kernel offset (i, j)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    view = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _cols(x, kernel, stride, padding, dilation, groups):
    """im2col per sample and group: (N, G, C/G * KH * KW, OH * OW). The copy runs along output
    rows (contiguous in the input for stride 1), and the layout lets every product below come out
    directly in NCHW order, with no transpose copy of the (large) output."""
    win = _windows(_pad(x, padding), kernel, stride, dilation)
    n, c, oh, ow, kh, kw = win.shape
    win = win.transpose(0, 1, 4, 5, 2, 3)  # (N, C, KH, KW, OH, OW)
    return win.reshape(n, groups, (c // groups) * kh * kw, oh * ow), (oh, ow)


def _conv2d(x, weight, bias, stride, padding, dilation, groups):
    o, cg, kh, kw = weight.shape
    n = x.shape[0]
    cols, (oh, ow) = _cols(x, (kh, kw), stride, padding, dilation, groups)
    # (G, O/G, Cg*KH*KW) @ (N, G, Cg*KH*KW, OH*OW): one small product per sample and group.
    out = np.matmul(weight.reshape(groups, o // groups, cg * kh * kw), cols)
    out = out.reshape(n, o, oh, ow)
    if bias is not None:
        out += bias.reshape(1, o, 1, 1)
    return out


def _grouped_g(g, groups):
    """The output gradient (N, O, OH, OW) as (N, G, O/G, OH * OW), matching `_cols` (a view)."""
    n, o, oh, ow = g.shape
    return g.reshape(n, groups, o // groups, oh * ow)


def _grad_weight(g, x, weight_shape, stride, padding, dilation, groups):
    o, cg, kh, kw = weight_shape
    cols, _ = _cols(x, (kh, kw), stride, padding, dilation, groups)
    # per sample (G, O/G, OH*OW) @ (G, OH*OW, Cg*KH*KW), summed over the batch
    gw = np.matmul(_grouped_g(g, groups), cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return gw.reshape(o, cg, kh, kw)


def _grad_input(g, weight, input_shape, stride, padding, dilation, groups):
    """col2im: each kernel offset's column gradient is added back at the input positions it read."""
    o, cg, kh, kw = weight.shape
    n, c, h, w_in = input_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = g.shape[2], g.shape[3]
    wt = weight.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)
    dcols = np.matmul(wt, _grouped_g(g, groups))  # (N, G, Cg*KH*KW, OH*OW)
    dcols = dcols.reshape(n, c, kh, kw, oh, ow)
    dxp = np.zeros((n, c, h + 2 * ph, w_in + 2 * pw), dtype=g.dtype)
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            dxp[:, :, rows, j * dw : j * dw + sw * (ow - 1) + 1 : sw] += dcols[:, :, i, j]
    return dxp[:, :, ph : ph + h, pw : pw + w_in]


# ---- the three ops, each one's gradients written in the others --------------------------------


def _array_or_tensor(op, array_fn):
    """Call `op` on Tensors (recorded, for higher-order gradients) and `array_fn` on arrays."""

    def fn(a, b, **params):
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            return call(op, (a, b), **params)
        return array_fn(a, b, **params)

    return fn


def _conv2d_nobias(x, weight, stride, padding, dilation, groups):
    return _conv2d(x, weight, None, stride, padding, dilation, groups)


# 2-D cross-correlation, as torch.nn.functional.conv2d.
CONV2D = Op(
    "conv2d",
    _conv2d,
    ("x", "weight", "bias"),
    {
        "x": vjp(
            "conv2d_grad_input(g, weight, x.shape)",
            lambda g, x, weight, bias, out, **p: grad_input(g, weight, input_shape=x.shape, **p),
        ),
        "weight": vjp(
            "conv2d_grad_weight(g, x, weight.shape)",
            lambda g, x, weight, bias, out, **p: grad_weight(g, x, weight_shape=weight.shape, **p),
        ),
        "bias": vjp("sum(g, (0, 2, 3))", lambda g, x, weight, bias, out, **p: g.sum((0, 2, 3))),
    },
    params=("stride", "padding", "dilation", "groups"),
    formula="conv2d(x, weight, bias)",
)

# Without a bias, a two-input op of its own: no placeholder input, and the same two rules.
CONV2D_NOBIAS = Op(
    "conv2d",
    _conv2d_nobias,
    ("x", "weight"),
    {
        "x": vjp(
            "conv2d_grad_input(g, weight, x.shape)",
            lambda g, x, weight, out, **p: grad_input(g, weight, input_shape=x.shape, **p),
        ),
        "weight": vjp(
            "conv2d_grad_weight(g, x, weight.shape)",
            lambda g, x, weight, out, **p: grad_weight(g, x, weight_shape=weight.shape, **p),
        ),
    },
    params=("stride", "padding", "dilation", "groups"),
    formula="conv2d(x, weight)",
    variant="no bias",
)

CONV2D_GRAD_INPUT = Op(
    "conv2d_grad_input",
    _grad_input,
    ("g", "weight"),
    {
        "g": vjp(
            "conv2d(h, weight)",
            lambda h, g, weight, out, input_shape, **p: conv2d_plain(h, weight, **p),
        ),
        "weight": vjp(
            "conv2d_grad_weight(g, h, weight.shape)",
            lambda h, g, weight, out, input_shape, **p: grad_weight(
                g, h, weight_shape=weight.shape, **p
            ),
        ),
    },
    params=("input_shape", "stride", "padding", "dilation", "groups"),
    formula="conv2d_grad_input(g, weight)",
)

CONV2D_GRAD_WEIGHT = Op(
    "conv2d_grad_weight",
    _grad_weight,
    ("g", "x"),
    {
        "g": vjp("conv2d(x, h)", lambda h, g, x, out, weight_shape, **p: conv2d_plain(x, h, **p)),
        "x": vjp(
            "conv2d_grad_input(g, h, x.shape)",
            lambda h, g, x, out, weight_shape, **p: grad_input(g, h, input_shape=x.shape, **p),
        ),
    },
    params=("weight_shape", "stride", "padding", "dilation", "groups"),
    formula="conv2d_grad_weight(g, x)",
)

conv2d_plain = _array_or_tensor(CONV2D_NOBIAS, _conv2d_nobias)
grad_input = _array_or_tensor(CONV2D_GRAD_INPUT, _grad_input)
grad_weight = _array_or_tensor(CONV2D_GRAD_WEIGHT, _grad_weight)


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """Record conv2d on checked Tensors (`chainrule.nn.functional.conv2d` checks and normalises)."""
    params = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if bias is None:
        return call(CONV2D_NOBIAS, (x, weight), **params)
    return call(CONV2D, (x, weight, bias), **params)


# ---- max pooling --------------------------------------------------------------------------------


def _pool_padded(x, padding, extra):
    """x padded with -inf: `padding` on both sides, and `extra` more at the bottom and right,
    where ceil_mode lets a last window hang over the edge."""
    (ph, pw), (eh, ew) = padding, extra
    if ph == pw == eh == ew == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=-np.inf)


def _pool_offsets(shape, kernel, stride, dilation):
    """For each kernel offset (row-major, PyTorch's tie order), the strided slices of the padded
    input that it reads for every output position; and the output size."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh = (shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (shape[3] - dw * (kw - 1) - 1) // sw + 1
    offsets = [
        (
            slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return offsets, (oh, ow)


def _max_pool2d(x, kernel, stride, padding, dilation, extra=(0, 0)):
    # One elementwise maximum per kernel offset over strided views: no window copies.
    xp = _pool_padded(x, padding, extra)
    offsets, _ = _pool_offsets(xp.shape, kernel, stride, dilation)
    rows, cols = offsets[0]
    out = xp[:, :, rows, cols].copy()
    for rows, cols in offsets[1:]:
        np.maximum(out, xp[:, :, rows, cols], out=out)
    return out


def _max_pool2d_grad(g, x, out, kernel, stride, padding, dilation, extra=(0, 0)):
    """Each output's gradient goes to the first position in its window (row-major, as PyTorch)
    that holds the maximum."""
    data = x._data if isinstance(x, Tensor) else x
    maximum = out._data if isinstance(out, Tensor) else out
    xp = _pool_padded(data, padding, extra)
    offsets, _ = _pool_offsets(xp.shape, kernel, stride, dilation)
    taken = np.zeros(maximum.shape, dtype=bool)
    n, c, h, w = data.shape
    ph, pw = padding
    if isinstance(g, Tensor):
        # Recorded (create_graph): scatter-add by flat index, an op with its own derivative.
        flat = np.zeros(maximum.shape, dtype=np.int64)
        hp, wp = xp.shape[2], xp.shape[3]
        base = (np.arange(n * c) * (hp * wp)).reshape(n, c, 1, 1)
        for rows, cols in offsets:
            hit = (xp[:, :, rows, cols] == maximum) & ~taken
            taken |= hit
            r = np.arange(rows.start, rows.stop, rows.step).reshape(-1, 1)
            q = np.arange(cols.start, cols.stop, cols.step)
            flat = np.where(hit, base + r * wp + q, flat)
        full = call(INDEX_ADD, (g.reshape(-1),), shape=(n * c * hp * wp,), index=flat.reshape(-1))
        return full.reshape(n, c, hp, wp)[:, :, ph : ph + h, pw : pw + w]
    dxp = np.zeros(xp.shape, dtype=g.dtype)
    for rows, cols in offsets:
        hit = xp[:, :, rows, cols] == maximum
        hit &= ~taken
        taken |= hit
        dxp[:, :, rows, cols] += np.where(hit, g, 0)
    return dxp[:, :, ph : ph + h, pw : pw + w]


# 2-D max pooling, as torch.nn.functional.max_pool2d.
MAX_POOL2D = Op(
    "max_pool2d",
    _max_pool2d,
    ("x",),
    {
        "x": vjp("scatter(g, first_argmax(x, out))", _max_pool2d_grad),
    },
    params=("kernel", "stride", "padding", "dilation", "extra"),
    formula="max_pool2d(x)",
)


def max_pool2d(x, kernel, stride, padding, dilation, extra=(0, 0)):
    return call(
        MAX_POOL2D,
        (x,),
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        extra=extra,
    )
