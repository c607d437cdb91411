"""cr.nn layers and losses against torch.nn: the same weights (copied through state_dict /
load_state_dict) give the same outputs, parameter gradients and input gradients, in float64 and
float32; conv2d and max_pool2d also to second order (gradgradcheck)."""

import numpy as np
import pytest
import torch
from conftest import assert_close

import chainrule as cr
from chainrule import nn

F = nn.functional
DTYPES = {"float64": (cr.float64, torch.float64), "float32": (cr.float32, torch.float32)}


def _copy_weights(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _compare_module(make, x, dtype_name, integer_input=False, seed=0):
    """Build the layer in both libraries, share the weights, run forward and backward with a random
    upstream gradient, and compare the output, every parameter gradient and the input gradient."""
    cr_dtype, torch_dtype = DTYPES[dtype_name]
    theirs = make(torch).to(torch_dtype)
    ours = make(cr).to(cr_dtype)
    _copy_weights(ours, theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    if integer_input:
        xc, xt = cr.tensor(x), torch.tensor(x)
    else:
        x = x.astype(cr_dtype)
        xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yc, yt = ours(xc), theirs(xt)
    assert_close(yc, yt, f"{make.__name__} output", dtype=cr_dtype)
    g = np.random.default_rng(seed).standard_normal(yt.shape).astype(cr_dtype)
    yc.backward(cr.tensor(g))
    yt.backward(torch.tensor(g))
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name].grad, f"{make.__name__} grad of {name}", dtype=cr_dtype)
    if not integer_input:
        assert_close(xc.grad, xt.grad, f"{make.__name__} input grad", dtype=cr_dtype)


def _nn(m):
    return m.nn


LAYERS = {
    "linear": (lambda m: _nn(m).Linear(5, 3), (4, 5)),
    "linear_batched_no_bias": (lambda m: _nn(m).Linear(5, 3, bias=False), (2, 3, 5)),
    "conv_stride_padding": (lambda m: _nn(m).Conv2d(3, 6, 3, stride=2, padding=1), (2, 3, 9, 8)),
    "conv_dilation_groups": (
        lambda m: _nn(m).Conv2d(
            4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2
        ),
        (2, 4, 9, 10),
    ),
    "conv_depthwise_no_bias": (
        lambda m: _nn(m).Conv2d(4, 8, 3, padding=2, dilation=2, groups=4, bias=False),
        (2, 4, 6, 7),
    ),
    "conv_unbatched": (lambda m: _nn(m).Conv2d(2, 3, 2), (2, 5, 5)),
    "maxpool_2": (lambda m: _nn(m).MaxPool2d(2), (2, 3, 8, 6)),
    "maxpool_overlap_padding": (lambda m: _nn(m).MaxPool2d(3, 2, 1), (2, 3, 9, 7)),
    "maxpool_dilation": (
        lambda m: _nn(m).MaxPool2d(3, stride=1, padding=1, dilation=2),
        (1, 2, 7, 7),
    ),
    "flatten": (lambda m: _nn(m).Flatten(), (2, 3, 4, 5)),
    "flatten_dims": (lambda m: _nn(m).Flatten(0, 1), (2, 3, 4)),
    "layernorm": (lambda m: _nn(m).LayerNorm(5), (3, 4, 5)),
    "layernorm_2d": (lambda m: _nn(m).LayerNorm((4, 5), eps=1e-3), (3, 4, 5)),
    "layernorm_no_affine": (lambda m: _nn(m).LayerNorm(5, elementwise_affine=False), (3, 5)),
    "relu": (lambda m: _nn(m).ReLU(), (4, 6)),
    "softplus": (lambda m: _nn(m).Softplus(), (4, 6)),
    "softplus_beta_threshold": (lambda m: _nn(m).Softplus(beta=2.0, threshold=1.5), (4, 6)),
    "sigmoid": (lambda m: _nn(m).Sigmoid(), (4, 6)),
    "tanh": (lambda m: _nn(m).Tanh(), (4, 6)),
    "gelu": (lambda m: _nn(m).GELU(), (4, 6)),
    "gelu_tanh": (lambda m: _nn(m).GELU(approximate="tanh"), (4, 6)),
    "dropout_eval": (lambda m: _nn(m).Dropout(0.3).eval(), (4, 6)),
    "cnn": (
        lambda m: _nn(m).Sequential(
            _nn(m).Conv2d(1, 4, 3, padding=1),
            _nn(m).ReLU(),
            _nn(m).MaxPool2d(2),
            _nn(m).Conv2d(4, 6, 3),
            _nn(m).GELU(),
            _nn(m).Flatten(),
            _nn(m).Linear(6 * 2 * 2, 5),
            _nn(m).LayerNorm(5),
            _nn(m).Tanh(),
        ),
        (3, 1, 8, 8),
    ),
}


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("layer", LAYERS)
def test_layer_matches_torch_forward_and_gradients(layer, dtype_name):
    make, shape = LAYERS[layer]
    make.__name__ = layer
    x = np.random.default_rng(1).standard_normal(shape) * 2
    _compare_module(make, x, dtype_name)


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_embedding_with_padding_idx_matches_torch(dtype_name):
    def embedding(m):
        return _nn(m).Embedding(10, 4, padding_idx=2)

    index = np.array([[1, 2, 3], [2, 9, 1]])  # repeated rows collect every contribution
    _compare_module(embedding, index, dtype_name, integer_input=True)


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_embedding_rows_and_gradient_without_padding(dtype_name):
    def embedding(m):
        return _nn(m).Embedding(7, 3)

    _compare_module(embedding, np.array([0, 6, 6, 3]), dtype_name, integer_input=True)


# ---- losses ----------------------------------------------------------------------------------


def _loss_case(make, logits, target, dtype_name, grad_target=False):
    cr_dtype, torch_dtype = DTYPES[dtype_name]
    logits = logits.astype(cr_dtype)
    xc, xt = cr.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    if target.dtype.kind == "f":
        target = target.astype(cr_dtype)
    tc, tt = cr.tensor(target), torch.tensor(target)
    if grad_target:
        tc.requires_grad_(True)
        tt.requires_grad_(True)
    lc, lt = make(cr)(xc, tc), make(torch)(xt, tt)
    assert_close(lc, lt, "loss", dtype=cr_dtype)
    assert np.all(np.isfinite(lc.detach().numpy()))
    g = np.random.default_rng(3).standard_normal(lt.shape).astype(cr_dtype)
    lc.backward(cr.tensor(g))
    lt.backward(torch.tensor(g))
    assert_close(xc.grad, xt.grad, "input grad", dtype=cr_dtype)
    if grad_target:
        assert_close(tc.grad, tt.grad, "target grad", dtype=cr_dtype)


RNG = np.random.default_rng(7)
LOGITS = RNG.standard_normal((6, 4)) * 3
CLASSES = np.array([0, 3, 1, 1, 2, 3])
PROBS = RNG.dirichlet(np.ones(4), size=6)
WEIGHTS = np.array([0.5, 2.0, 1.0, 1.5])
BINARY = (RNG.random((6, 4)) > 0.5).astype(np.float64)


def _w(m, dtype_name):
    return m.tensor(WEIGHTS.astype(DTYPES[dtype_name][0]))


LOSSES = {
    "mse_mean": (lambda m, d: _nn(m).MSELoss(), LOGITS, PROBS, True),
    "mse_sum": (lambda m, d: _nn(m).MSELoss(reduction="sum"), LOGITS, PROBS, True),
    "mse_none": (lambda m, d: _nn(m).MSELoss(reduction="none"), LOGITS, PROBS, True),
    "l1_mean": (lambda m, d: _nn(m).L1Loss(), LOGITS, PROBS, True),
    "l1_none": (lambda m, d: _nn(m).L1Loss(reduction="none"), LOGITS, PROBS, True),
    "ce_indices": (lambda m, d: _nn(m).CrossEntropyLoss(), LOGITS, CLASSES, False),
    "ce_weight_smoothing_sum": (
        lambda m, d: _nn(m).CrossEntropyLoss(weight=_w(m, d), label_smoothing=0.1, reduction="sum"),
        LOGITS,
        CLASSES,
        False,
    ),
    "ce_weight_mean": (
        lambda m, d: _nn(m).CrossEntropyLoss(weight=_w(m, d)),
        LOGITS,
        CLASSES,
        False,
    ),
    "ce_ignore_index": (
        lambda m, d: _nn(m).CrossEntropyLoss(ignore_index=3),
        LOGITS,
        CLASSES,
        False,
    ),
    "ce_probabilities": (
        lambda m, d: _nn(m).CrossEntropyLoss(label_smoothing=0.2),
        LOGITS,
        PROBS,
        False,
    ),
    "ce_none": (lambda m, d: _nn(m).CrossEntropyLoss(reduction="none"), LOGITS, CLASSES, False),
    "bce_logits": (lambda m, d: _nn(m).BCEWithLogitsLoss(), LOGITS, BINARY, False),
    "bce_logits_weights": (
        lambda m, d: _nn(m).BCEWithLogitsLoss(
            weight=_w(m, d), pos_weight=_w(m, d) * 2, reduction="sum"
        ),
        LOGITS,
        BINARY,
        False,
    ),
}


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_matches_torch(loss, dtype_name):
    make, logits, target, grad_target = LOSSES[loss]
    _loss_case(lambda m: make(m, dtype_name), logits, target, dtype_name, grad_target)


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("loss", ["ce_indices", "ce_probabilities", "bce_logits", "ce_none"])
def test_losses_stay_finite_and_exact_for_logits_of_magnitude_1e4(loss, dtype_name):
    make, _, target, _ = LOSSES[loss]
    logits = np.sign(LOGITS) * 1e4 + LOGITS
    _loss_case(lambda m: make(m, dtype_name), logits, target, dtype_name)


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_ssr_is_torch_sum_of_squared_residuals(dtype_name):
    def ssr(m):
        return nn.SSR() if m is cr else torch.nn.MSELoss(reduction="sum")

    _loss_case(ssr, LOGITS, PROBS, dtype_name, grad_target=True)


def test_ssr_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"SSR: prediction has shape \(3,\).*\(3, 1\)"):
        nn.SSR()(cr.zeros(3), cr.zeros(3, 1))


# ---- second order through the new ops --------------------------------------------------------


def test_conv2d_second_order_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((1, 4, 5, 6)), requires_grad=True)
    w = cr.tensor(rng.standard_normal((4, 2, 3, 2)), requires_grad=True)
    b = cr.tensor(rng.standard_normal(4), requires_grad=True)

    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2) ** 2

    assert cr.gradgradcheck(fn, (x, w, b))


def test_max_pool2d_second_order_gradients_match_finite_differences():
    x = cr.tensor(np.random.default_rng(1).standard_normal((1, 2, 6, 5)), requires_grad=True)
    assert cr.gradgradcheck(lambda x: F.max_pool2d(x, 3, 2, 1) ** 3, (x,))


def test_conv2d_double_backward_matches_torch():
    rng = np.random.default_rng(2)
    xa, wa = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    results = []
    for m in (cr, torch):
        x = m.tensor(xa, requires_grad=True)
        w = m.tensor(wa, requires_grad=True)
        y = (m.nn.functional.conv2d(x, w, padding=1) ** 2).sum()
        (gx,) = (m.autograd.grad if m is torch else cr.grad)(y, (x,), create_graph=True)
        (gx**2).sum().backward()
        results.append((gx, x.grad, w.grad))
    for ours, theirs, what in zip(*results, ("dy/dx", "d2/dx2", "d2/dxdw"), strict=False):
        assert_close(ours, theirs, what)


# ---- default initialisation: PyTorch's distributions -----------------------------------------


def _ks_uniform(values, bound):
    from scipy import stats

    values = np.asarray(values, dtype=np.float64).ravel()
    assert np.abs(values).max() <= bound
    return stats.kstest(values, "uniform", args=(-bound, 2 * bound)).pvalue


def test_linear_and_conv_default_init_follow_torch_bounds():
    cr.manual_seed(0)
    linear = nn.Linear(50, 200)
    conv = nn.Conv2d(6, 40, (3, 2), groups=2)
    # PyTorch: kaiming_uniform_(a=sqrt(5)) for weights and U(-1/sqrt(fan_in), ..) for biases, so
    # both bounds are 1/sqrt(fan_in); fan_in of the conv is in_channels / groups * kH * kW.
    assert _ks_uniform(linear.weight._data, 1 / np.sqrt(50)) > 1e-3
    assert _ks_uniform(conv.weight._data, 1 / np.sqrt(3 * 3 * 2)) > 1e-3
    big_bias = nn.Linear(9, 5000).bias._data
    assert _ks_uniform(big_bias, 1 / 3) > 1e-3
    # And the same law as torch's own draws (two-sample test).
    from scipy import stats

    torch.manual_seed(0)
    assert (
        stats.ks_2samp(
            linear.weight._data.ravel(), torch.nn.Linear(50, 200).weight.detach().numpy().ravel()
        ).pvalue
        > 1e-3
    )


def test_default_init_would_catch_a_wrong_bound():
    cr.manual_seed(1)
    weight = nn.Linear(50, 200).weight._data
    assert _ks_uniform(weight * 0.9, 1 / np.sqrt(50)) < 1e-6


def test_embedding_init_is_standard_normal_and_layernorm_is_ones_zeros():
    from scipy import stats

    cr.manual_seed(2)
    emb = nn.Embedding(1000, 8, padding_idx=0)
    assert stats.kstest(emb.weight._data[1:].ravel(), "norm").pvalue > 1e-3
    np.testing.assert_array_equal(emb.weight._data[0], 0)
    ln = nn.LayerNorm(4)
    np.testing.assert_array_equal(ln.weight._data, np.ones(4))
    np.testing.assert_array_equal(ln.bias._data, np.zeros(4))


def test_init_functions_draw_from_their_distributions():
    from scipy import stats

    cr.manual_seed(3)
    w = cr.zeros(300, 100)
    nn.init.xavier_uniform_(w, gain=2.0)
    assert _ks_uniform(w._data, 2.0 * np.sqrt(6 / 400)) > 1e-3
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert _ks_uniform(w._data, np.sqrt(2) * np.sqrt(3 / 100)) > 1e-3
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="tanh")
    assert _ks_uniform(w._data, 5 / 3 * np.sqrt(3 / 300)) > 1e-3
    nn.init.normal_(w, mean=1.5, std=0.5)
    assert stats.kstest(w._data.ravel(), "norm", args=(1.5, 0.5)).pvalue > 1e-3
    nn.init.uniform_(w, -2.0, 3.0)
    assert stats.kstest(w._data.ravel(), "uniform", args=(-2.0, 5.0)).pvalue > 1e-3
    nn.init.zeros_(w)
    assert not w._data.any()
    assert nn.init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain(
        "leaky_relu", 0.2
    )


def test_init_is_reproducible_under_manual_seed():
    cr.manual_seed(5)
    a = nn.Linear(3, 4).weight._data.copy()
    cr.manual_seed(5)
    np.testing.assert_array_equal(nn.Linear(3, 4).weight._data, a)


# ---- dropout ------------------------------------------------------------------------------------


def test_dropout_zeroes_with_probability_p_and_scales_the_rest():
    cr.manual_seed(0)
    x = cr.ones(200, 500, requires_grad=True)
    y = F.dropout(x, p=0.3)
    kept = y._data != 0
    assert abs(kept.mean() - 0.7) < 0.005
    np.testing.assert_allclose(y._data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad._data, y._data)  # d y / d x is the scaled mask
    assert F.dropout(x, 0.3, training=False) is x
    layer = nn.Dropout(0.5)
    layer.eval()
    assert layer(x) is x


def test_dropout_mask_follows_manual_seed():
    cr.manual_seed(9)
    a = F.dropout(cr.ones(50), 0.5)._data.copy()
    cr.manual_seed(9)
    np.testing.assert_array_equal(F.dropout(cr.ones(50), 0.5)._data, a)


# ---- Module behaviour -----------------------------------------------------------------------


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Tanh()])
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        x = self.hidden(x).relu()
        for block in self.blocks:
            x = block(x)
        return self.out(x)


class TorchTwoLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(3, 4)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Tanh()])
        self.out = torch.nn.Linear(4, 2)


def test_state_dict_names_match_torch_and_round_trip():
    ours, theirs = TwoLayer(), TorchTwoLayer()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    _copy_weights(ours, theirs)
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key].numpy(), value.numpy())
    copy = TwoLayer()
    copy.load_state_dict(ours.state_dict())
    x = cr.randn(5, 3)
    np.testing.assert_array_equal(copy(x)._data, ours(x)._data)


def test_load_state_dict_lists_missing_unexpected_and_misshaped_keys():
    model = TwoLayer()
    state = dict(model.state_dict())
    del state["out.bias"]
    state["extra.weight"] = cr.zeros(2)
    state["hidden.weight"] = cr.zeros(5, 3)
    before = model.blocks[0].weight._data.copy()
    state["blocks.0.weight"] = cr.ones(4, 4)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: out.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "hidden.weight: checkpoint has shape (5, 3), the model has (4, 3)" in message
    np.testing.assert_array_equal(model.blocks[0].weight._data, before)  # nothing half-loaded
    del state["hidden.weight"]
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["hidden.weight", "out.bias"]
    assert result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(model.blocks[0].weight._data, np.ones((4, 4)))


def test_module_to_double_converts_parameters_in_place():
    model = TwoLayer()
    params = list(model.parameters())
    model(cr.randn(2, 3)).sum().backward()
    assert model.double() is model
    assert all(p.dtype == cr.float64 and p.grad.dtype == cr.float64 for p in params)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert model(cr.randn(2, 3, dtype=cr.float64)).dtype == cr.float64
    model.float()
    assert all(p.dtype == cr.float32 for p in model.parameters())
    model.to("cpu", dtype=cr.float64)
    assert all(p.dtype == cr.float64 for p in model.parameters())


def test_train_eval_zero_grad_and_children():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.ReLU()))
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    assert len(list(model.children())) == 3 and len(list(model.modules())) == 5
    model(cr.randn(3, 2)).sum().backward()
    assert model[0].weight.grad is not None
    model.zero_grad()
    assert model[0].weight.grad is None
    model(cr.randn(3, 2)).sum().backward()
    model.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(model[0].weight.grad._data, 0)


def test_shared_parameters_are_listed_once():
    layer = nn.Linear(2, 2)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert len(list(model.parameters())) == 2


def test_repr_reads_like_torch():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Linear(4, 2, bias=False))
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Linear(4, 2, bias=False)
    )
    assert repr(model) == repr(theirs)
    assert repr(nn.Parameter(cr.zeros(2))).startswith("Parameter containing:\ntensor(")


def test_assigning_a_plain_tensor_over_a_parameter_refuses():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="'weight', which is a parameter"):
        layer.weight = cr.zeros(2, 2)


# ---- bad input names the layer, what it expected and what it got --------------------------------


@pytest.mark.parametrize(
    "layer, x, expected",
    [
        (
            nn.Linear(4, 3),
            cr.zeros(2, 5),
            r"Linear\(in_features=4, out_features=3, bias=True\): expected input whose last "
            r"dimension is 4, got input of shape \(2, 5\)",
        ),
        (
            nn.Conv2d(3, 8, 3),
            cr.zeros(2, 1, 8, 8),
            r"Conv2d\(3, 8, kernel_size=\(3, 3\).*\): expected input of shape \(N, 3, H, W\) or "
            r"\(3, H, W\), got input of shape \(2, 1, 8, 8\)",
        ),
        (
            nn.Conv2d(3, 8, 3),
            cr.zeros(8, 8),
            r"Conv2d\(3, 8.*expected input of shape \(N, 3, H, W\).*got input of shape \(8, 8\)",
        ),
        (nn.MaxPool2d(2), cr.zeros(4, 4), r"MaxPool2d\(kernel_size=2.*got input of shape \(4, 4\)"),
        (
            nn.LayerNorm(6),
            cr.zeros(3, 5),
            r"LayerNorm\(\(6,\).*expected input whose last dimensions are \(6,\), got input of "
            r"shape \(3, 5\)",
        ),
        (nn.Flatten(2), cr.zeros(3, 5), r"Flatten\(start_dim=2.*got input of shape \(3, 5\)"),
    ],
)
def test_wrong_input_shape_names_layer_expected_and_got(layer, x, expected):
    with pytest.raises(ValueError, match=expected):
        layer(x)


def test_conv_kernel_larger_than_input_and_bad_groups_are_explained():
    with pytest.raises(
        ValueError, match=r"kernel \(size 5, dilation 1\) is larger than the padded"
    ):
        F.conv2d(cr.zeros(1, 1, 3, 3), cr.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        F.conv2d(cr.zeros(1, 3, 3, 3), cr.zeros(2, 1, 1, 1), groups=2)
    with pytest.raises(IndexError, match="index 7 is out of range for 5 embeddings"):
        F.embedding(cr.tensor([1, 7]), cr.zeros(5, 2))


@pytest.mark.parametrize(
    "kernel, dilation", [((3, 3), (1, 1)), ((2, 4), (1, 1)), ((3, 2), (2, 3)), ((1, 1), (1, 1))]
)
def test_conv2d_same_padding_matches_pytorch_with_odd_and_even_kernels(kernel, dilation):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, *kernel))
    b = rng.standard_normal(4)
    cx, cw, cb = (cr.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = cr.nn.functional.conv2d(cx, cw, cb, padding="same", dilation=dilation)
    tout = torch.nn.functional.conv2d(tx, tw, tb, padding="same", dilation=dilation)
    assert out.shape == tuple(tout.shape) == (2, 4, 7, 6)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10)
    g = rng.standard_normal(out.shape)
    out.backward(cr.tensor(g))
    tout.backward(torch.tensor(g))
    for ours, theirs in ((cx, tx), (cw, tw), (cb, tb)):
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_conv2d_same_padding_refuses_strides_as_pytorch_does():
    with pytest.raises(ValueError, match="stride 1"):
        cr.nn.functional.conv2d(cr.ones(1, 1, 5, 5), cr.ones(1, 1, 3, 3), padding="same", stride=2)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation",
    [
        ((7, 8), 2, 2, 0, 1),
        ((7, 7), 3, 2, 1, 1),
        ((9, 6), (3, 2), (2, 3), (1, 0), (1, 2)),
        ((5, 5), 2, 3, 1, 1),  # the last window would start in the right padding: dropped
    ],
)
def test_max_pool2d_ceil_mode_matches_pytorch(size, kernel, stride, padding, dilation):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2, 3, *size))
    x, tx = cr.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    out = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=True)(x)
    tout = torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=True)(tx)
    assert out.shape == tuple(tout.shape)
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
    g = rng.standard_normal(out.shape)
    out.backward(cr.tensor(g))
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_embedding_max_norm_renormalises_looked_up_rows_as_pytorch(norm_type):
    rng = np.random.default_rng(5)
    table = rng.standard_normal((6, 4)) * 3
    index = np.array([[0, 2, 2], [5, 1, 0]])
    ours = nn.Embedding(6, 4, max_norm=1.5, norm_type=norm_type, dtype=cr.float64)
    theirs = torch.nn.Embedding(6, 4, max_norm=1.5, norm_type=norm_type).double()
    ours.load_state_dict({"weight": table})
    theirs.load_state_dict({"weight": torch.tensor(table)})
    out = ours(cr.tensor(index))
    tout = theirs(torch.tensor(index))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12)
    # Rows looked up are renormalised in the table itself; the others are untouched.
    np.testing.assert_allclose(
        ours.weight.detach().numpy(), theirs.weight.detach().numpy(), rtol=1e-12
    )
    g = rng.standard_normal(out.shape)
    out.backward(cr.tensor(g))
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-12)
