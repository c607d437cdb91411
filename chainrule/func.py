"""Functional transforms in the style of torch.func and JAX: they take a function of Tensors and
return a function that computes its derivatives. They nest (hessian is jacobian of grad), because
an inner transform records its backward pass whenever an outer one is watching."""

import numpy as np

from .engine.autograd import enable_grad, is_grad_enabled
from .engine.autograd import grad as _grad
from .engine.tensor import Tensor
from .ops import clone, stack


def _watch(x):
    """A differentiable stand-in for an argument: a fresh leaf at top level, or, inside another
    transform, a copy that stays connected to the outer graph."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"cannot differentiate with respect to a {x.dtype} argument")
    if x.requires_grad and is_grad_enabled():
        return clone(x), True
    return x.detach().requires_grad_(True), False


def _prepare(args, argnums):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    args = list(args)
    nested = False
    for n in nums:
        if not -len(args) <= n < len(args):
            raise IndexError(f"argnums {n} is out of range for {len(args)} positional arguments")
        args[n], inner = _watch(args[n])
        nested = nested or inner
    return args, nums, nested


def _finish(grads, nested, argnums):
    grads = tuple(g if nested else g.detach() for g in grads)
    return grads[0] if isinstance(argnums, int) else grads


def _detach_tree(x):
    """Tensors in nested tuples, lists and dicts, detached (the auxiliary output of has_aux)."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, tuple | list):
        return type(x)(_detach_tree(v) for v in x)
    if isinstance(x, dict):
        return {k: _detach_tree(v) for k, v in x.items()}
    return x


def value_and_grad(f, argnums=0, has_aux=False):
    """`f` must return a scalar Tensor. Returns a function giving (value, gradient)."""

    def wrapper(*args, **kwargs):
        args, nums, nested = _prepare(args, argnums)
        with enable_grad():
            result = f(*args, **kwargs)
            value, aux = result if has_aux else (result, None)
            if not isinstance(value, Tensor) or value._data.size != 1:
                shape = getattr(value, "shape", type(value).__name__)
                raise ValueError(f"grad: the function must return a scalar Tensor, got {shape}")
            wrt = [args[n] for n in nums]
            if value.requires_grad:
                grads = _grad(
                    value, wrt, create_graph=nested, allow_unused=True, materialize_grads=True
                )
            else:  # f does not depend on its arguments: zero gradients, as in torch.func
                grads = tuple(Tensor._wrap(np.zeros_like(x._data)) for x in wrt)
        if not nested:
            value, aux = value.detach(), _detach_tree(aux)
        out = _finish(grads, nested, argnums)
        return ((value, aux), out) if has_aux else (value, out)

    return wrapper


def grad(f, argnums=0, has_aux=False):
    """The gradient function of scalar-valued `f` with respect to argument(s) `argnums`."""
    vg = value_and_grad(f, argnums, has_aux)

    def wrapper(*args, **kwargs):
        (value_aux, gradient) = vg(*args, **kwargs)
        return (gradient, value_aux[1]) if has_aux else gradient

    return wrapper


def vjp(f, *primals):
    """(f(*primals), vjp_fn) where vjp_fn(v) gives one cotangent per primal, as a tuple. As in
    torch.func.vjp, `f` may return a tuple of Tensors, and then `v` is a tuple like it."""
    watched = [_watch(p) for p in primals]
    args = [w for w, _ in watched]
    nested = any(inner for _, inner in watched)
    with enable_grad():
        output = f(*args)
    outputs = output if isinstance(output, tuple) else (output,)
    for out in outputs:
        if not isinstance(out, Tensor):
            raise TypeError(f"vjp: the function must return Tensors, got {type(out).__name__}")

    def vjp_fn(v):
        cotangents = v if isinstance(output, tuple) else (v,)
        if len(cotangents) != len(outputs):
            raise ValueError(
                f"vjp_fn: {len(cotangents)} cotangents for {len(outputs)} outputs; give one each"
            )
        pairs = []
        for k, (out, ct) in enumerate(zip(outputs, cotangents, strict=True)):
            if not isinstance(ct, Tensor):
                ct = Tensor(np.asarray(ct, dtype=out.dtype))
            if ct.shape != out.shape:
                raise ValueError(
                    f"vjp_fn: cotangent {k} has shape {tuple(ct.shape)}, but output {k} has "
                    f"shape {tuple(out.shape)}"
                )
            if out.requires_grad:  # an output that depends on no primal contributes nothing
                pairs.append((out, ct))
        if not pairs:
            return tuple(Tensor._wrap(np.zeros_like(a._data)) for a in args)
        grads = _grad(
            [out for out, _ in pairs],
            args,
            grad_outputs=[ct for _, ct in pairs],
            retain_graph=True,
            create_graph=nested,
            allow_unused=True,
            materialize_grads=True,
        )
        return tuple(g if nested else g.detach() for g in grads)

    if not nested:
        output = (
            tuple(o.detach() for o in outputs) if isinstance(output, tuple) else output.detach()
        )
    return output, vjp_fn


def jacobian(f, argnums=0):
    """The function giving d f / d x, of shape f(x).shape + x.shape, by reverse mode (one backward
    pass per output element). As in torch.func.jacrev, a tuple of outputs gives a tuple of
    jacobians, one per output, and a tuple `argnums` one jacobian per argument inside that."""

    def wrapper(*args, **kwargs):
        args, nums, nested = _prepare(args, argnums)
        with enable_grad():
            output = f(*args, **kwargs)
            outputs = output if isinstance(output, tuple) else (output,)
            jacobians = tuple(
                _finish(_jacobian_of(out, [args[n] for n in nums], nested), nested, argnums)
                for out in outputs
            )
        return jacobians if isinstance(output, tuple) else jacobians[0]

    return wrapper


def _jacobian_of(output, inputs, nested):
    """d output / d input for each input, each of shape output.shape + input.shape."""
    if not isinstance(output, Tensor):
        raise TypeError(f"jacobian: the function must return Tensors, got {type(output).__name__}")
    flat = output.reshape(-1)
    per_input = [[] for _ in inputs]
    if output.requires_grad:
        for k in range(flat.shape[0]):
            grads = _grad(
                flat[k],
                inputs,
                retain_graph=True,
                create_graph=nested,
                allow_unused=True,
                materialize_grads=True,
            )
            for slot, g in zip(per_input, grads, strict=True):
                slot.append(g)
    results = []
    for x, slot in zip(inputs, per_input, strict=True):
        shape = tuple(output.shape) + tuple(x.shape)
        if slot:
            results.append(stack(slot).reshape(shape))
        else:  # the output does not depend on any input (or has no elements)
            results.append(Tensor._wrap(np.zeros(shape, dtype=x.dtype)))
    return results


jacrev = jacobian


def hessian(f, argnums=0):
    """Second derivatives of scalar-valued `f`: the jacobian of its gradient."""
    return jacobian(grad(f, argnums), argnums)
