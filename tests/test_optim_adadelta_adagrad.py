"""cr.optim.Adadelta and Adagrad against torch.optim: from the same start, 50 steps with every
option give PyTorch's trajectory to 1e-10 (float64); state_dict round trips resume exactly and
follow PyTorch's layout; bad hyperparameters are refused."""

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import optim
from tests.test_optim import START, _assert_same_path, _loss, _trajectory

CONFIGS = {
    "adadelta": lambda o, p: o.Adadelta(p),
    "adadelta_lr_rho_eps": lambda o, p: o.Adadelta(p, lr=0.5, rho=0.8, eps=1e-4),
    "adadelta_weight_decay": lambda o, p: o.Adadelta(p, lr=1.0, weight_decay=0.1),
    "adadelta_maximize": lambda o, p: o.Adadelta(p, maximize=True),
    "adadelta_everything": lambda o, p: o.Adadelta(
        p, lr=3.0, rho=0.95, eps=1e-5, weight_decay=0.05, maximize=True
    ),
    "adagrad": lambda o, p: o.Adagrad(p, lr=0.1),
    "adagrad_lr_decay": lambda o, p: o.Adagrad(p, lr=0.2, lr_decay=0.05),
    "adagrad_initial_accumulator": lambda o, p: o.Adagrad(
        p, lr=0.1, initial_accumulator_value=0.3, eps=1e-6
    ),
    "adagrad_weight_decay": lambda o, p: o.Adagrad(p, lr=0.1, weight_decay=0.2),
    "adagrad_maximize": lambda o, p: o.Adagrad(p, lr=0.1, maximize=True),
    "adagrad_everything": lambda o, p: o.Adagrad(
        p,
        lr=0.15,
        lr_decay=0.02,
        weight_decay=0.05,
        initial_accumulator_value=0.1,
        eps=1e-8,
        maximize=True,
    ),
}


def _sign(config):
    return -1.0 if "maximize" in config or "everything" in config else 1.0


@pytest.mark.parametrize("config", CONFIGS)
def test_fifty_steps_follow_torch_trajectory(config):
    make = CONFIGS[config]
    ours, _, _, _ = _trajectory(cr, make, 50, _sign(config))
    theirs, _, _, _ = _trajectory(torch, make, 50, _sign(config))
    _assert_same_path(ours, theirs)
    assert np.abs(ours[-1][0] - START[0]).max() > 1e-2


@pytest.mark.parametrize("config", ["adadelta_everything", "adagrad_everything"])
def test_state_dict_round_trip_resumes_the_same_trajectory(config):
    make, sign = CONFIGS[config], _sign(config)
    full, _, _, _ = _trajectory(cr, make, 20, sign)
    _, _, opt, params = _trajectory(cr, make, 10, sign)
    state = opt.state_dict()
    resumed = [cr.tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]
    opt2 = make(optim, resumed)
    opt2.load_state_dict(state)
    for step in range(10):
        opt2.zero_grad()
        _loss(cr, resumed, sign).backward()
        opt2.step()
        for a, b in zip(resumed, full[10 + step], strict=True):
            np.testing.assert_array_equal(a.detach().numpy(), b)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("Adadelta", {}), ("Adagrad", {"initial_accumulator_value": 0.2})]
)
def test_state_after_a_step_has_torch_keys_and_values(name, kwargs):
    ours = getattr(optim, name)([cr.tensor(p.copy(), requires_grad=True) for p in START], **kwargs)
    theirs = getattr(torch.optim, name)(
        [torch.tensor(p.copy(), requires_grad=True) for p in START], **kwargs
    )
    for opt, m in ((ours, cr), (theirs, torch)):
        _loss(m, opt.param_groups[0]["params"], 1.0).backward()
        opt.step()
    a, b = ours.state_dict(), theirs.state_dict()
    assert set(a["state"][0]) == set(b["state"][0])
    for key, value in b["state"][1].items():
        ours_value = a["state"][1][key]
        ours_value = ours_value.numpy() if isinstance(ours_value, cr.Tensor) else ours_value
        np.testing.assert_allclose(ours_value, value.numpy(), rtol=1e-12)
    for key in b["param_groups"][0]:
        if key in a["param_groups"][0] and key != "params":
            assert a["param_groups"][0][key] == b["param_groups"][0][key], key


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: optim.Adadelta(p, rho=1.5), "rho"),
        (lambda p: optim.Adadelta(p, lr=-1.0), "learning rate"),
        (lambda p: optim.Adadelta(p, eps=-1e-6), "eps"),
        (lambda p: optim.Adagrad(p, lr_decay=-0.1), "lr_decay"),
        (lambda p: optim.Adagrad(p, initial_accumulator_value=-1), "initial_accumulator_value"),
        (lambda p: optim.Adagrad(p, weight_decay=-0.1), "weight_decay"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make([cr.tensor([1.0], requires_grad=True)])
