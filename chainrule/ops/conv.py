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
    """im2col, grouped: (G, N * OH * OW, C/G * KH * KW), one row per output position."""
    win = _windows(_pad(x, padding), kernel, stride, dilation)
    n, c, oh, ow, kh, kw = win.shape
    win = win.reshape(n, groups, c // groups, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return win.reshape(groups, n * oh * ow, (c // groups) * kh * kw), (oh, ow)


def _conv2d(x, weight, bias, stride, padding, dilation, groups):
    o, cg, kh, kw = weight.shape
    n = x.shape[0]
    cols, (oh, ow) = _cols(x, (kh, kw), stride, padding, dilation, groups)
    w = weight.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)
    out = np.matmul(cols, w)  # (G, N*OH*OW, O/G)
    out = out.reshape(groups, n, oh, ow, o // groups).transpose(1, 0, 4, 2, 3).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return np.ascontiguousarray(out)


def _grouped_g(g, groups):
    """The output gradient (N, O, OH, OW) as (G, N * OH * OW, O/G), matching `_cols`' rows."""
    n, o, oh, ow = g.shape
    g = g.reshape(n, groups, o // groups, oh, ow).transpose(1, 0, 3, 4, 2)
    return g.reshape(groups, n * oh * ow, o // groups)


def _grad_weight(g, x, weight_shape, stride, padding, dilation, groups):
    o, cg, kh, kw = weight_shape
    cols, _ = _cols(x, (kh, kw), stride, padding, dilation, groups)
    gw = np.matmul(cols.transpose(0, 2, 1), _grouped_g(g, groups))  # (G, Cg*KH*KW, O/G)
    return np.ascontiguousarray(gw.transpose(0, 2, 1).reshape(o, cg, kh, kw))


def _grad_input(g, weight, input_shape, stride, padding, dilation, groups):
    """col2im: each kernel offset's column gradient is added back at the input positions it read."""
    o, cg, kh, kw = weight.shape
    n, c, h, w_in = input_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = g.shape[2], g.shape[3]
    wm = weight.reshape(groups, o // groups, cg * kh * kw)
    dcols = np.matmul(_grouped_g(g, groups), wm)  # (G, N*OH*OW, Cg*KH*KW)
    dcols = dcols.reshape(groups, n, oh, ow, cg, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3)
    dcols = dcols.reshape(n, c, kh, kw, oh, ow)
    dxp = np.zeros((n, c, h + 2 * ph, w_in + 2 * pw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[
                :,
                :,
                i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                j * dw : j * dw + sw * (ow - 1) + 1 : sw,
            ] += dcols[:, :, i, j]
    return dxp[:, :, ph : ph + h, pw : pw + w_in]


# ---- the three ops, each one's gradients written in the others --------------------------------


def _dual(op, array_fn):
    """Call `op` on Tensors (recorded, for higher-order gradients) and `array_fn` on arrays."""

    def fn(a, b, **params):
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            return call(op, (a, b), **params)
        return array_fn(a, b, **params)

    return fn


def _conv2d_nobias(x, weight, stride, padding, dilation, groups):
    return _conv2d(x, weight, None, stride, padding, dilation, groups)


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
    doc="2-D cross-correlation, as torch.nn.functional.conv2d",
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
)

conv2d_plain = _dual(CONV2D_NOBIAS, _conv2d_nobias)
grad_input = _dual(CONV2D_GRAD_INPUT, _grad_input)
grad_weight = _dual(CONV2D_GRAD_WEIGHT, _grad_weight)


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """Record conv2d on checked Tensors (`chainrule.nn.functional.conv2d` checks and normalises)."""
    params = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if bias is None:
        return call(CONV2D_NOBIAS, (x, weight), **params)
    return call(CONV2D, (x, weight, bias), **params)


# ---- max pooling --------------------------------------------------------------------------------


def _pool_argmax(x, kernel, stride, padding, dilation):
    """Flat indices into the padded input of each window's first maximum (PyTorch's choice on
    ties), shape (N, C, OH, OW)."""
    ph, pw = padding
    xp = (
        x
        if ph == 0 and pw == 0
        else np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    )
    win = _windows(xp, kernel, stride, dilation)
    n, c, oh, ow, kh, kw = win.shape
    k = win.reshape(n, c, oh, ow, kh * kw).argmax(axis=-1)
    ki, kj = np.divmod(k, kw)
    rows = np.arange(oh).reshape(-1, 1) * stride[0] + ki * dilation[0]
    cols = np.arange(ow) * stride[1] + kj * dilation[1]
    hp, wp = xp.shape[2], xp.shape[3]
    base = (np.arange(n * c) * (hp * wp)).reshape(n, c, 1, 1)
    return xp, base + rows * wp + cols


def _max_pool2d(x, kernel, stride, padding, dilation):
    xp, flat = _pool_argmax(x, kernel, stride, padding, dilation)
    return xp.reshape(-1)[flat]


def _pool_scatter(g, x_shape, kernel, stride, padding, dilation, flat):
    """Each output's gradient added at the input position its maximum came from."""
    n, c, h, w = x_shape
    ph, pw = padding
    hp, wp = h + 2 * ph, w + 2 * pw
    if isinstance(g, Tensor):
        from .indexing import INDEX_ADD

        full = call(INDEX_ADD, (g.reshape(-1),), shape=(n * c * hp * wp,), index=flat.reshape(-1))
        return full.reshape(n, c, hp, wp)[:, :, ph : ph + h, pw : pw + w]
    full = np.bincount(flat.reshape(-1), weights=g.reshape(-1), minlength=n * c * hp * wp)
    full = full.astype(g.dtype, copy=False).reshape(n, c, hp, wp)
    return full[:, :, ph : ph + h, pw : pw + w]


def _max_pool2d_grad(g, x, out, kernel, stride, padding, dilation):
    data = x.data if isinstance(x, Tensor) else x
    _, flat = _pool_argmax(data, kernel, stride, padding, dilation)
    return _pool_scatter(g, data.shape, kernel, stride, padding, dilation, flat)


MAX_POOL2D = Op(
    "max_pool2d",
    _max_pool2d,
    ("x",),
    {
        "x": vjp("scatter(g, window_argmax(x))", _max_pool2d_grad),
    },
    params=("kernel", "stride", "padding", "dilation"),
    doc="2-D max pooling, as torch.nn.functional.max_pool2d",
)


def max_pool2d(x, kernel, stride, padding, dilation):
    return call(MAX_POOL2D, (x,), kernel=kernel, stride=stride, padding=padding, dilation=dilation)
