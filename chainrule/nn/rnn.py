"""Recurrent layers (RNN, LSTM, GRU and their cells) with PyTorch's constructors, parameter names,
initialisation, shapes and equations.

A layer's input projection, x @ W_ih.T + b_ih, is one matrix product over all time steps; what is
left per step is the hidden projection and the gates, so the graph has a few nodes per step and
the engine differentiates it like any other.
"""

import math
import warnings

from ..engine import dtypes
from ..engine.device import check_device
from ..ops.creation import empty, zeros
from ..ops.recurrent import gru_scan, lstm_scan, rnn_scan
from ..ops.shape import cat, stack
from . import functional as F
from . import init
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _float_dtype(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def _scan(mode, x_proj, h, c, w_hh, b_hh, reverse=False):
    """The recurrence over every step of x_proj (the input projections): (the hidden states,
    the last hidden state, the last cell state or None)."""
    n = h.shape[-1]
    last = 0 if reverse else -1
    if mode == "LSTM":
        steps = lstm_scan(x_proj, h, c, w_hh, b_hh, reverse)
        return steps[..., :n], steps[last, :, :n], steps[last, :, n : 2 * n]
    if mode == "GRU":
        steps = gru_scan(x_proj, h, w_hh, b_hh, reverse)
        return steps[..., :n], steps[last, :, :n], None
    nonlinearity = "tanh" if mode == "RNN_TANH" else "relu"
    steps = rnn_scan(x_proj, h, w_hh, b_hh, nonlinearity, reverse)
    return steps, steps[last], None


def _activation(nonlinearity):
    if nonlinearity == "tanh":
        return F.tanh
    if nonlinearity == "relu":
        return F.relu
    raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


# ---- the layers ---------------------------------------------------------------------------------


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters of every layer and direction, and the loop."""

    def __init__(
        self,
        mode,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_device(type(self).__name__, device)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"{type(self).__name__}: {name} must be a positive int, got {value!r}"
                )
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                f"{type(self).__name__}: num_layers must be an int of at least 1, got {num_layers!r}"
            )
        if isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                f"{type(self).__name__}: dropout should be a number in range [0, 1] representing "
                f"the probability of an element being zeroed, got {dropout!r}"
            )
        if proj_size:
            raise NotImplementedError(
                "LSTM(proj_size=...) is not implemented in chainrule; follow the LSTM with an "
                "nn.Linear(hidden_size, proj_size) instead"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.proj_size = 0
        dtype = _float_dtype(dtype)
        gate_size = _GATES[mode] * hidden_size
        directions = 2 if bidirectional else 1
        # Registered in PyTorch's order, so that parameters() and state_dict() list the same names.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
                shapes = [(gate_size, layer_input), (gate_size, hidden_size)]
                if bias:
                    names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
                    shapes += [(gate_size,), (gate_size,)]
                for name, shape in zip(names, shapes):
                    self.register_parameter(name, Parameter(empty(*shape, dtype=dtype)))
                if not bias:
                    self.register_parameter(f"bias_ih_l{layer}{suffix}", None)
                    self.register_parameter(f"bias_hh_l{layer}{suffix}", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    @property
    def _flat_weights_names(self):
        return [name for name, p in self._parameters.items() if p is not None]

    @property
    def all_weights(self):
        """The parameters of each layer and direction: [[w_ih, w_hh, b_ih, b_hh], ...]."""
        per = 4 if self.bias else 2
        flat = [getattr(self, name) for name in self._flat_weights_names]
        return [flat[i : i + per] for i in range(0, len(flat), per)]

    def flatten_parameters(self):
        """PyTorch compacts cuDNN's weight buffer here; on the CPU there is nothing to do."""

    def _layer_weights(self, layer, suffix):
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
        b_ih = getattr(self, f"bias_ih_l{layer}{suffix}")
        b_hh = getattr(self, f"bias_hh_l{layer}{suffix}")
        return w_ih, w_hh, b_ih, b_hh

    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's argument names
        name = type(self).__name__
        if not hasattr(input, "ndim") or input.ndim not in (2, 3):
            shape = tuple(getattr(input, "shape", ()))
            raise ValueError(
                f"{name}: Expected input to be 2D (unbatched) or 3D (batched), got input of shape {shape}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.shape[-1]} (input of shape {tuple(input.shape)})"
            )
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        if x.dtype != self.weight_ih_l0.dtype:
            raise TypeError(
                f"{name}: input has dtype {x.dtype} but the layer's weights are "
                f"{self.weight_ih_l0.dtype}; convert one with .to(...)"
            )
        is_lstm = self.mode == "LSTM"
        h0, c0 = self._initial_states(hx, x, batched, is_lstm)
        directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                weights = self._layer_weights(layer, ("", "_reverse")[direction])
                c = c0[index] if is_lstm else None
                out, h, c = self._run_direction(x, h0[index], c, weights, direction == 1)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if directions == 1 else cat(outputs, -1)
        output = x
        if batched and self.batch_first:
            output = output.transpose(0, 1)
        h_n = stack(h_n)
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
        if is_lstm:
            c_n = stack(c_n)
            return output, (h_n, c_n if batched else c_n.squeeze(1))
        return output, h_n

    def _initial_states(self, hx, x, batched, is_lstm):
        name = type(self).__name__
        expected = (
            self.num_layers * (2 if self.bidirectional else 1),
            x.shape[1],
            self.hidden_size,
        )
        if hx is None:
            h0 = zeros(*expected, dtype=x.dtype)
            return h0, h0 if is_lstm else None
        if is_lstm:
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            states = list(hx)
        else:
            states = [hx]
        for i, state in enumerate(states):
            label = ("h_0", "c_0")[i]
            if state.ndim != (3 if batched else 2):
                raise ValueError(
                    f"{name}: for {'batched 3-D' if batched else 'unbatched 2-D'} input, {label} "
                    f"should also be {3 if batched else 2}-D but got {state.ndim}-D tensor of "
                    f"shape {tuple(state.shape)}"
                )
            if not batched:
                states[i] = state = state.unsqueeze(1)
            if tuple(state.shape) != expected:
                shown, got = expected, tuple(state.shape)
                if not batched:
                    shown, got = (expected[0], expected[2]), (got[0], got[2])
                raise ValueError(f"{name}: Expected {label} of size {shown}, got {got}")
        return states[0], states[1] if is_lstm else None

    def _run_direction(self, x, h, c, weights, reverse):
        """One layer in one direction over the whole sequence: (outputs, last h, last c)."""
        w_ih, w_hh, b_ih, b_hh = weights
        return _scan(self.mode, F.linear(x, w_ih, b_ih), h, c, w_hh, b_hh, reverse)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu), as PyTorch's
    nn.RNN, with its arguments; forward(input, h_0=None) returns (output, h_n)."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        _activation(nonlinearity)
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            mode,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory, as PyTorch's nn.LSTM (gates i, f, g, o in that order);
    forward(input, (h_0, c_0)=None) returns (output, (h_n, c_n))."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
    ):
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
        )


class GRU(RNNBase):
    """Gated recurrent unit, as PyTorch's nn.GRU (gates r, z, n in that order; the reset gate
    multiplies W_hn h + b_hn); forward(input, h_0=None) returns (output, h_n)."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )


# ---- cells --------------------------------------------------------------------------------------


class RNNCellBase(Module):
    def __init__(self, input_size, hidden_size, bias, gates, device=None, dtype=None):
        super().__init__()
        check_device(type(self).__name__, device)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        dtype = _float_dtype(dtype)
        size = gates * hidden_size
        self.weight_ih = Parameter(empty(size, input_size, dtype=dtype))
        self.weight_hh = Parameter(empty(size, hidden_size, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(size, dtype=dtype))
            self.bias_hh = Parameter(empty(size, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def _step(self, mode, x, h, c=None):
        """The layer's recurrence run for one step: (h', c' or None)."""
        x_proj = F.linear(x, self.weight_ih, self.bias_ih).unsqueeze(0)
        _, h, c = _scan(mode, x_proj, h, c, self.weight_hh, self.bias_hh)
        return h, c

    def _check(self, input, hx):  # noqa: A002
        name = type(self).__name__
        if not hasattr(input, "ndim") or input.ndim not in (1, 2):
            shape = tuple(getattr(input, "shape", ()))
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got input of shape {shape}")
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected "
                f"{self.input_size} (input of shape {tuple(input.shape)})"
            )
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        states = hx if isinstance(hx, tuple | list) else (hx,)
        out = []
        for state in states:
            if state is None:
                state = zeros(x.shape[0], self.hidden_size, dtype=x.dtype)
            else:
                if state.ndim != input.ndim:
                    raise ValueError(
                        f"{name}: Expected hidden to be {input.ndim}D to match the input, got "
                        f"hidden of shape {tuple(state.shape)}"
                    )
                state = state if batched else state.unsqueeze(0)
                if tuple(state.shape) != (x.shape[0], self.hidden_size):
                    raise ValueError(
                        f"{name}: hidden of shape {tuple(state.shape)} does not fit input of shape "
                        f"{tuple(input.shape)} (expected ({x.shape[0]}, {self.hidden_size}))"
                    )
            out.append(state)
        return x, out, batched

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """One step of nn.RNN: forward(input, hx=None) returns h'."""

    def __init__(
        self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None
    ):
        _activation(nonlinearity)
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):  # noqa: A002
        x, (h,), batched = self._check(input, hx)
        h, _ = self._step("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", x, h)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One step of nn.LSTM: forward(input, (h, c)=None) returns (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        if hx is not None and (not isinstance(hx, tuple | list) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        x, (h, c), batched = self._check(input, hx if hx is not None else (None, None))
        h, c = self._step("LSTM", x, h, c)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One step of nn.GRU: forward(input, hx=None) returns h'."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        x, (h,), batched = self._check(input, hx)
        h, _ = self._step("GRU", x, h)
        return h if batched else h.squeeze(0)
