"""Elementwise operations. Each declaration: forward, then each input's local derivative as formula
text and as array code (written with `array_or_tensor`, so it is differentiable itself)."""

import numpy as np
from scipy import special

from ..engine import dtypes
from ..engine.op import Op, local, vjp
from ..engine.tensor import Tensor
from . import array_or_tensor as xp
from .build import as_tensor, binary, call, cast, float_unary, promote_pair, unary

# ---- arithmetic ---------------------------------------------------------------------------------

ADD = Op(
    "add",
    np.add,
    ("a", "b"),
    {"a": local("1", None), "b": local("1", None)},
    elementwise=True,
    formula="a + b",
)
SUB = Op(
    "sub",
    np.subtract,
    ("a", "b"),
    {"a": local("1", None), "b": local("-1", None)},
    elementwise=True,
    formula="a - b",
)
MUL = Op(
    "mul",
    np.multiply,
    ("a", "b"),
    {
        "a": local("b", lambda a, b, out: b),
        "b": local("a", lambda a, b, out: a),
    },
    elementwise=True,
    formula="a * b",
)
DIV = Op(
    "div",
    np.true_divide,
    ("a", "b"),
    {
        "a": local("1 / b", lambda a, b, out: 1 / b),
        "b": local("-a / b**2", lambda a, b, out: -a / (b * b)),
    },
    elementwise=True,
    formula="a / b",
)


def _power(a, b):
    """a ** b, with PyTorch's special cases for a float array to a number: 2 and 3 as products,
    0.5 as sqrt, -1 and -2 as reciprocals. They are what torch.pow computes, and NumPy's power
    of float32 costs 100 times as much (119 us where x * x * x takes 1)."""
    if type(a) is np.ndarray and a.dtype.kind == "f" and _is_number(b):
        if b == 2:
            return a * a
        if b == 3:
            return a * a * a
        if b == 0.5:
            return np.sqrt(a)
        if b == -1:
            return np.reciprocal(a)
        if b == -2:
            return np.reciprocal(a * a)
    return np.power(a, b)


def _is_number(b):
    return isinstance(b, int | float) or (type(b) is np.ndarray and b.ndim == 0)


def _pow_local_a(a, b, out):
    if _is_number(b):
        # A number as the exponent (x**2, x**2.5): no masking needed unless it is 0.
        if b == 0:
            return xp.zeros_like(a) if hasattr(a, "shape") else 0.0
        return b * (a ** (b - 1) if isinstance(a, Tensor) else _power(a, b - 1))
    # Masking the base too keeps 0**-1 out of the branch not taken (its own gradient would be
    # NaN under create_graph).
    return b * xp.where(b == 0, 1.0, a) ** (b - 1)


def _pow_local_b(a, b, out):
    if isinstance(a, int | float):  # a number as the base: 2.0 ** x
        if a != 0:
            return out * float(np.log(a))
        return xp.where(b >= 0, 0.0, out * -np.inf)
    masked = (a == 0) & (b >= 0)
    return xp.where(masked, 0.0, out * xp.log(xp.where(masked, 1.0, a)))


POW = Op(
    "pow",
    _power,
    ("a", "b"),
    {
        # PyTorch's conventions at the edges: an exponent of 0 has slope 0 in a (even at a = 0), and
        # the limit of out * log(a) as a -> 0 is 0 for b >= 0.
        "a": local("where(b == 0, 0, b * a**(b - 1))", _pow_local_a),
        "b": local("where((a == 0) & (b >= 0), 0, out * log(a))", _pow_local_b),
    },
    elementwise=True,
    formula="a ** b",
)
NEG = Op("neg", np.negative, ("x",), {"x": local("-1", None)}, elementwise=True, formula="-x")
MAXIMUM = Op(
    "maximum",
    np.maximum,
    ("a", "b"),
    {
        "a": local("(a > b) + 0.5 * (a == b)", lambda a, b, out: (a > b) + 0.5 * (a == b)),
        "b": local("(b > a) + 0.5 * (a == b)", lambda a, b, out: (b > a) + 0.5 * (a == b)),
    },
    elementwise=True,
    formula="maximum(a, b)",
)
MINIMUM = Op(
    "minimum",
    np.minimum,
    ("a", "b"),
    {
        "a": local("(a < b) + 0.5 * (a == b)", lambda a, b, out: (a < b) + 0.5 * (a == b)),
        "b": local("(b < a) + 0.5 * (a == b)", lambda a, b, out: (b < a) + 0.5 * (a == b)),
    },
    elementwise=True,
    formula="minimum(a, b)",
)

add = binary(ADD)
sub = binary(SUB)
mul = binary(MUL)
pow = binary(POW)  # noqa: A001 - PyTorch's name
maximum = binary(MAXIMUM)
minimum = binary(MINIMUM)
neg = unary(NEG)
negative = neg
_div = binary(DIV)


def div(a, b):
    """True division; integer tensors divide in the default float dtype, as in PyTorch."""
    default = dtypes.get_default_dtype()
    if isinstance(a, Tensor) and a._data.dtype.kind != "f":
        a = cast(a, default)
    if isinstance(b, Tensor) and b._data.dtype.kind != "f":
        b = cast(b, default)
    return _div(a, b)


true_divide = divide = div
subtract = sub
multiply = mul

# ---- functions of one variable ------------------------------------------------------------------

EXP = Op(
    "exp",
    np.exp,
    derivatives={"x": local("out", lambda x, out: out)},
    elementwise=True,
    formula="exp(x)",
)
LOG = Op(
    "log",
    np.log,
    derivatives={"x": local("1 / x", lambda x, out: 1 / x)},
    elementwise=True,
    formula="log(x)",
)
LOG1P = Op(
    "log1p",
    np.log1p,
    derivatives={"x": local("1 / (1 + x)", lambda x, out: 1 / (1 + x))},
    elementwise=True,
    formula="log1p(x)",
)
SQRT = Op(
    "sqrt",
    np.sqrt,
    derivatives={"x": local("0.5 / out", lambda x, out: 0.5 / out)},
    elementwise=True,
    formula="sqrt(x)",
)
ABS = Op(
    "abs",
    np.abs,
    derivatives={"x": local("sign(x)", lambda x, out: xp.sign(x))},
    elementwise=True,
    formula="abs(x)",
)
SIN = Op(
    "sin",
    np.sin,
    derivatives={"x": local("cos(x)", lambda x, out: xp.cos(x))},
    elementwise=True,
    formula="sin(x)",
)
COS = Op(
    "cos",
    np.cos,
    derivatives={"x": local("-sin(x)", lambda x, out: -xp.sin(x))},
    elementwise=True,
    formula="cos(x)",
)
TANH = Op(
    "tanh",
    np.tanh,
    derivatives={"x": local("1 - out**2", lambda x, out: 1 - out * out)},
    elementwise=True,
    formula="tanh(x)",
)
SIGMOID = Op(
    "sigmoid",
    special.expit,
    derivatives={"x": local("out * (1 - out)", lambda x, out: out * (1 - out))},
    elementwise=True,
    formula="sigmoid(x)",
)
RELU = Op(
    "relu",
    lambda x: np.maximum(x, 0, dtype=x.dtype),
    derivatives={"x": local("out > 0", lambda x, out: out > 0)},
    elementwise=True,
    formula="relu(x)",
)
_TWO_OVER_SQRT_PI = float(2 / np.sqrt(np.pi))  # a Python float keeps float32 float32
ERF = Op(
    "erf",
    special.erf,
    derivatives={
        "x": local("2 / sqrt(pi) * exp(-x**2)", lambda x, out: _TWO_OVER_SQRT_PI * xp.exp(-x * x)),
    },
    elementwise=True,
    formula="erf(x)",
)
SIGN = Op(
    "sign",
    np.sign,
    derivatives={"x": vjp("zeros_like(g)", lambda g, x, out: xp.zeros_like(g))},
    elementwise=True,
    formula="sign(x)",
)

exp = float_unary(EXP)
log = float_unary(LOG)
log1p = float_unary(LOG1P)
sqrt = float_unary(SQRT)
sin = float_unary(SIN)
cos = float_unary(COS)
tanh = float_unary(TANH)
sigmoid = float_unary(SIGMOID)
erf = float_unary(ERF)
abs = unary(ABS)  # noqa: A001 - PyTorch's name
absolute = abs
relu = unary(RELU)
sign = unary(SIGN)


def _softplus(x, beta, threshold):
    bx = x if beta == 1 else x * beta
    out = np.asarray(np.logaddexp(0, bx))  # a 0-d input gives a NumPy scalar: make it an array
    if beta != 1:
        out /= beta
    np.copyto(out, x, where=bx > threshold)
    return out


def _softplus_local(x, out, beta, threshold):
    bx = x if beta == 1 else x * beta
    if isinstance(x, Tensor):
        return xp.where(bx > threshold, 1.0, xp.sigmoid(bx))
    slope = np.asarray(special.expit(bx))
    np.copyto(slope, 1.0, where=bx > threshold)
    return slope


SOFTPLUS = Op(
    "softplus",
    _softplus,
    params=("beta", "threshold"),
    derivatives={
        "x": local("where(beta * x > threshold, 1, sigmoid(beta * x))", _softplus_local),
    },
    elementwise=True,
    formula="softplus(x)",
)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear above `threshold` (PyTorch's definition)."""
    return call(SOFTPLUS, (x,), beta=beta, threshold=threshold)


# Python floats, not NumPy scalars: NumPy 2 would promote float32 arrays to float64 with those.
_SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))
_SQRT_HALF = float(np.sqrt(0.5))


def _gelu(x):
    cdf = special.erf(x * _SQRT_HALF)  # in place from here on: each pass is a large array's
    cdf += 1
    cdf *= 0.5
    cdf *= x
    return cdf


def _gelu_local(x, out):
    # normal_cdf(x) is out / x (1/2 at 0), recovered from the forward's result rather than
    # recomputed: erf is the slow part of GELU, and the quotient is within 2 ulp of it. Recorded
    # for create_graph, the rule computes normal_cdf itself, whose own derivative is right at 0
    # too (out / x taken as 1/2 there would have slope 0).
    if isinstance(x, Tensor):
        return xp.normal_cdf(x) + x * xp.normal_pdf(x)
    cdf = np.full_like(out, 0.5)
    np.divide(out, x, out=cdf, where=x != 0)
    return cdf + x * xp.normal_pdf(x)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def _gelu_tanh_local(x, out):
    t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)


# Two declarations, one per approximation, so that each formula is the derivative its rule computes.
GELU = Op(
    "gelu",
    _gelu,
    derivatives={
        "x": local("where(x == 0, 0.5, out / x) + x * normal_pdf(x)", _gelu_local),
    },
    elementwise=True,
    formula="gelu(x)",
)
GELU_TANH = Op(
    "gelu",
    _gelu_tanh,
    derivatives={
        "x": local(
            "0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))) + 0.5 * x"
            " * (1 - tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))**2) * sqrt(2 / pi)"
            " * (1 + 3 * 0.044715 * x**2)",
            _gelu_tanh_local,
        ),
    },
    elementwise=True,
    formula="gelu(x, 'tanh')",
    variant="tanh",
)


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return call(GELU_TANH if approximate == "tanh" else GELU, (x,))


CLAMP = Op(
    "clamp",
    np.clip,
    params=("min", "max"),
    derivatives={
        "x": local("(x >= min) * (x <= max)", lambda x, out, min, max: (x >= min) * (x <= max)),
    },
    elementwise=True,
    formula="clamp(x)",
)


def clamp(x, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    x = as_tensor(x)
    if x.dtype.kind != "f" and (isinstance(min, float) or isinstance(max, float)):
        x = cast(x, dtypes.get_default_dtype())  # an integer tensor clamped to floats is a float
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # Tensor bounds as PyTorch treats them: x keeps its gradient where min <= x <= max, a
        # bound takes it where it wins (ties go to x, not half and half as maximum would split).
        out = x
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out
    return call(
        CLAMP, (x,), min=-np.inf if min is None else min, max=np.inf if max is None else max
    )


clip = clamp

# ---- selection ----------------------------------------------------------------------------------


def _where(cond, a, b):
    return np.where(cond, a, b)


WHERE = Op(
    "where",
    _where,
    ("cond", "a", "b"),
    {
        "cond": None,
        "a": vjp("where(cond, g, 0)", lambda g, cond, a, b, out: xp.where(cond, g, 0.0)),
        "b": vjp("where(cond, 0, g)", lambda g, cond, a, b, out: xp.where(cond, 0.0, g)),
    },
    elementwise=True,
    formula="where(cond, a, b)",
)


def where(condition, input, other):  # noqa: A002 - PyTorch's argument names
    """Elementwise choice. The gradient of the branch not taken is exactly 0, but a NaN made inside
    that branch (sqrt of a negative, say) still poisons the gradient through the branch's own rule:
    mask the input first, `where(x > 0, sqrt(where(x > 0, x, 1)), 0)`, as in PyTorch."""
    condition = as_tensor(condition)
    if condition.dtype != dtypes.bool_:
        condition = Tensor._wrap(condition._data.astype(bool))
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = as_tensor(input)
    if isinstance(input, Tensor) and isinstance(other, Tensor):
        if input.dtype != other.dtype:
            input, other = promote_pair(input, other)
    elif isinstance(input, Tensor):
        input, other = _with_number(input, other)
    else:
        other, input = _with_number(other, input)
    return call(WHERE, (condition, input, other))


def masked_fill(input, mask, value):  # noqa: A002 - PyTorch's argument names
    """`value` where the boolean `mask` (broadcast against input) is True, input elsewhere, in
    input's dtype; a 0-d tensor value takes the gradient of the positions it fills."""
    x = as_tensor(input)
    mask = as_tensor(mask)
    if mask.dtype != dtypes.bool_:
        raise RuntimeError(
            f"masked_fill only supports boolean masks, but got mask with dtype {mask.dtype}"
        )
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(
                "masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                f"{value.ndim} dimension(s)."
            )
        fill = value if value.dtype == x.dtype else cast(value, x.dtype)
    else:
        fill = Tensor._wrap(np.asarray(value).astype(x.dtype))
    return call(WHERE, (mask, fill, x))


def _with_number(tensor, value):
    """(tensor, value) in PyTorch's result dtype for a tensor and a Python number: a float makes
    an integer tensor's result the default float dtype, otherwise the tensor's dtype wins."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, bool | int | float):  # an array or list: a tensor operand
        value = as_tensor(value)
        return promote_pair(tensor, value) if value.dtype != tensor.dtype else (tensor, value)
    target = tensor.dtype
    if isinstance(value, float) and target.kind != "f":
        target = dtypes.get_default_dtype()
    elif not isinstance(value, bool) and target.kind == "b":
        target = dtypes.int64
    if target != tensor.dtype:
        tensor = cast(tensor, target)
    return tensor, Tensor._wrap(np.asarray(value, dtype=target))


# ---- comparisons (no gradient, bool result) -----------------------------------------------------

eq = binary(Op("eq", np.equal, ("a", "b"), formula="a == b"))
ne = binary(Op("ne", np.not_equal, ("a", "b"), formula="a != b"))
lt = binary(Op("lt", np.less, ("a", "b"), formula="a < b"))
le = binary(Op("le", np.less_equal, ("a", "b"), formula="a <= b"))
gt = binary(Op("gt", np.greater, ("a", "b"), formula="a > b"))
ge = binary(Op("ge", np.greater_equal, ("a", "b"), formula="a >= b"))
logical_and = binary(Op("logical_and", np.logical_and, ("a", "b"), formula="logical_and(a, b)"))
logical_or = binary(Op("logical_or", np.logical_or, ("a", "b"), formula="logical_or(a, b)"))
logical_not = unary(Op("logical_not", np.logical_not, formula="logical_not(x)"))
isnan = unary(Op("isnan", np.isnan, formula="isnan(x)"))
isfinite = unary(Op("isfinite", np.isfinite, formula="isfinite(x)"))
