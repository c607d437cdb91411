"""chainrule: backpropagation that shows its work.

`import chainrule as cr`. Tensors and ops follow PyTorch's names and semantics; see API.md.
"""

import importlib as _importlib

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
from .engine.device import device, get_default_device, set_default_device
from .engine.dtypes import (
    bfloat16,
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
from . import (  # noqa: E402 - the training toolkit, on top of nn  # noqa: E402 - PyTorch's CPU-only answers
    accelerator,
    amp,
    backends,
    cuda,
    data,
    datasets,  # noqa: E402 - data sets as tensors, on top of ops
    distributed,  # MPI is imported only when a process group starts
    optim,
    train,
    utils,
)
from .amp import autocast  # noqa: E402
from .io import load, save  # noqa: E402 - safetensors checkpoints

# PyTorch's dtype aliases. float16 (half), bfloat16, uint8, int8 and int16 can be named; making a
# tensor with them raises an error that names the dtype to use instead.
float = float32  # noqa: A001 - PyTorch's names
double = float64
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001
float16 = half = _dtypes.np.dtype("float16")
uint8, int8 = _dtypes.np.dtype("uint8"), _dtypes.np.dtype("int8")
int16 = short = _dtypes.np.dtype("int16")

# Names of PyTorch that chainrule does not have, each with what to use instead, so that a program
# meets one line of explanation rather than a bare AttributeError (ops not here yet: NOT_YET).
_NOT_HERE = {
    "compile": "chainrule runs eagerly on NumPy; drop the torch.compile call",
    "jit": "there is no TorchScript; run the module directly",
    "multiprocessing": "chainrule trains in one process on the CPU",
    "onnx": "export the weights with cr.save (safetensors)",
    "sparse": "use dense tensors",
    "fft": "use numpy.fft on tensor.numpy()",
    "linalg": "use cr.matmul, cr.einsum, or numpy.linalg on tensor.numpy()",
    "complex64": "chainrule computes in float32 and float64",
    "complex128": "chainrule computes in float32 and float64",
    "channels_last": "chainrule has one memory layout",
}


def __getattr__(name):
    # The explainer (and its drawing and plotting libraries) loads on first use: the engine
    # never needs it, and `import chainrule` stays light.
    if name == "explain":
        return _importlib.import_module(".explain", __name__)
    hint = _NOT_HERE.get(name) or ops.methods.NOT_YET.get(name)
    if hint is not None:
        raise AttributeError(f"chainrule has no {name!r} (PyTorch's torch.{name}): {hint}")
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")
