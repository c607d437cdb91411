"""Each op's formulas against its array code, at random points, generated from the op registry.

Every op chainrule declares (`chainrule.engine.op.declared_ops()`) must have rows in SPECS (a test
fails naming any that has none) and every field a declaration needs: its forward as array code and
as a formula, and a derivative (or an explicit None) for each input of a differentiable op.

For each row:
- the forward formula, evaluated the way the explainer evaluates formulas (`explain.expr`) with
  the oracles below (NumPy, SciPy and PyTorch, never chainrule's own code) for the calls it makes,
  must equal the op's forward;
- for each differentiable input, the derivative formula is evaluated as Python in the namespace of
  chainrule/ops/array_or_tensor.py plus the helpers below, with the inputs, `out`, the incoming
  gradient `g` (`h` where an input is itself named `g`) and the params bound; the result must equal
  the rule's array code: `local` formulas against the elementwise derivative, `vjp` formulas
  against the vector-Jacobian product.

The rule is called with only what its formula names: an input it does not name is None, one it
names only through `.shape`/`.ndim` is a shape placeholder, and `out` is None unless named. That is
the contract the engine relies on when it frees what no formula needs.

Finally, SymPy differentiates each smooth elementwise op's forward formula and compares the result
with its `local` derivative formulas.
"""

import ast
import importlib
import itertools
import pkgutil
import re

import numpy as np
import pytest
import sympy
import torch
from scipy import special

import chainrule.engine.broadcast as engine_broadcast
import chainrule.ops
from chainrule.engine.op import LOCAL, VJP, Derivative, Op, declared_ops, local
from chainrule.explain import expr
from chainrule.ops import array_or_tensor, linalg, recurrent, shape

# Every module of chainrule.ops is imported (a new one too), so that all its declarations register.
for _module in pkgutil.iter_modules(chainrule.ops.__path__):
    importlib.import_module(f"chainrule.ops.{_module.name}")

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
    space = {k: v for k, v in vars(array_or_tensor).items() if not k.startswith("_")}
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


# The recurrent ops against a loop written in PyTorch (its per-step output laid out as the op's),
# and their gradients against PyTorch's autograd through that loop.


def _torch_scan(kind, x_proj, h0, c0, w_hh, b_hh, reverse, nonlinearity="tanh"):
    h, c, rows = h0, c0, {}
    order = range(x_proj.shape[0] - 1, -1, -1) if reverse else range(x_proj.shape[0])
    for t in order:
        hidden = h @ w_hh.T + (0 if b_hh is None else b_hh)
        if kind == "lstm":
            i, f, g, o = (x_proj[t] + hidden).chunk(4, -1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * c + i * g
            h = o * c.tanh()
            rows[t] = torch.cat([h, c, i, f, g, o], -1)
        elif kind == "gru":
            x_r, x_z, x_n = x_proj[t].chunk(3, -1)
            h_r, h_z, h_n = hidden.chunk(3, -1)
            r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
            cand = (x_n + r * h_n).tanh()
            h = (1 - z) * cand + z * h
            rows[t] = torch.cat([h, r, z, cand, h_n], -1)
        else:
            pre = x_proj[t] + hidden
            h = pre.tanh() if nonlinearity == "tanh" else pre.relu()
            rows[t] = h
    return torch.stack([rows[t] for t in range(x_proj.shape[0])])


def _scan_oracles(kind, params):
    def tensors(arrays, grad=False):
        return [
            None if a is None else torch.tensor(np.asarray(a), requires_grad=grad) for a in arrays
        ]

    def split(args):
        # (x_proj, h0, [c0,] w_hh, b_hh, scan): the scan's scratch object is no value, and the
        # explainer's evaluation drops a missing b_hh from the call
        args = list(args[:-1])
        if len(args) == (4 if kind == "lstm" else 3):
            args.append(None)
        if kind != "lstm":
            args.insert(2, None)
        return args

    def forward(*args):
        return _torch_scan(kind, *tensors(split(args)), **params).detach().numpy()

    def backward(g, *args):
        args = split(args[:-2] + args[-1:])  # drop `out`: the oracle recomputes it
        inputs = tensors(args, grad=True)
        out = _torch_scan(kind, *inputs, **params)
        wanted = [x for x in inputs if x is not None]
        found = iter(torch.autograd.grad(out, wanted, torch.tensor(np.asarray(g))))
        grads = [None if x is None else next(found).numpy() for x in inputs]
        if kind != "lstm":
            del grads[2]
        return grads

    return forward, backward


def _scan_rows(kind):
    n, steps, batch = 2, 3, 2
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    rows = []
    for reverse, bias, nonlinearity in [
        (False, True, "tanh"),
        (True, True, "tanh"),
        (False, False, "tanh"),
        (True, True, "relu"),
    ]:
        if nonlinearity == "relu" and kind != "rnn":
            continue
        inputs = {"x_proj": _real((steps, batch, gates * n), 80), "h0": _real((batch, n), 81)}
        if kind == "lstm":
            inputs["c0"] = _real((batch, n), 82)
        inputs["w_hh"] = _real((gates * n, n), 83)
        inputs["b_hh"] = _real((gates * n,), 84) if bias else None
        inputs["scan"] = recurrent.Scan()
        params = {"reverse": reverse}
        oracle = dict(params)
        if kind == "rnn":
            params["nonlinearity"] = oracle["nonlinearity"] = nonlinearity
        backward = _scan_oracles(kind, oracle)[1]
        rows.append(
            Row(
                inputs,
                params,
                lambda op, b=backward: {f"{kind}_backward": b},
                label=f"reverse={reverse} bias={bias} {nonlinearity}",
            )
        )
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
    "add": _binary_rows(),
    "sub": _binary_rows(),
    "mul": _binary_rows(),
    "div": _binary_rows(b_fn=_nonzero),
    "pow": _binary_rows(a_fn=_pos)
    + [Row({"a": np.array([0.0, 0.0, 2.0]), "b": np.array([2.0, 0.5, 3.0])}, label="zero base")],
    "neg": _unary(_real),
    "maximum": _binary_rows() + [Row(_tied(46), label="ties")],
    "minimum": _binary_rows() + [Row(_tied(47), label="ties")],
    "exp": _unary(_real),
    "log": _unary(_pos),
    "log1p": _unary(_pos),
    "sqrt": _unary(_pos),
    "abs": _unary(_nonzero),
    "sin": _unary(_real),
    "cos": _unary(_real),
    "tanh": _unary(_real),
    "sigmoid": _unary(_real),
    "relu": _unary(_nonzero),
    "erf": _unary(_real),
    "sign": _unary(_nonzero),
    "softplus": _softplus_rows(),
    "gelu": _unary(lambda s, k: _real(s, k) * 3),
    "gelu[tanh]": _unary(lambda s, k: _real(s, k) * 3),
    "clamp": [
        Row({"x": _nonzero((4, 5), 48)}, {"min": -0.5, "max": 0.5}),
        Row({"x": _nonzero((4, 5), 49)}, {"min": -np.inf, "max": 0.3}),
        Row({"x": np.array([-1.0, -0.5, 0.0, 0.5, 1.0])}, {"min": -0.5, "max": 0.5}, label="edges"),
    ],
    "where": [
        Row({"cond": _real((3, 4), 50) > 0, "a": _real((3, 4), 51), "b": _real((3, 4), 52)}),
    ],
    "sum": _reduction_rows(),
    "mean": _reduction_rows(extra_params=lambda x, dim: {"n": _count(x, dim)}),
    "var": _reduction_rows(extra_params=lambda x, dim: {"n": _count(x, dim), "correction": 1})
    + [Row({"x": _real((3, 5), 53)}, {"dim": (1,), "keepdim": False, "n": 5, "correction": 2})],
    "std": _reduction_rows(extra_params=lambda x, dim: {"n": _count(x, dim), "correction": 0}),
    "amax": _reduction_rows(domain=_ties_input),
    "amin": _reduction_rows(domain=_ties_input),
    "gather": [
        Row({"x": _real((3, 4), 54)}, {"dim": 1, "index": np.array([[0, 0], [3, 1], [2, 2]])}),
        Row({"x": _real((3, 4), 55)}, {"dim": 0, "index": np.array([[0, 2, 2, 1], [0, 0, 0, 0]])}),
    ],
    "scatter_add": [
        Row(
            {"g": _real((3, 2), 56)},
            {"shape": (3, 4), "dim": 1, "index": np.array([[0, 0], [3, 1], [2, 2]])},
        ),
    ],
    "prod": _reduction_rows(domain=_nonzero)
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
    "logsumexp": _reduction_rows(),
    "norm": _reduction_rows(),
    "norm[p]": _reduction_rows(_nonzero, lambda x, dim: {"p": 3.0})
    + _reduction_rows(_nonzero, lambda x, dim: {"p": 0.5}),
    "to": [
        Row(
            {"x": _real((3, 4), 57).astype(np.float32)},
            {"dtype": np.dtype(np.float64), "source": np.dtype(np.float32)},
        )
    ],
    "reshape": [Row({"x": _real((3, 4), 58)}, {"shape": (2, 6)})],
    "transpose": [Row({"x": _real((2, 3, 4), 59)}, {"dim0": 0, "dim1": 2})],
    "permute": [Row({"x": _real((2, 3, 4), 60)}, {"axes": (2, 0, 1)})],
    "narrow": [Row({"x": _real((3, 5), 61)}, {"dim": 1, "start": 1, "length": 3})],
    "pad_into": [Row({"g": _real((3, 2), 62)}, {"shape": (3, 5), "dim": 1, "start": 2})],
    "clone": _unary(_real),
    "tril": [Row({"x": _real((4, 5), 75)}, {"diagonal": d}, label=f"diagonal {d}") for d in (0, 2)]
    + [Row({"x": _real((2, 3, 4), 76)}, {"diagonal": -1}, label="batched")],
    "triu": [Row({"x": _real((4, 5), 77)}, {"diagonal": d}, label=f"diagonal {d}") for d in (0, -2)]
    + [Row({"x": _real((2, 4, 3), 78)}, {"diagonal": 1}, label="batched")],
    "roll": [
        Row({"x": _real((3, 4), 79)}, {"shifts": 5, "dims": None}, label="flattened"),
        Row({"x": _real((3, 4, 2), 80)}, {"shifts": (1, -3), "dims": (0, 1)}, label="two dims"),
    ],
    "flip": [Row({"x": _real((3, 4, 2), 81)}, {"dims": dims}) for dims in ((0,), (0, 2))],
    "cumsum": [Row({"x": _real((3, 4, 2), 82)}, {"dim": d}, label=f"dim {d}") for d in (0, 1, 2)],
    "broadcast_to": [Row({"x": _real((3, 1), 63)}, {"shape": (2, 3, 4)})],
    "sum_to": [Row({"x": _real((2, 3, 4), 64)}, {"shape": (3, 1)})],
    "matmul": _matmul_rows(),
    "getitem": _getitem_rows(),
    "index_add": _index_add_rows(),
    "index_put": _index_put_rows(),
    "linear": _linear_rows(),
    "softmax": [Row({"x": _real((3, 4), 65)}, {"dim": d}) for d in (0, 1)],
    "cross_entropy": [
        Row({"x": _real((4, 5), 67)}, {"index": np.array([0, 3, 3, 1]), "scale": 0.25}),
        Row({"x": _real((2, 3), 68) * 30}, {"index": np.array([2, 2]), "scale": 1.0}),
    ],
    "log_softmax": [Row({"x": _real((3, 4), 66)}, {"dim": d}) for d in (0, 1)],
    "cat": _cat_rows(2) + _cat_rows(3),
    "einsum": _einsum_rows(1) + _einsum_rows(2) + _einsum_rows(3),
    "conv2d": _conv_rows(True),
    "conv2d[no bias]": _conv_rows(False),
    "conv2d_grad_input": _conv_grad_rows("input"),
    "conv2d_grad_weight": _conv_grad_rows("weight"),
    "max_pool2d": _pool_rows(),
    "lstm": _scan_rows("lstm"),
    "gru": _scan_rows("gru"),
    "rnn": _scan_rows("rnn"),
    # no derivatives: only the forward formula is checked
    **{
        name: _binary_rows() + [Row(_tied(69), label="ties")]
        for name in ("eq", "ne", "lt", "le", "gt", "ge")
    },
    "logical_and": [Row({"a": _real((3, 4), 70) > 0, "b": _real((3, 4), 71) > 0})],
    "logical_or": [Row({"a": _real((3, 4), 72) > 0, "b": _real((4,), 73) > 0})],
    "logical_not": [Row({"x": _real((3, 4), 74) > 0})],
    "isnan": [Row({"x": np.array([0.0, np.nan, np.inf, -1.0])})],
    "isfinite": [Row({"x": np.array([0.0, np.nan, np.inf, -1.0])})],
}

# Ops made per operand count: one declaration family each. Making the members the rows use
# declares them (a member made elsewhere is in the registry already).
FAMILIES = {"cat": shape._cat_op, "einsum": linalg._einsum_op}


def all_ops():
    """(key, op) for every declared op, the families' members for the rows' counts included."""
    for family, make in FAMILIES.items():
        for row in SPECS[family]:
            make(len(row.inputs))
    return sorted(((op.key, op) for op in declared_ops()), key=lambda item: item[0])


def test_every_op_has_rows():
    keys = {key for key, op in all_ops()}
    missing = sorted(keys - set(SPECS))
    assert not missing, f"ops without rows in tests/test_formulas.py SPECS: {missing}"
    stale = sorted(set(SPECS) - keys)
    assert not stale, f"SPECS rows for ops that no longer exist: {stale}"


def test_every_op_declares_each_field():
    """A forward as code and as a formula the explainer can read, and for a differentiable op a
    derivative or an explicit None for each input; one key per declaration."""
    keys = {}
    for key, op in all_ops():
        assert callable(op.forward), key
        tree = expr.parse(op.formula)  # a Python expression, or this raises
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert set(op.inputs) <= named | {"ctx"}, f"{key}: formula {op.formula!r} omits inputs"
        assert len(op.derivatives) == len(op.inputs), key
        for d in op.derivatives:
            assert d is None or (isinstance(d, Derivative) and d.formula), key
        family = key in FAMILIES
        assert family or keys.setdefault(key, op) is op, f"two declarations share the key {key}"
    names = {op.name for _, op in all_ops() if not op.differentiable}
    assert {"eq", "lt", "gt", "logical_and", "isnan"} <= names, names


def test_a_declaration_that_leaves_something_out_fails_when_declared():
    with pytest.raises(ValueError, match="forward as a formula"):
        Op(
            "twice",
            lambda x: 2 * x,
            derivatives={"x": local("2", lambda x, out: 2)},
            declared=False,
        )
    with pytest.raises(ValueError, match=r"no derivative declared for inputs \['b'\]"):
        Op(
            "half_declared",
            np.multiply,
            ("a", "b"),
            {"a": local("b", lambda a, b, out: b)},
            formula="a * b",
            declared=False,
        )
    with pytest.raises(ValueError, match="has no code"):
        Op(
            "codeless",
            np.exp,
            derivatives={"x": local("out", None)},
            formula="exp(x)",
            declared=False,
        )
    with pytest.raises(ValueError, match="unknown inputs"):
        Op(
            "typo",
            np.exp,
            derivatives={"y": local("out", lambda x, out: out)},
            formula="exp(x)",
            declared=False,
        )
    before = len(declared_ops())
    Op(
        "user_op",
        np.exp,
        derivatives={"x": local("out", lambda x, out: out)},
        formula="exp(x)",
        declared=False,
    )
    assert len(declared_ops()) == before  # an op made for a user is not one of chainrule's


# ---- forward formulas against the forward's code ----


def forward_oracles(p):
    """What the calls in forward formulas mean, with the node's params `p`: NumPy, SciPy and
    PyTorch, never chainrule."""
    t = torch.from_numpy
    F = torch.nn.functional

    def index_put(x, value):
        out = np.array(x)
        out[p["index"]] = value
        return out

    def conv2d(x, weight, bias=None):
        b = None if bias is None else t(np.asarray(bias))
        return F.conv2d(t(np.asarray(x)), t(np.asarray(weight)), b, **_conv_params(p)).numpy()

    def norm(x):
        return torch.linalg.vector_norm(
            t(np.asarray(x)), ord=p.get("p", 2), dim=p["dim"], keepdim=p["keepdim"]
        ).numpy()

    def cross_entropy(x):
        loss = F.cross_entropy(t(np.asarray(x)), t(p["index"]), reduction="sum")
        return (loss * p["scale"]).numpy()

    reduce = {"axis": p.get("dim"), "keepdims": p.get("keepdim")}
    names = {
        "maximum": np.maximum,
        "minimum": np.minimum,
        "exp": np.exp,
        "log": np.log,
        "log1p": np.log1p,
        "sqrt": np.sqrt,
        "abs": np.abs,
        "sin": np.sin,
        "cos": np.cos,
        "tanh": np.tanh,
        "erf": special.erf,
        "sign": np.sign,
        "sigmoid": lambda x: torch.sigmoid(t(np.asarray(x))).numpy(),
        "relu": lambda x: torch.relu(t(np.asarray(x))).numpy(),
        "gelu": lambda x, approximate="none": F.gelu(
            t(np.asarray(x)), approximate=approximate
        ).numpy(),
        "where": np.where,
        "logical_and": np.logical_and,
        "logical_or": np.logical_or,
        "logical_not": np.logical_not,
        "isnan": np.isnan,
        "isfinite": np.isfinite,
        "getitem": lambda x: np.asarray(x)[p["index"]],
        "index_add": lambda g: index_add(np.zeros(p["shape"]), p["index"], g),
        "index_put": index_put,
        "scatter_add": lambda g: scatter_add(np.zeros(p["shape"]), p["dim"], p["index"], g),
        "pad_into": lambda g: pad_into(g, p["shape"], p["dim"], p["start"]),
        "narrow": lambda x: narrow(x, p["dim"], p["start"], p["length"]),
        "gather": lambda x: gather(x, p["dim"], p["index"]),
        "reshape": lambda x: np.reshape(x, p["shape"]),
        "transpose": lambda x: np.swapaxes(x, p["dim0"], p["dim1"]),
        "permute": lambda x: np.transpose(x, p["axes"]),
        "broadcast_to": lambda x: np.broadcast_to(x, p["shape"]),
        "sum_to": lambda x: t(np.asarray(x)).sum_to_size(p["shape"]).numpy(),
        "softmax": lambda x: torch.softmax(t(np.asarray(x)), p["dim"]).numpy(),
        "log_softmax": lambda x: torch.log_softmax(t(np.asarray(x)), p["dim"]).numpy(),
        "cross_entropy": cross_entropy,
        "tril": lambda x: torch.tril(t(np.asarray(x)), p["diagonal"]).numpy(),
        "triu": lambda x: torch.triu(t(np.asarray(x)), p["diagonal"]).numpy(),
        "roll": lambda x: torch.roll(t(np.asarray(x)), p["shifts"], p["dims"]).numpy(),
        "flip": lambda x: torch.flip(t(np.asarray(x)), p["dims"]).numpy(),
        "cumsum": lambda x: torch.cumsum(t(np.asarray(x)), p["dim"]).numpy(),
    }
    if "dim" in p and "keepdim" in p:  # the reductions
        names.update(
            sum=lambda x: np.sum(x, **reduce),
            mean=lambda x: np.mean(x, **reduce),
            var=lambda x: np.var(x, ddof=p["correction"], **reduce),
            std=lambda x: np.std(x, ddof=p["correction"], **reduce),
            amax=lambda x: np.amax(x, **reduce),
            amin=lambda x: np.amin(x, **reduce),
            prod=lambda x: np.prod(x, **reduce),
            logsumexp=lambda x: special.logsumexp(x, **reduce),
            norm=norm,
        )
    if "stride" in p and "groups" in p:
        helpers = conv_helpers(p)
        names.update(
            conv2d=conv2d,
            conv2d_grad_input=lambda g, w: helpers["conv2d_grad_input"](g, w, p["input_shape"]),
            conv2d_grad_weight=lambda g, x: helpers["conv2d_grad_weight"](g, x, p["weight_shape"]),
        )
    if "reverse" in p:  # the recurrent ops
        oracle = {k: p[k] for k in ("reverse", "nonlinearity") if k in p}
        for kind in ("lstm", "gru", "rnn"):
            names[kind] = _scan_oracles(kind, oracle)[0]
    if "kernel" in p:
        names["max_pool2d"] = lambda x: F.max_pool2d(
            t(np.asarray(x)), p["kernel"], p["stride"], p["padding"], p["dilation"]
        ).numpy()
    if "subscripts" in p:
        names["einsum"] = lambda *xs: np.einsum(",".join(p["subscripts"]) + "->" + p["output"], *xs)
    if "offsets" in p:
        names["cat"] = lambda *xs: np.concatenate(xs, axis=p["dim"])
    if "min" in p:
        names["clamp"] = lambda x: np.clip(x, p["min"], p["max"])
    if "beta" in p:
        names["softplus"] = lambda x: F.softplus(
            t(np.asarray(x)), beta=p["beta"], threshold=p["threshold"]
        ).numpy()
    return names


def _forward_cases():
    for key, op in all_ops():
        for r, row in enumerate(SPECS.get(key, [])):
            if len(row.inputs) == len(op.inputs):  # a family row is for one operand count
                yield pytest.param(op, row, id=f"{key}[{r}:{row.label}]")


@pytest.mark.parametrize(("op", "row"), list(_forward_cases()))
def test_forward_formula_equals_forward_code(op, row):
    inputs = [np.array(v) if isinstance(v, np.ndarray) else v for v in row.inputs.values()]
    code = np.asarray(op.forward(*inputs, **row.params))
    names = forward_oracles(row.params)
    names.update(zip(op.inputs, [arr(x) if isinstance(x, np.ndarray) else x for x in inputs]))
    missing = {name: None for name, x in zip(op.inputs, inputs) if x is None}
    tree = expr.drop_missing(expr.substitute(expr.parse(op.formula), missing))
    formula = np.asarray(expr.evaluate(tree, names))
    where = f"{op.key}: formula {op.formula!r}, row {row.label!r}"
    assert formula.shape == code.shape, f"{where}: shape {formula.shape}, code {code.shape}"
    if code.dtype.kind == "f":
        np.testing.assert_allclose(formula, code, rtol=1e-12, atol=1e-12, err_msg=where)
    else:
        np.testing.assert_array_equal(formula, code, err_msg=where)


# ---- derivative formulas against the rules' code ----


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
        if not op.differentiable:
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


def _factor_cases():
    for key, op in all_ops():
        for i, d in enumerate(op.derivatives):
            if d is not None and d.factor is not None:
                for r, row in enumerate(SPECS[key]):
                    yield pytest.param(op, row, i, id=f"{key}[{r}:{row.label}]-{op.inputs[i]}")


@pytest.mark.parametrize(("op", "row", "i"), list(_factor_cases()))
def test_declared_factor_is_what_the_rule_multiplies_the_spread_gradient_by(op, row, i):
    """A VJP that declares a per-element factor (the explainer shows it as a product's factor)
    sends each input element g's matching element times that factor."""
    d = op.derivatives[i]
    inputs = [np.array(v) if isinstance(v, np.ndarray) else v for v in row.inputs.values()]
    out = np.asarray(op.forward(*inputs, **row.params))
    g = _real(out.shape, 98)
    x = inputs[i]
    factor = expr.evaluate(expr.parse(d.factor), dict(row.params))
    p = row.params
    spread = array_or_tensor.unreduce(g, x.shape, p["dim"], p["keepdim"]) if "dim" in p else g
    rule = np.asarray(d.fn(g, *inputs, out, **p))
    # in the rule's dtype: a cast's backward casts g back to the input's dtype
    expected = np.asarray(spread * factor).astype(rule.dtype)
    np.testing.assert_allclose(rule, expected, rtol=1e-12, err_msg=op.key)


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

SYMPY_NAMES.update(
    relu=lambda z: sympy.Piecewise((z, z > 0), (0, True)),
    softplus=lambda z: sympy.Piecewise(
        (z, beta_ * z > threshold_), (sympy.log(1 + sympy.exp(beta_ * z)) / beta_, True)
    ),
    gelu=lambda z, approximate="none": (
        z * (1 + sympy.erf(z / sympy.sqrt(2))) / 2
        if approximate == "none"
        else z
        / 2
        * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (z + sympy.Float("0.044715") * z**3)))
    ),
)
SYMBOLS = {"x": x_, "a": a_, "b": b_}
# Elementwise ops whose derivative is piecewise constant: SymPy's derivative of their forward is
# a Piecewise of constants with the ties at measure zero; their rows above check them.
PIECEWISE_CONSTANT = {"maximum", "minimum", "relu", "clamp"}


def sympy_forward(op):
    """The op's forward formula as a SymPy expression in its input symbols."""
    names = dict(SYMPY_NAMES)
    names.update(SYMBOLS)
    return expr.evaluate(expr.parse(op.formula), names)


def _sympy_cases():
    for key, op in all_ops():
        if not op.elementwise or key in PIECEWISE_CONSTANT:
            continue
        for name, d in zip(op.inputs, op.derivatives, strict=True):
            if d is not None and d.kind == LOCAL:
                yield pytest.param(key, op, name, d.formula, sympy_forward(op), id=f"{key}-{name}")


def test_sympy_checks_every_smooth_elementwise_op_with_a_local_formula():
    """A new elementwise op with a local derivative is checked by SymPy unless it is named above."""
    checked = {values[0] for values in (case.values for case in _sympy_cases())}
    smooth = {
        key
        for key, op in all_ops()
        if op.elementwise and any(d is not None and d.kind == LOCAL for d in op.derivatives)
    }
    assert smooth - PIECEWISE_CONSTANT == checked
    assert {"mul", "div", "pow", "exp", "tanh", "softplus", "gelu", "gelu[tanh]"} <= checked


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
                if key not in ("log", "sqrt", "log1p")
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
