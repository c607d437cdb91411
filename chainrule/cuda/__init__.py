"""`cr.cuda`: PyTorch's CUDA namespace as PyTorch answers it on a machine without a GPU, so that
programs written for both take their CPU path (`is_available()` is False)."""

from ..engine.device import no_gpu_message


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


from . import amp  # noqa: E402 - `cr.cuda.amp`, also as `from chainrule.cuda.amp import ...`
