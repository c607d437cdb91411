"""A layer of many neurons: parameters named from their model without any extra call, and the
backward of a linear layer shown as the matrix products it is, with the engine's numbers."""

import copy
import gc
import pickle
import re
import weakref

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import explain, nn
from chainrule.explain.recorded import Recorded


def names_in_graph(loss, model):
    """{named_parameters() name: the name the explainer gives that parameter}."""
    recorded = Recorded(loss)
    return {name: recorded.find(p).name for name, p in model.named_parameters()}


def mse(model, x, y):
    return nn.MSELoss()(model(x), y)


# ---- names -------------------------------------------------------------------------------------


def test_a_bare_linear_layer_names_its_weight_and_bias():
    lin = nn.Linear(3, 2)
    loss = (lin(cr.randn(4, 3)) ** 2).mean()
    assert explain.paths(loss, lin.weight).name == "dloss/dweight"
    assert explain.paths(loss, lin.bias).name == "dloss/dbias"
    assert str(explain.paths(loss, lin.weight)).startswith("dloss/dweight: loss <- ")


def test_a_sequential_names_every_parameter_as_named_parameters_does():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    loss = mse(model, cr.randn(5, 3), cr.randn(5, 1))
    names = names_in_graph(loss, model)
    assert names == {n: n for n in ("0.weight", "0.bias", "2.weight", "2.bias")}
    assert str(explain.paths(loss, model[2].bias)).startswith("dloss/d2.bias")


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x))


def test_nested_modules_give_dotted_names_from_the_outermost_model():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.out = nn.Linear(2, 1)

        def forward(self, x):
            return self.out(self.encoder(x))

    model = Model()
    loss = mse(model, cr.randn(5, 3), cr.randn(5, 1))
    names = names_in_graph(loss, model)
    assert set(names) == {
        "encoder.body.0.weight",
        "encoder.body.0.bias",
        "encoder.head.weight",
        "encoder.head.bias",
        "out.weight",
        "out.bias",
    }
    assert all(mine == theirs for theirs, mine in names.items())


def test_a_parameter_shared_within_a_model_takes_the_first_name_named_parameters_gives():
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight  # tied weights: named_parameters lists it once, as 0.weight
    model = nn.Sequential(first, nn.Tanh(), second)
    loss = mse(model, cr.randn(4, 3), cr.randn(4, 3))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.bias"]
    recorded = Recorded(loss)
    assert recorded.find(second.weight).name == "0.weight"
    assert recorded.find(second.bias).name == "2.bias"


def test_a_module_taken_into_two_separate_models_is_named_from_the_one_that_took_it_last():
    shared = nn.Linear(2, 2)
    first = nn.Sequential(shared)  # noqa: F841 - alive, so both models hold `shared`
    second = nn.Sequential(nn.Tanh(), shared)
    loss = (shared(cr.randn(3, 2)) ** 2).sum()
    assert Recorded(loss).find(shared.weight).name == "1.weight"
    del second
    gc.collect()
    assert Recorded(loss).find(shared.weight).name == "0.weight"


def test_a_model_created_then_wrapped_later_is_named_from_the_wrapper_while_it_lives():
    lin = nn.Linear(3, 2)
    loss = (lin(cr.randn(4, 3)) ** 2).sum()
    assert Recorded(loss).find(lin.weight).name == "weight"
    wrapper = nn.Sequential(nn.Identity(), lin)
    assert Recorded(loss).find(lin.weight).name == "1.weight"
    ref = weakref.ref(wrapper)
    del wrapper
    gc.collect()
    assert ref() is None  # the names registry keeps no model alive
    assert Recorded(loss).find(lin.weight).name == "weight"


def test_a_module_replaced_in_its_model_is_named_on_its_own():
    model = nn.Sequential(nn.Linear(3, 2))
    old = model[0]
    model.add_module("0", nn.Linear(3, 2))
    loss = (old(cr.randn(4, 3)) ** 2).sum() + (model(cr.randn(4, 3)) ** 2).sum()
    recorded = Recorded(loss)
    assert recorded.find(old.weight).name == "weight"
    assert recorded.find(model[0].weight).name == "0.weight"


def test_two_separate_layers_used_side_by_side_get_their_class_and_a_number_in_front():
    first, second = nn.Linear(3, 4), nn.Linear(4, 1)
    loss = (second(cr.tanh(first(cr.randn(5, 3)))) ** 2).mean()
    recorded = Recorded(loss)
    assert recorded.find(first.weight).name == "Linear1.weight"
    assert recorded.find(first.bias).name == "Linear1.bias"
    assert recorded.find(second.weight).name == "Linear2.weight"
    assert recorded.find(second.bias).name == "Linear2.bias"


def test_names_the_user_gives_win_over_names_from_the_model():
    lin = nn.Linear(3, 2)
    lin.bias.name = "b"
    loss = (lin(cr.randn(4, 3)) ** 2).sum()
    recorded = Recorded(loss, names={lin.weight: "W"})
    assert recorded.find(lin.weight).name == "W"
    assert recorded.find(lin.bias).name == "b"


def test_a_frozen_parameter_is_named_from_its_model_too():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    loss = mse(model, cr.randn(4, 3), cr.randn(4, 1))
    recorded = Recorded(loss)
    assert recorded.find(model[0].weight).kind == "const"
    assert recorded.find(model[0].weight).name == "0.weight"


@pytest.mark.parametrize(
    "duplicate",
    [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
    ids=["deepcopy", "pickle"],
)
def test_a_copied_or_unpickled_model_names_its_own_parameters(duplicate):
    model = duplicate(nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)))
    loss = mse(model, cr.randn(4, 3), cr.randn(4, 1))
    assert names_in_graph(loss, model) == {
        n: n for n in ("0.weight", "0.bias", "2.weight", "2.bias")
    }


def test_a_module_class_with_its_own_equality_is_named_as_well():
    class Compared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def __eq__(self, other):  # makes instances unhashable, as in plain Python
            return isinstance(other, Compared)

        def forward(self, x):
            return self.lin(x)

    model = nn.Sequential(Compared())
    loss = (model(cr.randn(3, 2)) ** 2).sum()
    assert Recorded(loss).find(model[0].lin.weight).name == "0.lin.weight"


# ---- a layer's backward as matrix products -------------------------------------------------------


def mlp_on_a_batch():
    """A 2-layer MLP in float64 on a batch of 4, its loss, its hidden activation, and the
    gradients the engine computes (by a plain backward)."""
    cr.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x = cr.randn(4, 2, dtype=cr.float64)
    y = cr.randn(4, 1, dtype=cr.float64)
    hidden = model[1](model[0](x))
    loss = nn.MSELoss()(model[2](hidden), y)
    (g_hidden,) = cr.autograd.grad(loss, [hidden], retain_graph=True)
    return model, x, y, loss, g_hidden


def test_each_layer_on_the_way_back_is_listed_from_the_output_with_its_sizes():
    model, _, _, loss, _ = mlp_on_a_batch()
    d = explain.paths(loss, model[0].weight)
    assert [layer.name for layer in d.layers] == ["linear2", "linear1"]
    outer, inner = d.layers
    assert (outer.batch, outer.size["in"], outer.neurons) == (4, 3, 1)
    assert (inner.batch, inner.size["in"], inner.neurons) == (4, 2, 3)
    # Only the layer the gradient passes through to reach the last layer's bias.
    assert [layer.name for layer in explain.paths(loss, model[2].bias).layers] == ["linear2"]


def test_layer_products_are_the_gradients_the_engine_computes_in_float64():
    model, x, y, loss, g_hidden = mlp_on_a_batch()
    d = explain.paths(loss, model[0].weight)
    loss.backward()
    outer, inner = d.layers
    products = {p.input.name: p for layer in d.layers for p in layer.products if p.computed}
    assert set(products) == {"2.weight", "2.bias", "tanh1", "0.weight", "0.bias"}
    for name, p in model.named_parameters():
        np.testing.assert_allclose(products[name].value, p.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(products["tanh1"].value, g_hidden.numpy(), rtol=1e-12)
    # Against PyTorch too: the gradient arriving at each layer's output, dloss/dY.
    tm = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    with torch.no_grad():
        for (_, p), (_, q) in zip(model.named_parameters(), tm.named_parameters(), strict=True):
            q.copy_(torch.from_numpy(p.detach().numpy()))
    tx = torch.from_numpy(x.numpy())
    z1 = tm[0](tx)
    z2 = tm[2](tm[1](z1))
    z1.retain_grad()
    z2.retain_grad()
    torch.nn.functional.mse_loss(z2, torch.from_numpy(y.numpy())).backward()
    np.testing.assert_allclose(outer.gradient, z2.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(inner.gradient, z1.grad.numpy(), rtol=1e-12)


def test_the_derivation_writes_each_product_with_its_shapes_and_numbers():
    model, _, _, loss, _ = mlp_on_a_batch()
    text = str(explain.paths(loss, model[0].weight))
    loss.backward()
    assert "the backward through each layer of many neurons, as matrix products" in text
    assert "calculated once and used by every product of its layer" in text
    assert (
        "linear2 = tanh1 @ 2.weight.T + 2.bias: a layer of 1 neuron, 3 inputs each, on a batch "
        "of 4   [(batch, out) = (batch, in) @ (in, out) + (out,); (4, 1) = (4, 3) @ (3, 1) + (1,)]"
    ) in text
    assert "g_linear2 = dloss/dlinear2 = " in text
    assert "[(batch, out) = (4, 1)], used by 3 products:" in text
    assert "[(batch, out) = (4, 3)], used by 2 products:" in text
    rows = {
        "2.weight": (
            "g_linear2.T @ tanh1",
            "(out, in) = (out, batch) @ (batch, in); (1, 3) = (1, 4) @ (4, 3)",
        ),
        "2.bias": (
            "sum_to(g_linear2, (1,))",
            "(out,) = (batch, out) summed over batch; (1,) = (4, 1) summed over 4",
        ),
        "0.weight": (
            "g_linear1.T @ c1",
            "(out, in) = (out, batch) @ (batch, in); (3, 2) = (3, 4) @ (4, 2)",
        ),
        "0.bias": (
            "sum_to(g_linear1, (3,))",
            "(out,) = (batch, out) summed over batch; (3,) = (4, 3) summed over 4",
        ),
    }
    grads = dict(model.named_parameters())
    for name, (formula, shapes) in rows.items():
        match = re.search(
            rf"dloss/d{re.escape(name)} += {re.escape(formula)}   \[{re.escape(shapes)}\]   = (.*)",
            text,
        )
        assert match, name
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", match.group(1))]
        np.testing.assert_allclose(numbers, grads[name].grad.numpy().ravel(), rtol=5e-4)
    # The product that carries the gradient back into the layer below, and where it goes.
    assert re.search(
        r"dloss/dtanh1 += g_linear2 @ 2\.weight   \[\(batch, in\) = \(batch, out\) @ \(out, in\); "
        r"\(4, 3\) = \(4, 1\) @ \(1, 3\)\]   = .*, on to 0\.weight, 0\.bias",
        text,
    )
    assert "(c1 needs no gradient, so g_linear1 @ 0.weight is not computed)" in text


def test_each_path_step_through_a_layer_names_the_dims_of_its_product():
    model, _, _, loss, _ = mlp_on_a_batch()
    text = str(explain.paths(loss, model[0].weight))
    assert (
        "g_0.weight = g_linear1.T @ c1   [(out, in) = (out, batch) @ (batch, in); "
        "(3, 2) = (3, 4) @ (4, 2)]"
    ) in text
    assert "g_tanh1    = g_linear2 @ 2.weight   [(batch, in) = (batch, out) @ (out, in); " in text


def test_an_input_that_requires_grad_gets_its_product_computed():
    lin = nn.Linear(3, 2).double()
    x = cr.randn(5, 3, dtype=cr.float64, requires_grad=True)
    x.name = "x"
    loss = (lin(x) ** 2).sum()
    d = explain.paths(loss, lin.weight)
    loss.backward()
    (layer,) = d.layers
    by_input = {p.input.name: p for p in layer.products}
    assert [p.input.name for p in layer.products] == ["weight", "bias", "x"]
    np.testing.assert_allclose(by_input["x"].value, x.grad.numpy(), rtol=1e-12)
    assert by_input["x"].feeds == []
    assert "needs no gradient" not in str(d)
    assert "used by 3 products:" in str(d)


def test_a_layer_without_bias_has_one_product_per_input_it_has():
    lin = nn.Linear(3, 2, bias=False).double()
    loss = (lin(cr.randn(5, 3, dtype=cr.float64)) ** 2).sum()
    d = explain.paths(loss, lin.weight)
    (layer,) = d.layers
    assert [p.input.name for p in layer.products] == ["weight", "c1"]
    assert "(batch, out) = (batch, in) @ (in, out); (5, 2) = (5, 3) @ (3, 2)]" in str(d)
    assert "used by 1 product:" in str(d)


def test_a_batch_of_sequences_is_one_batch_of_rows():
    lin = nn.Linear(3, 4).double()
    loss = (lin(cr.randn(2, 5, 3, dtype=cr.float64)) ** 2).sum()
    d = explain.paths(loss, lin.weight)
    loss.backward()
    text = str(d)
    assert "on a batch of 10 (its leading dims (2, 5) as one)" in text
    assert "[(batch, out) = (10, 4)], used by 2 products:" in text
    assert "(4, 3) = (4, 10) @ (10, 3)" in text
    (layer,) = d.layers
    np.testing.assert_allclose(layer.products[0].value, lin.weight.grad.numpy(), rtol=1e-12)


def test_a_weight_used_by_two_layers_shows_each_layers_share():
    lin = nn.Linear(3, 3).double()
    loss = (lin(cr.tanh(lin(cr.randn(4, 3, dtype=cr.float64)))) ** 2).sum()
    d = explain.paths(loss, lin.weight)
    loss.backward()
    shares = [p.value for layer in d.layers for p in layer.products if p.input.name == "weight"]
    assert len(shares) == 2
    np.testing.assert_allclose(shares[0] + shares[1], lin.weight.grad.numpy(), rtol=1e-12)
    assert "(this layer's share: weight is used 2 times)" in str(d)


def test_several_parameters_print_their_layers_once_and_latex_has_them():
    model, _, _, loss, _ = mlp_on_a_batch()
    both = explain.paths(loss, [model[0].weight, model[2].weight])
    assert str(both).count("linear2 = tanh1 @ 2.weight.T + 2.bias") == 1
    assert str(both).count("linear1 = c1 @ 0.weight.T + 0.bias") == 1
    assert both._repr_html_().count("linear1 = c1 @ 0.weight.T + 0.bias") == 1
    latex = explain.paths(loss, model[0].weight).to_latex()
    assert r"linear1 = c1 @ 0.weight.T + 0.bias: a layer of 3 neurons" in latex


def test_a_graph_without_layers_prints_as_before():
    w = cr.tensor(2.0, requires_grad=True)
    w.name = "w"
    loss = (w * 3.0) ** 2
    d = explain.paths(loss, w)
    assert d.layers == []
    assert "matrix products" not in str(d)
