"""nn.RNN, nn.LSTM, nn.GRU and their cells against torch.nn in float64: the same weights (copied
through load_state_dict) give the same outputs, final states, input and initial-state gradients
and every parameter's gradient (rtol 1e-10), for every constructor option and input layout."""

import numpy as np
import pytest
import torch

import chainrule as cr

RTOL, ATOL = 1e-10, 1e-12
INPUT, HIDDEN, STEPS, BATCH = 5, 4, 6, 3

OPTIONS = [
    {},
    {"num_layers": 2},
    {"num_layers": 2, "bidirectional": True},
    {"bidirectional": True},
    {"bias": False},
    {"batch_first": True},
    {"num_layers": 3, "batch_first": True, "bidirectional": True},
]
LAYERS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]


def _pair(name, kwargs):
    theirs = getattr(torch.nn, name)(INPUT, HIDDEN, **kwargs).double()
    ours = getattr(cr.nn, name)(INPUT, HIDDEN, **kwargs, dtype=cr.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _close(ours, theirs, what):
    assert tuple(ours.shape) == tuple(theirs.shape), what
    np.testing.assert_allclose(
        ours.detach().numpy(), theirs.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=what
    )


def _leaf_pair(array):
    return cr.tensor(array, requires_grad=True), torch.tensor(array, requires_grad=True)


def _run_both(ours, theirs, is_lstm, batched, batch_first, give_states, seed):
    rng = np.random.default_rng(seed)
    layout = (BATCH, STEPS) if batch_first else (STEPS, BATCH)
    x = rng.standard_normal((*layout, INPUT) if batched else (STEPS, INPUT))
    states = theirs.num_layers * (2 if theirs.bidirectional else 1)
    state_shape = (states, BATCH, HIDDEN) if batched else (states, HIDDEN)
    leaves = [_leaf_pair(x)]
    if give_states:
        leaves += [_leaf_pair(rng.standard_normal(state_shape)) for _ in range(2 if is_lstm else 1)]
    args_ours = [leaves[0][0]]
    args_theirs = [leaves[0][1]]
    if give_states:
        hx = [p[0] for p in leaves[1:]], [p[1] for p in leaves[1:]]
        args_ours.append(tuple(hx[0]) if is_lstm else hx[0][0])
        args_theirs.append(tuple(hx[1]) if is_lstm else hx[1][0])
    out_ours, state_ours = ours(*args_ours)
    out_theirs, state_theirs = theirs(*args_theirs)
    results_ours = [out_ours, *(state_ours if is_lstm else [state_ours])]
    results_theirs = [out_theirs, *(state_theirs if is_lstm else [state_theirs])]
    return leaves, results_ours, results_theirs, rng


@pytest.mark.parametrize("name, layer_kwargs", LAYERS, ids=lambda v: str(v))
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("give_states", [True, False], ids=["h0", "no h0"])
def test_layer_matches_pytorch_outputs_and_every_gradient(
    name, layer_kwargs, options, batched, give_states
):
    ours, theirs = _pair(name, {**layer_kwargs, **options})
    is_lstm = name == "LSTM"
    leaves, results_ours, results_theirs, rng = _run_both(
        ours, theirs, is_lstm, batched, options.get("batch_first", False), give_states, seed=3
    )
    weights = [rng.standard_normal(t.shape) for t in results_theirs]
    sum((r * cr.tensor(w)).sum() for r, w in zip(results_ours, weights)).backward()
    sum((r * torch.tensor(w)).sum() for r, w in zip(results_theirs, weights)).backward()
    for i, (r_ours, r_theirs) in enumerate(zip(results_ours, results_theirs)):
        _close(r_ours, r_theirs, ["output", "h_n", "c_n"][i])
    for i, (leaf_ours, leaf_theirs) in enumerate(leaves):
        _close(leaf_ours.grad, leaf_theirs.grad, ["input.grad", "h_0.grad", "c_0.grad"][i])
    grads_theirs = dict(theirs.named_parameters())
    for param_name, p in ours.named_parameters():
        _close(p.grad, grads_theirs[param_name].grad, f"{param_name}.grad")


@pytest.mark.parametrize("name, layer_kwargs", LAYERS, ids=lambda v: str(v))
def test_parameter_names_shapes_and_order_match_pytorch(name, layer_kwargs):
    kwargs = {**layer_kwargs, "num_layers": 2, "bidirectional": True}
    ours, theirs = _pair(name, kwargs)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    no_bias = getattr(cr.nn, name)(INPUT, HIDDEN, bias=False, **layer_kwargs)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert no_bias.bias_ih_l0 is None
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_initialisation_is_uniform_within_one_over_sqrt_hidden(name):
    hidden = 64
    cr.manual_seed(0)
    layer = getattr(cr.nn, name)(32, hidden)
    values = np.concatenate([p.detach().numpy().ravel() for p in layer.parameters()])
    bound = 1 / np.sqrt(hidden)
    assert values.min() >= -bound and values.max() <= bound
    # Uniform on [-b, b]: mean 0, variance b^2 / 3, and the extremes close to the bounds.
    assert abs(values.mean()) < 0.01 * bound
    assert abs(values.var() - bound**2 / 3) < 0.03 * bound**2
    assert values.min() < -0.99 * bound and values.max() > 0.99 * bound


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("give_state", [True, False], ids=["hx", "no hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_cell_matches_pytorch_outputs_and_every_gradient(name, batched, give_state, bias):
    theirs = getattr(torch.nn, name)(INPUT, HIDDEN, bias=bias).double()
    ours = getattr(cr.nn, name)(INPUT, HIDDEN, bias=bias, dtype=cr.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(5)
    shape = (BATCH, INPUT) if batched else (INPUT,)
    state_shape = (BATCH, HIDDEN) if batched else (HIDDEN,)
    is_lstm = name == "LSTMCell"
    leaves = [_leaf_pair(rng.standard_normal(shape))]
    if give_state:
        leaves += [_leaf_pair(rng.standard_normal(state_shape)) for _ in range(2 if is_lstm else 1)]
    args = [[p[i] for p in leaves[:1]] for i in (0, 1)]
    if give_state:
        for i in (0, 1):
            states = [p[i] for p in leaves[1:]]
            args[i].append(tuple(states) if is_lstm else states[0])
    out_ours, out_theirs = ours(*args[0]), theirs(*args[1])
    out_ours = list(out_ours) if is_lstm else [out_ours]
    out_theirs = list(out_theirs) if is_lstm else [out_theirs]
    weights = [rng.standard_normal(t.shape) for t in out_theirs]
    sum((r * cr.tensor(w)).sum() for r, w in zip(out_ours, weights)).backward()
    sum((r * torch.tensor(w)).sum() for r, w in zip(out_theirs, weights)).backward()
    for r_ours, r_theirs in zip(out_ours, out_theirs):
        _close(r_ours, r_theirs, "output")
    for leaf_ours, leaf_theirs in leaves:
        _close(leaf_ours.grad, leaf_theirs.grad, "input/state gradient")
    grads_theirs = dict(theirs.named_parameters())
    for param_name, p in ours.named_parameters():
        _close(p.grad, grads_theirs[param_name].grad, f"{param_name}.grad")


def test_dropout_between_layers_only_in_training():
    layer = cr.nn.LSTM(INPUT, HIDDEN, num_layers=2, dropout=0.5)
    x = cr.randn(STEPS, BATCH, INPUT)
    cr.manual_seed(1)
    first, _ = layer(x)
    cr.manual_seed(2)
    second, _ = layer(x)
    assert not np.allclose(first.detach().numpy(), second.detach().numpy())
    layer.eval()
    a, _ = layer(x)
    b, _ = layer(x)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        cr.nn.GRU(INPUT, HIDDEN, dropout=0.2)


def test_float32_layer_matches_pytorch():
    theirs = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True)
    ours = cr.nn.LSTM(INPUT, HIDDEN, batch_first=True)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((BATCH, STEPS, INPUT)).astype(np.float32)
    out_ours, _ = ours(cr.tensor(x))
    out_theirs, _ = theirs(torch.tensor(x))
    assert out_ours.dtype == cr.float32
    np.testing.assert_allclose(
        out_ours.detach().numpy(), out_theirs.detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_bad_inputs_and_arguments_name_the_problem():
    lstm = cr.nn.LSTM(INPUT, HIDDEN, num_layers=2)
    with pytest.raises(ValueError, match=r"Expected input to be 2D \(unbatched\) or 3D"):
        lstm(cr.randn(STEPS))
    with pytest.raises(ValueError, match="input_size. Expected 5, got 7"):
        lstm(cr.randn(STEPS, BATCH, 7))
    with pytest.raises(ValueError, match=r"Expected h_0 of size \(2, 3, 4\), got \(1, 3, 4\)"):
        lstm(
            cr.randn(STEPS, BATCH, INPUT), (cr.zeros(1, BATCH, HIDDEN), cr.zeros(2, BATCH, HIDDEN))
        )
    with pytest.raises(ValueError, match="h_0 should also be 2-D"):
        cr.nn.GRU(INPUT, HIDDEN)(cr.randn(STEPS, INPUT), cr.zeros(1, 1, HIDDEN))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        lstm(cr.randn(STEPS, BATCH, INPUT), cr.zeros(2, BATCH, HIDDEN))
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        cr.nn.RNN(INPUT, HIDDEN, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        cr.nn.GRU(INPUT, HIDDEN, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        cr.nn.RNN(INPUT, 0)
    with pytest.raises(NotImplementedError, match="nn.Linear"):
        cr.nn.LSTM(INPUT, HIDDEN, proj_size=2)
    with pytest.raises(RuntimeError, match="no GPU backend"):
        cr.nn.LSTM(INPUT, HIDDEN, device="cuda")
    with pytest.raises(ValueError, match="inconsistent input_size: got 7 expected 5"):
        cr.nn.GRUCell(INPUT, HIDDEN)(cr.randn(BATCH, 7))
    with pytest.raises(TypeError, match="float32 but the layer's weights are float64"):
        cr.nn.RNN(INPUT, HIDDEN, dtype=cr.float64)(cr.randn(STEPS, BATCH, INPUT))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_second_derivatives_match_pytorch(name, bidirectional):
    """create_graph=True through the layer: the gradient of a gradient, as PyTorch computes it."""
    ours, theirs = _pair(name, {"bidirectional": bidirectional})
    x_ours, x_theirs = _leaf_pair(np.random.default_rng(7).standard_normal((STEPS, 2, INPUT)))
    out_ours, _ = ours(x_ours)
    out_theirs, _ = theirs(x_theirs)
    g_ours = cr.autograd.grad((out_ours**2).sum(), [x_ours, ours.weight_hh_l0], create_graph=True)
    g_theirs = torch.autograd.grad(
        (out_theirs**2).sum(), [x_theirs, theirs.weight_hh_l0], create_graph=True
    )
    sum((g**2).sum() for g in g_ours).backward()
    sum((g**2).sum() for g in g_theirs).backward()
    for a, b in zip(g_ours, g_theirs):
        _close(a, b, "first derivative")
    _close(x_ours.grad, x_theirs.grad, "input.grad of the second derivative")
    grads_theirs = dict(theirs.named_parameters())
    for param_name, p in ours.named_parameters():
        _close(p.grad, grads_theirs[param_name].grad, f"{param_name}.grad")
