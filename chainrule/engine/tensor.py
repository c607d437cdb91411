"""The Tensor: a NumPy array plus what reverse-mode autodiff needs to know about it.

Operators, math methods and `backward` are attached by `chainrule.ops`; this module knows no
operation and no backward walk.
"""

import numbers
import weakref

import numpy as np

from . import dtypes
from .dims import normalize_dim
from .state import state


class Tensor:
    __slots__ = (
        "_data",  # the NumPy array; `.data` is PyTorch's view of it as a Tensor
        "requires_grad",
        "grad",
        "grad_fn",
        "_name",
        "_version",
        "_hooks",
        "__weakref__",
    )

    # NumPy must defer to our reflected operators (ndarray + Tensor -> Tensor.__radd__).
    __array_priority__ = 1000

    def __init__(self, data, dtype=None, requires_grad=False, name=None):
        array = to_array(data, dtype)
        self._data = array
        self.grad = None
        self.grad_fn = None
        self._name = name
        self._version = 0
        self._hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(array, grad_fn=None):
        """Internal fast constructor: takes `array` as is, no copy and no checks."""
        t = object.__new__(Tensor)
        t._data = array
        t.requires_grad = grad_fn is not None
        t.grad = None
        t.grad_fn = grad_fn
        t._name = None
        t._version = 0
        t._hooks = None
        return t

    # ---- attributes -------------------------------------------------------------------------
    @property
    def data(self):
        """PyTorch's `.data`: a tensor sharing this one's storage, outside the graph. Unlike
        `detach()`, changes through it are invisible to autograd's in-place checks (programs
        write `p.data.add_(-lr * p.grad.data)` to update a weight without recording it)."""
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        # `p.data = other` swaps the storage (shape and dtype may change), as in PyTorch.
        if not isinstance(value, Tensor):
            raise TypeError(
                f"Tensor.data must be set to a Tensor, got {type(value).__name__} "
                "(wrap a NumPy array with cr.from_numpy(array))"
            )
        self._data = value._data

    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def dtype(self):
        return self._data.dtype

    def size(self, dim=None):
        if dim is None:
            return self._data.shape
        if self._data.ndim == 0:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        return self._data.shape[normalize_dim(dim, self._data.ndim)]

    def dim(self):
        return self._data.ndim

    def numel(self):
        return self._data.size

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value
        # Explanations read names off the graph, where an intermediate is known by its node.
        if self.grad_fn is not None:
            self.grad_fn.name = value

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self._data.dtype.kind != "f":
            raise TypeError(
                "only floating-point tensors can require gradients; this tensor is "
                f"{self._data.dtype} (create it with dtype=cr.float32 or cr.float64)"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError(
                "requires_grad_(False) on a non-leaf tensor: use detach() to get a tensor "
                "outside the graph"
            )
        self.requires_grad = bool(requires_grad)
        return self

    # ---- conversion -------------------------------------------------------------------------
    def numpy(self):
        if self.requires_grad:
            raise RuntimeError(
                "numpy() on a tensor that requires grad: call tensor.detach().numpy() instead"
            )
        return self._data

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and dtype != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def item(self):
        if self._data.size != 1:
            raise ValueError(
                f"item(): only a tensor with one element can become a Python number; "
                f"this one has shape {self._data.shape}"
            )
        return self._data.item()

    def tolist(self):
        return self._data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self._data.size} elements is ambiguous"
            )
        return bool(self._data)

    def __index__(self):
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self._data)

    def detach(self):
        """A new leaf sharing this tensor's data, outside the graph."""
        t = Tensor._wrap(self._data)
        t._name = self._name
        return t

    # Tensors are graph keys by identity; `==` is elementwise (attached by ops).
    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self._data, separator=", ", precision=4, prefix="tensor(")
        extras = []
        if self._data.dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_):
            extras.append(f"dtype={_dtype_name(self._data.dtype)}")
        elif self._data.dtype == dtypes.bool_ and self._data.size == 0:
            extras.append("dtype=cr.bool_")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.op.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if self._name:
            extras.append(f"name={self._name!r}")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ---- autograd entry points (the walk itself lives in engine.autograd, which is built on
    # Tensor: `backward` is attached with the other methods, by ops.methods) -----------------
    def register_hook(self, hook):
        """`hook(grad)` runs when this tensor's gradient is computed; it may return a
        replacement."""
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if self.grad_fn is not None:
            hooks = self.grad_fn.pre_hooks
            if hooks is None:
                hooks = self.grad_fn.pre_hooks = []
        else:
            hooks = self._hooks
            if hooks is None:
                hooks = self._hooks = []
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """`hook(tensor)` runs when backward has accumulated this leaf's final `.grad`, during the
        backward pass (as soon as no node left to run can add to it), as in PyTorch."""
        if self.grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors; register "
                "it on the leaf this tensor was computed from, or use register_hook"
            )
        if not self.requires_grad:
            raise RuntimeError(
                "cannot register a post accumulate grad hook on a tensor that does not require grad"
            )
        registry = state.post_accumulate_hooks
        hooks = registry.get(id(self))
        if hooks is None:
            hooks = registry[id(self)] = []
            weakref.finalize(self, registry.pop, id(self), None)
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def retain_grad(self):
        """Keep `.grad` for this non-leaf tensor after backward, as leaves do."""
        if self.grad_fn is None:
            return
        self.grad_fn.retained = weakref.ref(self)

    def _bump_version(self):
        """Mark an in-place change: graphs that saved this tensor before now refuse to use it."""
        self._version = state.stamp_inplace()
        if self.grad_fn is not None:
            self.grad_fn.out_modified = True


class RemovableHandle:
    """What registering a hook returns (a tensor's, a module's): `remove()` unregisters it (a
    second call does nothing); as a context manager it removes the hook on exit."""

    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _dtype_name(dtype):
    return "cr.bool_" if dtype == dtypes.bool_ else f"cr.{dtype}"


def to_array(data, dtype=None):
    """Convert user data to a fresh NumPy array with PyTorch's dtype rules, or explain why not."""
    if dtype is not None:
        dtype = dtypes.as_dtype(dtype)
    if isinstance(data, Tensor):
        array = data._data
        return array.astype(dtype if dtype is not None else array.dtype, copy=True)
    if isinstance(data, np.ndarray | np.generic):
        array = np.asarray(data)
        if dtype is None:
            dtype = _supported_or_error(array.dtype)
        return array.astype(dtype, copy=True)
    if isinstance(data, bool):
        inferred = dtypes.bool_
    elif isinstance(data, numbers.Integral):
        inferred = dtypes.int64
    elif isinstance(data, numbers.Real):
        inferred = dtypes.get_default_dtype()
    elif isinstance(data, list | tuple):
        inferred = _infer_nested(data)
    else:
        raise TypeError(
            f"cannot make a tensor from {type(data).__name__}; "
            "give a number, a (nested) list, a NumPy array or a Tensor"
        )
    try:
        return np.array(_unwrap_nested(data), dtype=dtype if dtype is not None else inferred)
    except OverflowError:
        target = dtype if dtype is not None else inferred
        raise OverflowError(
            f"cannot make a tensor of dtype {target}: a number in the data is out of its range "
            "(give dtype=cr.float64 for large integers)"
        ) from None


def _supported_or_error(dtype):
    if dtype.kind == "f":
        return dtypes.float32 if dtype.itemsize <= 4 else dtypes.float64
    if dtype.kind in "iu":
        return dtypes.int32 if dtype == dtypes.int32 else dtypes.int64
    if dtype.kind == "b":
        return dtypes.bool_
    raise TypeError(
        f"cannot make a tensor from an array of dtype {dtype}; "
        "chainrule supports float32, float64, int32, int64 and bool"
    )


def _infer_nested(data):
    """Check that nested lists are rectangular and find their dtype, naming where they are not."""
    kinds = set()

    def walk(item, path, depth_shape):
        if isinstance(item, list | tuple):
            if depth_shape is not None and not depth_shape:
                raise ValueError(
                    f"ragged nested list: {_where(path)} is a list where a number was expected"
                )
            length = len(item)
            if depth_shape is not None and depth_shape[0] != length:
                raise ValueError(
                    f"ragged nested list: {_where(path)} has length {length}, "
                    f"expected {depth_shape[0]} like its siblings"
                )
            sub = None
            for i, child in enumerate(item):
                sub = walk(
                    child,
                    path + (i,),
                    sub
                    if sub is not None
                    else (depth_shape[1:] if depth_shape is not None else None),
                )
            return (length,) + (sub or ())
        if depth_shape:
            raise ValueError(
                f"ragged nested list: {_where(path)} is a number where a list of "
                f"length {depth_shape[0]} was expected"
            )
        # Each element's own dtype, as PyTorch infers it: NumPy scalars and tensors keep theirs,
        # Python floats take the default.
        if isinstance(item, Tensor):
            kinds.add(item._data.dtype)
        elif isinstance(item, np.generic):
            kinds.add(_supported_or_error(item.dtype))
        elif isinstance(item, bool):
            kinds.add(dtypes.bool_)
        elif isinstance(item, numbers.Integral):
            kinds.add(dtypes.int64)
        elif isinstance(item, numbers.Real):
            kinds.add(dtypes.get_default_dtype())
        else:
            raise TypeError(f"cannot make a tensor from {type(item).__name__} at {_where(path)}")
        return ()

    walk(data, (), None)
    if not kinds:
        return dtypes.get_default_dtype()
    # PyTorch's promotion across elements: the highest category (bool < integer < float), and
    # within it the widest type.
    top = max(dtypes.category(d) for d in kinds)
    result = None
    for d in kinds:
        if dtypes.category(d) == top:
            result = d if result is None else np.promote_types(result, d)
    return result


def _where(path):
    return "data" + "".join(f"[{i}]" for i in path)


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        return data._data
    if isinstance(data, list | tuple):
        return [_unwrap_nested(x) for x in data]
    return data
