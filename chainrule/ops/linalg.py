"""Matrix products. The backward of a layer of many neurons is itself a pair of matrix products."""

import string

import numpy as np

from ..engine.broadcast import sum_to
from ..engine.op import Op, vjp
from ..engine.tensor import Tensor
from .build import as_tensor, call, promote_pair
from .shape import broadcast_to, reshape, result_dtype, to

# The op itself sees only operands of 2 or more dims: `matmul` turns a vector into a one-row or
# one-column matrix and drops that dim from the result, as PyTorch defines it, so that these
# rules and their formulas are the whole story.


def matrix_product(a, b):
    """a @ b (arrays or Tensors) in the form NumPy hands to BLAS whole. A stack of matrices times
    one matrix is one product of all the stack's rows (NumPy would loop over the stack: 1.7x
    slower for a GPT layer's (12, 64, 128) @ (128, 512)); in a product of stacks, a transposed
    view (k.mT in attention) is copied to rows first, because NumPy's stacked matmul leaves such
    operands to a loop without BLAS (3x slower for (12, 4, 64, 32) @ (12, 4, 32, 64))."""
    if a.ndim > 2 and b.ndim == 2:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[-1],))
    if a.ndim > 2 or b.ndim > 2:
        a, b = _rows_first(a), _rows_first(b)
    return a @ b


def _rows_first(x):
    if type(x) is np.ndarray and x.ndim > 2 and not x.flags.c_contiguous:
        return np.ascontiguousarray(x)
    return x


def _matmul_grad_a(g, a, b, out):
    return sum_to(matrix_product(g, b.mT), a.shape)


def _matmul_grad_b(g, a, b, out):
    if b.ndim == 2 and a.ndim > 2:  # a weight shared over a batch: one big product, no batch sum
        return a.reshape(-1, a.shape[-1]).mT @ g.reshape(-1, g.shape[-1])
    return sum_to(matrix_product(a.mT, g), b.shape)


MATMUL = Op(
    "matmul",
    matrix_product,
    ("a", "b"),
    {
        "a": vjp("sum_to(g @ b.mT, a.shape)", _matmul_grad_a),
        "b": vjp("sum_to(a.mT @ g, b.shape)", _matmul_grad_b),
    },
    formula="a @ b",
)


def matmul(input, other):  # noqa: A002 - PyTorch's argument names
    a, b = as_tensor(input), as_tensor(other)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not line up "
            f"({k_a} columns on the left, {k_b} rows on the right)"
        )
    if a.dtype != b.dtype:
        a, b = promote_pair(a, b)
    if a.ndim > 1 and b.ndim > 1:
        return call(MATMUL, (a, b))
    out = call(
        MATMUL,
        (reshape(a, (1, k_a)) if a.ndim == 1 else a, reshape(b, (k_b, 1)) if b.ndim == 1 else b),
    )
    shape = out.shape
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return reshape(out, shape)


mm = bmm = matmul


def dot(a, b):
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(
            f"dot: needs two 1-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return matmul(a, b)


def outer(a, b):
    a, b = as_tensor(a), as_tensor(b)
    return a.reshape(-1, 1) * b.reshape(1, -1)


# ---- einsum -------------------------------------------------------------------------------------

_einsum_ops = {}


def _einsum_any(equation, *operands):
    if any(isinstance(x, Tensor) for x in operands):
        return einsum(equation, *operands)
    return np.einsum(equation, *operands, optimize=len(operands) > 2)


def _einsum_rule(i):
    def rule(g, *args, subscripts, output):
        xs = args[:-1]
        own = subscripts[i]
        others = [s for j, s in enumerate(subscripts) if j != i]
        shape = xs[i].shape
        sizes = dict(zip(own, shape))
        unique = "".join(dict.fromkeys(own))  # a repeated letter (a trace, a diagonal) once
        available = set(output).union(*others)
        target = "".join(c for c in unique if c in available)
        grad = _einsum_any(
            ",".join([output] + others) + "->" + target, g, *[x for j, x in enumerate(xs) if j != i]
        )
        unique_shape = tuple(sizes[c] for c in unique)
        if target != unique:  # letters summed away inside operand i alone: broadcast back over them
            found = dict(zip(target, grad.shape))
            grad = grad.reshape(tuple(found.get(c, 1) for c in unique))
        if grad.shape != unique_shape:
            # Size-1 dims of operand i that broadcast against the others: sum them back, then
            # stretch the letters only operand i has.
            grad = sum_to(grad, tuple(1 if n == 1 else m for n, m in zip(unique_shape, grad.shape)))
            grad = (
                broadcast_to(grad, unique_shape)
                if isinstance(grad, Tensor)
                else np.broadcast_to(grad, unique_shape)
            )
        if unique != own:
            grad = _onto_diagonal(grad, own, unique, sizes, output + "".join(subscripts))
        return grad

    return vjp(f"einsum('output,others->subscripts[{i}]', g, *others)", rule)


def _onto_diagonal(grad, own, unique, sizes, used):
    """The gradient of an operand with a repeated letter ('ii', 'iij'): `grad` (one axis per
    letter) placed on that diagonal, zeros elsewhere, as an einsum with identity matrices."""
    spare = [c for c in string.ascii_letters if c not in used]
    seen, renamed, eye_terms, eyes = set(), "", [], []
    dtype = grad.dtype
    for c in own:
        if c in seen:
            fresh = spare.pop()
            renamed += fresh
            eye_terms.append(c + fresh)
            eyes.append(np.eye(sizes[c], dtype=dtype))
        else:
            seen.add(c)
            renamed += c
    return _einsum_any(",".join([unique] + eye_terms) + "->" + renamed, grad, *eyes)


def _einsum_op(n):
    if n not in _einsum_ops:
        names = tuple(f"x{i}" for i in range(n))
        _einsum_ops[n] = Op(
            "einsum",
            lambda *xs, subscripts, output: np.einsum(
                ",".join(subscripts) + "->" + output, *xs, optimize=len(xs) > 2
            ),
            names,
            {name: _einsum_rule(i) for i, name in enumerate(names)},
            params=("subscripts", "output"),
            formula=f"einsum({', '.join(names)})",
            keep=names,  # every operand is needed by the others' rules
        )
    return _einsum_ops[n]


def _parse_einsum(equation, operands):
    """Explicit subscripts per operand and for the output. The dims an ellipsis stands for get
    letters of their own, aligned from the right across operands (as broadcasting aligns them)."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(
            f"einsum: equation {equation!r} names {len(terms)} operands, got {len(operands)}"
        )
    spare = [c for c in string.ascii_uppercase + string.ascii_lowercase if c not in equation]
    counts = [x.ndim - (len(term) - 3) if "..." in term else 0 for term, x in zip(terms, operands)]
    if any(c < 0 for c in counts):
        bad = counts.index(min(counts))
        raise ValueError(
            f"einsum: subscripts {terms[bad]!r} have more letters than the operand of shape {tuple(operands[bad].shape)} has dims"
        )
    ellipsis_letters = "".join(spare[: max(counts, default=0)])
    resolved = []
    for term, x, count in zip(terms, operands, counts):
        if "..." in term:
            term = term.replace("...", ellipsis_letters[len(ellipsis_letters) - count :])
        if len(term) != x.ndim:
            raise ValueError(
                f"einsum: subscripts {term!r} have {len(term)} letters but the operand has shape {tuple(x.shape)}"
            )
        resolved.append(term)
    if arrow:
        output = rhs.replace("...", ellipsis_letters)
    else:
        letters = "".join(resolved)
        output = ellipsis_letters + "".join(
            sorted(c for c in set(letters) - set(ellipsis_letters) if letters.count(c) == 1)
        )
    return resolved, output


def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = operands[0]
    operands = [as_tensor(x) for x in operands]
    subscripts, output = _parse_einsum(equation, operands)
    dtype = result_dtype(operands)
    operands = [to(x, dtype) for x in operands]
    return call(_einsum_op(len(operands)), operands, subscripts=tuple(subscripts), output=output)
