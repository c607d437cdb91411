"""Compare analytic gradients with central finite differences in float64."""

import numpy as np

from .engine.autograd import enable_grad, grad, no_grad
from .engine.tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _outputs(fn, inputs):
    return tuple(o for o in _as_tuple(fn(*inputs)) if isinstance(o, Tensor))


def _flat_outputs(fn, inputs):
    """Every output's elements in one vector (empty when the function has no outputs to check)."""
    return np.concatenate([np.zeros(0)] + [o._data.reshape(-1) for o in _outputs(fn, inputs)])


def _numeric_jacobian(fn, inputs, index, eps):
    """Column j: (f(x + eps e_j) - f(x - eps e_j)) / (2 eps), every output flattened together.
    Elements are visited in C order, the order the analytic rows are flattened in, by their
    index: a flat view of a non-contiguous array would be a copy, and perturbing it would do
    nothing."""
    data = inputs[index]._data
    columns = []
    with no_grad():
        for where in np.ndindex(data.shape):
            saved = data[where]
            try:
                data[where] = saved + eps
                plus = _flat_outputs(fn, inputs)
                data[where] = saved - eps
                minus = _flat_outputs(fn, inputs)
            finally:
                data[where] = saved
            columns.append((plus - minus) / (2 * eps))
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0))


def _analytic_jacobians(fn, inputs, wanted):
    outputs = _outputs(fn, inputs)
    rows = []
    for out in outputs:
        for k in range(out._data.size):
            seed = np.zeros(out.shape, dtype=out.dtype)
            seed.reshape(-1)[k] = 1
            if not out.requires_grad:
                rows.append([np.zeros(inputs[i]._data.size) for i in wanted])
                continue
            gs = grad(
                out,
                [inputs[i] for i in wanted],
                grad_outputs=Tensor._wrap(seed),
                retain_graph=True,
                allow_unused=True,
            )
            rows.append(
                [
                    np.zeros(inputs[i]._data.size) if g is None else g._data.reshape(-1)
                    for i, g in zip(wanted, gs, strict=True)
                ]
            )
    return [
        np.array([row[n] for row in rows]).reshape(len(rows), inputs[i]._data.size)
        for n, i in enumerate(wanted)
    ]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """True when every input's analytic Jacobian matches finite differences; otherwise raise an
    error naming the input, the element, and both values."""
    inputs = _as_tuple(inputs)
    wanted = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    for i in wanted:
        if inputs[i].dtype != np.float64:
            raise GradcheckError(
                f"gradcheck: input {i} is {inputs[i].dtype}; use float64 for finite differences"
            )
    analytic = _analytic_jacobians(fn, inputs, wanted)
    for n, i in enumerate(wanted):
        numeric = _numeric_jacobian(fn, inputs, i, eps)
        a = analytic[n]
        if a.shape != numeric.shape:
            a = a.reshape(numeric.shape)
        bad = ~np.isclose(a, numeric, rtol=rtol, atol=atol)
        if bad.any():
            out_k, elem = (int(v) for v in np.argwhere(bad)[0])
            where = np.unravel_index(elem, inputs[i].shape) if inputs[i].ndim else ()
            message = (
                f"gradcheck: input {i} at index {tuple(int(w) for w in where)} "
                f"(output element {out_k}): "
                f"analytic {float(a[out_k, elem])!r} but numeric {float(numeric[out_k, elem])!r} "
                f"(atol={atol}, rtol={rtol})"
            )
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True


def gradgradcheck(
    fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0
):
    """gradcheck of the first-order gradients (taken with create_graph=True) against finite
    differences of themselves: checks second derivatives."""
    inputs = _as_tuple(inputs)
    outputs = _outputs(fn, inputs)
    rng = np.random.default_rng(seed)
    if grad_outputs is None:
        grad_outputs = tuple(Tensor._wrap(rng.standard_normal(o.shape)) for o in outputs)
    grad_outputs = _as_tuple(grad_outputs)
    wanted = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]

    def first_order(*args):
        # gradcheck evaluates this under no_grad for its finite differences; the first-order
        # gradients need a recorded graph all the same.
        with enable_grad():
            outs = [o for o in _outputs(fn, args) if o.requires_grad]
            gs = grad(
                outs,
                [args[i] for i in wanted],
                grad_outputs=list(grad_outputs[: len(outs)]),
                create_graph=True,
                allow_unused=True,
            )
        return tuple(g for g in gs if g is not None)

    return gradcheck(
        first_order, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception
    )
