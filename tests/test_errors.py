"""Bad input gives an error that names the problem (issue 2, item 6): the operation, the shapes,
the dtype, where in nested data, and what to do instead."""

import re

import numpy as np
import pytest

import chainrule as cr


def names_both_shapes(message, a, b):
    return str(tuple(a)) in message and str(tuple(b)) in message


# ---- shape mismatches -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "left,right",
    [
        ((2, 3), (4, 5)),
        ((3,), (4,)),
        ((2, 3), (4,)),
        ((5,), (4, 2)),
        ((7, 2, 3), (7, 4, 5)),
        ((7, 2, 3), (6, 3, 5)),
    ],
)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_matmul_shape_mismatch_names_the_op_and_both_shapes(left, right, requires_grad):
    a = cr.randn(*left, requires_grad=requires_grad)
    b = cr.randn(*right)
    for call in (lambda: a @ b, lambda: cr.matmul(a, b), lambda: a.matmul(b)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith("matmul"), message
        assert names_both_shapes(message, left, right), message


def test_matmul_of_a_0d_tensor_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"matmul.*\(\).*\(3,\)"):
        cr.tensor(2.0) @ cr.randn(3)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "maximum": cr.maximum,
    "minimum": cr.minimum,
}


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("left,right", [((2, 3), (4, 5)), ((2, 3), (3, 2)), ((3,), (2,))])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_broadcast_mismatch_names_the_op_and_both_shapes(op, left, right, requires_grad):
    a = cr.rand(*left, requires_grad=requires_grad)
    b = cr.rand(*right)
    with pytest.raises(ValueError) as info:
        BINARY[op](a, b)
    message = str(info.value)
    assert message.startswith(op), message
    assert names_both_shapes(message, left, right), message
    assert "broadcast" in message


def test_broadcast_mismatch_with_a_numpy_array_on_either_side_names_both_shapes():
    t, array = cr.randn(2, 3), np.ones((4, 5))
    with pytest.raises(ValueError, match=r"^sub.*\(2, 3\).*\(4, 5\)"):
        t - array
    with pytest.raises(ValueError, match=r"^sub.*\(4, 5\).*\(2, 3\)"):
        array - t


def test_expand_to_an_incompatible_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"broadcast.*\(2, 3\).*\(4, 5\)"):
        cr.randn(2, 3).expand(4, 5)


# ---- requires_grad on integer and bool data ---------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: cr.tensor([1, 2, 3], requires_grad=True),
        lambda: cr.tensor(np.arange(3), requires_grad=True),
        lambda: cr.zeros(3, dtype=cr.int64, requires_grad=True),
        lambda: cr.arange(3, requires_grad=True),
        lambda: cr.tensor([1, 2]).requires_grad_(),
    ],
    ids=["list", "array", "zeros", "arange", "requires_grad_"],
)
def test_integer_tensor_with_requires_grad_says_only_floats_can_and_how(make):
    with pytest.raises(TypeError) as info:
        make()
    message = str(info.value)
    assert "floating-point" in message and "int64" in message
    assert "cr.float32" in message  # says what to do


def test_bool_tensor_with_requires_grad_names_bool():
    with pytest.raises(TypeError, match=r"floating-point.*bool"):
        cr.tensor([True, False], requires_grad=True)


# ---- backward misuse ----------------------------------------------------------------------------


def test_backward_twice_says_the_graph_was_freed_and_to_pass_retain_graph():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    loss = (cr.exp(x) * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError) as info:
        loss.backward()
    message = str(info.value)
    assert "second time" in message and "freed" in message and "retain_graph=True" in message


def test_backward_twice_through_a_shared_part_of_a_graph_is_refused_too():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    hidden = cr.exp(x)
    hidden.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        (hidden * 2.0).sum().backward()


def test_non_scalar_backward_without_gradient_names_the_shape_and_the_remedy():
    x = cr.tensor([[1.0, 2.0]], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        (x * 2.0).backward()
    message = str(info.value)
    assert "scalar" in message and "(1, 2)" in message and "gradient=" in message


def test_backward_gradient_of_the_wrong_shape_names_both_shapes():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(4,\).*\(3,\)"):
        (x * 2.0).backward(gradient=cr.ones(4))


def test_backward_on_a_tensor_that_does_not_require_grad_says_so():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.tensor([1.0, 2.0]).sum().backward()


# ---- making tensors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,where",
    [
        ([[1, 2], [3]], "data[1]"),
        ([[1.0, 2.0], 3.0], "data[1]"),
        ([1.0, [2.0, 3.0]], "data[1]"),
        ([[[1, 2], [3, 4]], [[5, 6], [7]]], "data[1][1]"),
    ],
)
def test_ragged_nested_lists_name_where_they_are_ragged(data, where):
    with pytest.raises(ValueError) as info:
        cr.tensor(data)
    message = str(info.value)
    assert "ragged" in message and where in message, message


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, "float16", np.uint16, "int8"])
def test_an_unsupported_dtype_argument_names_it_and_lists_the_supported_ones(dtype):
    with pytest.raises(TypeError) as info:
        cr.tensor([1.0, 2.0], dtype=dtype)
    message = str(info.value)
    assert "not supported" in message
    assert re.search(r"float16|complex64|uint16|int8", message), message
    assert all(name in message for name in ("float32", "float64", "int64", "bool"))


@pytest.mark.parametrize("factory", [cr.zeros, cr.ones, cr.randn, cr.rand])
def test_factories_refuse_an_unsupported_dtype(factory):
    with pytest.raises(TypeError, match="complex64.*not supported"):
        factory(2, dtype=np.complex64)


def test_an_array_of_an_unsupported_dtype_is_refused_naming_it():
    for array in (np.array([1 + 2j]), np.array(["a", "b"]), np.array([object()])):
        with pytest.raises(TypeError, match=str(array.dtype)):
            cr.tensor(array)


@pytest.mark.parametrize("data", [None, "text", {"a": 1}, [1.0, "x"]])
def test_data_that_is_not_numbers_is_refused_naming_its_type(data):
    with pytest.raises(TypeError, match=r"cannot make a tensor from (NoneType|str|dict)"):
        cr.tensor(data)


@pytest.mark.parametrize("data,dtype", [([2**70], None), ([[1, 2**64]], None), ([2**40], cr.int32)])
def test_an_integer_too_large_for_its_dtype_names_the_dtype_and_the_remedy(data, dtype):
    with pytest.raises(OverflowError, match=r"dtype int(64|32).*out of its range.*cr\.float64"):
        cr.tensor(data, dtype=dtype)


@pytest.mark.parametrize("factory", [cr.rand, cr.randn])
def test_random_factories_refuse_an_integer_dtype_like_pytorch(factory):
    with pytest.raises(TypeError, match=r"float32 or float64, not int64"):
        factory(2, dtype=cr.int64)


def test_from_numpy_refuses_a_dtype_it_cannot_share_and_names_it():
    with pytest.raises(TypeError, match=r"float16.*not supported.*cr\.tensor"):
        cr.from_numpy(np.ones(2, dtype=np.float16))
    shared = np.ones(2)
    cr.from_numpy(shared)._data[0] = 5.0
    assert shared[0] == 5.0
