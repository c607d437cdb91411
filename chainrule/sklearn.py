"""scikit-learn estimators backed by chainrule: `MLPRegressor` and `MLPClassifier`.

They take scikit-learn's own `neural_network` names and defaults (hidden_layer_sizes, activation,
solver, alpha, batch_size, learning_rate_init, max_iter, shuffle, random_state, tol,
n_iter_no_change, ...) and its training procedure, draw for draw: Glorot-uniform initialisation
and shuffling from the same `random_state` sequence, minibatches of min(200, n) rows, an L2
penalty alpha/2 ||W||^2 per batch row, its losses (softmax or, for two classes, logistic
cross-entropy; half the squared error), its Adam, and a stop once the epoch loss has failed to
improve by `tol` for `n_iter_no_change` epochs. So with the same seed both libraries follow the
same trajectory (to rounding; a test checks it). The network is a `cr.nn.Sequential` (the fitted
`model_`), its gradients come from chainrule's backward pass and its updates from `cr.optim`.
What is left out: the 'lbfgs' solver, SGD's 'invscaling'/'adaptive' schedules (the rate is
constant), early_stopping, sample weights and multilabel targets. One deliberate difference:
with several regression outputs the reported loss is the squared error summed over outputs (the
loss whose gradient both libraries use), where scikit-learn reports its mean over outputs.
Activations are scikit-learn's ('identity', 'logistic', 'tanh', 'relu') plus 'softplus', the
lesson's.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import nn, optim
from .engine.autograd import no_grad
from .engine.function import Function
from .engine.tensor import Tensor
from .ops import from_numpy

__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {
    "identity": None,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
}
SOLVERS = ("sgd", "adam")


class _SoftmaxCrossEntropy(Function):
    """Mean softmax cross-entropy of logits (n, k) and class indices, as one graph node: its
    gradient (softmax - one_hot) / n is a single expression, where the composed loss records six
    nodes and walks them all back. Values equal F.cross_entropy's (tests compare them)."""

    @staticmethod
    def forward(ctx, logits, target):
        z = logits.data - logits.data.max(axis=1, keepdims=True)
        exp = np.exp(z)
        total = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(target))
        ctx.probabilities, ctx.target = exp / total, target
        loss = np.log(total[:, 0]).sum() - z[rows, target].sum()
        return Tensor._wrap(np.asarray(loss / len(target), dtype=logits.dtype))

    @staticmethod
    def backward(ctx, g):
        grad = ctx.probabilities.copy()
        grad[np.arange(len(ctx.target)), ctx.target] -= 1.0
        return g * Tensor._wrap(grad / len(ctx.target)), None


class _LogisticLoss(Function):
    """Mean binary cross-entropy of one logit column (n, 1) against 0/1 targets (n,), as one
    node: log(1 + e^z) - y z, with gradient (sigmoid(z) - y) / n."""

    @staticmethod
    def forward(ctx, logits, target):
        z = logits.data[:, 0]
        ctx.residual = (_sigmoid(z) - target).reshape(-1, 1)
        loss = (np.logaddexp(0.0, z) - target * z).mean()
        return Tensor._wrap(np.asarray(loss, dtype=logits.dtype))

    @staticmethod
    def backward(ctx, g):
        return g * Tensor._wrap(ctx.residual / len(ctx.residual)), None


class _HalfSquaredError(Function):
    """The squared error summed over outputs, halved and averaged over rows, as one node whose
    gradient is the residual / n: scikit-learn's gradient (and its loss, with one output)."""

    @staticmethod
    def forward(ctx, prediction, target):
        residual = prediction.data - target
        ctx.residual = residual
        loss = 0.5 * np.vdot(residual, residual) / len(residual)
        return Tensor._wrap(np.asarray(loss, dtype=prediction.dtype))

    @staticmethod
    def backward(ctx, g):
        return g * Tensor._wrap(ctx.residual / len(ctx.residual)), None


def _sigmoid(z):
    # exp of a non-positive number only, so no overflow for large |z|.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


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
        return [layer.weight.data.T for layer in self._linears()]

    @property
    def intercepts_(self):
        return [layer.bias.data for layer in self._linears()]

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
        activation = ACTIVATIONS[self.activation]
        layers = []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layer = nn.Linear(fan_in, fan_out, dtype=dtype)
            bound = np.sqrt(factor / (fan_in + fan_out))
            # Drawn in scikit-learn's (fan_in, fan_out) order so a seed means the same weights.
            weight = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            bias = self._random_state.uniform(-bound, bound, fan_out)
            layer.weight.data[...] = weight.T
            layer.bias.data[...] = bias
            layers.append(layer)
            if activation is not None and i < len(sizes) - 2:
                layers.append(activation())
        self.model_ = nn.Sequential(*layers)
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
            self.optimizer_ = optim.Adam(
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
        self._steps = 0

    def _run(self, X, targets, incremental):
        """Epochs of minibatch updates; one epoch when `incremental` (partial_fit)."""
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else int(np.clip(self.batch_size, 1, n))
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn(
                f"batch_size {self.batch_size} is larger than the {n} samples; "
                "clipped to the sample count",
                stacklevel=3,
            )
        weights = [layer.weight for layer in self._linears()]
        model, optimizer, loss_fn, alpha = self.model_, self.optimizer_, self._loss_of, self.alpha
        order = np.arange(n)
        self.n_iter_ = 0  # per call, as scikit-learn counts (partial_fit leaves it at 1)
        adam = self.solver == "adam"
        model.train()
        for _ in range(1 if incremental else self.max_iter):
            if self.shuffle:
                # scikit-learn shuffles the previous order (not a fresh arange) with the same
                # generator, so a seed gives both libraries the same batches.
                order = order[self._random_state.permutation(n)]
            total = 0.0
            for start in range(0, n, batch):
                rows = order[start : start + batch]
                m = len(rows)
                loss = loss_fn(model(from_numpy(X[rows])), targets[rows])
                optimizer.zero_grad()
                loss.backward()
                penalty = 0.0
                if alpha:
                    # scikit-learn's L2 term (alpha / 2m) ||W||^2 and its gradient (alpha / m) W,
                    # added outside the graph: it needs no chain rule.
                    for w in weights:
                        w.grad.data += (alpha / m) * w.data
                        penalty += float(np.vdot(w.data, w.data))
                    penalty *= 0.5 * alpha / m
                if adam:
                    # scikit-learn's Adam is PyTorch's with eps / sqrt(1 - beta2^t) in place of
                    # eps (it folds the bias corrections into the step size); matching it gives
                    # the same trajectory.
                    self._steps += 1
                    optimizer.param_groups[0]["eps"] = self.epsilon / np.sqrt(
                        1 - self.beta_2**self._steps
                    )
                optimizer.step()
                total += (loss.item() + penalty) * m
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = total / n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.loss_ > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_)
            if incremental:
                break
            if self._no_improvement_count > self.n_iter_no_change:
                if self.verbose:
                    print(
                        f"Training loss did not improve more than tol={self.tol} for "
                        f"{self.n_iter_no_change} consecutive epochs. Stopping."
                    )
                break
        else:
            warnings.warn(
                f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        model.eval()
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
        if not all(np.isfinite(p.data).all() for p in self.model_.parameters()):
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
        return _HalfSquaredError.apply(prediction, target)

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
            return index.astype(np.float64), 1
        return index.astype(np.int64), len(self.classes_)

    def _loss_of(self, logits, target):
        if self.n_outputs_ == 1:
            return _LogisticLoss.apply(logits, target)
        return _SoftmaxCrossEntropy.apply(logits, target)

    def partial_fit(self, X, y, classes=None):
        """One epoch of updates on (X, y). The first call needs `classes` (every label that will
        ever appear), as in scikit-learn."""
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        logits = self._forward(X).astype(np.float64)
        if logits.shape[1] == 1:
            p = _sigmoid(logits[:, 0])
            return np.column_stack([1 - p, p])
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        logits = self._forward(X)
        if logits.shape[1] == 1:
            return self.classes_[(logits[:, 0] > 0).astype(np.int64)]
        return self.classes_[np.argmax(logits, axis=1)]
