"""The explainer: derivations (paths), drawings (graph), symbolic checks, traces and reports.

Oracles: closed-form derivatives of the slides' model, PyTorch's gradients for tensor graphs, and
counts/shapes worked out by hand; never the explainer's own earlier output."""

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import explain

# The slides' model at a point where every partial is a distinct number.
B, W1, W2, X1, X2, Y = 0.5, 2.0, -1.0, 3.0, 1.5, 4.0
RESIDUAL = B + W1 * X1 + W2 * X2 - Y  # yhat - y = 1.0


def slides(named_intermediates=True):
    t = {
        "b": cr.tensor(B, dtype=cr.float64, requires_grad=True, name="b"),
        "w1": cr.tensor(W1, dtype=cr.float64, requires_grad=True, name="w1"),
        "w2": cr.tensor(W2, dtype=cr.float64, requires_grad=True, name="w2"),
        "x1": cr.tensor(X1, dtype=cr.float64, name="x1"),
        "x2": cr.tensor(X2, dtype=cr.float64, name="x2"),
        "y": cr.tensor(Y, dtype=cr.float64, name="y"),
    }
    a1 = t["w1"] * t["x1"]
    a2 = t["w2"] * t["x2"]
    yhat = t["b"] + a1 + a2
    loss = (yhat - t["y"]) ** 2
    if named_intermediates:
        a1.name, a2.name, yhat.name, loss.name = "a1", "a2", "yhat", "Loss"
    return loss, t


# ---- paths ---------------------------------------------------------------------------------------


def test_paths_prints_the_slides_derivation_for_w1_with_its_numbers_and_value():
    loss, t = slides()
    d = explain.paths(loss, t["w1"])
    text = str(d)
    head = "dLoss/dw1 = dLoss/dyhat * dyhat/da1 * da1/dw1 = 2(yhat - y) * 1 * x1 = "
    assert text.startswith(head)
    numbers = text[len(head) :]
    # the numbers: 2(yhat - y) = 2, 1, x1 = 3; the product 2 * 1 * 3 = 6 = 2(yhat - y) x1
    assert numbers == f"{2 * RESIDUAL:g} * 1 * {X1:g} = {2 * RESIDUAL * X1:g}"
    loss.backward()
    assert float(d.value) == pytest.approx(t["w1"].grad.item(), rel=1e-12)
    assert float(d.value) == pytest.approx(2 * RESIDUAL * X1, rel=1e-12)


def test_paths_for_b_and_w2_follow_the_slides_and_match_the_old_fashioned_partials():
    loss, t = slides()
    db, dw2 = explain.paths(loss, [t["b"], t["w2"]])
    assert str(db).startswith("dLoss/db = dLoss/dyhat * dyhat/db = 2(yhat - y) * 1 = ")
    assert str(dw2).startswith(
        "dLoss/dw2 = dLoss/dyhat * dyhat/da2 * da2/dw2 = 2(yhat - y) * 1 * x2"
    )
    assert float(db.value) == pytest.approx(2 * RESIDUAL)
    assert float(dw2.value) == pytest.approx(2 * RESIDUAL * X2)


def test_a_reused_node_lists_every_path_and_their_sum_equals_the_gradient():
    c = cr.tensor(1.5, dtype=cr.float64, requires_grad=True, name="c")
    e = c * c + cr.sin(c)
    d = explain.paths(e, c)
    assert d.count == 3 and len(d.paths) == 3
    values = sorted(float(p.value) for p in d.paths)
    assert values == pytest.approx(sorted([1.5, 1.5, np.cos(1.5)]))
    assert float(d.value) == pytest.approx(2 * 1.5 + np.cos(1.5))
    text = str(d)
    assert "sum over 3 paths" in text
    assert "cos(c)" in text
    assert text.splitlines()[-1].endswith(f"= {2 * 1.5 + np.cos(1.5):.4g}")


def test_unnamed_intermediates_get_automatic_names_after_their_op():
    w = cr.tensor(0.3, dtype=cr.float64, requires_grad=True, name="w")
    loss = cr.tanh(w * 2.0) ** 2
    text = str(explain.paths(loss, w))
    assert (
        re.search(r"dloss/dpow1 \* dpow1/dtanh1 \* dtanh1/dmul1 \* dmul1/dw", text)
        or "dloss/dtanh1 * dtanh1/dmul1 * dmul1/dw" in text
    ), text
    t = np.tanh(0.6)
    assert "1 - tanh1**2" in text
    assert float(explain.paths(loss, w).value) == pytest.approx(2 * t * (1 - t * t) * 2)


def test_tensor_paths_show_the_matrix_form_with_shapes_and_the_broadcast_sum():
    rng = np.random.default_rng(0)
    xs, ws, bs, ys = (
        rng.normal(size=(4, 2)),
        rng.normal(size=(2, 3)),
        rng.normal(size=(1, 3)),
        rng.normal(size=(4, 3)),
    )
    x = cr.tensor(xs, name="x")
    w = cr.tensor(ws, requires_grad=True, name="W")
    b = cr.tensor(bs, requires_grad=True, name="b")
    y = cr.tensor(ys, name="y")
    loss = ((x @ w + b - y) ** 2).mean()
    dw, db = explain.paths(loss, [w, b])
    tw, tb = torch.tensor(ws, requires_grad=True), torch.tensor(bs, requires_grad=True)
    ((torch.tensor(xs) @ tw + tb - torch.tensor(ys)) ** 2).mean().backward()
    np.testing.assert_allclose(dw.value, tw.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(db.value, tb.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dw.total, tw.grad.numpy(), rtol=1e-12)
    text_w, text_b = str(dw), str(db)
    assert "x.T @ g_matmul1" in text_w
    assert "(2, 4) @ (4, 3) -> (2, 3)" in text_w
    assert "summed over axis 0: b was broadcast from (1, 3) to (4, 3)" in text_b


def test_the_lesson_derivation_sums_over_the_data_points():
    from chainrule import lesson

    p = lesson.known_parameters(0.0)
    loss = lesson.named_ssr(p)
    d = explain.paths(loss, p["b3"])
    text = str(d)
    assert "dSSR/db3 = dSSR/dpredicted * dpredicted/db3 = Σ -2(observed - predicted) * 1" in text
    assert "b3 was broadcast from () to (3,)" in text
    # closed form: sum of -2 (observed - predicted) at b3 = 0
    x = np.array(lesson.DOSAGE)
    k = lesson.KNOWN
    pred = k["w3"] * np.logaddexp(0, k["w1"] * x + k["b1"]) + k["w4"] * np.logaddexp(
        0, k["w2"] * x + k["b2"]
    )
    assert float(d.value) == pytest.approx(np.sum(-2 * (np.array(lesson.EFFICACY) - pred)))


def test_many_paths_are_counted_all_and_listed_up_to_the_limit():
    x = cr.tensor(0.7, dtype=cr.float64, requires_grad=True, name="x")
    h = x
    for _ in range(10):  # a ladder of diamonds: 2**10 paths
        h = cr.sin(h) + cr.cos(h)
    d = explain.paths(h, x, max_paths=16)
    assert d.count == 2**10
    assert len(d.paths) == 16
    assert "1008 more paths not listed" in str(d)
    xt = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ht = xt
    for _ in range(10):
        ht = torch.sin(ht) + torch.cos(ht)
    ht.backward()
    assert float(d.value) == pytest.approx(xt.grad.item(), rel=1e-12)


def test_latex_and_html_forms_of_a_derivation():
    loss, t = slides()
    d = explain.paths(loss, t["w1"])
    latex = d.to_latex()
    assert r"\frac{\partial Loss}{\partial w_{1}}" in latex
    assert r"2\left(\hat{y} - y\right) \cdot 1 \cdot x_{1}" in latex
    page = d._repr_html_()
    assert page.startswith("<div") and "dLoss/dw1" in page and "<script" not in page


def test_explaining_after_a_plain_backward_shows_the_backward_gradient():
    loss, t = slides()
    loss.backward()  # no retain_graph: tests/test_explain_after_backward.py has the rest
    d = explain.paths(loss, t["w1"])
    assert d.value.item() == t["w1"].grad.item() == pytest.approx(2 * RESIDUAL * X1)


def test_explaining_a_constant_or_a_foreign_tensor_is_refused_with_its_name():
    loss, t = slides()
    with pytest.raises(ValueError, match="x1 is a constant"):
        explain.paths(loss, t["x1"])
    other = cr.tensor(1.0, requires_grad=True, name="other")
    with pytest.raises(RuntimeError, match="'other'.*not part of the graph"):
        explain.paths(loss, other)


def test_explaining_does_not_touch_the_leaves_gradients():
    loss, t = slides()
    explain.paths(loss, t["w1"])
    assert t["w1"].grad is None
    loss.backward()
    assert t["w1"].grad.item() == pytest.approx(2 * RESIDUAL * X1)


# ---- graph ---------------------------------------------------------------------------------------


def test_graph_source_is_left_to_right_with_values_gradients_and_local_derivatives():
    loss, t = slides()
    g = explain.graph(loss, highlight=t["w1"])
    src = g.source
    assert "rankdir=LR" in src
    assert 'label="∂a1/∂w1 = x1 = 3"' in src
    assert 'label="∂Loss/∂yhat = 2(yhat - y) = 2"' in src
    # w1's node shows value 2 and gradient 2 (yhat - y) x1 = 6
    assert re.search(r"<b>w1</b><br/>value 2<br/>grad 6>", src)
    # the highlighted path is orange and thick, the branch through w2 grey
    edge_w1 = re.search(r"-> \S+ \[label=\"∂a1/∂w1[^\]]*\]", src).group(0)
    edge_w2 = re.search(r"-> \S+ \[label=\"∂a2/∂w2[^\]]*\]", src).group(0)
    assert "#d9480f" in edge_w1 and 'penwidth="3"' in edge_w1
    assert "#b0b0b0" in edge_w2 and "#d9480f" not in edge_w2


def test_graph_saves_svg_png_and_pdf(tmp_path):
    loss, t = slides()
    g = explain.graph(loss, highlight=t["w1"])
    svg = g.save(tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "w1" in svg
    assert g.save(tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert g.save(tmp_path / "g.pdf").read_bytes()[:5] == b"%PDF-"
    assert "<svg" in g._repr_svg_()


def _mlp(layers=110, width=4):
    mods = []
    for _ in range(layers):
        mods += [cr.nn.Linear(width, width), cr.nn.Tanh()]
    return cr.nn.Sequential(*mods)


def test_a_large_graph_groups_operations_by_module():
    cr.manual_seed(0)
    model = _mlp()
    x = cr.randn(2, 4)
    with explain.track_modules(model) as modules:
        out = model(x)
    loss = (out**2).sum()
    ops = len([v for v in explain.paths(loss, model[0].weight).recorded.op_vertices()])
    assert ops > 200
    src = explain.graph(loss, highlight=model[0].weight, modules=modules).source
    boxes = re.findall(r'^\s*"group:([^"]+)" \[', src, re.M)
    assert "0 (Linear)" in boxes and "1 (Tanh)" in boxes
    assert len(boxes) == 220  # one box per module: 110 Linear + 110 Tanh
    # the model is as it was: its forward is no longer wrapped
    assert "forward" not in vars(model[0])


def test_a_large_graph_without_a_module_record_groups_chains_of_operations():
    x = cr.tensor(0.1, dtype=cr.float64, requires_grad=True, name="x")
    h = x
    for _ in range(300):
        h = cr.tanh(h * 1.01)
    g = explain.graph(h, highlight=x)
    assert g.grouped
    assert len(re.findall(r'^\s*"group:[^"]+" \[', g.source, re.M)) == 1


# ---- symbolic ------------------------------------------------------------------------------------


def test_symbolic_equals_the_old_fashioned_partials_for_the_slides_model():
    loss, t = slides()
    s = explain.symbolic(loss, [t["b"], t["w1"], t["w2"]])
    assert s.equals("b", "2*(b + w1*x1 + w2*x2 - y)")
    assert s.equals("w1", "2*(b + w1*x1 + w2*x2 - y)*x1")
    assert s.equals("w2", "2*(b + w1*x1 + w2*x2 - y)*x2")
    assert not s.equals("w2", "2*(b + w1*x1 + w2*x2 - y)*x1")
    assert all(s.agree.values())
    text = str(s)
    assert "dLoss/dw1 = 2(b + w1 x1 + w2 x2 - y) x1" in text
    assert float(s.values["w1"]) == pytest.approx(2 * RESIDUAL * X1)


def test_symbolic_accepts_a_function_and_its_arguments():
    a = cr.tensor(0.4, dtype=cr.float64, requires_grad=True, name="a")
    s = explain.symbolic(lambda a: cr.exp(a) * cr.sigmoid(a), a)
    import sympy

    sa = sympy.Symbol("a", real=True)
    expected = sympy.diff(sympy.exp(sa) / (1 + sympy.exp(-sa)), sa)
    assert sympy.simplify(s["a"] - expected) == 0
    assert float(s.values["a"]) == pytest.approx(float(expected.subs(sa, 0.4)))


def test_symbolic_lesson_derivative_matches_the_engine_through_softplus():
    from chainrule import lesson

    p = lesson.known_parameters(0.0, requires_grad=("b3", "w1"))
    loss = lesson.named_ssr(p)
    s = explain.symbolic(loss, [p["b3"], p["w1"]], simplify=False)
    assert all(s.agree.values())
    loss.backward()
    assert float(s.values["b3"]) == pytest.approx(p["b3"].grad.item(), rel=1e-10)
    assert float(s.values["w1"]) == pytest.approx(p["w1"].grad.item(), rel=1e-10)


# ---- traces --------------------------------------------------------------------------------------


def _sgd_run(lr=0.1, steps=5):
    from chainrule import data, optim, train

    cr.manual_seed(1)
    model = cr.nn.Linear(2, 1).double()
    x = cr.randn(8, 2, dtype=cr.float64)
    y = cr.randn(8, 1, dtype=cr.float64)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8)
    trace = explain.Trace()
    history = train.fit(
        model,
        cr.nn.MSELoss(),
        optim.SGD(model.parameters(), lr=lr),
        loader,
        max_steps=steps,
        progress=False,
        callbacks=[trace],
    )
    return trace, history


def test_trace_as_a_fit_callback_records_value_slope_step_size_and_new_value():
    trace, history = _sgd_run()
    assert len(trace) == 5
    assert trace.names == ["weight", "bias"]
    np.testing.assert_allclose(trace.losses(), history.step_loss)
    for s in trace.steps:
        for e in s["params"].values():
            np.testing.assert_allclose(e["step_size"], 0.1 * e["slope"], rtol=1e-12)
            np.testing.assert_allclose(e["new_value"], e["value"] - e["step_size"], rtol=1e-12)
    # each step starts where the last one ended
    np.testing.assert_allclose(trace.series("weight")[1:], trace.series("weight", "new_value")[:-1])


def test_trace_exports_csv_and_json(tmp_path):
    trace, _ = _sgd_run(steps=3)
    rows = list(csv.DictReader(io.StringIO(trace.to_csv(tmp_path / "t.csv"))))
    assert len(rows) == 3 * (2 + 1)  # 3 steps x (2 weight elements + 1 bias)
    assert (tmp_path / "t.csv").read_text() == trace.to_csv()
    first = rows[0]
    assert first["parameter"] == "weight" and first["index"] == "0,0"
    assert float(first["step_size"]) == pytest.approx(0.1 * float(first["slope"]))
    data = json.loads(trace.to_json(tmp_path / "t.json"))
    assert [s["step"] for s in data] == [1, 2, 3]
    np.testing.assert_allclose(
        data[2]["params"]["bias"]["new_value"], trace.steps[2]["params"]["bias"]["new_value"]
    )


def test_trace_by_hand_and_its_table_and_plots():
    w = cr.tensor(3.0, dtype=cr.float64, requires_grad=True, name="w")
    trace = explain.Trace()
    for _ in range(4):
        loss = (w - 1.0) ** 2
        w.grad = None
        loss.backward()
        size = trace.record(loss, {"w": w}, lr=0.25)
        with cr.no_grad():
            w.sub_(float(size["w"]))
    # (w - 1) halves each step: 3 -> 2 -> 1.5 -> 1.25 -> 1.125
    np.testing.assert_allclose(trace.series("w"), [3, 2, 1.5, 1.25])
    np.testing.assert_allclose(trace.series("w", "slope"), [4, 2, 1, 0.5])
    lines = trace.table().splitlines()
    assert lines[0].split() == ["step", "loss", "w", "slope", "step", "size", "new", "w"]
    assert lines[1].split() == ["1", "4", "3", "4", "1", "2"]
    fig = trace.plot_parameter("w", lambda v: (v - 1.0) ** 2)
    ax = fig.axes[0]
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert [float(p.get_xdata()[0]) for p in points] == [3, 2, 1.5, 1.25]
    # each tangent line's slope is the recorded slope
    tangents = [line for line in ax.lines if line.get_color() == "#2b8a3e"]
    for line, slope in zip(tangents, [4, 2, 1, 0.5], strict=True):
        xs, ys = line.get_xdata(), line.get_ydata()
        assert (ys[1] - ys[0]) / (xs[1] - xs[0]) == pytest.approx(slope)
    loss_fig = trace.plot_loss()
    np.testing.assert_allclose(loss_fig.axes[0].lines[0].get_ydata(), [4, 1, 0.25, 0.0625])


def test_trace_stops_fit_when_every_step_is_small():
    from chainrule import data, optim, train

    w = cr.nn.Linear(1, 1, bias=False).double()
    with cr.no_grad():
        w.weight.fill_(5.0)
    x = cr.ones(1, 1, dtype=cr.float64)
    loader = data.DataLoader(data.TensorDataset(x, x * 0), batch_size=1)
    trace = explain.Trace(stop_below=0.01)
    history = train.fit(
        w,
        cr.nn.MSELoss(),
        optim.SGD(w.parameters(), lr=0.25),
        loader,
        max_steps=100,
        progress=False,
        callbacks=[trace],
    )
    # w halves each step (w - 0.25 * 2w); the step size 0.5 w first drops below 0.01 at w < 0.02
    assert history.stop_reason == "callback"
    last = float(np.ravel(trace.steps[-1]["params"]["weight"]["step_size"])[0])
    before = float(np.ravel(trace.steps[-2]["params"]["weight"]["step_size"])[0])
    assert abs(last) < 0.01 <= abs(before)


# ---- reports -------------------------------------------------------------------------------------


def test_write_report_is_self_contained(tmp_path):
    loss, t = slides()
    trace, _ = _sgd_run(steps=3)
    page = explain.write_report(
        tmp_path / "r.html",
        derivations=[explain.paths(loss, t["w1"])],
        symbolic=explain.symbolic(loss, t["w1"]),
        graph=explain.graph(loss, highlight=t["w1"]),
        trace=trace,
        figures=[("loss", trace.plot_loss())],
    ).read_text()
    assert "<svg" in page and "<?xml" not in page
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "@import" not in page
    assert "dLoss/dw1 = dLoss/dyhat" in page


def test_model_report_explains_one_sample_and_plots_the_history(tmp_path):
    cr.manual_seed(0)
    model = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.ReLU(), cr.nn.Linear(4, 2))
    x, y = cr.randn(5, 3), cr.tensor([0, 1, 1, 0, 1])
    from chainrule import data, optim, train

    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=5)
    history = train.fit(
        model,
        cr.nn.CrossEntropyLoss(),
        optim.SGD(model.parameters(), lr=0.1),
        loader,
        epochs=3,
        progress=False,
    )
    path = explain.model_report(
        model, x, y, cr.nn.CrossEntropyLoss(), tmp_path / "m.html", history=history
    )
    page = path.read_text()
    assert "dloss/d0.weight" in page and "dloss/d2.bias" in page
    assert page.count("data:image/png;base64,") == 2  # step loss and epoch loss
    # the derivation's value is the gradient PyTorch gives for that sample
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        for (_, p), (_, q) in zip(model.named_parameters(), tm.named_parameters(), strict=True):
            q.copy_(torch.tensor(p.detach().numpy()))
    torch.nn.functional.cross_entropy(
        tm(torch.tensor(x.numpy()[:1])), torch.tensor(y.numpy()[:1])
    ).backward()
    d = explain.paths(cr.nn.CrossEntropyLoss()(model(x[0:1]), y[0:1]), model[2].bias)
    np.testing.assert_allclose(d.value, tm[2].bias.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_graph_of_a_tracked_model_names_parameters_as_the_model_does():
    cr.manual_seed(0)
    model = cr.nn.Sequential(cr.nn.Linear(4, 8), cr.nn.ReLU(), cr.nn.Linear(8, 3))
    x, y = cr.randn(5, 4), cr.tensor([0, 1, 2, 1, 0])
    with cr.explain.track_modules(model) as record:
        loss = cr.nn.CrossEntropyLoss()(model(x), y)
    source = cr.explain.graph(loss, highlight=model[0].weight, modules=record).source
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert f"<b>{name}</b>" in source
    # Without the record, the parameters are named from the model all the same.
    plain = cr.explain.graph(loss).source
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert f"<b>{name}</b>" in plain


# ---- a custom Function whose backward gives no gradient to one input ------------------------------


def _scale_without_weight_grad(lib):
    """x * w whose backward passes a gradient to x only (None for w), as PyTorch allows."""

    class ScaleNoWeightGrad(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved_tensors
            return g * w, None

    return ScaleNoWeightGrad


def _custom_none_graph():
    scale = _scale_without_weight_grad(cr)
    x = cr.tensor([1.0, -1.0, 0.5], dtype=cr.float64, requires_grad=True, name="x")
    w = cr.tensor([2.0, 3.0, -4.0], dtype=cr.float64, requires_grad=True, name="w")
    loss = (scale.apply(x, w) * w).sum()
    tx = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    tw = torch.tensor([2.0, 3.0, -4.0], dtype=torch.float64, requires_grad=True)
    (_scale_without_weight_grad(torch).apply(tx, tw) * tw).sum().backward()
    return loss, x, w, tx.grad.numpy(), tw.grad.numpy()


def test_paths_through_a_custom_function_that_returns_none_for_an_input():
    loss, x, w, torch_x_grad, torch_w_grad = _custom_none_graph()
    dw = explain.paths(loss, w)
    # w reaches the loss twice in the graph, but the Function's backward passes nothing to it:
    # one path carries the gradient, the other is not a path of the gradient
    assert dw.count == 1 and len(dw.paths) == 1
    np.testing.assert_allclose(dw.total, torch_w_grad, rtol=1e-12)
    np.testing.assert_allclose(dw.grad, torch_w_grad, rtol=1e-12)
    dx = explain.paths(loss, x)
    np.testing.assert_allclose(dx.total, torch_x_grad, rtol=1e-12)
    assert "ScaleNoWeightGrad" in str(dx) and "dloss/dw" in str(dw)


def test_graph_and_recorded_values_through_a_custom_function_that_returns_none():
    from chainrule.explain.recorded import Recorded

    loss, x, w, torch_x_grad, torch_w_grad = _custom_none_graph()
    src = explain.graph(loss, highlight=w).source
    assert "ScaleNoWeightGrad" in src and "<b>w</b>" in src
    recorded = Recorded(loss)
    np.testing.assert_allclose(recorded.find(w).grad, torch_w_grad, rtol=1e-12)
    np.testing.assert_allclose(recorded.find(x).grad, torch_x_grad, rtol=1e-12)
    custom = next(v for v in recorded.op_vertices() if v.node.op.name == "ScaleNoWeightGrad")
    g = np.ones(3)
    assert recorded.apply_edge(custom, 1, g) is None
    np.testing.assert_allclose(recorded.apply_edge(custom, 0, g), [2.0, 3.0, -4.0])


def test_symbolic_refuses_a_custom_function_by_name():
    loss, x, w, *_ = _custom_none_graph()
    with pytest.raises(NotImplementedError, match="ScaleNoWeightGrad"):
        explain.symbolic(loss, w)


def test_using_and_explaining_a_custom_function_writes_nothing_onto_its_class():
    scale = _scale_without_weight_grad(cr)
    before = set(vars(scale))
    x = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True, name="x")
    w = cr.tensor([3.0, 4.0], dtype=cr.float64, requires_grad=True, name="w")
    loss = (scale.apply(x, w) * w).sum()
    str(explain.paths(loss, [x, w]))
    loss.backward()
    assert set(vars(scale)) == before


# ---- forward formulas come from the op declarations ----------------------------------------------


def test_a_linear_layer_without_bias_is_written_as_its_matrix_product():
    cr.manual_seed(0)
    layer = cr.nn.Linear(3, 2, bias=False)
    x = cr.randn(4, 3)
    x.name = "x"
    loss = layer(x).sum()
    src = explain.graph(loss, names={layer.weight: "W"}).source
    assert "= x @ W.T<br/>" in src and "linear(" not in src
    s = explain.symbolic(loss, layer.weight, names={layer.weight: "W"})
    assert all(s.agree.values())
    np.testing.assert_allclose(s.values["W"], np.tile(x._data.sum(0), (2, 1)), rtol=1e-6)


def test_symbolic_derives_through_every_op_whose_forward_formula_has_a_sympy_form():
    import sympy

    a = cr.tensor(0.7, dtype=cr.float64, requires_grad=True, name="a")
    loss = cr.where(a > 0, cr.nn.functional.gelu(a), a * 2) + cr.sign(a) * a
    s = explain.symbolic(loss, a)
    sa = sympy.Symbol("a", real=True)
    # the recorded branch (a > 0) of where, and sign's derivative of 0
    expected = sympy.diff(sa * (1 + sympy.erf(sa / sympy.sqrt(2))) / 2, sa) + sympy.sign(sa)
    for point in (0.7, 1.3, 2.9):
        assert float((s["a"] - expected).subs(sa, point)) == pytest.approx(0, abs=1e-12)
    assert all(s.agree.values())
    ta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    (torch.where(ta > 0, torch.nn.functional.gelu(ta), ta * 2) + torch.sign(ta) * ta).backward()
    assert float(s.values["a"]) == pytest.approx(float(ta.grad), rel=1e-12)
