"""`cr.save` / `cr.load`: checkpoints in the safetensors format, never pickle.

A checkpoint is one safetensors file. Every tensor (or NumPy array) in the saved object becomes a
safetensors entry named by its path ("model.0.weight", "optimizer.state.0.exp_avg"); the nesting
around them, and plain values (numbers, strings, booleans, None, lists, tuples, dicts with int
keys such as an optimizer's state), go as JSON into the header's metadata. Loading reads only bytes
and JSON, so a file can never run code.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed to disk
(fsync), and the temporary file then replaces the target in one `os.replace`, so a crash at any
moment leaves either the old file or the new one.

Reading checks the file before trusting it: a short or truncated file, a header length larger than
the file, a header that is not JSON, and files of other formats (pickles, PyTorch's zip-based .pt
files, NumPy .npy) each raise `CheckpointError` saying what was found.
"""

import json
import os
import struct
import tempfile

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from .engine.tensor import Tensor

__all__ = ["CheckpointError", "load", "save"]

_FORMAT = "chainrule"
_VERSION = "1"
_MARKERS = ("__tensor__", "__tuple__", "__dict__")
# safetensors itself refuses headers above 100 MB; a larger claim is corruption, not a header.
_MAX_HEADER = 100_000_000


class CheckpointError(ValueError):
    """A file that is not a readable chainrule/safetensors checkpoint: `path` and the `reason`."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


# ---- save ---------------------------------------------------------------------------------------


def save(obj, path):
    """Write `obj` (a Tensor, or nested dicts/lists/tuples of tensors, arrays and plain values, such
    as `{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}`) to `path`."""
    arrays = {}
    structure = _encode(obj, "", arrays)
    metadata = {
        "format": _FORMAT,
        "version": _VERSION,
        "structure": json.dumps(structure, allow_nan=True),
    }
    data = _st_save(arrays, metadata=metadata)
    atomic_write_bytes(os.fspath(path), data)


def _encode(obj, path, arrays):
    if isinstance(obj, Tensor | np.ndarray):
        array = obj.data if isinstance(obj, Tensor) else obj
        key = path or "tensor"
        while key in arrays:  # a path can collide only through odd key strings: keep both
            key += "_"
        # (np.ascontiguousarray would turn a 0-d array into shape (1,))
        arrays[key] = array if array.flags.c_contiguous else array.copy(order="C")
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in obj):
            return {k: _encode(v, _join(path, k), arrays) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(
                    f"cr.save: dict key {k!r} at {path or 'the top level'} is a "
                    f"{type(k).__name__}; keys must be strings, numbers, booleans or None"
                )
        return {"__dict__": [[k, _encode(v, _join(path, str(k)), arrays)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return [_encode(v, _join(path, str(i)), arrays) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, _join(path, str(i)), arrays) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    hint = ""
    if hasattr(obj, "state_dict"):
        hint = "; save its state instead: cr.save(x.state_dict(), path)"
    raise TypeError(
        f"cr.save: cannot save a {type(obj).__name__} (at {path or 'the top level'}): "
        f"only tensors, arrays, numbers, strings, None, lists, tuples and dicts{hint}"
    )


def _join(path, key):
    return f"{path}.{key}" if path else key


def atomic_write(path, write):
    """Call `write(temporary_path)` in `path`'s folder, then rename the result over `path`: a
    reader, or a crash at any moment, sees the old file or the whole new one, never a part. The
    temporary name keeps the suffix, for writers that pick a format from it."""
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{base}.", suffix=".tmp" + os.path.splitext(base)[1]
    )
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plainly created file gets.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # Make the rename itself durable; not every platform lets a folder be opened.
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path, data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- load ---------------------------------------------------------------------------------------


def load(path):
    """Read a checkpoint written by `save` (tensors come back as chainrule Tensors). A plain
    safetensors file from elsewhere loads as a dict of its tensors by name."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    header = read_header(data, path)
    try:
        arrays = _st_load(data)
    except SafetensorError as error:
        raise CheckpointError(path, f"not a valid safetensors file: {error}") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != _FORMAT or "structure" not in metadata:
        return {name: Tensor._wrap(array) for name, array in arrays.items()}
    try:
        structure = json.loads(metadata["structure"])
    except ValueError as error:
        raise CheckpointError(
            path, f"the checkpoint's structure is not valid JSON: {error}"
        ) from None
    return _decode(structure, arrays, path)


def read_header(data, path):
    """The safetensors header of the file contents `data`, after checking the framing (length,
    header JSON, data offsets) by hand, so that every malformed or foreign file gets a message that
    says what is wrong; nothing in the file is ever executed."""
    try:
        return _framed_header(data, path)
    except CheckpointError:
        # Name a foreign format only once the file has failed as safetensors: a valid header
        # length can begin with the same bytes as a pickle.
        foreign = _foreign_format(data)
        if foreign:
            raise CheckpointError(
                path,
                f"this is {foreign}, not a safetensors checkpoint; chainrule "
                "never unpickles or runs anything from a file. Convert it with "
                "the library that wrote it (e.g. safetensors.torch.save_file)",
            ) from None
        raise


def _framed_header(data, path):
    size = len(data)
    if size < 8:
        raise CheckpointError(
            path,
            f"{size} bytes is too short for a safetensors file "
            "(an 8-byte header length comes first); the file is truncated or "
            "empty",
        )
    (length,) = struct.unpack("<Q", data[:8])
    if length > _MAX_HEADER:
        raise CheckpointError(
            path,
            f"the header claims a length of {length} bytes, more than "
            f"the {_MAX_HEADER}-byte limit: the file is corrupt or not "
            "safetensors",
        )
    if 8 + length > size:
        raise CheckpointError(
            path,
            f"the header claims {length} bytes but only {size - 8} "
            "follow the length field: the file is truncated or not safetensors",
        )
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(
            path, "the header is not valid JSON: the file is corrupt or not safetensors"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            path, "the header is not a JSON object: the file is corrupt or not safetensors"
        )
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
        ):
            raise CheckpointError(
                path, f"the header entry {name!r} has no valid data_offsets: the file is corrupt"
            )
        end = max(end, offsets[1])
    available = size - 8 - length
    if end > available:
        raise CheckpointError(
            path,
            f"the tensors need {end} bytes of data but only {available} "
            "are present: the file is truncated",
        )
    return header


def _foreign_format(data):
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (PyTorch's .pt/.pth format stores pickles in one)"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "a Python pickle"
    if data[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    return None


def _decode(node, arrays, path):
    if isinstance(node, list):
        return [_decode(v, arrays, path) for v in node]
    if isinstance(node, dict):
        if "__tensor__" in node:
            key = node["__tensor__"]
            if key not in arrays:
                raise CheckpointError(
                    path,
                    f"the structure names a tensor {key!r} that the file "
                    "does not contain: the file is corrupt",
                )
            return Tensor._wrap(arrays[key])
        if "__tuple__" in node:
            return tuple(_decode(v, arrays, path) for v in node["__tuple__"])
        if "__dict__" in node:
            return {k: _decode(v, arrays, path) for k, v in node["__dict__"]}
        return {k: _decode(v, arrays, path) for k, v in node.items()}
    return node
