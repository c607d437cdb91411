"""Shared test set-up: PyTorch as the reference implementation, and tolerance-aware comparison.

Test modules import the helpers below with `from conftest import ...` (pytest puts this directory on
sys.path); the autouse fixture restores global state that a test may change.
"""

import os
import shutil

import numpy as np
import pytest
import torch

import chainrule as cr

torch.set_num_threads(1)

# Relative tolerance per dtype. float64 results agree with PyTorch to rounding (a few ulps,
# amplified only by cancellation, which the absolute part scaled by the result's magnitude absorbs);
# float32 results differ by summation order and libm, a few float32 ulps.
RTOL = {np.float64: 1e-10, np.float32: 2e-5}
ATOL_SCALE = {np.float64: 1e-12, np.float32: 2e-6}


@pytest.fixture(autouse=True)
def _restore_defaults():
    """Each test starts and ends with float32 as the default dtype in both libraries."""
    cr.set_default_dtype(cr.float32)
    torch.set_default_dtype(torch.float32)
    yield
    cr.set_default_dtype(cr.float32)
    torch.set_default_dtype(torch.float32)


def as_array(x):
    """A NumPy array for a chainrule Tensor, a torch tensor, or None (None stays None)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        # force=True also materialises PyTorch's ZeroTensor (a known-zero second derivative).
        return x.detach().numpy(force=True)
    if isinstance(x, cr.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def dtype_name(x):
    """'float32', 'int64', 'bool', ... for either library's tensor."""
    if isinstance(x, torch.Tensor):
        return str(x.dtype).removeprefix("torch.")
    return str(x.dtype)


def assert_close(actual, expected, what, dtype=None, rtol=None, atol=None):
    """Compare a chainrule result with PyTorch's: same shape, same dtype, values within the
    tolerance of `dtype` (the dtype of the computation; by default the expected result's)."""
    a, e = as_array(actual), as_array(expected)
    assert a is not None, f"{what}: chainrule gave None where PyTorch gave shape {e.shape}"
    assert a.shape == e.shape, f"{what}: shape {a.shape}, PyTorch {e.shape}"
    if isinstance(expected, torch.Tensor) and isinstance(actual, cr.Tensor):
        assert dtype_name(actual) == dtype_name(expected), (
            f"{what}: dtype {dtype_name(actual)}, PyTorch {dtype_name(expected)}"
        )
    kind = np.dtype(dtype) if dtype is not None else e.dtype
    if kind.kind != "f":
        np.testing.assert_array_equal(a, e, err_msg=what)
        return
    kind = kind.type
    scale = float(np.max(np.abs(e[np.isfinite(e)]), initial=1.0))
    np.testing.assert_allclose(
        a,
        e,
        rtol=RTOL[kind] if rtol is None else rtol,
        atol=ATOL_SCALE[kind] * scale if atol is None else atol,
        equal_nan=True,
        err_msg=what,
    )


def pair(array, requires_grad=True):
    """The same data as a chainrule leaf and a torch leaf."""
    array = np.array(array)
    grad = requires_grad and array.dtype.kind == "f"
    return cr.tensor(array, requires_grad=grad), torch.tensor(array, requires_grad=grad)


def _exp_and_cube(lib):
    """Two custom Functions written once for either library: exp saving its output and x**3
    saving its input, both with backward in differentiable ops (as PyTorch's docs write them)."""

    class Exp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            result = lib.exp(x)
            ctx.save_for_backward(result)
            return result

        @staticmethod
        def backward(ctx, grad_output):
            (result,) = ctx.saved_tensors
            return grad_output * result

    class Cube(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * 3.0 * x * x

    return Exp, Cube


Exp, Cube = _exp_and_cube(cr)
TorchExp, TorchCube = _exp_and_cube(torch)


@pytest.fixture(scope="session")
def _path_without_dot(tmp_path_factory):
    """A PATH of one folder: links to every program on the real PATH except Graphviz's `dot`."""
    folder = tmp_path_factory.mktemp("path-without-dot")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name != "dot" and not link.exists() and not link.is_symlink():
                link.symlink_to(entry.path)
    return str(folder)


@pytest.fixture
def without_dot(_path_without_dot, monkeypatch):
    """Run the test as on a machine without Graphviz: `dot` is not on PATH (nothing else is
    changed, so chromium, python and the rest are still found)."""
    monkeypatch.setenv("PATH", _path_without_dot)
    assert shutil.which("dot") is None, "the PATH without dot still finds dot"
