"""Every collective against NumPy on known data; run by tests/test_distributed.py under mpiexec."""

import numpy as np

import chainrule as cr
import chainrule.distributed as dist

dist.init_process_group(backend="mpi")
rank, world = dist.get_rank(), dist.get_world_size()
assert dist.is_initialized() and dist.get_backend() == "mpi"
ranks = np.arange(world, dtype=np.float64)
base = np.array([1.0, -2.0, 3.5])


def value(r):
    return base * (r + 1) + r


everyone = np.stack([value(r) for r in range(world)])
expected = {
    dist.ReduceOp.SUM: everyone.sum(0),
    dist.ReduceOp.PRODUCT: everyone.prod(0),
    dist.ReduceOp.MIN: everyone.min(0),
    dist.ReduceOp.MAX: everyone.max(0),
    dist.ReduceOp.AVG: everyone.mean(0),
}
for op, want in expected.items():
    t = cr.tensor(value(rank), dtype=cr.float64)
    assert dist.all_reduce(t, op=op) is None
    np.testing.assert_allclose(t.numpy(), want, rtol=1e-15, err_msg=str(op))

# integers, and a float32 tensor asynchronously
t = cr.tensor([rank, 10 * rank], dtype=cr.int64)
dist.all_reduce(t)
assert t.tolist() == [sum(range(world)), 10 * sum(range(world))]
t = cr.tensor(value(rank), dtype=cr.float32)
work = dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True)
assert work.wait() and work.is_completed()
np.testing.assert_array_equal(t.numpy(), everyone.max(0).astype(np.float32))
try:
    dist.all_reduce(cr.tensor([1, 2]), op=dist.ReduceOp.AVG)
    raise AssertionError("AVG on integers should fail")
except ValueError as e:
    assert "AVG needs a float tensor" in str(e)

# broadcast from the last rank
t = cr.tensor(value(rank), dtype=cr.float64)
dist.broadcast(t, src=world - 1)
np.testing.assert_array_equal(t.numpy(), value(world - 1))
try:
    dist.broadcast(t, src=world)
    raise AssertionError("a src outside the job should fail")
except ValueError as e:
    assert f"src={world} is not a rank of this job" in str(e)

# all_gather
outs = [cr.zeros(3, dtype=cr.float64) for _ in range(world)]
dist.all_gather(outs, cr.tensor(value(rank), dtype=cr.float64))
for r, out in enumerate(outs):
    np.testing.assert_array_equal(out.numpy(), value(r))

# reduce_scatter: rank r gets the sum over ranks of their input_list[r]
inputs = [cr.tensor(value(rank) * (k + 1), dtype=cr.float64) for k in range(world)]
out = cr.zeros(3, dtype=cr.float64)
dist.reduce_scatter(out, inputs)
np.testing.assert_allclose(out.numpy(), everyone.sum(0) * (rank + 1), rtol=1e-15)
out = cr.zeros(3, dtype=cr.float64)
dist.reduce_scatter(out, inputs, op=dist.ReduceOp.AVG)
np.testing.assert_allclose(out.numpy(), everyone.mean(0) * (rank + 1), rtol=1e-15)

dist.barrier()
dist.destroy_process_group()
assert not dist.is_initialized()
print(f"rank {rank} of {world}: collectives OK", flush=True)
