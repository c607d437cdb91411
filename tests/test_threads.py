"""What chainrule promises about threads, as PyTorch does.

Per thread: grad mode, inference mode and anomaly mode. A new thread starts with grad mode on and
the other two off, whatever the thread that created it was doing; `no_grad` in one thread never
reaches another. backward, `cr.grad`, `cr.func`, gradcheck and custom Functions change these modes
only inside the calling thread, and restore them on every way out, exceptions included.

Process-wide: the default dtype and the default random generator (`manual_seed`), seen by every
thread. Node numbers are unique across threads, so two threads each training their own model get
exactly the gradients a single thread gets.

Every threaded test runs twice: with Python's default thread switch interval and with a switch
every microsecond, which interleaves the threads as finely as CPython allows.
"""

import sys
import threading

import numpy as np
import pytest
import torch
from conftest import Cube

import chainrule as cr


@pytest.fixture(params=[None, 1e-6], ids=["default-switching", "switch-every-microsecond"])
def switching(request):
    previous = sys.getswitchinterval()
    if request.param is not None:
        sys.setswitchinterval(request.param)
    yield
    sys.setswitchinterval(previous)


def run_in_threads(*targets, timeout=120):
    """Start one thread per target, wait for all of them, and re-raise the first error any had."""
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread did not finish in time"
    if errors:
        raise errors[0]


def train(seed, steps, failures):
    """A small tanh network trained with SGD; the gradients of every step, as arrays. A step that
    raises, or leaves a parameter without a gradient, is noted in `failures` instead."""
    rng = np.random.default_rng(seed)
    x = cr.tensor(rng.standard_normal((16, 4)))
    y = cr.tensor(rng.standard_normal((16, 1)))
    w1 = cr.tensor(rng.standard_normal((4, 8)) * 0.5, requires_grad=True)
    b1 = cr.tensor(np.zeros(8), requires_grad=True)
    w2 = cr.tensor(rng.standard_normal((8, 1)) * 0.5, requires_grad=True)
    params = [w1, b1, w2]
    optimizer = cr.optim.SGD(params, lr=0.01)
    history = []
    for step in range(steps):
        try:
            optimizer.zero_grad()
            loss = ((cr.tanh(x @ w1 + b1) @ w2 - y) ** 2).mean()
            loss.backward()
            missing = [i for i, p in enumerate(params) if p.grad is None]
            if missing:
                raise AssertionError(f"step {step}: parameters {missing} got no gradient")
            history.append([p.grad.numpy().copy() for p in params])
            optimizer.step()
        except Exception as error:  # noqa: BLE001 - counted: the promise is zero of them
            failures.append(error)
    return history


def assert_same_history(actual, expected):
    assert len(actual) == len(expected)
    for step, (got, want) in enumerate(zip(actual, expected, strict=True)):
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w), f"step {step}: gradients differ from a single thread"


def test_training_beside_a_thread_looping_under_no_grad(switching):
    steps = 1000
    reference = train(0, steps, [])
    failures, history, done = [], [], threading.Event()
    leaked = []
    weight = cr.tensor(np.ones(3), requires_grad=True)

    def trainer():
        try:
            history.extend(train(0, steps, failures))
        finally:
            done.set()

    def inference():
        while not done.is_set():
            with cr.no_grad():
                if (weight * 2).requires_grad:
                    leaked.append("a result under no_grad required grad")

    run_in_threads(trainer, inference)
    assert failures == []
    assert leaked == []
    assert_same_history(history, reference)
    assert cr.is_grad_enabled()


def test_two_threads_each_training_their_own_model(switching):
    steps = 300
    references = [train(seed, steps, []) for seed in (1, 2)]
    failures = []
    histories = [[], []]

    def trainer(k):
        return lambda: histories[k].extend(train(k + 1, steps, failures))

    run_in_threads(trainer(0), trainer(1))
    assert failures == []
    for history, reference in zip(histories, references, strict=True):
        assert_same_history(history, reference)


def test_grad_mode_is_on_in_every_thread_after_threads_loop_under_no_grad(switching):
    x = cr.tensor(np.ones(3), requires_grad=True)

    def loop():
        for _ in range(2000):
            with cr.no_grad():
                x * 2

    run_in_threads(loop, loop)
    assert cr.is_grad_enabled()
    assert (x * 2).requires_grad
    seen = []
    run_in_threads(lambda: seen.append(cr.is_grad_enabled()))
    assert seen == [True]


def test_a_new_thread_starts_with_grad_mode_on_and_anomaly_off_whatever_its_creator_does():
    seen = []

    def report():
        seen.append((cr.is_grad_enabled(), cr.is_inference_mode_enabled(), _anomaly_enabled()))

    with cr.no_grad(), cr.detect_anomaly():
        run_in_threads(report)
    with cr.inference_mode():
        run_in_threads(report)
    cr.set_grad_enabled(False)
    try:
        run_in_threads(report)
    finally:
        cr.set_grad_enabled(True)
    assert seen == [(True, False, False)] * 3


def test_no_grad_in_one_thread_does_not_reach_another():
    inside, release = threading.Event(), threading.Event()
    seen = []

    def holder():
        with cr.no_grad():
            inside.set()
            release.wait(30)
            seen.append(("holder", cr.is_grad_enabled()))

    def worker():
        inside.wait(30)
        x = cr.tensor(np.ones(2), requires_grad=True)
        seen.append(("worker", cr.is_grad_enabled(), (x * 3).requires_grad))
        release.set()

    run_in_threads(holder, worker)
    assert sorted(seen) == [("holder", False), ("worker", True, True)]


def test_detect_anomaly_in_one_thread_does_not_reach_another():
    inside, release = threading.Event(), threading.Event()
    seen = []

    def holder():
        with cr.detect_anomaly():
            inside.set()
            release.wait(30)
            x = cr.tensor(np.ones(2), requires_grad=True)
            seen.append(("holder", _anomaly_enabled(), (x * 3).grad_fn.trace is not None))

    def worker():
        inside.wait(30)
        x = cr.tensor(np.ones(2), requires_grad=True)
        seen.append(("worker", _anomaly_enabled(), (x * 3).grad_fn.trace is not None))
        release.set()

    run_in_threads(holder, worker)
    assert sorted(seen) == [("holder", True, True), ("worker", False, False)]


def test_node_numbers_are_unique_across_threads(switching):
    numbers = [[], []]
    x = cr.tensor(np.ones(2), requires_grad=True)

    def create(k):
        def body():
            for _ in range(20000):
                numbers[k].append((x * 2).grad_fn.seq)

        return body

    run_in_threads(create(0), create(1))
    every = numbers[0] + numbers[1]
    assert len(set(every)) == len(every)
    for own in numbers:  # each thread sees its own nodes numbered in creation order
        assert own == sorted(own)


def test_backward_runs_with_grad_mode_of_create_graph_and_restores_the_callers():
    x = cr.tensor(np.ones(2), requires_grad=True)
    modes = []
    y = x * 3
    y.register_hook(lambda g: modes.append(cr.is_grad_enabled()))
    total = y.sum()
    with cr.no_grad():
        total.backward(retain_graph=True)
        assert not cr.is_grad_enabled()
    total.backward(create_graph=True)
    assert modes == [False, True]
    assert cr.is_grad_enabled()


# ---- every way out restores the modes -----------------------------------------------------------


def _anomaly_enabled():
    return cr.autograd.is_anomaly_enabled()


class _Boom(Exception):
    pass


def _raise(*_):
    raise _Boom


def _failing_backward():
    x = cr.tensor(np.ones(2), requires_grad=True)
    y = x * 2
    y.register_hook(_raise)
    y.sum().backward()


def _failing_grad():
    x = cr.tensor(np.ones(2), requires_grad=True)
    unused = cr.tensor(np.ones(2), requires_grad=True)
    cr.grad((x * 2).sum(), [x, unused])  # unused is not used: RuntimeError


def _failing_function_forward():
    class Broken(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            raise _Boom

        @staticmethod
        def backward(ctx, g):
            return g

    Broken.apply(cr.tensor(np.ones(2), requires_grad=True))


def _failing_function_backward():
    class Broken(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise _Boom

    Broken.apply(cr.tensor(np.ones(2), requires_grad=True)).sum().backward()


def _failing_gradcheck():
    calls = []

    def fn(x):
        calls.append(1)
        if len(calls) > 1:  # the analytic pass works, the finite differences fail
            raise _Boom
        return Cube.apply(x)

    cr.gradcheck(fn, (cr.tensor(np.ones(2), requires_grad=True),))


def _failing_func_grad():
    cr.func.grad(_raise)(cr.tensor(np.ones(2)))


def _failing_func_jacobian():
    cr.func.jacobian(_raise)(cr.tensor(np.ones(2)))


def _failing_func_vjp():
    cr.func.vjp(_raise, cr.tensor(np.ones(2)))


def _failing_anomaly_check():
    x = cr.tensor(np.zeros(2), requires_grad=True)
    with cr.detect_anomaly():
        with np.errstate(divide="ignore"):
            cr.sqrt(x).sum().backward()  # d sqrt at 0 is inf


FAILURES = [
    _failing_backward,
    _failing_grad,
    _failing_function_forward,
    _failing_function_backward,
    _failing_gradcheck,
    _failing_func_grad,
    _failing_func_jacobian,
    _failing_func_vjp,
    _failing_anomaly_check,
]


@pytest.mark.parametrize("failing", FAILURES, ids=lambda f: f.__name__.lstrip("_"))
@pytest.mark.parametrize(
    "grad_mode, anomaly", [(True, False), (False, False), (True, True)], ids=str
)
def test_an_exception_leaves_the_modes_as_they_were(failing, grad_mode, anomaly):
    with cr.set_grad_enabled(grad_mode), cr.detect_anomaly(anomaly):
        with pytest.raises(Exception):  # noqa: B017, PT011 - each failure raises its own kind
            failing()
        assert cr.is_grad_enabled() == grad_mode
        assert _anomaly_enabled() == anomaly
    assert cr.is_grad_enabled()
    assert not _anomaly_enabled()


@pytest.mark.parametrize("failing", FAILURES, ids=lambda f: f.__name__.lstrip("_"))
def test_failures_in_two_threads_leave_both_threads_modes_alone(failing, switching):
    seen = []

    def body(grad_mode):
        def run():
            with cr.set_grad_enabled(grad_mode):
                for _ in range(20):
                    try:
                        failing()
                    except Exception:  # noqa: BLE001, S110 - only the modes afterwards matter
                        pass
                    seen.append(cr.is_grad_enabled() == grad_mode and not _anomaly_enabled())

        return run

    run_in_threads(body(True), body(False))
    assert seen and all(seen)
    assert cr.is_grad_enabled()


# ---- process-wide state, as in PyTorch ----------------------------------------------------------


def test_the_default_dtype_set_in_one_thread_is_seen_by_all():
    run_in_threads(lambda: cr.set_default_dtype(cr.float64))
    assert cr.get_default_dtype() == cr.float64
    assert cr.tensor([1.0]).dtype == cr.float64
    seen = []
    run_in_threads(lambda: seen.append(cr.get_default_dtype()))
    assert seen == [cr.float64]


def test_manual_seed_in_one_thread_seeds_the_generator_all_threads_draw_from():
    run_in_threads(lambda: cr.manual_seed(3))
    expected = np.random.default_rng(3).random(5).astype(np.float32)
    assert np.array_equal(cr.rand(5).numpy(), expected)
    drawn = []
    cr.manual_seed(4)
    run_in_threads(lambda: drawn.append(cr.rand(5).numpy()))
    assert np.array_equal(drawn[0], np.random.default_rng(4).random(5).astype(np.float32))


# ---- what is safe to share ----------------------------------------------------------------------


def test_parameters_shared_read_only_by_inference_threads_beside_training(switching):
    """A model's parameters may be read by inference threads under no_grad while one thread
    trains it: the readers never record a graph, the trainer never fails. (What readers see
    mid-step is whatever the parameters hold at that moment, as in PyTorch.)"""
    model = cr.nn.Linear(4, 1).double()
    x = cr.tensor(np.ones((8, 4)))
    optimizer = cr.optim.SGD(model.parameters(), lr=0.01)
    failures, recorded, done = [], [], threading.Event()

    def trainer():
        try:
            for _ in range(300):
                try:
                    optimizer.zero_grad()
                    (model(x) ** 2).mean().backward()
                    optimizer.step()
                except Exception as error:  # noqa: BLE001 - counted
                    failures.append(error)
        finally:
            done.set()

    def reader():
        while not done.is_set():
            with cr.no_grad():
                out = model(x)
            if out.requires_grad:
                recorded.append(out)

    run_in_threads(trainer, reader, reader)
    assert failures == []
    assert recorded == []


def test_one_graph_backpropagated_from_two_threads_is_safe_behind_a_lock(switching):
    """Backpropagating one graph from two threads at once is not safe (with retain_graph=True a
    contribution to a shared leaf's .grad can be lost); serialised by a lock, it is exact."""
    w = cr.tensor(np.full((4, 4), 0.1), requires_grad=True)
    loss = cr.tanh(cr.tanh(w @ w) @ w).sum()
    lock = threading.Lock()

    def backward_twenty_times():
        for _ in range(20):
            with lock:
                loss.backward(retain_graph=True)

    run_in_threads(backward_twenty_times, backward_twenty_times)
    single = cr.tensor(np.full((4, 4), 0.1), requires_grad=True)
    cr.tanh(cr.tanh(single @ single) @ single).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 40 * single.grad.numpy(), rtol=1e-12)


def _inference_mode_trace(lib):
    """(grad mode, inference mode) through nested inference_mode blocks, in either library."""

    def modes():
        return (lib.is_grad_enabled(), lib.is_inference_mode_enabled())

    seen = [modes()]
    with lib.inference_mode():
        seen.append(modes())
        with lib.inference_mode(False):
            seen.append(modes())
        seen.append(modes())
    with lib.no_grad(), lib.inference_mode(False):
        seen.append(modes())
    seen.append(modes())
    seen.append(lib.inference_mode(modes)())
    return seen


def test_inference_mode_switches_like_pytorchs():

    assert _inference_mode_trace(cr) == _inference_mode_trace(torch)
    x = cr.tensor(np.ones(2), requires_grad=True)
    with cr.inference_mode():
        assert not (x * 2).requires_grad
