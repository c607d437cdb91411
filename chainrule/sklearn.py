"""scikit-learn estimators backed by chainrule: `MLPRegressor` and `MLPClassifier`.

They take scikit-learn's own `neural_network` names and defaults (hidden_layer_sizes, activation,
solver, alpha, batch_size, learning_rate_init, max_iter, shuffle, random_state, tol,
n_iter_no_change, ...) and its training procedure, draw for draw: Glorot-uniform initialisation
and shuffling from the same `random_state` sequence, minibatches of min(200, n) rows, an L2
penalty alpha/2 ||W||^2 per batch row, its losses (softmax or, for two classes, logistic
cross-entropy; half the squared error), its Adam, and a stop once the epoch loss has failed to
improve by `tol` for `n_iter_no_change` epochs. So with the same seed both libraries follow the
same trajectory (to rounding; a test checks it). The network is `chainrule.tabular`'s
`build_network` (a `cr.nn.Sequential`, the fitted `model_`), trained by `cr.train.fit` with the
library's fused losses (F.cross_entropy, F.binary_cross_entropy_with_logits, F.mse_loss); its
gradients come from chainrule's backward pass and its updates from `cr.optim`.
What is left out: the 'lbfgs' solver, SGD's 'invscaling'/'adaptive' schedules (the rate is
constant), early_stopping, sample weights and multilabel targets. One deliberate difference:
with several regression outputs the reported loss is the squared error summed over outputs (the
loss whose gradient both libraries use), where scikit-learn reports its mean over outputs.
Activations are `tabular.ACTIVATIONS`: scikit-learn's ('identity', 'logistic', 'tanh', 'relu')
plus 'softplus', the lesson's, and 'sigmoid' (the CLI's name for 'logistic').
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import nn, optim, train
from .engine.autograd import no_grad
from .nn import functional as F
from .ops import from_numpy, sigmoid, softmax
from .tabular import ACTIVATIONS, build_network

__all__ = ["MLPClassifier", "MLPRegressor"]

SOLVERS = ("sgd", "adam")


class ScikitLearnAdam(optim.Adam):
    """scikit-learn's Adam: PyTorch's with eps / sqrt(1 - beta2^t) in place of eps, as scikit-learn
    folds both bias corrections into the step size. The group's `eps` stays the one given."""

    def _update(self, param, grad, state, group):
        step = state.get("step", 0.0) + 1
        scaled = group["eps"] / np.sqrt(1 - group["betas"][1] ** step)
        super()._update(param, grad, state, {**group, "eps": scaled})


class _Batches:
    """Minibatches in scikit-learn's order: each epoch permutes the previous epoch's order (not a
    fresh arange) with the estimator's generator, so a seed gives both libraries the same
    batches."""

    def __init__(self, x, targets, batch_size, shuffle, random_state):
        self.x, self.targets, self.batch_size = x, targets, batch_size
        self.shuffle, self.random_state = shuffle, random_state
        self.order = np.arange(len(x))

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            self.order = self.order[self.random_state.permutation(len(self.x))]
        for start in range(0, len(self.x), self.batch_size):
            rows = self.order[start : start + self.batch_size]
            yield from_numpy(self.x[rows]), from_numpy(self.targets[rows])


class _ScikitLearnRules:
    """The parts of scikit-learn's training that are not PyTorch's, as `train.fit` callbacks: the
    L2 penalty (alpha / 2m) ||W||^2 per batch of m rows, added to the weights' gradients between
    backward and step (its gradient (alpha / m) W needs no chain rule), the loss curve with that
    penalty, and the stop once the epoch loss has failed to improve by `tol` for
    `n_iter_no_change` epochs."""

    def __init__(self, estimator, n):
        self.estimator, self.n, self.penalty = estimator, n, 0.0
        self.weights = [layer.weight for layer in estimator._linears()]

    def on_after_backward(self, info):
        alpha, m = self.estimator.alpha, info.batch_size
        if alpha:
            for w in self.weights:
                w.grad._data += (alpha / m) * w._data
                self.penalty += 0.5 * alpha * float(np.vdot(w._data, w._data))

    def on_epoch(self, info):
        est = self.estimator
        est.n_iter_ += 1
        est.t_ += self.n
        est.loss_ = info.loss + self.penalty / self.n
        self.penalty = 0.0
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if est.loss_ > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        est.best_loss_ = min(est.best_loss_, est.loss_)
        if est._no_improvement_count > est.n_iter_no_change:
            if est.verbose:
                print(
                    f"Training loss did not improve more than tol={est.tol} for "
                    f"{est.n_iter_no_change} consecutive epochs. Stopping."
                )
            return True
        return False


class _BaseMLP(BaseEstimator):
    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change

    # ---- fitted attributes in scikit-learn's layout ---------------------------------------------
    @property
    def coefs_(self):
        """Weight matrices in scikit-learn's layout (fan_in, fan_out): views of the live weights."""
        return [layer.weight._data.T for layer in self._linears()]

    @property
    def intercepts_(self):
        return [layer.bias._data for layer in self._linears()]

    def _linears(self):
        check_is_fitted(self, "model_")
        return [m for m in self.model_ if isinstance(m, nn.Linear)]

    # ---- training -------------------------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.isscalar(sizes) else list(sizes)
        if any(not float(s).is_integer() or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes}")
        return [int(s) for s in sizes]

    def _check_hyperparameters(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.solver not in SOLVERS:
            raise ValueError(
                f"solver must be 'sgd' or 'adam' (chainrule has no L-BFGS), got {self.solver!r}"
            )
        if not self.max_iter >= 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")
        if not self.learning_rate_init > 0:
            raise ValueError(f"learning_rate_init must be positive, got {self.learning_rate_init}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.batch_size != "auto" and not (
            isinstance(self.batch_size, int | np.integer) and self.batch_size >= 1
        ):
            raise ValueError(
                f"batch_size must be 'auto' or a positive integer, got {self.batch_size!r}"
            )

    def _initialize(self, n_features, n_outputs, dtype):
        """Build the network with scikit-learn's Glorot-uniform draws from random_state."""
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        self.model_ = build_network(sizes, self.activation, dtype)
        factor = 2.0 if ACTIVATIONS[self.activation] is nn.Sigmoid else 6.0
        for layer in self._linears():
            fan_out, fan_in = layer.weight.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            # Drawn in scikit-learn's (fan_in, fan_out) order so a seed means the same weights.
            layer.weight._data[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out)).T
            layer.bias._data[...] = self._random_state.uniform(-bound, bound, fan_out)
        self.n_layers_ = len(sizes)
        self.n_outputs_ = n_outputs
        self.out_activation_ = (
            "identity" if not self._classifier else "logistic" if n_outputs == 1 else "softmax"
        )
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self._no_improvement_count = 0

    def _new_optimizer(self):
        params = list(self.model_.parameters())
        if self.solver == "adam":
            self.optimizer_ = ScikitLearnAdam(
                params,
                lr=self.learning_rate_init,
                betas=(self.beta_1, self.beta_2),
                eps=self.epsilon,
            )
        else:
            self.optimizer_ = optim.SGD(
                params,
                lr=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum and self.momentum > 0,
            )

    def _run(self, X, targets, incremental):
        """Epochs of minibatch updates with `train.fit`; one epoch when `incremental`."""
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else int(np.clip(self.batch_size, 1, n))
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn(
                f"batch_size {self.batch_size} is larger than the {n} samples; "
                "clipped to the sample count",
                stacklevel=3,
            )
        self.n_iter_ = 0  # per call, as scikit-learn counts (partial_fit leaves it at 1)
        history = train.fit(
            self.model_,
            self._loss_of,
            self.optimizer_,
            _Batches(X, targets, batch, self.shuffle, self._random_state),
            epochs=1 if incremental else self.max_iter,
            progress=False,
            callbacks=[_ScikitLearnRules(self, n)],
        )
        if history.stop_reason == "epochs" and not incremental:
            warnings.warn(
                f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.model_.eval()
        return self

    def _fit(self, X, y, incremental, classes=None):
        self._check_hyperparameters()
        first = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X, y = validate_data(
            self,
            X,
            y,
            reset=first,
            dtype=(np.float64, np.float32),
            multi_output=self._multi_output,
            y_numeric=not self._classifier,
        )
        targets, n_outputs = self._encode_targets(y, first, classes)
        # As in scikit-learn, every call draws from a fresh generator seeded by random_state; a
        # full fit (warm or not) starts a new optimizer, partial_fit keeps the one it has.
        self._random_state = check_random_state(self.random_state)
        if first:
            self._initialize(X.shape[1], n_outputs, X.dtype)
        if not incremental or not hasattr(self, "optimizer_"):
            self._new_optimizer()
        dtype = self._dtype()
        if targets.dtype.kind == "f":
            targets = targets.astype(dtype)
        self._run(np.ascontiguousarray(X, dtype=dtype), targets, incremental)
        if not all(np.isfinite(p._data).all() for p in self.model_.parameters()):
            raise ValueError(
                "training produced non-finite weights: the input data may contain large values "
                "and need scaling (StandardScaler), or learning_rate_init is too large"
            )
        return self

    def _dtype(self):
        return self.model_[0].weight.dtype

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        with no_grad():
            out = self.model_(from_numpy(np.ascontiguousarray(X, dtype=self._dtype())))
        return out.numpy()

    def fit(self, X, y):
        """Fit the network to X (n_samples, n_features) and y; returns self."""
        return self._fit(X, y, incremental=False)


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained on the squared error (halved, as in
    scikit-learn), with identity output; y may have several columns."""

    _classifier = False
    _multi_output = True

    def _encode_targets(self, y, first, classes=None):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if not first and y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y.shape[1]} outputs, but this regressor was fitted with {self.n_outputs_}"
            )
        return y, y.shape[1]

    def _loss_of(self, prediction, target):
        # scikit-learn's loss: half the squared error summed over outputs, averaged over rows.
        return F.mse_loss(prediction, target) * (0.5 * self.n_outputs_)

    def partial_fit(self, X, y):
        """One epoch of updates on (X, y), starting from the current fit if there is one."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained on the cross-entropy of a softmax output layer
    (one output per class), or of one logistic output for two classes, as scikit-learn does;
    `classes_` holds the labels in sorted order."""

    _classifier = True
    _multi_output = False

    def _encode_targets(self, y, first, classes=None):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(
                    f"MLPClassifier needs samples of at least 2 classes in the data, "
                    f"but the data contain only one class: {labels[0]!r}"
                )
            self.classes_ = labels
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(
                f"y contains labels {unknown.tolist()} that are not in classes_ "
                f"{self.classes_.tolist()}"
            )
        index = np.searchsorted(self.classes_, y)
        if len(self.classes_) == 2:
            # Two classes: one logistic output, as scikit-learn has it.
            return index.astype(np.float64).reshape(-1, 1), 1
        return index.astype(np.int64), len(self.classes_)

    def _loss_of(self, logits, target):
        if self.n_outputs_ == 1:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.cross_entropy(logits, target)

    def partial_fit(self, X, y, classes=None):
        """One epoch of updates on (X, y). The first call needs `classes` (every label that will
        ever appear), as in scikit-learn."""
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        logits = from_numpy(self._forward(X).astype(np.float64))
        if logits.shape[1] == 1:
            p = sigmoid(logits).numpy()[:, 0]
            return np.column_stack([1 - p, p])
        return softmax(logits, dim=1).numpy()

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        logits = self._forward(X)
        if logits.shape[1] == 1:
            return self.classes_[(logits[:, 0] > 0).astype(np.int64)]
        return self.classes_[np.argmax(logits, axis=1)]
