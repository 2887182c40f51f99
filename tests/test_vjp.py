"""gradbook.vjp against independent references: closed forms, dense Jacobians,
float64 central differences, gradcheck, and the adjoint identity on random shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import central_differences
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbook.vjp
from gradbook.jacobian import jacobian_loop
from gradbook.vjp import (
    dot_product_test,
    jacobian_explicit,
    jvp,
    jvp_double_backward,
    vjp,
    vjp_explicit,
    vjp_from_jacobian,
)

F64 = torch.float64


def randn(*shape, seed=0, dtype=F64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen, dtype=F64).to(device=device, dtype=dtype)


def outer(x):
    return torch.outer(x, x)


def mixing(x):
    """A nonlinear map (2, 3) -> (4,) whose Jacobian is neither square nor symmetric."""
    flat = x.reshape(-1)
    return torch.stack(
        [
            torch.sin(flat[0]) * flat[1],
            flat[2] ** 3 - flat[3],
            torch.exp(flat[4] * 0.3) + flat[5] * flat[0],
            torch.tanh(flat.cumsum(0)).sum(),
        ]
    )


# The chapter's worked examples --------------------------------------------------


def test_outer_product_vjp_is_twenty(device):
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    got = vjp(outer, x, torch.ones(4, 4, device=device))
    # closed form: sum_jk d(x_j x_k)/dx_i = 2 sum(x)
    assert got.tolist() == [20.0, 20.0, 20.0, 20.0]


def test_outer_product_jacobian_closed_form(device):
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64, device=device)
    jac = jacobian_loop(outer, x)
    assert jac.shape == (4, 4, 4)
    xs = np.array([1.0, 2.0, 3.0, 4.0])
    eye = np.eye(4)
    # d(x_j x_k)/dx_i = delta_ij x_k + delta_ik x_j
    expected = np.einsum("ij,k->jki", eye, xs) + np.einsum("ik,j->jki", eye, xs)
    np.testing.assert_array_equal(jac.cpu().numpy(), expected)
    v = torch.ones(4, 4, dtype=F64, device=device)
    assert torch.einsum("jk,jki->i", v, jac).tolist() == [20.0] * 4


def test_seed_double_backward_reproduces_wrong_answer_then_fixes_it():
    # The forum code: x.grad after backward() is a detached leaf.
    w = torch.tensor([2.0, 1.0, 3.0], requires_grad=True)
    x = torch.tensor([0.5], requires_grad=True)
    y = w[0] * x + w[1]
    y.backward()
    ell = x.grad
    assert ell.grad_fn is None
    ell.requires_grad = True
    w.grad.zero_()
    z = w[2] * x + ell**2
    z.backward()
    assert w.grad.tolist() == [0.0, 0.0, 0.5]
    assert ell.grad.tolist() == [4.0]  # the missing 4 is stranded on the copy
    # The fix: keep the derivative in the graph.
    w = torch.tensor([2.0, 1.0, 3.0], requires_grad=True)
    x = torch.tensor([0.5], requires_grad=True)
    y = w[0] * x + w[1]
    (ell,) = torch.autograd.grad(y, x, create_graph=True)
    z = w[2] * x + ell**2
    z.backward()
    # by hand: z = w2 x + w0^2 -> dz/dw = (2 w0, 0, x) = (4, 0, 0.5), dz/dx = w2 = 3
    assert w.grad.tolist() == [4.0, 0.0, 0.5]
    assert x.grad.tolist() == [3.0]


def test_seed_double_backward_with_torch_func():
    from torch.func import grad

    def y_of(w, x):
        return (w[0] * x + w[1]).sum()

    def z_of(w, x):
        ell = grad(y_of, argnums=1)(w, x)
        return (w[2] * x + ell**2).sum()

    gw, gx = grad(z_of, argnums=(0, 1))(torch.tensor([2.0, 1.0, 3.0]), torch.tensor([0.5]))
    assert gw.tolist() == [4.0, 0.0, 0.5]
    assert gx.tolist() == [3.0]
    w = torch.tensor([2.0, 1.0, 3.0], dtype=F64, requires_grad=True)
    x = torch.tensor([0.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(z_of, (w, x))
    assert torch.autograd.gradgradcheck(z_of, (w, x))


def test_two_step_chain_by_hand_equals_one_backward(device):
    x = randn(4, seed=3, device=device).requires_grad_(True)
    y = torch.outer(x, x)
    z = y**2
    dz = torch.ones_like(z)
    (dy,) = torch.autograd.grad(z, y, grad_outputs=dz, retain_graph=True)
    (dx_by_hand,) = torch.autograd.grad(y, x, grad_outputs=dy, retain_graph=True)
    (dx_once,) = torch.autograd.grad(z, x, grad_outputs=dz)
    # closed form: sum_jk (x_j x_k)^2 = (sum x^2)^2, gradient 4 (sum x^2) x
    closed = 4 * (x.detach() ** 2).sum() * x.detach()
    torch.testing.assert_close(dx_by_hand, dx_once, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(dx_once, closed, rtol=1e-13, atol=1e-13)


# Against dense Jacobians and finite differences --------------------------------


def test_jacobian_loop_matches_central_differences(device):
    x = randn(2, 3, seed=1, device=device)
    jac = jacobian_loop(mixing, x)
    assert jac.shape == (4, 2, 3)
    torch.testing.assert_close(jac, central_differences(mixing, x), rtol=1e-7, atol=1e-8)


def test_jacobian_loop_scalar_output_is_the_gradient(device):
    x = randn(5, seed=2, device=device)
    jac = jacobian_loop(lambda t: (t**3).sum(), x)
    assert jac.shape == (5,)
    torch.testing.assert_close(jac, 3 * x**2)


def test_vjp_and_jvp_match_the_dense_jacobian(device, dtype):
    x = randn(2, 3, seed=4, dtype=dtype, device=device)
    jac64 = central_differences(mixing, x.to(F64))
    v = randn(4, seed=5, dtype=dtype, device=device)
    t = randn(2, 3, seed=6, dtype=dtype, device=device)
    tol = dict(rtol=1e-7, atol=1e-8) if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
    got_vjp = vjp(mixing, x, v)
    got_jvp = jvp(mixing, x, t)
    assert got_vjp.dtype == dtype and got_jvp.dtype == dtype
    torch.testing.assert_close(got_vjp.to(F64), torch.einsum("k,kij->ij", v.to(F64), jac64), **tol)
    torch.testing.assert_close(got_jvp.to(F64), torch.einsum("kij,ij->k", jac64, t.to(F64)), **tol)


def test_jvp_double_backward_matches_forward_mode(device):
    x = randn(2, 3, seed=7, device=device)
    t = randn(2, 3, seed=8, device=device)
    torch.testing.assert_close(jvp_double_backward(mixing, x, t), jvp(mixing, x, t))


def test_jvp_is_not_vjp_for_a_non_symmetric_jacobian():
    a = randn(5, 5, seed=9)
    x, u = randn(5, seed=10), randn(5, seed=11)
    f = lambda t: a @ t  # noqa: E731 - J = a
    torch.testing.assert_close(jvp(f, x, u), a @ u)
    torch.testing.assert_close(vjp(f, x, u), a.T @ u)
    assert (jvp(f, x, u) - vjp(f, x, u)).abs().max() > 0.1


def test_vjp_from_jacobian_equals_vjp(device):
    x = randn(2, 3, seed=12, device=device)
    v = randn(4, seed=13, device=device)
    torch.testing.assert_close(vjp_from_jacobian(mixing, x, v), vjp(mixing, x, v))


def test_earlier_names_are_the_same_functions_and_still_work(device):
    """``jacobian_explicit`` and ``vjp_explicit`` stay importable from gradbook.vjp."""
    assert jacobian_explicit is jacobian_loop
    assert vjp_explicit is vjp_from_jacobian
    assert {"jacobian_explicit", "vjp_explicit"} <= set(vars(gradbook.vjp))
    x = randn(2, 3, seed=12, device=device)
    v = randn(4, seed=13, device=device)
    jac = central_differences(mixing, x)
    torch.testing.assert_close(jacobian_explicit(mixing, x), jac, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(
        vjp_explicit(mixing, x, v), torch.einsum("k,kij->ij", v, jac), rtol=1e-7, atol=1e-8
    )


# Differentiability (double backward) ---------------------------------------------


def test_products_are_differentiable_gradcheck():
    x = randn(2, 3, seed=14).requires_grad_(True)
    v = randn(4, seed=15).requires_grad_(True)
    t = randn(2, 3, seed=16).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: vjp(mixing, a, b), (x, v))
    assert torch.autograd.gradgradcheck(lambda a, b: vjp(mixing, a, b), (x, v))
    assert torch.autograd.gradcheck(lambda a, b: jvp(mixing, a, b), (x, t))
    assert torch.autograd.gradcheck(lambda a, b: jvp_double_backward(mixing, a, b), (x, t))


def test_vjp_without_grad_inputs_returns_no_graph():
    x, v = randn(2, 3, seed=17), randn(4, seed=18)
    assert not vjp(mixing, x, v).requires_grad
    assert not jvp(mixing, x, x).requires_grad


def test_constant_function_gives_zeros(device):
    x = randn(3, seed=19, device=device)

    def const(t):
        return torch.ones(2, dtype=t.dtype, device=t.device)

    assert vjp(const, x, torch.ones(2, dtype=F64, device=device)).tolist() == [0.0] * 3
    assert jvp(const, x, x).tolist() == [0.0] * 2
    assert jvp_double_backward(const, x, x).tolist() == [0.0] * 2
    assert jacobian_loop(const, x).abs().sum().item() == 0.0
    assert dot_product_test(const, x) == 0.0


# The adjoint (dot-product) test -------------------------------------------------


def test_dot_product_test_is_tiny_for_autograd(device, dtype):
    x = randn(2, 3, seed=20, dtype=dtype, device=device)
    err = dot_product_test(mixing, x, torch.Generator().manual_seed(1))
    assert err < (1e-14 if dtype == F64 else 1e-5)


def test_dot_product_test_uses_the_generator():
    x = randn(2, 3, seed=21)
    a = dot_product_test(
        mixing, x, torch.Generator().manual_seed(5), vjp_fn=lambda v: 0 * x + v.sum()
    )
    b = dot_product_test(
        mixing, x, torch.Generator().manual_seed(5), vjp_fn=lambda v: 0 * x + v.sum()
    )
    assert a == b
    # another seed draws other (v, t), so the (wrong) VJP is off by another amount
    c = dot_product_test(
        mixing, x, torch.Generator().manual_seed(6), vjp_fn=lambda v: 0 * x + v.sum()
    )
    assert c != a


def tanh_layer_parts(seed=22):
    a = randn(6, 4, seed=seed)
    x = randn(4, seed=seed + 1)

    def f(t):
        return torch.tanh(a @ t)

    def backward_right(v):
        return a.T @ (v * (1 - torch.tanh(a @ x) ** 2))

    return f, x, a, backward_right


def test_dot_product_test_passes_a_correct_hand_written_backward():
    f, x, _, backward = tanh_layer_parts()
    assert dot_product_test(f, x, vjp_fn=backward) < 1e-14


@pytest.mark.parametrize(
    "mistake", ["no transpose", "missing derivative", "sign", "tanh' as 1 - tanh"]
)
def test_dot_product_test_catches_a_wrong_backward(mistake):
    f, x, a, _ = tanh_layer_parts()
    s = 1 - torch.tanh(a @ x) ** 2
    wrong = {
        "no transpose": lambda v: a[:4, :4] @ (v * s)[:4],  # J v style confusion on a square block
        "missing derivative": lambda v: a.T @ v,
        "sign": lambda v: -(a.T @ (v * s)),
        "tanh' as 1 - tanh": lambda v: a.T @ (v * (1 - torch.tanh(a @ x))),
    }[mistake]
    assert dot_product_test(f, x, vjp_fn=wrong) > 1e-3


class _Cube(torch.autograd.Function):
    """x^3 with a hand-written backward and forward-mode formula; `wrong` scales the backward."""

    @staticmethod
    def forward(x, wrong):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, wrong = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.wrong = wrong

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * (2.0 if ctx.wrong else 3.0) * x**2, None

    @staticmethod
    def jvp(ctx, x_t, _):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * x_t


def test_dot_product_test_on_a_custom_function():
    x = randn(7, seed=30)
    assert dot_product_test(lambda t: _Cube.apply(t, False), x) < 1e-14
    assert dot_product_test(lambda t: _Cube.apply(t, True), x) > 1e-2


@settings(max_examples=25, deadline=None)
@given(
    in_shape=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    out_shape=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_adjoint_identity_on_random_shapes(in_shape, out_shape, seed):
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    a = randn(n_out, n_in, seed=seed)
    b = randn(n_out, seed=seed + 1)
    x = randn(*in_shape, seed=seed + 2)

    def f(t):
        return torch.sin(a @ t.reshape(-1) + b).reshape(out_shape) * (1 + t.sum())

    assert dot_product_test(f, x, torch.Generator().manual_seed(seed)) < 1e-12
    v = randn(*out_shape, seed=seed + 3)
    torch.testing.assert_close(vjp(f, x, v), vjp_from_jacobian(f, x, v), rtol=1e-12, atol=1e-12)
    assert jacobian_loop(f, x).shape == (*out_shape, *in_shape)


# Bad input -------------------------------------------------------------------------


def test_v_with_the_input_shape_is_rejected_with_both_shapes():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(
        ValueError, match=r"v: expected shape \(4, 4\) \(the output f\(x\)'s shape\), got \(4,\)"
    ):
        vjp(outer, x, torch.ones(4))
    with pytest.raises(ValueError, match=r"v: expected shape \(4, 4\).*got \(4,\)"):
        vjp_from_jacobian(outer, x, torch.ones(4))


def test_t_with_the_output_shape_is_rejected_with_both_shapes():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(
        ValueError, match=r"t: expected shape \(4,\) \(the input x's shape\), got \(4, 4\)"
    ):
        jvp(outer, x, torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"t: expected shape \(4,\)"):
        jvp_double_backward(outer, x, torch.ones(4, 4))


def test_dtype_mismatch_is_rejected():
    x = torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match=r"v: expected dtype torch.float64.*got torch.float32"):
        vjp(torch.sin, x, torch.ones(3))
    with pytest.raises(ValueError, match=r"t: expected dtype torch.float64.*got torch.float32"):
        jvp(torch.sin, x, torch.ones(3))
    with pytest.raises(
        ValueError,
        match=r"^t: expected dtype torch\.float64 \(the input x's dtype\), got torch\.float32$",
    ):
        jvp_double_backward(torch.sin, x, torch.ones(3))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: vjp(torch.sin, [1.0], torch.ones(1)),
            TypeError,
            "x: expected a torch.Tensor, got list",
        ),
        (
            lambda: vjp(torch.sin, torch.ones(2, dtype=torch.long), torch.ones(2)),
            TypeError,
            "x: expected a floating",
        ),
        (
            lambda: vjp(torch.sin, torch.ones(2), None),
            TypeError,
            "v: expected a torch.Tensor, got NoneType",
        ),
        (
            lambda: jvp(torch.sin, torch.ones(2), 1.0),
            TypeError,
            "t: expected a torch.Tensor, got float",
        ),
        (lambda: vjp(3, torch.ones(2), torch.ones(2)), TypeError, "f: expected a function"),
        (
            lambda: vjp(lambda t: t.tolist(), torch.ones(2), torch.ones(2)),
            TypeError,
            "f: expected f\\(x\\) to return",
        ),
        (
            lambda: jacobian_loop(lambda t: 1.0, torch.ones(2)),
            TypeError,
            "f: expected f\\(x\\) to return",
        ),
        (
            lambda: jacobian_loop(torch.sin, torch.arange(3)),
            TypeError,
            r"^x: expected a floating-point tensor, got dtype torch\.int64; only floating",
        ),
        (
            lambda: jacobian_loop("sin", torch.ones(2)),
            TypeError,
            r"^f: expected a callable f\(x\) -> Tensor, got str$",
        ),
        (
            lambda: jvp_double_backward(None, torch.ones(2), torch.ones(2)),
            TypeError,
            r"^f: expected a function of one tensor, got NoneType$",
        ),
        (
            lambda: dot_product_test(torch.sin, torch.ones(2), trials=0),
            ValueError,
            "trials: expected an int >= 1, got 0",
        ),
        (
            lambda: dot_product_test(torch.sin, torch.ones(2), vjp_fn=lambda v: torch.ones(3)),
            ValueError,
            r"vjp_fn\(v\): expected shape \(2,\)",
        ),
    ],
)
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_mismatch_is_rejected():
    x = torch.ones(3, device="cuda")
    with pytest.raises(ValueError, match="v: expected device cuda"):
        vjp(torch.sin, x, torch.ones(3))


# Docstring promises on their hardest inputs ---------------------------------------


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (torch.float32, 1e-25),  # ||J t||^2 underflows float32
        (torch.float32, 1e20),  # ||J t||^2 overflows float32
        (torch.float64, 1e-170),
        (torch.float64, 1e160),
    ],
)
def test_dot_product_test_is_scale_free_at_extreme_magnitudes(dtype, scale):
    """ "Scale-free": a correct pair gives a few units of rounding and a wrong one 1e-3 to 1,
    also where squaring J t would under- or overflow the dtype."""
    A = randn(30, 40, seed=30).to(dtype) * scale
    x = randn(40, seed=31, dtype=dtype)

    def f(z):
        return A @ z

    right = dot_product_test(f, x, torch.Generator().manual_seed(0))
    assert right < (1e-6 if dtype == torch.float32 else 1e-15)
    for wrong in (lambda v: -(v @ A), lambda v: v[:20].repeat(2) @ A[:20].repeat(2, 1)):
        assert 1e-3 <= dot_product_test(f, x, vjp_fn=wrong) <= 1


def test_dot_product_test_in_float32_on_a_wide_dynamic_range():
    """ "~1e-7 in float32", with Jacobian entries from 1e-18 to 1e18 in one map."""
    w = torch.logspace(-18, 18, 1000)
    x = randn(1000, seed=32, dtype=torch.float32)
    assert dot_product_test(lambda z: (w * z).cumsum(0), x) < 1e-6


def test_dot_product_test_is_zero_when_both_products_vanish():
    """ "0.0 when J t and v^T J are both zero", also for an empty input."""
    x = randn(5, seed=33)
    assert dot_product_test(lambda z: 0 * z[:3], x) == 0.0
    assert dot_product_test(lambda z: z.sum().reshape(1), torch.zeros(0, dtype=F64)) == 0.0
