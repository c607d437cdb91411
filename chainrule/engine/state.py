"""All of chainrule's global state, in one module, split as PyTorch splits it.

Per thread, in `modes`: grad mode, inference mode and anomaly mode. Every new thread starts with
grad mode on and the other two off, whatever the thread that started it was doing. They are read on
every operation and changed only by the scoped switches in engine.autograd (no_grad, enable_grad,
set_grad_enabled, inference_mode, detect_anomaly), which restore them on every way out.

Process-wide, in `state`: the default dtype, the default random generator, and the one sequence
that numbers nodes and stamps in-place changes; every thread sees the same ones.
"""

import itertools
import threading

import numpy as np


class _ThreadModes(threading.local):
    # Class attributes are what each thread starts with; an assignment is seen only by the thread
    # that makes it.
    grad_enabled = True  # record operations?
    inference = False  # inside inference_mode (which also turns grad mode off)
    anomaly = False  # detect_anomaly: keep creation sites, check backward for NaN/inf


modes = _ThreadModes()


class _ProcessState:
    __slots__ = ("default_dtype", "generator", "sequence", "last_inplace", "_inplace_lock")

    def __init__(self):
        self.default_dtype = np.dtype(np.float32)  # what Python floats become
        self.generator = np.random.default_rng()  # behind rand/randn, init, shuffling
        # One sequence numbers nodes (so creation order is a topological order, even across
        # threads) and stamps in-place changes, so that "modified after this node saved it" is one
        # comparison. next() on an itertools.count is atomic in CPython: no number is given twice.
        self.sequence = itertools.count(1)
        self.last_inplace = 0  # the latest in-place stamp: backward checks versions only past it
        self._inplace_lock = threading.Lock()

    def stamp_inplace(self):
        """A number for an in-place change, newer than every node so far. The lock keeps
        `last_inplace` from moving backwards when two threads stamp at once."""
        with self._inplace_lock:
            number = next(self.sequence)
            self.last_inplace = number
        return number

    @property
    def counter(self):
        """A number above every node and stamp given so far: nodes created after reading it have
        larger numbers (the explainer marks which nodes a module's forward created this way)."""
        return next(self.sequence)


state = _ProcessState()
