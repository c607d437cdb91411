"""`nn.parallel.DistributedDataParallel`: one model replicated on every rank of a
`chainrule.distributed` job, each rank training on its own share of each batch, gradients averaged
across the ranks during backward, so every replica takes the same optimizer step.

How it averages, as PyTorch's does: the parameters are grouped into buckets of about
`bucket_cap_mb` (in reverse order of `parameters()`, roughly the order backward finishes them);
each parameter's post-accumulate-grad hook copies its final `.grad` into its bucket, and a bucket
whose gradients are all in is sent at once as one non-blocking MPI all-reduce, while backward goes
on with the earlier layers. When the last bucket has been sent, the hook waits for all of them and
writes the averages back into `.grad`, so they are there when `backward()` returns.
"""

import contextlib

import numpy as np

from .. import distributed as dist
from ..engine.autograd import graph_nodes, is_grad_enabled
from ..engine.op import Node
from ..engine.tensor import Tensor
from .module import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    __slots__ = ("params", "views", "flat", "arrived", "request", "used")

    def __init__(self, params, counts_usage):
        self.params = params
        dtype = params[0]._data.dtype
        sizes = [p._data.size for p in params]
        # With find_unused_parameters, one extra number per parameter counts the ranks that used
        # it, so a parameter no rank used keeps its .grad untouched, as in PyTorch.
        total = sum(sizes) + (len(params) if counts_usage else 0)
        self.flat = np.zeros(total, dtype=dtype)
        self.views, offset = [], 0
        for p, n in zip(params, sizes):
            self.views.append(self.flat[offset : offset + n].reshape(p._data.shape))
            offset += n
        self.used = self.flat[offset:] if counts_usage else None
        self.arrived = [False] * len(params)  # this iteration's gradient is in the bucket
        self.request = None

    @property
    def complete(self):
        return all(self.arrived)


class DistributedDataParallel(Module):
    """Wrap `module` so that gradients are averaged over the ranks during backward.

    At construction every rank gets rank 0's parameters and buffers (and, with
    `broadcast_buffers`, its buffers again at each forward). `no_sync()` skips the averaging for
    gradient accumulation; the first backward outside it averages what has accumulated. With
    `find_unused_parameters=True` a forward may leave parameters out of the graph; otherwise
    every parameter must get a gradient in every backward, and the next forward says which did
    not."""

    def __init__(
        self,
        module,
        device_ids=None,
        output_device=None,
        dim=0,
        broadcast_buffers=True,
        process_group=None,
        bucket_cap_mb=25,
        find_unused_parameters=False,
        check_reduction=False,
        gradient_as_bucket_view=False,
        static_graph=False,
    ):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedDataParallel: the default process group has not been initialized; "
                "call chainrule.distributed.init_process_group() first"
            )
        for name, value in (("device_ids", device_ids), ("output_device", output_device)):
            if value not in (None, [], "cpu") and value != ["cpu"]:
                raise ValueError(
                    f"DistributedDataParallel: {name}={value!r} names a GPU, but chainrule has "
                    "no GPU backend; leave it out (the model runs on the CPU)"
                )
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel wraps an nn.Module, got {type(module).__name__}"
            )
        self.module = module
        object.__setattr__(self, "broadcast_buffers", broadcast_buffers)
        object.__setattr__(self, "find_unused_parameters", find_unused_parameters)
        object.__setattr__(self, "require_backward_grad_sync", True)
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError(
                "DistributedDataParallel is not needed when a module has no parameter that "
                "requires a gradient"
            )
        self._broadcast_state(include_parameters=True)
        buckets = _make_buckets(params, bucket_cap_mb * 1024 * 1024, find_unused_parameters)
        object.__setattr__(self, "_buckets", buckets)
        object.__setattr__(
            self, "_where", {id(p): (b, i) for b in buckets for i, p in enumerate(b.params)}
        )
        object.__setattr__(self, "_syncing", False)  # this iteration averages its gradients
        object.__setattr__(self, "_next_bucket", 0)
        object.__setattr__(
            self, "_handles", [p.register_post_accumulate_grad_hook(self._ready) for p in params]
        )

    # ---- the forward: start an iteration -------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        if self._syncing and any(any(b.arrived) for b in self._buckets):
            # A backward began averaging and some parameters never got a gradient.
            raise RuntimeError(_unfinished_message(self))
        if self.broadcast_buffers:
            self._broadcast_state(include_parameters=False)
        sync = self.require_backward_grad_sync and is_grad_enabled()
        self._start_iteration(sync)
        output = self.module(*inputs, **kwargs)
        if sync and self.find_unused_parameters:
            used = _parameters_reached(output)
            for bucket in self._buckets:
                for p in bucket.params:
                    if id(p) not in used:
                        self._ready(p, used=False)
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block gradients only accumulate locally; the first backward after it
        averages the accumulated sum."""
        previous = self.require_backward_grad_sync
        object.__setattr__(self, "require_backward_grad_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "require_backward_grad_sync", previous)

    def _start_iteration(self, sync):
        object.__setattr__(self, "_syncing", sync)
        object.__setattr__(self, "_next_bucket", 0)
        for bucket in self._buckets:
            bucket.arrived = [False] * len(bucket.params)
            bucket.request = None
            if bucket.used is not None:
                bucket.used[...] = 0

    # ---- the hooks: average during backward ----------------------------------------------------
    def _ready(self, param, used=True):
        if not self._syncing:
            return
        bucket, i = self._where[id(param)]
        if param.grad is not None:
            np.copyto(bucket.views[i], param.grad._data)
        else:
            bucket.views[i][...] = 0
        if bucket.used is not None:
            bucket.used[i] = 1 if used else 0
        bucket.arrived[i] = True
        self._launch_ready_buckets()

    def _launch_ready_buckets(self):
        # Buckets go out in one order on every rank, so the all-reduces always pair up.
        buckets = self._buckets
        while self._next_bucket < len(buckets) and buckets[self._next_bucket].complete:
            bucket = buckets[self._next_bucket]
            bucket.request = dist.all_reduce(Tensor._wrap(bucket.flat), async_op=True)
            object.__setattr__(self, "_next_bucket", self._next_bucket + 1)
        if self._next_bucket == len(buckets):
            self._finish_reduction()
        else:
            for bucket in buckets[: self._next_bucket]:
                bucket.request.is_completed()  # lets MPI move the messages on

    def _finish_reduction(self):
        world = dist.get_world_size()
        for bucket in self._buckets:
            bucket.request.wait()
            for i, (p, view) in enumerate(zip(bucket.params, bucket.views)):
                if bucket.used is not None and bucket.used[i] == 0:
                    continue  # no rank used it: its .grad stays as it was
                view /= world
                if p.grad is None:
                    p.grad = Tensor._wrap(view.copy())
                else:
                    np.copyto(p.grad._data, view)
        object.__setattr__(self, "_syncing", False)

    def _broadcast_state(self, include_parameters):
        tensors = list(self.module.buffers())
        if include_parameters:
            tensors = list(self.module.parameters()) + tensors
        for t in tensors:
            if not t._data.flags.c_contiguous:
                t._data = np.ascontiguousarray(t._data)
            dist.broadcast(t, src=0)

    def extra_repr(self):
        return f"world_size={dist.get_world_size()}, buckets={len(self._buckets)}"


def _make_buckets(params, cap_bytes, counts_usage):
    buckets, current, size = [], [], 0
    for p in reversed(params):
        if current and (
            size + p._data.nbytes > cap_bytes or p._data.dtype != current[0]._data.dtype
        ):
            buckets.append(_Bucket(current, counts_usage))
            current, size = [], 0
        current.append(p)
        size += p._data.nbytes
    if current:
        buckets.append(_Bucket(current, counts_usage))
    return buckets


def _parameters_reached(output):
    """The ids of the leaves that the forward's outputs were computed from."""
    roots = [t.grad_fn for t in _tensors_in(output) if t.grad_fn is not None]
    reached = {id(t) for t in _tensors_in(output) if t.grad_fn is None and t.requires_grad}
    for node in graph_nodes(roots):
        for parent in node.next:
            if parent is not None and type(parent) is not Node:
                reached.add(id(parent))
    return reached


def _tensors_in(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _tensors_in(v)


def _unfinished_message(ddp):
    names = {id(p): name for name, p in ddp.module.named_parameters()}
    waiting = [
        names.get(id(p), "?")
        for bucket in ddp._buckets
        for p, arrived in zip(bucket.params, bucket.arrived)
        if not arrived
    ]
    return (
        "DistributedDataParallel: expected to have finished reduction in the prior iteration "
        "before starting a new one: some parameters got no gradient in the last backward ("
        + ", ".join(waiting[:10])
        + (", ..." if len(waiting) > 10 else "")
        + "). Pass find_unused_parameters=True if a forward may leave parameters out, and make "
        "sure every rank calls backward on the output"
    )
