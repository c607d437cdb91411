"""`cr.amp`: mixed precision, as PyTorch provides it on a CPU-only machine.

`GradScaler` for a GPU (the default device, "cuda") is disabled with PyTorch's warning, and then
`scale` returns the loss as is, `step` calls `optimizer.step()`, `unscale_` and `update` do
nothing. `GradScaler("cpu")` scales as PyTorch's does (multiply the loss, unscale the gradients
before the step, skip steps whose gradients overflowed, grow or back off the scale).

`autocast` changes no dtype here: chainrule computes in float32 or float64 (NumPy has no bfloat16
and half precision is slower on a CPU), so a block under autocast runs in the tensors' own dtypes.
For "cuda" it warns that it is disabled, as PyTorch does; for "cpu" it warns once that it computes
in full precision.
"""

import functools
import math
import warnings

import numpy as np

from .engine.device import device as _device
from .engine.tensor import Tensor


class autocast:  # noqa: N801 - PyTorch's name
    _warned_cpu = False

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        kind = _device(device_type).type
        self.device_type, self.fast_dtype = kind, dtype
        if enabled and kind != "cpu":
            warnings.warn(
                f"{kind.upper()} is not available: autocast is disabled (chainrule runs on the "
                "CPU only)",
                stacklevel=2,
            )
        elif enabled and not autocast._warned_cpu:
            autocast._warned_cpu = True
            warnings.warn(
                "autocast('cpu'): chainrule has no bfloat16/float16 compute; the block runs in "
                "the tensors' own dtypes (float32 or float64)",
                stacklevel=2,
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        return wrapper


def is_autocast_available(device_type):
    return _device(device_type).type == "cpu"


class GradScaler:
    def __init__(
        self,
        device="cuda",
        init_scale=2.0**16,
        growth_factor=2.0,
        backoff_factor=0.5,
        growth_interval=2000,
        enabled=True,
    ):
        kind = _device(device).type
        if enabled and kind != "cpu":
            warnings.warn(
                f"cr.{kind}.amp.GradScaler is enabled, but {kind.upper()} is not available. "
                "Disabling.",
                stacklevel=2,
            )
            enabled = False
        self._device, self._enabled = kind, enabled
        self._scale, self._growth_tracker = float(init_scale), 0
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._per_optimizer = {}  # id(optimizer) -> {"unscaled": bool, "found_inf": bool}

    def is_enabled(self):
        return self._enabled

    def get_scale(self):
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        """The outputs (a tensor, or tensors nested in lists and tuples) times the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, list | tuple):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(f"GradScaler.scale: expected tensors, got {type(outputs).__name__}")

    def _state(self, optimizer):
        return self._per_optimizer.setdefault(
            id(optimizer), {"unscaled": False, "found_inf": False, "stepped": False}
        )

    def unscale_(self, optimizer):
        """Divide the optimizer's gradients by the scale, noting whether any is inf or NaN."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["unscaled"]:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        inverse = 1.0 / self._scale
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.grad._data *= inverse
                if not state["found_inf"] and not bool(_all_finite(p.grad._data)):
                    state["found_inf"] = True
        state["unscaled"] = True

    def step(self, optimizer, *args, **kwargs):
        """`optimizer.step()` on unscaled gradients, skipped when they overflowed."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stepped"]:
            raise RuntimeError("step() has already been called since the last update().")
        if not state["unscaled"]:
            self.unscale_(optimizer)
        state["stepped"] = True
        return None if state["found_inf"] else optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        """Back off the scale after an overflow, grow it after growth_interval clean steps."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale)
        else:
            if not self._per_optimizer:
                raise RuntimeError("No inf checks were recorded prior to update.")
            if any(s["found_inf"] for s in self._per_optimizer.values()):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    grown = self._scale * self._growth_factor
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
        self._per_optimizer = {}

    def state_dict(self):
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a disabled "
                "instance of GradScaler."
            )
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])


def _all_finite(array):
    return np.isfinite(array).all()
