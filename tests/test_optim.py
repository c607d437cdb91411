"""cr.optim against torch.optim: from the same start, 50 steps of every optimizer with every option
give PyTorch's parameter trajectory to 1e-10 (float64); schedulers give its learning rates;
state_dict round trips; bad arguments are refused with clear messages."""

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import optim

RNG = np.random.default_rng(0)
A = RNG.standard_normal((6, 4))
B = RNG.standard_normal(6)
START = [RNG.standard_normal(4) * 0.5, RNG.standard_normal((2, 3)) * 0.5, np.array(0.3)]


def _loss(m, params, sign):
    """A smooth, non-quadratic loss of three parameters of different shapes."""
    w, v, c = params
    a, b = m.tensor(A), m.tensor(B)
    residual = m.tanh(a @ w) * c - b
    return sign * ((residual * residual).sum() + (v * v * v * v).sum() * 0.1 + (v.sum() - 1) ** 2)


def _trajectory(m, make_optimizer, steps, sign=1.0, make_scheduler=None):
    params = [m.tensor(p.copy(), requires_grad=True) for p in START]
    opt = make_optimizer(m.optim, params)
    scheduler = make_scheduler(m.optim.lr_scheduler, opt) if make_scheduler else None
    path, lrs = [], []
    for _ in range(steps):
        opt.zero_grad()
        _loss(m, params, sign).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
        path.append([p.detach().numpy().copy() for p in params])
    return path, lrs, opt, params


CONFIGS = {
    "sgd": lambda o, p: o.SGD(p, lr=0.05),
    "sgd_momentum": lambda o, p: o.SGD(p, lr=0.02, momentum=0.9),
    "sgd_dampening": lambda o, p: o.SGD(p, lr=0.02, momentum=0.8, dampening=0.5),
    "sgd_nesterov": lambda o, p: o.SGD(p, lr=0.02, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda o, p: o.SGD(p, lr=0.05, weight_decay=0.1),
    "sgd_maximize": lambda o, p: o.SGD(p, lr=0.02, momentum=0.5, maximize=True),
    "sgd_everything": lambda o, p: o.SGD(
        p, lr=0.02, momentum=0.7, weight_decay=0.05, nesterov=True, maximize=True
    ),
    "sgd_momentum_dampening_decay": lambda o, p: o.SGD(
        p, lr=0.03, momentum=0.6, dampening=0.3, weight_decay=0.02
    ),
    "adam": lambda o, p: o.Adam(p, lr=0.05),
    "adam_amsgrad": lambda o, p: o.Adam(p, lr=0.05, amsgrad=True),
    "adam_weight_decay": lambda o, p: o.Adam(p, lr=0.05, weight_decay=0.1),
    "adam_maximize": lambda o, p: o.Adam(p, lr=0.05, maximize=True),
    "adam_everything": lambda o, p: o.Adam(
        p, lr=0.03, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05, amsgrad=True, maximize=True
    ),
    "adamw": lambda o, p: o.AdamW(p, lr=0.05),
    "adamw_amsgrad_decay": lambda o, p: o.AdamW(p, lr=0.05, weight_decay=0.3, amsgrad=True),
    "adamw_maximize": lambda o, p: o.AdamW(p, lr=0.05, betas=(0.5, 0.9), maximize=True),
    "rmsprop": lambda o, p: o.RMSprop(p, lr=0.01),
    "rmsprop_alpha_eps": lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-4),
    "rmsprop_centered": lambda o, p: o.RMSprop(p, lr=0.01, centered=True),
    "rmsprop_momentum": lambda o, p: o.RMSprop(p, lr=0.005, momentum=0.9),
    "rmsprop_weight_decay": lambda o, p: o.RMSprop(p, lr=0.01, weight_decay=0.1),
    "rmsprop_maximize": lambda o, p: o.RMSprop(p, lr=0.01, maximize=True),
    "rmsprop_everything": lambda o, p: o.RMSprop(
        p,
        lr=0.005,
        alpha=0.95,
        eps=1e-6,
        weight_decay=0.05,
        momentum=0.5,
        centered=True,
        maximize=True,
    ),
}


def _assert_same_path(ours, theirs):
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
            np.testing.assert_allclose(
                pa, pb, rtol=1e-10, atol=1e-12, err_msg=f"parameter {i} after step {step + 1}"
            )


@pytest.mark.parametrize("config", CONFIGS)
def test_fifty_steps_follow_torch_trajectory(config):
    make = CONFIGS[config]
    sign = -1.0 if "maximize" in config or "everything" in config else 1.0
    ours, _, _, _ = _trajectory(cr, make, 50, sign)
    theirs, _, _, _ = _trajectory(torch, make, 50, sign)
    _assert_same_path(ours, theirs)
    # The run really moved: a wrong update would not hide behind a standing start.
    assert np.abs(ours[-1][0] - START[0]).max() > 1e-2


SCHEDULES = {
    "step": lambda s, o: s.StepLR(o, step_size=7, gamma=0.5),
    "exponential": lambda s, o: s.ExponentialLR(o, gamma=0.95),
    "cosine": lambda s, o: s.CosineAnnealingLR(o, T_max=12, eta_min=0.001),
    "cosine_no_floor": lambda s, o: s.CosineAnnealingLR(o, T_max=20),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedulers_give_torch_learning_rates_and_trajectory(schedule):
    def make(o, p):
        return o.SGD(p, lr=0.03, momentum=0.9)

    ours, our_lrs, _, _ = _trajectory(cr, make, 50, make_scheduler=SCHEDULES[schedule])
    theirs, their_lrs, _, _ = _trajectory(torch, make, 50, make_scheduler=SCHEDULES[schedule])
    np.testing.assert_allclose(our_lrs, their_lrs, rtol=1e-13)
    assert len(set(our_lrs)) > 3
    _assert_same_path(ours, theirs)


def test_scheduler_state_dict_round_trips():
    params = [cr.tensor(p.copy(), requires_grad=True) for p in START]
    opt = optim.SGD(params, lr=0.1)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        opt.step()
        sched.step()
    saved = sched.state_dict()
    assert "optimizer" not in saved
    opt2 = optim.SGD([cr.tensor(p.copy(), requires_grad=True) for p in START], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    sched2 = optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(saved)
    for _ in range(3):
        sched.step()
        sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()


@pytest.mark.parametrize(
    "config", ["sgd_everything", "adam_everything", "adamw_amsgrad_decay", "rmsprop_everything"]
)
def test_state_dict_round_trip_resumes_the_same_trajectory(config):
    make = CONFIGS[config]
    sign = -1.0 if "everything" in config else 1.0
    full, _, _, _ = _trajectory(cr, make, 20, sign)
    _, _, opt, params = _trajectory(cr, make, 10, sign)
    state = opt.state_dict()
    # A fresh optimizer on fresh tensors holding the same values continues exactly.
    resumed = [cr.tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]
    opt2 = make(optim, resumed)
    opt2.load_state_dict(state)
    for step in range(10):
        opt2.zero_grad()
        _loss(cr, resumed, sign).backward()
        opt2.step()
        for a, b in zip(resumed, full[10 + step], strict=True):
            np.testing.assert_array_equal(a.detach().numpy(), b)
    # state_dict holds copies: stepping on does not change a dict taken earlier.
    first = {
        k: {n: (v.numpy().copy() if isinstance(v, cr.Tensor) else v) for n, v in s.items()}
        for k, s in state["state"].items()
    }
    for k, s in state["state"].items():
        for n, v in s.items():
            np.testing.assert_array_equal(v.numpy() if isinstance(v, cr.Tensor) else v, first[k][n])


def test_state_dict_layout_follows_torch():
    ours = optim.Adam([cr.tensor(p.copy(), requires_grad=True) for p in START], lr=0.1)
    theirs = torch.optim.Adam([torch.tensor(p.copy(), requires_grad=True) for p in START], lr=0.1)
    for opt, m in ((ours, cr), (theirs, torch)):
        params = opt.param_groups[0]["params"]
        _loss(m, params, 1.0).backward()
        opt.step()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["param_groups"][0]["params"] == b["param_groups"][0]["params"] == [0, 1, 2]
    assert set(a["state"]) == set(b["state"])
    assert set(a["state"][0]) == set(b["state"][0])
    np.testing.assert_allclose(
        a["state"][1]["exp_avg_sq"].numpy(), b["state"][1]["exp_avg_sq"].numpy(), rtol=1e-12
    )


def test_parameter_groups_use_their_own_learning_rates():
    w, v = cr.tensor([1.0], requires_grad=True), cr.tensor([1.0], requires_grad=True)
    opt = optim.SGD([{"params": [w]}, {"params": [v], "lr": 0.5}], lr=0.1)
    (w + v).sum().backward()
    opt.step()
    np.testing.assert_allclose([w.item(), v.item()], [0.9, 0.5])


def test_zero_grad_sets_to_none_or_zero():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert w.grad is None


def test_parameters_without_gradient_are_left_alone():
    w, v = cr.tensor([1.0], requires_grad=True), cr.tensor([1.0], requires_grad=True)
    opt = optim.Adam([w, v], lr=0.1)
    (w * 2).sum().backward()
    opt.step()
    assert v.item() == 1.0 and v not in opt.state


def test_step_invalidates_graphs_that_saved_the_old_value():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


@pytest.mark.parametrize("make", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop])
def test_optimizer_refuses_no_parameters_and_negative_lr(make):
    with pytest.raises(ValueError, match=f"{make.__name__} got an empty parameter list"):
        make([], lr=0.1)
    with pytest.raises(ValueError, match=r"learning rate must be a number >= 0, got lr=-0.1"):
        make([cr.zeros(2, requires_grad=True)], lr=-0.1)


def test_optimizer_refuses_bad_options_and_parameters():
    p = [cr.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0 and dampening = 0"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\), got 1.5"):
        optim.Adam(p, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        optim.RMSprop(p, weight_decay=-1)
    with pytest.raises(TypeError, match="not a single tensor"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([cr.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p[0] * 2], lr=0.1)
