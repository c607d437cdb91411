"""Making tensors: `tensor`, the factories, and the seeded random generator."""

import numpy as np

from ..engine import dtypes
from ..engine.device import check_device
from ..engine.state import state
from ..engine.tensor import Tensor
from .shape import _sizes


def tensor(data, dtype=None, requires_grad=False, name=None, device=None):
    """A new tensor (always a copy). Python floats get the default dtype; arrays keep theirs."""
    check_device("tensor", device)
    return Tensor(data, dtype=dtype, requires_grad=requires_grad, name=name)


def as_tensor(data, dtype=None, device=None):
    if device is not None:  # as_tensor runs on every op's operands: no call when absent
        check_device("as_tensor", device)
    if isinstance(data, Tensor) and (dtype is None or data.dtype == dtypes.as_dtype(dtype)):
        return data
    return Tensor(data, dtype=dtype)


def from_numpy(array):
    """A tensor sharing `array`'s memory (so its dtype must be one chainrule supports as is)."""
    array = np.asarray(array)
    if array.dtype not in dtypes.SUPPORTED:
        raise TypeError(
            f"from_numpy: arrays of dtype {array.dtype} are not supported; chainrule supports "
            "float32, float64, int32, int64 and bool (cr.tensor(array) converts, with a copy)"
        )
    return Tensor._wrap(array)


def _make(array, requires_grad, name=None):
    t = Tensor._wrap(array)
    if requires_grad:
        t.requires_grad_(True)
    t._name = name
    return t


def _float_dtype(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def zeros(*size, dtype=None, requires_grad=False, device=None):
    check_device("zeros", device)
    return _make(np.zeros(_sizes(size), dtype=_float_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, requires_grad=False, device=None):
    check_device("ones", device)
    return _make(np.ones(_sizes(size), dtype=_float_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, requires_grad=False, device=None):
    check_device("empty", device)
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False, device=None):
    check_device("full", device)
    if dtype is None:
        dtype = (
            dtypes.bool_
            if isinstance(fill_value, bool)
            else dtypes.int64
            if isinstance(fill_value, int)
            else dtypes.get_default_dtype()
        )
    return _make(np.full(_sizes((size,)), fill_value, dtype=dtypes.as_dtype(dtype)), requires_grad)


def zeros_like(x, dtype=None, requires_grad=False, device=None):
    check_device("zeros_like", device)
    return _make(
        np.zeros(x.shape, dtype=x.dtype if dtype is None else dtypes.as_dtype(dtype)), requires_grad
    )


def ones_like(x, dtype=None, requires_grad=False, device=None):
    check_device("ones_like", device)
    return _make(
        np.ones(x.shape, dtype=x.dtype if dtype is None else dtypes.as_dtype(dtype)), requires_grad
    )


def full_like(x, fill_value, dtype=None, requires_grad=False, device=None):
    check_device("full_like", device)
    return _make(
        np.full(x.shape, fill_value, dtype=x.dtype if dtype is None else dtypes.as_dtype(dtype)),
        requires_grad,
    )


def empty_like(x, dtype=None, requires_grad=False, device=None):
    return zeros_like(x, dtype=dtype, requires_grad=requires_grad, device=device)


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None):
    check_device("arange", device)
    if end is None:
        start, end = 0, start
    if dtype is None:
        integral = all(isinstance(v, int) for v in (start, end, step))
        dtype = dtypes.int64 if integral else dtypes.get_default_dtype()
    if step == 0:
        raise ValueError("arange: step must not be 0")
    return _make(np.arange(start, end, step, dtype=dtypes.as_dtype(dtype)), requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False, device=None):
    check_device("linspace", device)
    return _make(np.linspace(start, end, int(steps), dtype=_float_dtype(dtype)), requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False, device=None):
    check_device("eye", device)
    return _make(np.eye(n, m, dtype=_float_dtype(dtype)), requires_grad)


# ---- randomness ---------------------------------------------------------------------------------


class Generator(np.random.Generator):
    """`cr.Generator()`: a NumPy Generator with PyTorch's `manual_seed` (returning itself, so
    `cr.Generator().manual_seed(42)` reads as in PyTorch); pass it as `generator=`."""

    def __init__(self, device="cpu"):
        check_device("Generator", device)
        self._initial_seed = int(np.random.SeedSequence().entropy % 2**63)
        super().__init__(np.random.PCG64(self._initial_seed))

    def manual_seed(self, seed):
        self._initial_seed = int(seed)
        self.bit_generator.state = np.random.PCG64(self._initial_seed).state
        return self

    def initial_seed(self):
        return self._initial_seed


def manual_seed(seed):
    """Reseed the process-wide generator behind rand/randn, initialisation and shuffling (every
    thread draws from it, as from PyTorch's default generator)."""
    state.generator = np.random.default_rng(int(seed))
    return state.generator


def default_generator():
    return state.generator


def _random_dtype(name, dtype):
    dtype = _float_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{name}: random values are drawn in float32 or float64, not {dtype}")
    return dtype


def rand(*size, dtype=None, requires_grad=False, generator=None, device=None):
    check_device("rand", device)
    dtype = _random_dtype("rand", dtype)  # checked before drawing, so a refusal draws nothing
    rng = generator or state.generator
    return _make(rng.random(_sizes(size)).astype(dtype), requires_grad)


def randn(*size, dtype=None, requires_grad=False, generator=None, device=None):
    check_device("randn", device)
    dtype = _random_dtype("randn", dtype)
    rng = generator or state.generator
    return _make(rng.standard_normal(_sizes(size)).astype(dtype), requires_grad)


def randint(low=None, high=None, size=None, dtype=None, generator=None, device=None):
    """Integers drawn uniformly from [low, high): PyTorch's overloads `randint(high, size)` and
    `randint(low, high, size)`, by position or by keyword (low defaults to 0)."""
    check_device("randint", device)
    if isinstance(high, tuple | list) and size is None:  # randint(high, size)
        low, high, size = None, low, high
    if high is None:
        low, high = None, low
    if high is None:
        raise TypeError("randint: give high (the exclusive upper bound), and size as a tuple")
    low = 0 if low is None else int(low)
    high = int(high)
    if low >= high:
        raise RuntimeError(
            f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}"
        )
    rng = generator or state.generator
    shape = () if size is None or size == () else _sizes((size,))
    return _make(
        rng.integers(low, high, size=shape).astype(
            dtypes.int64 if dtype is None else dtypes.as_dtype(dtype)
        ),
        False,
    )


def multinomial(input, num_samples, replacement=False, generator=None):  # noqa: A002
    """`num_samples` category indices per row of the (1-D or 2-D) non-negative weights `input`,
    drawn from the default generator (or `generator`), with or without replacement. Without
    replacement the draws are in the order sequential sampling would give (exponential races)."""
    weights = np.asarray(input._data if isinstance(input, Tensor) else input, dtype=np.float64)
    if weights.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape {weights.shape}")
    rows = weights.reshape(-1, weights.shape[-1])
    categories, num_samples = rows.shape[1], int(num_samples)
    if num_samples <= 0:
        raise RuntimeError(f"multinomial: cannot sample n_sample <= 0 samples ({num_samples})")
    if not replacement and num_samples > categories:
        raise RuntimeError(
            f"multinomial: cannot sample n_sample > prob_dist.size(-1) samples without "
            f"replacement ({num_samples} > {categories})"
        )
    if not np.isfinite(rows).all() or (rows < 0).any():
        raise RuntimeError(
            "multinomial: probability tensor contains either `inf`, `nan` or element < 0"
        )
    totals = rows.sum(axis=1)
    if (totals <= 0).any():
        raise RuntimeError(
            "multinomial: invalid multinomial distribution (sum of probabilities <= 0)"
        )
    rng = generator or state.generator
    if replacement:
        cdf = np.cumsum(rows / totals[:, None], axis=1)
        draws = rng.random((len(rows), num_samples))
        last_possible = categories - 1 - np.argmax(rows[:, ::-1] > 0, axis=1)
        picked = np.stack([np.searchsorted(c, u, side="right") for c, u in zip(cdf, draws)])
        # Rounding can leave the cdf's end just under 1: a draw beyond it takes the last category
        # that has weight, never a trailing one of weight 0.
        picked = np.minimum(picked, last_possible[:, None])
    else:
        # Each category's arrival time is Exp(1) / weight; the first num_samples to arrive are a
        # draw without replacement, in order (Efraimidis and Spirakis). Categories of weight 0
        # never arrive; when fewer have weight than are asked for, the rest are taken from them
        # in index order, as PyTorch does.
        arrival = np.full(rows.shape, np.inf)
        np.divide(rng.standard_exponential(rows.shape), rows, out=arrival, where=rows > 0)
        picked = np.argsort(arrival, axis=1, kind="stable")[:, :num_samples]
    return _make(picked.reshape(weights.shape[:-1] + (num_samples,)).astype(np.int64), False)


def randperm(n, generator=None, device=None):
    check_device("randperm", device)
    rng = generator or state.generator
    return _make(rng.permutation(n).astype(np.int64), False)


def _like_dtype(name, x, dtype):
    return _random_dtype(name, x.dtype if dtype is None else dtype)


def rand_like(x, dtype=None, requires_grad=False, device=None, generator=None):
    return rand(
        *x.shape,
        dtype=_like_dtype("rand_like", x, dtype),
        requires_grad=requires_grad,
        device=device,
        generator=generator,
    )


def randn_like(x, dtype=None, requires_grad=False, device=None, generator=None):
    return randn(
        *x.shape,
        dtype=_like_dtype("randn_like", x, dtype),
        requires_grad=requires_grad,
        device=device,
        generator=generator,
    )


def randint_like(x, low=0, high=None, dtype=None, device=None, generator=None):
    """`randint_like(x, high)` or `randint_like(x, low, high)`: x's shape and dtype, as in
    PyTorch."""
    return randint(
        low,
        high,
        size=tuple(x.shape),
        dtype=x.dtype if dtype is None else dtype,
        device=device,
        generator=generator,
    )
