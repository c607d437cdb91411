"""Every operation of API.md's "Tensors" and "Operations" sections against PyTorch.

The table holds one row per op and form (function `m.op(x)` and method `x.op()` where PyTorch has
both); each row runs with `m` = chainrule and `m` = torch on the same data, in float64 and float32,
and compares the forward values, dtypes, the gradients of every input for a random upstream
gradient, and (float64) the second-order gradients of a random linear functional of those.
Every row holds to conftest's tolerances: relative 1e-10 in float64 (no row needed more), 2e-5 in
float32. test_ops_semantics.py covers what a table cannot: broadcasting and dtype promotion with
Python numbers and NumPy arrays, indexing forms, named (values, indices) pairs, ties, zeros in
prod, the masked-NaN `where`, special values, and losses at large logits.
"""

import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from conftest import as_array, assert_close

import chainrule as cr

F = "nn.functional"


def fn_of(m, path):
    """`m.nn.functional` for either library."""
    for part in path.split("."):
        m = getattr(m, part)
    return m


def Fn(m):
    return fn_of(m, F)


# ---- input domains: where each op is smooth, so finite gradients are comparable ----


def _domain(rng, shape, kind):
    if kind == "real":
        return rng.standard_normal(shape)
    if kind == "positive":
        return np.abs(rng.standard_normal(shape)) + 0.5
    if kind == "nonzero":  # away from the kink of abs, relu, sign, clamp at 0
        return np.sign(rng.standard_normal(shape)) * (rng.uniform(0.2, 2.0, shape))
    if kind == "distinct":  # no ties, so max/min pick one element, as in PyTorch
        n = int(np.prod(shape))
        return (rng.permutation(n) + rng.uniform(0.1, 0.4, n)).reshape(shape) / n
    if kind == "unit":
        return rng.uniform(-0.9, 0.9, shape)
    raise ValueError(kind)


@dataclass
class Case:
    name: str
    fn: object  # fn(m, *inputs) with m = chainrule or torch
    shapes: tuple
    domain: object = "real"  # one kind, or one per input
    second_order: bool = True
    grads: tuple = field(default=None)  # which inputs require grad; all by default

    def inputs(self, dtype):
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        kinds = self.domain if isinstance(self.domain, tuple) else (self.domain,) * len(self.shapes)
        return [_domain(rng, s, k).astype(dtype) for s, k in zip(self.shapes, kinds, strict=True)]


def unary_cases(name, shape=(3, 4), domain="real", method=True, fn_path=None):
    """Function and method forms of a one-input op (the function from `fn_path` if given)."""
    if fn_path is None:
        rows = [Case(name, lambda m, x: getattr(m, name)(x), (shape,), domain)]
    else:
        rows = [
            Case(f"F.{name}", lambda m, x: getattr(fn_of(m, fn_path), name)(x), (shape,), domain)
        ]
    if method:
        rows.append(Case(f"{name}.method", lambda m, x: getattr(x, name)(), (shape,), domain))
    return rows


CASES = []
for _name, _domain_kind in [
    ("exp", "real"),
    ("log", "positive"),
    ("log1p", "positive"),
    ("sqrt", "positive"),
    ("abs", "nonzero"),
    ("sin", "real"),
    ("cos", "real"),
    ("tanh", "real"),
    ("sigmoid", "real"),
    ("relu", "nonzero"),
    ("sign", "nonzero"),
    ("erf", "real"),
    ("neg", "real"),
]:
    CASES += unary_cases(_name, domain=_domain_kind)
for _name, _domain_kind in [
    ("relu", "nonzero"),
    ("sigmoid", "real"),
    ("tanh", "real"),
    ("softplus", "real"),
    ("gelu", "real"),
]:
    CASES += unary_cases(_name, domain=_domain_kind, method=False, fn_path=F)

CASES += [
    # chainrule has softplus and gelu as functions too; PyTorch's are in F only.
    Case(
        "softplus.cr_function",
        lambda m, x: (m.softplus if m is cr else Fn(m).softplus)(x),
        ((3, 4),),
    ),
    Case("gelu.cr_function", lambda m, x: (m.gelu if m is cr else Fn(m).gelu)(x), ((3, 4),)),
    Case(
        "softplus.beta_threshold",
        lambda m, x: Fn(m).softplus(4 * x, beta=2.0, threshold=3.0),
        ((4, 5),),
        "nonzero",
    ),
    Case("softplus.large", lambda m, x: Fn(m).softplus(x * 60.0), ((4, 5),), "nonzero"),
    Case("gelu.tanh", lambda m, x: Fn(m).gelu(x * 3, approximate="tanh"), ((4, 5),)),
    Case("gelu.none_wide", lambda m, x: Fn(m).gelu(x * 3, approximate="none"), ((4, 5),)),
    Case("clamp.both", lambda m, x: m.clamp(x, -0.5, 0.7), ((4, 5),), "nonzero"),
    Case("clamp.min_only", lambda m, x: m.clamp(x, min=0.3), ((4, 5),), "nonzero"),
    Case("clamp.max_only.method", lambda m, x: x.clamp(max=-0.3), ((4, 5),), "nonzero"),
    Case(
        "clamp.tensor_bounds",
        lambda m, x, lo, hi: m.clamp(x, lo - 1, hi + 1),
        ((4, 5), (1, 5), (4, 1)),
    ),
    Case("clip.method", lambda m, x: x.clip(-0.5, 0.5), ((4, 5),), "nonzero"),
    Case("maximum", lambda m, a, b: m.maximum(a, b), ((3, 4), (3, 4))),
    Case("maximum.broadcast.method", lambda m, a, b: a.maximum(b), ((3, 4), (4,))),
    Case("minimum", lambda m, a, b: m.minimum(a, b), ((3, 4), (1, 4))),
    Case("minimum.method", lambda m, a, b: a.minimum(b), ((2, 3, 4), (3, 1))),
    Case("where", lambda m, a, b: m.where(a > b, a, b), ((3, 4), (3, 4))),
    Case("where.broadcast", lambda m, a, b: m.where(a > 0, a * 2, b), ((3, 4), (4,))),
    Case("where.method", lambda m, a, b: a.where(a > 0, b), ((3, 4), (3, 1))),
    Case("where.scalar_branch", lambda m, a: m.where(a > 0, a, 0.5), ((3, 4),)),
    Case("pow.tensor_tensor", lambda m, a, b: m.pow(a, b), ((3, 4), (3, 4)), ("positive", "real")),
    Case("pow.method", lambda m, a, b: a.pow(b), ((3, 4), (4,)), ("positive", "real")),
    Case("pow.operator_int", lambda m, a: a**3, ((3, 4),)),
    Case("pow.operator_float", lambda m, a: a**2.5, ((3, 4),), "positive"),
    Case("pow.negative_base_int_exponent", lambda m, a: a**-2, ((3, 4),), "nonzero"),
    Case("pow.scalar_base", lambda m, a: 1.7**a, ((3, 4),)),
    Case("add", lambda m, a, b: m.add(a, b), ((3, 4), (3, 4))),
    Case("add.method_alpha", lambda m, a, b: a.add(b, alpha=2.5), ((3, 4), (4,))),
    Case("sub", lambda m, a, b: m.sub(a, b), ((3, 4), (3, 1))),
    Case("sub.method_alpha", lambda m, a, b: a.sub(b, alpha=-0.5), ((3, 4), (1, 4))),
    Case("mul", lambda m, a, b: m.mul(a, b), ((3, 4), (3, 4))),
    Case("mul.method", lambda m, a, b: a.mul(b), ((2, 1, 3), (4, 3))),
    Case("div", lambda m, a, b: m.div(a, b), ((3, 4), (3, 4)), ("real", "nonzero")),
    Case("div.method", lambda m, a, b: a.div(b), ((3, 4), (4,)), ("real", "nonzero")),
    Case(
        "operators",
        lambda m, a, b: (a + b) * (a - b) / (b * b + 1) - (-a) @ b.T @ a,
        ((3, 4), (3, 4)),
    ),
    Case("reflected_operators", lambda m, a: 2.0 - a + 3.0 * (1.0 / (a * a + 1.0)), ((3, 4),)),
    # PyTorch's aliases
    Case("absolute", lambda m, x: m.absolute(x), ((3, 4),), "nonzero"),
    Case("clip", lambda m, x: m.clip(x, -0.5, 0.5), ((3, 4),), "nonzero"),
    Case("negative", lambda m, x: m.negative(x), ((3, 4),)),
    Case("subtract", lambda m, a, b: m.subtract(a, b), ((3, 4), (4,))),
    Case("multiply", lambda m, a, b: m.multiply(a, b), ((3, 4), (3, 1))),
    Case("divide", lambda m, a, b: m.divide(a, b), ((3, 4), (4,)), ("real", "nonzero")),
    Case("true_divide", lambda m, a, b: m.true_divide(a, b), ((3, 4), (4,)), ("real", "nonzero")),
    Case("concat", lambda m, a, b: m.concat([a, b], 0), ((2, 4), (3, 4))),
    Case("concatenate", lambda m, a, b: m.concatenate([a, b], 1), ((2, 4), (2, 1))),
    Case("swapaxes", lambda m, x: m.swapaxes(x, 0, 2), ((2, 3, 4),)),
    Case("swapaxes.method", lambda m, x: x.swapaxes(1, 2), ((2, 3, 4),)),
    Case("t", lambda m, x: m.t(x), ((3, 4),)),
    Case("t.method", lambda m, x: x.t(), ((3, 4),)),
    Case("narrow", lambda m, x: m.narrow(x, 0, 1, 2), ((3, 5),)),
    # reductions
    Case("sum", lambda m, x: m.sum(x), ((3, 4),)),
    Case("sum.dim", lambda m, x: m.sum(x, 1), ((3, 4, 2),)),
    Case("sum.dims_keepdim.method", lambda m, x: x.sum((0, 2), keepdim=True), ((3, 4, 2),)),
    Case("sum.negative_dim.method", lambda m, x: x.sum(dim=-1), ((3, 4, 2),)),
    Case("mean", lambda m, x: m.mean(x), ((3, 4),)),
    Case("mean.dim_keepdim", lambda m, x: m.mean(x, 0, keepdim=True), ((3, 4),)),
    Case("mean.dims.method", lambda m, x: x.mean((1, 2)), ((3, 4, 2),)),
    Case("var", lambda m, x: m.var(x), ((3, 4),)),
    Case("var.dim_correction0", lambda m, x: m.var(x, 1, correction=0), ((3, 4),)),
    Case(
        "var.dims_correction2.method",
        lambda m, x: x.var((0, 2), correction=2, keepdim=True),
        ((3, 4, 2),),
    ),
    Case("var.unbiased_false.method", lambda m, x: x.var(0, unbiased=False), ((3, 4),)),
    Case("std", lambda m, x: m.std(x), ((3, 4),)),
    Case("std.dim_correction0", lambda m, x: m.std(x, 0, correction=0), ((3, 4),)),
    Case("std.keepdim.method", lambda m, x: x.std(-1, keepdim=True), ((3, 4, 2),)),
    Case("amax", lambda m, x: m.amax(x), ((3, 4),), "distinct"),
    Case("amax.dim", lambda m, x: m.amax(x, 1), ((3, 4),), "distinct"),
    Case(
        "amax.dims_keepdim.method",
        lambda m, x: x.amax((0, 2), keepdim=True),
        ((3, 4, 2),),
        "distinct",
    ),
    Case("amin", lambda m, x: m.amin(x, 0), ((3, 4),), "distinct"),
    Case("amin.method", lambda m, x: x.amin(-1, keepdim=True), ((3, 4),), "distinct"),
    Case("max.all", lambda m, x: m.max(x), ((3, 4),), "distinct"),
    Case("max.dim.values", lambda m, x: m.max(x, 1).values, ((3, 4),), "distinct"),
    Case("max.dim_keepdim.method", lambda m, x: x.max(0, keepdim=True)[0], ((3, 4),), "distinct"),
    Case("min.all.method", lambda m, x: x.min(), ((3, 4),), "distinct"),
    Case("max.binary", lambda m, a, b: m.max(a, b), ((3, 4), (4,))),
    Case("min.binary.method", lambda m, a, b: a.min(b), ((3, 4), (3, 1))),
    Case("min.dim.values", lambda m, x: m.min(x, -1).values, ((2, 3, 4),), "distinct"),
    Case("prod", lambda m, x: m.prod(x), ((3, 4),), "nonzero"),
    Case("prod.dim", lambda m, x: m.prod(x, 1), ((3, 4),), "nonzero"),
    Case("prod.keepdim.method", lambda m, x: x.prod(0, keepdim=True), ((3, 4),), "nonzero"),
    Case("logsumexp", lambda m, x: m.logsumexp(x, 1), ((3, 4),)),
    Case(
        "logsumexp.dims_keepdim.method",
        lambda m, x: x.logsumexp((0, 1), keepdim=True),
        ((3, 4, 2),),
    ),
    Case("logsumexp.large", lambda m, x: m.logsumexp(x * 1000, 0), ((3, 4),)),
    Case("norm", lambda m, x: m.norm(x), ((3, 4),)),
    Case("norm.dim.method", lambda m, x: x.norm(dim=1), ((3, 4),)),
    Case("norm.p1", lambda m, x: m.norm(x, p=1), ((3, 4),), "nonzero"),
    Case(
        "norm.p1_dim_keepdim.method",
        lambda m, x: x.norm(p=1, dim=0, keepdim=True),
        ((3, 4),),
        "nonzero",
    ),
    Case("norm.pinf", lambda m, x: m.norm(x, p=float("inf")), ((3, 4),), "distinct"),
    Case("norm.pinf_dim", lambda m, x: m.norm(x, p=float("inf"), dim=1), ((3, 4),), "distinct"),
    Case("norm.p3", lambda m, x: m.norm(x, p=3), ((3, 4),), "nonzero"),
    Case("norm.p3_dim.method", lambda m, x: x.norm(p=3, dim=1), ((3, 4),), "nonzero"),
    # shape
    Case("reshape", lambda m, x: m.reshape(x, (4, 3)), ((3, 4),)),
    Case("reshape.method_sizes", lambda m, x: x.reshape(2, -1, 3), ((3, 4),)),
    Case("view.method", lambda m, x: x.view(12), ((3, 4),)),
    Case("view.method_tuple", lambda m, x: x.view((6, 2)), ((3, 4),)),
    Case("transpose", lambda m, x: m.transpose(x, 0, 2), ((2, 3, 4),)),
    Case("transpose.method", lambda m, x: x.transpose(-1, 1), ((2, 3, 4),)),
    Case("permute", lambda m, x: m.permute(x, (2, 0, 1)), ((2, 3, 4),)),
    Case("permute.method", lambda m, x: x.permute(1, 2, 0), ((2, 3, 4),)),
    Case("T", lambda m, x: x.T, ((3, 4),)),
    Case("mT", lambda m, x: x.mT, ((2, 3, 4),)),
    Case("expand.method", lambda m, x: x.expand(2, 3, 4), ((3, 1),)),
    Case("expand.method_keep", lambda m, x: x.expand(-1, 4), ((3, 1),)),
    Case("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 3, 4)), ((1, 4),)),
    Case("broadcast_to.method", lambda m, x: x.broadcast_to((3, 4)), ((4,),)),
    Case("squeeze", lambda m, x: m.squeeze(x), ((3, 1, 4, 1),)),
    Case("squeeze.dim.method", lambda m, x: x.squeeze(1), ((3, 1, 4, 1),)),
    Case("unsqueeze", lambda m, x: m.unsqueeze(x, 1), ((3, 4),)),
    Case("unsqueeze.negative.method", lambda m, x: x.unsqueeze(-1), ((3, 4),)),
    Case("flatten", lambda m, x: m.flatten(x), ((2, 3, 4),)),
    Case("flatten.range.method", lambda m, x: x.flatten(1, 2), ((2, 3, 4, 2),)),
    Case("cat", lambda m, a, b: m.cat([a, b], 1), ((3, 2), (3, 4))),
    Case(
        "cat.three_negative_dim",
        lambda m, a, b, c: m.cat((a, b, c), dim=-1),
        ((2, 3, 1), (2, 3, 2), (2, 3, 3)),
    ),
    Case("stack", lambda m, a, b: m.stack([a, b]), ((3, 4), (3, 4))),
    Case("stack.dim", lambda m, a, b, c: m.stack([a, b, c], dim=2), ((3, 4), (3, 4), (3, 4))),
    Case("split", lambda m, x: m.split(x, 2, 1), ((3, 5),)),
    Case("split.sections.method", lambda m, x: x.split([1, 3, 1], dim=1), ((3, 5),)),
    Case("chunk", lambda m, x: m.chunk(x, 3, 0), ((7, 2),)),
    Case("chunk.method", lambda m, x: x.chunk(2, dim=1), ((3, 5),)),
    Case("narrow.method", lambda m, x: x.narrow(1, 1, 2), ((3, 5),)),
    Case("clone", lambda m, x: m.clone(x) * 2, ((3, 5),)),
    Case("to.float32_and_back", lambda m, x: x.to(m.float32).double() * x, ((3, 5),)),
    Case("float.method", lambda m, x: x.float() * 3, ((3, 5),)),
    # linear algebra
    Case("matmul.2d", lambda m, a, b: m.matmul(a, b), ((3, 4), (4, 5))),
    Case("matmul.1d_1d", lambda m, a, b: m.matmul(a, b), ((4,), (4,))),
    Case("matmul.1d_2d", lambda m, a, b: a @ b, ((4,), (4, 5))),
    Case("matmul.2d_1d", lambda m, a, b: a @ b, ((3, 4), (4,))),
    Case("matmul.batched", lambda m, a, b: a.matmul(b), ((2, 3, 4), (2, 4, 5))),
    Case("matmul.broadcast_batch", lambda m, a, b: a @ b, ((2, 1, 3, 4), (5, 4, 2))),
    Case("matmul.batch_times_matrix", lambda m, a, b: a @ b, ((2, 3, 4), (4, 5))),
    Case("matmul.matrix_times_batch", lambda m, a, b: a @ b, ((3, 4), (2, 4, 5))),
    Case("matmul.1d_batched", lambda m, a, b: a @ b, ((4,), (2, 4, 5))),
    Case("matmul.batched_1d", lambda m, a, b: a @ b, ((2, 3, 4), (4,))),
    Case("mm", lambda m, a, b: m.mm(a, b), ((3, 4), (4, 2))),
    Case("bmm", lambda m, a, b: m.bmm(a, b), ((2, 3, 4), (2, 4, 2))),
    Case("dot", lambda m, a, b: m.dot(a, b), ((4,), (4,))),
    Case("outer", lambda m, a, b: m.outer(a, b), ((3,), (4,))),
    Case("einsum.matmul", lambda m, a, b: m.einsum("ij,jk->ik", a, b), ((3, 4), (4, 5))),
    Case("einsum.batch", lambda m, a, b: m.einsum("bij,bjk->bik", a, b), ((2, 3, 4), (2, 4, 5))),
    Case("einsum.implicit_output", lambda m, a, b: m.einsum("ij,jk", a, b), ((3, 4), (4, 5))),
    Case("einsum.full_reduction", lambda m, a: m.einsum("ij->", a), ((3, 4),)),
    Case(
        "einsum.reduce_one_operand_axis", lambda m, a, b: m.einsum("ij,k->ik", a, b), ((3, 4), (5,))
    ),
    Case("einsum.outer", lambda m, a, b: m.einsum("i,j->ij", a, b), ((3,), (4,))),
    Case(
        "einsum.ellipsis", lambda m, a, b: m.einsum("...ij,jk->...ik", a, b), ((2, 3, 3, 4), (4, 5))
    ),
    Case(
        "einsum.three_operands",
        lambda m, a, b, c: m.einsum("ij,jk,kl->il", a, b, c),
        ((2, 3), (3, 4), (4, 2)),
    ),
    Case("einsum.list_operands", lambda m, a, b: m.einsum("i,i->", [a, b]), ((4,), (4,))),
    Case("einsum.transpose", lambda m, a: m.einsum("ijk->kji", a), ((2, 3, 4),)),
    Case("einsum.trace", lambda m, a: m.einsum("ii->", a), ((3, 3),)),
    Case("einsum.diagonal", lambda m, a: m.einsum("ii->i", a), ((3, 3),)),
    Case("einsum.batch_trace", lambda m, a: m.einsum("bii->b", a), ((2, 3, 3),)),
    Case(
        "einsum.diagonal_times_vector",
        lambda m, a, b: m.einsum("iij,i->j", a, b),
        ((3, 3, 2), (3,)),
    ),
    Case(
        "einsum.broadcast_size_one",
        lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
        ((2, 1, 3, 4), (5, 4, 2)),
    ),
    # indexing
    Case("gather", lambda m, x: m.gather(x, 1, m.tensor([[0, 0], [3, 1], [2, 2]])), ((3, 4),)),
    Case("gather.method", lambda m, x: x.gather(0, m.tensor([[0, 2, 2, 1]])), ((3, 4),)),
    # masks, triangles, rolls, running sums, sorting
    Case("masked_fill", lambda m, x: m.masked_fill(x, x > 0.3, -2.5), ((3, 4),), "nonzero"),
    Case(
        "masked_fill.broadcast_mask.method",
        lambda m, x, y: x.masked_fill(y[0] > 0, float("-inf")).exp() * x,
        ((3, 4), (1, 4)),
        grads=(True, False),
    ),
    Case(
        "masked_fill.tensor_value.method",
        lambda m, x, v: x.masked_fill(x < 0, v.sum()),
        ((3, 4), (2,)),
    ),
    Case(
        "masked_fill_.method",
        lambda m, x: (x * 1.0).masked_fill_(x > 0, 0.5) * x,
        ((3, 4),),
        "nonzero",
    ),
    Case("tril", lambda m, x: m.tril(x), ((4, 4),)),
    Case("tril.diagonal.method", lambda m, x: x.tril(diagonal=-1), ((2, 3, 4),)),
    Case("triu", lambda m, x: m.triu(x, 1), ((3, 5),)),
    Case("triu.batched.method", lambda m, x: x.triu(diagonal=-2), ((2, 4, 3),)),
    Case("roll", lambda m, x: m.roll(x, 2), ((3, 4),)),
    Case("roll.dims", lambda m, x: m.roll(x, (1, -2), (0, 2)), ((3, 4, 5),)),
    Case("roll.dim.method", lambda m, x: x.roll(-1, 1), ((3, 4),)),
    Case("flip", lambda m, x: m.flip(x, (0, 2)), ((2, 3, 4),)),
    Case("flip.method", lambda m, x: x.flip(-1), ((3, 4),)),
    Case("cumsum", lambda m, x: m.cumsum(x, 1), ((3, 4),)),
    Case("cumsum.dim0.method", lambda m, x: x.cumsum(dim=0) * x, ((3, 4, 2),)),
    Case("cumsum.negative_dim.method", lambda m, x: x.cumsum(-1), ((2, 5),)),
    Case("sort", lambda m, x: m.sort(x), ((3, 4),), "distinct"),
    Case("sort.descending.method", lambda m, x: x.sort(0, descending=True), ((3, 4),), "distinct"),
    Case(
        "sort.stable_dim.method",
        lambda m, x: x.sort(dim=1, stable=True).values * x,
        ((2, 5, 3),),
        "distinct",
    ),
    Case("topk", lambda m, x: m.topk(x, 2), ((3, 5),), "distinct"),
    Case(
        "topk.smallest.method", lambda m, x: x.topk(3, dim=0, largest=False), ((4, 5),), "distinct"
    ),
    Case("topk.values.method", lambda m, x: x.topk(1).values * x, ((3, 5),), "distinct"),
    # attention
    Case(
        "F.scaled_dot_product_attention",
        lambda m, q, k, v: Fn(m).scaled_dot_product_attention(q, k, v),
        ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2)),
    ),
    Case(
        "F.scaled_dot_product_attention.causal_scale",
        lambda m, q, k, v: Fn(m).scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
        ((2, 5, 3), (2, 5, 3), (2, 5, 4)),
    ),
    Case(
        "F.scaled_dot_product_attention.bool_mask_dead_row",
        lambda m, q, k, v, b: Fn(m).scaled_dot_product_attention(
            q, k, v, attn_mask=(b > 0).masked_fill(m.arange(4)[:, None] == 1, False)
        ),
        ((2, 4, 3), (2, 6, 3), (2, 6, 2), (4, 6)),
        grads=(True, True, True, False),
    ),
    Case(
        "F.scaled_dot_product_attention.float_mask_dropout0",
        lambda m, q, k, v, b: Fn(m).scaled_dot_product_attention(
            q, k, v, attn_mask=b, dropout_p=0.0
        ),
        ((1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3), (4, 4)),
    ),
    Case(
        "F.scaled_dot_product_attention.gqa",
        lambda m, q, k, v: Fn(m).scaled_dot_product_attention(q, k, v, enable_gqa=True),
        ((1, 4, 3, 2), (1, 2, 5, 2), (1, 2, 5, 3)),
    ),
    # nn.functional
    Case("F.linear", lambda m, x, w, b: Fn(m).linear(x, w, b), ((5, 3), (4, 3), (4,))),
    Case("F.linear.no_bias", lambda m, x, w: Fn(m).linear(x, w), ((5, 3), (4, 3))),
    Case("F.linear.batched", lambda m, x, w, b: Fn(m).linear(x, w, b), ((2, 5, 3), (4, 3), (4,))),
    Case("F.linear.vector", lambda m, x, w, b: Fn(m).linear(x, w, b), ((3,), (4, 3), (4,))),
    Case("F.softmax", lambda m, x: Fn(m).softmax(x, dim=1), ((3, 4),)),
    Case("F.softmax.dim0", lambda m, x: Fn(m).softmax(x, 0), ((3, 4, 2),)),
    Case("softmax", lambda m, x: m.softmax(x, -1), ((3, 4),)),
    Case("softmax.method", lambda m, x: x.softmax(1), ((3, 4),)),
    Case("F.log_softmax", lambda m, x: Fn(m).log_softmax(x, dim=1), ((3, 4),)),
    Case("log_softmax.method", lambda m, x: x.log_softmax(0), ((3, 4),)),
    Case("log_softmax.large", lambda m, x: m.log_softmax(x * 1e4, 1), ((3, 4),)),
    Case("F.mse_loss", lambda m, x, y: Fn(m).mse_loss(x, y), ((3, 4), (3, 4))),
    Case("F.mse_loss.sum", lambda m, x, y: Fn(m).mse_loss(x, y, reduction="sum"), ((3, 4), (3, 4))),
    Case(
        "F.mse_loss.none", lambda m, x, y: Fn(m).mse_loss(x, y, reduction="none"), ((3, 4), (3, 4))
    ),
    Case("F.l1_loss", lambda m, x, y: Fn(m).l1_loss(x, y), ((3, 4), (3, 4))),
    Case("F.l1_loss.sum", lambda m, x, y: Fn(m).l1_loss(x, y, reduction="sum"), ((3, 4), (3, 4))),
    Case("F.l1_loss.none", lambda m, x, y: Fn(m).l1_loss(x, y, reduction="none"), ((3, 4), (3, 4))),
    Case("F.cross_entropy", lambda m, x: Fn(m).cross_entropy(x, m.tensor([0, 3, 1, 1])), ((4, 5),)),
    Case(
        "F.cross_entropy.sum",
        lambda m, x: Fn(m).cross_entropy(x, m.tensor([0, 3, 1, 1]), reduction="sum"),
        ((4, 5),),
    ),
    Case(
        "F.cross_entropy.none",
        lambda m, x: Fn(m).cross_entropy(x, m.tensor([0, 3, 1, 1]), reduction="none"),
        ((4, 5),),
    ),
    Case(
        "F.cross_entropy.label_smoothing",
        lambda m, x: Fn(m).cross_entropy(x, m.tensor([0, 3, 1, 1]), label_smoothing=0.1),
        ((4, 5),),
    ),
    Case(
        "F.cross_entropy.weight",
        lambda m, x, w: Fn(m).cross_entropy(x, m.tensor([0, 3, 1, 1]), weight=w.abs() + 0.5),
        ((4, 5), (5,)),
        grads=(True, False),
    ),
    Case(
        "F.cross_entropy.weight_smoothing_ignore",
        lambda m, x, w: Fn(m).cross_entropy(
            x, m.tensor([0, -100, 1, 4]), weight=w.abs() + 0.5, label_smoothing=0.3
        ),
        ((4, 5), (5,)),
        grads=(True, False),
    ),
    Case(
        "F.cross_entropy.ignore_index_sum",
        lambda m, x: Fn(m).cross_entropy(
            x, m.tensor([2, 1, 1, 0]), ignore_index=1, reduction="sum", label_smoothing=0.2
        ),
        ((4, 5),),
    ),
    Case(
        "F.cross_entropy.ignore_index_in_range",
        lambda m, x: Fn(m).cross_entropy(x, m.tensor([2, 1, 1, 0]), ignore_index=1),
        ((4, 5),),
    ),
    Case(
        "F.cross_entropy.spatial",
        lambda m, x: Fn(m).cross_entropy(x, m.tensor([[0, 2, 1], [1, 1, 0]])),
        ((2, 3, 3),),
    ),
    Case("F.cross_entropy.unbatched", lambda m, x: Fn(m).cross_entropy(x, m.tensor(2)), ((5,),)),
    Case(
        "F.cross_entropy.probabilities",
        lambda m, x, t: Fn(m).cross_entropy(x, t.softmax(1)),
        ((4, 5), (4, 5)),
    ),
    Case(
        "F.cross_entropy.probabilities_smoothing_weight_none",
        lambda m, x, t, w: Fn(m).cross_entropy(
            x, t.softmax(1), weight=w.abs() + 0.5, label_smoothing=0.25, reduction="none"
        ),
        ((4, 5), (4, 5), (5,)),
        grads=(True, True, False),
    ),
    Case(
        "F.cross_entropy.probabilities_sum",
        lambda m, x, t: Fn(m).cross_entropy(x, t.softmax(1), reduction="sum"),
        ((4, 5), (4, 5)),
    ),
    Case(
        "F.binary_cross_entropy_with_logits",
        lambda m, x, t: Fn(m).binary_cross_entropy_with_logits(x, t.sigmoid()),
        ((3, 4), (3, 4)),
    ),
    Case(
        "F.binary_cross_entropy_with_logits.weights",
        lambda m, x, t, w: Fn(m).binary_cross_entropy_with_logits(
            x, t.sigmoid(), weight=w.abs(), pos_weight=w.abs() + 1, reduction="sum"
        ),
        ((3, 4), (3, 4), (4,)),
        grads=(True, True, False),
    ),
    Case(
        "F.binary_cross_entropy_with_logits.none",
        lambda m, x, t: Fn(m).binary_cross_entropy_with_logits(
            x * 30, t.sigmoid(), reduction="none"
        ),
        ((3, 4), (3, 4)),
    ),
]

_IDS = [c.name for c in CASES]
assert len(_IDS) == len(set(_IDS)), "duplicate case names"


def _outputs(result):
    """The differentiable tensors an op call returns, in order."""
    items = list(result) if isinstance(result, tuple | list) else [result]
    return [t for t in items if t.dtype in (cr.float32, cr.float64, torch.float32, torch.float64)]


def _depends(gradient):
    """Whether a first-order gradient is a function of the inputs (recorded for second order)."""
    return gradient is not None and gradient.requires_grad


def run_case(case, dtype, second_order):
    arrays = case.inputs(dtype)
    grads = case.grads or (True,) * len(arrays)
    xs = [cr.tensor(a, requires_grad=g) for a, g in zip(arrays, grads, strict=True)]
    ts = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays, grads, strict=True)]
    ours, theirs = _outputs(case.fn(cr, *xs)), _outputs(case.fn(torch, *ts))
    assert len(ours) == len(theirs), f"{case.name}: {len(ours)} outputs, PyTorch {len(theirs)}"
    for k, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        assert_close(o, t, f"{case.name} [{dtype.__name__}] output {k}")

    rng = np.random.default_rng(1)
    seeds = [rng.standard_normal(t.shape).astype(dtype) for t in theirs]
    wrt = [i for i, g in enumerate(grads) if g]
    g_ours = cr.grad(
        ours,
        [xs[i] for i in wrt],
        [cr.tensor(s) for s in seeds],
        create_graph=second_order,
        allow_unused=True,
    )
    g_theirs = torch.autograd.grad(
        theirs,
        [ts[i] for i in wrt],
        [torch.tensor(s) for s in seeds],
        create_graph=second_order,
        allow_unused=True,
    )
    for i, a, e in zip(wrt, g_ours, g_theirs, strict=True):
        expected = torch.zeros_like(ts[i]) if e is None else e
        assert_close(a, expected, f"{case.name} [{dtype.__name__}] gradient of input {i}")
    if not second_order:
        return
    # Second order: the gradient of sum_i <grad_i, v_i> with respect to every input.
    vs = [rng.standard_normal(arrays[i].shape) for i in wrt]
    ours_used = [(g, v) for g, v in zip(g_ours, vs, strict=True) if _depends(g)]
    theirs_used = [(g, v) for g, v in zip(g_theirs, vs, strict=True) if _depends(g)]
    if not theirs_used:
        assert not ours_used, (
            f"{case.name}: chainrule's gradient depends on the inputs, PyTorch's not"
        )
        return
    s_ours = sum((g * cr.tensor(v)).sum() for g, v in ours_used)
    s_theirs = sum((g * torch.tensor(v)).sum() for g, v in theirs_used)
    if not isinstance(s_ours, cr.Tensor) or not s_ours.requires_grad:
        # Our gradients are constants: the second derivative must be zero in PyTorch too.
        gg = torch.autograd.grad(s_theirs, [ts[i] for i in wrt], allow_unused=True)
        for i, e in zip(wrt, gg, strict=True):
            if e is not None:
                assert_close(np.zeros(e.shape), e, f"{case.name} second order of input {i}")
        return
    gg_ours = cr.grad(s_ours, [xs[i] for i in wrt], allow_unused=True)
    gg_theirs = torch.autograd.grad(s_theirs, [ts[i] for i in wrt], allow_unused=True)
    for i, a, e in zip(wrt, gg_ours, gg_theirs, strict=True):
        expected = torch.zeros_like(ts[i]) if e is None else e
        actual = cr.zeros_like(xs[i]) if a is None else a
        assert_close(actual, expected, f"{case.name} second-order gradient of input {i}")


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_op_matches_pytorch_in_float64_to_second_order(case):
    run_case(case, np.float64, second_order=case.second_order)


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_op_matches_pytorch_in_float32(case):
    run_case(case, np.float32, second_order=False)


def test_every_api_operation_has_a_parity_row():
    """The table names every function and method of API.md's Operations section."""
    api = """
        exp log log1p sqrt abs sin cos tanh sigmoid relu softplus gelu clamp maximum minimum where
        pow sign sum mean var std amax amin prod logsumexp norm max min reshape view transpose
        permute T mT expand broadcast_to squeeze unsqueeze flatten cat stack split chunk matmul
        einsum F.linear F.relu F.softplus F.sigmoid F.tanh F.gelu F.softmax F.log_softmax
        F.mse_loss F.l1_loss F.cross_entropy F.binary_cross_entropy_with_logits
        masked_fill tril triu roll flip cumsum sort topk F.scaled_dot_product_attention
    """.split()
    covered = {
        c.name.split(".")[0] if not c.name.startswith("F.") else ".".join(c.name.split(".")[:2])
        for c in CASES
    }
    missing = [name for name in api if name not in covered]
    assert not missing, f"operations without a PyTorch parity row: {missing}"
    method_forms = {c.name.split(".")[0] for c in CASES if ".method" in c.name}
    have_methods = (
        "exp log log1p sqrt abs sin cos tanh sigmoid relu clamp maximum minimum where pow sign sum "
        "mean var std amax amin prod logsumexp norm max min reshape view transpose permute expand "
        "broadcast_to squeeze unsqueeze flatten split chunk softmax log_softmax masked_fill "
        "masked_fill_ tril triu roll flip cumsum sort topk"
    ).split()
    missing = [name for name in have_methods if name not in method_forms]
    assert not missing, f"method forms without a parity row: {missing}"


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_float32_gradients_stay_float32_to_second_order(case):
    """Under create_graph the backward is made of recorded ops whose dtypes nothing casts back:
    a NumPy float64 scalar inside a rule would turn float32 gradients into float64."""
    arrays = case.inputs(np.float32)
    grads = case.grads or (True,) * len(arrays)
    xs = [cr.tensor(a, requires_grad=g) for a, g in zip(arrays, grads, strict=True)]
    outs = _outputs(case.fn(cr, *xs))
    wrt = [xs[i] for i, g in enumerate(grads) if g]
    seeds = [cr.ones_like(o) for o in outs]
    first = cr.grad(outs, wrt, seeds, create_graph=True, allow_unused=True)
    for k, g in enumerate(first):
        assert g is None or g.dtype == cr.float32, f"{case.name}: gradient {k} is {g.dtype}"
    total = sum((g * g).sum() for g in first if _depends(g))
    if isinstance(total, cr.Tensor):
        for k, g in enumerate(cr.grad(total, wrt, allow_unused=True)):
            assert g is None or g.dtype == cr.float32, f"{case.name}: 2nd-order {k} is {g.dtype}"


def _third_order(lib, case, arrays, grads, rng_seed):
    """d/dx of <d/dx <d/dx <f, u>, v>, w>: exercises the derivatives of the backward's own ops."""
    rng = np.random.default_rng(rng_seed)
    make = cr.tensor if lib is cr else torch.tensor
    xs = [make(a, requires_grad=g) for a, g in zip(arrays, grads, strict=True)]
    wrt = [x for x, g in zip(xs, grads, strict=True) if g]
    grad = cr.grad if lib is cr else torch.autograd.grad
    outs = _outputs(case.fn(lib, *xs))
    seeds = [make(rng.standard_normal(tuple(o.shape))) for o in outs]
    current = grad(outs, wrt, seeds, create_graph=True, allow_unused=True)
    for _ in range(2):
        terms = [
            (g * make(rng.standard_normal(tuple(g.shape)))).sum() for g in current if _depends(g)
        ]
        if not terms:
            return [None] * len(wrt)
        current = grad(sum(terms), wrt, create_graph=True, allow_unused=True)
    return current


@pytest.mark.parametrize("case", [c for c in CASES if c.second_order], ids=lambda c: c.name)
def test_op_matches_pytorch_to_third_order_in_float64(case):
    arrays = case.inputs(np.float64)
    grads = case.grads or (True,) * len(arrays)
    ours = _third_order(cr, case, arrays, grads, 3)
    theirs = _third_order(torch, case, arrays, grads, 3)
    for k, (a, e) in enumerate(zip(ours, theirs, strict=True)):
        expected = np.zeros(1) if e is None else as_array(e)
        actual = np.zeros(1) if a is None else as_array(a)
        if e is None or a is None:  # one library knows the derivative is zero
            assert not np.any(expected) and not np.any(actual), f"{case.name} third order {k}"
            continue
        # Third derivatives are sums of products of the lower ones: roundoff of those (order 1)
        # stays in results that are often near 0 (std over 2 elements is piecewise linear), so
        # the absolute tolerance is 1e-8 rather than 1e-12 times the result.
        scale = float(np.max(np.abs(expected), initial=1.0))
        assert_close(a, e, f"{case.name} third-order gradient {k}", rtol=1e-8, atol=1e-8 * scale)
