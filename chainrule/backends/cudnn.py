"""`cr.backends.cudnn`: programs set these flags for reproducibility on GPUs; without one they
change nothing, as in PyTorch on a CPU-only machine."""

enabled = True
benchmark = False
deterministic = False


def is_available():
    return False
