"""chainrule.sklearn's MLPs against scikit-learn's own: with the same seed they must follow the
same trajectory (weights and loss curve to rounding), so scikit-learn is the oracle."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn.neural_network
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import chainrule as cr
from chainrule.sklearn import MLPClassifier, MLPRegressor


def scaled(loader):
    x, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def fit_both(kind, x, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[kind](**params)
        theirs = getattr(sklearn.neural_network, kind)(**params)
        return ours.fit(x, y), theirs.fit(x, y)


@pytest.mark.parametrize(
    ("kind", "loader", "params"),
    [
        ("MLPClassifier", load_iris, {"activation": "relu"}),  # softmax, 3 classes
        ("MLPClassifier", load_breast_cancer, {"activation": "tanh"}),  # one logistic output
        ("MLPRegressor", load_diabetes, {"activation": "logistic"}),
        ("MLPClassifier", load_iris, {"solver": "sgd", "learning_rate_init": 0.1}),
        (
            "MLPRegressor",
            load_diabetes,
            {
                "solver": "sgd",
                "learning_rate_init": 0.01,
                "nesterovs_momentum": False,
                "alpha": 0.1,
            },
        ),
    ],
)
def test_same_seed_gives_scikit_learns_trajectory(kind, loader, params):
    x, y = scaled(loader)
    ours, theirs = fit_both(
        kind, x, y, hidden_layer_sizes=(8, 5), random_state=3, max_iter=15, batch_size=32, **params
    )
    assert ours.n_iter_ == theirs.n_iter_ == 15
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    if kind == "MLPClassifier":
        np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=1e-9)
        np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    else:
        np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-8)


def test_stopping_rule_is_scikit_learns():
    x, y = scaled(load_iris)
    ours, theirs = fit_both(
        "MLPClassifier",
        x,
        y,
        hidden_layer_sizes=(10,),
        random_state=0,
        learning_rate_init=0.05,
        tol=1e-3,
        n_iter_no_change=5,
    )
    assert ours.n_iter_ == theirs.n_iter_ < 200
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)


def test_warm_start_and_partial_fit_continue_like_scikit_learns():
    """A warm-started fit starts a new optimizer and partial_fit keeps it; each call reseeds the
    shuffling: scikit-learn's rules, so minibatch trajectories stay identical."""
    x, y = scaled(load_iris)
    runs = []
    for cls in (MLPClassifier, sklearn.neural_network.MLPClassifier):
        model = cls(
            hidden_layer_sizes=(6,), random_state=1, batch_size=32, max_iter=4, warm_start=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y).fit(x, y)
        for _ in range(3):
            model.partial_fit(x, y, classes=[0, 1, 2])
        runs.append(model)
    ours, theirs = runs
    assert len(ours.loss_curve_) == 11 and ours.n_iter_ == theirs.n_iter_ == 1
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-8, atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_non_finite_weights_are_an_error():
    x = np.array([[1e300, 1.0], [-1e300, 2.0], [3.0, 1e300]])
    with pytest.raises(ValueError, match="non-finite weights"), np.errstate(all="ignore"):
        MLPRegressor(hidden_layer_sizes=(3,), max_iter=3).fit(x, [1.0, 2.0, 3.0])


def test_partial_fit_needs_classes_first():
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(np.zeros((2, 2)), [0, 1])


def test_adam_keeps_the_epsilon_it_was_given():
    """scikit-learn's Adam divides eps by sqrt(1 - beta2^t) in each step's arithmetic; the
    optimizer's own eps stays the estimator's epsilon (the trajectory test shows the steps)."""
    x, y = scaled(load_iris)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, epsilon=1e-7).fit(x, y)
    assert [g["eps"] for g in model.optimizer_.param_groups] == [1e-7]


def test_probabilities_are_the_librarys_softmax_and_sigmoid():
    x, y = scaled(load_iris)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        three = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(x, y)
        two = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(x, y > 0)
    logits = torch.tensor(three._forward(x), dtype=torch.float64)
    np.testing.assert_allclose(three.predict_proba(x), torch.softmax(logits, 1).numpy(), rtol=1e-12)
    p = torch.sigmoid(torch.tensor(two._forward(x), dtype=torch.float64))[:, 0].numpy()
    np.testing.assert_allclose(two.predict_proba(x), np.column_stack([1 - p, p]), rtol=1e-12)


def test_string_labels_params_clone_pickle_and_pipeline():
    x, y = scaled(load_iris)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(12,), learning_rate_init=0.05, random_state=0, max_iter=300
        ),
    )
    model.fit(x, names)
    assert model.score(x, names) > 0.95
    assert set(model.predict(x)) <= set(names)
    estimator = model[-1]
    assert estimator.get_params()["hidden_layer_sizes"] == (12,)
    copy = clone(estimator).set_params(hidden_layer_sizes=(3, 2), activation="softplus")
    assert copy.get_params()["activation"] == "softplus" and not hasattr(copy, "model_")
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(x), model.predict_proba(x))
    assert isinstance(estimator.model_, cr.nn.Sequential)


def test_softplus_activation_and_multi_output_regression():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(200, 2))
    y = np.column_stack([x[:, 0] ** 2, np.sin(2 * x[:, 1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(
            hidden_layer_sizes=(32,),
            activation="softplus",
            learning_rate_init=0.01,
            batch_size=32,
            tol=0.0,  # the losses are small; scikit-learn's default tol would stop too soon
            random_state=0,
        ).fit(x, y)
    assert model.predict(x).shape == (200, 2)
    assert model.score(x, y) > 0.9


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"solver": "lbfgs"}, "no L-BFGS"),
        ({"activation": "swish"}, "activation must be"),
        ({"hidden_layer_sizes": (0,)}, "positive integers"),
        ({"max_iter": 0}, "max_iter"),
        ({"batch_size": -1}, "batch_size"),
    ],
)
def test_bad_hyperparameters_are_named(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        MLPRegressor(**params).fit(np.zeros((4, 2)), np.zeros(4))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="only one class"):
        MLPClassifier().fit(np.zeros((3, 2)), ["a", "a", "a"])
