"""`cr.explain.steps`: the backward pass one node at a time, checked against the engine itself (the
order its backward processes nodes, seen through gradient hooks, and the `.grad` it leaves), as text
and as a page clicked through in headless chromium."""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import chainrule as cr
from chainrule import explain
from chainrule.datasets import DOSAGE, EFFICACY
from chainrule.explain.paths import format_array
from chainrule.explain.recorded import GraphError
from chainrule.lesson import PARAMETERS, known_parameters, named_ssr, predict, slides_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _engine_order(output, tensors):
    """The names of `tensors` (intermediates) in the order the engine's backward completes their
    gradients, with the gradient each had then: read from hooks during a real backward."""
    seen = []
    for t in tensors:
        t.register_hook(lambda g, name=t.name: seen.append((name, g.numpy().copy())))
    output.backward(retain_graph=True)
    return seen


def _diamond():
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True, name="x")
    e = x.exp()
    e.name = "e"
    b = e * 2.0
    c = e * 3.0
    b.name, c.name = "b", "c"
    total = b + c
    total.name = "L"
    return total, x, [total, c, b, e]


def _lesson_per_point():
    """SSR written as the lesson writes it: one squared residual per data point, added up, so each
    parameter's gradient arrives along three paths (one per dosage)."""
    p = known_parameters(0.0, requires_grad=PARAMETERS)
    terms = []
    for k, (dose, observed) in enumerate(zip(DOSAGE, EFFICACY, strict=True)):
        x = cr.tensor(float(dose), dtype=cr.float64, name=f"dosage{k + 1}")
        predicted = predict(x, p)
        predicted.name = f"predicted{k + 1}"
        terms.append((float(observed) - predicted) ** 2)
    loss = terms[0] + terms[1] + terms[2]
    loss.name = "SSR"
    return loss, p


# ---- the text -------------------------------------------------------------------------------
def test_slides_model_steps_in_the_engines_order_with_each_local_derivative_and_product():
    loss, t = slides_model()
    s = explain.steps(loss)
    text = str(s)
    assert [step.vertex.name for step in s.steps] == ["Loss", "sub1", "yhat", "add1", "a2", "a1"]
    hooked = [loss, t["yhat"], t["a1"], t["a2"]]
    order = [name for name, _ in _engine_order(loss, hooked)]
    ours = [step.vertex.name for step in s.steps if step.vertex.name in order]
    assert ours == order == ["Loss", "yhat", "a2", "a1"]
    assert "start: backward seeds Loss: dLoss/dLoss = 1" in text
    assert "step 1 of 6: Loss = sub1**2   (pow; value 0.81)" in text
    assert "    local    dLoss/dsub1 = 2 * sub1 = -1.8" in text
    assert "  incoming gradient: dLoss/dyhat = -1.8" in text
    assert "    local    da1/dw1 = x1 = 2" in text
    assert "    product  dLoss/dw1 = dLoss/da1 * da1/dw1 = -1.8 * 2 = -3.6" in text
    assert "    .grad    w1.grad = -3.6" in text
    done = text[text.index("done:") :]
    assert re.findall(r"(\w+)\.grad\s+= (\S+)", done) == [
        ("w1", "-3.6"),
        ("w2", "-1.8"),
        ("b", "-1.8"),
    ]
    for name in ("b", "w1", "w2"):
        assert np.array_equal(s.grads[name], t[name].grad.numpy())


def test_each_steps_incoming_gradient_is_the_one_the_engine_completes_there():
    loss, t = slides_model()
    s = explain.steps(loss)
    incoming = {step.vertex.name: step.incoming for step in s.steps}
    for name, g in _engine_order(loss, [loss, t["yhat"], t["a1"], t["a2"]]):
        assert np.array_equal(incoming[name], g), name


def test_lesson_network_steps_newest_node_first_and_leaves_get_backwards_grad():
    p = known_parameters(0.0, requires_grad=PARAMETERS)
    loss = named_ssr(p)
    s = explain.steps(loss)
    seqs = [step.vertex.node.seq for step in s.steps]
    assert seqs == sorted(seqs, reverse=True) and len(s.steps) == 13
    names = [step.vertex.name for step in s.steps]
    assert names[:4] == ["SSR", "pow1", "sub1", "predicted"]
    # the lesson's first slope: dSSR/db3 = -15.7 at b3 = 0, summed over the three dosages
    text = str(s)
    assert "dSSR/db3 = Σ dSSR/dpredicted * dpredicted/db3 = Σ [-5.207, -5.218, -5.23] * 1" in text
    assert "(summed over axis 0: b3 was broadcast from () to (3,))" in text
    loss.backward()
    assert sorted(s.grads) == sorted(PARAMETERS)
    for name in PARAMETERS:
        assert np.array_equal(s.grads[name], p[name].grad.numpy()), name
    assert abs(s.grads["b3"] - (-15.655108380577747)) < 1e-12


def test_lesson_network_per_data_point_shows_each_parameters_three_paths_summing():
    loss, p = _lesson_per_point()
    s = explain.steps(loss)
    arrivals = [a for step in s.steps for a in step.arrivals if a.target.name == "w1"]
    assert [(a.number, a.count) for a in arrivals] == [(1, 3), (2, 3), (3, 3)]
    running = np.zeros(())
    for a in arrivals:
        assert (a.before is None) == (a.number == 1)
        running = a.contribution if a.before is None else running + a.contribution
        assert np.array_equal(a.total, running)
    text = str(s)
    first, _, third = (format_array(a.total) for a in arrivals)
    assert f"dSSR/dw1 so far = {first}   (path 1 of 3 into w1; more to come)" in text
    assert f"= {third}   (path 3 of 3 into w1; complete)" in text
    assert "w1.grad so far = " in text
    loss.backward()
    for name in PARAMETERS:
        assert np.array_equal(s.grads[name], p[name].grad.numpy()), name
    assert abs(s.grads["b3"] - p["b3"].grad.item()) <= 1e-12


def test_diamond_shows_two_arrivals_at_the_shared_node_summed_before_it_is_processed():
    total, x, hooked = _diamond()
    s = explain.steps(total)
    text = str(s)
    assert [step.vertex.name for step in s.steps] == ["L", "c", "b", "e"]
    assert "    sum      dL/de so far = 3   (path 1 of 2 into e; more to come)" in text
    assert "    sum      dL/de = 3 + 2 = 5   (path 2 of 2 into e; complete)" in text
    assert "  incoming gradient: dL/de = 5   (the sum of the 2 paths that met here)" in text
    order = _engine_order(total, hooked)
    assert [name for name, _ in order] == ["L", "c", "b", "e"]
    assert dict(order)["e"] == 5.0
    assert np.array_equal(s.grads["x"], x.grad.numpy())
    assert s.grads["x"] == 5 * np.exp(0.5)


def test_an_input_used_twice_by_one_node_arrives_twice_in_that_step():
    w = cr.tensor(3.0, dtype=cr.float64, requires_grad=True, name="w")
    square = w * w
    square.name = "square"
    s = explain.steps(square)
    (step,) = s.steps
    assert [(a.target.name, a.number, a.count) for a in step.arrivals] == [("w", 1, 2), ("w", 2, 2)]
    assert "dsquare/dw = 3 + 3 = 6   (path 2 of 2 into w; complete)" in str(s)
    square.backward()
    assert s.grads["w"] == w.grad.item() == 6.0


def test_a_linear_layer_is_one_step_written_as_matrix_products_with_shapes():
    cr.manual_seed(0)
    layer = cr.nn.Linear(3, 2, dtype=cr.float64)
    x = cr.randn(4, 3, dtype=cr.float64)
    x.name = "x"
    loss = layer(x).tanh().sum()
    s = explain.steps(loss, names={layer.weight: "weight", layer.bias: "bias"})
    text = str(s)
    assert [step.vertex.node.op.name for step in s.steps] == ["sum", "tanh", "linear"]
    assert (
        "step 3 of 3: linear1 = x @ weight.T + bias   (linear: x (4, 3), weight (2, 3), "
        "bias (2,) -> (4, 2);"
    ) in text
    assert "    rule     dloss/dweight = g_linear1.T @ x   (g_linear1 = dloss/dlinear1)" in text
    assert "    shapes   (out, in) = (out, batch) @ (batch, in); (2, 3) = (2, 4) @ (4, 3)" in text
    loss.backward()
    assert np.array_equal(s.grads["weight"], layer.weight.grad.numpy())
    assert np.array_equal(s.grads["bias"], layer.bias.grad.numpy())


def test_a_gradient_for_a_non_scalar_output_seeds_the_walk():
    w = cr.tensor([1.0, -2.0], dtype=cr.float64, requires_grad=True, name="w")
    out = w * w
    out.name = "out"
    with pytest.raises(GraphError, match=r"shape \(2,\).*gradient="):
        explain.steps(out)
    seed = np.array([0.5, 2.0])
    s = explain.steps(out, gradient=seed)
    assert "dout/dout = the gradient given = [0.5, 2]" in str(s)
    out.backward(cr.tensor(seed))
    assert np.array_equal(s.grads["w"], w.grad.numpy())


def test_a_hook_that_changes_a_leaf_gradient_is_noted_against_the_engines_value():
    w = cr.tensor(2.0, dtype=cr.float64, requires_grad=True, name="w")
    w.register_hook(lambda g: g * 10)
    loss = w * 3.0
    loss.name = "loss"
    text = str(explain.steps(loss))
    assert "(the engine's gradient for w is 30: a hook changed it)" in text


# ---- the page ---------------------------------------------------------------------------------
def test_page_is_self_contained_with_one_panel_per_step_and_the_graph_source(tmp_path):
    loss, _ = slides_model()
    s = explain.steps(loss)
    page = s.save(tmp_path / "steps.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8"/>' in page  # the embedded WebAssembly needs the page in UTF-8
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", page)
    assert "@import" not in page
    found = re.search(r'<script type="application/json" class="cr-data">(.*?)</script>', page)
    data = json.loads(found.group(1))
    assert len(data["pages"]) == len(s.steps) + 2
    assert [p["label"] for p in data["pages"]][:2] == ["start", "step 1 of 6"]
    assert 'class="cr-next"' in page and 'class="cr-back"' in page
    fragment = s._repr_html_()
    assert 'tabindex="0"' in fragment and "chainruleSteps(" in fragment
    assert "false);</script>" in fragment  # in Jupyter the keys belong to the focused stepper


def test_report_includes_the_stepper(tmp_path):
    loss, _ = slides_model()
    path = explain.write_report(tmp_path / "report.html", steps=explain.steps(loss))
    page = path.read_text(encoding="utf-8")
    assert "<h2>Backpropagation, step by step</h2>" in page
    assert page.count('class="cr-steps"') == 1


_HARNESS_HEAD = """<script>window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
</script>"""

_HARNESS = """<script>
window.addEventListener('load', function () {
  var root = document.querySelector('.cr-steps'), began = Date.now();
  function key(name) {
    root.dispatchEvent(new KeyboardEvent('keydown', {key: name, bubbles: true}));
    return root.getAttribute('data-page');
  }
  function leaves() {
    var out = {};
    root.querySelectorAll('.cr-leaves td[data-leaf]').forEach(function (td) {
      out[td.getAttribute('data-leaf')] = {text: td.textContent,
        value: JSON.parse(td.getAttribute('data-value') || 'null'),
        complete: td.getAttribute('data-complete')};
    });
    return out;
  }
  function graphGrad(name) {
    var found = null;
    root.querySelectorAll('g.node').forEach(function (g) {
      var texts = Array.prototype.map.call(g.querySelectorAll('text'), function (t) {
        return t.textContent; });
      if (texts[0] !== name) return;
      found = texts.filter(function (t) { return t.indexOf('grad ') === 0; })[0];
    });
    return found;
  }
  (function run() {
    if (root.getAttribute('data-graph') !== 'drawn') {
      if (Date.now() - began < 30000) return setTimeout(run, 25);
      window.__errors.push('the graph was never drawn');
    }
    var log = {pages: [root.getAttribute('data-page')], current: [], labels: []};
    var next = root.querySelector('.cr-next'), back = root.querySelector('.cr-back');
    log.backDisabledAtStart = back.disabled;
    log.startLeaves = leaves();
    while (!next.disabled && log.pages.length < 1000) {
      next.click();
      log.pages.push(root.getAttribute('data-page'));
      var current = root.querySelector('g.node.cr-current > title');
      log.current.push(current ? current.textContent : null);
      log.labels.push(root.querySelector('.cr-counter').textContent);
    }
    log.finalLeaves = leaves();
    log.finalPanel = root.querySelector('.cr-panel').textContent;
    log.graphGrads = {};
    LEAF_NAMES.forEach(function (n) { log.graphGrads[n] = graphGrad(n); });
    log.todoAtEnd = root.querySelectorAll('g.node.cr-todo').length;
    back.click();
    log.afterBack = root.getAttribute('data-page');
    log.leavesAfterBack = leaves();
    log.afterLeft = key('ArrowLeft');
    log.leavesAfterLeft = leaves();
    log.afterRight = key('ArrowRight');
    while (!back.disabled) back.click();
    log.leavesAtStartAgain = leaves();
    log.errors = window.__errors;
    var pre = document.createElement('pre');
    pre.id = 'harness-result';
    pre.textContent = JSON.stringify(log);
    document.body.appendChild(pre);
  })();
});
</script>"""


def _click_through(page_path, leaf_names, tmp_path):
    """Open a copy of the page with the harness in headless chromium; the harness's record and
    the page's console errors."""
    assert CHROMIUM, (
        "chromium is needed for this test (.ci/run installs it: apt-get install chromium)"
    )
    source = page_path.read_text(encoding="utf-8")
    harness = _HARNESS.replace("LEAF_NAMES", json.dumps(leaf_names))
    copy = tmp_path / ("harness-" + page_path.name)
    copy.write_text(
        source.replace("<head>", "<head>" + _HARNESS_HEAD, 1).replace(
            "</body>", harness + "</body>"
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=60000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            copy.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'<pre id="harness-result">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-3000:]
    page_errors = [
        line
        for line in result.stderr.splitlines()
        if re.search(r"CONSOLE|Uncaught|net::ERR_|Failed to load", line)
    ]
    return json.loads(html.unescape(found.group(1))), page_errors


@pytest.mark.parametrize("where", ["page", "report"])
def test_clicking_next_through_every_step_ends_with_backwards_grad_and_back_works(where, tmp_path):
    loss, t = slides_model()
    s = explain.steps(loss)
    loss.backward(retain_graph=True)
    if where == "page":
        path = s.save(tmp_path / "steps.html")
    else:
        path = explain.write_report(tmp_path / "report.html", steps=s)
    log, page_errors = _click_through(path, ["b", "w1", "w2"], tmp_path)
    assert page_errors == []
    assert log["errors"] == []
    pages = len(s.steps) + 2
    assert log["pages"] == [str(k) for k in range(pages)]
    expected = [f"v{step.vertex.index}" for step in s.steps] + [None]
    assert log["current"] == expected
    assert log["labels"][-1] == "done" and log["labels"][0] == "step 1 of 6"
    assert log["backDisabledAtStart"] is True
    assert all(leaf["text"] == "not yet" for leaf in log["startLeaves"].values())
    for name in ("b", "w1", "w2"):
        shown = log["finalLeaves"][name]
        grad = t[name].grad.numpy()
        assert shown["complete"] == "yes"
        assert np.array_equal(np.array(shown["value"]).reshape(grad.shape), grad)
        assert shown["text"] == format_array(grad)
    assert log["graphGrads"] == {"b": "grad -1.8", "w1": "grad -3.6", "w2": "grad -1.8"}
    assert "w1.grad = -3.6" in log["finalPanel"]
    assert log["todoAtEnd"] == 0
    assert log["afterBack"] == str(pages - 2)
    # the last step fills w1: back on it, w1 is there; one more step back, it is not yet
    assert log["leavesAfterBack"]["w1"]["text"] == "-3.6"
    assert log["leavesAfterLeft"]["w1"]["text"] == "not yet"
    assert log["leavesAfterLeft"]["w2"]["text"] == "-1.8"
    assert log["afterLeft"] == str(pages - 3) and log["afterRight"] == str(pages - 2)
    assert all(leaf["text"] == "not yet" for leaf in log["leavesAtStartAgain"].values())


def test_clicking_through_the_diamond_shows_the_running_sum_filling_in(tmp_path):
    total, x, _ = _diamond()
    s = explain.steps(total)
    total.backward(retain_graph=True)
    log, page_errors = _click_through(s.save(tmp_path / "diamond.html"), ["x"], tmp_path)
    assert page_errors == [] and log["errors"] == []
    assert log["current"] == [f"v{step.vertex.index}" for step in s.steps] + [None]
    assert log["finalLeaves"]["x"]["value"] == [x.grad.item()]
