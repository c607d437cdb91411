"""User-defined operations: `autograd.Function` with static forward/backward, as in PyTorch."""

import numpy as np

from .op import Op, apply, vjp
from .state import state
from .tensor import Tensor


class FunctionCtx:
    """What forward hands to backward: saved tensors and anything else set as an attribute."""

    def save_for_backward(self, *tensors):
        self._saved = tensors

    @property
    def saved_tensors(self):
        return getattr(self, "_saved", ())

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass


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
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        previous = state.enabled
        state.enabled = False
        try:
            result = cls.forward(ctx, *args)
        finally:
            state.enabled = previous
        if not isinstance(result, Tensor):
            raise TypeError(
                f"{cls.__name__}.forward must return one Tensor, got {type(result).__name__}"
            )
        op = _op_for(cls, len(args))
        output = result.data
        return apply(op, args, {"ctx": ctx, "forward_result": output})


def _op_for(cls, n):
    cache = cls.__dict__.get("_chainrule_ops")
    if cache is None:
        cache = {}
        cls._chainrule_ops = cache
    if n not in cache:
        names = tuple(f"arg{i}" for i in range(n))
        cache[n] = Op(
            cls.__name__,
            lambda *xs, ctx, forward_result: forward_result,
            names,
            {name: vjp(f"{cls.__name__}.backward(ctx, g)[{i}]", _rule(cls, i)) for i, name in enumerate(names)},
            params=("ctx", "forward_result"),
        )
    return cache[n]


def _rule(cls, i):
    def rule(g, *args, ctx, forward_result):
        args = args[:-1]  # drop `out`
        if getattr(ctx, "_grads_for", None) is not g:
            tensor_mode = isinstance(g, Tensor)
            grads = cls.backward(ctx, g if tensor_mode else Tensor._wrap(g))
            if not isinstance(grads, tuple):
                grads = (grads,)
            if len(grads) != len(args):
                raise RuntimeError(
                    f"{cls.__name__}.backward returned {len(grads)} gradients but forward took "
                    f"{len(args)} arguments; return one per argument (None where there is none)"
                )
            ctx._grads_for, ctx._grads = g, grads
        gi = ctx._grads[i]
        if gi is None:
            zeros = np.zeros(args[i].shape, dtype=g.dtype)
            return Tensor._wrap(zeros) if isinstance(g, Tensor) else zeros
        if isinstance(g, Tensor):
            return gi
        return gi.data if isinstance(gi, Tensor) else np.asarray(gi)

    return rule
