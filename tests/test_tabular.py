"""chainrule.tabular: a real table (text columns, missing cells, a text target) read, preprocessed
by scikit-learn's transformers, fitted, saved as one cr.save checkpoint and loaded back."""

import json

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from chainrule import nn, tabular
from chainrule.datasets import DataError


@pytest.fixture
def penguins(tmp_path):
    """A palmerpenguins-like table: a text column with gaps, numbers with gaps, a text target."""
    rng = np.random.default_rng(0)
    n = 120
    species = rng.choice(["Adelie", "Gentoo", "Chinstrap"], n)
    base = pd.Series(species).map({"Adelie": 38.0, "Gentoo": 47.0, "Chinstrap": 49.0})
    frame = pd.DataFrame(
        {
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
            "bill_length_mm": base + rng.normal(0, 1.5, n),
            "flipper_length_mm": 180 + 10 * (species == "Gentoo") + rng.normal(0, 3, n),
            "species": species,
        }
    )
    frame.loc[::9, "bill_length_mm"] = np.nan
    frame.loc[::13, "island"] = np.nan
    frame.loc[5, "species"] = np.nan
    frame.to_csv(tmp_path / "penguins.csv", index=False)
    return tmp_path / "penguins.csv", frame


def test_text_columns_and_missing_cells_are_read_as_they_are(penguins):
    path, original = penguins
    frame, task = tabular.read_frame(path, "species")
    assert task == "classification"
    assert frame.kinds == {
        "island": "text",
        "bill_length_mm": "number",
        "flipper_length_mm": "number",
    }
    # The row without a target is dropped; the missing feature cells stay missing (NaN).
    assert len(frame.rows) == 119 and frame.dropped == [7]
    bill = frame.x[:, 1].astype(float)
    assert np.isnan(bill).sum() == original["bill_length_mm"].drop(5).isna().sum()
    dropped, _ = tabular.read_frame(path, "species", drop_missing=True)
    assert len(dropped.rows) == original.dropna().shape[0]


def test_preprocessing_is_what_scikit_learns_transformers_learn_on_the_training_split(penguins):
    path, _ = penguins
    frame, task = tabular.read_frame(path, "species")
    result = tabular.fit(frame, task, epochs=3, seed=1)
    train = frame.take(result.train_rows)
    state = result.model.preprocessing.state()
    numbers = train.x[:, 1:].astype(float)
    np.testing.assert_allclose(state["numbers"]["mean"], np.nanmean(numbers, axis=0))
    np.testing.assert_allclose(state["numbers"]["scale"], np.nanstd(numbers, axis=0))
    islands = {v for v in train.x[:, 0] if isinstance(v, str)} | {tabular.MISSING_CATEGORY}
    assert state["categories"] == [sorted(islands)]
    inputs = result.model.inputs(train)
    assert inputs.shape == (len(train.rows), 2 + len(islands))
    # A missing number becomes the mean (0 once standardised); a missing text its own category.
    assert (inputs[np.isnan(numbers[:, 0]), 0] == 0).all()
    assert result.model.spec["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_fit_learns_a_real_table_and_stops_early_keeping_the_best_epoch(penguins):
    path, _ = penguins
    frame, task = tabular.read_frame(path, "species")
    result = tabular.fit(frame, task, epochs=300, patience=5)
    assert result.metrics["accuracy"] >= 0.9
    history = result.model.history
    assert result.epochs == len(history["train_loss"]) == len(history["val_loss"]) < 300
    assert history["val_loss"][result.best_epoch - 1] == min(history["val_loss"])


def test_a_saved_model_loads_back_with_the_same_predictions_and_no_pickle(tmp_path, penguins):
    path, _ = penguins
    frame, task = tabular.read_frame(path, "species")
    model = tabular.fit(frame, task, epochs=5).model
    model.save(tmp_path / "m.safetensors")
    loaded = tabular.TabularModel.load(tmp_path / "m.safetensors")
    _, expected = model.predict(frame)
    _, got = loaded.predict(frame)
    np.testing.assert_array_equal(got, expected)
    with safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        structure = json.loads(f.metadata()["structure"])
        assert "preprocessing.numbers.mean" in f.keys()
    assert structure["preprocessing"]["categories"] == model.preprocessing.state()["categories"]


def test_an_unseen_category_encodes_as_no_known_category(tmp_path, penguins):
    path, _ = penguins
    frame, task = tabular.read_frame(path, "species")
    model = tabular.fit(frame, task, epochs=2).model
    (tmp_path / "new.csv").write_text("island,bill_length_mm,flipper_length_mm\nMars,40,190\n")
    new, _ = tabular.read_frame(tmp_path / "new.csv", None, frame.features, frame.kinds)
    assert model.inputs(new)[0, 2:].tolist() == [0.0] * (model.inputs(new).shape[1] - 2)


def test_a_regression_target_is_standardised_and_predicted_in_its_units(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 10, size=(200, 2))
    y = 1000 + 300 * x[:, 0] - 50 * x[:, 1]
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y}).to_csv(tmp_path / "t.csv", index=False)
    frame, task = tabular.read_frame(tmp_path / "t.csv", "y")
    result = tabular.fit(frame, task)
    mean, scale = result.model.target_scaling
    assert mean == pytest.approx(y[result.train_rows].mean())
    assert scale == pytest.approx(y[result.train_rows].std())
    assert result.metrics["R2"] > 0.99


def test_a_mixed_column_names_its_first_stray_cell(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,2\n2,4\nthree,6\n")
    with pytest.raises(DataError, match=r"line 4, column 'a': 'three' is not a number"):
        tabular.read_frame(tmp_path / "t.csv", "y")


def test_parameter_shapes_are_those_build_network_makes():
    sizes = [5, 4, 3, 2]
    for activation, module in tabular.ACTIVATIONS.items():
        network = tabular.build_network(sizes, activation)
        shapes = {k: tuple(v.shape) for k, v in network.state_dict().items()}
        assert shapes == tabular.parameter_shapes(sizes, activation)
        kinds = [type(m) for m in network]
        assert kinds.count(nn.Linear) == 3 and (module is None or kinds.count(module) == 2)


def test_check_memory_refuses_what_the_machine_cannot_hold():
    tabular.check_memory([10, 64, 1])
    with pytest.raises(tabular.TabularError, match=r"needs about .* GiB"):
        tabular.check_memory([10, 100_000, 100_000, 1])
