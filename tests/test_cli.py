"""The command line as a user runs it: `python -m chainrule ...` in a subprocess, on small files.

The model file is checked against an independent reading of it (safetensors + NumPy), so
`predict` is verified to need nothing but the file."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import chainrule as cr
from chainrule import cli, tabular

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd):
    """Run the command line as a user would; returns (exit status, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "chainrule", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_model_file(model_path):
    """(spec, tensors, structure) of a model file, read with safetensors and JSON alone."""
    tensors = load_file(model_path)
    with safe_open(model_path, framework="numpy") as f:
        structure = json.loads(f.metadata()["structure"])
    return structure["model"], tensors, structure


def numpy_forward(model_path, x):
    """The network in the model file evaluated with NumPy alone, from its tensors and metadata
    (number columns only: the standardisation that scikit-learn's StandardScaler learned)."""
    spec, tensors, structure = read_model_file(model_path)
    mean, scale = tensors["preprocessing.numbers.mean"], tensors["preprocessing.numbers.scale"]
    h = (np.asarray(x, dtype=np.float64) - mean) / scale
    n_layers = len(spec["layers"]) - 1
    activation = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
        "softplus": lambda z: np.log1p(np.exp(z)),
    }
    for i in range(n_layers):
        # nn.Sequential numbers Linear and activation modules alike: Linear i is module 2i.
        w = tensors[f"net.{2 * i}.weight"].astype(np.float64)
        b = tensors[f"net.{2 * i}.bias"].astype(np.float64)
        h = h @ w.T + b
        if i < n_layers - 1:
            h = activation[spec["activation"]](h)
    scaling = structure["target_scaling"]
    if scaling is not None:
        tensors["y_mean"], tensors["y_scale"] = scaling["mean"], scaling["scale"]
    return spec, tensors, h


@pytest.fixture
def regression_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(40, 2))
    y = 3 * x[:, 0] - 2 * x[:, 1] + 0.5
    return write_csv(tmp_path / "line.csv", ["a", "b", "y"], np.column_stack([x, y]).tolist())


@pytest.fixture
def classes_csv(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    label = np.where(x[:, 0] + x[:, 1] > 0, "up", "down")
    return write_csv(
        tmp_path / "two.csv",
        ["p", "q", "side"],
        [[*row, lab] for row, lab in zip(x.tolist(), label, strict=True)],
    )


def test_fit_regression_writes_model_and_plot_and_reports_held_out_metrics(
    tmp_path, regression_csv
):
    code, out, err = run(
        "fit",
        regression_csv,
        "--target",
        "y",
        "--hidden",
        "8",
        "--activation",
        "tanh",
        "--epochs",
        "150",
        "--batch-size",
        "8",
        "--lr",
        "0.02",
        "--out",
        "m.safetensors",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "8 held-out rows" in out and "R2" in out
    r2 = float(out.split("R2 ")[1].split()[0])
    assert r2 > 0.95
    assert "model written to m.safetensors" in out and "loss plot written to m.loss.png" in out
    assert (tmp_path / "m.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec, tensors, _ = numpy_forward(tmp_path / "m.safetensors", np.zeros((1, 2)))
    assert spec["layers"] == [2, 8, 1] and spec["features"] == ["a", "b"] and spec["target"] == "y"
    assert spec["task"] == "regression" and spec["activation"] == "tanh"
    # Early stopping may end before the 150 epochs; the held-out loss is recorded every epoch.
    assert 20 < len(tensors["history.train_loss"]) == len(tensors["history.val_loss"]) <= 150
    assert "kept the weights of epoch" in out


def test_feature_scaling_is_fitted_on_the_training_split_only(tmp_path, regression_csv):
    code, _, err = run(
        "fit",
        regression_csv,
        "--target",
        "y",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--val-fraction",
        "0.25",
        "--out",
        "m.safetensors",
        cwd=tmp_path,
    )
    assert code == 0, err
    data = np.loadtxt(regression_csv, delimiter=",", skiprows=1)
    tensors = load_file(tmp_path / "m.safetensors")
    # The training rows are the 30 of 40 whose statistics the file holds; the 10 held out differ.
    train_rows, _ = tabular.split_rows(40, 0.25, 3)
    mean, scale = tensors["preprocessing.numbers.mean"], tensors["preprocessing.numbers.scale"]
    np.testing.assert_allclose(mean, data[train_rows, :2].mean(axis=0))
    np.testing.assert_allclose(scale, data[train_rows, :2].std(axis=0))
    assert not np.allclose(mean, data[:, :2].mean(axis=0))


def test_predict_needs_only_the_model_file_and_matches_a_numpy_forward_pass(
    tmp_path, regression_csv
):
    assert (
        run(
            "fit",
            regression_csv,
            "--target",
            "y",
            "--epochs",
            "20",
            "--out",
            "m.safetensors",
            cwd=tmp_path,
        )[0]
        == 0
    )
    new = write_csv(tmp_path / "new.csv", ["b", "a"], [[0.1, 0.2], [-0.5, 0.9]])
    code, out, err = run("predict", "m.safetensors", new, "--out", "preds.csv", cwd=tmp_path)
    assert code == 0, err
    assert "2 predictions of 'y' written to preds.csv" in out
    rows = list(csv.DictReader(open(tmp_path / "preds.csv")))
    _, tensors, h = numpy_forward(tmp_path / "m.safetensors", [[0.2, 0.1], [0.9, -0.5]])
    expected = h[:, 0] * tensors["y_scale"] + tensors["y_mean"]
    np.testing.assert_allclose([float(r["y"]) for r in rows], expected, rtol=1e-5)
    assert [float(r["a"]) for r in rows] == [0.2, 0.9]


def test_classification_is_inferred_from_text_labels_and_predicts_labels(tmp_path, classes_csv):
    code, out, err = run(
        "fit",
        classes_csv,
        "--target",
        "side",
        "--epochs",
        "60",
        "--lr",
        "0.05",
        "--out",
        "c.safetensors",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert out.startswith("classification") and "accuracy" in out
    assert float(out.split("accuracy ")[1].split()[0]) >= 0.9
    code, out, err = run("predict", "c.safetensors", classes_csv, cwd=tmp_path)
    assert code == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert list(rows[0]) == ["p", "q", "side", "p(down)", "p(up)"]
    x = [[float(r["p"]), float(r["q"])] for r in rows]
    spec, _, logits = numpy_forward(tmp_path / "c.safetensors", x)
    assert spec["classes"] == ["down", "up"]
    assert [r["side"] for r in rows] == [spec["classes"][i] for i in logits.argmax(axis=1)]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose([float(r["p(up)"]) for r in rows], probabilities[:, 1], rtol=1e-4)


def test_fit_without_data_fits_the_lessons_dosage_points(tmp_path):
    code, out, err = run("fit", "--no-progress", cwd=tmp_path)
    assert code == 0, err
    assert "dosage" in out and "layers 1-2-1, softplus, ssr" in out
    assert "model written to model.safetensors" in out
    spec, tensors, h = numpy_forward(tmp_path / "model.safetensors", [[0.0], [0.5], [1.0]])
    fitted = h[:, 0] * tensors["y_scale"] + tensors["y_mean"]
    # The lesson's network can pass through all three points; training gets close to that.
    np.testing.assert_allclose(fitted, [0, 1, 0], atol=0.05)


def test_max_steps_and_features_options_are_honoured(tmp_path, regression_csv):
    code, out, err = run(
        "fit",
        regression_csv,
        "--target",
        "y",
        "--features",
        "a",
        "--max-steps",
        "3",
        "--batch-size",
        "100",
        "--optimizer",
        "sgd",
        "--loss",
        "ssr",
        "--out",
        "m.safetensors",
        cwd=tmp_path,
    )
    assert code == 0, err
    spec, tensors, _ = numpy_forward(tmp_path / "m.safetensors", np.zeros((1, 1)))
    assert spec["features"] == ["a"] and spec["loss"] == "ssr" and spec["layers"][0] == 1
    # 32 training rows in one batch: three steps are three epochs.
    assert len(tensors["history.train_loss"]) == 3


def test_task_override_makes_integer_labels_a_regression(tmp_path):
    rows = [[i, i % 2] for i in range(20)]
    path = write_csv(tmp_path / "parity.csv", ["x", "odd"], rows)
    code, out, err = run(
        "fit",
        path,
        "--target",
        "odd",
        "--task",
        "regression",
        "--epochs",
        "2",
        "--out",
        "m.safetensors",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert out.startswith("regression")
    code, out, _ = run(
        "fit", path, "--target", "odd", "--epochs", "2", "--out", "m.safetensors", cwd=tmp_path
    )
    assert out.startswith("classification")


def test_drop_missing_fits_on_the_remaining_rows(tmp_path):
    rows = [[i, 2 * i] for i in range(12)] + [["oops", 3], ["", 4]]
    path = write_csv(tmp_path / "gaps.csv", ["x", "y"], rows)
    code, out, err = run(
        "fit",
        path,
        "--target",
        "y",
        "--drop-missing",
        "--epochs",
        "2",
        "--out",
        "m.safetensors",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "dropped 2 rows" in out and "10 training rows" in out


@pytest.mark.parametrize("command", [None, "fit", "predict", "explain", "demo"])
def test_help_is_readable_for_every_command(tmp_path, command):
    code, out, _ = run(*([command] if command else []), "--help", cwd=tmp_path)
    assert code == 0 and out.startswith("usage: chainrule")
    assert all(len(line) <= 100 for line in out.splitlines())
    if command:
        assert "--out" in out


def test_version(tmp_path):
    code, out, _ = run("--version", cwd=tmp_path)
    assert code == 0 and out.strip() == f"chainrule {cr.__version__}"


def test_model_file_round_trips_in_process(tmp_path, regression_csv):
    """The in-process reader rebuilds a network whose outputs are the file's own."""
    assert (
        run(
            "fit",
            regression_csv,
            "--target",
            "y",
            "--epochs",
            "5",
            "--hidden",
            "4,3",
            "--out",
            "m.safetensors",
            cwd=tmp_path,
        )[0]
        == 0
    )
    model = cli.load_model(str(tmp_path / "m.safetensors"))
    x = np.array([[0.3, -0.4], [1.0, 1.0]])
    _, _, h = numpy_forward(tmp_path / "m.safetensors", x)
    frame = tabular.frame_from_arrays("rows", x, np.zeros(2), ["a", "b"], "y")
    np.testing.assert_allclose(model.outputs(model.inputs(frame)).numpy(), h, rtol=1e-5, atol=1e-6)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old contents")

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("half a fi")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        cli.write_atomic(str(target), failing)
    assert target.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    cli.write_atomic(str(target), lambda tmp: open(tmp, "w").write("new"))
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_explain_writes_a_self_contained_html_report(tmp_path, classes_csv):
    assert (
        run(
            "fit",
            classes_csv,
            "--target",
            "side",
            "--epochs",
            "3",
            "--out",
            "c.safetensors",
            cwd=tmp_path,
        )[0]
        == 0
    )
    code, out, err = run(
        "explain", "c.safetensors", classes_csv, "--sample", "2", "--out", "r.html", cwd=tmp_path
    )
    assert code == 0, err
    assert "report on row 2 of 60 written to r.html" in out
    html = (tmp_path / "r.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "The chain rule, path by path" in html and "<svg" in html
    # Self-contained: pictures inline, nothing fetched from elsewhere.
    assert "data:image/png;base64," in html and 'src="http' not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.loss.png",
        "c.safetensors",
        "r.html",
        "two.csv",
    ]


def test_explain_a_lesson_model_needs_no_data(tmp_path):
    assert run("fit", "--epochs", "5", cwd=tmp_path)[0] == 0
    code, out, err = run("explain", "model.safetensors", cwd=tmp_path)
    assert code == 0, err
    assert "report on row 1 of 3 written to report.html" in out
    assert "The chain rule" in (tmp_path / "report.html").read_text()


def test_demo_runs_the_lesson_into_the_given_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "chainrule.lesson.run_demo", lambda out_dir, echo: calls.append(out_dir) or echo("ran")
    )
    printed = []
    assert cli.main(["demo", "--out", str(tmp_path / "pictures")], echo=printed.append) == 0
    assert calls == [str(tmp_path / "pictures")] and printed == ["ran"]


def test_interrupted_fit_writes_nothing(tmp_path, regression_csv, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("chainrule.train.fit", interrupted)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli.main(
        ["fit", str(regression_csv), "--target", "y", "--out", str(tmp_path / "m.safetensors")]
    )
    assert code == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_real_table_with_text_columns_and_gaps_fits_and_predicts_as_it_is(tmp_path):
    """No --features gymnastics: a text feature is one-hot encoded, empty cells are imputed, a
    text target is a classification, and predict takes the same kind of file."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(90):
        species = ["Adelie", "Gentoo", "Chinstrap"][i % 3]
        bill = {"Adelie": 38.0, "Gentoo": 47.0, "Chinstrap": 49.0}[species] + rng.normal()
        island = "" if i % 10 == 0 else ["Biscoe", "Dream"][(i // 3) % 2]
        body = 5000 if species == "Gentoo" else 3700
        rows.append(
            [island, "" if i % 7 == 0 else f"{bill:.1f}", body + rng.normal(0, 100), species]
        )
    path = write_csv(tmp_path / "penguins.csv", ["island", "bill", "body_g", "species"], rows)
    code, out, err = run("fit", path, "--target", "species", "--out", "p.safetensors", cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("classification") and float(out.split("accuracy ")[1].split()[0]) > 0.9
    spec, _, _ = read_model_file(tmp_path / "p.safetensors")
    assert spec["kinds"] == {"island": "text", "bill": "number", "body_g": "number"}
    code, out, err = run("predict", "p.safetensors", path, cwd=tmp_path)
    assert code == 0, err
    predicted = list(csv.DictReader(out.splitlines()))
    assert len(predicted) == 90 and predicted[0]["island"] == "" and predicted[0]["bill"] == ""
    assert np.mean([p["species"] == r[3] for p, r in zip(predicted, rows, strict=True)]) > 0.9
