"""Chapter 7 checks fail on the known mistakes (the forum's among them), pass on the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradbook.blackbox as blackbox
from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch07 import (
    _box,
    _box_jacobian,
    check_broyden_step,
    check_fd_function,
    check_one_probe_jacobian,
    check_secant_vjp,
    check_spsa_vjp,
    check_training,
)

DELEGATE = "write it yourself: this is what gradbook.blackbox"

# Exercise 7.1 -----------------------------------------------------------------


def one_probe_reference(dx, df):
    return torch.outer(df, dx) / (dx @ dx)


def test_one_probe_reference_passes(capsys):
    assert check_one_probe_jacobian(one_probe_reference)
    assert "PASSED Exercise 7.1" in capsys.readouterr().out


def test_one_probe_pinv_passes():
    assert check_one_probe_jacobian(lambda dx, df: df[:, None] @ torch.linalg.pinv(dx[:, None]))


def test_one_probe_broadcast_passes():
    assert check_one_probe_jacobian(lambda dx, df: df[:, None] * dx[None, :] / dx.norm() ** 2)


def test_one_probe_delegation_fails():
    with pytest.raises(ExerciseFailed, match=DELEGATE):
        check_one_probe_jacobian(blackbox.rank_one_jacobian)
    with pytest.raises(ExerciseFailed, match=DELEGATE):
        check_one_probe_jacobian(lambda dx, df: blackbox.secant_jacobian(dx[:, None], df[:, None]))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's right inverse dx^T (dx dx^T)^-1: singular, or noise through rounding
        (
            lambda dx, df: df[:, None] @ dx[None, :] @ torch.linalg.inv(torch.outer(dx, dx)),
            "dx dx\\^T|rank-one matrix",
        ),
        (
            lambda dx, df: torch.from_numpy(np.outer(df, dx) @ np.linalg.inv(np.outer(dx, dx))),
            "dx dx\\^T|rank-one matrix",
        ),
        (lambda dx, df: torch.outer(dx, df) / (dx @ dx), "the transpose"),
        (lambda dx, df: torch.outer(df, dx) / dx.norm(), "normalisation"),
        # spread df equally over the inputs: J dx = df holds, but J is not minimal
        (lambda dx, df: torch.outer(df, 1 / dx) / dx.numel(), "orthogonal to dx"),
        (lambda dx, df: torch.outer(df, dx), "normalisation|secant condition"),
        (lambda dx, df: 0.5 * torch.outer(df, dx) / (dx @ dx), "secant condition J dx = df"),
        (lambda dx, df: (torch.outer(df, dx) / (dx @ dx)).numpy().tolist(), "torch.Tensor"),
    ],
)
def test_one_probe_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_one_probe_jacobian(wrong)


# Exercise 7.2 -----------------------------------------------------------------


def secant_reference(fun, x, g, dX):
    fx = fun(x)
    dF = torch.stack([fun(x + dX[:, i]) - fx for i in range(dX.shape[1])], dim=1)
    return g @ dF @ torch.linalg.pinv(dX)


def secant_lstsq(fun, x, g, dX):
    fx = fun(x)
    dF = torch.stack([fun(x + dX[:, i]) - fx for i in range(dX.shape[1])], dim=1)
    return g @ torch.linalg.lstsq(dX.T, dF.T).solution.T


def _dF(fun, x, dX):
    fx = fun(x)
    return torch.stack([fun(x + dX[:, i]) - fx for i in range(dX.shape[1])], dim=1)


def right_inverse(fun, x, g, dX):  # the forum's dX^T (dX dX^T)^-1
    return g @ _dF(fun, x, dX) @ dX.T @ torch.linalg.inv(dX @ dX.T)


def left_inverse(fun, x, g, dX):  # (dX^T dX)^-1 dX^T: fine for k <= m only
    return g @ _dF(fun, x, dX) @ torch.linalg.inv(dX.T @ dX) @ dX.T


def square_inverse(fun, x, g, dX):
    return g @ _dF(fun, x, dX) @ torch.linalg.inv(dX)


def walking_probes(fun, x, g, dX):
    points = [x]
    for i in range(dX.shape[1]):
        points.append(points[-1] + dX[:, i])
    values = [fun(p) for p in points]
    dF = torch.stack([values[i + 1] - values[i] for i in range(dX.shape[1])], dim=1)
    return g @ dF @ torch.linalg.pinv(dX)


def no_subtraction(fun, x, g, dX):
    plus = torch.stack([fun(x + dX[:, i]) for i in range(dX.shape[1])], dim=1)
    return g @ plus @ torch.linalg.pinv(dX)


def summed_one_probe(fun, x, g, dX):
    dF = _dF(fun, x, dX)
    return sum(
        g @ torch.outer(dF[:, i], dX[:, i]) / (dX[:, i] @ dX[:, i]) for i in range(dX.shape[1])
    )


def averaged_one_probe(fun, x, g, dX):
    return summed_one_probe(fun, x, g, dX) / dX.shape[1]


def jacobian_vector(fun, x, g, dX):  # J g instead of g^T J: wrong shape
    return (_dF(fun, x, dX) @ torch.linalg.pinv(dX)) @ torch.ones(dX.shape[0], dtype=x.dtype)


def secant_transposed_pinv(fun, x, g, dX):
    return torch.linalg.pinv(dX).T @ (_dF(fun, x, dX).T @ g)


def test_secant_reference_passes(capsys):
    assert check_secant_vjp(secant_reference)
    assert check_secant_vjp(secant_lstsq)
    assert check_secant_vjp(secant_transposed_pinv)
    assert "PASSED Exercise 7.2" in capsys.readouterr().out


def first_probe_only(fun, x, g, dX):  # the forum's one-probe heuristic, one probe of k
    dF = _dF(fun, x, dX)
    return g @ torch.outer(dF[:, 0], dX[:, 0]) / (dX[:, 0] @ dX[:, 0])


def ridge(fun, x, g, dX):  # recursive least squares' penalty: never exact
    dF = _dF(fun, x, dX)
    penalty = 1e-6 * torch.eye(dX.shape[0], dtype=x.dtype)
    return g @ dF @ dX.T @ torch.linalg.inv(dX @ dX.T + penalty)


def in_float32(fun, x, g, dX):
    return (g.float() @ _dF(fun, x, dX).float() @ torch.linalg.pinv(dX.float())).double()


def delegating_secant(fun, x, g, dX):
    return g @ blackbox.secant_jacobian(dX, _dF(fun, x, dX))


def delegating_finite_differences(fun, x, g, dX):
    return g @ blackbox.finite_difference_jacobian(fun, x)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (right_inverse, "fewer than the m = 4 inputs.*(singular|pseudo-inverse|huge)"),
        (left_inverse, "more than the m = 4 inputs.*(singular|pseudo-inverse|huge)"),
        (square_inverse, "non-square matrix"),
        (walking_probes, "different point"),
        (no_subtraction, "f\\(x \\+ dx_i\\) - f\\(x\\)"),
        (summed_one_probe, "orthogonal probes"),
        (averaged_one_probe, "orthogonal probes"),
        (jacobian_vector, "one entry per input"),
        (first_probe_only, "forum's one-probe heuristic"),
        (ridge, "exactly.*ridge penalty"),
        (in_float32, "exactly.*float32"),
        (delegating_secant, DELEGATE),
        (delegating_finite_differences, DELEGATE),
    ],
)
def test_secant_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_secant_vjp(wrong)


# Exercise 7.3 -----------------------------------------------------------------


def broyden_reference(J, dx, df):
    return J + torch.outer(df - J @ dx, dx) / (dx @ dx)


def test_broyden_reference_passes(capsys):
    assert check_broyden_step(broyden_reference)
    assert "PASSED Exercise 7.3" in capsys.readouterr().out


def in_place(J, dx, df):
    J += torch.outer(df - J @ dx, dx) / (dx @ dx)
    return J


def test_broyden_in_place_also_passes():
    assert check_broyden_step(in_place)
    assert check_broyden_step(
        lambda J, dx, df: J + (df - J @ dx)[:, None] * dx[None, :] / dx.norm() ** 2
    )


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda J, dx, df: torch.outer(df, dx) / (dx @ dx), "replaced J"),
        (lambda J, dx, df: J + torch.outer(df, dx) / (dx @ dx), "residual df - J dx"),
        (lambda J, dx, df: J + torch.outer(df - J @ dx, dx) / dx.norm(), "normalisation"),
        (
            lambda J, dx, df: J + 0.5 * torch.outer(df - J @ dx, dx) / (dx @ dx),
            "newest secant condition",
        ),
        (lambda J, dx, df: J + torch.outer(dx, df - J @ dx) / (dx @ dx), "outer product"),
        (
            lambda J, dx, df: J + torch.outer(df - J @ dx, torch.ones_like(dx)) / dx.sum(),
            "orthogonal to dx",
        ),
        (blackbox.broyden_update, DELEGATE),
    ],
)
def test_broyden_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_broyden_step(wrong)


# Exercise 7.4 -----------------------------------------------------------------


def make_fd_factory(
    step=1e-6,
    method="central",
    honour_needs=True,
    transpose=False,
    numpy_out=False,
    keep_dtype=True,
):
    """The reference (defaults) and its mistakes, one switch each."""

    def make_fd_function(fun):
        def to_numpy(t):
            return t.detach().cpu().double().numpy()

        def vjp(f_of, point, g):
            h = step * np.maximum(1.0, np.abs(point))
            columns = []
            f0 = f_of(point)
            for j in range(point.size):
                e = np.zeros_like(point)
                e[j] = h[j]
                if method == "central":
                    columns.append((f_of(point + e) - f_of(point - e)) / (2 * h[j]))
                else:
                    columns.append((f_of(point + e) - f0) / h[j])
            J = np.stack(columns, axis=1)
            return J @ np.ones(J.shape[1]) if transpose else g @ J

        class FD(torch.autograd.Function):
            @staticmethod
            def forward(x, y):
                out = np.asarray(fun(to_numpy(x), to_numpy(y)))
                if numpy_out:
                    return out
                return torch.as_tensor(out).to(x.device, x.dtype if keep_dtype else torch.float64)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(*inputs)

            @staticmethod
            def backward(ctx, grad_output):
                x, y = ctx.saved_tensors
                xn, yn, g = to_numpy(x), to_numpy(y), to_numpy(grad_output)
                gx = gy = None
                if ctx.needs_input_grad[0] or not honour_needs:
                    gx = torch.as_tensor(vjp(lambda v: fun(v, yn), xn, g)).to(x.dtype)
                if ctx.needs_input_grad[1] or not honour_needs:
                    gy = torch.as_tensor(vjp(lambda v: fun(xn, v), yn, g)).to(y.dtype)
                return gx, gy

        return FD.apply

    return make_fd_function


def delegating_fd_factory(fun):
    """The forum's wrapper done by the library, with the library's Jacobian."""

    def apply(x, y):
        def vjp_x(xn, g):
            return g @ blackbox.finite_difference_jacobian(lambda v: fun(v, y.detach().numpy()), xn)

        return blackbox.gradiator(lambda xn: fun(xn, y.detach().numpy()), vjp_x, numpy=True)(x)

    return apply


def test_fd_function_reference_passes(capsys):
    assert check_fd_function(make_fd_factory())
    assert check_fd_function(make_fd_factory(step=1.5e-8, method="forward"))
    assert check_fd_function(make_fd_factory(step=6e-6))
    assert "PASSED Exercise 7.4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (make_fd_factory(step=1e-2, method="forward"), "too large"),
        (make_fd_factory(step=3e-2, method="central"), "too large"),
        (make_fd_factory(step=1e-12, method="forward"), "too small"),
        (make_fd_factory(step=1e-11, method="central"), "too small"),
        (make_fd_factory(transpose=True), "wrong shape|one gradient per forward input"),
        (make_fd_factory(honour_needs=False), "ignores ctx.needs_input_grad"),
        (make_fd_factory(numpy_out=True), "return a tensor"),
        (make_fd_factory(keep_dtype=False), "keep the input's dtype"),
        (delegating_fd_factory, DELEGATE),
    ],
)
def test_fd_function_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_fd_function(wrong)


# Exercise 7.5 -----------------------------------------------------------------


def make_spsa(
    distribution="rademacher",
    central=True,
    shared=False,
    divide=None,
    combine="mean",
    generator_used=True,
    normalise=False,
    uniform=False,
    correlated=False,
    heuristic=False,
):
    """The reference (defaults), correct variants and the known mistakes, one switch each."""

    def spsa_vjp(fun, x, g, num_samples, c, generator):
        gen = generator if generator_used else None
        m = x.numel()
        if shared:  # one draw broadcast over all dimensions
            u = torch.randn(num_samples, 1, generator=gen, dtype=x.dtype).expand(num_samples, m)
        elif uniform:
            u = torch.rand(num_samples, m, generator=gen, dtype=x.dtype)
        elif distribution == "rademacher":
            u = torch.randint(0, 2, (num_samples, m), generator=gen).to(x.dtype) * 2 - 1
        else:
            u = torch.randn(num_samples, m, generator=gen, dtype=x.dtype)
        if correlated:  # half the draws, repeated: u_{i + m/2} = u_i
            u = u[:, : m // 2].repeat(1, 2)
        if normalise:
            u = u / u.norm(dim=1, keepdim=True)
        fx = fun(x)
        samples = []
        for s in range(num_samples):
            if central:
                diff = (fun(x + c * u[s]) - fun(x - c * u[s])) / (divide or 2 * c)
            else:
                diff = (fun(x + c * u[s]) - fx) / (divide or c)
            samples.append((g @ diff) * u[s] / (u[s] @ u[s] if heuristic else 1.0))
        stacked = torch.stack(samples)
        if combine == "sum":
            return stacked.sum(0)
        if combine == "last":
            return stacked[-1]
        return stacked.mean(0)

    return spsa_vjp


def test_spsa_reference_passes(capsys):
    assert check_spsa_vjp(make_spsa())
    assert check_spsa_vjp(make_spsa(distribution="gaussian"))
    assert check_spsa_vjp(make_spsa(central=False))
    assert "PASSED Exercise 7.5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (make_spsa(shared=True), "one random draw shared by all dimensions"),
        (make_spsa(uniform=True), "mean zero"),
        (make_spsa(normalise=True), "unit variance"),
        (make_spsa(correlated=True), "correlated across dimensions"),
        (make_spsa(divide=1e-3), "divide by 2c"),
        (make_spsa(heuristic=True), "forum's one-probe heuristic"),
        (make_spsa(combine="sum"), "you added the samples"),
        (make_spsa(combine="last"), "not about 1/16"),
        (make_spsa(generator_used=False), "the generator you are given"),
        (
            lambda fun, x, g, k, c, gen: blackbox.spsa_vjp(fun, x, g, k, c, gen),
            DELEGATE,
        ),
        (
            lambda fun, x, g, k, c, gen: g @ blackbox.finite_difference_jacobian(fun, x),
            "black-box evaluations",
        ),
    ],
)
def test_spsa_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_spsa_vjp(wrong)


# Exercise 7.6 (stretch) ---------------------------------------------------------


def test_box_jacobian_matches_autograd_on_a_torch_twin():
    def twin(z):
        return torch.stack(
            [
                torch.sin(2 * z[0]) + z[1] ** 2,
                z[0] * z[2],
                torch.exp(z[1]) - z[2],
                torch.cos(z[2]) + z[0] * z[1],
            ]
        )

    z = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    assert np.allclose(twin(z).numpy(), _box(z.numpy()), rtol=1e-15)
    J = torch.autograd.functional.jacobian(twin, z).numpy()
    assert np.allclose(J, _box_jacobian(z.numpy()), rtol=1e-14, atol=0)


def make_layer_factory(numpy_out=False, ones=False, keep_dtype=True, legacy=False):
    """The reference layer (defaults), the forum's old style, and the mistakes."""

    def make_layer(fun, vjp):
        def to_numpy(t):
            return t.detach().cpu().double().numpy()

        def back(a, like):
            dtype = like.dtype if keep_dtype else torch.float64
            return torch.as_tensor(np.asarray(a)).to(like.device, dtype)

        if legacy:

            class Old(torch.autograd.Function):
                @staticmethod
                def forward(ctx, z):
                    ctx.save_for_backward(z)
                    return back(fun(to_numpy(z)), z)

                @staticmethod
                def backward(ctx, g):
                    (z,) = ctx.saved_tensors
                    return back(vjp(to_numpy(z), to_numpy(g)), z)

            return Old.apply

        class Layer(torch.autograd.Function):
            @staticmethod
            def forward(z):
                out = fun(to_numpy(z))
                return out if numpy_out else back(out, z)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, g):
                (z,) = ctx.saved_tensors
                if not ctx.needs_input_grad[0]:
                    return None
                cot = np.ones(g.shape) if ones else to_numpy(g)
                return back(vjp(to_numpy(z), cot), z)

        def apply(z):
            return fun(to_numpy(z)) if numpy_out else Layer.apply(z)

        return apply

    return make_layer


def make_fit(zero_grad=True, steps_used=None, detach=False, lr=0.05, tanh=True, return_start=False):
    def fit(layer, theta0, target, steps):
        theta = theta0.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([theta], lr=lr)
        losses = []
        for _ in range(steps if steps_used is None else steps_used):
            if zero_grad:
                optimiser.zero_grad()
            z = torch.tanh(theta) if tanh else theta
            prediction = layer(z.detach() if detach else z)
            loss = ((prediction - target) ** 2).mean()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return (theta0 if return_start else theta.detach()), losses

    return fit


def functional_fit(layer, theta0, target, steps):
    theta = torch.nn.Parameter(theta0.clone())
    optimiser = torch.optim.Adam([theta], lr=0.08)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(layer(theta.tanh()), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.detach())
    return theta.data, losses


def test_training_reference_passes(capsys):
    assert check_training(make_layer_factory(), make_fit())
    assert check_training(make_layer_factory(legacy=True), make_fit(lr=0.1))
    assert check_training(make_layer_factory(), functional_fit)
    assert "PASSED Exercise 7.6" in capsys.readouterr().out


def no_function_layer(fun, vjp):  # the black box called on a copy: autograd loses track
    return lambda z: torch.as_tensor(fun(z.detach().numpy()))


def numpy_of_a_leaf_layer(fun, vjp):  # the forum's wrapper without a Function
    return lambda z: torch.as_tensor(fun(z.numpy()))


def library_layer(fun, vjp):
    return blackbox.gradiator(fun, vjp, numpy=True)


def library_fit(layer, theta0, target, steps):
    history = blackbox.fit_through_blackbox(_box, target.numpy(), theta0.numpy(), budget=steps)
    return torch.from_numpy(history.theta), history.loss


@pytest.mark.parametrize(
    ("make_layer", "fit", "message"),
    [
        (make_layer_factory(numpy_out=True), make_fit(), "the forum's first bug"),
        (no_function_layer, make_fit(), "not connected to its input"),
        (numpy_of_a_leaf_layer, make_fit(), "convert at the border"),
        (make_layer_factory(ones=True), make_fit(), "ignores grad_output"),
        (make_layer_factory(keep_dtype=False), make_fit(), "keep the input's dtype"),
        (make_layer_factory(), make_fit(zero_grad=False), "Zero the gradients"),
        (make_layer_factory(), make_fit(steps_used=20), "one loss per step"),
        (make_layer_factory(), make_fit(detach=True), "no graph back to theta"),
        (make_layer_factory(), make_fit(tanh=False), "first loss is not the model's loss"),
        (make_layer_factory(), make_fit(return_start=True), "return the trained theta"),
        (make_layer_factory(), make_fit(lr=0.005), "not below"),
        (library_layer, make_fit(), DELEGATE),
        (make_layer_factory(), library_fit, DELEGATE),
    ],
)
def test_training_mistakes_are_named(make_layer, fit, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_training(make_layer, fit)


def test_training_rejects_a_layer_that_ignores_its_vjp():
    def own_differences(fun, vjp):  # central differences of its own: the vjp is never used
        def grad_fun(z, g):
            h = 6e-6
            return np.array([g @ (fun(z + h * e) - fun(z - h * e)) / (2 * h) for e in np.eye(3)])

        return make_layer_factory()(fun, grad_fun)

    with pytest.raises(ExerciseFailed, match="never called the vjp"):
        check_training(own_differences, make_fit())
