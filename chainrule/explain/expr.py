"""Formula text as expression trees: the op declarations' derivative strings and forward templates
are parsed once, the op's parameter names are replaced by the user's names (or by the inlined
expression of an unnamed intermediate), and the result is tidied and printed the way the slides
write it: `2(yhat - y)`, not `2 * (yhat - y)**(2 - 1) * 1`.

Python's own `ast` is the tree: formulas are Python expressions, and nothing here evaluates
anything but names, numbers, operators and a fixed table of functions.
"""

import ast
import copy
import functools
import numbers
import operator
from fractions import Fraction

import numpy as np

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
}
_COMPARE = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


@functools.cache
def _parse_cached(text):
    return ast.parse(text, mode="eval").body


def parse(text):
    return _parse_cached(text)


def name(text):
    return ast.Name(id=text, ctx=ast.Load())


def const(value):
    return ast.Constant(value=value)


def substitute(tree, mapping):
    """A copy of `tree` with each Name in `mapping` replaced by its tree (a value or a tree)."""

    class Replace(ast.NodeTransformer):
        def visit_Name(self, node):
            if node.id in mapping:
                value = mapping[node.id]
                return value if isinstance(value, ast.AST) else const(value)
            return node

    return Replace().visit(_deepcopy(tree))


def drop_missing(tree):
    """`tree` without the inputs that are None (an absent bias): a `+ None` term goes, and so does
    a None argument of a call."""

    class Drop(ast.NodeTransformer):
        def visit_BinOp(self, node):
            self.generic_visit(node)
            if isinstance(node.op, ast.Add | ast.Sub) and _is_none(node.right):
                return node.left
            if isinstance(node.op, ast.Add) and _is_none(node.left):
                return node.right
            return node

        def visit_Call(self, node):
            self.generic_visit(node)
            node.args = [a for a in node.args if not _is_none(a)]
            return node

    return Drop().visit(_deepcopy(tree))


def _is_none(node):
    return isinstance(node, ast.Constant) and node.value is None


def _deepcopy(tree):
    return copy.deepcopy(tree)


def product(trees):
    """The product of several factors, as one tree."""
    trees = list(trees)
    if not trees:
        return const(1)
    out = trees[0]
    for t in trees[1:]:
        out = ast.BinOp(left=out, op=ast.Mult(), right=t)
    return out


def _is_number(node):
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, numbers.Number)
        and not isinstance(node.value, bool)
    )


def _number(value):
    if isinstance(value, Fraction) and value.denominator == 1:
        value = value.numerator
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, numbers.Number) and value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=const(-value))
    return const(value)


def simplify(tree):
    """Fold numbers, drop factors of 1 and powers of 1, gather a product's numeric coefficient in
    front; leave everything else as the formula wrote it (term order is the reader's order)."""
    tree = _deepcopy(tree)
    return _simplify(tree)


def _simplify(node):
    for field, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            setattr(node, field, _simplify(value))
        elif isinstance(value, list):
            setattr(node, field, [_simplify(v) if isinstance(v, ast.AST) else v for v in value])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = node.operand
        if _is_number(inner):
            return _number(-inner.value)
        if isinstance(inner, ast.UnaryOp) and isinstance(inner.op, ast.USub):
            return inner.operand
        return node
    if not isinstance(node, ast.BinOp):
        return node
    left, right, op = node.left, node.right, node.op
    num_l, num_r = _numeric(left), _numeric(right)
    if (
        num_l is not None
        and num_r is not None
        and type(op) in _BINOPS
        and not isinstance(op, ast.MatMult)
    ):
        if (
            isinstance(op, ast.Div)
            and isinstance(num_l, numbers.Rational)
            and isinstance(num_r, numbers.Rational)
            and num_r != 0
        ):
            return _number(Fraction(num_l) / Fraction(num_r))
        try:
            return _number(_BINOPS[type(op)](num_l, num_r))
        except (ZeroDivisionError, OverflowError):
            return node
    if isinstance(op, ast.Pow) and num_r == 1:
        return left
    if isinstance(op, ast.Pow) and num_r == 0:
        return const(1)
    if isinstance(op, ast.Add):
        if num_l == 0:
            return right
        if num_r == 0:
            return left
        if isinstance(right, ast.UnaryOp) and isinstance(right.op, ast.USub):
            return ast.BinOp(left=left, op=ast.Sub(), right=right.operand)
    if (
        isinstance(op, ast.Sub)
        and isinstance(right, ast.UnaryOp)
        and isinstance(right.op, ast.USub)
    ):
        return ast.BinOp(left=left, op=ast.Add(), right=right.operand)
    if isinstance(op, ast.Sub):
        if num_r == 0:
            return left
        if num_l == 0:
            return _simplify(ast.UnaryOp(op=ast.USub(), operand=right))
    if isinstance(op, ast.Div) and num_r == 1:
        return left
    if isinstance(op, ast.Mult):
        return _simplify_product(node)
    return node


def _numeric(node):
    if _is_number(node):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_number(node.operand):
        return -node.operand.value
    return None


def _factors(node, out):
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        _factors(node.left, out)
        _factors(node.right, out)
    else:
        out.append(node)
    return out


def _simplify_product(node):
    coefficient = 1
    rest = []
    for f in _factors(node, []):
        value = _numeric(f)
        if value is not None:
            coefficient *= value
        elif isinstance(f, ast.UnaryOp) and isinstance(f.op, ast.USub):
            coefficient = -coefficient
            rest.append(f.operand)
        else:
            rest.append(f)
    if coefficient == 0:
        return const(0)
    if not rest:
        return _number(coefficient)
    if isinstance(coefficient, Fraction) and coefficient.denominator != 1:
        top = _simplify_product(product([const(coefficient.numerator)] + rest))
        return ast.BinOp(left=top, op=ast.Div(), right=const(coefficient.denominator))
    body = product(rest)
    if coefficient == 1:
        return body
    if coefficient == -1:
        return ast.UnaryOp(op=ast.USub(), operand=body)
    return ast.BinOp(
        left=_number(coefficient) if coefficient > 0 else const(coefficient),
        op=ast.Mult(),
        right=body,
    )


# ---- printing -----------------------------------------------------------------------------------

_PREC = {ast.Add: 10, ast.Sub: 10, ast.Mult: 20, ast.Div: 20, ast.MatMult: 20, ast.Pow: 40}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@", ast.Pow: "**"}
_CMP_SYMBOL = {
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


def format_number(value, digits=4):
    """A number as people write it: 3 not 3.0, 0.4615 not 0.46153846."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


def to_text(tree):
    return _text(tree)[0]


def _text(node):
    """(text, precedence) of `node`, with the slides' `2(yhat - y)` for a number times a sum."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, tuple):
            return str(node.value), 100
        if isinstance(node.value, Fraction):
            return f"{node.value.numerator}/{node.value.denominator}", 20
        if isinstance(node.value, numbers.Number):
            text = format_number(node.value)
            return text, (30 if text.startswith("-") else 100)
        return repr(node.value), 100
    if isinstance(node, ast.Name):
        return node.id, 100
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner, prec = _text(node.operand)
        if prec < 30:
            if _is_sum(node.operand):
                return f"-({inner})", 30
            inner = f"({inner})"
        return f"-{inner}", 30
    if isinstance(node, ast.BinOp):
        prec = _PREC[type(node.op)]
        left, lp = _text(node.left)
        right, rp = _text(node.right)
        if isinstance(node.op, ast.Pow):
            left = f"({left})" if lp <= prec else left
            right = f"({right})" if rp <= prec else right
            return f"{left}**{right}", prec
        if (
            isinstance(node.op, ast.Mult)
            and _numeric(node.left) is not None
            and _is_sum(node.right)
        ):
            return f"{left}({right})", prec
        left = f"({left})" if lp < prec else left
        strict = isinstance(node.op, ast.Sub | ast.Div | ast.MatMult)
        right = f"({right})" if rp < prec or (strict and rp == prec) else right
        return f"{left} {_SYMBOL[type(node.op)]} {right}", prec
    if isinstance(node, ast.Attribute):
        inner, prec = _text(node.value)
        inner = inner if prec >= 100 else f"({inner})"
        attr = "T" if node.attr == "mT" else node.attr
        return f"{inner}.{attr}", 100
    if isinstance(node, ast.Call):
        args = ", ".join(_text(a)[0] for a in node.args)
        return f"{_text(node.func)[0]}({args})", 100
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, lp = _text(node.left)
        right, rp = _text(node.comparators[0])
        return f"{left} {_CMP_SYMBOL[type(node.ops[0])]} {right}", 5
    return ast.unparse(node), 100


def _is_sum(node):
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub)


@functools.lru_cache(maxsize=4096)
def latex_name(text):
    """A name in LaTeX: w1 -> w_{1}, yhat -> \\hat{y}; auto names like mul3 keep their letters."""
    import sympy

    if not text.isidentifier():
        return r"\text{" + text.replace("_", r"\_") + "}"
    return sympy.latex(sympy.Symbol(text))


def to_latex(tree):
    return _latex(tree)[0]


def _latex(node):
    if isinstance(node, ast.Constant):
        if isinstance(node.value, Fraction):
            return rf"\frac{{{node.value.numerator}}}{{{node.value.denominator}}}", 100
        if isinstance(node.value, numbers.Number):
            text = format_number(node.value)
            return text, (30 if text.startswith("-") else 100)
        return r"\text{" + str(node.value) + "}", 100
    if isinstance(node, ast.Name):
        return latex_name(node.id), 100
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner, prec = _latex(node.operand)
        if prec < 30:
            inner = rf"\left({inner}\right)"
        return f"-{inner}", 30
    if isinstance(node, ast.BinOp):
        prec = _PREC[type(node.op)]
        left, lp = _latex(node.left)
        right, rp = _latex(node.right)
        if isinstance(node.op, ast.Div):
            return rf"\frac{{{left}}}{{{right}}}", 100
        if isinstance(node.op, ast.Pow):
            left = rf"\left({left}\right)" if lp <= prec else left
            return f"{left}^{{{right}}}", prec
        if (
            isinstance(node.op, ast.Mult)
            and _numeric(node.left) is not None
            and _is_sum(node.right)
        ):
            return rf"{left}\left({right}\right)", prec
        left = rf"\left({left}\right)" if lp < prec else left
        strict = isinstance(node.op, ast.Sub | ast.MatMult)
        right = rf"\left({right}\right)" if rp < prec or (strict and rp == prec) else right
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: r"\cdot", ast.MatMult: ""}[type(node.op)]
        return f"{left} {symbol} {right}", prec
    if isinstance(node, ast.Attribute):
        inner, prec = _latex(node.value)
        inner = inner if prec >= 100 else rf"\left({inner}\right)"
        if node.attr in ("T", "mT"):
            return f"{inner}^{{T}}", 100
        return rf"{inner}.\mathrm{{{node.attr}}}", 100
    if isinstance(node, ast.Call):
        args = ", ".join(_latex(a)[0] for a in node.args)
        func = _text(node.func)[0]
        return rf"\operatorname{{{func}}}\left({args}\right)", 100
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        symbol = {
            ast.Gt: ">",
            ast.GtE: r"\geq",
            ast.Lt: "<",
            ast.LtE: r"\leq",
            ast.Eq: "=",
            ast.NotEq: r"\neq",
        }[type(node.ops[0])]
        return f"[{_latex(node.left)[0]} {symbol} {_latex(node.comparators[0])[0]}]", 5
    return r"\text{" + ast.unparse(node).replace("_", r"\_") + "}", 100


# ---- evaluation ---------------------------------------------------------------------------------


def evaluate(tree, names):
    """Evaluate a formula tree with `names` (values and functions): operators, comparisons,
    attribute reads (`.shape`, `.mT`), subscripts and calls of the given functions, nothing else."""
    return _eval(tree, names)


def _eval(node, names):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        try:
            return names[node.id]
        except KeyError:
            raise NameError(f"formula uses {node.id!r}, which is not defined here") from None
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, names)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return value
        raise ValueError(f"unsupported unary operator in formula: {ast.unparse(node)}")
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        compare = _COMPARE[type(node.ops[0])]
        left, right = _eval(node.left, names), _eval(node.comparators[0], names)
        if any(isinstance(x, np.ndarray) and x.dtype == object for x in (left, right)):
            # Symbolic operands: keep each comparison as an unevaluated relation.
            return np.vectorize(compare, otypes=[object])(left, right)
        return compare(left, right)
    if isinstance(node, ast.Attribute):
        if node.attr not in ("shape", "ndim", "mT", "T"):
            raise ValueError(f"formula reads attribute {node.attr!r}, which is not allowed")
        return getattr(_eval(node.value, names), node.attr)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, names)[_eval(node.slice, names)]
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, names) for e in node.elts)
    if isinstance(node, ast.Call):
        func = _eval(node.func, names)
        if not callable(func):
            raise ValueError(f"formula calls {ast.unparse(node.func)}, which is not a function")
        args = [_eval(a, names) for a in node.args]
        kwargs = {k.arg: _eval(k.value, names) for k in node.keywords}
        return func(*args, **kwargs)
    raise ValueError(f"unsupported syntax in formula: {ast.unparse(node)}")
