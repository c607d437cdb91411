"""chainrule.distributed, DistributedDataParallel and DistributedSampler: the promises.

The multi-process tests start real MPI jobs of 2 and 3 ranks with `mpiexec` (MPICH, from the
`distributed` extra) running the scripts in tests/distributed/; each script checks its results on
every rank and the job's exit status says whether all of them held."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler as TorchDistributedSampler

import chainrule as cr
import chainrule.distributed as dist
from chainrule.data import DistributedSampler

SCRIPTS = Path(__file__).parent / "distributed"
ROOT = Path(__file__).parent.parent


def mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    pytest.fail(
        "mpiexec is needed for the multi-process tests: pip install 'chainrule[distributed]' "
        "(make test installs it; it brings mpi4py and MPICH)"
    )


def run_job(ranks, script, *args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    command = [mpiexec(), "-n", str(ranks), sys.executable, str(SCRIPTS / script), *map(str, args)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    return done, time.monotonic() - start


@pytest.mark.parametrize("ranks", [2, 3])
def test_every_collective_matches_numpy_on_known_data(ranks):
    done, _ = run_job(ranks, "collectives.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("collectives OK") == ranks


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ddp_training_equals_one_process_on_the_same_global_batches(ranks, optimizer, tmp_path):
    done, _ = run_job(ranks, "ddp_train.py", optimizer, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"ddp {optimizer} OK") == ranks


def test_parameters_a_forward_leaves_out_are_named_or_left_untouched():
    done, _ = run_job(2, "unused.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("unused parameters OK") == 2


@pytest.mark.parametrize("how", ["raises", "killed", "skips"])
def test_a_failing_rank_ends_the_whole_job_within_seconds(how):
    done, seconds = run_job(2, "failures.py", how, timeout=60)
    assert done.returncode != 0
    assert "the collective finished without rank 1" not in done.stdout
    assert seconds < 20, f"the job took {seconds:.1f} s to end"
    if how == "raises":
        assert "rank 1 hit a bug" in done.stderr and "aborting the job" in done.stderr
    if how == "skips":
        assert "all_reduce on rank 0 did not complete within 3 s" in done.stderr


# ---- DistributedSampler: PyTorch's split -------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 10, 12, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5, 16])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_splits_as_pytorch(n, replicas, drop_last, monkeypatch):
    dataset = list(range(n))
    for rank in range(replicas):
        for shuffle in (False, True):
            ours = DistributedSampler(
                dataset, replicas, rank, shuffle=shuffle, seed=5, drop_last=drop_last
            )
            theirs = TorchDistributedSampler(
                dataset, replicas, rank, shuffle=shuffle, seed=5, drop_last=drop_last
            )
            for epoch in (0, 3):
                ours.set_epoch(epoch)
                theirs.set_epoch(epoch)
                if shuffle:
                    # The permutation is NumPy's; the split of it must be PyTorch's.
                    order = torch.from_numpy(np.random.default_rng(5 + epoch).permutation(n))
                    with monkeypatch.context() as patch:
                        patch.setattr(torch, "randperm", lambda *a, order=order, **k: order)
                        expected = list(theirs)
                else:
                    expected = list(theirs)
                assert list(ours) == expected
                assert len(ours) == len(theirs)


def test_distributed_sampler_shuffles_the_same_on_every_rank_and_anew_each_epoch():
    dataset = list(range(20))
    shares = [DistributedSampler(dataset, 4, r, seed=1) for r in range(4)]
    first = [list(s) for s in shares]
    assert sorted(i for share in first for i in share) == dataset
    for s in shares:
        s.set_epoch(1)
    assert [list(s) for s in shares] != first


def test_distributed_sampler_rejects_a_rank_outside_the_job():
    with pytest.raises(
        ValueError, match=r"Invalid rank 3, rank should be in the interval \[0, 2\]"
    ):
        DistributedSampler(list(range(5)), num_replicas=3, rank=3)


def test_a_sampler_without_a_process_group_says_what_to_call():
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(list(range(5)))


def test_distributed_names_are_where_pytorch_has_them():
    assert (
        cr.distributed is dist
        and cr.utils.data.distributed.DistributedSampler is DistributedSampler
    )
    assert cr.nn.parallel.DistributedDataParallel.__name__ == "DistributedDataParallel"
    assert dist.is_available() and not dist.is_initialized()
    with pytest.raises(ValueError, match="chainrule's one backend is 'mpi'"):
        dist.init_process_group(backend="nccl")
    with pytest.raises(RuntimeError, match="init_process_group"):
        cr.nn.parallel.DistributedDataParallel(cr.nn.Linear(2, 2))


# ---- the engine's part: hooks when a leaf's gradient is final ------------------------------------
def test_post_accumulate_grad_hooks_run_during_backward_as_each_gradient_is_final():
    cr.manual_seed(0)
    model = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.Tanh(), cr.nn.Linear(4, 2))
    seen = []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(
            lambda t, name=name: seen.append((name, t.grad.numpy().copy()))
        )
    model(cr.randn(5, 3)).pow(2).sum().backward()
    # The last layer's gradients are final first; each hook sees the .grad backward leaves.
    assert [name for name, _ in seen] == ["2.weight", "2.bias", "0.weight", "0.bias"]
    grads = dict(model.named_parameters())
    for name, g in seen:
        np.testing.assert_array_equal(g, grads[name].grad.numpy())


def test_a_post_accumulate_grad_hook_sees_the_accumulated_sum_and_can_be_removed():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    totals = []
    handle = w.register_post_accumulate_grad_hook(lambda t: totals.append(t.grad.tolist()))
    (w * 3).sum().backward()
    (w * w).sum().backward()
    assert totals == [[3.0, 3.0], [5.0, 7.0]]
    handle.remove()
    (w * 1).sum().backward()
    assert len(totals) == 2


def test_a_post_accumulate_grad_hook_is_refused_on_a_non_leaf():
    w = cr.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
