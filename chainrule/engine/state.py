"""All of chainrule's global state, in one module, split as PyTorch splits it.

Per thread, in `modes`: grad mode, inference mode and anomaly mode. Every new thread starts with
grad mode on and the other two off, whatever the thread that started it was doing. They change
only through `state.set_mode`, which the scoped switches in engine.autograd call (no_grad,
enable_grad, set_grad_enabled, inference_mode, detect_anomaly); those restore them on every way out.

Process-wide, in `state`: the default dtype, the default random generator, the one sequence
that numbers nodes and stamps in-place changes, and the leaves' post-accumulate hooks; every
thread sees the same ones.

Every operation asks "record?" and every new node "anomaly mode?". A thread-local read costs about
30 ns, a few percent of a small op, so they first read `state.default_modes`, True while every
thread has grad mode on and anomaly mode off, and read their own thread's modes only otherwise:
`state.default_modes or modes.grad_enabled`.
"""

import itertools
import threading

import numpy as np


class _ThreadModes(threading.local):
    def __init__(self):
        # Runs in each thread on its first use (an assignment is seen only by the thread that
        # makes it). Instance attributes rather than class defaults: they read faster.
        self.grad_enabled = True  # record operations?
        self.inference = False  # inside inference_mode (which also turns grad mode off)
        self.anomaly = False  # detect_anomaly: keep creation sites, check backward for NaN/inf

    def are_default(self):
        return self.grad_enabled and not self.anomaly


modes = _ThreadModes()


class _ProcessState:
    __slots__ = (
        "default_dtype",
        "generator",
        "sequence",
        "last_inplace",
        "default_modes",
        "post_accumulate_hooks",
        "_threads_off_default",
        "_lock",
    )

    def __init__(self):
        self.default_dtype = np.dtype(np.float32)  # what Python floats become
        self.generator = np.random.default_rng()  # behind rand/randn, init, shuffling
        # One sequence numbers nodes (so creation order is a topological order, even across
        # threads) and stamps in-place changes, so that "modified after this node saved it" is one
        # comparison. next() on an itertools.count is atomic in CPython: no number is given twice.
        self.sequence = itertools.count(1)
        self.last_inplace = 0  # the latest in-place stamp: backward checks versions only past it
        # How many threads are out of the default modes (one that ended inside no_grad stays
        # counted, which only costs the fast path); default_modes is True exactly when none are.
        self._threads_off_default = 0
        self.default_modes = True
        # id(leaf) -> hooks to call once backward has put its final .grad in place
        # (Tensor.register_post_accumulate_grad_hook); backward looks at them only when any exist.
        # Keyed by id, not by the tensor: a tensor's == is elementwise.
        self.post_accumulate_hooks = {}
        self._lock = threading.Lock()

    def set_mode(self, name, value):
        """Set the calling thread's mode `name` ("grad_enabled", "inference" or "anomaly"),
        keeping `default_modes` true to every thread's; returns the previous value."""
        with self._lock:
            was_default = modes.are_default()
            previous = getattr(modes, name)
            setattr(modes, name, value)
            self._threads_off_default += was_default - modes.are_default()
            self.default_modes = self._threads_off_default == 0
        return previous

    def stamp_inplace(self):
        """A number for an in-place change, newer than every node so far. The lock keeps
        `last_inplace` from moving backwards when two threads stamp at once."""
        with self._lock:
            number = next(self.sequence)
            self.last_inplace = number
        return number

    @property
    def counter(self):
        """A number above every node and stamp given so far: nodes created after reading it have
        larger numbers (the explainer marks which nodes a module's forward created this way)."""
        return next(self.sequence)


state = _ProcessState()
