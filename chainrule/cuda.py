"""`cr.cuda`: PyTorch's CUDA namespace as PyTorch answers it on a machine without a GPU, so that
programs written for both take their CPU path (`is_available()` is False)."""

from . import amp as _amp
from .engine.device import no_gpu_message


def is_available():
    return False


def device_count():
    return 0


def is_initialized():
    return False


def manual_seed(seed):
    """Harmless without a GPU, as in PyTorch: seed the CPU with `cr.manual_seed`."""


def manual_seed_all(seed):
    """Harmless without a GPU, as in PyTorch."""


def synchronize(device=None):
    raise RuntimeError(no_gpu_message("cuda.synchronize()"))


def current_device():
    raise RuntimeError(no_gpu_message("cuda.current_device()"))


def set_device(device):
    raise RuntimeError(no_gpu_message("cuda.set_device()"))


def get_device_name(device=None):
    raise RuntimeError(no_gpu_message("cuda.get_device_name()"))


def empty_cache():
    """Nothing to free without a GPU, as in PyTorch."""


class _CudaAmp:
    """`cr.cuda.amp`: PyTorch's deprecated spellings of `cr.amp.GradScaler("cuda")` and
    `cr.amp.autocast("cuda")`, disabled here as PyTorch disables them without a GPU."""

    @staticmethod
    def GradScaler(*args, **kwargs):  # noqa: N802 - PyTorch's name
        return _amp.GradScaler("cuda", *args, **kwargs)

    @staticmethod
    def autocast(enabled=True, dtype=None, cache_enabled=True):
        return _amp.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


amp = _CudaAmp()
