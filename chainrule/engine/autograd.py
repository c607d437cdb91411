"""The backward walk, `grad`, and the grad-mode switches.

Nodes are numbered as they are created, so creation order is a topological order: backward seeds
the outputs, walks the nodes newest first (from a heap, so depth is unlimited), applying each node's
rules once to the sum of everything that flowed into it, and settles the leaves' totals into `.grad`.
`deliver_gradients` is the one place a node's rules are applied; the explainer calls it too.
"""

import functools
import heapq

import numpy as np

from .broadcast import sum_to
from .op import IDENTITY, LIGHT_TYPES, LOCAL, SMALL_CONSTANT_BYTES, VJP, Node, keep_constants
from .state import modes, state
from .tensor import Tensor

_push = heapq.heappush


class _GradMode:
    """Base for the grad-mode switches: usable as a context manager and as a decorator. The mode
    is the calling thread's own (engine.state.modes); leaving restores what it was."""

    mode = True

    def __enter__(self):
        self._previous = state.set_mode("grad_enabled", self.mode)

    def __exit__(self, *exc):
        state.set_mode("grad_enabled", self._previous)
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper


class _BareDecorator:
    """`@cr.no_grad` without parentheses decorates at once, as in PyTorch."""

    def __new__(cls, fn=None):
        instance = super().__new__(cls)
        return instance if fn is None else instance(fn)


class no_grad(_BareDecorator, _GradMode):
    """Run without recording: results do not require grad, nothing is saved."""

    mode = False


class enable_grad(_BareDecorator, _GradMode):
    mode = True


class set_grad_enabled(_GradMode):
    def __init__(self, mode):
        # As in PyTorch, the call itself switches the mode, so that `cr.set_grad_enabled(False)`
        # works as a plain statement; leaving a `with` block restores the previous mode.
        self.mode = bool(mode)
        self._previous = state.set_mode("grad_enabled", self.mode)

    def __enter__(self):
        pass

    def __call__(self, fn):
        state.set_mode(
            "grad_enabled", self._previous
        )  # as a decorator, the mode applies inside fn only
        return super().__call__(fn)


def is_grad_enabled():
    return modes.grad_enabled


class inference_mode:
    """No recording, as under no_grad, and `is_inference_mode_enabled()` is True. As in PyTorch,
    `inference_mode(False)` turns both back (grad mode on, inference mode off) and
    `@cr.inference_mode` decorates. chainrule has no inference tensors: what is computed inside is
    an ordinary tensor that does not require grad."""

    def __new__(cls, mode=True):
        instance = super().__new__(cls)
        if callable(mode):  # used bare, as `@cr.inference_mode`
            instance.mode = True
            return instance(mode)
        return instance

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def __enter__(self):
        self._previous = (
            state.set_mode("grad_enabled", not self.mode),
            state.set_mode("inference", self.mode),
        )

    def __exit__(self, *exc):
        state.set_mode("grad_enabled", self._previous[0])
        state.set_mode("inference", self._previous[1])
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)

        return wrapper


def is_inference_mode_enabled():
    return modes.inference


class detect_anomaly:
    """Within this block, a NaN or inf produced by a backward rule raises an error naming the op and
    the line of user code that created it."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._previous = state.set_mode("anomaly", self.check_nan)

    def __exit__(self, *exc):
        state.set_mode("anomaly", self._previous)
        return False


def is_anomaly_enabled():
    return modes.anomaly


class AnomalyError(RuntimeError):
    pass


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """`cr.autograd.backward`: one tensor or a sequence of them (with one gradient each), as in
    PyTorch; `Tensor.backward` is this for one tensor."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None:
        grad_tensors = [None] * len(tensors)
    elif isinstance(grad_tensors, Tensor | np.ndarray):
        grad_tensors = [grad_tensors]
    else:
        grad_tensors = list(grad_tensors)
    if len(grad_tensors) != len(tensors):
        raise RuntimeError(
            f"backward: {len(grad_tensors)} gradients for {len(tensors)} tensors; give one each"
        )
    if inputs is None:
        _run(tensors, grad_tensors, retain_graph, create_graph, None, accumulate=True)
        return
    # Only `inputs` accumulate, leaves or not, as in PyTorch.
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    found = _run(tensors, grad_tensors, retain_graph, create_graph, inputs, accumulate=False)
    for x in inputs:
        g = found.get(x)
        if g is not None:
            x.grad = g if x.grad is None else x.grad + g


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    allow_unused=False,
    materialize_grads=False,
):
    """Gradients of `outputs` with respect to `inputs`, as a tuple; `.grad` is left alone."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single_input = isinstance(inputs, Tensor)
    inputs = [inputs] if single_input else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad, so it has no gradient")
    found = _run(outputs, list(grad_outputs), retain_graph, create_graph, inputs, accumulate=False)
    results = []
    for i, x in enumerate(inputs):
        g = found.get(x)
        if g is None:
            if materialize_grads:
                g = Tensor._wrap(np.zeros_like(x._data))
            elif not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {x.shape}{_named(x)}) was not used to compute the "
                    "outputs; pass allow_unused=True to get None for it"
                )
        results.append(g)
    return tuple(results)


def _named(x):
    return f", name {x.name!r}" if x.name else ""


def _seed(tensor, gradient, create_graph):
    if not tensor.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no grad_fn, so there is nothing "
            "to differentiate; set requires_grad=True on the leaves it is computed from"
        )
    if gradient is None:
        if tensor._data.size != 1:
            raise RuntimeError(
                f"backward: the gradient can be created implicitly only for a scalar output, but "
                f"this tensor has shape {tuple(tensor.shape)}; pass gradient= of that shape "
                "(or reduce it first, e.g. .sum())"
            )
        seed = np.ones(tensor._data.shape, tensor._data.dtype)
    else:
        seed = gradient._data if isinstance(gradient, Tensor) else np.asarray(gradient)
        if seed.shape != tensor.shape:
            raise RuntimeError(
                f"backward: gradient has shape {tuple(seed.shape)} but the tensor has shape "
                f"{tuple(tensor.shape)}; they must match"
            )
        if create_graph and isinstance(gradient, Tensor):
            # Keep the seed in the graph (a gradient of gradients may flow into it), in the
            # output's dtype, as the first-order path casts it.
            return gradient if gradient.dtype == tensor.dtype else gradient.to(tensor.dtype)
        seed = seed.astype(tensor.dtype, copy=False)
    return Tensor._wrap(seed) if create_graph else seed


def grad_with_values(output, inputs, grad_output, values):
    """The gradients of `output` with respect to `inputs` (None for one it does not reach), as
    `grad(..., retain_graph=True, allow_unused=True)` computes them, also through nodes whose
    saved values a backward freed: `values[node]` is such a node's (input arrays, output array),
    recomputed by the caller (the explainer replays the forward). Nodes that still hold their
    saved values use those; nothing is freed, `.grad` is left alone."""
    found = _run([output], [grad_output], True, False, inputs, accumulate=False, values=values)
    return tuple(found.get(x) for x in inputs)


def _run(outputs, gradients, retain_graph, create_graph, targets, accumulate, values=None):
    """Backward from `outputs`: seed them, walk the nodes newest first, then settle the leaves.
    With `targets`, returns their gradients (and only nodes leading to one are visited)."""
    if retain_graph is None:
        retain_graph = create_graph
    grads, seen_arrays = _seed_all(outputs, gradients, create_graph)
    roots = {t.grad_fn for t in outputs if t.grad_fn is not None}
    walk = _Walk(roots, targets, create_graph, retain_graph, accumulate, values)
    if state.post_accumulate_hooks and targets is None and accumulate:
        walk.ready = _ready_leaves(roots, state.post_accumulate_hooks)
        walk.seen_arrays = seen_arrays
    with set_grad_enabled(create_graph):  # a backward is recorded only under create_graph
        walk.run(grads)
    # What is left in `grads` are the leaves' totals.
    return _settle_leaves(grads, seen_arrays, walk, create_graph, accumulate)


def _ready_leaves(roots, hooked):
    """For the leaves with post-accumulate hooks: node number -> the leaves whose gradient is
    final once that node has delivered (their oldest consumer). Settling them there, rather than
    after the whole walk, lets a hook (DistributedDataParallel's) start work during backward."""
    last = {}
    for node in graph_nodes(roots):
        for parent in node.next:
            if parent is not None and type(parent) is not Node and hooked.get(id(parent)):
                last.setdefault(parent, node.seq)  # oldest first: the first is the oldest consumer
    ready = {}
    for leaf, seq in last.items():
        ready.setdefault(seq, []).append(leaf)
    return ready


def _seed_all(outputs, gradients, create_graph):
    """The gradient flowing into each output, and the seed arrays (which no leaf may keep as its
    .grad without a copy: they are the caller's)."""
    grads, seen_arrays = {}, set()
    for tensor, gradient in zip(outputs, gradients):
        seed = _seed(tensor, gradient, create_graph)
        seen_arrays.add(id(seed))
        _accumulate(grads, tensor.grad_fn or tensor, seed)
    return grads, seen_arrays


class _Walk:
    """One backward pass over the nodes behind `roots`; `captured` collects the targets'
    gradients."""

    def __init__(self, roots, targets, create_graph, retain_graph, accumulate, values=None):
        self.roots = roots
        self.values = values  # see grad_with_values
        self.create_graph = create_graph
        self.retain_graph = retain_graph
        self.accumulate = accumulate  # whether retain_grad() tensors keep their gradient
        self.captured = {}
        self.ready = None  # node number -> leaves to settle after it (see _ready_leaves)
        self.seen_arrays = None
        if targets is None:
            self.target_keys = self.wanted = None
        else:
            self.target_keys = {t.grad_fn or t: t for t in targets}
            self.wanted = _nodes_leading_to(roots, self.target_keys)

    def run(self, grads):
        # Newest node first: creation order is a topological order, so when a node leaves the
        # heap every path into it has delivered its gradient.
        heap = [(-node.seq, node) for node in self.roots]
        heapq.heapify(heap)
        pop = heapq.heappop
        create_graph, retain_graph = self.create_graph, self.retain_graph
        target_keys, wanted = self.target_keys, self.wanted
        values = self.values
        anomaly = modes.anomaly
        last_inplace = state.last_inplace
        ready = self.ready
        light, small, ndarray = LIGHT_TYPES, SMALL_CONSTANT_BYTES, np.ndarray
        while heap:
            node = pop(heap)[1]
            g = grads.pop(node)
            if node.pre_hooks is not None or node.retained is not None:
                g = _node_hooks(node, g, create_graph, self.accumulate)
            if target_keys is not None:
                if node in target_keys:
                    self.captured[target_keys[node]] = g
                if node not in wanted:
                    continue
            saved = node.saved
            if saved is None:
                if values is None:
                    raise _freed_error(node)
                args, out = values[node]
            else:
                if last_inplace > node.seq:
                    _check_versions(node)
                if create_graph:
                    if not isinstance(g, Tensor):
                        g = Tensor._wrap(g)
                    args = saved
                    out = None if node.out is None else Tensor._wrap(node.out, node)
                else:
                    args = node.arrays
                    out = node.out
            # args serve as the shapes: arrays (or Tensors) and placeholders, all with .shape
            deliver_gradients(node, g, args, out, node.next, args, grads, heap, anomaly, None)
            if not retain_graph:
                # Keep the constants, so that the graph can still be explained: the whole of
                # `saved` where nothing in it holds more than a small array of its own (the
                # common case, tested here inline as this runs once per node), else what
                # keep_constants picks.
                for x in saved:
                    kind = type(x)
                    if kind not in light and (
                        kind is not ndarray or x.nbytes > small or x.base is not None
                    ):
                        node.constants = keep_constants(node.next, saved)
                        break
                else:
                    node.constants = saved
                node.saved = node.arrays = node.out = None
            if ready is not None and node.seq in ready:
                for leaf in ready.pop(node.seq):
                    if leaf in grads:
                        _settle_leaf(
                            leaf, grads.pop(leaf), self.seen_arrays, self, create_graph, True
                        )


def deliver_gradients(node, g, args, out, parents, shapes, grads, heap, anomaly, evaluate):
    """Apply `node`'s rules to `g`, the gradient at its output, and add what each input gets to
    `grads[parents[i]]`: the one place a node's rules are applied (by the backward walk, the
    explainer's recorded values and its symbolic derivation).

    args, out: what the rules compute with (arrays; Tensors under create_graph; SymPy arrays).
    parents[i]: the key input i's gradient goes to, or None for an input that gets none (always
    None where the op has no derivative for it; a node's `next` is this). shapes[i]: anything with
    input i's `.shape`, or None where the op did not broadcast it. heap: where a Node reached for
    the first time is pushed (the walk's queue; the explainer's keys are not Nodes).
    anomaly: check each gradient is finite. evaluate(derivative, g): a rule's value (the local
    derivative when g is None, else the VJP); the rule's array code unless given.
    A custom Function's backward that returns None for an input delivers nothing to it.
    """
    op = node.op
    params = node.params
    elementwise = op.elementwise
    i = -1
    for d in op.derivatives:
        i += 1
        parent = parents[i]
        if parent is None:
            continue
        kind = d.kind
        if kind is LOCAL:
            if evaluate is not None:
                gi = g * evaluate(d, None)
            else:
                gi = g * (d.fn(*args, out, **params) if params else d.fn(*args, out))
        elif kind is IDENTITY:
            gi = g
        elif kind is VJP:
            if evaluate is not None:
                gi = evaluate(d, g)
            else:
                gi = d.fn(g, *args, out, **params) if params else d.fn(g, *args, out)
            if gi is None:  # a custom Function's backward returned None: no gradient
                continue
        else:
            gi = -g
        if elementwise:
            placeholder = shapes[i]
            if placeholder is not None and gi.shape != placeholder.shape:
                gi = sum_to(gi, placeholder.shape)
        if anomaly:
            _check_finite(node, i, gi)
        previous = grads.get(parent)
        if previous is None:
            grads[parent] = gi
            if type(parent) is Node:
                _push(heap, (-parent.seq, parent))
        else:
            grads[parent] = previous + gi


def _freed_error(node):
    return RuntimeError(
        f"backward through the graph a second time: the values saved by {node.op.name} (and the "
        "rest of this graph) were freed by the first backward; pass retain_graph=True to the "
        "first backward() if you need to call it again"
    )


def _settle_leaves(grads, seen_arrays, walk, create_graph, accumulate):
    """Give each leaf its total: hooks, dtype, a copy where the array is shared, then .grad (or,
    with targets, the captured result)."""
    captured, target_keys = walk.captured, walk.target_keys
    for leaf, g in grads.items():
        _settle_leaf(leaf, g, seen_arrays, walk, create_graph, accumulate)
    if target_keys is not None and not create_graph:
        for key, g in captured.items():
            if not isinstance(g, Tensor):
                captured[key] = Tensor._wrap(np.array(g))
    return captured


def _settle_leaf(leaf, g, seen_arrays, walk, create_graph, accumulate):
    if leaf._hooks:
        g = _run_hooks(leaf._hooks, g, create_graph)
    if not create_graph:
        g = _own_array(g, leaf, seen_arrays)
    if walk.target_keys is not None:
        if leaf in walk.target_keys:
            walk.captured[leaf] = g if create_graph else Tensor._wrap(g)
    elif accumulate:
        _accumulate_grad(leaf, g, create_graph)
        post_hooks = state.post_accumulate_hooks.get(id(leaf))
        if post_hooks:
            for hook in tuple(post_hooks):
                hook(leaf)


def _own_array(g, leaf, seen_arrays):
    if type(g) is not np.ndarray:
        g = np.asarray(g)
    if g.dtype != leaf._data.dtype:
        g = g.astype(leaf._data.dtype)
    # A gradient can reach two leaves as one array (through `a + b`), be the caller's own seed
    # array, or a view: each leaf gets an array of its own.
    if g.base is not None or id(g) in seen_arrays:
        g = g.copy()
    seen_arrays.add(id(g))
    return g


def _accumulate_grad(leaf, g, create_graph):
    if create_graph:
        leaf.grad = g if leaf.grad is None else leaf.grad + g
    elif leaf.grad is None:
        leaf.grad = Tensor._wrap(g)
    elif leaf.grad.requires_grad:
        leaf.grad = leaf.grad + Tensor._wrap(g)
    else:
        np.add(leaf.grad._data, g, out=leaf.grad._data)


def _accumulate(grads, key, g):
    previous = grads.get(key)
    grads[key] = g if previous is None else previous + g


def graph_nodes(roots):
    """Every node reachable from `roots` (iteratively: depth is unlimited), oldest first, which is
    a topological order: each node comes after the nodes it takes inputs from."""
    seen = set(roots)
    stack = list(roots)
    while stack:
        node = stack.pop()
        for parent in node.next:
            if type(parent) is Node and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return sorted(seen, key=_seq)


def _nodes_leading_to(roots, target_keys):
    """The nodes from which some target can be reached; backward skips the rest."""
    wanted = set()
    for node in graph_nodes(roots):  # oldest first, so parents are decided before children
        for parent in node.next:
            if parent is not None and (parent in target_keys or parent in wanted):
                wanted.add(node)
                break
    return wanted


def _seq(node):
    return node.seq


def _node_hooks(node, g, create_graph, accumulate):
    """A non-leaf's gradient is complete: run its tensor's hooks, and keep it if retain_grad()."""
    if node.pre_hooks:
        g = _run_hooks(node.pre_hooks, g, create_graph)
    if node.retained is not None and accumulate:
        _retain(node, g, create_graph)
    return g


def _run_hooks(hooks, g, create_graph):
    wrapped = g if isinstance(g, Tensor) else Tensor._wrap(g)
    for hook in hooks:
        result = hook(wrapped)
        if result is not None:
            if not isinstance(result, Tensor):
                raise TypeError(
                    f"a gradient hook must return a Tensor or None, not {type(result).__name__}"
                )
            if result.shape != wrapped.shape:
                raise RuntimeError(
                    f"a gradient hook returned shape {tuple(result.shape)} for a gradient of shape "
                    f"{tuple(wrapped.shape)}"
                )
            wrapped = result
    return wrapped if create_graph else wrapped._data


def _retain(node, g, create_graph):
    tensor = node.retained()
    if tensor is None:
        return
    value = g if create_graph else Tensor._wrap(np.array(g))
    tensor.grad = value if tensor.grad is None else tensor.grad + value


def _check_versions(node):
    op = node.op
    for name, x in zip(op.inputs, node.saved):
        if isinstance(x, Tensor) and x._version > node.seq:
            raise RuntimeError(
                f"a tensor that {op.name} saved for backward (its input {name!r}, shape "
                f"{tuple(x.shape)}) was modified in place after it was used; backward would use the "
                "new values. Modify a copy (x.clone()) or do the in-place change after backward"
            )
    if node.out_modified and node.out is not None:
        raise RuntimeError(
            f"the output of {op.name} was modified in place after it was computed, but {op.name}'s "
            "backward needs it; modify a copy instead"
        )


def _check_finite(node, i, gi):
    data = gi._data if isinstance(gi, Tensor) else gi
    if np.all(np.isfinite(data)):
        return
    bad = "nan" if np.isnan(data).any() else "inf"
    where = ""
    if node.trace is not None:
        frame = node.trace
        where = f", created at {frame.filename}:{frame.lineno}" + (
            f" ({frame.line.strip()})" if frame.line else ""
        )
    derivative = node.op.derivatives[i]
    raise AnomalyError(
        f"detect_anomaly: the backward of {node.op.name}{where} produced {bad} in the gradient of "
        f"its input {node.op.inputs[i]!r} (local derivative {derivative.formula})"
    )
