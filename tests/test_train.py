"""cr.train.fit: stop rules, history, callbacks (the explainer's interface), progress bar; and the
real results: the lesson's network with all seven parameters fitted from a seeded random start,
an MLP and a small CNN on scikit-learn's digits."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import chainrule as cr
from chainrule import lesson, nn, optim
from chainrule.data import DataLoader, TensorDataset


def _dosage_loader():
    x = cr.tensor(lesson.DOSAGE, dtype=cr.float64).reshape(3, 1)
    y = cr.tensor(lesson.EFFICACY, dtype=cr.float64).reshape(3, 1)
    return DataLoader(TensorDataset(x, y), batch_size=3)


def _lesson_network():
    """1 input, 2 softplus hidden nodes, 1 output: w1, b1, w2, b2 in layer 0, w3, w4, b3 in
    layer 2."""
    return nn.Sequential(nn.Linear(1, 2), nn.Softplus(), nn.Linear(2, 1)).double()


def _known_weights(model):
    k = lesson.KNOWN
    model.load_state_dict(
        {
            "0.weight": [[k["w1"]], [k["w2"]]],
            "0.bias": [k["b1"], k["b2"]],
            "2.weight": [[k["w3"], k["w4"]]],
            "2.bias": [0.0],
        }
    )


class Recorder:
    def __init__(self, stop_at=None):
        self.steps, self.epochs, self.stop_at = [], [], stop_at

    def on_step(self, info):
        self.steps.append(info)
        return self.stop_at is not None and info.step >= self.stop_at

    def on_epoch(self, info):
        self.epochs.append(info)


def test_lessons_b3_descent_with_the_step_size_stop_rule():
    """Only b3 trains (the lesson's first exercise): slope -15.7, step size -1.57, b3 -> 1.57 ->
    2.19 -> ... -> 2.61, stopping once the step size is below 0.001."""
    model = _lesson_network()
    _known_weights(model)
    b3 = model[2].bias
    recorder = Recorder()
    history = cr.train.fit(
        model,
        nn.SSR(),
        optim.SGD([b3], lr=0.1),
        _dosage_loader(),
        max_steps=1000,
        min_step_size=0.001,
        callbacks=[recorder],
        progress=False,
    )
    assert history.stop_reason == "min_step_size"
    first, second = recorder.steps[0], recorder.steps[1]
    assert first.params["2.bias"].grad.item() == pytest.approx(-15.7, abs=0.05)
    # the lesson's step size is lr * slope = -1.57; the value changes by minus that
    assert first.params["2.bias"].change.item() == pytest.approx(1.57, abs=0.005)
    assert first.params["2.bias"].after.item() == pytest.approx(1.57, abs=0.005)
    assert second.params["2.bias"].after.item() == pytest.approx(2.19, abs=0.005)
    assert b3.item() == pytest.approx(2.61, abs=0.005)
    assert history.step_loss[0] == pytest.approx(20.4, abs=0.05)
    # The last step is the first one below the threshold; the one before was not.
    assert abs(recorder.steps[-1].params["2.bias"].change.item()) < 0.001
    assert abs(recorder.steps[-2].params["2.bias"].change.item()) >= 0.001


def test_lesson_network_fits_all_seven_parameters_from_a_seeded_random_start():
    cr.manual_seed(0)
    model = _lesson_network()
    # The lesson's start: weights from a standard normal, biases at zero.
    for p in model.parameters():
        nn.init.normal_(p) if p.ndim == 2 else nn.init.zeros_(p)
    assert sum(p.numel() for p in model.parameters()) == 7
    history = cr.train.fit(
        model,
        nn.SSR(),
        optim.Adam(model.parameters(), lr=0.05),
        _dosage_loader(),
        max_steps=5000,
        loss_target=1e-3,
        progress=False,
    )
    x, y = next(iter(_dosage_loader()))
    with cr.no_grad():
        ssr = nn.SSR()(model(x), y).item()
    assert history.stop_reason == "loss_target"
    assert ssr < 1e-3


def _digits(shape):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    mean, std = x_train.mean(), x_train.std()  # statistics of the training part only

    def dataset(x, y):
        x = ((x - mean) / std).astype(np.float32).reshape(shape)
        return TensorDataset(cr.tensor(x), cr.tensor(y.astype(np.int64)))

    return dataset(x_train, y_train), dataset(x_test, y_test)


def _train_digits(model, shape, epochs, lr):
    train, test = _digits(shape)
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    with threadpool_limits(1):  # small matrices: BLAS threads only contend
        history = cr.train.fit(
            model,
            nn.CrossEntropyLoss(),
            opt,
            DataLoader(train, batch_size=32, shuffle=True, seed=0),
            epochs=epochs,
            progress=False,
            scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
            metrics={"accuracy": cr.train.accuracy},
        )
        result = cr.train.evaluate(
            model, DataLoader(test, batch_size=512), metrics={"accuracy": cr.train.accuracy}
        )
    return history, result["accuracy"]


def test_mlp_reaches_97_percent_on_digits():
    cr.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    history, accuracy = _train_digits(model, (-1, 64), epochs=20, lr=3e-3)
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f}"
    assert history.metrics["accuracy"][-1] > history.metrics["accuracy"][0]


def test_small_cnn_reaches_98_percent_on_digits():
    cr.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
    )
    _, accuracy = _train_digits(model, (-1, 1, 8, 8), epochs=10, lr=1e-2)
    assert accuracy >= 0.98, f"test accuracy {accuracy:.4f}"


# ---- the loop's API -------------------------------------------------------------------------


def _regression(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    return TensorDataset(cr.tensor(x), cr.tensor(y))


def _linear_model():
    cr.manual_seed(1)
    return nn.Linear(3, 1).double()


def test_history_records_every_step_and_epoch_and_metrics():
    model = _linear_model()
    loader = DataLoader(_regression(), batch_size=16)  # 16, 16, 8
    history = cr.train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.05),
        loader,
        epochs=4,
        metrics={"mae": lambda out, y: float(np.abs(out._data - y._data).mean())},
        progress=False,
    )
    assert history.stop_reason == "epochs"
    assert (history.steps, history.epochs) == (12, 4)
    assert len(history.step_loss) == 12 and len(history.epoch_loss) == 4
    # epoch loss is the batch losses weighted by batch size
    np.testing.assert_allclose(
        history.epoch_loss[0], np.dot(history.step_loss[:3], [16, 16, 8]) / 40
    )
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    assert len(history.metrics["mae"]) == 4


def test_max_steps_stops_exactly():
    model = _linear_model()
    history = cr.train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.05),
        DataLoader(_regression(), batch_size=8),
        max_steps=7,
        progress=False,
    )
    assert history.stop_reason == "max_steps" and history.steps == 7
    assert history.epochs == 2 and len(history.epoch_loss) == 2


def test_loss_target_stops_before_stepping_past_it():
    model = _linear_model()
    loader = DataLoader(_regression(), batch_size=40)
    history = cr.train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.1),
        loader,
        max_steps=10_000,
        loss_target=1e-4,
        progress=False,
    )
    assert history.stop_reason == "loss_target"
    assert history.step_loss[-1] <= 1e-4 < history.step_loss[-2]
    x, y = next(iter(loader))
    with cr.no_grad():
        assert nn.MSELoss()(model(x), y).item() == pytest.approx(history.step_loss[-1])


def test_callbacks_see_before_gradient_and_after_of_every_parameter():
    model = _linear_model()
    recorder = Recorder()
    opt = optim.SGD(model.parameters(), lr=0.05)
    cr.train.fit(
        model,
        nn.MSELoss(),
        opt,
        DataLoader(_regression(), batch_size=20),
        epochs=2,
        callbacks=[recorder],
        progress=False,
    )
    assert [info.step for info in recorder.steps] == [1, 2, 3, 4]
    assert [info.epoch for info in recorder.steps] == [1, 1, 2, 2]
    for info in recorder.steps:
        assert set(info.params) == {"weight", "bias"}
        assert info.model is model and info.optimizer is opt and info.lr == 0.05
        assert isinstance(info.loss, float) and info.batch_size == 20
        for p in info.params.values():
            np.testing.assert_allclose(p.after, p.before - 0.05 * p.grad, rtol=1e-15)
    for earlier, later in zip(recorder.steps, recorder.steps[1:], strict=False):
        np.testing.assert_array_equal(later.params["weight"].before, earlier.params["weight"].after)
    np.testing.assert_array_equal(recorder.steps[-1].params["weight"].after, model.weight._data)
    assert [info.epoch for info in recorder.epochs] == [1, 2]
    assert recorder.epochs[-1].loss == pytest.approx(np.mean([s.loss for s in recorder.steps[2:]]))


def test_a_callback_returning_true_stops_training():
    model = _linear_model()
    history = cr.train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.05),
        DataLoader(_regression(), batch_size=4),
        epochs=5,
        callbacks=[Recorder(stop_at=3)],
        progress=False,
    )
    assert history.stop_reason == "callback" and history.steps == 3


def test_progress_bar_shows_the_loss_when_asked_and_is_off_when_not_a_terminal(capsys):
    model = _linear_model()
    cr.train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.05),
        DataLoader(_regression(), batch_size=20),
        epochs=2,
    )
    assert capsys.readouterr().out == ""  # pytest's stdout is not a terminal
    cr.train.fit(
        model,
        nn.MSELoss(),
        optim.SGD(model.parameters(), lr=0.05),
        DataLoader(_regression(), batch_size=20),
        epochs=2,
        progress=True,
    )
    out = capsys.readouterr().out
    assert "4/4" in out and "loss=" in out


def test_fit_needs_an_end_and_evaluate_restores_the_mode():
    model = _linear_model()
    loader = DataLoader(_regression(), batch_size=20)
    with pytest.raises(ValueError, match="give epochs= or max_steps="):
        cr.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), loader)
    model.train()
    result = cr.train.evaluate(model, loader, loss_fn=nn.MSELoss())
    assert model.training and result["loss"] > 0


def test_on_after_backward_sees_the_gradients_and_can_change_them_before_the_step():
    model = _lesson_network()
    _known_weights(model)
    seen = []

    class ClipToZero:
        def on_after_backward(self, info):
            seen.append((info.step, info.epoch, info.batch_size, model[2].bias.grad.item()))
            model[2].bias.grad._data[...] = 0.0

    before = model[2].bias._data.copy()
    cr.train.fit(
        model, nn.SSR(), optim.SGD(model.parameters(), lr=0.1), _dosage_loader(), max_steps=3,
        callbacks=[ClipToZero()], progress=False,
    )  # fmt: skip
    # The lesson's first slope of b3 is -15.7; the zeroed gradient left b3 where it was.
    assert [s[:3] for s in seen] == [(1, 1, 3), (2, 2, 3), (3, 3, 3)]
    assert seen[0][3] == pytest.approx(-15.7, abs=0.05)
    np.testing.assert_array_equal(model[2].bias._data, before)


def test_early_stopping_keeps_the_best_weights_and_stops_after_patience():
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.normal(size=(64, 3)))
    y = cr.tensor(rng.normal(size=(64, 1)))  # noise: the held-out loss soon stops improving
    held_out = DataLoader(TensorDataset(cr.tensor(rng.normal(size=(32, 3))), y[:32]), 32)
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1)).double()
    weights = []

    class Snapshot:
        def on_epoch(self, info):
            weights.append(model[0].weight._data.copy())

    early = cr.train.EarlyStopping(held_out, nn.MSELoss(), patience=3)
    history = cr.train.fit(
        model, nn.MSELoss(), optim.Adam(model.parameters(), lr=0.05),
        DataLoader(TensorDataset(x, y), 16), epochs=200, callbacks=[Snapshot(), early],
        progress=False,
    )  # fmt: skip
    assert history.stop_reason == "callback" and history.epochs == early.best_epoch + 3 + 1
    assert early.scores[early.best_epoch - 1] == min(early.scores) == early.best_score
    np.testing.assert_array_equal(model[0].weight._data, weights[early.best_epoch - 1])
    assert cr.train.evaluate(model, held_out, nn.MSELoss())["loss"] == early.best_score


def test_early_stopping_refuses_a_negative_patience():
    with pytest.raises(ValueError, match="patience"):
        cr.train.EarlyStopping([], nn.MSELoss(), patience=-1)
