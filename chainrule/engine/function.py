"""User-defined operations: `autograd.Function` with static forward/backward, as in PyTorch."""

import weakref

import numpy as np

from .autograd import no_grad
from .op import Op, apply, vjp
from .tensor import Tensor


class FunctionCtx:
    """What forward hands to backward: saved tensors and anything else set as an attribute."""

    def save_for_backward(self, *tensors):
        self._saved = tensors
        # As PyTorch's version counter does: backward refuses a saved tensor changed in place.
        self._versions = tuple(t._version if isinstance(t, Tensor) else None for t in tensors)

    @property
    def saved_tensors(self):
        saved = getattr(self, "_saved", ())
        for i, (t, version) in enumerate(zip(saved, self._versions, strict=True)):
            if version is not None and isinstance(t, Tensor) and t._version != version:
                raise RuntimeError(
                    f"saved tensor {i} of {self._name} (shape {tuple(t.shape)}) was modified in "
                    "place after save_for_backward; backward would use the new values. Modify a "
                    "copy (x.clone()) or do the in-place change after backward"
                )
        output = getattr(self, "_output", None)
        if output is None:
            return saved
        # Forward's result, saved, comes back as the recorded output, so that a backward written
        # in differentiable ops is itself differentiable through it (exp's backward `g * out`).
        array, node_ref = output
        node = node_ref() if node_ref is not None else None
        if node is not None and node.out_modified:
            raise RuntimeError(
                f"the output of {self._name} was modified in place after it was computed, but "
                f"{self._name}.backward saved it; modify a copy instead"
            )
        recorded = Tensor._wrap(array, node) if node is not None else Tensor._wrap(array)
        return tuple(
            recorded
            if t is _OUTPUT
            else _piece(recorded, self._layout, t.index)
            if isinstance(t, _OutputPiece)
            else t
            for t in saved
        )

    def __repr__(self):
        # Explanations show the backward formula `Name.backward(ctx, g)` with this in place.
        return f"ctx of {self._name}"

    def mark_non_differentiable(self, *tensors):
        """The given outputs get no gradient: the result of apply does not require grad."""
        self._non_differentiable = tensors

    def set_materialize_grads(self, value):
        pass  # an output that gets no gradient always gets zeros (they flow back through slicing)


# Stands in for forward's result among the saved tensors (see FunctionCtx.saved_tensors).
_OUTPUT = object()


class _OutputPiece:
    """Stands in for output `index` of a forward that returned several tensors."""

    def __init__(self, index):
        self.index = index


def _piece(flat, layout, index):
    """Output `index` of a many-output Function, as a slice of the one flat output the engine
    records (a Tensor slice is recorded too, so gradients reach the function's node)."""
    shapes, offsets = layout
    return flat[offsets[index] : offsets[index + 1]].reshape(shapes[index])


class Function:
    """Subclass with `forward(ctx, *args)` and `backward(ctx, *grad_outputs)` (both static) and
    call `.apply(*args)`. backward returns one gradient per forward argument (None where there is
    none)."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError("an autograd.Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("an autograd.Function subclass must define backward(ctx, ...)")

    @classmethod
    def apply(cls, *args):
        ctx = FunctionCtx()
        ctx._name = cls.__name__
        ctx._versions = ()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            result = cls.forward(ctx, *args)
        if isinstance(result, tuple | list):
            return _apply_many(cls, ctx, args, tuple(result))
        if not isinstance(result, Tensor):
            raise TypeError(
                f"{cls.__name__}.forward must return a Tensor or a tuple of Tensors, got "
                f"{type(result).__name__}"
            )
        if any(t is result for t in getattr(ctx, "_non_differentiable", ())):
            return Tensor._wrap(result._data)
        saved = getattr(ctx, "_saved", ())
        keeps_output = any(t is result for t in saved) and not any(t is result for t in args)
        if keeps_output:
            ctx._saved = tuple(_OUTPUT if t is result else t for t in saved)
        # ctx is the op's last input (a constant without a gradient), so the engine drops it, and
        # the tensors it saved, with the rest of the node's saved values after backward.
        output = apply(_op_for(cls, len(args)), (*args, ctx), {"forward_result": result._data})
        if keeps_output:
            node = output.grad_fn
            ctx._output = (output._data, None if node is None else weakref.ref(node))
        return output


def _apply_many(cls, ctx, args, outputs):
    """A forward that returned several tensors: the engine records one node whose output is
    their concatenation, and each output is a slice of it, so that backward gets one gradient per
    output (zeros for an output that was not used), as in PyTorch."""
    if not outputs or not all(isinstance(o, Tensor) for o in outputs):
        kinds = ", ".join(type(o).__name__ for o in outputs) or "nothing"
        raise TypeError(f"{cls.__name__}.forward returned a tuple of {kinds}; give Tensors")
    dtype = outputs[0].dtype
    if dtype.kind != "f" or any(o.dtype != dtype for o in outputs):
        dtypes = ", ".join(str(o.dtype) for o in outputs)
        raise TypeError(
            f"{cls.__name__}.forward returned outputs of dtypes {dtypes}; a Function with several "
            "outputs needs them all of one float dtype"
        )
    sizes = np.cumsum([0] + [o._data.size for o in outputs])
    ctx._layout = (tuple(o.shape for o in outputs), tuple(int(n) for n in sizes))
    flat = np.concatenate([o._data.reshape(-1) for o in outputs])
    saved = getattr(ctx, "_saved", ())
    positions = {id(o): j for j, o in enumerate(outputs)}
    keeps_output = any(id(t) in positions for t in saved)
    if keeps_output:
        ctx._saved = tuple(
            _OutputPiece(positions[id(t)]) if id(t) in positions else t for t in saved
        )
    output = apply(_op_for(cls, len(args)), (*args, ctx), {"forward_result": flat})
    if keeps_output:
        node = output.grad_fn
        ctx._output = (output._data, None if node is None else weakref.ref(node))
    blocked = {id(t) for t in getattr(ctx, "_non_differentiable", ())}
    pieces = []
    for j, o in enumerate(outputs):
        piece = _piece(output, ctx._layout, j)
        pieces.append(Tensor._wrap(piece._data) if id(o) in blocked else piece)
    return tuple(pieces)


# The op made for each Function subclass and argument count, kept here rather than on the user's
# class; a class that is no longer used takes its ops with it.
_ops_by_function = weakref.WeakKeyDictionary()


def _op_for(cls, n):
    cache = _ops_by_function.setdefault(cls, {})
    if n not in cache:
        names = tuple(f"arg{i}" for i in range(n))
        derivatives = {
            name: vjp(f"{cls.__name__}.backward(ctx, g)[{i}]", _rule(cls, i, n))
            for i, name in enumerate(names)
        }
        derivatives["ctx"] = None
        cache[n] = Op(
            cls.__name__,
            _forward,
            (*names, "ctx"),
            derivatives,
            formula=f"{cls.__name__}({', '.join(names)}, ctx)",
            params=("forward_result",),
            declared=False,
        )
    return cache[n]


def _forward(*arrays, forward_result):
    return forward_result


def _rule(cls, i, n):
    def rule(g, *args, forward_result):
        ctx = args[n]  # args: the n forward arguments, ctx, then the op's output
        # backward runs once per call; each input's rule picks its own gradient from the tuple.
        if getattr(ctx, "_grads_for", None) is not g:
            grad_outputs = g if isinstance(g, Tensor) else Tensor._wrap(g)
            layout = getattr(ctx, "_layout", None)
            if layout is None:
                grads = cls.backward(ctx, grad_outputs)
            else:
                count = len(layout[0])
                grads = cls.backward(ctx, *(_piece(grad_outputs, layout, j) for j in range(count)))
            if not isinstance(grads, tuple):
                grads = (grads,)
            if len(grads) != n:
                raise RuntimeError(
                    f"{cls.__name__}.backward returned {len(grads)} gradients but forward took "
                    f"{n} arguments; return one per argument (None where there is none)"
                )
            ctx._grads_for, ctx._grads = g, grads
        gi = ctx._grads[i]
        if gi is None:  # no gradient flows to this input, as in PyTorch
            return None
        if isinstance(g, Tensor):
            return gi if isinstance(gi, Tensor) else Tensor._wrap(np.asarray(gi))
        return gi._data if isinstance(gi, Tensor) else np.asarray(gi)

    return rule
