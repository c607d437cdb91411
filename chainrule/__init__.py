"""chainrule: backpropagation that shows its work.

`import chainrule as cr`. Tensors and ops follow PyTorch's names and semantics; see API.md.
"""

from . import (
    autograd,
    engine,
    func,
    nn,  # noqa: E402 - nn builds on ops
    ops,
)
from .engine import dtypes as _dtypes
from .engine.autograd import (
    AnomalyError,
    detect_anomaly,
    enable_grad,
    grad,
    inference_mode,
    is_anomaly_enabled,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .engine.dtypes import (
    bool_,
    float32,
    float64,
    get_default_dtype,
    int32,
    int64,
    set_default_dtype,
)
from .engine.tensor import Tensor
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .ops import *  # noqa: F403 - the op functions are the package's namespace, as in torch
from .ops import abs, max, min, pow, sum  # noqa: A004 - PyTorch's names, explicitly re-exported

__version__ = "0.1.0"
from . import (  # noqa: E402 - the training toolkit, on top of nn
    data,
    datasets,  # noqa: E402 - data sets as tensors, on top of ops
    optim,
    train,
)
from .io import load, save  # noqa: E402 - safetensors checkpoints


def __getattr__(name):
    # The explainer (and its drawing and plotting libraries) loads on first use: the engine
    # never needs it, and `import chainrule` stays light.
    if name == "explain":
        import importlib

        return importlib.import_module(".explain", __name__)
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")
