"""cr.datasets: the built-in data, the CSV loader's parsing and its error messages, and the
scikit-learn data sets as tensors."""

import numpy as np
import pytest
import sklearn.datasets

import chainrule as cr
from chainrule.datasets import DataError, load_csv


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_dosage_is_the_lessons_three_points():
    x, y = cr.datasets.dosage(return_X_y=True)
    assert x.shape == (3, 1) and y.shape == (3,)
    assert x[:, 0].tolist() == [0.0, 0.5, 1.0]
    assert y.tolist() == [0.0, 1.0, 0.0]
    assert x.dtype == cr.get_default_dtype()
    assert cr.datasets.dosage(dtype=cr.float64).data.dtype == cr.float64


def test_slides_example_is_fitted_exactly_by_its_documented_parameters():
    table = cr.datasets.slides_example(dtype=cr.float64)
    x, y = table.data.numpy(), table.target.numpy()
    assert table.feature_names == ["x1", "x2"] and table.target_name == "y"
    # Least squares of y on (1, x1, x2) recovers b, w1, w2 with zero residual.
    design = np.column_stack([np.ones(len(x)), x])
    solution, residual, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    p = cr.datasets.SLIDES_PARAMETERS
    np.testing.assert_allclose(solution, [p["b"], p["w1"], p["w2"]], atol=1e-12)
    assert rank == 3


def test_load_csv_reads_features_and_a_numeric_target(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3.5\n4,5,6.25\n7,8.5,9\n")
    table = load_csv(path, "y", dtype=cr.float64)
    np.testing.assert_array_equal(table.data.numpy(), [[1, 2], [4, 5], [7, 8.5]])
    np.testing.assert_array_equal(table.target.numpy(), [3.5, 6.25, 9])
    assert table.feature_names == ["a", "b"] and table.task == "regression"
    x, y = load_csv(path, "y", features=["b"], return_X_y=True)
    assert x.shape == (3, 1) and x[:, 0].tolist() == [2, 5, 8.5]


def test_load_csv_maps_text_labels_to_sorted_classes(tmp_path):
    path = write(tmp_path, "x,kind\n1,dog\n2,cat\n3,dog\n")
    table = load_csv(path, "kind")
    assert table.classes == ["cat", "dog"]
    assert table.target.tolist() == [1, 0, 1] and table.target.dtype == cr.int64


def test_numeric_class_labels_sort_numerically(tmp_path):
    rows = "".join(f"{i},{label}\n" for i, label in enumerate([10, 9, 2, 10, 9, 2, 2]))
    table = load_csv(write(tmp_path, "x,c\n" + rows), "c")
    assert table.task == "classification" and table.classes == ["2", "9", "10"]


def test_task_inference_follows_the_documented_rule():
    assert cr.datasets.infer_task(["a", "b", "a"]) == "classification"
    assert cr.datasets.infer_task(["0", "1", "1", "0"]) == "classification"
    # Too few rows per value (the lesson's 0, 1, 0) and decimals are quantities.
    assert cr.datasets.infer_task(["0", "1", "0"]) == "regression"
    assert cr.datasets.infer_task(["0.0", "1.0", "1.0", "0.0"]) == "regression"
    many = [str(i % 11) for i in range(100)]
    assert cr.datasets.infer_task(many) == "regression"


def test_task_can_be_forced(tmp_path):
    path = write(tmp_path, "x,y\n1,0\n2,1\n3,1\n4,0\n")
    assert load_csv(path, "y").task == "classification"
    assert load_csv(path, "y", task="regression").target.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_missing_and_non_numeric_cells_name_line_and_column(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n4,abc,6\n7,,9\n")
    with pytest.raises(DataError) as info:
        load_csv(path, "y")
    message = str(info.value)
    assert "line 3" in message and "'b'" in message and "'abc' is not a number" in message
    assert "2 rows" in message and "--drop-missing" in message


def test_drop_missing_drops_exactly_the_bad_rows(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n4,abc,6\nNA,8,9\n10,11,\n12,13,14\n5,inf,1\n")
    table = load_csv(path, "y", drop_missing=True)
    assert table.data[:, 0].tolist() == [1, 12]
    assert table.dropped_rows == [3, 4, 5, 7]


def test_missing_target_is_reported_as_missing(tmp_path):
    path = write(tmp_path, "a,y\n1,2\n3,\n")
    with pytest.raises(DataError, match=r"line 3, column 'y': missing value"):
        load_csv(path, "y")


@pytest.mark.parametrize(
    ("text", "target", "features", "pattern"),
    [
        ("", "y", None, "is empty"),
        ("\n\n", "y", None, "is empty"),
        ("a,y\n", "y", None, "header but no data rows"),
        ("a,a,y\n1,2,3\n", "y", None, "names column 'a' twice"),
        ("a,,y\n1,2,3\n", "y", None, "column 2 of the header has no name"),
        ("a,y\n1,2\n", "z", None, "no column 'z' \\(the target\\); its columns are 'a', 'y'"),
        ("a,y\n1,2\n", "y", ["q"], "no column 'q' \\(a feature\\)"),
        ("a,y\n1,2\n", "y", ["a", "a"], "feature column 'a' is named twice"),
        ("a,y\n1,2\n", "y", ["y"], "both the target and a feature"),
        ("y\n1\n", "y", None, "no feature columns"),
        ("a,y\n1,2\n3,4,5\n", "y", None, "line 3: 3 fields, but the header has 2 columns"),
    ],
)
def test_malformed_tables_raise_one_line_errors(tmp_path, text, target, features, pattern):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        load_csv(path, target, features=features)
    assert "\n" not in str(info.value)


def test_unreadable_files_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "absent.csv", "y")
    with pytest.raises(DataError, match="is a folder"):
        load_csv(tmp_path, "y")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"a,y\n\xff\xfe\x00\x01,2\n")
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        load_csv(binary, "y")


def test_every_row_bad_with_drop_missing_is_an_error(tmp_path):
    path = write(tmp_path, "a,b,y\n1,x,1\n,2,2\n")
    with pytest.raises(DataError, match="none is left"):
        load_csv(path, "y", drop_missing=True)


def test_byte_order_mark_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa,y\n1,2\n\n3,4\n".encode())
    table = load_csv(path, "y")
    assert table.feature_names == ["a"] and table.target.tolist() == [2.0, 4.0]


def test_features_only_reading_for_prediction(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n3,4\n")
    table = load_csv(path, None, features=["b"])
    assert table.target is None and table.data[:, 0].tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    ("name", "classification"),
    [
        ("digits", True),
        ("iris", True),
        ("wine", True),
        ("breast_cancer", True),
        ("diabetes", False),
    ],
)
def test_sklearn_data_sets_arrive_as_tensors_unchanged(name, classification):
    table = getattr(cr.datasets, f"load_{name}")(dtype=cr.float64)
    x, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    assert isinstance(table.data, cr.Tensor) and isinstance(table.target, cr.Tensor)
    np.testing.assert_array_equal(table.data.numpy(), x)
    np.testing.assert_array_equal(table.target.numpy(), y)
    assert len(table.feature_names) == x.shape[1]
    if classification:
        assert table.target.dtype == cr.int64 and len(table.classes) == len(np.unique(y))
    else:
        assert table.classes is None and table.target.dtype == cr.float64


def test_a_text_feature_column_is_named_rather_than_dropped(tmp_path):
    path = write(tmp_path, "color,x,y\nred,1,2\n,2,3\nblue,3,4\n")
    with pytest.raises(
        DataError, match=r"column 'color' holds text, not numbers \('red' on line 2\)"
    ):
        load_csv(path, "y", drop_missing=True)
    assert load_csv(path, "y", features=["x"]).data.shape == (3, 1)


def test_semicolon_and_tab_separated_files_are_recognised(tmp_path):
    semi = write(tmp_path, "a;b;y\n1,5;2;3\n4;5;6\n", name="semi.csv")
    # With semicolons the comma is text, so '1,5' is not a number: the cell is reported.
    with pytest.raises(DataError, match=r"'1,5' is not a number"):
        load_csv(semi, "y")
    tab = write(tmp_path, "a\tb\ty\n1\t2\t3\n", name="tab.csv")
    assert load_csv(tab, "y").data.tolist() == [[1.0, 2.0]]
    assert load_csv(write(tmp_path, "a;b;y\n4;5;6\n"), "y").target.tolist() == [6.0]
