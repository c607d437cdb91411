"""`chainrule.distributed`: several processes training one model, with torch.distributed's names,
on MPI (through mpi4py, the `distributed` extra: `pip install chainrule[distributed]`).

Start the processes with MPI's launcher, one per rank: `mpiexec -n 2 python train.py`. Each calls
`init_process_group()` first; the collectives then work on chainrule tensors in place, as PyTorch
defines them. `nn.parallel.DistributedDataParallel` averages gradients with them during backward,
and `data.DistributedSampler` gives each rank its share of a data set.

A job never hangs on a failure: an exception that reaches the top of any rank's program aborts the
whole job (MPI_Abort, exit status 1, the traceback printed first), so do the launcher's own checks
when a rank dies; and every collective waits at most `timeout` (init_process_group's argument,
30 minutes by default as in PyTorch) before it aborts the job naming the collective and the rank.
"""

import datetime
import enum
import sys
import time
import traceback

import numpy as np

from .engine.tensor import Tensor

__all__ = [
    "ReduceOp",
    "Work",
    "all_gather",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "get_backend",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "reduce_scatter",
]

BACKENDS = ("mpi",)
_DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class ReduceOp(enum.Enum):
    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


class _Group:
    """The one process group: MPI's world communicator and the collectives' timeout."""

    def __init__(self, mpi, comm, timeout):
        self.mpi, self.comm, self.timeout = mpi, comm, timeout
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.previous_excepthook = sys.excepthook


_group = None


def _mpi():
    """mpi4py's MPI module, imported on first use: it is an optional extra, and importing it
    starts MPI."""
    try:
        import mpi4py

        mpi4py.rc.initialize = True
        mpi4py.rc.finalize = True
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(
            "chainrule.distributed needs mpi4py and an MPI library: pip install "
            "'chainrule[distributed]' (brings mpi4py and MPICH), then start the ranks with "
            "mpiexec -n 2 python your_script.py"
        ) from None
    return MPI


def is_available():
    """Whether mpi4py (and so the MPI backend) can be imported."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def init_process_group(backend="mpi", init_method=None, timeout=None, world_size=-1, rank=-1):
    """Join the job that `mpiexec` started. `world_size` and `rank`, when given, must agree with
    MPI's (MPI assigns them); `init_method` is not needed (MPI's launcher connects the ranks)."""
    global _group
    if backend is None:
        backend = "mpi"
    if str(backend).lower() not in BACKENDS:
        raise ValueError(
            f"backend {backend!r} is not available: chainrule's one backend is 'mpi' "
            "(start the ranks with mpiexec)"
        )
    if _group is not None:
        raise RuntimeError("trying to initialize the default process group twice")
    timeout = _DEFAULT_TIMEOUT if timeout is None else timeout
    if not isinstance(timeout, datetime.timedelta):
        raise TypeError(f"timeout must be a datetime.timedelta, got {type(timeout).__name__}")
    mpi = _mpi()
    comm = mpi.COMM_WORLD
    group = _Group(mpi, comm, timeout.total_seconds())
    for name, given, actual in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if given is not None and given != -1 and given != actual:
            raise ValueError(
                f"init_process_group({name}={given}) but MPI started this process with "
                f"{name} {actual}: leave {name} out (mpiexec -n sets it)"
            )
    _group = group
    sys.excepthook = _abort_on_uncaught
    return None


def _abort_on_uncaught(kind, value, tb):
    """One rank's uncaught exception ends the whole job, instead of leaving the others waiting in
    a collective."""
    group = _group
    traceback.print_exception(kind, value, tb)
    if group is not None and group.size > 1:
        sys.stderr.write(f"chainrule.distributed: rank {group.rank} failed; aborting the job\n")
        sys.stderr.flush()
        group.comm.Abort(1)


def destroy_process_group(group=None):
    global _group
    g = _require("destroy_process_group")
    sys.excepthook = g.previous_excepthook
    _group = None


def is_initialized():
    return _group is not None


def get_backend(group=None):
    _require("get_backend")
    return "mpi"


def get_rank(group=None):
    return _require("get_rank").rank


def get_world_size(group=None):
    return _require("get_world_size").size


def _require(name):
    if _group is None:
        raise RuntimeError(
            f"{name}: the default process group has not been initialized; call "
            "chainrule.distributed.init_process_group() first (and start the ranks with mpiexec)"
        )
    return _group


class Work:
    """A collective in flight (`async_op=True`): `wait()` finishes it, `is_completed()` asks."""

    def __init__(self, group, request, name, finish=None):
        self._group, self._request, self._name, self._finish = group, request, name, finish
        self._done = False

    def is_completed(self):
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None):
        if not self._done:
            _wait(self._group, self._request, self._name, timeout)
            self._complete()
        return True

    def _complete(self):
        self._done = True
        if self._finish is not None:
            self._finish()


def _wait(group, request, name, timeout=None):
    """Wait for `request`, aborting the job past the timeout rather than hanging forever."""
    limit = group.timeout if timeout is None else _seconds(timeout)
    deadline = time.monotonic() + limit
    spins = 0
    while not request.Test():
        spins += 1
        if spins > 1000:
            time.sleep(0.0002)  # a long wait: give the core back between checks
        if time.monotonic() > deadline:
            sys.stderr.write(
                f"chainrule.distributed: {name} on rank {group.rank} did not complete within "
                f"{limit:g} s (another rank failed or never called it); aborting the job\n"
            )
            sys.stderr.flush()
            group.comm.Abort(1)


def _seconds(timeout):
    return timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)


def _array(tensor, name):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} works on chainrule tensors, got {type(tensor).__name__}")
    array = tensor._data
    if not array.flags.c_contiguous:
        raise ValueError(f"{name}: the tensor must be contiguous (call .contiguous() first)")
    return array


def _mpi_op(group, op, name):
    mpi = group.mpi
    table = {
        ReduceOp.SUM: mpi.SUM,
        ReduceOp.AVG: mpi.SUM,
        ReduceOp.PRODUCT: mpi.PROD,
        ReduceOp.MIN: mpi.MIN,
        ReduceOp.MAX: mpi.MAX,
    }
    if op not in table:
        raise ValueError(f"{name}: op must be a chainrule.distributed.ReduceOp, got {op!r}")
    return table[op]


def _finish(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce `tensor` across all ranks, in place: every rank ends with the result."""
    g = _require("all_reduce")
    array = _array(tensor, "all_reduce")
    if op is ReduceOp.AVG and array.dtype.kind != "f":
        raise ValueError(f"all_reduce: ReduceOp.AVG needs a float tensor, got {array.dtype}")
    request = g.comm.Iallreduce(g.mpi.IN_PLACE, array, op=_mpi_op(g, op, "all_reduce"))
    size = g.size

    def average():
        np.divide(array, size, out=array)

    finish = average if op is ReduceOp.AVG else None
    return _finish(Work(g, request, "all_reduce", finish), async_op)


def broadcast(tensor, src, group=None, async_op=False):
    """Copy rank `src`'s `tensor` into every rank's, in place."""
    g = _require("broadcast")
    _check_rank(g, src, "broadcast", "src")
    array = _array(tensor, "broadcast")
    request = g.comm.Ibcast(array, root=src)
    return _finish(Work(g, request, "broadcast"), async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill `tensor_list[r]` with rank r's `tensor`, on every rank."""
    g = _require("all_gather")
    array = _array(tensor, "all_gather")
    outputs = list(tensor_list)
    if len(outputs) != g.size:
        raise ValueError(
            f"all_gather: tensor_list has {len(outputs)} tensors, but the world size is {g.size}"
        )
    for i, out in enumerate(outputs):
        out_array = _array(out, "all_gather")
        if out_array.shape != array.shape or out_array.dtype != array.dtype:
            raise ValueError(
                f"all_gather: tensor_list[{i}] is {out_array.dtype} {out_array.shape}, the tensor "
                f"is {array.dtype} {array.shape}; they must match"
            )
    gathered = np.empty((g.size,) + array.shape, dtype=array.dtype)
    request = g.comm.Iallgather(array, gathered)

    def scatter_back():
        for out, row in zip(outputs, gathered):
            np.copyto(out._data, row)

    return _finish(Work(g, request, "all_gather", scatter_back), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """`output` on rank r becomes the reduction over all ranks of their `input_list[r]`."""
    g = _require("reduce_scatter")
    out_array = _array(output, "reduce_scatter")
    inputs = [_array(t, "reduce_scatter") for t in input_list]
    if len(inputs) != g.size:
        raise ValueError(
            f"reduce_scatter: input_list has {len(inputs)} tensors, but the world size is {g.size}"
        )
    for i, a in enumerate(inputs):
        if a.shape != out_array.shape or a.dtype != out_array.dtype:
            raise ValueError(
                f"reduce_scatter: input_list[{i}] is {a.dtype} {a.shape}, the output is "
                f"{out_array.dtype} {out_array.shape}; they must match"
            )
    if op is ReduceOp.AVG and out_array.dtype.kind != "f":
        raise ValueError(
            f"reduce_scatter: ReduceOp.AVG needs a float tensor, got {out_array.dtype}"
        )
    send = np.ascontiguousarray(np.stack(inputs))
    request = g.comm.Ireduce_scatter_block(send, out_array, op=_mpi_op(g, op, "reduce_scatter"))
    size = g.size

    def average():
        np.divide(out_array, size, out=out_array)

    finish = average if op is ReduceOp.AVG else None
    return _finish(Work(g, request, "reduce_scatter", finish), async_op)


def barrier(group=None, async_op=False):
    """Wait until every rank has reached this call."""
    g = _require("barrier")
    return _finish(Work(g, g.comm.Ibarrier(), "barrier"), async_op)


def _check_rank(g, rank, name, what):
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < g.size:
        raise ValueError(f"{name}: {what}={rank!r} is not a rank of this job (0 to {g.size - 1})")
