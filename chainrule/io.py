"""`cr.save` / `cr.load`: checkpoints in the safetensors format, never pickle.

A checkpoint is one safetensors file. Every tensor (or NumPy array) in the saved object becomes a
safetensors entry named by its path ("model.0.weight", "optimizer.state.0.exp_avg"); the nesting
around them, and plain values (numbers, strings, booleans, None, lists, tuples, dicts with int
keys such as an optimizer's state), go as JSON into the header's metadata. Loading reads only bytes
and JSON, so a file can never run code.

Writes are atomic: the bytes go to a temporary file `.<target>.<16 hex digits>.tmp` in the same
folder, are flushed to disk (fsync), and the temporary file then replaces the target in one
`os.replace`, so a crash at any moment leaves either the old file or the new one. A save holds a
lock (flock) on its temporary file while it writes; every save of a target first removes that
target's temporaries which no one holds, the leftovers of killed saves, so they never pile up. The
temporaries are hidden, do not end in the target's suffix, and `load` refuses them by name. An
OSError while writing (a full disk, a folder that cannot be written) names the target.

Reading trusts nothing in the file:
- only a regular file is read: a folder, device (or link to one), FIFO or socket is refused at once,
  without reading from it or blocking (the open is non-blocking, the check made on the descriptor);
- the header's claims are checked against the file's size before any tensor is allocated: every
  tensor's dtype, shape (NumPy must be able to hold it) and data_offsets, which must tile the data
  section exactly, as safetensors requires; the metadata must map strings to strings;
- chainrule's structure metadata is checked completely (node types, a nesting depth of at most
  `MAX_DEPTH`, every stored tensor named exactly once, no key twice) before anything is built;
- the work is bounded by the file's size: the header, and the structure within it, may hold at most
  `max_json_containers(size)` JSON objects and arrays (`FREE_CONTAINERS` plus one per
  `BYTES_PER_CONTAINER` bytes of file; a tensor's header entry counts three, each dict, list, tuple
  or tensor reference in the structure one), counted in the raw text before any JSON is parsed.
  A load takes time linear in the file's size, and memory of the tensors' own bytes plus at most
  about 120 MB + 16 times the header's size (measured: 127 MB for the largest file of empty tensors
  allowed at 7 MB, 35 MB for a 0.8 MB structure of 262,000 empty lists, 15 times the header for
  structures of short strings, numbers or keys).
Every malformed or foreign file (pickles, PyTorch's zip-based .pt files, NumPy .npy) raises
`CheckpointError` naming the file and saying what is wrong; a missing or unreadable file raises the
usual FileNotFoundError or PermissionError.
"""

import errno
import fcntl
import json
import math
import os
import re
import reprlib
import secrets
import stat
import struct
from io import BytesIO

import numpy as np
from safetensors.numpy import save as _st_save

from .engine.device import device, no_gpu_message
from .engine.tensor import Tensor

__all__ = ["CheckpointError", "load", "save"]

_FORMAT = "chainrule"
_VERSION = "1"
_MARKERS = ("__tensor__", "__tuple__", "__dict__")
# safetensors itself refuses headers above 100 MB; a larger claim is corruption, not a header.
_MAX_HEADER = 100_000_000
# Deeper than any state a program builds; keeps every recursive walk far from Python's limit.
MAX_DEPTH = 100
# A header entry costs about 60 bytes and three JSON containers (entry, shape, offsets); these
# let any real checkpoint through while a file of millions of empty tensors is refused before
# its JSON is parsed.
FREE_CONTAINERS = 262_144
BYTES_PER_CONTAINER = 64
# What safetensors.numpy maps; safetensors is little-endian whatever the machine.
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "C64": np.dtype("<c8"),
}
_NUMPY_MAX_DIMS = 64
_NUMPY_MAX_BYTES = 2**63 - 1
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{16}\.tmp")


def _short_repr():
    """repr() cut short: a hostile file's values can be as long as the file."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    short.maxlist = short.maxdict = 4
    return short.repr


_short = _short_repr()


def max_json_containers(size):
    """How many JSON objects and arrays the header of a `size`-byte file may hold."""
    return FREE_CONTAINERS + size // BYTES_PER_CONTAINER


class CheckpointError(ValueError):
    """A file that is not a readable chainrule/safetensors checkpoint: `path` and the `reason`."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class NotARegularFileError(OSError):
    """`filename` is a folder, device, FIFO or socket (`kind` says which): refused unread."""

    def __init__(self, path, kind):
        super().__init__(None, f"it is {kind}, not a regular file", path)
        self.kind = kind

    def __str__(self):
        return f"{self.filename}: {self.strerror}"


# ---- save ---------------------------------------------------------------------------------------


def save(obj, path):
    """Write `obj` (a Tensor, or nested dicts/lists/tuples of tensors, arrays and plain values, such
    as `{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}`) to `path`."""
    arrays = {}
    structure = _encode(obj, "", arrays, 0)
    metadata = {
        "format": _FORMAT,
        "version": _VERSION,
        "structure": json.dumps(structure, allow_nan=True),
    }
    data = _st_save(arrays, metadata=metadata)
    atomic_write_bytes(os.fspath(path), data)


def _encode(obj, path, arrays, depth):
    if depth > MAX_DEPTH:
        raise ValueError(
            f"cr.save: the object is nested deeper than {MAX_DEPTH} levels (at {path}), "
            "more than cr.load accepts"
        )
    if isinstance(obj, Tensor | np.ndarray):
        array = obj._data if isinstance(obj, Tensor) else obj
        key = path or "tensor"
        while key in arrays:  # a path can collide only through odd key strings: keep both
            key += "_"
        # (np.ascontiguousarray would turn a 0-d array into shape (1,))
        arrays[key] = array if array.flags.c_contiguous else array.copy(order="C")
        return {"__tensor__": key}
    depth += 1
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in obj):
            return {k: _encode(v, _join(path, k), arrays, depth) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(
                    f"cr.save: dict key {k!r} at {path or 'the top level'} is a "
                    f"{type(k).__name__}; keys must be strings, numbers, booleans or None"
                )
        return {
            "__dict__": [
                [k, _encode(v, _join(path, str(k)), arrays, depth)] for k, v in obj.items()
            ]
        }
    if isinstance(obj, list):
        return [_encode(v, _join(path, str(i)), arrays, depth) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {
            "__tuple__": [_encode(v, _join(path, str(i)), arrays, depth) for i, v in enumerate(obj)]
        }
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
    """Call `write(temporary_path)`, which must write the whole new file there, then rename the
    result over `path`: a reader, or a crash at any moment, sees the old file or the whole new one,
    never a part. The temporary file `.<name>.<16 hex digits>.tmp` lies in `path`'s folder, is
    locked while it is written, and is removed on failure, or by the next call for the same `path`
    if this process is killed. The new file keeps the permissions of the one it replaces. An
    OSError while writing (a full disk, a folder without write permission) is raised again with
    `path` as its filename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temporaries(folder, base)
    fd = tmp = None
    try:
        mode = _mode_of(path)
        fd, tmp = _locked_temporary(folder, base)
        write(tmp)
        if mode is not None:  # after the write: the mode may forbid writing
            os.fchmod(fd, mode)
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(error, OSError) and error.errno and _about_temporary(error, base):
            raise OSError(error.errno, error.strerror, path) from error
        raise
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock, once the file bears the target's name
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


def _mode_of(path):
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def _locked_temporary(folder, base):
    """A new temporary file for `base`, locked: (descriptor, path)."""
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _lock(fd)
            # Another save may have removed it as stale between its creation and the lock.
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)


def _lock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:
        # A file system without locks: its temporaries are never taken for stale ones, since
        # no other save can lock them either.
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise


def _remove_stale_temporaries(folder, base):
    """Remove the temporaries of earlier saves of `base` that no live save holds locked."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if _temporary_target(e.name) == base]
    except OSError:
        return
    for name in names:
        candidate = os.path.join(folder, name)
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.stat(candidate, follow_symlinks=False)):
                os.unlink(candidate)
        except OSError:  # locked by a live save, gone already, or not ours to remove
            pass
        finally:
            os.close(fd)


def _about_temporary(error, base):
    """Whether `error` concerns a temporary file of `base`, or names no file at all."""
    name = error.filename
    return name is None or _temporary_target(os.path.basename(os.fsdecode(name))) == base


def _temporary_target(name):
    match = _TEMPORARY.fullmatch(name)
    return match and match["target"]


# ---- load ---------------------------------------------------------------------------------------


def load(path, map_location=None, *, weights_only=None):
    """Read a checkpoint written by `save` (tensors come back as chainrule Tensors). A plain
    safetensors file from elsewhere loads as a dict of its tensors by name.

    PyTorch's `map_location` and `weights_only` are accepted so that `torch.load(PATH,
    weights_only=True)` runs unchanged: a checkpoint here is safetensors and JSON, never a pickle,
    so loading one runs no code whatever `weights_only` says, and tensors load onto the CPU, the
    only device (map_location None, "cpu", a CPU device, a dict mapping devices to the CPU, or a
    function, whose result would be a CPU tensor too)."""
    _check_map_location(map_location)
    if weights_only is not None and not isinstance(weights_only, bool):
        raise TypeError(f"load: weights_only must be True, False or None, got {weights_only!r}")
    path = os.fspath(path)
    target = _temporary_target(os.path.basename(path))
    if target:
        raise CheckpointError(
            path,
            f"this is the temporary file of an unfinished save of {target}, not a "
            "checkpoint (rename it to load it anyway)",
        )
    try:
        f = open_regular_file(path)
    except NotARegularFileError as error:
        raise CheckpointError(
            path, f"{error.strerror}; chainrule reads checkpoints only from regular files"
        ) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        header, entries = _read_header(f, size, path)
        metadata = header.get("__metadata__") or {}
        structure = None
        if metadata.get("format") == _FORMAT and "structure" in metadata:
            structure = _parse_structure(metadata, len(entries), size, path)
            _check_structure(structure, {e.name for e in entries}, path)
        arrays = _read_arrays(f, entries, path)
    if structure is None:
        return {name: Tensor._wrap(array) for name, array in arrays.items()}
    return _decode(structure, arrays)


def _check_map_location(map_location):
    if map_location is None or callable(map_location):
        return
    targets = map_location.values() if isinstance(map_location, dict) else [map_location]
    for target in targets:
        if not isinstance(target, str | device):
            raise TypeError(
                "load: map_location must be a device, a device name, a dict of them or a "
                f"function, got {type(target).__name__}"
            )
        resolved = target if isinstance(target, device) else device(target)
        if resolved.type != "cpu":
            raise RuntimeError(no_gpu_message(f"load(map_location={str(resolved)!r})"))


def open_regular_file(path):
    """`path` opened for binary reading if it is a regular file; a folder, device, FIFO or
    socket raises NotARegularFileError at once, without reading from it or blocking (it is opened
    non-blocking and checked by the descriptor, so a file swapped in meanwhile is caught too)."""
    kind = _kind(os.stat(path).st_mode)  # refuse the obvious without even opening it
    if kind is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as error:
            if error.errno != errno.ENXIO:  # what opening a socket gives
                raise
            kind = "a socket"
        else:
            kind = _kind(os.fstat(fd).st_mode)
            if kind is None:
                return os.fdopen(fd, "rb")
            os.close(fd)
    raise NotARegularFileError(path, kind)


def _kind(mode):
    if stat.S_ISREG(mode):
        return None
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_header(data, path):
    """The safetensors header of the file contents `data`, after checking all of it (framing,
    metadata, every tensor's dtype, shape and offsets against the size of `data`), so that every
    malformed or foreign file gets a CheckpointError that says what is wrong."""
    return _read_header(BytesIO(data), len(data), path)[0]


class _Entry:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def _read_header(f, size, path):
    """(header, tensor entries in file order) of the file `f` of `size` bytes, checked, reading
    nothing but the header."""
    start = f.read(8)
    if len(start) < min(size, 8):
        raise CheckpointError(path, "the file became shorter while it was being read")
    try:
        return _checked_header(f, start, size, path)
    except CheckpointError:
        # Name a foreign format only once the file has failed as safetensors: a valid header
        # length can begin with the same bytes as a pickle.
        foreign = _foreign_format(start)
        if foreign:
            raise CheckpointError(
                path,
                f"this is {foreign}, not a safetensors checkpoint; chainrule "
                "never unpickles or runs anything from a file. Convert it with "
                "the library that wrote it (e.g. safetensors.torch.save_file)",
            ) from None
        raise


def _checked_header(f, start, size, path):
    if size < 8:
        raise CheckpointError(
            path,
            f"{size} bytes is too short for a safetensors file "
            "(an 8-byte header length comes first); the file is truncated or "
            "empty",
        )
    (length,) = struct.unpack("<Q", start)
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
    raw = _read_exactly(f, length, path)
    _check_containers(raw.count(b"{") + raw.count(b"["), size, "header", path)
    try:
        header = _parse_json(raw.decode("utf-8"), "header", path)
    except UnicodeDecodeError:
        raise CheckpointError(
            path, "the header is not valid JSON (not UTF-8): the file is corrupt or not safetensors"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            path, "the header is not a JSON object: the file is corrupt or not safetensors"
        )
    metadata = header.get("__metadata__")  # may be null, as safetensors allows
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(value, str) for value in metadata.values())
    ):
        raise CheckpointError(
            path,
            f"the header's __metadata__ must map strings to strings, not be {_short(metadata)}: "
            "the file is corrupt",
        )
    entries = [
        _checked_entry(name, info, path) for name, info in header.items() if name != "__metadata__"
    ]
    entries.sort(key=lambda e: (e.begin, e.end))
    _check_layout(entries, size - 8 - length, path)
    return header, entries


def _read_exactly(f, count, path):
    data = f.read(count)
    if len(data) != count:
        raise CheckpointError(path, "the file became shorter while it was being read")
    return data


def _check_containers(count, size, what, path):
    allowed = max_json_containers(size)
    if count > allowed:
        raise CheckpointError(
            path,
            f"the {what} holds up to {count} JSON objects and arrays, more than the {allowed} a "
            f"{size}-byte file may hold ({FREE_CONTAINERS} plus one per {BYTES_PER_CONTAINER} "
            "bytes): refused before parsing, as a file made to exhaust memory or time",
        )


class _DuplicateKey(Exception):
    pass


def _object_of_unique_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def _parse_json(text, what, path):
    try:
        return json.loads(text, object_pairs_hook=_object_of_unique_keys)
    except RecursionError:
        raise CheckpointError(
            path, f"the {what} is nested too deeply to be a checkpoint's: the file is corrupt"
        ) from None
    except _DuplicateKey as duplicate:
        raise CheckpointError(
            path, f"the {what} names the key {_short(duplicate.args[0])} twice: the file is corrupt"
        ) from None
    except ValueError as error:
        raise CheckpointError(
            path, f"the {what} is not valid JSON ({error}): the file is corrupt or not safetensors"
        ) from None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_entry(name, info, path):
    def bad(problem):
        return CheckpointError(path, f"the tensor {_short(name)} {problem}: the file is corrupt")

    if not isinstance(info, dict):
        raise bad(f"has a header entry that is not a JSON object but {_short(info)}")
    dtype = _DTYPES.get(info.get("dtype")) if isinstance(info.get("dtype"), str) else None
    if dtype is None:
        raise bad(
            f"has the dtype {_short(info.get('dtype'))}, not one NumPy can hold "
            f"({', '.join(_DTYPES)})"
        )
    shape = info.get("shape")
    if not (isinstance(shape, list) and all(_is_int(n) and n >= 0 for n in shape)):
        raise bad(f"has the shape {_short(shape)}, not a list of sizes >= 0")
    if len(shape) > _NUMPY_MAX_DIMS:
        raise bad(f"has {len(shape)} dimensions, more than NumPy's {_NUMPY_MAX_DIMS}")
    offsets = info.get("data_offsets")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_int(o) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise bad(f"has no valid data_offsets ([begin, end], 0 <= begin <= end): {_short(offsets)}")
    # NumPy refuses a shape whose nonzero sizes multiply past its byte limit, even when empty.
    extent = dtype.itemsize
    for n in shape:
        extent *= max(n, 1)
    if extent > _NUMPY_MAX_BYTES:
        raise bad(f"has the shape {_short(shape)}, too large for any array")
    nbytes = dtype.itemsize * math.prod(shape)
    begin, end = offsets
    if nbytes != end - begin:
        raise bad(
            f"of shape {shape} and dtype {info['dtype']} needs {nbytes} bytes, but its "
            f"data_offsets {offsets} span {end - begin}"
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _check_layout(entries, available, path):
    """The tensors' bytes must tile the data section exactly, as safetensors requires."""
    end = max((e.end for e in entries), default=0)
    if end > available:
        raise CheckpointError(
            path,
            f"the tensors need {end} bytes of data but only {available} "
            "are present: the file is truncated",
        )
    position, previous = 0, None
    for entry in entries:
        if entry.begin > position:
            raise CheckpointError(
                path,
                f"a gap of {entry.begin - position} bytes lies before the tensor "
                f"{_short(entry.name)}: the file is corrupt",
            )
        if entry.begin < position:
            raise CheckpointError(
                path,
                f"the tensors {_short(previous.name)} and {_short(entry.name)} overlap: "
                "the file is corrupt",
            )
        position, previous = entry.end, entry
    if position < available:
        raise CheckpointError(
            path,
            f"{available - position} bytes after the last tensor belong to no tensor: "
            "the file is corrupt",
        )


def _foreign_format(data):
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (PyTorch's .pt/.pth format stores pickles in one)"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "a Python pickle"
    if data[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    return None


def _read_arrays(f, entries, path):
    """The tensors, read in file order straight into their own arrays (the header was checked:
    each array's size is what the file holds for it)."""
    arrays = {}
    for entry in entries:
        array = np.empty(entry.shape, entry.dtype)
        buffer = memoryview(array.reshape(-1).view(np.uint8))
        filled = 0
        while filled < len(buffer):
            count = f.readinto(buffer[filled:])
            if not count:
                raise CheckpointError(path, "the file became shorter while it was being read")
            filled += count
        if entry.dtype == np.bool_ and array.size and buffer.obj.max() > 1:
            raise CheckpointError(
                path,
                f"the boolean tensor {_short(entry.name)} holds bytes other than 0 and 1: "
                "the file is corrupt",
            )
        arrays[entry.name] = array
    return arrays


def _parse_structure(metadata, tensor_count, size, path):
    version = metadata.get("version")
    if version != _VERSION:
        raise CheckpointError(
            path,
            f"this checkpoint has format version {_short(version)}; this chainrule reads "
            f"version {_VERSION!r} (was it written by a newer chainrule?)",
        )
    text = metadata["structure"]
    # The structure's brackets may have been escaped in the header's JSON: count them again.
    _check_containers(3 * tensor_count + text.count("{") + text.count("["), size, "structure", path)
    return _parse_json(text, "structure", path)


def _check_structure(structure, names, path):
    """Check the whole structure before anything is built from it: its nodes are what `save`
    writes, it nests at most MAX_DEPTH levels, and it names every stored tensor exactly once."""
    used = set()

    def bad(problem):
        return CheckpointError(path, f"the checkpoint's structure {problem}: the file is corrupt")

    def check(node, depth):
        if depth > MAX_DEPTH:
            raise bad(f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            for value in node:
                check(value, depth + 1)
            return
        if not isinstance(node, dict):
            return  # a number, string, boolean or null
        marker = next((m for m in _MARKERS if m in node), None)
        if marker is None:
            for value in node.values():
                check(value, depth + 1)
            return
        if len(node) != 1:
            raise bad(f"has a {marker} node with other keys beside it: {_short(node)}")
        content = node[marker]
        if marker == "__tensor__":
            if not isinstance(content, str):
                raise bad(f"has a __tensor__ node that names no tensor: {_short(content)}")
            if content not in names:
                raise bad(f"names a tensor {content!r} that the file does not contain")
            if content in used:
                raise bad(f"names the tensor {content!r} twice")
            used.add(content)
            return
        if not isinstance(content, list):
            raise bad(f"has a {marker} node holding {_short(content)}, not a list")
        if marker == "__tuple__":
            for value in content:
                check(value, depth + 1)
            return
        keys = set()
        for pair in content:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise bad(f"has a __dict__ entry {_short(pair)}, not a [key, value] pair")
            key, value = pair
            if isinstance(key, list | dict):
                raise bad(f"has a __dict__ key {_short(key)}, not a number, string or null")
            if key in keys:
                raise bad(f"has a __dict__ with the key {_short(key)} twice")
            keys.add(key)
            check(value, depth + 1)

    check(structure, 0)
    unused = names - used
    if unused:
        raise bad(f"never names the stored tensors {_short(sorted(unused))}")


def _decode(node, arrays):
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if isinstance(node, dict):
        if "__tensor__" in node:
            return Tensor._wrap(arrays[node["__tensor__"]])
        if "__tuple__" in node:
            return tuple(_decode(v, arrays) for v in node["__tuple__"])
        if "__dict__" in node:
            return {k: _decode(v, arrays) for k, v in node["__dict__"]}
        return {k: _decode(v, arrays) for k, v in node.items()}
    return node
