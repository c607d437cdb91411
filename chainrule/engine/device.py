"""Devices, as PyTorch names them, on a machine that only has a CPU.

`cr.device("cuda")` can be made, as in PyTorch, but placing a tensor there raises an error that
says no GPU backend is present and names the CPU alternative, which is what PyTorch itself does
when it was built without CUDA. Programs that ask `cr.cuda.is_available()` take their CPU path.
"""

# The device types PyTorch knows; others are refused with the list, as PyTorch does.
_KNOWN_TYPES = ("cpu", "cuda", "mps", "xpu", "hip", "xla", "meta", "mtia", "hpu", "privateuseone")


class device:  # noqa: N801 - PyTorch's name
    """`cr.device("cpu")`, `cr.device("cpu", 0)`, `cr.device("cuda:1")`: a device description,
    equal and hashable by (type, index), printed as PyTorch prints it."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):  # noqa: A002 - PyTorch's argument name
        if isinstance(type, device):
            if index is not None:
                raise ValueError("device(): give an index only with a device type string")
            type, index = type.type, type.index
        elif isinstance(type, int) and not isinstance(type, bool):
            # PyTorch reads a bare int as an accelerator ordinal; there is none here.
            raise RuntimeError(no_gpu_message(f"device({type})"))
        elif not isinstance(type, str):
            raise TypeError(f"device(): expected a string like 'cpu', got {type!r}")
        else:
            name, _, suffix = type.partition(":")
            if suffix:
                if index is not None:
                    raise RuntimeError(
                        f"device(): type {type!r} already has an index; do not also pass index="
                    )
                if not suffix.isdigit():
                    raise RuntimeError(f"Invalid device string: {type!r}")
                index = int(suffix)
            if name not in _KNOWN_TYPES:
                raise RuntimeError(
                    f"Expected one of {', '.join(_KNOWN_TYPES)} device type at start of device "
                    f"string: {type}"
                )
            type = name
        if index is not None:
            if not isinstance(index, int) or isinstance(index, bool):
                raise TypeError(f"device(): index must be an int, got {index!r}")
            if index < 0:
                raise RuntimeError("Device index must not be negative")
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "index", index)

    def __setattr__(self, name, value):
        raise AttributeError("device objects are immutable")

    def __eq__(self, other):
        return isinstance(other, device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        if self.index is None:
            return f"device(type={self.type!r})"
        return f"device(type={self.type!r}, index={self.index})"

    def __reduce__(self):
        return (device, (self.type, self.index))


CPU = device("cpu")


def no_gpu_message(what):
    return (
        f"{what}: no GPU backend is present; chainrule runs on the CPU only (NumPy). "
        "Use device='cpu', or write `device = 'cuda' if cr.cuda.is_available() else 'cpu'` "
        "as PyTorch programs do"
    )


def check_device(where, value):
    """Accept None, 'cpu', 'cpu:0' or a cpu device; refuse any other device with an error that
    names the CPU alternative. `where` names the call, for the message."""
    if value is None:
        return
    if isinstance(value, str) and value in ("cpu", "cpu:0"):
        return
    resolved = value if isinstance(value, device) else device(value)
    if resolved.type != "cpu":
        raise RuntimeError(no_gpu_message(f"{where}(device={str(resolved)!r})"))
    if resolved.index not in (None, 0):
        raise RuntimeError(
            f"{where}(device={str(resolved)!r}): there is one CPU device, 'cpu' (index 0)"
        )


def is_device(value):
    """Whether a positional argument of `.to(...)` names a device rather than a dtype."""
    if isinstance(value, device):
        return True
    return isinstance(value, str) and value.partition(":")[0] in _KNOWN_TYPES


def set_default_device(value):
    """As in PyTorch; only the CPU (or None, meaning the CPU) can be the default here."""
    check_device("set_default_device", value)


def get_default_device():
    return CPU
