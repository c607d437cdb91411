"""`symbolic(...)`: the derivative derived with SymPy from the same recorded graph and the same
op formulas, to set beside the "old-fashioned" calculation as the slides do.

Two derivations are made and compared: the chain rule run backwards over the graph with each op's
declared derivative formula (parsed from its text, evaluated on arrays of SymPy expressions), and
direct differentiation (`sympy.diff`) of the output written as one expression. Branches (`where`,
relu, softplus's linear tail) are decided at the recorded values, as the engine decided them.
"""

import functools
import html

import numpy as np

from ..engine.autograd import deliver_gradients
from ..engine.broadcast import sum_to_array
from ..engine.op import Shape
from ..engine.tensor import Tensor
from ..ops import array_or_tensor
from . import expr
from .paths import format_array
from .recorded import Recorded, Vertex

# Tensors with more elements than this become numbers, not symbols (expressions would explode).
MAX_SYMBOLS_PER_TENSOR = 16


def symbolic(f, *args, wrt=None, names=None, simplify=True):
    """The derivative of an output with respect to leaves, derived symbolically.

    symbolic(loss, w1) or symbolic(loss, [b, w1, w2]): from a recorded output.
    symbolic(f, b, w1, w2): calls f(b, w1, w2) and differentiates with respect to the arguments
    that require grad.
    Leaves and named constants become symbols (a tensor's elements become name_0, name_1, ...);
    unnamed constants stay numbers.
    """
    if callable(f) and not isinstance(f, Tensor):
        output = f(*args)
        targets = (
            wrt
            if wrt is not None
            else [a for a in args if isinstance(a, Tensor) and a.requires_grad]
        )
    else:
        output = f
        if args and wrt is not None:
            raise TypeError("symbolic: give wrt either positionally or as wrt=, not both")
        targets = args[0] if args else wrt
    if targets is None:
        raise TypeError("symbolic: say which tensors to differentiate with respect to (wrt)")
    single = not isinstance(targets, list | tuple)
    targets = [targets] if single else list(targets)
    recorded = Recorded(output, names=names, inline=False)
    return Symbolic(recorded, [recorded.find(t) for t in targets], simplify)


class Symbolic:
    """The symbolic result: `expression` (the output), and per wrt name the chain-rule
    derivative, the direct one, whether they agree, and the value at the recorded point."""

    def __init__(self, recorded, targets, simplify=True):
        import sympy

        self.recorded = recorded
        self.targets = targets
        self.symbols, self.point = _symbols(recorded)
        forward = _forward(recorded, self.symbols, self.point)
        out = forward[recorded.output]
        self.expression = _scalar(out)
        chain = _chain_rule(recorded, forward, self.point)
        tidy = _tidy if simplify else (lambda e: e)
        self.derivatives, self.direct, self.agree, self.values = {}, {}, {}, {}
        for t in targets:
            if t.kind != "leaf":
                raise ValueError(f"symbolic: {t.name} must be a leaf that requires grad")
            g = chain.get(t)
            syms = self.symbols[t]
            derived = np.zeros(np.shape(syms), dtype=object) if g is None else g
            direct = np.vectorize(lambda s: sympy.diff(self.expression, s), otypes=[object])(syms)
            derived = np.vectorize(tidy, otypes=[object])(derived)
            direct = np.vectorize(tidy, otypes=[object])(direct)
            self.derivatives[t.name] = _scalar(derived)
            self.direct[t.name] = _scalar(direct)
            self.agree[t.name] = all(
                _same(a, b, self.point)
                for a, b in zip(np.ravel(derived), np.ravel(direct), strict=True)
            )
            self.values[t.name] = np.vectorize(
                lambda e: float(sympy.sympify(e).subs(self.point)), otypes=[float]
            )(derived)

    def __getitem__(self, name):
        return self.derivatives[name]

    def equals(self, name, other):
        """Whether the derivative for `name` equals `other` (a SymPy expression or text such as
        "2*(b + w1*x1 + w2*x2 - y)"), symbolically."""
        import sympy

        if isinstance(other, str):
            local = {str(s): s for s in self.point}
            other = sympy.sympify(other, locals=local)
        mine = self.derivatives[name]
        return _same(mine, other, None)

    def lines(self):
        out_name = self.recorded.output.name
        lines = [f"{out_name} = {slide_str(self.expression)}"]
        for t in self.targets:
            name = t.name
            mark = (
                "chain rule over the graph = direct differentiation"
                if self.agree[name]
                else "chain rule and direct differentiation DIFFER"
            )
            engine = t.grad
            value = self.values[name]
            lines.append(f"d{out_name}/d{name} = {slide_str(self.derivatives[name])}")
            lines.append(
                f"    ({mark}; at the recorded values {_fmt(value)}, engine {_fmt(engine)})"
            )
        return lines

    def __str__(self):
        return "\n".join(self.lines())

    __repr__ = __str__

    def to_latex(self):
        import sympy

        out_name = expr.latex_name(self.recorded.output.name)
        rows = [rf"{out_name} &= {sympy.latex(self.expression)}"]
        for t in self.targets:
            rows.append(
                rf"\frac{{\partial {out_name}}}{{\partial {expr.latex_name(t.name)}}} "
                rf"&= {sympy.latex(self.derivatives[t.name])}"
            )
        return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"

    def _repr_latex_(self):
        return "$$" + self.to_latex() + "$$"

    def _repr_html_(self):
        return f"<pre>{html.escape(str(self))}</pre>"


def _fmt(value):
    return format_array(value)


def _same(a, b, point):
    """Whether two expressions are equal. With a point: compared there and at two points near it
    (simplify can miss identities between exp/log forms, and is slow on big expressions);
    without: by `simplify`."""
    import sympy

    a, b = sympy.sympify(a), sympy.sympify(b)
    difference = a - b
    if point is None:
        return sympy.simplify(difference) == 0
    for shift in (0.0, 0.137, -0.291):
        at = {s: v + shift for s, v in point.items()}
        value = complex(difference.subs(at).evalf())
        if abs(value) > 1e-9 * max(1.0, abs(complex(a.subs(at).evalf()))):
            return False
    return True


def _tidy(e):
    import sympy

    e = sympy.sympify(e)
    if sympy.count_ops(e) <= 120:
        e = sympy.simplify(e)
    return sympy.factor_terms(sympy.factor(e)) if sympy.count_ops(e) <= 120 else e


def _scalar(a):
    a = np.asarray(a, dtype=object)
    return a.item() if a.size == 1 else a


def _symbols(recorded):
    import sympy

    symbols, point = {}, {}
    for v in recorded.vertices:
        if v.kind == "op":
            continue
        value = np.asarray(v.value)
        symbolic = v.kind == "leaf" or (v.user_named and value.size <= MAX_SYMBOLS_PER_TENSOR)
        if not symbolic:
            symbols[v] = _numbers(value)
            continue
        if value.size > MAX_SYMBOLS_PER_TENSOR:
            raise ValueError(
                f"symbolic: {v.name} has {value.size} elements; symbolic derivations are for small "
                f"models (at most {MAX_SYMBOLS_PER_TENSOR} elements per tensor)"
            )
        if value.ndim == 0:
            s = sympy.Symbol(v.name, real=True)
            arr = np.empty((), dtype=object)
            arr[()] = s
            point[s] = float(value)
        else:
            arr = np.empty(value.shape, dtype=object)
            for index in np.ndindex(value.shape):
                s = sympy.Symbol(f"{v.name}_{'_'.join(str(k) for k in index)}", real=True)
                arr[index] = s
                point[s] = float(value[index])
        symbols[v] = arr
    return symbols, point


def _numbers(value):
    import sympy

    arr = np.empty(value.shape, dtype=object)
    for index in np.ndindex(value.shape):
        x = value[index].item()
        arr[index] = sympy.Integer(x) if float(x).is_integer() else sympy.Float(x)
    return arr


def _as_object(x):
    import sympy

    if isinstance(x, np.ndarray) and x.dtype == object:
        return x
    a = np.asarray(x)
    if a.dtype == object:
        return a
    return _numbers(a) if a.dtype.kind in "fiub" else np.asarray(x, dtype=object) * sympy.Integer(1)


def _forward(recorded, symbols, point):
    values = dict(symbols)
    for v in recorded.op_vertices():
        op = v.node.op
        names = _namespace(v, values, point)
        missing = {param: None for param in op.inputs if names[param] is None}
        tree = expr.drop_missing(expr.substitute(expr.parse(op.formula), missing))
        try:
            value = expr.evaluate(tree, names)
        except NameError as error:
            raise NotImplementedError(
                f"symbolic: no symbolic form for the op {op.name!r} (node {v.name}): its formula "
                f"{op.formula!r} calls a function that has none here ({error})"
            ) from None
        values[v] = _as_object(value)
    return values


def _namespace(v, values, point, g=None):
    names = {}
    for (_, item), param in zip(v.inputs, v.node.op.inputs, strict=True):
        if isinstance(item, Vertex):
            names[param] = values[item]
        elif item is None:
            names[param] = None
        else:
            names[param] = _as_object(item)
    if v in values:
        names["out"] = values[v]
    if g is not None:
        names["g"] = g
    names.update(v.node.params or {})
    names.update(_functions(v.node.params or {}, point))
    return names


def _functions(params, point):
    import sympy

    def each(fn):
        return np.vectorize(fn, otypes=[object])

    def decide(c):
        c = sympy.sympify(c)
        if c in (sympy.true, sympy.false):
            return bool(c)
        return bool(c.subs(point))

    def where(cond, a, b):
        cond, a, b = np.broadcast_arrays(_as_object(cond), _as_object(a), _as_object(b))
        out = np.empty(cond.shape, dtype=object)
        for index in np.ndindex(cond.shape):
            out[index] = a[index] if decide(cond[index]) else b[index]
        return out

    beta = params.get("beta", 1)
    beta = sympy.Integer(int(beta)) if float(beta).is_integer() else sympy.Float(beta)
    sigmoid = each(lambda x: 1 / (1 + sympy.exp(-x)))
    dim, keepdim = params.get("dim"), params.get("keepdim", False)
    return {
        "exp": each(sympy.exp),
        "log": each(sympy.log),
        "log1p": each(lambda x: sympy.log(1 + x)),
        "sqrt": each(sympy.sqrt),
        "abs": each(sympy.Abs),
        "sin": each(sympy.sin),
        "cos": each(sympy.cos),
        "tanh": each(sympy.tanh),
        "erf": each(sympy.erf),
        "sign": each(sympy.sign),
        "sigmoid": sigmoid,
        "pi": sympy.pi,
        "relu": each(lambda x: x if decide(x > 0) else sympy.Integer(0)),
        "softplus": each(
            lambda x: (
                x
                if decide(beta * x > params.get("threshold", 20))
                else sympy.log(1 + sympy.exp(beta * x)) / beta
            )
        ),
        "sum": lambda x, *a: (
            np.sum(x, axis=dim, keepdims=keepdim)
            if not a
            else np.sum(x, axis=a[0], keepdims=a[1] if len(a) > 1 else False)
        ),
        "mean": lambda x, *a: (
            (np.sum(x, axis=dim, keepdims=keepdim) / params["n"])
            if not a
            else np.sum(x, axis=a[0], keepdims=a[1] if len(a) > 1 else False) / _count(x, a[0])
        ),
        "where": where,
        "unreduce": array_or_tensor.unreduce,
        "expand": array_or_tensor.unreduce,
        "sum_to": lambda x, shape: sum_to_array(_as_object(x), tuple(shape)),
        "zeros_like": lambda x: _numbers(np.zeros(np.shape(x))),
        "swapaxes": np.swapaxes,
        "permute": np.transpose,
        "inverse_permutation": array_or_tensor.inverse_permutation,
        "gelu": lambda x, approximate="none": each(lambda z: _gelu(z, approximate))(x),
        "normal_pdf": each(lambda x: sympy.exp(-(x**2) / 2) / sympy.sqrt(2 * sympy.pi)),
        "normal_cdf": each(lambda x: (1 + sympy.erf(x / sympy.sqrt(2))) / 2),
    }


def _gelu(z, approximate):
    import sympy

    if approximate == "none":
        return z * (1 + sympy.erf(z / sympy.sqrt(2))) / 2
    inner = sympy.sqrt(2 / sympy.pi) * (z + sympy.Float("0.044715") * z**3)
    return z / 2 * (1 + sympy.tanh(inner))


def _count(x, dim):
    shape = np.shape(x)
    dims = range(len(shape)) if dim is None else ([dim] if isinstance(dim, int) else dim)
    return int(np.prod([shape[d] for d in dims]))


def _chain_rule(recorded, forward, point):
    """Backward over the graph with each op's declared formulas, on SymPy arrays, through the
    engine's own dispatch (`deliver_gradients`)."""
    import sympy

    seed = np.empty(np.shape(recorded._seed), dtype=object)
    for index in np.ndindex(seed.shape):
        seed[index] = sympy.Integer(1)
    grads = {recorded.output: seed}
    for v in reversed(recorded.op_vertices()):
        g = grads.pop(v, None)
        if g is None:
            continue
        g = _as_object(g)  # a product of 0-d object arrays is a bare SymPy expression

        def evaluate(d, g, v=v):
            names = _namespace(v, forward, point, g=g)
            return _as_object(expr.evaluate(expr.parse(d.formula), names))

        parents, shapes = [], []
        out_shape = np.shape(forward[v])
        for (_i, item), d in zip(v.inputs, v.node.op.derivatives, strict=True):
            wanted = isinstance(item, Vertex) and item.differentiable and d is not None
            parents.append(item if wanted else None)
            shape = np.shape(forward[item]) if wanted else None
            shapes.append(Shape(shape) if wanted and shape != out_shape else None)
        deliver_gradients(v.node, g, None, None, parents, shapes, grads, [], False, evaluate)
    return {key: _as_object(value) for key, value in grads.items()}


@functools.lru_cache(maxsize=1)
def _printer_class():
    from sympy.printing.str import StrPrinter

    class SlidePrinter(StrPrinter):
        """Products as the slides write them: `2(b + w1 x1 - y) x1`."""

        def _print_Mul(self, e):
            import sympy

            coefficient, factors = e.as_coeff_mul()
            if (
                any(f.is_Pow and f.exp.is_negative for f in factors)
                or coefficient.is_Rational
                and not coefficient.is_Integer
            ):
                return super()._print_Mul(e)
            sums = [f for f in factors if f.is_Add]
            rest = [f for f in factors if not f.is_Add]
            parts = [f"({self._print(f)})" for f in sums] + [
                self.parenthesize(f, sympy.printing.precedence.PRECEDENCE["Mul"]) for f in rest
            ]
            body = " ".join(parts)
            if coefficient == 1:
                return body
            if coefficient == -1:
                return "-" + body
            joiner = "" if sums else " "
            return f"{self._print(coefficient)}{joiner}{body}"

    return SlidePrinter


def slide_str(e):
    """A SymPy expression printed like the slides: 2(b + w1 x1 + w2 x2 - y) x1."""
    if isinstance(e, np.ndarray):
        return "[" + ", ".join(slide_str(x) for x in e.ravel()) + "]"
    return _printer_class()().doprint(e)
