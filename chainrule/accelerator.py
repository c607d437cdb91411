"""`cr.accelerator`: PyTorch's device-agnostic accelerator API, answered as without one."""


def is_available():
    return False


def device_count():
    return 0


def current_accelerator(check_available=False):
    return None
