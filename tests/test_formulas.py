"""Each op's formula strings against its array code, at random points.

Every `Op` reachable from the chainrule.ops modules (and the engine's own broadcast ops) must have
a row in SPECS (a test fails naming any that has none). For each row and each differentiable input,
the formula string is evaluated as Python in the namespace of chainrule/ops/dual.py plus the
helpers below, with the inputs, `out`, the incoming gradient `g` (`h` where an input is itself
named `g`) and the params bound; the result must equal the rule's array code: `local` formulas
against the elementwise derivative, `vjp` formulas against the vector-Jacobian product.

The rule is called with only what its formula names: an input it does not name is None, one it
names only through `.shape`/`.ndim` is a shape placeholder, and `out` is None unless named. That is
the contract the engine relies on when it frees what no formula needs.

Finally, SymPy parses the elementwise `local` formulas and compares them with sympy.diff of the
forward, written in SymPy, where the forward has a SymPy form.
"""

import importlib
import itertools
import pkgutil
import re

import numpy as np
import pytest
import sympy
import torch

import chainrule.engine.broadcast as engine_broadcast
import chainrule.ops as ops_package
from chainrule.engine.op import LOCAL, VJP, Op
from chainrule.ops import dual, linalg, shape

# Every module of chainrule.ops (a new one is searched too), after the engine's own broadcast ops
# (shape.py re-exports BROADCAST_TO; the key names where an op is declared).
MODULES = {"engine.broadcast": engine_broadcast}
MODULES.update(
    (info.name, importlib.import_module(f"chainrule.ops.{info.name}"))
    for info in pkgutil.iter_modules(ops_package.__path__)
)


# ---- helpers the formulas name, written independently of the rule code ----


class Arr(np.ndarray):
    """An ndarray that also reads like a tensor in formulas (`g.mT`, `g.to(dtype)`)."""

    @property
    def mT(self):  # noqa: N802 - PyTorch's name
        return np.swapaxes(self, -1, -2)

    def to(self, dtype):
        return self.astype(dtype)


def arr(x):
    return np.asarray(x).view(Arr)


class ShapeOnly:
    """What a rule gets for an input its formula names only through `.shape`/`.ndim`."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)


def _zeros(shape):
    return np.zeros(shape)


def _index_add(base, index, values):
    out = np.array(base, dtype=float)
    np.add.at(out, index, values)
    return out


def _basic_index_add(base, index, values):
    out = np.array(base, dtype=float)
    out[index] += values
    return out


def index_add(base, index, values):
    """base with values added at base[index], repeated positions adding up (a scatter-add)."""
    items = index if isinstance(index, tuple) else (index,)
    if any(i is None or i is Ellipsis for i in items):
        return _basic_index_add(base, index, values)
    return _index_add(base, index, values)


def scatter_add(base, dim, index, src):
    """torch.Tensor.scatter_add semantics, by looping over every element of index."""
    out = np.array(base, dtype=float)
    for pos in itertools.product(*[range(n) for n in index.shape]):
        target = list(pos)
        target[dim] = index[pos]
        out[tuple(target)] += src[pos]
    return out


def gather(x, dim, index):
    return np.take_along_axis(np.asarray(x), index, axis=dim)


def narrow(x, dim, start, length):
    return np.asarray(x).take(range(start, start + length), axis=dim)


def pad_into(g, shape_, dim, start):
    out = np.zeros(shape_)
    index = [slice(None)] * len(shape_)
    index[dim] = slice(start, start + g.shape[dim])
    out[tuple(index)] = g
    return out


def zero_at(g, index):
    out = np.array(g, dtype=float)
    out[index] = 0
    return out


def product_of_others(x, dim):
    """For each element, the product of the rest of its reduction, by brute force."""
    x = np.asarray(x)
    out = np.empty_like(x)
    dims = tuple(range(x.ndim)) if dim is None else dim
    for pos in np.ndindex(x.shape):
        rest = x.copy()
        rest[pos] = 1.0
        group = tuple(slice(None) if i in dims else p for i, p in enumerate(pos))
        out[pos] = np.prod(rest[group])
    return out


def make_einsum(subscripts, output, i, sizes):
    """The formula's einsum('output,others->subscripts[i]', g, *others): contract g with the other
    operands to operand i's letters; letters only operand i has are a sum over ones (broadcast),
    and a letter operand i repeats puts the result on that diagonal (zeros elsewhere)."""

    def einsum(equation, *operands):
        assert equation == f"output,others->subscripts[{i}]", equation
        others = [s for j, s in enumerate(subscripts) if j != i]
        own = subscripts[i]
        unique = "".join(dict.fromkeys(own))
        present = set(output).union(*others)
        extra = [c for c in unique if c not in present]
        ones = [np.ones(sizes[c]) for c in extra]
        spec = ",".join([output, *others, *extra]) + "->" + unique
        compact = np.einsum(spec, *operands, *ones)
        full = np.zeros(tuple(sizes[c] for c in own))
        for pos in np.ndindex(full.shape):
            letters = {}
            if all(letters.setdefault(c, p) == p for c, p in zip(own, pos, strict=True)):
                full[pos] = compact[tuple(letters[c] for c in unique)]
        return full

    return einsum


# conv helpers from PyTorch: an oracle independent of chainrule's im2col code
def _conv_params(params):
    return {k: params[k] for k in ("stride", "padding", "dilation", "groups")}


def conv_helpers(params):
    p = _conv_params(params)
    tt = torch.from_numpy

    def conv2d(x, weight):
        return torch.nn.functional.conv2d(tt(np.asarray(x)), tt(np.asarray(weight)), **p).numpy()

    def conv2d_grad_input(g, weight, input_shape):
        return torch.nn.grad.conv2d_input(
            input_shape, tt(np.asarray(weight)), tt(np.asarray(g)), **p
        ).numpy()

    def conv2d_grad_weight(g, x, weight_shape):
        return torch.nn.grad.conv2d_weight(
            tt(np.asarray(x)), weight_shape, tt(np.asarray(g)), **p
        ).numpy()

    return {
        "conv2d": conv2d,
        "conv2d_grad_input": conv2d_grad_input,
        "conv2d_grad_weight": conv2d_grad_weight,
    }


def pool_helpers(params):
    """scatter(g, first_argmax(x, out)): g sent back to each window's first largest element
    (PyTorch's max_pool2d with return_indices finds it)."""

    def first_argmax(x, out):
        x = np.asarray(x)
        _, idx = torch.nn.functional.max_pool2d(
            torch.from_numpy(x),
            params["kernel"],
            params["stride"],
            params["padding"],
            params["dilation"],
            return_indices=True,
        )
        return x.shape, idx.numpy()

    def scatter(g, where):
        x_shape, idx = where
        out = np.zeros(x_shape[:-2] + (x_shape[-2] * x_shape[-1],))
        flat_g = np.asarray(g).reshape(idx.shape[:-2] + (-1,))
        flat_idx = idx.reshape(idx.shape[:-2] + (-1,))
        for pos in np.ndindex(flat_idx.shape):
            out[pos[:-1] + (flat_idx[pos],)] += flat_g[pos]
        return out.reshape(x_shape)

    return {"scatter": scatter, "first_argmax": first_argmax}


def namespace():
    space = {k: v for k, v in vars(dual).items() if not k.startswith("_")}
    space.update(
        pi=np.pi,
        zeros=_zeros,
        index_add=index_add,
        scatter_add=scatter_add,
        gather=gather,
        narrow=narrow,
        pad_into=pad_into,
        zero_at=zero_at,
        product_of_others=product_of_others,
        sum_to=engine_broadcast.sum_to_array,
    )
    return space


# ---- what each op is evaluated on ----


class Row:
    def __init__(self, inputs, params=None, extra=None, label=""):
        self.inputs = inputs  # name -> array or constant, in the op's input order
        self.params = params or {}
        self.extra = extra or (lambda op: {})  # further names for the namespace
        self.label = label


def R(seed):
    return np.random.default_rng(seed)


def _pos(shape, seed=0):
    return np.abs(R(seed).standard_normal(shape)) + 0.5


def _real(shape, seed=0):
    return R(seed).standard_normal(shape)


def _nonzero(shape, seed=0):
    r = R(seed)
    return np.sign(r.standard_normal(shape)) * r.uniform(0.2, 2.0, shape)


def _binary_rows(a_fn=_real, b_fn=_real):
    return [
        Row({"a": a_fn((3, 4), 1), "b": b_fn((3, 4), 2)}, label="same shape"),
        Row({"a": a_fn((3, 4), 3), "b": b_fn((4,), 4)}, label="broadcast"),
    ]


def _tied(seed):
    a = _real((3, 4), seed)
    b = _real((3, 4), seed + 1)
    b[0, :2] = a[0, :2]  # ties: the half-half split
    return {"a": a, "b": b}


def _unary(domain):
    return [Row({"x": domain((3, 4), 5)})]


def _reduction_rows(domain=_real, extra_params=None):
    rows = []
    for dim, keepdim in [(None, False), (None, True), ((1,), False), ((0, 2), True), ((2,), True)]:
        x = domain((3, 4, 2), 6)
        params = {"dim": dim, "keepdim": keepdim}
        if extra_params:
            params.update(extra_params(x, dim))
        rows.append(Row({"x": x}, params, label=f"dim={dim} keepdim={keepdim}"))
    return rows


def _count(x, dim):
    return x.size if dim is None else int(np.prod([x.shape[i] for i in dim]))


def _ties_input(shape, seed):
    x = np.round(_real(shape, seed) * 2) / 2  # many equal values: ties in every reduction
    return x


def _getitem_rows():
    x = _real((4, 5, 3), 7)
    indexes = [
        (1, slice(None, None, 2)),
        (slice(1, 3), None, Ellipsis),
        (np.array([0, 2, 0, 0]),),
        (np.array([[1, 1], [3, 1]]), slice(None), np.array([[0, 2], [2, 2]])),
        x[..., 0] > 0,
        (Ellipsis, 1),
    ]
    return [Row({"x": x}, {"index": index}, label=f"index {k}") for k, index in enumerate(indexes)]


def _index_add_rows():
    rows = []
    for row in _getitem_rows():
        index = row.params["index"]
        taken = row.inputs["x"][index]
        rows.append(
            Row(
                {"g": _real(taken.shape, 8)},
                {"shape": row.inputs["x"].shape, "index": index},
                label=row.label,
            )
        )
    return rows


def _index_put_rows():
    x = _real((4, 5), 9)
    return [
        Row({"x": x, "value": _real((2, 5), 10)}, {"index": (slice(1, 3),)}, label="rows"),
        Row({"x": x, "value": _real((), 11)}, {"index": (x > 0,)}, label="mask, scalar value"),
        Row({"x": x, "value": _real((5,), 12)}, {"index": (np.array([0, 3]),)}, label="array"),
    ]


def _matmul_rows():
    # The op sees 2 or more dims: matmul() makes vectors one-row or one-column matrices.
    pairs = [((3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5))]
    return [Row({"a": _real(a, 13), "b": _real(b, 14)}, label=f"{a}@{b}") for a, b in pairs]


def _linear_rows():
    return [
        Row({"x": _real(xs, 15), "weight": _real((4, 3), 16), "bias": b}, label=f"x {xs}")
        for xs, b in [((5, 3), _real((4,), 17)), ((2, 5, 3), _real((4,), 18)), ((1, 3), None)]
    ]


def _cat_rows(n):
    shapes = [(2, k + 1, 3) for k in range(n)]
    xs = {f"x{i}": _real(s, 19 + i) for i, s in enumerate(shapes)}
    offsets = tuple(int(o) for o in np.cumsum([0] + [s[1] for s in shapes]))
    return [Row(xs, {"dim": 1, "offsets": offsets}, label=f"{n} tensors")]


EINSUMS = {
    1: [
        ("ij->", [(3, 4)]),
        ("ijk->kji", [(2, 3, 4)]),
        ("ij->j", [(3, 4)]),
        ("ii->", [(3, 3)]),
        ("bii->bi", [(2, 3, 3)]),
    ],
    2: [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("ij,k->ik", [(3, 4), (5,)]),
        ("i,j->ij", [(3,), (4,)]),
        ("iij,i->j", [(3, 3, 2), (3,)]),
    ],
    3: [("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)])],
}


def _einsum_rows(n):
    rows = []
    for equation, shapes in EINSUMS[n]:
        lhs, output = equation.split("->")
        subscripts = tuple(lhs.split(","))
        xs = {f"x{i}": _real(s, 30 + i) for i, s in enumerate(shapes)}

        rows.append(Row(xs, {"subscripts": subscripts, "output": output}, label=equation))
    return rows


def _conv_rows(bias):
    rows = []
    for stride, padding, dilation, groups in [
        (1, (0, 0), 1, 1),
        (2, (1, 2), 1, 2),
        (1, (1, 1), 2, 1),
    ]:
        x = _real((2, 4, 7, 6), 40)
        w = _real((4, 4 // groups, 3, 2), 41)
        inputs = {"x": x, "weight": w}
        if bias:
            inputs["bias"] = _real((4,), 42)
        params = {
            "stride": (stride, stride),
            "padding": padding,
            "dilation": (dilation, dilation),
            "groups": groups,
        }
        rows.append(Row(inputs, params, lambda op, p=params: conv_helpers(p), label=f"{params}"))
    return rows


def _conv_grad_rows(kind):
    rows = []
    for row in _conv_rows(False):
        p = row.params
        x, w = row.inputs["x"], row.inputs["weight"]
        out = torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), **_conv_params(p)
        ).numpy()
        g = _real(out.shape, 43)
        if kind == "input":
            inputs, params = {"g": g, "weight": w}, {"input_shape": x.shape, **p}
        else:
            inputs, params = {"g": g, "x": x}, {"weight_shape": w.shape, **p}
        rows.append(Row(inputs, params, lambda op, p=p: conv_helpers(p), label=row.label))
    return rows


def _pool_rows():
    rows = []
    for kernel, stride, padding, dilation in [
        ((2, 2), (2, 2), (0, 0), (1, 1)),
        ((3, 2), (1, 2), (1, 1), (1, 1)),
    ]:
        params = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
        rows.append(
            Row({"x": _real((2, 3, 6, 5), 44)}, params, lambda op, p=params: pool_helpers(p))
        )
    return rows


def _softplus_rows():
    x = _real((4, 5), 45) * 10
    return [
        Row({"x": x}, {"beta": 1.0, "threshold": 20.0}),
        Row({"x": x}, {"beta": 2.0, "threshold": 3.0}),
        Row({"x": x}, {"beta": 0.5, "threshold": 1.0}),
    ]


SPECS = {
    "elementwise.ADD": _binary_rows(),
    "elementwise.SUB": _binary_rows(),
    "elementwise.MUL": _binary_rows(),
    "elementwise.DIV": _binary_rows(b_fn=_nonzero),
    "elementwise.POW": _binary_rows(a_fn=_pos)
    + [Row({"a": np.array([0.0, 0.0, 2.0]), "b": np.array([2.0, 0.5, 3.0])}, label="zero base")],
    "elementwise.NEG": _unary(_real),
    "elementwise.MAXIMUM": _binary_rows() + [Row(_tied(46), label="ties")],
    "elementwise.MINIMUM": _binary_rows() + [Row(_tied(47), label="ties")],
    "elementwise.EXP": _unary(_real),
    "elementwise.LOG": _unary(_pos),
    "elementwise.LOG1P": _unary(_pos),
    "elementwise.SQRT": _unary(_pos),
    "elementwise.ABS": _unary(_nonzero),
    "elementwise.SIN": _unary(_real),
    "elementwise.COS": _unary(_real),
    "elementwise.TANH": _unary(_real),
    "elementwise.SIGMOID": _unary(_real),
    "elementwise.RELU": _unary(_nonzero),
    "elementwise.ERF": _unary(_real),
    "elementwise.SIGN": _unary(_nonzero),
    "elementwise.SOFTPLUS": _softplus_rows(),
    "elementwise.GELU": _unary(lambda s, k: _real(s, k) * 3),
    "elementwise.GELU_TANH": _unary(lambda s, k: _real(s, k) * 3),
    "elementwise.CLAMP": [
        Row({"x": _nonzero((4, 5), 48)}, {"min": -0.5, "max": 0.5}),
        Row({"x": _nonzero((4, 5), 49)}, {"min": -np.inf, "max": 0.3}),
        Row({"x": np.array([-1.0, -0.5, 0.0, 0.5, 1.0])}, {"min": -0.5, "max": 0.5}, label="edges"),
    ],
    "elementwise.WHERE": [
        Row({"cond": _real((3, 4), 50) > 0, "a": _real((3, 4), 51), "b": _real((3, 4), 52)}),
    ],
    "reduction.SUM": _reduction_rows(),
    "reduction.MEAN": _reduction_rows(extra_params=lambda x, dim: {"n": _count(x, dim)}),
    "reduction.VAR": _reduction_rows(
        extra_params=lambda x, dim: {"n": _count(x, dim), "correction": 1}
    )
    + [Row({"x": _real((3, 5), 53)}, {"dim": (1,), "keepdim": False, "n": 5, "correction": 2})],
    "reduction.STD": _reduction_rows(
        extra_params=lambda x, dim: {"n": _count(x, dim), "correction": 0}
    ),
    "reduction.AMAX": _reduction_rows(domain=_ties_input),
    "reduction.AMIN": _reduction_rows(domain=_ties_input),
    "reduction.GATHER": [
        Row({"x": _real((3, 4), 54)}, {"dim": 1, "index": np.array([[0, 0], [3, 1], [2, 2]])}),
        Row({"x": _real((3, 4), 55)}, {"dim": 0, "index": np.array([[0, 2, 2, 1], [0, 0, 0, 0]])}),
    ],
    "reduction.SCATTER_ADD": [
        Row(
            {"g": _real((3, 2), 56)},
            {"shape": (3, 4), "dim": 1, "index": np.array([[0, 0], [3, 1], [2, 2]])},
        ),
    ],
    "reduction.PROD": _reduction_rows(domain=_nonzero)
    + [
        Row(
            {"x": np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, 2.0, -1.0]])},
            {"dim": (1,), "keepdim": False},
            label="zeros",
        ),
        Row(
            {"x": np.array([[2.0, 0.0], [4.0, 3.0]])}, {"dim": None, "keepdim": False}, label="zero"
        ),
    ],
    "reduction.LOGSUMEXP": _reduction_rows(),
    "reduction.NORM2": _reduction_rows(),
    "reduction.NORMP": _reduction_rows(_nonzero, lambda x, dim: {"p": 3.0})
    + _reduction_rows(_nonzero, lambda x, dim: {"p": 0.5}),
    "shape.TO": [
        Row(
            {"x": _real((3, 4), 57).astype(np.float32)},
            {"dtype": np.dtype(np.float64), "source": np.dtype(np.float32)},
        )
    ],
    "shape.RESHAPE": [Row({"x": _real((3, 4), 58)}, {"shape": (2, 6)})],
    "shape.TRANSPOSE": [Row({"x": _real((2, 3, 4), 59)}, {"dim0": 0, "dim1": 2})],
    "shape.PERMUTE": [Row({"x": _real((2, 3, 4), 60)}, {"axes": (2, 0, 1)})],
    "shape.NARROW": [Row({"x": _real((3, 5), 61)}, {"dim": 1, "start": 1, "length": 3})],
    "shape.PAD_INTO": [Row({"g": _real((3, 2), 62)}, {"shape": (3, 5), "dim": 1, "start": 2})],
    "shape.CLONE": _unary(_real),
    "engine.broadcast.BROADCAST_TO": [Row({"x": _real((3, 1), 63)}, {"shape": (2, 3, 4)})],
    "engine.broadcast.SUM_TO": [Row({"x": _real((2, 3, 4), 64)}, {"shape": (3, 1)})],
    "linalg.MATMUL": _matmul_rows(),
    "indexing.GETITEM": _getitem_rows(),
    "indexing.INDEX_ADD": _index_add_rows(),
    "indexing.INDEX_PUT": _index_put_rows(),
    "nn.LINEAR": _linear_rows(),
    "nn.SOFTMAX": [Row({"x": _real((3, 4), 65)}, {"dim": d}) for d in (0, 1)],
    "nn.CROSS_ENTROPY": [
        Row({"x": _real((4, 5), 67)}, {"index": np.array([0, 3, 3, 1]), "scale": 0.25}),
        Row({"x": _real((2, 3), 68) * 30}, {"index": np.array([2, 2]), "scale": 1.0}),
    ],
    "nn.LOG_SOFTMAX": [Row({"x": _real((3, 4), 66)}, {"dim": d}) for d in (0, 1)],
    "cat": _cat_rows(2) + _cat_rows(3),
    "einsum": _einsum_rows(1) + _einsum_rows(2) + _einsum_rows(3),
    "conv.CONV2D": _conv_rows(True),
    "conv.CONV2D_NOBIAS": _conv_rows(False),
    "conv.CONV2D_GRAD_INPUT": _conv_grad_rows("input"),
    "conv.CONV2D_GRAD_WEIGHT": _conv_grad_rows("weight"),
    "conv.MAX_POOL2D": _pool_rows(),
}

# Ops made per operand count: one declaration family each.
FAMILIES = {"cat": shape._cat_op, "einsum": linalg._einsum_op}


def all_ops():
    """(key, op) for every Op object in the op modules, and the families' members for the counts
    the rows use (a family member made elsewhere is found in the cache too)."""
    found = {}
    for module_name, module in MODULES.items():
        for attr, value in vars(module).items():
            if isinstance(value, Op):
                found.setdefault(id(value), (f"{module_name}.{attr}", value))
    for module_name, module in MODULES.items():  # ops declared inline, known by their function
        for attr, value in vars(module).items():
            op = getattr(value, "op", None)
            if isinstance(op, Op):
                found.setdefault(id(op), (f"{module_name}.{attr}.op", op))
    for family, make in FAMILIES.items():
        for row in SPECS[family]:
            op = make(len(row.inputs))
            found.setdefault(id(op), (family, op))
    for family, cache in [("cat", shape._cat_ops), ("einsum", linalg._einsum_ops)]:
        for op in cache.values():
            found.setdefault(id(op), (family, op))
    return sorted(found.values(), key=lambda item: item[0])


def test_every_op_has_formula_rows():
    keys = {key for key, op in all_ops() if op.differentiable}
    missing = sorted(keys - set(SPECS))
    assert not missing, f"ops without formula rows in tests/test_formulas.py SPECS: {missing}"
    stale = sorted(set(SPECS) - keys)
    assert not stale, f"SPECS rows for ops that no longer exist: {stale}"


def test_non_differentiable_ops_declare_no_derivatives():
    """Comparisons and logical ops are found too: they must have no derivative at all."""
    for key, op in all_ops():
        if not op.differentiable:
            assert all(d is None for d in op.derivatives), key
    names = {op.name for _, op in all_ops() if not op.differentiable}
    assert {"eq", "lt", "gt", "logical_and", "isnan"} <= names, names


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)?")


def _named(formula):
    """Names whose values the formula reads, and names it reads only the shape of."""
    values, shapes = set(), set()
    for ident in _NAME.findall(formula):
        base, _, attr = ident.partition(".")
        (shapes if attr in ("shape", "ndim") else values).add(base)
    return values, shapes - values


def _cases():
    for key, op in all_ops():
        if not op.differentiable or key not in SPECS:
            continue
        for r, row in enumerate(SPECS[key]):
            if len(row.inputs) != len(op.inputs):
                continue  # a family row for another operand count
            for i, d in enumerate(op.derivatives):
                if d is None or d.kind not in (LOCAL, VJP):
                    continue
                values = list(row.inputs.values())
                if values[i] is None or not isinstance(values[i], np.ndarray):
                    continue
                if values[i].dtype.kind != "f":
                    continue
                yield pytest.param(op, row, i, id=f"{key}[{r}:{row.label}]-{op.inputs[i]}")


def _broadcast(value, shape):
    return np.broadcast_to(np.asarray(value, dtype=float), shape)


@pytest.mark.parametrize(("op", "row", "i"), list(_cases()))
def test_formula_equals_rule_at_random_points(op, row, i):
    d = op.derivatives[i]
    inputs = [np.array(v) if isinstance(v, np.ndarray) else v for v in row.inputs.values()]
    out = np.asarray(op.forward(*inputs, **row.params))
    grad_name = "h" if "g" in op.inputs else "g"
    g = _real(out.shape, 99) if out.dtype.kind == "f" else None

    space = namespace()
    space.update(row.extra(op))
    if op.name == "einsum":
        subscripts = row.params["subscripts"]
        sizes = {
            c: n
            for term, x in zip(subscripts, inputs, strict=True)
            for c, n in zip(term, x.shape, strict=True)
        }
        space["einsum"] = make_einsum(subscripts, row.params["output"], i, sizes)
        others = [x for j, x in enumerate(inputs) if j != i]
        space["others"] = others
    space.update(row.params)
    for name, value in zip(op.inputs, inputs, strict=True):
        space[name] = arr(value) if isinstance(value, np.ndarray) else value
    space["out"] = arr(out)
    space[grad_name] = arr(g)
    formula_value = eval(d.formula, space)  # noqa: S307 - the formulas are ours, written as Python

    # The rule gets only what the formula names (the engine frees the rest).
    values, shapes = _named(d.formula)
    values |= set(getattr(op, "keep", ()))  # inputs the declaration keeps for every rule
    given = []
    for name, value in zip(op.inputs, inputs, strict=True):
        if name in values or not isinstance(value, np.ndarray):
            given.append(value)
        elif name in shapes:
            given.append(ShapeOnly(value.shape))
        else:
            given.append(None)
    given_out = out if "out" in values else None
    where = f"{op.name} input {op.inputs[i]!r}, formula {d.formula!r}, row {row.label!r}"
    try:
        if d.kind == LOCAL:
            rule_value = d.fn(*given, given_out, **row.params)
        else:
            rule_value = d.fn(g, *given, given_out, **row.params)
    except (AttributeError, TypeError) as error:
        raise AssertionError(
            f"{where}: the rule reads something its formula does not name ({error})"
        ) from error
    if d.kind == LOCAL:
        np.testing.assert_allclose(
            _broadcast(formula_value, out.shape),
            _broadcast(rule_value, out.shape),
            rtol=1e-12,
            atol=1e-12,
            err_msg=where,
        )
    else:
        expected_shape = np.shape(inputs[i])
        assert np.shape(rule_value) == expected_shape, f"{where}: rule gives {np.shape(rule_value)}"
        assert np.shape(formula_value) == expected_shape, (
            f"{where}: formula gives shape {np.shape(formula_value)}, input has {expected_shape}"
        )
        np.testing.assert_allclose(
            np.asarray(formula_value, dtype=float),
            np.asarray(rule_value, dtype=float),
            rtol=1e-12,
            atol=1e-12,
            err_msg=where,
        )


# ---- SymPy: elementwise local formulas against sympy.diff of the forward ----

x_, a_, b_ = sympy.symbols("x a b", real=True)
beta_, threshold_ = sympy.Rational(3, 2), sympy.Integer(2)


def _sigmoid(z):
    return 1 / (1 + sympy.exp(-z))


def _sympy_where(cond, a, b):
    return sympy.Piecewise((a, cond), (b, True))


SYMPY_NAMES = {
    "exp": sympy.exp,
    "log": sympy.log,
    "log1p": lambda z: sympy.log(1 + z),
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tanh": sympy.tanh,
    "sigmoid": _sigmoid,
    "erf": sympy.erf,
    "sign": sympy.sign,
    "abs": sympy.Abs,
    "pi": sympy.pi,
    "where": _sympy_where,
    "normal_cdf": lambda z: (1 + sympy.erf(z / sympy.sqrt(2))) / 2,
    "normal_pdf": lambda z: sympy.exp(-(z**2) / 2) / sympy.sqrt(2 * sympy.pi),
}

# Forward of each elementwise op as SymPy, in the op's input symbols.
SYMPY_FORWARDS = {
    "elementwise.MUL": a_ * b_,
    "elementwise.DIV": a_ / b_,
    "elementwise.POW": a_**b_,
    "elementwise.EXP": sympy.exp(x_),
    "elementwise.LOG": sympy.log(x_),
    "elementwise.LOG1P": sympy.log(1 + x_),
    "elementwise.SQRT": sympy.sqrt(x_),
    "elementwise.ABS": sympy.Abs(x_),
    "elementwise.SIN": sympy.sin(x_),
    "elementwise.COS": sympy.cos(x_),
    "elementwise.TANH": sympy.tanh(x_),
    "elementwise.SIGMOID": _sigmoid(x_),
    "elementwise.ERF": sympy.erf(x_),
    "elementwise.SOFTPLUS": sympy.Piecewise(
        (x_, beta_ * x_ > threshold_), (sympy.log(1 + sympy.exp(beta_ * x_)) / beta_, True)
    ),
    "elementwise.GELU": x_ * (1 + sympy.erf(x_ / sympy.sqrt(2))) / 2,
    "elementwise.GELU_TANH": x_
    / 2
    * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x_ + sympy.Float("0.044715") * x_**3))),
}
SYMBOLS = {"x": x_, "a": a_, "b": b_}


def test_sympy_forms_cover_every_smooth_elementwise_op_with_a_local_formula():
    """Which elementwise locals have no SymPy check, by name, so that a new one is a decision."""
    piecewise_constant = {
        "elementwise.MAXIMUM",
        "elementwise.MINIMUM",
        "elementwise.RELU",
        "elementwise.CLAMP",
    }
    smooth = {
        key
        for key, op in all_ops()
        if op.elementwise and any(d is not None and d.kind == LOCAL for d in op.derivatives)
    }
    assert smooth - piecewise_constant == set(SYMPY_FORWARDS)


def _sympy_cases():
    ops = dict(all_ops())
    for key, forward in SYMPY_FORWARDS.items():
        op = ops[key]
        for name, d in zip(op.inputs, op.derivatives, strict=True):
            if d is not None and d.kind == LOCAL:
                yield pytest.param(key, op, name, d.formula, forward, id=f"{key}-{name}")


@pytest.mark.parametrize(("key", "op", "name", "formula", "forward"), list(_sympy_cases()))
def test_local_formula_is_sympy_derivative_of_forward(key, op, name, formula, forward):
    local_names = dict(SYMPY_NAMES)
    local_names.update(SYMBOLS)
    local_names["out"] = forward
    local_names["beta"], local_names["threshold"] = beta_, threshold_
    parsed = sympy.sympify(formula, locals=local_names)
    derivative = sympy.diff(forward, SYMBOLS[name])
    rng = np.random.default_rng(len(formula))
    for _ in range(6):
        point = {
            x_: sympy.Float(
                rng.uniform(0.3, 3.0) * rng.choice([-1, 1])
                if key not in ("elementwise.LOG", "elementwise.SQRT", "elementwise.LOG1P")
                else rng.uniform(0.3, 3.0)
            ),
            a_: sympy.Float(rng.uniform(0.3, 3.0)),
            b_: sympy.Float(rng.uniform(-2.0, 2.0)),
        }
        got = complex(parsed.evalf(30, subs=point))
        want = complex(derivative.evalf(30, subs=point))
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (
            f"{key}: d/d{name} of {forward} is {derivative} = {want} at {point}, "
            f"but the formula {formula!r} gives {got}"
        )


def test_formula_helpers_are_independent_of_the_rules():
    """The namespace's scatter-add and product-of-others agree with direct definitions."""
    index = np.array([[0, 0], [1, 0]])
    got = scatter_add(np.zeros((2, 3)), 1, index, np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(got, [[3.0, 0.0, 0.0], [4.0, 3.0, 0.0]])
    np.testing.assert_array_equal(
        product_of_others(np.array([[2.0, 0.0, 3.0]]), (1,)), [[0.0, 6.0, 0.0]]
    )
