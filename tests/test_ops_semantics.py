"""PyTorch parity for what a per-op table cannot express: broadcasting with every kind of operand,
dtype promotion, the indexing forms, (values, indices) pairs and ties, zeros in prod, the
masked-NaN `where`, and losses at logits of magnitude 1e4."""

import numpy as np
import pytest
import torch
from conftest import as_array, assert_close, dtype_name, pair

import chainrule as cr

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}
SHAPE_PAIRS = [
    ((3, 2), (1, 2)),
    ((1, 2), (3, 2)),
    ((2, 1, 3), (4, 3)),
    ((4, 3), (2, 1, 3)),
    ((3,), ()),
    ((), (2, 3)),
    ((), ()),
    ((2, 3), (2, 3)),
]


def _positive(rng, shape):
    return np.abs(rng.standard_normal(shape)) + 0.5


def _grads(out, inputs, seed, lib):
    if lib is cr:
        return cr.grad(out, inputs, cr.tensor(seed))
    return torch.autograd.grad(out, inputs, torch.tensor(seed))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("op", list(BINARY), ids=str)
def test_binary_operator_broadcasts_and_reduces_gradients_to_each_input_shape(op, shapes, dtype):
    rng = np.random.default_rng(0)
    a, b = (_positive(rng, s).astype(dtype) for s in shapes)
    (ca, ta), (cb, tb) = pair(a), pair(b)
    ours, theirs = BINARY[op](ca, cb), BINARY[op](ta, tb)
    assert_close(ours, theirs, f"{op} {shapes} value")
    seed = rng.standard_normal(theirs.shape).astype(dtype)
    for k, (g, e) in enumerate(
        zip(_grads(ours, [ca, cb], seed, cr), _grads(theirs, [ta, tb], seed, torch), strict=True)
    ):
        assert_close(g, e, f"{op} {shapes} gradient of input {k}")


def _zero_d(lib, value, dtype):
    return lib.tensor(np.array(value, dtype=dtype))


@pytest.mark.parametrize("op", list(BINARY), ids=str)
@pytest.mark.parametrize(
    "other",
    ["python_float", "python_int", "numpy_array", "numpy_row", "zero_d_float64"],
)
@pytest.mark.parametrize("side", ["left", "right"])
def test_python_numbers_numpy_arrays_and_0d_tensors_mix_in_on_either_side(op, other, side):
    rng = np.random.default_rng(1)
    x = _positive(rng, (3, 4)).astype(np.float32)
    cx, tx = pair(x)
    if other == "python_float":
        c_other = t_other = 1.75
    elif other == "python_int":
        c_other = t_other = 3
    elif other == "numpy_array":
        # A NumPy array is an operand like a tensor of its dtype, as torch.from_numpy makes it.
        array = _positive(rng, (3, 4))
        c_other, t_other = array, torch.from_numpy(array)
    elif other == "numpy_row":
        array = _positive(rng, (4,)).astype(np.float32)
        c_other, t_other = array, torch.from_numpy(array)
    else:
        c_other, t_other = _zero_d(cr, 1.25, np.float64), _zero_d(torch, 1.25, np.float64)
    fn = BINARY[op]
    if side == "left":
        ours, theirs = fn(c_other, cx), fn(t_other, tx)
    else:
        ours, theirs = fn(cx, c_other), fn(tx, t_other)
    assert_close(ours, theirs, f"{c_other!r:.20} {op} on the {side}", dtype=np.float32)
    seed = rng.standard_normal(theirs.shape).astype(np.float32)
    (g,), (e,) = _grads(ours, [cx], seed, cr), _grads(theirs, [tx], seed, torch)
    assert_close(g, e, f"gradient with {other} on the {side}", dtype=np.float32)


PROMOTIONS = [
    ("float32 * python float", lambda m: m.ones(3) * 2.5),
    ("python float * float32", lambda m: 2.5 * m.ones(3)),
    ("float32 + float64", lambda m: m.ones(3) + m.ones(3, dtype=m.float64)),
    ("float64 + float32", lambda m: m.ones(3, dtype=m.float64) + m.ones(3)),
    ("float32 + 0-d float64", lambda m: m.ones(3) + m.tensor(2.0, dtype=m.float64)),
    ("0-d float32 + 1-d float64", lambda m: m.tensor(2.0) + m.ones(3, dtype=m.float64)),
    ("int64 + float32", lambda m: m.arange(3) + m.ones(3)),
    ("int64 * python float", lambda m: m.arange(3) * 0.5),
    ("int64 + python int", lambda m: m.arange(3) + 2),
    ("int64 / int64", lambda m: m.arange(3) / m.tensor([1, 2, 4])),
    ("int64 ** python float", lambda m: m.arange(3) ** 0.5),
    ("int64 exp", lambda m: m.exp(m.arange(3))),
    ("int32 + int64", lambda m: m.arange(3, dtype=m.int32) + m.arange(3)),
    ("int64 sum", lambda m: m.arange(3).sum()),
    ("bool sum", lambda m: (m.arange(3) > 0).sum()),
    ("float32 comparison", lambda m: m.ones(3) > 0.5),
    (
        "float64 where python numbers",
        lambda m: m.where(m.ones(3) > 0, m.ones(3, dtype=m.float64), 0.0),
    ),
    ("cat float32 float64", lambda m: m.cat([m.ones(2), m.ones(2, dtype=m.float64)])),
    ("cat int64 float32", lambda m: m.cat([m.arange(3), m.ones(3)])),
    ("where int64 or python float", lambda m: m.where(m.arange(3) > 0, m.arange(3), 0.5)),
    ("where float32 or python int", lambda m: m.where(m.arange(3) > 0, m.ones(3), 2)),
    ("where python numbers", lambda m: m.where(m.arange(3) > 0, 1, 2.5)),
    ("where python ints", lambda m: m.where(m.arange(3) > 0, 1, 2)),
    ("where bool or python int", lambda m: m.where(m.arange(3) > 0, m.arange(3) > 1, 2)),
    (
        "where float32 or 0-d float64",
        lambda m: m.where(m.arange(3) > 0, m.ones(3), m.tensor(2.0, dtype=m.float64)),
    ),
    ("clamp int64 to floats", lambda m: m.clamp(m.arange(3), 0.5, 1.5)),
    ("clamp int64 to ints", lambda m: m.clamp(m.arange(3), 0, 1)),
    ("float32 maximum float64", lambda m: m.maximum(m.ones(2), m.zeros(2, dtype=m.float64))),
]


@pytest.mark.parametrize("case", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_result_dtype_follows_pytorch_promotion(case):
    name, fn = case
    assert_close(fn(cr), fn(torch), name)


def test_default_float64_makes_python_floats_float64_as_in_pytorch():
    cr.set_default_dtype(cr.float64)
    torch.set_default_dtype(torch.float64)
    for fn in PROMOTIONS[:2] + [PROMOTIONS[7], PROMOTIONS[11]]:
        assert dtype_name(fn[1](cr)) == dtype_name(fn[1](torch)), fn[0]


def test_mixed_dtype_gradients_have_each_leafs_dtype():
    a32, t32 = pair(np.array([1.0, 2.0], dtype=np.float32))
    a64, t64 = pair(np.array([3.0, 4.0]))
    (a32 * a64).sum().backward()
    (t32 * t64).sum().backward()
    assert_close(a32.grad, t32.grad, "float32 leaf's gradient")
    assert_close(a64.grad, t64.grad, "float64 leaf's gradient")


# ---- indexing ----

INDEXES = [
    ("int", lambda m: 1),
    ("negative int", lambda m: -1),
    ("int pair", lambda m: (2, -2)),
    ("slice", lambda m: slice(1, 3)),
    ("slice with step", lambda m: (slice(None), slice(None, None, 2))),
    ("negative slice bounds", lambda m: (slice(-3, -1), 1)),
    ("None", lambda m: (None, 1)),
    ("ellipsis", lambda m: (Ellipsis, 0)),
    ("ellipsis None slice", lambda m: (0, Ellipsis, None, slice(1, None))),
    ("int list repeated", lambda m: [0, 2, 0, 0]),
    ("int tensor repeated", lambda m: m.tensor([[1, 1], [3, 1]])),
    ("int arrays in two dims", lambda m: (m.tensor([0, 0, 3]), m.tensor([1, 1, 4]))),
    ("int array and slice", lambda m: (slice(None), m.tensor([4, 0, 4]))),
    ("int array after None", lambda m: (None, slice(1, 3), m.tensor([2, 2]))),
    ("bool mask full", "mask"),
    ("bool mask rows", lambda m: m.tensor([True, False, True, True])),
    ("bool mask and slice", lambda m: (slice(None), m.tensor([False, True, True, False, True]))),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", INDEXES, ids=[i[0] for i in INDEXES])
def test_getitem_value_and_scatter_add_gradient_match_pytorch(case, dtype):
    name, index = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3)).astype(dtype)
    cx, tx = pair(x)
    if index == "mask":
        ours, theirs = cx[cx > 0], tx[tx > 0]
    else:
        ours, theirs = cx[index(cr)], tx[index(torch)]
    assert_close(ours, theirs, f"x[{name}]")
    seed = rng.standard_normal(theirs.shape).astype(dtype)
    (g,), (e,) = _grads(ours, [cx], seed, cr), _grads(theirs, [tx], seed, torch)
    assert_close(g, e, f"gradient of x[{name}]")
    # Through create_graph the scatter-add is itself recorded: differentiate it with respect to
    # a seed that requires grad, which gives back the indexing of v.
    cs, ts_ = pair(seed)
    (cg,) = cr.grad(cx[index(cr)] if index != "mask" else cx[cx > 0], [cx], cs, create_graph=True)
    (tg,) = torch.autograd.grad(
        tx[index(torch)] if index != "mask" else tx[tx > 0], [tx], ts_, create_graph=True
    )
    v = rng.standard_normal(x.shape).astype(dtype)
    (cgg,) = cr.grad((cg * cr.tensor(v)).sum(), [cs])
    (tgg,) = torch.autograd.grad((tg * torch.tensor(v)).sum(), [ts_])
    assert_close(cgg, tgg, f"gradient of x[{name}]'s backward with respect to its seed")


def test_repeated_integer_indices_accumulate_every_contribution():
    cx, tx = pair(np.arange(4.0))
    (cx[[1, 1, 1, 3]] * cr.tensor([1.0, 2.0, 3.0, 4.0], dtype=cr.float64)).sum().backward()
    (tx[[1, 1, 1, 3]] * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)).sum().backward()
    assert_close(cx.grad, tx.grad, "gradient of x[[1, 1, 1, 3]]")


# ---- max/min: named pairs and ties ----


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_with_dim_give_named_values_and_indices(name, dim, keepdim):
    x = np.array([[3.0, 1.0, 3.0], [0.0, 5.0, 5.0]])  # ties: PyTorch's indices are the first
    cx, tx = pair(x)
    ours, theirs = getattr(cr, name)(cx, dim, keepdim), getattr(torch, name)(tx, dim, keepdim)
    values, indices = ours
    assert values is ours.values and indices is ours.indices
    assert_close(ours.values, theirs.values, f"{name} values")
    assert_close(ours.indices, theirs.indices, f"{name} indices")
    method = getattr(cx, name)(dim=dim, keepdim=keepdim)
    assert_close(method.values, theirs.values, f"{name} method values")
    seed = np.arange(1.0, 1.0 + theirs.values.numel()).reshape(theirs.values.shape)
    (g,), (e,) = _grads(ours.values, [cx], seed, cr), _grads(theirs.values, [tx], seed, torch)
    assert_close(g, e, f"{name}(dim={dim}) gradient goes to the chosen index only")


TIES = np.array([[2.0, 7.0, 7.0, 1.0], [7.0, 0.0, 3.0, 3.0], [-1.0, -1.0, 0.5, -1.0]])


@pytest.mark.parametrize(
    "call",
    [
        ("amax all", lambda m, x: m.amax(x)),
        ("amax dim 1", lambda m, x: m.amax(x, 1)),
        ("amax dims keepdim", lambda m, x: x.amax((0, 1), keepdim=True)),
        ("amin dim 1", lambda m, x: m.amin(x, 1)),
        ("amin dim 0", lambda m, x: x.amin(0)),
        ("max all", lambda m, x: m.max(x)),
        ("min all", lambda m, x: x.min()),
        ("norm inf", lambda m, x: m.norm(x, p=float("inf"))),
    ],
    ids=lambda c: c[0],
)
def test_ties_share_the_gradient_as_in_pytorch(call):
    name, fn = call
    cx, tx = pair(TIES)
    ours, theirs = fn(cr, cx), fn(torch, tx)
    assert_close(ours, theirs, name)
    seed = np.linspace(1.0, 2.0, theirs.numel()).reshape(theirs.shape)
    (g,), (e,) = _grads(ours, [cx], seed, cr), _grads(theirs, [tx], seed, torch)
    assert_close(g, e, f"{name}: gradient split between ties")


def test_prod_gradient_is_exact_with_one_and_with_several_zeros():
    x = np.array([[2.0, 0.0, 3.0, 4.0], [0.0, 0.0, 5.0, 1.0], [1.5, 2.0, -1.0, 3.0]])
    for label, fn in [
        ("all", lambda m, t: m.prod(t)),
        ("dim 1", lambda m, t: m.prod(t, 1)),
        ("dim 0 keepdim", lambda m, t: t.prod(0, keepdim=True)),
    ]:
        cx, tx = pair(x)
        ours, theirs = fn(cr, cx), fn(torch, tx)
        assert_close(ours, theirs, f"prod {label}")
        seed = np.linspace(1.0, 2.0, theirs.numel()).reshape(theirs.shape)
        (g,), (e,) = _grads(ours, [cx], seed, cr), _grads(theirs, [tx], seed, torch)
        assert np.isfinite(as_array(g)).all(), f"prod {label}: non-finite gradient {g}"
        assert_close(g, e, f"prod {label} gradient with zeros")


def test_prod_with_zeros_to_second_order():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, 2.0, -1.0]])
    cx, tx = pair(x)
    (g,) = cr.grad(cr.prod(cx, 1).sum(), [cx], create_graph=True)
    (e,) = torch.autograd.grad(torch.prod(tx, 1).sum(), [tx], create_graph=True)
    v = np.arange(9.0).reshape(3, 3)
    (gg,) = cr.grad((g * cr.tensor(v)).sum(), [cx])
    (ee,) = torch.autograd.grad((e * torch.tensor(v)).sum(), [tx])
    assert_close(gg, ee, "second derivative of prod with zeros")


# ---- where and the masked NaN ----


def test_where_over_sqrt_of_negatives_gives_pytorchs_nan_gradient():
    x = np.array([-1.0, 4.0, -2.0, 9.0, 0.25])
    cx, tx = pair(x)
    cr.where(cx > 0, cr.sqrt(cx), 0.0).sum().backward()
    torch.where(tx > 0, torch.sqrt(tx), 0.0).sum().backward()
    assert np.isnan(as_array(tx.grad)[[0, 2]]).all(), "the reference itself gives NaN there"
    assert_close(cx.grad, tx.grad, "masked-NaN gradient of where(x > 0, sqrt(x), 0)")


def test_where_safe_pattern_gives_finite_gradients_identical_to_pytorch():
    x = np.array([-1.0, 4.0, -2.0, 9.0, 0.25])
    cx, tx = pair(x)
    cr.where(cx > 0, cr.sqrt(cr.where(cx > 0, cx, 1.0)), 0.0).sum().backward()
    torch.where(tx > 0, torch.sqrt(torch.where(tx > 0, tx, 1.0)), 0.0).sum().backward()
    assert np.isfinite(as_array(cx.grad)).all(), f"safe pattern gave {cx.grad}"
    assert_close(cx.grad, tx.grad, "gradient of the safe where pattern")


def test_where_with_tensor_condition_from_another_tensor_and_broadcast_branches():
    rng = np.random.default_rng(3)
    c = rng.standard_normal((3, 1)) > 0
    (ca, ta), (cb, tb) = pair(rng.standard_normal((1, 4))), pair(rng.standard_normal((3, 4)))
    ours = cr.where(cr.tensor(c), ca, cb)
    theirs = torch.where(torch.tensor(c), ta, tb)
    assert_close(ours, theirs, "where value")
    seed = rng.standard_normal((3, 4))
    for k, (g, e) in enumerate(
        zip(_grads(ours, [ca, cb], seed, cr), _grads(theirs, [ta, tb], seed, torch), strict=True)
    ):
        assert_close(g, e, f"where gradient of branch {k}")


# ---- losses at large logits ----

LOSSES = [
    ("cross_entropy indices", lambda F, m, x: F.cross_entropy(x, m.tensor([0, 3, 1]))),
    (
        "cross_entropy indices smoothing weight ignore",
        lambda F, m, x: F.cross_entropy(
            x,
            m.tensor([0, 3, -100]),
            weight=m.tensor([1.0, 2.0, 0.5, 1.5], dtype=x.dtype),
            label_smoothing=0.2,
        ),
    ),
    (
        "cross_entropy probabilities",
        lambda F, m, x: F.cross_entropy(x, m.tensor([[0.5, 0.5, 0, 0]] * 3, dtype=x.dtype)),
    ),
    (
        "cross_entropy probabilities smoothing",
        lambda F, m, x: F.cross_entropy(
            x, m.tensor([[0.1, 0.2, 0.3, 0.4]] * 3, dtype=x.dtype), label_smoothing=0.1
        ),
    ),
    (
        "bce with logits",
        lambda F, m, x: F.binary_cross_entropy_with_logits(
            x, m.tensor([[1.0, 0.0, 0.5, 1.0]] * 3, dtype=x.dtype)
        ),
    ),
    (
        "bce with logits pos_weight",
        lambda F, m, x: F.binary_cross_entropy_with_logits(
            x,
            m.tensor([[1.0, 0.0, 0.5, 1.0]] * 3, dtype=x.dtype),
            pos_weight=m.tensor([2.0, 1.0, 0.5, 3.0], dtype=x.dtype),
        ),
    ),
    ("log_softmax", lambda F, m, x: F.log_softmax(x, dim=1)),
    ("softmax", lambda F, m, x: F.softmax(x, dim=1)),
    ("softplus", lambda F, m, x: F.softplus(x)),
    ("logsumexp", lambda F, m, x: m.logsumexp(x, 1)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", LOSSES, ids=[c[0] for c in LOSSES])
def test_losses_stay_finite_and_equal_to_pytorch_for_logits_of_magnitude_1e4(case, dtype):
    name, fn = case
    x = np.array([[1.0, -1.0, 0.5, -0.25], [-1.0, 1.0, 0.0, 0.75], [0.3, 0.2, -0.9, 1.0]]) * 1e4
    cx, tx = pair(x.astype(dtype))
    ours, theirs = fn(cr.nn.functional, cr, cx), fn(torch.nn.functional, torch, tx)
    assert np.isfinite(as_array(ours)).all(), f"{name}: non-finite value {ours}"
    assert_close(ours, theirs, f"{name} at 1e4")
    seed = np.ones(theirs.shape, dtype=dtype)
    (g,), (e,) = _grads(ours, [cx], seed, cr), _grads(theirs, [tx], seed, torch)
    assert np.isfinite(as_array(g)).all(), f"{name}: non-finite gradient {g}"
    assert_close(g, e, f"{name} gradient at 1e4")


def test_cross_entropy_mean_with_all_targets_ignored_is_nan_as_in_pytorch():
    cx, tx = pair(np.zeros((2, 3)))
    ours = cr.nn.functional.cross_entropy(cx, cr.tensor([-100, -100]))
    theirs = torch.nn.functional.cross_entropy(tx, torch.tensor([-100, -100]))
    assert_close(ours, theirs, "mean over no targets")


# ---- special values: PyTorch's conventions at kinks, zeros, infinities and edges ----

SPECIAL = [
    ("maximum ties split", lambda m, a, b: m.maximum(a, b), [1.0, 2, 3], [1.0, 0, 3]),
    ("minimum ties split", lambda m, a, b: m.minimum(a, b), [1.0, 2, 3], [1.0, 0, 3]),
    ("clamp at its bounds", lambda m, a: m.clamp(a, -1, 1), [-1.0, 1, 0, 2]),
    ("clamp min above max", lambda m, a: m.clamp(a, 2, 1), [0.0, 1.5, 3]),
    (
        "clamp tensor bounds ties",
        lambda m, a, lo, hi: m.clamp(a, lo, hi),
        [1.0, 2, 3, 0],
        [2.0, 2, 2, -1],
        [2.5, 2.5, 2.5, 0],
    ),
    ("relu at 0", lambda m, a: m.relu(a), [0.0, 1, -1]),
    ("abs at 0", lambda m, a: m.abs(a), [0.0, 1, -1]),
    ("sign at 0", lambda m, a: m.sign(a), [0.0, 1, -1]),
    ("sqrt at 0", lambda m, a: m.sqrt(a), [0.0, 4]),
    ("log at 0", lambda m, a: m.log(a), [0.0, 1]),
    ("log1p at -1", lambda m, a: m.log1p(a), [-1.0, 0]),
    ("square at 0", lambda m, a: a**2, [0.0, 1, -1]),
    ("square root power at 0", lambda m, a: a**0.5, [0.0, 4]),
    ("power of a negative base", lambda m, a: a**0.5, [-1.0, 4]),
    ("pow with zero base and exponent", lambda m, a, b: a**b, [0.0, 0, 2, 0], [2.0, 0, 1, -1]),
    ("pow with exponent 0", lambda m, a: a**0, [0.0, 3]),
    ("zero base to a tensor power", lambda m, b: 0.0**b, [2.0, 1, 0.5, -1]),
    ("division by zero", lambda m, a, b: a / b, [1.0, 0], [0.0, 0]),
    ("2-norm of zeros", lambda m, a: m.norm(a), [0.0, 0]),
    ("2-norm of a zero row", lambda m, a: m.norm(a, dim=1), [[0.0, 0], [3, 4]]),
    ("1-norm with a zero", lambda m, a: m.norm(a, p=1), [0.0, 1]),
    ("3-norm of zeros", lambda m, a: m.norm(a, p=3), [0.0, 0]),
    ("3-norm with a zero", lambda m, a: m.norm(a, p=3), [0.0, 2]),
    ("half-norm with a zero", lambda m, a: m.norm(a, p=0.5), [0.0, 2, 1]),
    ("std of a constant", lambda m, a: m.std(a), [1.0, 1, 1]),
    ("std of one element, correction 0", lambda m, a: m.std(a, correction=0), [1.0]),
    ("var of one element", lambda m, a: m.var(a), [1.0]),
    ("logsumexp of -inf", lambda m, a: m.logsumexp(a, 0), [-np.inf, -np.inf]),
    ("logsumexp with inf", lambda m, a: m.logsumexp(a, 0), [np.inf, 1]),
    ("softmax with -inf", lambda m, a: m.softmax(a, 0), [-np.inf, 1, 2]),
    ("log_softmax with -inf", lambda m, a: m.log_softmax(a, 0), [-np.inf, 1, 2]),
    ("sigmoid saturated", lambda m, a: m.sigmoid(a), [-1000.0, 1000]),
    ("tanh saturated", lambda m, a: m.tanh(a), [-1000.0, 1000]),
    (
        "softplus around the threshold",
        lambda m, a: m.nn.functional.softplus(a),
        [-1000.0, 1000, 20, 20.0001],
    ),
    ("softplus negative beta", lambda m, a: m.nn.functional.softplus(a, beta=-1), [-1000.0, 1, 30]),
    ("gelu saturated", lambda m, a: m.nn.functional.gelu(a), [-1000.0, 1000]),
    (
        "gelu tanh saturated",
        lambda m, a: m.nn.functional.gelu(a, approximate="tanh"),
        [-1000.0, 1000],
    ),
    ("exp overflow", lambda m, a: m.exp(a), [1000.0]),
    ("prod of one zero", lambda m, a: m.prod(a), [0.0]),
    ("sum over an empty dim", lambda m, a: m.sum(a), np.ones((0,))),
    ("prod over an empty dim", lambda m, a: m.prod(a, 1), np.ones((2, 0))),
    ("amax of a 0-d tensor", lambda m, a: m.amax(a), 3.0),
    ("max of a 0-d tensor along dim 0", lambda m, a: m.max(a, 0).values, 3.0),
    ("sum of a 0-d tensor along dim -1 keepdim", lambda m, a: m.sum(a, -1, keepdim=True), 3.0),
    ("logsumexp of a 0-d tensor", lambda m, a: m.logsumexp(a, 0), 3.0),
    ("softmax of a 0-d tensor", lambda m, a: m.softmax(a, 0), 3.0),
    ("mean over a dim list", lambda m, a: a.mean([0, 1]), np.arange(6.0).reshape(2, 3)),
    ("amax over a dim list", lambda m, a: a.amax([0, 1]), np.arange(6.0).reshape(2, 3)),
    ("squeeze a dim tuple", lambda m, a: a.squeeze((0, 2)), np.ones((1, 3, 1))),
    ("unsqueeze a 0-d tensor", lambda m, a: a.unsqueeze(0), 2.0),
    ("flatten a 0-d tensor", lambda m, a: a.flatten(), 2.0),
    ("expand adding dims", lambda m, a: a.expand(2, -1, -1), np.ones((3, 1))),
    (
        "chunk unevenly",
        lambda m, a: m.cat([c * i for i, c in enumerate(m.chunk(a, 4, 0))]),
        np.arange(10.0).reshape(5, 2),
    ),
    (
        "split along the last dim",
        lambda m, a: m.cat([c * i for i, c in enumerate(a.split(2, -1))], -1),
        np.arange(15.0).reshape(5, 3),
    ),
    (
        "stack along the last dim",
        lambda m, a, b: m.stack([a, b], -1),
        np.ones((2, 3)),
        np.zeros((2, 3)),
    ),
    ("cat with an empty tensor", lambda m, a, b: m.cat([a, b]), np.ones((2,)), np.ones((0,))),
    ("index with a 0-d integer tensor", lambda m, a: a[m.tensor(2)], np.arange(6.0)),
    (
        "index arrays broadcast together",
        lambda m, a: a[m.tensor([[0], [1]]), m.tensor([0, 2, 2])],
        np.arange(6.0).reshape(2, 3),
    ),
    (
        "index arrays around a slice",
        lambda m, a: a[m.tensor([0, 1]), :, m.tensor([1, 1])],
        np.arange(24.0).reshape(2, 3, 4),
    ),
    ("index with a list of bools", lambda m, a: a[[True, False, True]], np.arange(3.0)),
    (
        "einsum ellipsis broadcasting batch dims",
        lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
        np.arange(24.0).reshape(2, 1, 3, 4),
        np.arange(40.0).reshape(5, 4, 2),
    ),
    (
        "einsum ellipsis of different lengths",
        lambda m, a, b: m.einsum("...i,...i->...", a, b),
        np.arange(6.0).reshape(2, 3),
        np.arange(3.0),
    ),
    (
        "einsum implicit output with ellipsis",
        lambda m, a, b: m.einsum("...ij,jk", a, b),
        np.arange(24.0).reshape(2, 3, 4),
        np.arange(8.0).reshape(4, 2),
    ),
    (
        "bce weight broadcast",
        lambda m, a: m.nn.functional.binary_cross_entropy_with_logits(
            a, m.ones(2, 3, dtype=m.float64) * 0.3, weight=m.tensor([1.0, 2, 3], dtype=m.float64)
        ),
        np.arange(6.0).reshape(2, 3),
    ),
    (
        "cross_entropy probabilities unbatched",
        lambda m, a: m.nn.functional.cross_entropy(a, m.tensor([0.2, 0.8], dtype=m.float64)),
        [1.0, 2],
    ),
    (
        "cross_entropy probabilities spatial",
        lambda m, a: m.nn.functional.cross_entropy(
            a, m.softmax(m.arange(12.0, dtype=m.float64).reshape(2, 3, 2), 1)
        ),
        np.arange(12.0).reshape(2, 3, 2),
    ),
    (
        "cross_entropy smoothing spatial weight",
        lambda m, a: m.nn.functional.cross_entropy(
            a,
            m.tensor([[0, 2], [1, 1]]),
            weight=m.tensor([1.0, 2, 3], dtype=m.float64),
            label_smoothing=0.3,
        ),
        np.arange(12.0).reshape(2, 3, 2),
    ),
    (
        "cross_entropy smoothing unbatched",
        lambda m, a: m.nn.functional.cross_entropy(a, m.tensor(1), label_smoothing=0.3),
        [1.0, 2, 0],
    ),
    (
        "cross_entropy ignore_index no reduction",
        lambda m, a: m.nn.functional.cross_entropy(
            a, m.tensor([1, -100]), reduction="none", label_smoothing=0.2
        ),
        np.arange(6.0).reshape(2, 3),
    ),
    (
        "l1_loss at a zero difference",
        lambda m, a, b: m.nn.functional.l1_loss(a, b),
        [1.0, 2],
        [1.0, 3],
    ),
]


@pytest.mark.parametrize("case", SPECIAL, ids=[c[0] for c in SPECIAL])
def test_special_values_match_pytorch(case):
    name, fn, *data = case
    with np.errstate(all="ignore"):
        pairs = [pair(np.array(a, dtype=np.float64)) for a in data]
        ours = fn(cr, *[p[0] for p in pairs])
        theirs = fn(torch, *[p[1] for p in pairs])
        assert_close(ours, theirs, f"{name}: value")
        seed = np.linspace(0.5, 1.5, theirs.numel()).reshape(theirs.shape)
        g_ours = cr.grad(ours, [p[0] for p in pairs], cr.tensor(seed), allow_unused=True)
        g_theirs = torch.autograd.grad(
            theirs, [p[1] for p in pairs], torch.tensor(seed), allow_unused=True
        )
    for k, (g, e) in enumerate(zip(g_ours, g_theirs, strict=True)):
        expected = torch.zeros_like(pairs[k][1]) if e is None else e
        actual = np.zeros(expected.shape) if g is None else g
        assert_close(actual, expected, f"{name}: gradient of input {k}")


# ---- assignment into a non-leaf: x[index] = value records the gradient of both ----

ASSIGNMENTS = [
    ("row", lambda m, y: 1, (4,)),
    ("column slice", lambda m, y: (slice(None), slice(1, 3)), (3, 2)),
    ("broadcast number-like 0-d", lambda m, y: (slice(None), 0), ()),
    ("boolean mask", lambda m, y: y > 10, (6,)),
    ("integer arrays", lambda m, y: (m.tensor([0, 2]), m.tensor([1, 3])), (2,)),
    ("broadcast row", lambda m, y: slice(0, 2), (1, 4)),
]


def _assign(m, index, value_shape):
    x = m.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    v = m.tensor(
        np.arange(1.0, 1.0 + np.prod(value_shape)).reshape(value_shape), requires_grad=True
    )
    y = x * 2
    y[index(m, y)] = v * 10
    z = (y * m.tensor(np.arange(12.0).reshape(3, 4))).sum()
    grads = (cr.grad if m is cr else torch.autograd.grad)(z, [x, v])
    return y, grads


@pytest.mark.parametrize("case", ASSIGNMENTS, ids=[a[0] for a in ASSIGNMENTS])
def test_setitem_on_a_non_leaf_matches_pytorch(case):
    name, index, value_shape = case
    y, (gx, gv) = _assign(cr, index, value_shape)
    ty, (tgx, tgv) = _assign(torch, index, value_shape)
    assert_close(y, ty, f"{name}: value after assignment")
    assert_close(gx, tgx, f"{name}: gradient of the tensor assigned into")
    assert_close(gv, tgv, f"{name}: gradient of the value assigned")


# ---- comparisons: bool results, no gradient, broadcasting with numbers and arrays ----

COMPARISONS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@pytest.mark.parametrize("op", list(COMPARISONS), ids=str)
@pytest.mark.parametrize("other", ["tensor row", "python number", "0-d tensor", "int tensor"])
def test_comparisons_give_bool_tensors_without_gradient(op, other):
    x = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    cx, tx = pair(x)
    if other == "tensor row":
        c_other, t_other = pair(np.array([1.0, 1.0, 0.0]))
    elif other == "python number":
        c_other = t_other = 1.0
    elif other == "0-d tensor":
        c_other, t_other = pair(np.array(1.0))
    else:
        c_other, t_other = cr.tensor([2, 1, 0]), torch.tensor([2, 1, 0])
    ours, theirs = COMPARISONS[op](cx, c_other), COMPARISONS[op](tx, t_other)
    assert_close(ours, theirs, f"x {op} {other}")
    assert not ours.requires_grad and ours.grad_fn is None, f"x {op} {other} is in the graph"
    assert_close(COMPARISONS[op](c_other, cx), COMPARISONS[op](t_other, tx), f"{other} {op} x")


def test_engine_casts_a_create_graph_seed_to_the_output_dtype():
    """Engine (chainrule/engine/autograd.py, _seed): with create_graph=True a grad_output Tensor of
    another dtype is used as is, so the backward of a float32 output runs in float64. PyTorch
    (and chainrule without create_graph) cast the seed to the output's dtype first."""
    cx, tx = pair(np.array([1.1, 2.2]))
    seed = np.array([0.1, 0.2])
    (ours,) = cr.grad(cx.float() * 3, [cx], cr.tensor(seed), create_graph=True)
    (theirs,) = torch.autograd.grad(tx.float() * 3, [tx], torch.tensor(seed), create_graph=True)
    assert_close(ours, theirs, "gradient through a float32 output, seed given in float64")


def test_expand_refuses_minus_one_for_a_new_leading_dim_as_pytorch_does():
    with pytest.raises(RuntimeError):
        torch.ones(3, 1).expand(-1, 2, 4)
    with pytest.raises(ValueError, match=r"expand: -1 .* new leading dims"):
        cr.ones(3, 1).expand(-1, 2, 4)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "norm"])
def test_reducing_over_an_empty_dim_list_reduces_everything_as_in_pytorch(name):
    cx, tx = pair(np.arange(6.0).reshape(2, 3))
    ours = getattr(cx, name)(dim=())
    assert_close(ours, getattr(tx, name)(dim=()), f"{name}(dim=())")
    # The gradient against PyTorch's full reduction: PyTorch's own var/std backward with dim=()
    # counts no elements and gives inf, disagreeing with its forward.
    (g,), (e,) = cr.grad(ours, [cx]), torch.autograd.grad(getattr(tx, name)(), [tx])
    assert_close(g, e, f"gradient of {name}(dim=())")


def test_a_dim_named_twice_is_an_error_as_in_pytorch():
    with pytest.raises(RuntimeError, match="multiple times") as theirs:
        torch.ones(2, 3).sum((0, -2))
    with pytest.raises(RuntimeError, match="multiple times") as ours:
        cr.ones(2, 3).sum((0, -2))
    assert str(ours.value) == str(theirs.value)
