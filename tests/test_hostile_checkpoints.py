"""What `cr.load` and `cr.save` promise in the face of hostile, broken or unlucky files.

Reading:
- only regular files are read: a folder, a device (or a link to one), a FIFO or a socket is
  refused at once, without blocking and without reading from it;
- every claim of the safetensors header (its length, every tensor's dtype, shape and offsets) is
  checked against the file's size before anything is read or allocated;
- chainrule's `structure` metadata is checked completely (types, nesting depth, that every stored
  tensor is named exactly once) before anything is built;
- the work a file can demand is bounded by its size (see `chainrule.io` for the bound);
- every malformed file raises `CheckpointError` naming the file and the problem, and nothing in
  a file is ever executed: pickles and `torch.save` files are refused, their payload never runs.

Writing:
- a save killed at any moment leaves the old file or the new one, never a mix; its temporary
  file is recognisable, never taken for a checkpoint, and removed by the next save of the same
  target (but never while another process is still writing it);
- a full disk or a folder that cannot be written to raises an OSError that names the target.

The hostile loads run in a child process with a memory limit and a timeout, so that a regression
fails the test instead of hanging or exhausting the machine.
"""

import builtins
import copy
import errno
import fcntl
import functools
import json
import os
import pickle
import random
import resource
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from itertools import accumulate
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError
from safetensors.numpy import load as reference_load
from safetensors.numpy import save as reference_save

import chainrule as cr
import chainrule.io as crio
from chainrule.io import CheckpointError

REPO = Path(cr.__file__).resolve().parent.parent

_CHILD = """
import json, resource, sys, time
import chainrule as cr
start = time.perf_counter()
try:
    cr.load(sys.argv[1])
    outcome = {"type": None, "message": ""}
except BaseException as error:
    outcome = {"type": type(error).__name__, "message": str(error)}
outcome["seconds"] = time.perf_counter() - start
# VmHWM: this process's own peak; ru_maxrss would include the parent's memory at the fork.
try:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:")).split()[1]
    outcome["peak_mb"] = int(peak) / 1024
except (OSError, StopIteration):  # not Linux
    outcome["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(outcome))
"""


def _load_in_child(path, timeout=30, memory=2 * 2**30):
    """cr.load(path) in a fresh interpreter limited to `memory` bytes of address space: what it
    raised (type and message), how long the load took and the process's peak memory in MB."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"cr.load({str(path)!r}) was still running after {timeout} s")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_refused_quickly(outcome, path, reason, seconds=2.0):
    assert outcome["type"] == "CheckpointError", outcome
    assert outcome["message"].startswith(f"{path}: "), outcome
    assert reason in outcome["message"], outcome
    assert outcome["seconds"] < seconds, outcome


def _blob(entries, metadata=None, data=b""):
    """A safetensors file by hand: `entries` is the header (tensor name -> info)."""
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _chainrule_blob(structure, arrays=None):
    """A chainrule checkpoint with the given (raw JSON text) structure and arrays."""
    metadata = {"format": "chainrule", "version": "1", "structure": structure}
    return reference_save(arrays or {}, metadata=metadata)


def _write(tmp_path, blob, name="bad.safetensors"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


# ---- only regular files are read ----------------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_without_reading_it(device):
    _assert_refused_quickly(_load_in_child(device), device, "character device")


def test_a_link_to_a_device_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "model.safetensors"
    link.symlink_to("/dev/zero")
    _assert_refused_quickly(_load_in_child(link), link, "character device")


def test_a_fifo_without_a_writer_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    _assert_refused_quickly(_load_in_child(fifo, timeout=10), fifo, "FIFO")


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "sock.safetensors"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(CheckpointError, match=r"sock.safetensors: .*socket"):
            cr.load(path)
    finally:
        server.close()


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r": it is a directory, not a regular file"):
        cr.load(tmp_path)


def test_a_missing_file_raises_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        cr.load(tmp_path / "absent.safetensors")
    assert caught.value.filename == str(tmp_path / "absent.safetensors")


# ---- the framing: truncated, random and lying files ----------------------------------------------


def _valid_bytes(tmp_path):
    path = tmp_path / "valid.safetensors"
    cr.save({"w": cr.arange(100, dtype=cr.float64)}, path)
    return path.read_bytes()


@pytest.mark.parametrize("cut", [0, 3, 8, 20, -1, -200])
def test_truncated_file_raises_a_clear_error(tmp_path, cut):
    data = _valid_bytes(tmp_path)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=r"cut.safetensors: .*(truncated|too short)"):
        cr.load(path)


def test_random_bytes_raise_a_clear_error(tmp_path):
    path = tmp_path / "noise.bin"
    for seed in range(20):
        path.write_bytes(np.random.default_rng(seed).bytes(5000))
        with pytest.raises(CheckpointError, match="noise.bin: .*(corrupt|truncated|not)"):
            cr.load(path)


def test_header_claiming_a_huge_length_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match=r"claims a length of 4611686018427387904 bytes"):
        cr.load(path)
    path.write_bytes(struct.pack("<Q", 5000) + b'{"a": 1}')
    with pytest.raises(CheckpointError, match=r"claims 5000 bytes but only 8 follow"):
        cr.load(path)


def test_header_that_is_not_json_or_lies_about_offsets_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 6) + b"not js" + b"\0" * 10)
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        cr.load(path)
    header = json.dumps({"w": {"dtype": "F64", "shape": [1000], "data_offsets": [0, 8000]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 80)
    with pytest.raises(CheckpointError, match="need 8000 bytes of data but only 80 are present"):
        cr.load(path)


def test_a_safetensors_file_whose_header_length_starts_like_a_pickle_loads(tmp_path):
    # Length 0x0380 is stored little-endian as 80 03 ...: the first bytes of a protocol-3 pickle.
    def header(pad):
        entries = {
            "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "__metadata__": {"pad": "x" * pad},
        }
        return json.dumps(entries).encode()

    pad = 0x0380 - len(header(0))
    blob = struct.pack("<Q", 0x0380) + header(pad) + np.float32(2.5).tobytes()
    assert blob[:2] == b"\x80\x03"
    path = tmp_path / "pickle_like.safetensors"
    path.write_bytes(blob)
    assert cr.load(path)["a"].tolist() == [2.5]


# ---- the header's claims are checked against the file --------------------------------------------


def _one_tensor(**info):
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    entry.update(info)
    return _blob({"w": entry}, data=b"\0" * 8)


LYING_HEADERS = {
    "zero by 2**62": (_one_tensor(shape=[0, 2**62], data_offsets=[0, 0])[:-8], "too large"),
    "huge dimensions": (_one_tensor(shape=[2**40, 2**40]), "too large"),
    "65 dimensions": (_one_tensor(shape=[1] * 65, data_offsets=[0, 4])[:-4], "dimensions"),
    "negative dimension": (_one_tensor(shape=[-2]), "shape"),
    "fractional dimension": (_one_tensor(shape=[2.0]), "shape"),
    "boolean dimension": (_one_tensor(shape=[True, 2]), "shape"),
    "shape not a list": (_one_tensor(shape="2"), "shape"),
    "unknown dtype": (_one_tensor(dtype="F128"), "dtype"),
    "dtype NumPy lacks": (_one_tensor(dtype="BF16", shape=[4]), "dtype"),
    "shape disagrees with offsets": (_one_tensor(shape=[3]), "12 bytes"),
    "offsets reversed": (_one_tensor(data_offsets=[8, 0]), "data_offsets"),
    "offsets negative": (_one_tensor(data_offsets=[-8, 0]), "data_offsets"),
    "offsets not integers": (_one_tensor(data_offsets=[0, 8.0]), "data_offsets"),
    "offsets missing": (_blob({"w": {"dtype": "F32", "shape": [2]}}, data=b"\0" * 8), "offsets"),
    "entry not an object": (_blob({"w": [0, 8]}, data=b"\0" * 8), "not a JSON object"),
    "data past the end": (_one_tensor(shape=[4], data_offsets=[0, 16]), "truncated"),
    "bytes nobody claims": (_one_tensor() + b"\0" * 4, "4 bytes after"),
    "gap before a tensor": (
        _blob(
            {
                "a": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]},
            },
            data=b"\0" * 8,
        ),
        "gap",
    ),
    "overlapping tensors": (
        _blob(
            {
                "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]},
            },
            data=b"\0" * 8,
        ),
        "overlap",
    ),
    "duplicate tensor names": (
        struct.pack("<Q", 120)
        + (
            b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
            b'"w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'
        ).ljust(120)
        + b"\0\0",
        "twice",
    ),
    "metadata a list": (_blob({}, metadata=["format", "chainrule"]), "__metadata__"),
    "metadata values not strings": (_blob({}, metadata={"format": 5}), "__metadata__"),
    "header nested 100,000 deep": (
        struct.pack("<Q", 200_001) + b"[" * 100_000 + b" " + b"]" * 100_000,
        "nested",
    ),
    "header a list": (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    "header not UTF-8": (struct.pack("<Q", 4) + b"{\xff}\0", "not valid JSON"),
    "boolean stored as 2": (
        _blob({"b": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}}, data=b"\x02"),
        "boolean",
    ),
}


@pytest.mark.parametrize("case", LYING_HEADERS, ids=list(LYING_HEADERS))
def test_a_header_that_lies_raises_checkpoint_error_naming_the_problem(tmp_path, case):
    blob, reason = LYING_HEADERS[case]
    path = _write(tmp_path, blob)
    with pytest.raises(CheckpointError) as caught:
        cr.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert reason in caught.value.reason


def test_a_zero_size_tensor_with_a_huge_dimension_numpy_can_hold_loads(tmp_path):
    path = _write(tmp_path, _one_tensor(shape=[0, 2**59], dtype="F64", data_offsets=[0, 0])[:-8])
    assert cr.load(path)["w"].shape == (0, 2**59)


def test_null_metadata_is_accepted_as_safetensors_accepts_it(tmp_path):
    blob = _blob(
        {"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "__metadata__": None},
        data=b"\1\2",
    )
    assert set(reference_load(blob)) == {"w"}
    assert cr.load(_write(tmp_path, blob))["w"].tolist() == [1, 2]


def test_read_header_of_bytes_checks_the_same_claims(tmp_path):
    with pytest.raises(CheckpointError, match="__metadata__"):
        crio.read_header(_blob({}, metadata=["x"]), "model.safetensors")
    header = crio.read_header(_one_tensor(), "model.safetensors")
    assert header["w"]["shape"] == [2]


# ---- the structure is checked before anything is built -----------------------------------------

W = {"w": np.arange(3, dtype=np.float32)}

BAD_STRUCTURES = {
    "dict of a number": ('{"__dict__": 5}', {}, "__dict__"),
    "tuple of a number": ('{"__tuple__": 5}', {}, "__tuple__"),
    "tensor named by a list": ('{"__tensor__": [1]}', {}, "__tensor__"),
    "dict entry not a pair": ('{"__dict__": [[1]]}', {}, "pair"),
    "dict key a list": ('{"__dict__": [[[1], 2]]}', {}, "key"),
    "dict key twice": ('{"__dict__": [[1, 2], [1, 3]]}', {}, "twice"),
    "plain key twice": ('{"a": 1, "a": 2}', {}, "twice"),
    "marker beside other keys": ('{"__tensor__": "w", "x": 1}', W, "__tensor__"),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, {}, "nested"),
    "nested deeper than the limit": ("[" * 150 + "]" * 150, {}, "nested"),
    "missing tensor": ('{"__tensor__": "nope"}', W, "'nope'"),
    "tensor named twice": ('[{"__tensor__": "w"}, {"__tensor__": "w"}]', W, "twice"),
    "stored tensor never named": ("{}", W, "'w'"),
    "not JSON": ("{", {}, "not valid JSON"),
    "huge integer": ("1" * 5000, {}, "not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_STRUCTURES, ids=list(BAD_STRUCTURES))
def test_a_manipulated_structure_raises_checkpoint_error_naming_the_problem(tmp_path, case):
    structure, arrays, reason = BAD_STRUCTURES[case]
    path = _write(tmp_path, _chainrule_blob(structure, arrays))
    with pytest.raises(CheckpointError) as caught:
        cr.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert reason in caught.value.reason


def test_a_checkpoint_from_a_newer_format_version_is_refused(tmp_path):
    blob = reference_save({}, metadata={"format": "chainrule", "version": "2", "structure": "1"})
    with pytest.raises(CheckpointError, match="format version '2'"):
        cr.load(_write(tmp_path, blob))


def test_saving_deeper_nesting_than_load_accepts_is_refused(tmp_path):
    deep = []
    for _ in range(crio.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match=f"nested deeper than {crio.MAX_DEPTH} levels"):
        cr.save(deep, tmp_path / "deep.safetensors")
    ok = []
    for _ in range(crio.MAX_DEPTH - 1):
        ok = [ok]
    cr.save(ok, tmp_path / "ok.safetensors")
    assert cr.load(tmp_path / "ok.safetensors") == ok


# ---- the work a file can demand is bounded by its size -----------------------------------------


def _empty_tensor_entries(count):
    return [f'"t{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' for i in range(count)]


def _file_of(entries):
    raw = ("{" + ",".join(entries) + "}").encode()
    return struct.pack("<Q", len(raw)) + raw


def test_a_million_zero_size_tensors_are_refused_before_parsing(tmp_path):
    path = _write(tmp_path, _file_of(_empty_tensor_entries(1_400_000)))
    assert os.path.getsize(path) > 50_000_000
    outcome = _load_in_child(path, memory=2**30)
    _assert_refused_quickly(outcome, path, "JSON objects and arrays")
    assert outcome["peak_mb"] < 400, outcome  # the file itself is about 58 MB


def test_the_largest_file_of_empty_tensors_allowed_loads_in_bounded_time_and_memory(tmp_path):
    entries = _empty_tensor_entries(200_000)
    # sizes[c - 1]: the size of the file of the first c entries (length, braces and commas)
    sizes = accumulate(len(entry) + 1 for entry in entries)
    count = max(
        c for c, size in enumerate(sizes, 1) if 3 * c + 1 <= crio.max_json_containers(8 + 1 + size)
    )
    over = _write(tmp_path, _file_of(entries[: count + 1]), "over.safetensors")
    with pytest.raises(CheckpointError, match="JSON objects and arrays"):
        cr.load(over)
    blob = _file_of(entries[:count])
    outcome = _load_in_child(_write(tmp_path, blob))
    assert outcome["type"] is None, outcome
    # the bound stated in chainrule.io (about 120 MB plus 16 times the header), on top of the
    # interpreter's own 60 MB or so
    assert outcome["peak_mb"] < 180 + 16 * len(blob) / 2**20, outcome
    assert outcome["seconds"] < 20, outcome


def test_a_structure_with_too_many_containers_is_refused(tmp_path):
    structure = "[" + ",".join(["[]"] * 2_000_000) + "]"
    path = _write(tmp_path, _chainrule_blob(structure))
    with pytest.raises(CheckpointError, match="JSON objects and arrays"):
        cr.load(path)


def test_a_structure_hiding_its_brackets_in_escapes_is_still_counted(tmp_path):
    structure = "[" + ",".join(["[]"] * 2_000_000) + "]"
    raw = json.dumps({"__metadata__": {"format": "chainrule", "version": "1", "structure": "S"}})
    hidden = json.dumps(structure).replace("[", "\\u005b").replace("]", "\\u005d")
    raw = raw.replace('"S"', hidden).encode()
    path = _write(tmp_path, struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(CheckpointError, match="JSON objects and arrays"):
        cr.load(path)


# ---- nothing in a file is ever executed ---------------------------------------------------------


class _Trap:
    """Unpickling this creates a marker file: proof that a loader executed the file's code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_trap_does_run_when_unpickled(tmp_path):
    # The proof the tests below rely on: loading the payload with pickle does create the marker.
    marker = tmp_path / "executed"
    pickle.loads(pickle.dumps(_Trap(str(marker))))
    assert marker.exists()


def test_a_pickle_is_refused_and_its_payload_does_not_run(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": _Trap(str(marker))}))
    with pytest.raises(CheckpointError, match="evil.pkl: this is a Python pickle.*never unpickles"):
        cr.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_torch_save_file_is_refused_and_its_payload_does_not_run(tmp_path, zipped):
    marker = tmp_path / "executed"
    path = tmp_path / "model.pt"
    torch.save(
        {"w": torch.ones(3), "trap": _Trap(str(marker))},
        path,
        _use_new_zipfile_serialization=zipped,
    )
    foreign = "a zip archive" if zipped else "a Python pickle"
    with pytest.raises(CheckpointError, match=f"model.pt: this is {foreign}"):
        cr.load(path)
    assert not marker.exists()


# ---- mutated files: the exact state, or CheckpointError -----------------------------------------


def _reference_state():
    rng = np.random.default_rng(0)
    return {
        "model": {
            "weight": cr.tensor(rng.standard_normal((3, 4)), dtype=cr.float32),
            "bias": cr.tensor(rng.standard_normal(3), dtype=cr.float64),
            "steps": np.array(7, dtype=np.int64),
        },
        "mask": rng.random((2, 2)) > 0.5,
        "empty": np.zeros((0, 3), dtype=np.float16),
        "history": [0.5, float("inf"), None, True, "note"],
        "pair": (1, np.arange(4, dtype=np.uint8)),
        "by_int": {1: "one", 2: np.arange(2, dtype=np.int32)},
    }


def _same(a, b):
    """Exact equality of loaded states: types, dtypes, shapes and every bit."""
    if isinstance(a, cr.Tensor | np.ndarray):
        a = a._data if isinstance(a, cr.Tensor) else a
        b = b._data if isinstance(b, cr.Tensor) else b
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def _tensors_in(obj):
    if isinstance(obj, cr.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors_in(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _tensors_in(value)


# The names the reference state's tensors are stored under, so that random structures also name
# real tensors (twice, or in the wrong kind of node).
_TENSOR_NAMES = ["model.weight", "model.bias", "model.steps", "mask", "empty", "pair.1", "by_int.2"]
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 2**64)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(_TENSOR_NAMES),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["__tensor__", "__tuple__", "__dict__", "a"]), children)
        | st.lists(st.tuples(st.sampled_from([1, 2, "a"]), children).map(list)).map(
            lambda pairs: {"__dict__": pairs}
        )
    ),
    max_leaves=12,
)


@functools.cache
def _saved_blob():
    """The bytes cr.save writes for the reference state."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "state.safetensors")
        cr.save(_reference_state(), path)
        with open(path, "rb") as f:
            return f.read()


def _split(blob):
    (length,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + length]), blob[8 + length :]


def _join(header, data, raw=None):
    raw = json.dumps(header).encode() if raw is None else raw
    return struct.pack("<Q", len(raw)) + raw + data


def _canonical(node):
    """A structure as JSON text with tensor names left out and dicts of non-marker string keys
    written plainly, as save writes them: two structures that build the same object are equal."""

    def canonical(node):
        if isinstance(node, list):
            return [canonical(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "__tensor__" in node:
            return {"__tensor__": None}
        if "__tuple__" in node:
            return {"__tuple__": canonical(node["__tuple__"])}
        pairs = node["__dict__"] if "__dict__" in node else list(node.items())
        if all(isinstance(k, str) and k not in crio._MARKERS for k, _ in pairs):
            return {k: canonical(v) for k, v in pairs}
        return {"__dict__": [[k, canonical(v)] for k, v in pairs]}

    return json.dumps(canonical(node))


def _node_paths(node, path=()):
    yield path
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        yield from _node_paths(child, (*path, key))


def _node_at(node, path):
    for key in path:
        node = node[key]
    return node


def _with_node(structure, path, replacement):
    if not path:
        return replacement
    _node_at(structure, path[:-1])[path[-1]] = replacement
    return structure


@st.composite
def _mutated_files(draw):
    blob = _saved_blob()
    header, data = _split(blob)
    kinds = ["entry", "structure", "metadata", "random header", "truncate", "bytes", "length"]
    kind = draw(st.sampled_from(kinds))
    names = sorted(k for k in header if k != "__metadata__")
    if kind == "entry":
        name = draw(st.sampled_from(names))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "add"]))
        if field == "dtype":
            header[name]["dtype"] = draw(
                st.sampled_from(["F16", "F32", "F64", "I8", "U8", "I64", "BOOL", "BF16", "X"])
            )
        elif field == "shape":
            sizes = st.integers(-1, 2**64) | st.sampled_from([0, 1, 2, 3, 4, 2**40, 2**62, 2**63])
            shape = draw(
                st.lists(sizes, max_size=5) | st.lists(st.just(1), min_size=63, max_size=66)
            )
            begin, end = header[name]["data_offsets"]
            if begin == end:  # an empty tensor stays empty: only its other sizes are tested
                shape.insert(draw(st.integers(0, len(shape))), 0)
            header[name]["shape"] = shape
        elif field == "data_offsets":
            header[name]["data_offsets"] = draw(
                st.lists(st.integers(-2, len(data) + 2), min_size=1, max_size=3)
            )
        elif field == "drop":
            del header[name]
        else:
            header[draw(st.text(min_size=1, max_size=4))] = draw(_json_values)
    elif kind == "structure":
        structure = json.loads(header["__metadata__"]["structure"])
        paths = list(_node_paths(structure))
        where = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(["replace", "copy", "delete", "rename"]))
        if operation == "replace":
            structure = _with_node(structure, where, draw(_json_values))
        elif operation == "copy":  # e.g. a second reference to a tensor, or a node moved
            source = copy.deepcopy(_node_at(structure, draw(st.sampled_from(paths))))
            structure = _with_node(structure, where, source)
        elif where:
            parent = _node_at(structure, where[:-1])
            if operation == "delete":
                del parent[where[-1]]
            elif isinstance(parent, dict):
                key = draw(st.sampled_from(["__tensor__", "__tuple__", "__dict__", "x"]))
                parent[key] = parent.pop(where[-1])
        header["__metadata__"]["structure"] = json.dumps(structure)
    elif kind == "metadata":
        key = draw(st.sampled_from(["format", "version", "structure", "other"]))
        header["__metadata__"][key] = draw(
            st.sampled_from(["chainrule", "1", "2", ""])
            | _json_values.map(json.dumps)
            | _json_values
        )
    elif kind == "random header":
        metadata = header["__metadata__"]
        header = draw(st.dictionaries(st.text(max_size=4) | st.sampled_from(names), _json_values))
        if draw(st.booleans()):
            header["__metadata__"] = metadata
    if kind in ("entry", "structure", "metadata", "random header"):
        return _join(header, data)
    if kind == "truncate":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    if kind == "length":
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + blob[8:]
    start = draw(st.integers(0, len(blob) - 1))
    noise = draw(st.binary(min_size=1, max_size=16))
    return blob[:start] + noise + blob[start + len(noise) :]


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(blob=_mutated_files())
def test_a_mutated_checkpoint_loads_exactly_what_it_says_or_raises_checkpoint_error(tmp_path, blob):
    path = _write(tmp_path, blob, "mutated.safetensors")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        loaded = cr.load(path)
    except CheckpointError as error:
        assert str(error).startswith(f"{path}: ")
        return
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert seconds < 2, f"{seconds:.1f} s for a {len(blob)}-byte file"
        assert peak < 2_000_000 + 100 * len(blob), f"{peak} bytes for a {len(blob)}-byte file"
    # Loaded: the reference reader accepts the same file and holds exactly these tensors...
    try:
        stored = reference_load(blob)
    except (SafetensorError, KeyError, ValueError) as error:
        pytest.fail(f"cr.load accepted a file the reference reader refuses ({error})")
    tensors = list(_tensors_in(loaded))
    assert len(tensors) == len(stored)
    for tensor in tensors:
        assert any(_same(tensor._data, array) for array in stored.values())
        if tensor._data.dtype == np.bool_:
            assert tensor._data.view(np.uint8).max(initial=0) <= 1
    # ...the structure it describes is exactly what was built (saving it again writes it back)...
    metadata = _split(blob)[0].get("__metadata__", {})
    if metadata.get("format") == "chainrule" and "structure" in metadata:
        cr.save(loaded, tmp_path / "again.safetensors")
        again = _split((tmp_path / "again.safetensors").read_bytes())[0]["__metadata__"]
        assert _canonical(json.loads(again["structure"])) == _canonical(
            json.loads(metadata["structure"])
        )
    # ...and a file whose header says what was saved gives back exactly what was saved.
    if _split(blob) == _split(_saved_blob()):
        assert _same(loaded, _reference_state())


def test_the_reference_state_round_trips_exactly(tmp_path):
    state = _reference_state()
    cr.save(state, tmp_path / "state.safetensors")
    loaded = cr.load(tmp_path / "state.safetensors")
    assert _same(loaded, state)


# ---- saves: killed, concurrent, out of space, not allowed ---------------------------------------


def _state(value):
    return {"weights": cr.full((512, 1024), float(value), dtype=cr.float64), "version": value}


def _fork(body):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with torch's threads idle
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            body()
            status = 0
        finally:
            os._exit(status)
    return pid


def _temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_killed_saves_leave_the_old_or_new_file_and_the_next_save_removes_their_leftovers(
    tmp_path,
):
    path = tmp_path / "ckpt.safetensors"
    cr.save(_state(0), path)
    rng = random.Random(0)
    seen, left_behind = set(), 0

    def save_forever(first):
        version = first
        while True:
            cr.save(_state(version), path)
            version += 1

    for trial in range(20):
        pid = _fork(lambda trial=trial: save_forever(1 + trial * 1000))
        time.sleep(rng.uniform(0.005, 0.12))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = cr.load(path)  # never a corrupt file
        version = loaded["version"]
        assert np.all(loaded["weights"].numpy() == float(version)), f"trial {trial}: mixed data"
        seen.add(version)
        # at most the one temporary of the save that was killed: every earlier one was removed
        assert len(_temporaries(tmp_path)) <= 1
        left_behind += len(_temporaries(tmp_path))
    assert len(seen - {0}) >= 2, f"the writer never finished a save: saw versions {seen}"
    assert left_behind >= 1, "no kill hit a save mid-write: the test proved nothing"
    cr.save(_state(-1), path)
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert cr.load(path)["version"] == -1


def test_concurrent_saves_of_one_target_never_remove_each_others_temporaries(tmp_path):
    path = tmp_path / "ckpt.safetensors"

    def save_many(first):
        for version in range(first, first + 15):
            cr.save(_state(version), path)

    pids = [_fork(lambda first=first: save_many(first)) for first in (100, 200, 300)]
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert statuses == [0, 0, 0], "a saver failed: its temporary was removed under it"
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    loaded = cr.load(path)
    assert np.all(loaded["weights"].numpy() == float(loaded["version"]))


def test_a_temporary_another_process_is_writing_is_left_alone(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    cr.save(_state(0), path)
    live = tmp_path / ".ckpt.safetensors.0123456789abcdef.tmp"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a live saver holds while it writes
        cr.save(_state(1), path)
        assert live.exists()
    cr.save(_state(2), path)
    assert not live.exists()


def test_temporaries_are_hidden_not_named_like_checkpoints_and_never_loaded(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    names = []

    def note(tmp):
        names.append(os.path.basename(tmp))
        with open(tmp, "wb") as f:
            f.write(b"partial")
        # while it exists, no listing of checkpoints picks it up (pathlib's glob shows dotfiles)
        assert list(tmp_path.glob("*.safetensors")) == []
        assert list(tmp_path.glob("*")) == [Path(tmp)]

    crio.atomic_write(str(path), note)
    (name,) = names
    assert name.startswith(".ckpt.safetensors.") and name.endswith(".tmp")
    stale = tmp_path / name
    cr.save(_state(0), stale)  # a complete checkpoint under a temporary's name...
    with pytest.raises(CheckpointError, match="unfinished save of ckpt.safetensors"):
        cr.load(stale)  # ...is still not taken for one


def test_other_targets_temporaries_are_not_touched(tmp_path):
    other = tmp_path / ".other.safetensors.0123456789abcdef.tmp"
    other.write_bytes(b"x")
    cr.save(_state(0), tmp_path / "ckpt.safetensors")
    assert other.exists()


def _redirect_temporaries_to(device, monkeypatch):
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".tmp"):
            return real_open(device, mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_raises_an_os_error_naming_the_target_and_keeps_the_old_file(
    tmp_path, monkeypatch, where
):
    path = tmp_path / "ckpt.safetensors"
    cr.save(_state(0), path)
    before = path.read_bytes()
    if where == "write":
        _redirect_temporaries_to("/dev/full", monkeypatch)  # the kernel's own ENOSPC
    else:

        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        cr.save(_state(1), path)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]


def test_a_folder_that_cannot_be_written_raises_permission_error_naming_the_target():
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "ckpt.safetensors")
    cr.save(_state(0), path)
    os.chmod(folder, 0o555)
    read, write = os.pipe()

    def save_without_rights():
        if os.geteuid() == 0:  # root writes anywhere: become nobody for the attempt
            os.setuid(65534)
        try:
            cr.save(_state(1), path)
            outcome = {"type": None}
        except OSError as error:
            outcome = {
                "type": type(error).__name__,
                "filename": error.filename,
                "message": str(error),
            }
        os.write(write, json.dumps(outcome).encode())

    try:
        os.chmod(os.path.dirname(folder), os.stat(os.path.dirname(folder)).st_mode)
        pid = _fork(save_without_rights)
        os.close(write)
        outcome = json.loads(os.read(read, 10_000))
        os.waitpid(pid, 0)
    finally:
        os.close(read)
        os.chmod(folder, 0o755)
    assert outcome["type"] == "PermissionError", outcome
    assert outcome["filename"] == path and path in outcome["message"]
    assert cr.load(path)["version"] == 0
    assert os.listdir(folder) == ["ckpt.safetensors"]
    os.unlink(path)
    os.rmdir(folder)


def test_a_save_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "private.safetensors"
    cr.save(_state(0), path)
    os.chmod(path, 0o600)
    cr.save(_state(1), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
