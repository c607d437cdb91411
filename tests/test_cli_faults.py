"""The command line's promises under faults (issue 9), run as a user would, in a subprocess: every
fault below gives one line on stderr and exit status 2, never a traceback or a raw warning, and
leaves every output as it was, or says exactly which was written.

- A model file is checked before anything is built: its structure's types, its architecture
  against the tensors stored and against the file's size, finite weights and scaling.
- `fit` refuses a network that would not fit in memory, a negative seed, an input that is not a
  regular file, and a column whose values overflow float64 arithmetic (naming it).
- A prediction that is not a finite number is an error naming its line.
"""

import json
import os
import resource
import struct
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_cli import ROOT, run, write_csv
from test_cli_errors import assert_clean_failure, files

ROWS = [[i, (i * 7) % 5, 2.0 * i - (i * 7) % 5] for i in range(20)]


@pytest.fixture
def model(tmp_path):
    write_csv(tmp_path / "data.csv", ["a", "b", "y"], ROWS)
    code, _, err = run(
        "fit", "data.csv", "--target", "y", "--epochs", "3", "--out", "m.safetensors", cwd=tmp_path
    )
    assert code == 0, err
    return tmp_path / "m.safetensors"


def rewrite(model, name, structure_edit=None, tensor_edit=None):
    """A copy of the model file with its structure and tensors edited."""
    with safe_open(model, framework="numpy") as f:
        metadata = f.metadata()
    structure, tensors = json.loads(metadata["structure"]), load_file(model)
    if structure_edit:
        structure_edit(structure)
    if tensor_edit:
        tensor_edit(tensors)
    path = model.parent / name
    save_file(tensors, path, metadata={**metadata, "structure": json.dumps(structure)})
    return path.name


def predict_fails(tmp_path, model_name, *fragments):
    before = files(tmp_path)
    result = run("predict", model_name, "data.csv", "--out", "p.csv", cwd=tmp_path)
    assert_clean_failure(result, model_name, *fragments, folder=tmp_path, before=before)


def test_metadata_that_is_a_list_is_refused(tmp_path, model):
    blob = model.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    header["__metadata__"] = ["format", "chainrule"]
    text = json.dumps(header).encode()
    (tmp_path / "list.safetensors").write_bytes(
        struct.pack("<Q", len(text)) + text + blob[8 + length :]
    )
    predict_fails(tmp_path, "list.safetensors", "not a chainrule model file")


def test_an_architecture_larger_than_the_file_is_refused_before_it_is_built(tmp_path, model):
    def huge(structure):
        structure["model"]["layers"] = [2, 1_000_000_000, 1]

    predict_fails(tmp_path, rewrite(model, "huge.safetensors", huge), "claims", "bytes")


def test_feature_names_that_are_not_strings_are_refused(tmp_path, model):
    def numbers(structure):
        structure["model"]["features"] = [1, 2]

    predict_fails(tmp_path, rewrite(model, "names.safetensors", numbers), "strings")


@pytest.mark.parametrize(
    ("name", "edit", "fragment"),
    [
        ("nan_scale", lambda t: t["preprocessing.numbers.scale"].fill(np.nan), "not finite"),
        ("zero_scale", lambda t: t["preprocessing.numbers.scale"].fill(0.0), "by zero"),
        ("nan_weights", lambda t: t["net.0.weight"].fill(np.nan), "net.0.weight"),
    ],
)
def test_non_finite_or_zero_scaling_and_weights_are_refused(tmp_path, model, name, edit, fragment):
    predict_fails(tmp_path, rewrite(model, f"{name}.safetensors", tensor_edit=edit), fragment)


def test_a_zero_target_scale_is_refused(tmp_path, model):
    def zero(structure):
        structure["target_scaling"]["scale"] = 0.0

    predict_fails(tmp_path, rewrite(model, "zero_y.safetensors", zero), "not a positive number")


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_a_model_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, model, kind):
    path = {"folder": tmp_path / "dir", "fifo": tmp_path / "pipe", "device": "/dev/zero"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    before = files(tmp_path)
    assert_clean_failure(
        run("predict", path, "data.csv", cwd=tmp_path), str(path), folder=tmp_path, before=before
    )


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_fit_refuses_an_input_that_is_not_a_regular_file(tmp_path, kind):
    path = {"folder": tmp_path / "dir", "fifo": tmp_path / "pipe", "device": "/dev/zero"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    before = files(tmp_path)
    assert_clean_failure(
        run("fit", path, "--target", "y", cwd=tmp_path), str(path), folder=tmp_path, before=before
    )


def test_fit_refuses_a_network_that_would_not_fit_in_memory(tmp_path):
    write_csv(tmp_path / "data.csv", ["a", "b", "y"], ROWS)
    before = files(tmp_path)
    assert_clean_failure(
        run("fit", "data.csv", "--target", "y", "--hidden", "100000,100000", cwd=tmp_path),
        "needs about",
        "GiB",
        "--hidden",
        folder=tmp_path,
        before=before,
    )


def test_fit_refuses_a_negative_seed(tmp_path):
    write_csv(tmp_path / "data.csv", ["a", "b", "y"], ROWS)
    assert_clean_failure(
        run("fit", "data.csv", "--target", "y", "--seed", "-1", cwd=tmp_path), "--seed", ">= 0"
    )


@pytest.mark.parametrize("column", ["a", "y"])
def test_a_column_that_overflows_float64_is_named(tmp_path, column):
    rows = [[1e308 * (-1) ** i, i, i] if column == "a" else [i, i, 1e308] for i in range(20)]
    write_csv(tmp_path / "big.csv", ["a", "b", "y"], rows)
    before = files(tmp_path)
    assert_clean_failure(
        run("fit", "big.csv", "--target", "y", "--epochs", "2", cwd=tmp_path),
        f"column {column!r}",
        "too large for float64",
        folder=tmp_path,
        before=before,
    )


def test_a_prediction_that_is_not_finite_names_its_line(tmp_path, model):
    write_csv(tmp_path / "far.csv", ["a", "b"], [[1, 2], [1e308, 2]])
    before = files(tmp_path)
    assert_clean_failure(
        run("predict", model.name, "far.csv", "--out", "p.csv", cwd=tmp_path),
        "far.csv, line 3",
        "not a finite number",
        folder=tmp_path,
        before=before,
    )


def test_a_loss_plot_that_cannot_be_written_says_the_model_was(tmp_path):
    """A file-size limit that lets the small model file through but not the picture: the message
    names what was written and what was not, and no temporary file is left."""
    write_csv(tmp_path / "data.csv", ["a", "b", "y"], ROWS)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    done = subprocess.run(
        [sys.executable, "-m", "chainrule", "fit", "data.csv", "--target", "y", "--epochs", "3",
         "--hidden", "4", "--out", "m.safetensors"],
        cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT),
        preexec_fn=limit, timeout=120,
    )  # fmt: skip
    assert_clean_failure(
        (done.returncode, done.stdout, done.stderr),
        "the model was written to m.safetensors",
        "the loss plot m.loss.png could not be written",
    )
    assert files(tmp_path) == ["data.csv", "m.safetensors"]
