"""Every operation, declared once. Importing this package attaches the operators to Tensor."""

import sys

from . import dual, methods
from .creation import (
    arange, as_tensor, default_generator, empty, eye, from_numpy, full, full_like, linspace,
    manual_seed, ones, ones_like, rand, randint, randn, randperm, tensor, zeros, zeros_like,
)
from .elementwise import (
    abs, absolute, add, clamp, clip, cos, div, divide, eq, erf, exp, ge, gelu, gt, isfinite, isnan,
    le, log, log1p, logical_and, logical_not, logical_or, lt, maximum, minimum, mul, multiply, ne,
    neg, negative, pow, relu, sigmoid, sign, sin, softplus, sqrt, sub, subtract, tanh, true_divide,
    where,
)
from .indexing import getitem
from .linalg import bmm, dot, einsum, matmul, mm, outer
from .nn import linear, log_softmax, softmax
from .reduction import (
    amax, amin, argmax, argmin, gather, logsumexp, max, mean, min, norm, prod, std, sum, var,
)
from .shape import (
    broadcast_to, cat, chunk, clone, concat, concatenate, expand, flatten, narrow, permute,
    reshape, split, squeeze, stack, swapaxes, t, to, transpose, unsqueeze, view,
)

__all__ = [
    "abs", "absolute", "add", "amax", "amin", "arange", "argmax", "argmin", "as_tensor", "bmm",
    "broadcast_to", "cat", "chunk", "clamp", "clip", "clone", "concat", "concatenate", "cos",
    "default_generator", "div", "divide", "dot", "einsum", "empty", "eq", "erf", "exp", "expand",
    "eye", "flatten", "from_numpy", "full", "full_like", "gather", "ge", "gelu", "getitem", "gt",
    "isfinite", "isnan", "le", "linear", "linspace", "log", "log1p", "log_softmax", "logical_and",
    "logical_not", "logical_or", "logsumexp", "lt", "manual_seed", "matmul", "max", "maximum",
    "mean", "min", "minimum", "mm", "mul", "multiply", "narrow", "ne", "neg", "negative", "norm",
    "ones", "ones_like", "outer", "permute", "pow", "prod", "rand", "randint", "randn", "randperm",
    "relu", "reshape", "sigmoid", "sign", "sin", "softmax", "softplus", "split", "sqrt", "squeeze",
    "stack", "std", "sub", "subtract", "sum", "swapaxes", "t", "tanh", "tensor", "to", "transpose",
    "true_divide", "unsqueeze", "var", "view", "where", "zeros", "zeros_like",
]

methods.install()
dual.ops = sys.modules[__name__]
