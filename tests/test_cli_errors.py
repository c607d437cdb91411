"""Bad input on the command line: each fault ends in one line on stderr naming the problem, exit
status 2, no traceback and no file written. Run as a user would, in a subprocess."""

import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_cli import run, write_csv

GOOD = "a,b,y\n1,2,3\n2,3,5\n3,5,8\n4,4,8\n5,1,6\n"


def assert_clean_failure(result, *fragments, folder=None, before=None):
    code, out, err = result
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("chainrule ") and ": error: " in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    if folder is not None:
        # Nothing new: no model, no plot, no leftover temporary file.
        assert sorted(p.name for p in folder.iterdir()) == before


def files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["is empty"]),
        ("a,b,y\n", ["has a header but no data rows"]),
        ("a,b,a,y\n1,2,3,4\n", ["names column 'a' twice", "columns 1 and 3"]),
        (
            "a,b,y\n1,2,3\n4,x7,6\n",
            ["line 3", "column 'b'", "'x7' is not a number", "--drop-missing"],
        ),
        ("a,b,y\n1,2,3\n4,5\n", ["line 3", "2 fields", "3 columns"]),
        ("a,b,y\n1,2,cat\n3,4,cat\n5,6,cat\n", ["only one class", "'cat'"]),
    ],
)
def test_faulty_tables_fail_cleanly(tmp_path, text, fragments):
    (tmp_path / "data.csv").write_text(text)
    before = files(tmp_path)
    result = run("fit", "data.csv", "--target", "y", "--epochs", "1", cwd=tmp_path)
    assert_clean_failure(result, "data.csv", *fragments, folder=tmp_path, before=before)


def test_missing_data_file(tmp_path):
    assert_clean_failure(
        run("fit", "absent.csv", "--target", "y", cwd=tmp_path),
        "absent.csv: no such file",
        folder=tmp_path,
        before=[],
    )


def test_unknown_target_and_feature_columns(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD)
    before = files(tmp_path)
    assert_clean_failure(
        run("fit", "data.csv", "--target", "z", cwd=tmp_path),
        "no column 'z'",
        "'a', 'b', 'y'",
        folder=tmp_path,
        before=before,
    )
    assert_clean_failure(
        run("fit", "data.csv", "--target", "y", "--features", "a,q", cwd=tmp_path),
        "no column 'q'",
        folder=tmp_path,
        before=before,
    )
    assert_clean_failure(
        run("fit", "data.csv", "--target", "y", "--features", "a,a", cwd=tmp_path),
        "named twice",
        folder=tmp_path,
        before=before,
    )


def test_data_without_target_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD)
    assert_clean_failure(run("fit", "data.csv", cwd=tmp_path), "needs --target")


def test_lesson_fit_refuses_options_that_need_a_table(tmp_path):
    assert_clean_failure(run("fit", "--target", "y", cwd=tmp_path), "need a DATA.csv")
    assert_clean_failure(run("fit", "--task", "classification", cwd=tmp_path), "is a regression")
    assert files(tmp_path) == []


def test_loss_that_does_not_fit_the_task(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD)
    assert_clean_failure(
        run(
            "fit",
            "data.csv",
            "--target",
            "y",
            "--task",
            "regression",
            "--loss",
            "cross-entropy",
            cwd=tmp_path,
        ),
        "--loss cross-entropy",
    )


def test_output_folder_that_does_not_exist_is_refused_before_training(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD)
    before = files(tmp_path)
    assert_clean_failure(
        run("fit", "data.csv", "--target", "y", "--out", "nowhere/m.safetensors", cwd=tmp_path),
        "nowhere",
        "does not exist",
        folder=tmp_path,
        before=before,
    )


def test_bad_option_values_are_usage_errors(tmp_path):
    for args in (
        ["--hidden", "2,x"],
        ["--hidden", "0"],
        ["--lr", "-1"],
        ["--val-fraction", "1.5"],
        ["--activation", "swish"],
        ["--epochs", "0"],
    ):
        assert_clean_failure(
            run("fit", *args, cwd=tmp_path), "chainrule fit: error: ", "(see chainrule fit --help)"
        )
    assert files(tmp_path) == []


@pytest.fixture
def model(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD)
    assert (
        run(
            "fit",
            "data.csv",
            "--target",
            "y",
            "--epochs",
            "1",
            "--out",
            "m.safetensors",
            cwd=tmp_path,
        )[0]
        == 0
    )
    return tmp_path / "m.safetensors"


def test_corrupt_and_foreign_model_files_are_refused(tmp_path, model):
    blob = model.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    (tmp_path / "header.safetensors").write_bytes(struct.pack("<Q", 5) + b"{{{{{")
    save_file({"w": np.zeros(3)}, tmp_path / "foreign.safetensors", metadata={"format": "pt"})
    # A chainrule header whose tensors do not fit the architecture it states.
    with safe_open(model, framework="numpy") as f:
        metadata = f.metadata()
    structure = json.loads(metadata["structure"])
    structure["model"]["layers"][1] -= 1
    save_file(
        load_file(model),
        tmp_path / "mismatch.safetensors",
        metadata={**metadata, "structure": json.dumps(structure)},
    )
    structure["model"]["layers"][1] += 1
    structure["model"]["features"] = ["a"]
    structure["model"]["kinds"] = {"a": "number"}
    save_file(
        load_file(model),
        tmp_path / "inconsistent.safetensors",
        metadata={**metadata, "structure": json.dumps(structure)},
    )
    cases = {
        "truncated.safetensors": "truncated",
        "noise.safetensors": "not safetensors",
        "tiny.safetensors": "too short",
        "header.safetensors": "header is not valid JSON",
        "foreign.safetensors": "without chainrule's model metadata",
        "data.csv": "not safetensors",
        "absent.safetensors": "no such model file",
        "mismatch.safetensors": "needs",
        "inconsistent.safetensors": "has shape (2,), but expected (1,)",
    }
    before = files(tmp_path)
    for name, fragment in cases.items():
        assert_clean_failure(
            run("predict", name, "data.csv", "--out", "p.csv", cwd=tmp_path),
            name,
            fragment,
            folder=tmp_path,
            before=before,
        )


def test_predict_faults(tmp_path, model):
    write_csv(tmp_path / "only_a.csv", ["a"], [[1], [2]])
    write_csv(tmp_path / "gap.csv", ["a", "b"], [[1, 2], [3, "?"], [5, 6]])
    before = files(tmp_path)
    assert_clean_failure(
        run("predict", model.name, "only_a.csv", cwd=tmp_path),
        "no column 'b'",
        folder=tmp_path,
        before=before,
    )
    # A missing cell is imputed (as in training) unless --drop-missing skips its row.
    code, out, _ = run("predict", model.name, "gap.csv", cwd=tmp_path)
    assert code == 0 and len(out.strip().splitlines()) == 4
    assert_clean_failure(
        run("predict", model.name, "gap.csv", "--out", "no/p.csv", cwd=tmp_path),
        "does not exist",
        folder=tmp_path,
        before=before,
    )
    code, out, _ = run("predict", model.name, "gap.csv", "--drop-missing", cwd=tmp_path)
    assert code == 0 and len(out.strip().splitlines()) == 3


def test_explain_output_folder_that_does_not_exist(tmp_path, model):
    before = files(tmp_path)
    assert_clean_failure(
        run("explain", model.name, "data.csv", "--out", "no/r.html", cwd=tmp_path),
        "does not exist",
        folder=tmp_path,
        before=before,
    )


def test_explain_without_data_for_a_csv_model_asks_for_it(tmp_path, model):
    assert_clean_failure(run("explain", model.name, cwd=tmp_path), "give that")


def test_demo_refuses_a_file_for_its_folder(tmp_path):
    (tmp_path / "taken").write_text("mine")
    assert_clean_failure(
        run("demo", "--out", "taken", cwd=tmp_path),
        "is a file, not a folder",
        folder=tmp_path,
        before=["taken"],
    )
    assert (tmp_path / "taken").read_text() == "mine"


def test_explain_rejects_classes_the_model_never_saw(tmp_path):
    write_csv(tmp_path / "train.csv", ["x", "c"], [[i, "ab"[i % 2]] for i in range(8)])
    write_csv(tmp_path / "other.csv", ["x", "c"], [[1, "a"], [2, "z"]])
    assert (
        run(
            "fit",
            "train.csv",
            "--target",
            "c",
            "--epochs",
            "1",
            "--out",
            "m.safetensors",
            cwd=tmp_path,
        )[0]
        == 0
    )
    assert_clean_failure(
        run("explain", "m.safetensors", "other.csv", cwd=tmp_path), "['z']", "not seen in training"
    )


def test_divergent_training_is_reported_and_nothing_is_written(tmp_path):
    write_csv(tmp_path / "big.csv", ["x", "y"], [[i * 1000.0, i * 7.0] for i in range(30)])
    before = files(tmp_path)
    assert_clean_failure(
        run(
            "fit",
            "big.csv",
            "--target",
            "y",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--epochs",
            "20",
            cwd=tmp_path,
        ),
        "training diverged",
        "smaller --lr",
        folder=tmp_path,
        before=before,
    )


def test_a_stray_word_in_a_number_column_is_named(tmp_path):
    write_csv(
        tmp_path / "pets.csv", ["weight", "age", "y"], [[3, 1, 2], ["heavy", 2, 3], [4, 3, 4]]
    )
    assert_clean_failure(
        run("fit", "pets.csv", "--target", "y", cwd=tmp_path),
        "line 3",
        "column 'weight'",
        "'heavy' is not a number",
        "--drop-missing",
    )


def test_outputs_never_overwrite_an_input(tmp_path, model):
    before = files(tmp_path)
    data = (tmp_path / "data.csv").read_text()
    assert_clean_failure(
        run("fit", "data.csv", "--target", "y", "--out", "data.csv", cwd=tmp_path),
        "is an input file",
        folder=tmp_path,
        before=before,
    )
    assert_clean_failure(
        run("predict", model.name, "data.csv", "--out", "./data.csv", cwd=tmp_path),
        "is an input file",
        folder=tmp_path,
        before=before,
    )
    assert_clean_failure(
        run("explain", model.name, "data.csv", "--out", model.name, cwd=tmp_path),
        "is an input file",
        folder=tmp_path,
        before=before,
    )
    assert (tmp_path / "data.csv").read_text() == data
