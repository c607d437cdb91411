"""cr.save / cr.load: bit-exact safetensors round trips for every dtype and nested state, and resume
from a checkpoint equal to an uninterrupted run. What they promise for hostile, broken and unlucky
files (and killed or failing saves) is in test_hostile_checkpoints.py."""

import os

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import chainrule as cr
from chainrule import nn, optim

DTYPES = [
    np.float32,
    np.float64,
    np.int32,
    np.int64,
    np.bool_,
    np.float16,
    np.int8,
    np.int16,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]


def _special_values(dtype, rng):
    if np.dtype(dtype).kind == "f":
        info = np.finfo(dtype)
        values = np.array(
            [
                0.0,
                -0.0,
                np.inf,
                -np.inf,
                np.nan,
                info.tiny,
                info.tiny / 4,
                info.max,
                -info.max,
                info.eps,
            ],
            dtype=dtype,
        )
        # a NaN with a payload: bit-exactness must keep it
        bits = values.view(f"u{values.itemsize}")
        bits[4] |= 1
        return np.concatenate([values, rng.standard_normal(20).astype(dtype)])
    if np.dtype(dtype).kind == "b":
        return rng.random(30) > 0.5
    info = np.iinfo(dtype)
    return np.concatenate(
        [
            np.array([info.min, info.max, 0], dtype=dtype),
            rng.integers(info.min, info.max, 27, dtype=dtype, endpoint=True),
        ]
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_is_bit_exact_for_every_dtype(tmp_path, dtype):
    rng = np.random.default_rng(0)
    values = _special_values(dtype, rng)
    state = {
        "flat": cr.Tensor._wrap(values),
        "matrix": values[:24].reshape(4, 6),
        "transposed": values[:24].reshape(4, 6).T,  # not contiguous in memory
        "scalar": values[:1].reshape(()),
        "empty": values[:0].reshape(0, 3),
    }
    path = tmp_path / "state.safetensors"
    cr.save(state, path)
    loaded = cr.load(path)
    assert set(loaded) == set(state)
    for key, original in state.items():
        original = original._data if isinstance(original, cr.Tensor) else original
        back = loaded[key]
        assert isinstance(back, cr.Tensor)
        assert back.dtype == original.dtype and back.shape == original.shape, key
        width = f"u{original.itemsize}" if original.dtype != np.bool_ else "u1"
        np.testing.assert_array_equal(
            np.ascontiguousarray(back.numpy()).view(width),
            np.ascontiguousarray(original).view(width),
            err_msg=key,
        )


def test_nested_state_with_plain_values_round_trips(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9), amsgrad=True)
    model(cr.randn(5, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "note": "best so far",
        "metrics": [0.5, float("inf"), None, True],
        "pair": (1, 2.5),
        "by_int": {1: "one", 2: cr.ones(2)},
        "tensor": cr.arange(3),
    }
    path = tmp_path / "ckpt.safetensors"
    cr.save(state, path)
    back = cr.load(path)
    assert back["epoch"] == 3 and back["note"] == "best so far"
    assert back["metrics"] == [0.5, float("inf"), None, True]
    assert back["pair"] == (1, 2.5)
    assert back["by_int"][1] == "one"
    np.testing.assert_array_equal(back["by_int"][2].numpy(), [1.0, 1.0])
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back["model"][key].numpy(), value.numpy())
    saved_opt = opt.state_dict()
    assert back["optimizer"]["param_groups"] == saved_opt["param_groups"]
    for index, entry in saved_opt["state"].items():
        for name, value in entry.items():
            got = back["optimizer"]["state"][index][name]
            if isinstance(value, cr.Tensor):
                np.testing.assert_array_equal(got.numpy(), value.numpy())
            else:
                assert got == value
    # and it is a standard safetensors file, readable by the reference reader
    assert set(load_file(path)) >= {"model.0.weight", "optimizer.state.0.exp_avg"}


def test_a_bare_tensor_round_trips(tmp_path):
    t = cr.tensor([[1.5, -2.0]], dtype=cr.float64)
    cr.save(t, tmp_path / "t.safetensors")
    back = cr.load(tmp_path / "t.safetensors")
    assert isinstance(back, cr.Tensor) and back.dtype == cr.float64
    np.testing.assert_array_equal(back.numpy(), t.numpy())


def test_unsaveable_objects_are_refused_with_a_hint(tmp_path):
    with pytest.raises(TypeError, match=r"cannot save a Linear \(at model\).*state_dict\(\)"):
        cr.save({"model": nn.Linear(2, 2)}, tmp_path / "x")
    assert not os.listdir(tmp_path)


def test_a_plain_safetensors_file_loads_as_a_dict_of_tensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "t.safetensors")
    loaded = cr.load(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(loaded["w"].numpy(), np.arange(6.0).reshape(2, 3))


# ---- resume --------------------------------------------------------------------------------------


def _setup(seed=0):
    cr.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = optim.Adam(model.parameters(), lr=0.05, amsgrad=True)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    rng = np.random.default_rng(1)
    data = cr.data.TensorDataset(
        cr.tensor(rng.standard_normal((40, 4))), cr.tensor(rng.integers(0, 3, 40))
    )
    return model, opt, sched, data


def _run_epoch(model, opt, sched, data, epoch):
    loss_fn = nn.CrossEntropyLoss()
    for x, y in cr.data.DataLoader(data, batch_size=8, shuffle=True, seed=epoch):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    sched.step()


def test_resumed_run_ends_with_exactly_the_uninterrupted_parameters(tmp_path):
    model, opt, sched, data = _setup()
    for epoch in range(4):
        _run_epoch(model, opt, sched, data, epoch)

    first, opt1, sched1, data = _setup()
    for epoch in range(2):
        _run_epoch(first, opt1, sched1, data, epoch)
    cr.save(
        {
            "model": first.state_dict(),
            "optimizer": opt1.state_dict(),
            "scheduler": sched1.state_dict(),
            "epoch": 2,
        },
        tmp_path / "ckpt.safetensors",
    )
    del first, opt1, sched1

    resumed, opt2, sched2, data = _setup(seed=99)  # different start: everything comes from disk
    ckpt = cr.load(tmp_path / "ckpt.safetensors")
    resumed.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    for epoch in range(ckpt["epoch"], 4):
        _run_epoch(resumed, opt2, sched2, data, epoch)
    for (name, a), (_, b) in zip(resumed.named_parameters(), model.named_parameters(), strict=True):
        np.testing.assert_array_equal(
            a.numpy() if not a.requires_grad else a.detach().numpy(),
            b.detach().numpy(),
            err_msg=name,
        )
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


# ---- atomic writes -------------------------------------------------------------------------------


def _state(value):
    return {"weights": cr.full((512, 1024), float(value), dtype=cr.float64), "version": value}


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    cr.save({"a": cr.ones(3)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        cr.save({"a": cr.ones(3), "b": object()}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
