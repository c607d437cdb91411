"""`cr.func` against `torch.func`: grad, value_and_grad (JAX's order), vjp, jacobian/jacrev and
hessian, with argnums as an int and as a tuple, and nested."""

import numpy as np
import pytest
import torch
import torch.func
from conftest import assert_close

import chainrule as cr

A = np.array([0.5, -1.25, 2.0])
B = np.array([1.5, 0.25, -0.75])
M = np.array([[0.3, -0.7, 1.1], [2.0, 0.4, -0.2]])


def both(*arrays):
    """float64 tensors (not requiring grad: the transforms take plain values) in both libraries."""
    return [cr.tensor(a, dtype=cr.float64) for a in arrays], [torch.tensor(a) for a in arrays]


def scalar_fn(lib):
    return lambda a, b: (lib.sin(a) * b * b).sum() + (a * a * a).sum()


def vector_fn(lib):
    return lambda a, b: lib.tanh(a * b) * a


def assert_tree_close(ours, theirs, what):
    """Compare nested tuples of tensors element by element, structure included."""
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple), f"{what}: got {type(ours).__name__}, PyTorch a tuple"
        assert len(ours) == len(theirs), f"{what}: {len(ours)} entries, PyTorch {len(theirs)}"
        for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
            assert_tree_close(o, t, f"{what}[{i}]")
    else:
        assert isinstance(ours, cr.Tensor), f"{what}: got {type(ours).__name__}, not a Tensor"
        assert_close(ours, theirs, what)


@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (1,)])
def test_grad_matches_torch_func_for_int_and_tuple_argnums(argnums):
    (a, b), (ta, tb) = both(A, B)
    ours = cr.func.grad(scalar_fn(cr), argnums=argnums)(a, b)
    theirs = torch.func.grad(scalar_fn(torch), argnums=argnums)(ta, tb)
    assert_tree_close(ours, theirs, f"grad argnums={argnums}")


def test_grad_leaves_its_arguments_untouched():
    (a, b), _ = both(A, B)
    g = cr.func.grad(scalar_fn(cr))(a, b)
    assert not a.requires_grad and a.grad is None and a.is_leaf
    assert not g.requires_grad


@pytest.mark.parametrize("argnums", [0, (0, 1)])
def test_value_and_grad_returns_value_then_grad_like_jax(argnums):
    (a, b), (ta, tb) = both(A, B)
    value, gradient = cr.func.value_and_grad(scalar_fn(cr), argnums=argnums)(a, b)
    t_gradient, t_value = torch.func.grad_and_value(scalar_fn(torch), argnums=argnums)(ta, tb)
    assert_close(value, t_value, "value")
    assert_tree_close(gradient, t_gradient, "gradient")


def test_grad_of_a_non_scalar_function_is_an_error_naming_the_shape():
    (a, b), _ = both(A, B)
    with pytest.raises(ValueError, match=r"scalar.*\(3,\)"):
        cr.func.grad(vector_fn(cr))(a, b)


def test_vjp_returns_output_and_a_function_giving_a_tuple_like_torch_func():
    (a, b), (ta, tb) = both(A, B)
    v = np.array([1.0, -0.5, 2.0])
    out, vjp_fn = cr.func.vjp(vector_fn(cr), a, b)
    t_out, t_vjp_fn = torch.func.vjp(vector_fn(torch), ta, tb)
    assert_close(out, t_out, "vjp output")
    cotangents = vjp_fn(cr.tensor(v, dtype=cr.float64))
    assert isinstance(cotangents, tuple) and len(cotangents) == 2
    assert_tree_close(cotangents, t_vjp_fn(torch.tensor(v)), "vjp cotangents")
    # vjp_fn can be called again, with another cotangent, as torch.func's can.
    assert_tree_close(vjp_fn(cr.tensor(-v, dtype=cr.float64)), t_vjp_fn(torch.tensor(-v)), "again")


@pytest.mark.parametrize("transform", ["jacobian", "jacrev"])
@pytest.mark.parametrize("argnums", [0, (0, 1)])
def test_jacobian_matches_torch_func_jacrev(transform, argnums):
    (a, b), (ta, tb) = both(A, B)
    ours = getattr(cr.func, transform)(vector_fn(cr), argnums=argnums)(a, b)
    theirs = torch.func.jacrev(vector_fn(torch), argnums=argnums)(ta, tb)
    assert_tree_close(ours, theirs, f"{transform} argnums={argnums}")


def test_jacobian_of_a_matrix_function_has_shape_output_then_input_like_torch():
    (m, a), (tm, ta) = both(M, A)
    ours = cr.func.jacobian(lambda m, a: cr.sigmoid(m @ a), argnums=(0, 1))(m, a)
    theirs = torch.func.jacrev(lambda m, a: torch.sigmoid(m @ a), argnums=(0, 1))(tm, ta)
    assert ours[0].shape == (2, 2, 3) and ours[1].shape == (2, 3)
    assert_tree_close(ours, theirs, "jacobian of sigmoid(m @ a)")


def test_jacobian_of_a_tuple_of_outputs_gives_a_tuple_like_torch_func():
    (a, b), (ta, tb) = both(A, B)
    ours = cr.func.jacrev(lambda a, b: (a * b, (a * a).sum()), argnums=(0, 1))(a, b)
    theirs = torch.func.jacrev(lambda a, b: (a * b, (a * a).sum()), argnums=(0, 1))(ta, tb)
    assert_tree_close(ours, theirs, "jacrev of two outputs")


@pytest.mark.parametrize("argnums", [0, 1, (0, 1)])
def test_hessian_matches_torch_func(argnums):
    (a, b), (ta, tb) = both(A, B)
    ours = cr.func.hessian(scalar_fn(cr), argnums=argnums)(a, b)
    theirs = torch.func.hessian(scalar_fn(torch), argnums=argnums)(ta, tb)
    assert_tree_close(ours, theirs, f"hessian argnums={argnums}")


def test_nested_grad_gives_the_third_derivative_of_a_cubic():
    x = cr.tensor(1.7, dtype=cr.float64)
    f = lambda t: t**4 - 3.0 * t**3
    third = cr.func.grad(cr.func.grad(cr.func.grad(f)))(x)
    assert third.item() == pytest.approx(24 * 1.7 - 18, rel=1e-12)


def test_jacobian_of_grad_equals_hessian_and_torch_func():
    (a, b), (ta, tb) = both(A, B)
    ours = cr.func.jacobian(cr.func.grad(scalar_fn(cr), argnums=1), argnums=1)(a, b)
    theirs = torch.func.jacrev(torch.func.grad(scalar_fn(torch), argnums=1), argnums=1)(ta, tb)
    assert_close(ours, theirs, "jacobian of grad")
    assert_close(ours, cr.func.hessian(scalar_fn(cr), argnums=1)(a, b), "vs hessian")


def test_grad_of_a_function_that_calls_grad_inside_matches_torch_func():
    # The inner transform's result feeds the outer function: the inner backward must be recorded.
    (a, b), (ta, tb) = both(A, B)

    def outer(lib, grad):
        def f(a, b):
            inner = grad(lambda u: (lib.sin(u) * b).sum())(a)
            return (inner * inner).sum()

        return f

    ours = cr.func.grad(outer(cr, cr.func.grad), argnums=(0, 1))(a, b)
    theirs = torch.func.grad(outer(torch, torch.func.grad), argnums=(0, 1))(ta, tb)
    assert_tree_close(ours, theirs, "grad through an inner grad")


def test_transforms_do_not_leave_grad_mode_changed():
    (a, b), _ = both(A, B)
    with cr.no_grad():
        g = cr.func.grad(scalar_fn(cr))(a, b)
        assert not cr.is_grad_enabled()
    assert cr.is_grad_enabled()
    np.testing.assert_allclose(g.numpy(), np.cos(A) * B * B + 3 * A * A, rtol=1e-12)


def test_vjp_of_a_tuple_of_outputs_takes_a_tuple_of_cotangents_like_torch_func():
    (a, b), (ta, tb) = both(A, B)
    out, vjp_fn = cr.func.vjp(lambda a, b: (a * b, cr.sin(a).sum()), a, b)
    t_out, t_vjp_fn = torch.func.vjp(lambda a, b: (a * b, torch.sin(a).sum()), ta, tb)
    assert_tree_close(out, t_out, "outputs")
    v, s = np.array([1.0, -2.0, 0.5]), 3.0
    ours = vjp_fn((cr.tensor(v, dtype=cr.float64), cr.tensor(s, dtype=cr.float64)))
    theirs = t_vjp_fn((torch.tensor(v), torch.tensor(s, dtype=torch.float64)))
    assert_tree_close(ours, theirs, "cotangents")


def test_transforms_of_a_function_that_ignores_its_arguments_give_zeros_like_torch_func():
    (a, b), (ta, tb) = both(A, B)

    def constant(lib):
        return lambda a, b: lib.tensor(2.0, dtype=lib.float64) + 0.0 * b.detach().sum()

    assert_tree_close(
        cr.func.grad(constant(cr), argnums=(0, 1))(a, b),
        torch.func.grad(constant(torch), argnums=(0, 1))(ta, tb),
        "grad of a constant",
    )
    _, vjp_fn = cr.func.vjp(lambda a: cr.ones(3, dtype=cr.float64), a)
    _, t_vjp_fn = torch.func.vjp(lambda a: torch.ones(3, dtype=torch.float64), ta)
    v = np.array([1.0, 2.0, 3.0])
    assert_tree_close(vjp_fn(cr.tensor(v, dtype=cr.float64)), t_vjp_fn(torch.tensor(v)), "vjp")
    assert_tree_close(
        cr.func.jacobian(lambda a: cr.ones(2, dtype=cr.float64))(a),
        torch.func.jacrev(lambda a: torch.ones(2, dtype=torch.float64))(ta),
        "jacobian of a constant",
    )


def test_vjp_fn_with_a_cotangent_of_the_wrong_shape_names_both_shapes():
    (a, b), _ = both(A, B)
    _, vjp_fn = cr.func.vjp(vector_fn(cr), a, b)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        vjp_fn(cr.ones(2, dtype=cr.float64))


def test_has_aux_returns_the_auxiliary_output_detached_like_torch_func():
    (a, b), (ta, tb) = both(A, B)

    def f(lib):
        return lambda a, b: ((a * a * b).sum(), {"total": a.sum(), "parts": [a * 2.0]})

    gradient, aux = cr.func.grad(f(cr), has_aux=True)(a, b)
    t_gradient, t_aux = torch.func.grad(f(torch), has_aux=True)(ta, tb)
    assert_close(gradient, t_gradient, "grad with aux")
    assert_close(aux["total"], t_aux["total"], "aux total")
    assert_close(aux["parts"][0], t_aux["parts"][0], "aux parts")
    assert not aux["total"].requires_grad and not aux["parts"][0].requires_grad
    (value, aux), gradient = cr.func.value_and_grad(f(cr), has_aux=True)(a, b)
    t_gradient, (t_value, t_aux) = torch.func.grad_and_value(f(torch), has_aux=True)(ta, tb)
    assert_close(value, t_value, "value")
    assert not value.requires_grad and not aux["total"].requires_grad
