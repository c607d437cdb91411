"""create_graph=True to any order: derivatives of derivatives against closed forms and PyTorch,
through `backward`, `cr.grad` and a custom Function whose backward is written in chainrule ops."""

import numpy as np
import pytest
import torch
from conftest import Cube, Exp, TorchExp, assert_close

import chainrule as cr

POINTS = np.array([-1.3, -0.4, 0.0, 0.7, 2.1])


def derivatives(f, x, order):
    """[f(x), f'(x), ..., f^(order)(x)] elementwise, each taken with cr.grad(create_graph=True)."""
    values = [f(x)]
    for _ in range(order):
        (d,) = cr.grad(values[-1].sum(), x, create_graph=True)
        values.append(d)
    return values


def test_tanh_derivatives_to_third_order_match_the_closed_forms():
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    _, d1, d2, d3 = derivatives(cr.tanh, x, 3)
    t = np.tanh(POINTS)
    np.testing.assert_allclose(d1.detach().numpy(), 1 - t**2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(d2.detach().numpy(), -2 * t * (1 - t**2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        d3.detach().numpy(), (1 - t**2) * (6 * t**2 - 2), rtol=1e-12, atol=1e-14
    )


def test_x_sin_x_derivatives_to_fourth_order_match_the_closed_forms():
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    _, d1, d2, d3, d4 = derivatives(lambda t: t * cr.sin(t), x, 4)
    s, c, p = np.sin(POINTS), np.cos(POINTS), POINTS
    expected = [s + p * c, 2 * c - p * s, -3 * s - p * c, -4 * c + p * s]
    for order, (ours, closed) in enumerate(zip((d1, d2, d3, d4), expected, strict=True), 1):
        np.testing.assert_allclose(
            ours.detach().numpy(),
            closed,
            rtol=1e-12,
            atol=1e-14,
            err_msg=f"derivative {order} of x sin x",
        )


def test_backward_with_create_graph_gives_a_differentiable_grad_like_pytorch():
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    tx = torch.tensor(POINTS, requires_grad=True)
    (x * cr.sin(x)).sum().backward(create_graph=True)
    (tx * torch.sin(tx)).sum().backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.grad_fn is not None
    first, t_first = x.grad, tx.grad
    x.grad, tx.grad = None, None
    (first * first).sum().backward()
    (t_first * t_first).sum().backward()
    assert_close(x.grad, tx.grad, "d/dx of (d/dx x sin x)^2")


def test_mixed_second_derivatives_match_pytorch():
    a0, b0 = np.array([0.3, -1.1, 0.8]), np.array([1.4, 0.2, -0.6])
    a = cr.tensor(a0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(b0, dtype=cr.float64, requires_grad=True)
    ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)

    def f(lib, a, b):
        return (lib.exp(a * b) + lib.sigmoid(a) * b**3 + lib.log1p(a * a) * lib.tanh(b)).sum()

    (ga,) = cr.grad(f(cr, a, b), a, create_graph=True)
    (tga,) = torch.autograd.grad(f(torch, ta, tb), ta, create_graph=True)
    v = np.array([1.0, -2.0, 0.5])
    # d/db (v . df/da): a mixed partial, contracted with v, and the pure second derivative in a.
    ours = cr.grad((ga * cr.tensor(v, dtype=cr.float64)).sum(), [a, b])
    theirs = torch.autograd.grad((tga * torch.tensor(v)).sum(), [ta, tb])
    assert_close(ours[0], theirs[0], "d2f/da2 . v")
    assert_close(ours[1], theirs[1], "d2f/dadb . v")


def test_second_order_through_matmul_and_reductions_matches_pytorch():
    rng = np.random.default_rng(3)
    w0, x0 = rng.standard_normal((4, 3)), rng.standard_normal((5, 4))
    w = cr.tensor(w0, dtype=cr.float64, requires_grad=True)
    tw = torch.tensor(w0, requires_grad=True)

    def loss(softplus, w, x):
        return softplus(x @ w).mean() + (w * w).sum() * 0.1

    (g,) = cr.grad(loss(cr.softplus, w, cr.tensor(x0, dtype=cr.float64)), w, create_graph=True)
    (tg,) = torch.autograd.grad(
        loss(torch.nn.functional.softplus, tw, torch.tensor(x0)), tw, create_graph=True
    )
    (h,) = cr.grad((g**2).sum(), w)
    (th,) = torch.autograd.grad((tg**2).sum(), tw)
    assert_close(h, th, "d/dw |d loss/dw|^2")


@pytest.mark.parametrize("order", [1, 2, 3])
def test_custom_function_saving_its_output_differentiates_to_any_order(order):
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    result = derivatives(Exp.apply, x, order)[-1]
    np.testing.assert_allclose(result.detach().numpy(), np.exp(POINTS), rtol=1e-14)


def test_custom_function_saving_its_input_gives_second_and_third_derivatives():
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    _, d1, d2, d3 = derivatives(Cube.apply, x, 3)
    np.testing.assert_allclose(d1.detach().numpy(), 3 * POINTS**2, rtol=1e-14)
    np.testing.assert_allclose(d2.detach().numpy(), 6 * POINTS, rtol=1e-14)
    np.testing.assert_allclose(d3.detach().numpy(), np.full(POINTS.shape, 6.0), rtol=1e-14)


def test_custom_function_second_derivative_in_a_larger_graph_matches_pytorch():
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    tx = torch.tensor(POINTS, requires_grad=True)
    (g,) = cr.grad((Exp.apply(cr.sin(x)) * x).sum(), x, create_graph=True)
    (tg,) = torch.autograd.grad((TorchExp.apply(torch.sin(tx)) * tx).sum(), tx, create_graph=True)
    (h,) = cr.grad(g.sum(), x)
    (th,) = torch.autograd.grad(tg.sum(), tx)
    assert_close(h, th, "second derivative through a custom Function")


def test_grad_with_create_graph_does_not_touch_dot_grad():
    x = cr.tensor(POINTS, dtype=cr.float64, requires_grad=True)
    (g,) = cr.grad(cr.tanh(x).sum(), x, create_graph=True)
    cr.grad(g.sum(), x)
    assert x.grad is None


def test_gradgradcheck_passes_on_a_composite_function():
    rng = np.random.default_rng(5)
    a = cr.tensor(rng.standard_normal((2, 3)), dtype=cr.float64, requires_grad=True)
    b = cr.tensor(rng.standard_normal(3), dtype=cr.float64, requires_grad=True)
    assert cr.gradgradcheck(lambda p, q: cr.tanh(p * q).sum(1) * cr.exp(q).mean(), (a, b))
