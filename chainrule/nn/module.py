"""`Module` and `Parameter`: the bookkeeping that lets a model list, save, load and convert its
weights, with PyTorch's names and behaviour."""

import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from ..engine import dtypes
from ..engine.device import check_device, is_device, no_gpu_message
from ..engine.tensor import RemovableHandle, Tensor
from .owners import note_children, note_owner


class Parameter(Tensor):
    """A Tensor that a Module registers as a weight: assigning one to a module attribute lists it in
    `parameters()`. It shares the data of the tensor it is made from, as in PyTorch."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            array = np.empty(0, dtype=dtypes.get_default_dtype())
        elif isinstance(data, Tensor):
            array = data._data
        else:
            array = Tensor(data)._data
        self._data = array
        self.grad = None
        self.grad_fn = None
        self._name = None
        self._version = 0
        self._hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class for layers and models: assign Parameters and Modules as attributes in `__init__`,
    write `forward`, and call the module."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", [])
        object.__setattr__(self, "_forward_hooks", [])

    # ---- registration --------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called; call "
                "super().__init__() first in your module's __init__"
            )
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            _forget(name, self.__dict__, modules, buffers)
            params[name] = value
            note_owner(self, value)
        elif isinstance(value, Module):
            _forget(name, self.__dict__, params, buffers)
            modules[name] = value
            note_owner(self, value)
        elif name in params or name in modules:
            if value is not None:
                kind = "parameter" if name in params else "submodule"
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to {name!r}, which is a "
                    f"{kind}: assign an nn.Parameter/nn.Module or None"
                )
            (params if name in params else modules)[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} to buffer {name!r}")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter({name!r}): expected a Parameter or None, "
                f"got {type(param).__name__}"
            )
        self._parameters[name] = param
        if param is not None:
            note_owner(self, param)

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor in the module's state (converted by `to`) but not trained; saved in
        state_dict unless persistent=False, as in PyTorch."""
        self._buffers[name] = tensor
        non_persistent = self.__dict__.get("_non_persistent_buffers")
        if non_persistent is None:
            non_persistent = set()
            object.__setattr__(self, "_non_persistent_buffers", non_persistent)
        if persistent:
            non_persistent.discard(name)
        else:
            non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): {type(module).__name__} is not a Module")
        self._modules[name] = module
        if module is not None:
            note_owner(self, module)

    register_module = add_module

    def __setstate__(self, state):
        # Unpickling and copy.deepcopy fill the tables without __setattr__: note the owners here.
        self.__dict__.update(state)
        note_children(self)

    # ---- calling ---------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define one")

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _call_with_hooks(self, args, kwargs):
        """PyTorch's order: pre-hooks (each may replace the arguments), forward, forward hooks
        (each may replace the output); hooks registered with always_call run even when one of
        those raised, and then cannot hide that error."""
        output, called = None, set()
        try:
            for entry in tuple(self._forward_pre_hooks):
                args, kwargs = entry.call_before(self, args, kwargs)
            output = self.forward(*args, **kwargs)
            for entry in tuple(self._forward_hooks):
                called.add(entry)
                output = entry.call_after(self, args, kwargs, output)
            return output
        except Exception:
            for entry in tuple(self._forward_hooks):
                if entry.always_call and entry not in called:
                    try:
                        output = entry.call_after(self, args, kwargs, output)
                    except Exception as hook_error:  # noqa: BLE001 - the forward's error wins
                        warnings.warn(
                            f"forward hook {entry.function!r} (always_call=True) raised "
                            f"{type(hook_error).__name__}: {hook_error}; it was silenced because "
                            f"{type(self).__name__}'s forward call had already raised",
                            stacklevel=2,
                        )
            raise

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """Call `hook(module, args)` (with_kwargs: `hook(module, args, kwargs)`) before each
        forward. A return value other than None replaces the arguments: a tuple of arguments (a
        single value is made one), with_kwargs an `(args, kwargs)` pair. prepend: run before the
        hooks already registered. Returns a handle whose `remove()` unregisters it."""
        return _register(self._forward_pre_hooks, _ForwardHook(hook, with_kwargs), prepend)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False, always_call=False):
        """Call `hook(module, args, output)` (with_kwargs: `hook(module, args, kwargs, output)`)
        after each forward; a return value other than None replaces the output. always_call: also
        call it (with output None, unless a hook already made one) when the forward or another
        hook raises. Returns a handle whose `remove()` unregisters it."""
        entry = _ForwardHook(hook, with_kwargs, always_call)
        return _register(self._forward_hooks, entry, prepend)

    # ---- traversal -------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, prefix, recurse):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix="", recurse=True):
        """(name, Parameter) pairs, each shared parameter once, in registration order."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- modes and gradients -----------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._data[...] = 0

    def apply(self, fn):
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and buffers by dotted name, as tensors sharing the module's data (detached
        unless keep_vars)."""
        destination = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        skipped = self.__dict__.get("_non_persistent_buffers", ())
        for name, b in self._buffers.items():
            if b is not None and name not in skipped:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True):
        """Copy values (chainrule/PyTorch tensors or NumPy arrays) into this module's parameters
        and buffers. With strict=True, missing, unexpected and mis-shaped keys are all listed in one
        error and nothing is changed; with strict=False mis-shaped keys still refuse."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        arrays, mismatched = {}, []
        for key, target in own.items():
            if key not in state_dict:
                continue
            array = _as_array(state_dict[key], key)
            if array.shape != target._data.shape:
                mismatched.append(
                    f"{key}: checkpoint has shape {tuple(array.shape)}, "
                    f"the model has {tuple(target._data.shape)}"
                )
            arrays[key] = array
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched))
        if problems:
            raise RuntimeError(f"load_state_dict for {type(self).__name__}: " + ". ".join(problems))
        for key, array in arrays.items():
            target = own[key]
            np.copyto(target._data, array, casting="unsafe")
            target._bump_version()
        return _IncompatibleKeys(missing, unexpected)

    # ---- dtype conversion ------------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None, non_blocking=False, **kwargs):
        """`to(dtype)` converts floating-point parameters, their gradients and buffers, in place
        (the Parameter objects stay the same, so an optimizer holding them keeps working).
        `to(device)` and `to(device, dtype)` accept the CPU, where chainrule runs, and refuse
        other devices with an error naming the CPU alternative; `to(tensor)` takes its dtype."""
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif is_device(arg):
                device = arg
            else:
                dtype = arg
        check_device("Module.to", device)
        if kwargs:
            raise TypeError(f"Module.to(): unexpected arguments {sorted(kwargs)}")
        if dtype is None:
            return self
        dtype = dtypes.as_dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to(): only floating-point dtypes are allowed, got {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            if t._data.dtype.kind == "f" and t._data.dtype != dtype:
                t._data = t._data.astype(dtype)
                if t.grad is not None:
                    t.grad = Tensor._wrap(t.grad._data.astype(dtype))
                t._bump_version()
        return self

    def cpu(self):
        return self

    def cuda(self, device=None):
        raise RuntimeError(no_gpu_message("Module.cuda()"))

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    # ---- repr ----------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._modules) | set(self._buffers)
        )


class _ForwardHook:
    """One registered forward (pre-)hook with the options it was registered with; each
    registration is its own entry, so a function registered twice runs twice."""

    __slots__ = ("function", "with_kwargs", "always_call")

    def __init__(self, function, with_kwargs, always_call=False):
        if not callable(function):
            raise TypeError(f"a forward hook must be callable, got {type(function).__name__}")
        self.function, self.with_kwargs, self.always_call = function, with_kwargs, always_call

    def call_before(self, module, args, kwargs):
        if not self.with_kwargs:
            result = self.function(module, args)
            if result is None:
                return args, kwargs
            return (result if isinstance(result, tuple) else (result,)), kwargs
        result = self.function(module, args, kwargs)
        if result is None:
            return args, kwargs
        if not (isinstance(result, tuple) and len(result) == 2):
            raise RuntimeError(
                "forward pre-hook must return None or a tuple of (new_args, new_kwargs), but got "
                f"{result!r}"
            )
        return result

    def call_after(self, module, args, kwargs, output):
        if self.with_kwargs:
            result = self.function(module, args, kwargs, output)
        else:
            result = self.function(module, args, output)
        return output if result is None else result


def _register(hooks, entry, prepend):
    if prepend:
        hooks.insert(0, entry)
    else:
        hooks.append(entry)
    return RemovableHandle(hooks, entry)


def _forget(name, *tables):
    for table in tables:
        table.pop(name, None)


def _as_array(value, key):
    if isinstance(value, Tensor):
        return value._data
    try:
        return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    except Exception as error:  # noqa: BLE001 - any unconvertible value gets one clear message
        raise TypeError(
            f"load_state_dict: the value for {key!r} is a {type(value).__name__}, "
            "which cannot be read as an array"
        ) from error
