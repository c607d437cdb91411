"""`cr.inference_mode`: PyTorch's faster no_grad. Here it is no_grad (nothing is recorded, nothing
saved), built on the same switch; `inference_mode(False)` leaves the grad mode as it is.

Unlike PyTorch, tensors made inside are ordinary tensors: using them later in a recorded
computation is allowed rather than an error.
"""

from .autograd import _GradMode


class inference_mode(_GradMode):  # noqa: N801 - PyTorch's name
    mode = False  # grad mode inside the block

    def __new__(cls, mode=True):
        instance = super().__new__(cls)
        if isinstance(mode, bool):
            return instance
        instance.inference = True  # `@cr.inference_mode` without parentheses
        return instance(mode)

    def __init__(self, mode=True):
        self.inference = bool(mode)

    def __enter__(self):
        if self.inference:
            super().__enter__()

    def __exit__(self, *exc):
        return super().__exit__(*exc) if self.inference else False

    def __call__(self, fn):
        return super().__call__(fn) if self.inference else fn
