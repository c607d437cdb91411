"""Float64 central finite differences along random directions, to second order.

As HIPS autograd's check_grads does: for a random output weighting u and input direction v, the
directional derivative d/de <u, f(x + e v)> must equal <VJP_u(x), v>; and the same for the function
x -> <VJP_u(x), w> (its analytic directional derivative comes from a backward through the
create_graph=True backward). Every row of the PyTorch parity table is checked this way (PyTorch
plays no part here), plus every differentiable op over further shapes and keyword combinations,
and a selection through cr.gradcheck / cr.gradgradcheck (full Jacobians).
"""

import numpy as np
import pytest
from test_ops_parity import CASES, Case, _outputs

import chainrule as cr

EPS = 1e-6
# Central differences in float64 at EPS: truncation ~EPS^2 f''' and rounding ~1e-16 |f| / EPS, so
# agreement to ~1e-7 relative is what the method allows.
RTOL = 2e-6


def _evaluate(case, arrays):
    with cr.no_grad():
        return [o.numpy() for o in _outputs(case.fn(cr, *[cr.tensor(a) for a in arrays]))]


def _weighted(outputs, us):
    return sum(float(np.sum(o * u)) for o, u in zip(outputs, us, strict=True))


def _first_order(case, arrays, us, wrt, create_graph=False):
    xs = [cr.tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays)]
    outs = _outputs(case.fn(cr, *xs))
    grads = cr.grad(
        outs,
        [xs[i] for i in wrt],
        [cr.tensor(u) for u in us],
        create_graph=create_graph,
        allow_unused=True,
    )
    return xs, grads


def _grad_array(g, like):
    return np.zeros_like(like) if g is None else g.detach().numpy()


def _shifted(arrays, wrt, vs, step):
    out = [a.copy() for a in arrays]
    for i, v in zip(wrt, vs, strict=True):
        out[i] = arrays[i] + step * v
    return out


def _assert_directional(analytic, numeric, what):
    scale = max(1.0, abs(numeric), abs(analytic))
    assert abs(analytic - numeric) <= RTOL * scale, (
        f"{what}: analytic directional derivative {analytic!r}, central difference {numeric!r} "
        f"(difference {analytic - numeric:.3e})"
    )


def check_first_and_second_order(case, second_order=True):
    arrays = case.inputs(np.float64)
    grads_mask = case.grads or (True,) * len(arrays)
    wrt = [i for i, g in enumerate(grads_mask) if g]
    rng = np.random.default_rng(7)
    us = [rng.standard_normal(o.shape) for o in _evaluate(case, arrays)]
    vs = [rng.standard_normal(arrays[i].shape) for i in wrt]

    xs, grads = _first_order(case, arrays, us, wrt, create_graph=second_order)
    analytic = sum(
        float(np.sum(_grad_array(g, arrays[i]) * v)) for g, i, v in zip(grads, wrt, vs, strict=True)
    )
    plus = _weighted(_evaluate(case, _shifted(arrays, wrt, vs, EPS)), us)
    minus = _weighted(_evaluate(case, _shifted(arrays, wrt, vs, -EPS)), us)
    _assert_directional(analytic, (plus - minus) / (2 * EPS), f"{case.name} first order")
    if not second_order:
        return

    ws = [rng.standard_normal(arrays[i].shape) for i in wrt]
    used = [(g, w) for g, w in zip(grads, ws, strict=True) if g is not None and g.requires_grad]
    if used:
        total = sum((g * cr.tensor(w)).sum() for g, w in used)
        second = cr.grad(total, [xs[i] for i in wrt], allow_unused=True)
        analytic2 = sum(
            float(np.sum(_grad_array(g, arrays[i]) * v))
            for g, i, v in zip(second, wrt, vs, strict=True)
        )
    else:
        analytic2 = 0.0  # the gradient does not depend on the inputs

    def vjp_dot_w(shifted):
        _, gs = _first_order(case, shifted, us, wrt)
        return sum(
            float(np.sum(_grad_array(g, shifted[i]) * w))
            for g, i, w in zip(gs, wrt, ws, strict=True)
        )

    numeric2 = (
        vjp_dot_w(_shifted(arrays, wrt, vs, EPS)) - vjp_dot_w(_shifted(arrays, wrt, vs, -EPS))
    ) / (2 * EPS)
    _assert_directional(analytic2, numeric2, f"{case.name} second order")


# Left to PyTorch parity: rows whose inputs are scaled so far (x 60 to x 1e4) that a step of 1e-6
# is no longer small against the curvature, and rows that round through float32 (a step of 1e-6 is
# below float32's resolution).
FD_CASES = [
    c
    for c in CASES
    if not c.name.endswith(".large") and not c.name.startswith(("to.float32", "float."))
]


@pytest.mark.parametrize("case", FD_CASES, ids=[c.name for c in FD_CASES])
def test_parity_rows_agree_with_central_differences_to_second_order(case):
    check_first_and_second_order(case, second_order=case.second_order)


# ---- further shapes and keyword combinations ----

SHAPES = [(), (5,), (2, 3, 4)]
UNARY = {
    "exp": "real",
    "log": "positive",
    "log1p": "positive",
    "sqrt": "positive",
    "abs": "nonzero",
    "sin": "real",
    "cos": "real",
    "tanh": "real",
    "sigmoid": "real",
    "relu": "nonzero",
    "erf": "real",
    "softplus": "real",
    "gelu": "real",
}

MORE = []
for _shape in SHAPES:
    for _name, _kind in UNARY.items():
        MORE.append(
            Case(f"{_name}{_shape}", lambda m, x, n=_name: getattr(cr, n)(x), (_shape,), _kind)
        )
    MORE.append(Case(f"gelu.tanh{_shape}", lambda m, x: cr.gelu(x, approximate="tanh"), (_shape,)))
    MORE.append(
        Case(
            f"softplus.beta{_shape}",
            lambda m, x: cr.softplus(x * 5, beta=0.5, threshold=1.5),
            (_shape,),
            "nonzero",
        )
    )
    MORE.append(Case(f"pow{_shape}", lambda m, a, b: a**b, (_shape, _shape), ("positive", "real")))
    MORE.append(Case(f"div{_shape}", lambda m, a, b: a / b, (_shape, _shape), ("real", "nonzero")))
    MORE.append(Case(f"maximum{_shape}", lambda m, a, b: cr.maximum(a, b), (_shape, _shape)))
    MORE.append(Case(f"clamp{_shape}", lambda m, x: x.clamp(-0.6, 0.6), (_shape,), "nonzero"))

_REDUCTIONS = {
    "sum": lambda x, dim, keepdim: x.sum(dim, keepdim=keepdim),
    "mean": lambda x, dim, keepdim: x.mean(dim, keepdim=keepdim),
    "var": lambda x, dim, keepdim: x.var(dim, keepdim=keepdim),
    "var.correction0": lambda x, dim, keepdim: x.var(dim, keepdim=keepdim, correction=0),
    "std": lambda x, dim, keepdim: x.std(dim, keepdim=keepdim),
    "std.correction2": lambda x, dim, keepdim: x.std(dim, keepdim=keepdim, correction=2),
    "amax": lambda x, dim, keepdim: x.amax(dim, keepdim=keepdim),
    "amin": lambda x, dim, keepdim: x.amin(dim, keepdim=keepdim),
    "prod": lambda x, dim, keepdim: x.prod(dim, keepdim=keepdim),
    "logsumexp": lambda x, dim, keepdim: x.logsumexp(dim, keepdim=keepdim),
    "norm": lambda x, dim, keepdim: x.norm(dim=dim, keepdim=keepdim),
    "norm.p1": lambda x, dim, keepdim: x.norm(p=1, dim=dim, keepdim=keepdim),
    "norm.p3": lambda x, dim, keepdim: x.norm(p=3, dim=dim, keepdim=keepdim),
    "norm.pinf": lambda x, dim, keepdim: x.norm(p=float("inf"), dim=dim, keepdim=keepdim),
    "softmax": lambda x, dim, keepdim: x.softmax(dim[0]),
    "log_softmax": lambda x, dim, keepdim: x.log_softmax(dim[-1]),
}
for _name, _fn in _REDUCTIONS.items():
    for _dim, _keepdim in [((0,), False), ((1, 2), True), ((-1,), False), ((0, 2), False)]:
        if _name in ("prod",) and len(_dim) > 1:
            _call = lambda m, x, f=_fn, d=_dim, k=_keepdim: f(x, d[0], k)  # noqa: E731
        else:
            _call = lambda m, x, f=_fn, d=_dim, k=_keepdim: f(x, d, k)  # noqa: E731
        MORE.append(
            Case(
                f"{_name}.dim{_dim}.keepdim{_keepdim}",
                _call,
                ((3, 4, 3),),
                "distinct" if _name in ("amax", "amin", "norm.pinf") else "nonzero",
            )
        )
MORE += [
    Case("max.dim.values", lambda m, x: x.max(1).values * 2, ((3, 4, 2),), "distinct"),
    Case("min.dim.keepdim", lambda m, x: x.min(-1, keepdim=True).values, ((3, 4),), "distinct"),
    Case("getitem.mixed", lambda m, x: x[[0, 2, 2], None, 1:3] ** 2, ((3, 4, 2),)),
    Case("getitem.mask", lambda m, x: x[x > 0] ** 3, ((3, 4),)),
    Case("getitem.ellipsis", lambda m, x: x[..., 1].exp(), ((3, 4, 2),)),
    Case(
        "einsum.batch_ellipsis",
        lambda m, a, b: cr.einsum("...ij,...jk->...ik", a, b),
        ((2, 3, 4), (2, 4, 2)),
    ),
    Case(
        "einsum.bilinear",
        lambda m, a, w, b: cr.einsum("bi,oij,bj->bo", a, w, b),
        ((2, 3), (4, 3, 5), (2, 5)),
    ),
    Case("matmul.chain", lambda m, a, b, c: (a @ b).tanh() @ c, ((2, 3), (3, 4), (4, 2))),
    Case(
        "cat.stack.split",
        lambda m, a, b: cr.stack(cr.split(cr.cat([a, b], 1), 2, 1), 0).sin(),
        ((3, 2), (3, 4)),
    ),
    Case(
        "transpose.permute.reshape",
        lambda m, x: x.permute(2, 0, 1).transpose(0, 1).reshape(4, 6).tanh(),
        ((2, 3, 4),),
    ),
    Case(
        "F.cross_entropy.weights_smoothing",
        lambda m, x: cr.nn.functional.cross_entropy(
            x,
            cr.tensor([0, 2, 1]),
            weight=cr.tensor([0.5, 1.0, 2.0], dtype=cr.float64),
            label_smoothing=0.15,
        ),
        ((3, 3),),
    ),
    Case(
        "F.bce.pos_weight",
        lambda m, x, y: cr.nn.functional.binary_cross_entropy_with_logits(
            x, y.sigmoid(), pos_weight=cr.tensor([1.0, 2.0, 3.0], dtype=cr.float64)
        ),
        ((2, 3), (2, 3)),
    ),
]


def _assigned(x, v, index):
    """x * 1 with x[index] replaced by v: the recorded assignment (index_put)."""
    y = x * 1.0
    y[index] = v
    return y * y


MORE += [
    Case("setitem.slice", lambda m, x, v: _assigned(x, v, (slice(1, 3),)), ((4, 3), (2, 3))),
    Case("setitem.mask", lambda m, x, v: _assigned(x, v, x > 0), ((4, 3), ())),
    Case("setitem.arrays", lambda m, x, v: _assigned(x, v, ([0, 3], [2, 1])), ((4, 3), (2,))),
    Case(
        "gather.repeated",
        lambda m, x: x.gather(1, cr.tensor([[0, 0, 2], [1, 1, 1]])) ** 2,
        ((2, 4),),
    ),
    Case("narrow.twice", lambda m, x: x.narrow(0, 1, 2).narrow(1, 0, 2).exp(), ((4, 3),)),
    # The training toolkit's ops are differentiable ops of chainrule.ops too.
    Case(
        "F.conv2d",
        lambda m, x, w, b: cr.nn.functional.conv2d(x, w, b, stride=2, padding=1),
        ((2, 2, 5, 4), (3, 2, 3, 2), (3,)),
    ),
    Case(
        "F.conv2d.groups_dilation",
        lambda m, x, w: cr.nn.functional.conv2d(x, w, padding=(1, 0), dilation=(2, 1), groups=2),
        ((1, 4, 6, 5), (2, 2, 2, 3)),
    ),
    Case(
        "F.max_pool2d",
        lambda m, x: cr.nn.functional.max_pool2d(x, 2) * 3,
        ((1, 2, 4, 6),),
        "distinct",
    ),
    Case(
        "F.max_pool2d.stride_padding",
        lambda m, x: cr.nn.functional.max_pool2d(x, (3, 2), stride=(1, 2), padding=1),
        ((2, 1, 5, 4),),
        "distinct",
    ),
]


@pytest.mark.parametrize("case", MORE, ids=[c.name for c in MORE])
def test_ops_over_shapes_and_keywords_agree_with_central_differences(case):
    check_first_and_second_order(case)


# ---- full Jacobians through cr.gradcheck and cr.gradgradcheck ----

GRADCHECKED = [
    "tanh",
    "sigmoid.method",
    "F.gelu",
    "softplus.beta_threshold",
    "pow.tensor_tensor",
    "where.broadcast",
    "var.dims_correction2.method",
    "std.keepdim.method",
    "prod.dim",
    "logsumexp",
    "norm.p3",
    "matmul.broadcast_batch",
    "einsum.three_operands",
    "F.softmax",
    "F.log_softmax",
    "F.linear",
    "F.cross_entropy.label_smoothing",
    "F.binary_cross_entropy_with_logits",
    "cat",
    "split.sections.method",
]
_BY_NAME = {c.name: c for c in CASES}


@pytest.mark.parametrize("name", GRADCHECKED)
def test_gradcheck_and_gradgradcheck_pass(name):
    case = _BY_NAME[name]
    arrays = case.inputs(np.float64)
    grads_mask = case.grads or (True,) * len(arrays)
    xs = tuple(cr.tensor(a, requires_grad=g) for a, g in zip(arrays, grads_mask, strict=True))

    def fn(*inputs):
        return tuple(_outputs(case.fn(cr, *inputs)))

    assert cr.gradcheck(fn, xs, eps=1e-6, atol=1e-7, rtol=1e-6)
    assert cr.gradgradcheck(fn, xs, eps=1e-6, atol=1e-6, rtol=1e-5)
