"""Tensors as API.md "Tensors" describes them: dtype rules (compared with PyTorch's), factories,
seeded randomness, attributes, conversions and repr."""

import numpy as np
import pytest
import torch

import chainrule as cr

# Data whose inferred dtype both libraries must agree on (float data in the default dtype).
DATA = {
    "python float": 1.5,
    "python int": 3,
    "python bool": True,
    "list of floats": [1.0, 2.5],
    "list of ints": [[1, 2], [3, 4]],
    "list of bools": [True, False],
    "ints and floats": [1, 2.5],
    "bools and ints": [True, 2],
    "empty list": [],
    "float32 array": np.array([1.0, 2.0], dtype=np.float32),
    "float64 array": np.array([1.0, 2.0], dtype=np.float64),
    "int32 array": np.array([1, 2], dtype=np.int32),
    "int64 array": np.array([1, 2], dtype=np.int64),
    "bool array": np.array([True, False]),
    "0-d float64 array": np.array(2.0),
    "float64 scalar": np.float64(2.0),
    "float32 scalar": np.float32(2.0),
}


def torch_dtype_name(t):
    return str(t.dtype).removeprefix("torch.")


@pytest.mark.parametrize("default", ["float32", "float64"])
@pytest.mark.parametrize("label", list(DATA))
def test_inferred_dtype_matches_pytorch_under_either_default(label, default):
    cr.set_default_dtype(getattr(cr, default))
    torch.set_default_dtype(getattr(torch, default))
    data = DATA[label]
    ours, theirs = cr.tensor(data), torch.tensor(data)
    assert str(ours.dtype) == torch_dtype_name(theirs), f"{label} with default {default}"
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_a_tensor_made_from_a_tensor_keeps_its_dtype_whatever_the_default():
    source = cr.tensor([1.0, 2.0], dtype=cr.float64)
    cr.set_default_dtype(cr.float32)
    assert cr.tensor(source).dtype == cr.float64
    cr.set_default_dtype(cr.float64)
    assert cr.tensor(cr.tensor([1.0], dtype=cr.float32)).dtype == cr.float32


@pytest.mark.parametrize(
    "data", [1.5, [1, 2], np.array([1.0], dtype=np.float32), np.array([True, False])]
)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool_"])
def test_dtype_argument_wins_over_inference(data, dtype):
    assert cr.tensor(data, dtype=getattr(cr, dtype)).dtype == getattr(cr, dtype)


def test_set_default_dtype_changes_what_floats_and_float_factories_give():
    cr.set_default_dtype(cr.float64)
    assert cr.get_default_dtype() == cr.float64
    made = [
        cr.tensor(0.5),
        cr.tensor([[0.5]]),
        cr.zeros(2),
        cr.ones(2, 2),
        cr.full((2,), 0.5),
        cr.rand(2),
        cr.randn(2),
        cr.linspace(0, 1, 3),
        cr.eye(2),
        cr.arange(0.0, 1.0, 0.5),
    ]
    assert all(t.dtype == cr.float64 for t in made), [t.dtype for t in made]
    cr.set_default_dtype(cr.float32)
    assert cr.tensor(0.5).dtype == cr.float32 and cr.zeros(2).dtype == cr.float32


def test_set_default_dtype_refuses_a_non_float_dtype():
    with pytest.raises(TypeError, match="int64"):
        cr.set_default_dtype(cr.int64)
    assert cr.get_default_dtype() == cr.float32


def test_tensor_always_copies_its_data():
    array = np.array([1.0, 2.0])
    from_array = cr.tensor(array)
    from_tensor = cr.tensor(from_array)
    array[0] = 99.0
    from_array._data[1] = -1.0
    assert from_array.tolist() == [1.0, -1.0]
    assert from_tensor.tolist() == [1.0, 2.0]


def test_tensor_of_a_tensor_that_requires_grad_is_a_fresh_leaf_like_pytorch():
    source = cr.tensor([1.0, 2.0], requires_grad=True) * 2.0
    copy = cr.tensor(source)
    assert copy.is_leaf and not copy.requires_grad and copy.grad_fn is None


@pytest.mark.parametrize(
    "data",
    [[1, 2], 3, [True], np.array([1, 2], dtype=np.int32)],
    ids=["ints", "int", "bool", "i32"],
)
def test_integer_and_bool_tensors_cannot_require_grad_with_a_clear_error(data):
    with pytest.raises(TypeError, match=r"floating-point.*(int|bool)"):
        cr.tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        cr.tensor(data).requires_grad_()


@pytest.mark.parametrize("factory", ["zeros", "ones", "rand", "randn"])
def test_factories_take_sizes_or_a_tuple_dtype_and_requires_grad(factory):
    fn = getattr(cr, factory)
    assert fn(2, 3).shape == fn((2, 3)).shape == fn([2, 3]).shape == (2, 3)
    assert fn(4).shape == (4,)
    assert fn(()).shape == ()
    t = fn(2, 3, dtype=cr.float64, requires_grad=True)
    assert t.dtype == cr.float64 and t.requires_grad and t.is_leaf and t.grad is None


def test_other_factories_match_pytorch():
    pairs = [
        (cr.full((2, 3), 7), torch.full((2, 3), 7)),
        (cr.full((2,), 0.5), torch.full((2,), 0.5)),
        (cr.zeros_like(cr.tensor([[1, 2]])), torch.zeros_like(torch.tensor([[1, 2]]))),
        (cr.ones_like(cr.tensor([1.0, 2.0])), torch.ones_like(torch.tensor([1.0, 2.0]))),
        (cr.arange(5), torch.arange(5)),
        (cr.arange(1, 2, 0.25), torch.arange(1, 2, 0.25)),
        (cr.linspace(-1, 1, 5), torch.linspace(-1, 1, 5)),
        (cr.eye(3), torch.eye(3)),
        (cr.eye(2, 3), torch.eye(2, 3)),
    ]
    for ours, theirs in pairs:
        assert str(ours.dtype) == torch_dtype_name(theirs)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_manual_seed_makes_random_tensors_reproducible():
    cr.manual_seed(1234)
    first = (cr.rand(3, 2).numpy(), cr.randn(4).numpy())
    cr.manual_seed(1234)
    second = (cr.rand(3, 2).numpy(), cr.randn(4).numpy())
    cr.manual_seed(1235)
    other = cr.rand(3, 2).numpy()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other)
    assert ((first[0] >= 0) & (first[0] < 1)).all()


def test_attributes_of_leaves_and_results():
    x = cr.tensor([[1.0, 2.0, 3.0]], requires_grad=True, name="x")
    y = x * 2.0
    assert x.shape == (1, 3) and x.ndim == 2 and x.dtype == cr.float32
    assert x.requires_grad and x.is_leaf and x.grad_fn is None and x.grad is None
    assert x.name == "x"
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None and y.name is None
    y.name = "doubled"
    assert y.name == "doubled"
    y.sum().backward()
    assert isinstance(x.grad, cr.Tensor) and x.grad.shape == x.shape
    plain = cr.tensor([1.0])
    assert not plain.requires_grad and plain.is_leaf and plain.grad_fn is None


def test_numpy_on_a_tensor_that_requires_grad_says_to_detach():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)"):
        x.numpy()
    with pytest.raises(RuntimeError, match=r"detach\(\)"):
        (x * 2.0).numpy()
    assert x.detach().numpy().tolist() == [1.0, 2.0]


def test_item_and_tolist_give_python_values_like_pytorch():
    assert cr.tensor(2.5).item() == torch.tensor(2.5).item()
    assert type(cr.tensor(3).item()) is int and type(cr.tensor(2.5).item()) is float
    assert type(cr.tensor(True).item()) is bool
    assert cr.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert cr.tensor([0.5, 1.5]).tolist() == torch.tensor([0.5, 1.5]).tolist()
    with pytest.raises(ValueError, match=r"one element.*\(2,\)"):
        cr.tensor([1.0, 2.0]).item()


def test_detach_shares_data_and_leaves_the_graph():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.numpy(), y._data)


def test_to_float_and_double_convert_and_keep_the_gradient_flowing_like_pytorch():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    assert x.to(cr.float32) is x and x.float() is x
    y, ty = x.double(), tx.double()
    assert y.dtype == cr.float64 and y.requires_grad
    assert x.to(cr.float64).dtype == x.to("float64").dtype == cr.float64
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    assert x.grad.dtype == cr.float32
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    assert cr.tensor([1, 2]).float().dtype == cr.float32
    assert cr.tensor([1.5]).to(cr.int64).tolist() == [1]


def test_requires_grad_underscore_turns_a_leaf_on_and_returns_it():
    x = cr.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad


def test_array_protocol_lets_numpy_read_tensors():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    assert np.asarray(x).tolist() == [1.0, 2.0]
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    assert np.array(cr.tensor([[1, 2]])).shape == (1, 2)


def test_repr_shows_values_and_the_facts_that_matter():
    # Where chainrule's repr can be PyTorch's, it is.
    for data in ([1.0, 2.0], [[1, 2], [3, 4]], [True, False]):
        assert repr(cr.tensor(data)) == repr(torch.tensor(data))
    assert repr(cr.tensor([1.0, 2.0], requires_grad=True)) == repr(
        torch.tensor([1.0, 2.0], requires_grad=True)
    )
    wide = repr(cr.tensor([1.0, 2.0], dtype=cr.float64))
    assert wide.startswith("tensor([1., 2.]") and "float64" in wide
    result = repr(cr.tensor([1.0], requires_grad=True) * 2.0)
    assert "grad_fn=<mul>" in result and "2." in result
    assert "name='w1'" in repr(cr.tensor([1.0], name="w1"))
    assert "..." in repr(cr.zeros(5000))  # long tensors are summarised, not dumped


PROMOTION_OPERANDS = {
    "bool[2]": ([True, False], "bool"),
    "bool 0-d": (True, "bool"),
    "int32[2]": ([1, 2], "int32"),
    "int64[2]": ([1, 2], "int64"),
    "int64 0-d": (3, "int64"),
    "float32[2]": ([0.5, 1.5], "float32"),
    "float32 0-d": (2.5, "float32"),
    "float64[2]": ([0.5, 1.5], "float64"),
    "float64 0-d": (2.5, "float64"),
}


@pytest.mark.parametrize("left", list(PROMOTION_OPERANDS))
@pytest.mark.parametrize("right", list(PROMOTION_OPERANDS))
def test_result_dtype_of_two_tensors_follows_pytorchs_promotion(left, right):
    def make(lib, label):
        data, dtype = PROMOTION_OPERANDS[label]
        if lib is cr and dtype == "bool":
            dtype = "bool_"
        return lib.tensor(data, dtype=getattr(lib, dtype))

    ours = cr.add(make(cr, left), make(cr, right))
    theirs = torch.add(make(torch, left), make(torch, right))
    assert str(ours.dtype) == torch_dtype_name(theirs), f"{left} + {right}"
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
