"""A recurrent layer's time loop as one op (an Elman RNN's, an LSTM's, a GRU's), with
backpropagation through time as its derivative.

Written as per-step ops, a sequence of T steps records some fifteen nodes per step, and the engine's
per-node work dominates a small layer's step. As one node, the forward is a loop of one matrix
product and a few array expressions per step, and the backward the same loop run backwards.

Each op's input `x_proj` is the input projection x @ W_ih.T + b_ih of every step, computed before
the loop in one matrix product. The output holds, per step, the hidden state followed by what
backward needs (the LSTM's cell state and gates, the GRU's gates and hidden projection); the layer
slices off what it returns. Every input's gradient comes from one pass backwards through time:
the first input's rule runs it and keeps the result in `scan` (a constant input, made per call and
dropped with the node's other saved values), and the other inputs' rules take theirs from there.
Under create_graph the loop is recorded step by step from the saved inputs and differentiated by
the engine, so higher derivatives are the engine's own.
"""

import numpy as np

from ..engine.autograd import enable_grad, grad
from ..engine.op import Op, apply, vjp
from ..engine.tensor import Tensor
from .elementwise import relu, sigmoid, tanh
from .nn import linear
from .shape import cat, stack


class Scan:
    """Per call: the gradients of all inputs, computed once for the output gradient `g`."""

    __slots__ = ("g", "grads")

    def __init__(self):
        self.g = self.grads = None


# ---- LSTM: out[t] = [h, c, i, f, g, o] ----------------------------------------------------------


def _lstm(x_proj, h0, c0, w_hh, b_hh, scan, reverse):
    steps, batch, gates = x_proj.shape
    n = gates // 4
    out = np.empty((steps, batch, 6 * n), dtype=x_proj.dtype)
    pre_all = x_proj if b_hh is None else x_proj + b_hh
    w = np.ascontiguousarray(w_hh.T)  # h @ w runs faster on a contiguous matrix
    h, c = h0, c0
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf where the sigmoid is 0
        for t in _order(steps, reverse):
            pre = pre_all[t] + h @ w
            row = out[t]
            i, f, g, o = (row[:, k * n : (k + 1) * n] for k in range(2, 6))
            _sigmoid(pre[:, : 2 * n], row[:, 2 * n : 4 * n])
            np.tanh(pre[:, 2 * n : 3 * n], out=g)
            _sigmoid(pre[:, 3 * n :], o)
            c_new = row[:, n : 2 * n]
            np.multiply(f, c, out=c_new)
            c_new += i * g
            c = c_new
            h = row[:, :n]
            np.tanh(c, out=h)
            h *= o
    return out


def _sigmoid(x, out):
    """1 / (1 + exp(-x)), as PyTorch computes it on the CPU; several times faster than
    scipy.special.expit on small arrays."""
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


def _lstm_backward(g, x_proj, h0, c0, w_hh, b_hh, out, reverse):
    steps, batch = out.shape[0], out.shape[1]
    n = w_hh.shape[1]
    c_prev = _previous_states(c0, out[:, :, n : 2 * n], reverse)
    from_gates = _gate_output_grads(g[:, :, 2 * n :], out[:, :, 2 * n :], n)
    d_pre = np.empty((steps, batch, 4 * n), dtype=out.dtype)
    dh = np.zeros_like(h0)
    dc = np.zeros_like(c0)
    # Step by step on arrays of one step, which stay in cache (whole-sequence passes cost more).
    for t in _order(steps, not reverse):
        row, d = out[t], d_pre[t]
        i, f, gg, o = (row[:, k * n : (k + 1) * n] for k in range(2, 6))
        d_i, d_f, d_g, d_o = (d[:, k * n : (k + 1) * n] for k in range(4))
        dh += g[t, :, :n]
        dc += g[t, :, n : 2 * n]
        tanh_c = np.tanh(row[:, n : 2 * n])
        through_h = tanh_c * tanh_c
        np.subtract(1, through_h, out=through_h)
        through_h *= o
        through_h *= dh
        dc += through_h
        # each gate's pre-activation gradient: what multiplies it, times the gate's slope
        np.multiply(dc, gg, out=d_i)
        d_i *= i
        d_i -= d_i * i
        np.multiply(dc, c_prev[t], out=d_f)
        d_f *= f
        d_f -= d_f * f
        np.multiply(dc, i, out=d_g)
        d_g -= d_g * gg * gg
        np.multiply(dh, tanh_c, out=d_o)
        d_o *= o
        d_o -= d_o * o
        if from_gates is not None:
            d += from_gates[t]
        dc *= f
        dh = d @ w_hh
    h_prev = _previous_states(h0, out[:, :, :n], reverse)
    return _weight_grads(d_pre, dh, h_prev, b_hh, extra=(dc,))


def _gate_output_grads(g_gates, gates, n):
    """What reached the gates' own outputs, through their slopes; None when nothing did (the
    layer returns only h and c)."""
    if not g_gates.any():
        return None
    slope = gates * (1 - gates)
    slope[:, :, 2 * n : 3 * n] = 1 - gates[:, :, 2 * n : 3 * n] ** 2
    return g_gates * slope


# ---- GRU: out[t] = [h, r, z, n, W_hn h + b_hn] ---------------------------------------------------


def _gru(x_proj, h0, w_hh, b_hh, scan, reverse):
    steps, batch, gates = x_proj.shape
    n = gates // 3
    out = np.empty((steps, batch, 5 * n), dtype=x_proj.dtype)
    w = np.ascontiguousarray(w_hh.T)
    h = h0
    for t in _order(steps, reverse):
        x = x_proj[t]
        hidden = h @ w
        if b_hh is not None:
            hidden += b_hh
        row = out[t]
        r, z, cand = row[:, n : 2 * n], row[:, 2 * n : 3 * n], row[:, 3 * n : 4 * n]
        with np.errstate(over="ignore"):
            _sigmoid(x[:, : 2 * n] + hidden[:, : 2 * n], row[:, n : 3 * n])
        row[:, 4 * n :] = hidden[:, 2 * n :]
        np.tanh(x[:, 2 * n :] + r * hidden[:, 2 * n :], out=cand)
        # (h - n) * z + n, in PyTorch's order of operations
        np.multiply(h - cand, z, out=row[:, :n])
        row[:, :n] += cand
        h = row[:, :n]
    return out


def _gru_backward(g, x_proj, h0, w_hh, b_hh, out, reverse):
    steps, batch = out.shape[0], out.shape[1]
    n = w_hh.shape[1]
    # The pre-activations' gradients, as the hidden projection h W_hh^T + b_hh sees them; the
    # input projection's differ only in the candidate's third (kept apart in d_cand).
    d_hidden = np.empty((steps, batch, 3 * n), dtype=out.dtype)
    d_cand_all = np.empty((steps, batch, n), dtype=out.dtype)
    h_prev = _previous_states(h0, out[:, :, :n], reverse)
    from_gates = g[:, :, n:].any()
    dh = np.zeros_like(h0)
    for t in _order(steps, not reverse):
        row, grow, dhid = out[t], g[t], d_hidden[t]
        r, z, cand, hidden_n = (row[:, k * n : (k + 1) * n] for k in range(1, 5))
        d_r, d_z, d_hn = (dhid[:, k * n : (k + 1) * n] for k in range(3))
        d_cand = d_cand_all[t]
        dh += grow[:, :n]
        through_z = dh * z  # h' = (h - n) z + n: what reaches h directly
        np.subtract(dh, through_z, out=d_cand)
        if from_gates:
            d_cand += grow[:, 3 * n : 4 * n]
        d_cand -= d_cand * cand * cand
        np.multiply(d_cand, hidden_n, out=d_r)
        if from_gates:
            d_r += grow[:, n : 2 * n]
        d_r *= r
        d_r -= d_r * r
        np.subtract(h_prev[t], cand, out=d_z)
        d_z *= dh
        if from_gates:
            d_z += grow[:, 2 * n : 3 * n]
        d_z *= z
        d_z -= d_z * z
        np.multiply(d_cand, r, out=d_hn)
        if from_gates:
            d_hn += grow[:, 4 * n :]
        dh = through_z
        dh += dhid @ w_hh
    grads = _weight_grads(d_hidden, dh, h_prev, b_hh)
    d_x = d_hidden.copy()
    d_x[:, :, 2 * n :] = d_cand_all
    return (d_x,) + grads[1:]


# ---- Elman RNN: out[t] = h ----------------------------------------------------------------------


def _rnn(x_proj, h0, w_hh, b_hh, scan, nonlinearity, reverse):
    out = np.empty(x_proj.shape, dtype=x_proj.dtype)
    w = np.ascontiguousarray(w_hh.T)
    h = h0
    for t in _order(x_proj.shape[0], reverse):
        pre = x_proj[t] + h @ w
        if b_hh is not None:
            pre += b_hh
        h = out[t]
        if nonlinearity == "tanh":
            np.tanh(pre, out=h)
        else:
            np.maximum(pre, 0, out=h)
    return out


def _rnn_backward(g, x_proj, h0, w_hh, b_hh, out, nonlinearity, reverse):
    d_pre = np.empty_like(out)
    dh = np.zeros_like(h0)
    for t in _order(out.shape[0], not reverse):
        h = out[t]
        dh += g[t]
        if nonlinearity == "tanh":
            np.multiply(dh, 1 - h * h, out=d_pre[t])
        else:
            np.multiply(dh, h > 0, out=d_pre[t])
        dh = d_pre[t] @ w_hh
    h_prev = _previous_states(h0, out, reverse)
    return _weight_grads(d_pre, dh, h_prev, b_hh)


# ---- shared -------------------------------------------------------------------------------------


def _order(steps, reverse):
    return range(steps - 1, -1, -1) if reverse else range(steps)


def _previous_states(h0, hs, reverse):
    """The state each step starts from: h0 for the first step taken, then the step before's."""
    if reverse:
        return np.concatenate([hs[1:], h0[None]])
    return np.concatenate([h0[None], hs[:-1]])


def _weight_grads(d_pre, dh0, h_prev, b_hh, extra=()):
    """The gradients that follow from the pre-activations' (d_pre, the hidden projection's):
    (x_proj, h0, *extra, w_hh, b_hh)."""
    gates = d_pre.shape[-1]
    d_w = d_pre.reshape(-1, gates).T @ h_prev.reshape(-1, h_prev.shape[-1])
    d_b = None if b_hh is None else d_pre.sum((0, 1))
    return (d_pre, dh0, *extra, d_w, d_b)


# Step by step with the engine's ops: what the loop computes, for create_graph to differentiate.


def _lstm_steps(x_proj, h0, c0, w_hh, b_hh, reverse):
    n = h0.shape[-1]
    h, c, rows = h0, c0, []
    for t in _order(x_proj.shape[0], reverse):
        pre = x_proj[t] + linear(h, w_hh, b_hh)
        i, f, g, o = (
            sigmoid(pre[:, :n]),
            sigmoid(pre[:, n : 2 * n]),
            tanh(pre[:, 2 * n : 3 * n]),
            sigmoid(pre[:, 3 * n :]),
        )
        c = f * c + i * g
        h = o * tanh(c)
        rows.append(cat([h, c, i, f, g, o], -1))
    return _in_time_order(rows, reverse)


def _gru_steps(x_proj, h0, w_hh, b_hh, reverse):
    n = h0.shape[-1]
    h, rows = h0, []
    for t in _order(x_proj.shape[0], reverse):
        x, hidden = x_proj[t], linear(h, w_hh, b_hh)
        r = sigmoid(x[:, :n] + hidden[:, :n])
        z = sigmoid(x[:, n : 2 * n] + hidden[:, n : 2 * n])
        cand = tanh(x[:, 2 * n :] + r * hidden[:, 2 * n :])
        h = (h - cand) * z + cand
        rows.append(cat([h, r, z, cand, hidden[:, 2 * n :]], -1))
    return _in_time_order(rows, reverse)


def _rnn_steps(x_proj, h0, w_hh, b_hh, nonlinearity, reverse):
    activation = tanh if nonlinearity == "tanh" else relu
    h, rows = h0, []
    for t in _order(x_proj.shape[0], reverse):
        h = activation(x_proj[t] + linear(h, w_hh, b_hh))
        rows.append(h)
    return _in_time_order(rows, reverse)


def _in_time_order(rows, reverse):
    return stack(rows[::-1] if reverse else rows)


def _rules(names, backward, steps):
    """One VJP per differentiable input, all served by one run of `backward` per gradient."""
    count = len(names)

    def rule_for(index):
        def rule(g, *args, **params):
            inputs, scan, out = args[:count], args[count], args[count + 1]
            if scan.g is not g:
                if isinstance(g, Tensor):
                    scan.grads = _recorded_grads(steps, inputs, g, params)
                else:
                    scan.grads = backward(g, *inputs, out, **params)
                scan.g = g
            return scan.grads[index]

        return rule

    call = f"({', '.join(['g', *names, 'out', 'scan'])})"
    return {
        name: vjp(f"{backward.__name__.lstrip('_')}{call}[{k}]", rule_for(k))
        for k, name in enumerate(names)
    }


def _recorded_grads(steps, inputs, g, params):
    wanted = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    with enable_grad():
        out = steps(*inputs, **params)
        found = dict(
            zip(map(id, wanted), grad(out, wanted, g, create_graph=True, allow_unused=True))
        )
    return tuple(found.get(id(x)) for x in inputs)


_LSTM_INPUTS = ("x_proj", "h0", "c0", "w_hh", "b_hh")
_GRU_INPUTS = ("x_proj", "h0", "w_hh", "b_hh")

LSTM = Op(
    "lstm",
    _lstm,
    (*_LSTM_INPUTS, "scan"),
    {**_rules(_LSTM_INPUTS, _lstm_backward, _lstm_steps), "scan": None},
    formula="lstm(x_proj, h0, c0, w_hh, b_hh, scan)",
    params=("reverse",),
)
GRU = Op(
    "gru",
    _gru,
    (*_GRU_INPUTS, "scan"),
    {**_rules(_GRU_INPUTS, _gru_backward, _gru_steps), "scan": None},
    formula="gru(x_proj, h0, w_hh, b_hh, scan)",
    params=("reverse",),
)
RNN = Op(
    "rnn",
    _rnn,
    (*_GRU_INPUTS, "scan"),
    {**_rules(_GRU_INPUTS, _rnn_backward, _rnn_steps), "scan": None},
    formula="rnn(x_proj, h0, w_hh, b_hh, scan)",
    params=("nonlinearity", "reverse"),
)


def lstm_scan(x_proj, h0, c0, w_hh, b_hh, reverse=False):
    """Every step of an LSTM layer (last to first if `reverse`): (T, B, 6H) holding per step
    [h, c, i, f, g, o]."""
    return apply(LSTM, (x_proj, h0, c0, w_hh, b_hh, Scan()), {"reverse": reverse})


def gru_scan(x_proj, h0, w_hh, b_hh, reverse=False):
    """Every step of a GRU layer: (T, B, 5H) holding per step [h, r, z, n, W_hn h + b_hn]."""
    return apply(GRU, (x_proj, h0, w_hh, b_hh, Scan()), {"reverse": reverse})


def rnn_scan(x_proj, h0, w_hh, b_hh, nonlinearity, reverse=False):
    """Every step of an Elman RNN layer: (T, B, H), the hidden states."""
    params = {"nonlinearity": nonlinearity, "reverse": reverse}
    return apply(RNN, (x_proj, h0, w_hh, b_hh, Scan()), params)
