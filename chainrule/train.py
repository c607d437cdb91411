"""A small training loop: `fit` a model with a loss and an optimizer over a DataLoader, with a
progress bar, a recorded `History`, stop rules, and callbacks that see every step.

    history = cr.train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                           loader, epochs=10, metrics={"accuracy": cr.train.accuracy})
    history.epoch_loss[-1], history.metrics["accuracy"][-1], history.stop_reason
"""

import sys

import numpy as np

from .engine.autograd import no_grad

__all__ = [
    "BackwardInfo",
    "EarlyStopping",
    "EpochInfo",
    "History",
    "ParamStep",
    "StepInfo",
    "accuracy",
    "evaluate",
    "fit",
]


class ParamStep:
    """One parameter in one step: its value before, the gradient (slope) used, the value after.
    Arrays are copies, safe to keep."""

    __slots__ = ("before", "grad", "after")

    def __init__(self, before, grad, after):
        self.before, self.grad, self.after = before, grad, after

    @property
    def change(self):
        """after - before: what the optimizer did to the value. For plain SGD this is
        -(lr * slope), the negative of what the lesson calls the step size (lr * slope)."""
        return self.after - self.before

    def __repr__(self):
        return f"ParamStep(before={self.before!r}, grad={self.grad!r}, after={self.after!r})"


class StepInfo:
    """What a callback's `on_step(info)` receives after each optimizer step.

    step: steps done so far, counting this one (1, 2, ...); epoch: the current epoch (1, 2, ...);
    loss: the batch loss (float) computed before this step, at the `before` values; batch_size;
    lr: the first parameter group's learning rate used; model, optimizer; params: {name:
    ParamStep(before, grad, after)} for every parameter the optimizer holds, named as in
    model.named_parameters().
    """

    __slots__ = ("step", "epoch", "loss", "batch_size", "lr", "model", "optimizer", "params")

    def __init__(self, step, epoch, loss, batch_size, lr, model, optimizer, params):
        self.step, self.epoch, self.loss, self.batch_size = step, epoch, loss, batch_size
        self.lr, self.model, self.optimizer, self.params = lr, model, optimizer, params

    @property
    def max_step_size(self):
        """The largest |after - before| over every element of every parameter."""
        return max(
            (float(np.max(np.abs(p.change))) for p in self.params.values() if p.before.size),
            default=0.0,
        )


class BackwardInfo:
    """What a callback's `on_after_backward(info)` receives between `loss.backward()` and
    `optimizer.step()`, when every parameter's `.grad` holds this batch's gradient and may still be
    changed (clipped, regularised): step (the step about to be taken, 1, 2, ...), epoch, loss (the
    batch loss, float), batch_size, model, optimizer."""

    __slots__ = ("step", "epoch", "loss", "batch_size", "model", "optimizer")

    def __init__(self, step, epoch, loss, batch_size, model, optimizer):
        self.step, self.epoch, self.loss, self.batch_size = step, epoch, loss, batch_size
        self.model, self.optimizer = model, optimizer


class EpochInfo:
    """What a callback's `on_epoch(info)` receives at the end of each epoch: epoch, step (steps so
    far), loss (the epoch's mean batch loss, weighted by batch size), metrics ({name: value} for
    this epoch), model, optimizer, history."""

    __slots__ = ("epoch", "step", "loss", "metrics", "model", "optimizer", "history")

    def __init__(self, epoch, step, loss, metrics, model, optimizer, history):
        self.epoch, self.step, self.loss, self.metrics = epoch, step, loss, metrics
        self.model, self.optimizer, self.history = model, optimizer, history


class History:
    """step_loss: the loss of every step; epoch_loss: each full or partial epoch's mean loss;
    metrics: {name: [value per epoch]}; steps, epochs: how many were run; stop_reason: 'epochs',
    'max_steps', 'loss_target', 'min_step_size' or 'callback'."""

    def __init__(self, metric_names):
        self.step_loss, self.epoch_loss = [], []
        self.metrics = {name: [] for name in metric_names}
        self.steps, self.epochs, self.stop_reason = 0, 0, None

    def __repr__(self):
        last = f", last epoch loss {self.epoch_loss[-1]:.6g}" if self.epoch_loss else ""
        return (
            f"History({self.steps} steps, {self.epochs} epochs{last}, "
            f"stopped by {self.stop_reason})"
        )


def accuracy(output, target):
    """The fraction of rows whose largest logit is at the target class index."""
    predicted = np.argmax(output._data, axis=-1)
    return float(np.mean(predicted == np.asarray(target._data)))


def fit(
    model,
    loss_fn,
    optimizer,
    loader,
    epochs=None,
    max_steps=None,
    loss_target=None,
    min_step_size=None,
    scheduler=None,
    metrics=None,
    progress=None,
    callbacks=(),
):
    """Train `model` to lower `loss_fn(model(*inputs), target)` over the batches of `loader`
    (each batch a tuple: inputs..., target), stepping `optimizer` once per batch.

    Stop rules (give `epochs` or `max_steps`, or both; the first rule met ends training):
    - `epochs`: passes over the loader; `max_steps`: optimizer steps in all;
    - `loss_target`: stop, before stepping, at the first batch whose loss is <= loss_target;
    - `min_step_size`: the lesson's rule: stop after the first step in which every parameter
      element moved by less than this (|new - old| < min_step_size).
    `scheduler.step()` is called after each epoch. `metrics` ({name: fn(output, target) -> float})
    are averaged per epoch over the training batches, weighted by batch size.

    Progress: a tqdm bar with the running loss, shown when stdout is a terminal (progress=None) or
    when progress=True; progress=False turns it off.

    Callbacks: objects with optional methods `on_after_backward(info)`, `on_step(info)`,
    `on_epoch(info)` and `on_train_end(history)`. on_after_backward gets a `BackwardInfo` after
    each backward pass, before the optimizer steps, while the gradients may still be changed (as
    PyTorch Lightning's hook of that name; its return value is ignored); on_step gets a
    `StepInfo` after each optimizer step (step, epoch, loss, lr, batch_size, model, optimizer and
    per named parameter a `ParamStep(before, grad, after)`), on_epoch an `EpochInfo` (epoch, step,
    loss, metrics, model, optimizer, history). A callback that returns True stops training.
    These fields are a stable interface (the explainer's trace recorder is such a callback).
    on_train_end is called once training has stopped (not after an exception), with the `History`;
    `EarlyStopping` uses it to put the best weights back.

    Returns the `History`.
    """
    if epochs is None and max_steps is None:
        raise ValueError("fit: give epochs= or max_steps= (or both), so that training ends")
    for name, value in (("epochs", epochs), ("max_steps", max_steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    metrics = dict(metrics or {})
    step_hooks = [cb.on_step for cb in callbacks if hasattr(cb, "on_step")]
    epoch_hooks = [cb.on_epoch for cb in callbacks if hasattr(cb, "on_epoch")]
    backward_hooks = [cb.on_after_backward for cb in callbacks if hasattr(cb, "on_after_backward")]
    end_hooks = [cb.on_train_end for cb in callbacks if hasattr(cb, "on_train_end")]
    watched = _named_optimizer_params(model, optimizer)
    track = bool(step_hooks) or min_step_size is not None
    history = History(metrics)
    bar = _progress_bar(progress, loader, epochs, max_steps)
    model.train()
    step, epoch = 0, 0
    try:
        while history.stop_reason is None:
            if epochs is not None and epoch >= epochs:
                history.stop_reason = "epochs"
                break
            epoch += 1
            totals = {name: 0.0 for name in metrics}
            loss_sum, seen = 0.0, 0
            for batch in loader:
                *inputs, target = batch
                output = model(*inputs)
                loss = loss_fn(output, target)
                value = float(loss.item())
                size = len(target) if getattr(target, "ndim", 0) else 1
                loss_sum += value * size
                seen += size
                for name, fn in metrics.items():
                    totals[name] += fn(output, target) * size
                if loss_target is not None and value <= loss_target:
                    history.step_loss.append(value)
                    history.stop_reason = "loss_target"
                    break
                optimizer.zero_grad()
                loss.backward()
                if backward_hooks:
                    info = BackwardInfo(step + 1, epoch, value, size, model, optimizer)
                    for hook in backward_hooks:
                        hook(info)
                before = [p._data.copy() for _, p in watched] if track else None
                optimizer.step()
                step += 1
                history.step_loss.append(value)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4g}", epoch=epoch, refresh=False)
                if track:
                    info = StepInfo(
                        step,
                        epoch,
                        value,
                        size,
                        optimizer.param_groups[0]["lr"],
                        model,
                        optimizer,
                        {
                            name: ParamStep(
                                old,
                                p.grad._data.copy() if p.grad is not None else None,
                                p._data.copy(),
                            )
                            for (name, p), old in zip(watched, before, strict=True)
                        },
                    )
                    if any(hook(info) is True for hook in step_hooks):
                        history.stop_reason = "callback"
                    elif min_step_size is not None and info.max_step_size < min_step_size:
                        history.stop_reason = "min_step_size"
                if history.stop_reason is None and max_steps is not None and step >= max_steps:
                    history.stop_reason = "max_steps"
                if history.stop_reason is not None:
                    break
            history.steps, history.epochs = step, epoch
            if seen:
                history.epoch_loss.append(loss_sum / seen)
                for name in metrics:
                    history.metrics[name].append(totals[name] / seen)
            if scheduler is not None and history.stop_reason is None:
                scheduler.step()
            if epoch_hooks and seen:
                info = EpochInfo(
                    epoch,
                    step,
                    history.epoch_loss[-1],
                    {name: values[-1] for name, values in history.metrics.items()},
                    model,
                    optimizer,
                    history,
                )
                if any(hook(info) is True for hook in epoch_hooks) and history.stop_reason is None:
                    history.stop_reason = "callback"
    finally:
        if bar is not None:
            bar.close()
    history.steps, history.epochs = step, epoch
    for hook in end_hooks:
        hook(history)
    return history


class EarlyStopping:
    """A callback for `fit` that scores the model on held-out batches after every epoch, keeps a
    copy of the best weights, stops once `patience` epochs in a row have not improved the best
    score by more than `min_delta`, and puts the best weights back when training ends (as Keras's
    EarlyStopping with restore_best_weights=True). A non-finite training loss stops at once.

    `loader` gives the held-out batches, `loss_fn` scores them (lower is better); `scores` holds
    every epoch's held-out loss, `best_epoch` the epoch whose weights were kept."""

    def __init__(self, loader, loss_fn, patience=20, min_delta=0.0, restore_best=True):
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        self.loader, self.loss_fn = loader, loss_fn
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.scores, self.best_epoch, self.best_score = [], None, float("inf")
        self._best_state = self._model = None

    def on_epoch(self, info):
        score = evaluate(info.model, self.loader, self.loss_fn)["loss"]
        self.scores.append(score)
        self._model = info.model
        if score < self.best_score - self.min_delta:
            self.best_score, self.best_epoch = score, info.epoch
            self._best_state = {
                name: value._data.copy() for name, value in info.model.state_dict().items()
            }
        if not (np.isfinite(info.loss) and np.isfinite(score)):
            return True
        return info.epoch - (self.best_epoch or 0) > self.patience

    def on_train_end(self, history):
        if self.restore_best and self._best_state is not None:
            # state_dict's tensors share the module's arrays: writing into them restores it.
            for name, value in self._model.state_dict().items():
                value._data[...] = self._best_state[name]


def evaluate(model, loader, loss_fn=None, metrics=None):
    """Mean loss (if loss_fn is given) and metrics over a loader, in eval mode without recording a
    graph; the model's train/eval mode is restored afterwards. Returns {name: value}."""
    metrics = dict(metrics or {})
    if loss_fn is not None:
        metrics["loss"] = lambda output, target: float(loss_fn(output, target).item())
    was_training = model.training
    model.eval()
    totals, seen = {name: 0.0 for name in metrics}, 0
    try:
        with no_grad():
            for *inputs, target in loader:
                output = model(*inputs)
                size = len(target) if getattr(target, "ndim", 0) else 1
                for name, fn in metrics.items():
                    totals[name] += fn(output, target) * size
                seen += size
    finally:
        model.train(was_training)
    return {name: total / max(seen, 1) for name, total in totals.items()}


def _named_optimizer_params(model, optimizer):
    names = {id(p): name for name, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return [(names.get(id(p), f"param{i}"), p) for i, p in enumerate(params)]


def _progress_bar(progress, loader, epochs, max_steps):
    show = sys.stdout.isatty() if progress is None else bool(progress)
    if not show:
        return None
    from tqdm.auto import tqdm

    total = None
    if epochs is not None:
        try:
            total = epochs * len(loader)
        except TypeError:
            total = None
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    return tqdm(total=total, unit="step", file=sys.stdout, dynamic_ncols=True)
