"""Checks for chapter 3, Jacobians with scan and vmap.

Each check runs the student's function on problems with a known Jacobian
(``tanh(A x)`` and a tanh MLP, written by hand in :mod:`gradbook.jacobian`) and
recognises the usual mistakes: a transposed Jacobian (rows are outputs), a row
loop that forgets ``retain_graph`` or lets ``x.grad`` accumulate, the gradient of
the sum in every row, cotangents of the wrong shape, a mode choice that
contradicts the shape, and a Hessian built from a detached gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradbook.exercises._core import ExerciseFailed, Passed, answer_tensor, attempt, fail, passed
from gradbook.jacobian import (
    make_tanh_mlp,
    tanh_affine,
    tanh_affine_jacobian,
    tanh_mlp,
    tanh_mlp_jacobian,
)

_ROWS_ARE_OUTPUTS = (
    "rows of the Jacobian belong to outputs and columns to inputs: J[i, j] = d f_i / d x_j, "
    "shape (m, n) for m outputs and n inputs."
)


def _problems(seed: int) -> list[tuple[str, Callable[[Tensor], Tensor], Tensor, Tensor]]:
    """``(name, f, x, J)``: a tall, a wide-and-square and an MLP problem, float64."""
    g = torch.Generator().manual_seed(seed)
    problems = []
    for n, m in ((3, 5), (4, 4)):
        A = torch.randn(m, n, generator=g, dtype=torch.float64)
        x = torch.randn(n, generator=g, dtype=torch.float64)
        problems.append(
            (
                f"tanh(A x) with A of shape ({m}, {n})",
                lambda z, A=A: tanh_affine(A, z),
                x,
                tanh_affine_jacobian(A, x),
            )
        )
    params = make_tanh_mlp(6, 2, hidden=5, generator=g)
    x = torch.randn(6, generator=g, dtype=torch.float64)
    problems.append(
        ("a tanh MLP R^6 -> R^2", lambda z: tanh_mlp(params, z), x, tanh_mlp_jacobian(params, x))
    )
    return problems


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().double(), b, rtol=1e-8, atol=1e-10)


def _diagnose_jacobian(
    name: str,
    got: Tensor,
    J: Tensor,
    label: str,
    transposed: str = "your result is the transpose of the Jacobian:",
) -> None:
    """Fail with the misconception a wrong Jacobian ``got`` shows, if any.

    ``transposed`` opens the message for a transposed answer (the exercise may know why).
    """
    m, n = J.shape
    if _close(got, J):
        return
    if _close(got, J.T) or (got.shape == (n, m) and m != n):
        fail(name, f"on {label} {transposed} {_ROWS_ARE_OUTPUTS}")
    if _close(got, J.cumsum(0)):
        fail(
            name,
            f"on {label} row i is the sum of rows 0..i: gradients accumulate in x.grad "
            "between backward calls, so each row contains all the earlier ones.",
        )
    if got.shape == J.shape and _close(got, J.sum(0).expand_as(J)):
        fail(
            name,
            f"on {label} every row is the gradient of the *sum* of the outputs (J^T 1): "
            "differentiate one output entry per row.",
        )
    if got.shape != J.shape:
        fail(
            name,
            f"on {label} expected shape {tuple(J.shape)}, got {tuple(got.shape)}: "
            + _ROWS_ARE_OUTPUTS,
        )
    error = (got.detach().double() - J).abs().max().item()
    fail(name, f"on {label} the Jacobian is wrong (largest error {error:.2e}).")


def check_jacobian_rows(jacobian_rows: Callable[[Callable, Tensor], Tensor]) -> Passed:
    """Exercise 3.1: ``jacobian_rows(f, x)`` builds J row by row, like ``theano.scan``."""
    name = "Exercise 3.1 (the row loop)"
    for label, f, x, J in _problems(0):
        try:
            got = attempt(name, jacobian_rows, f, x.clone())
        except ExerciseFailed as error:
            if "a second time" in str(error.__cause__ or ""):
                fail(
                    name,
                    "the second row failed: a backward pass frees the graph's saved tensors, "
                    "so the next row has nothing to go back through. Keep the graph alive "
                    "across rows (retain_graph) or rebuild it for each row.",
                )
            if "does not require grad" in str(error.__cause__ or ""):
                fail(
                    name,
                    "f(x) has no graph back to x: make x require gradients (on a copy) "
                    "before calling f.",
                )
            raise
        got = answer_tensor(name, got, "the Jacobian")
        _diagnose_jacobian(name, got, J, label)
    return passed(name, "one gradient per output row, the graph kept between rows.")


def check_jacobian_vmap(jacobian_vmap: Callable[[Callable, Tensor], Tensor]) -> Passed:
    """Exercise 3.2: ``jacobian_vmap(f, x)``: one batched VJP over one-hot cotangents."""
    name = "Exercise 3.2 (vmap over one-hot cotangents)"
    for label, f, x, J in _problems(1):
        try:
            got = attempt(name, jacobian_vmap, f, x.clone())
        except ExerciseFailed as error:
            cause = str(error.__cause__ or "")
            if "shape" in cause.lower() or "size" in cause.lower():
                fail(
                    name,
                    f"on {label}: a shape mismatch inside the VJP. A cotangent has the shape "
                    "of the *output*, and there is one per output entry: the rows of the "
                    "m x m identity (m outputs), not of the n x n one.",
                )
            raise
        got = answer_tensor(name, got, "the Jacobian")
        transposed = (
            "you returned J^T. vmap stacks results along dim 0: with VJPs (one-hot "
            "cotangents) each result is a row, with JVPs (one-hot tangents) each result is "
            "a column."
        )
        _diagnose_jacobian(name, got, J, label, transposed)
    return passed(name, "all rows from one batched pullback.")


_FORWARD = {"fwd", "forward", "jacfwd"}
_REVERSE = {"rev", "reverse", "jacrev", "backward"}


def check_choose_mode(choose: Callable[[int, int], str]) -> Passed:
    """Exercise 3.3: ``choose(n_in, n_out)`` returns ``"fwd"`` or ``"rev"`` for a Jacobian shape."""
    name = "Exercise 3.3 (forward or reverse?)"
    cases = [(10, 1000), (1000, 10), (3, 300), (500, 5), (1, 50), (64, 1)]
    answers = {}
    for n_in, n_out in cases:
        answer = attempt(name, choose, n_in, n_out)
        if not isinstance(answer, str) or answer.lower() not in _FORWARD | _REVERSE:
            fail(name, f"return 'fwd' or 'rev', got {answer!r}.")
        answers[n_in, n_out] = "fwd" if answer.lower() in _FORWARD else "rev"
    tall = [c for c in cases if c[1] > c[0]]
    wide = [c for c in cases if c[1] < c[0]]
    if all(answers[c] == "rev" for c in tall) and all(answers[c] == "fwd" for c in wide):
        fail(
            name,
            "your choices are swapped: reverse mode costs one VJP per *output* (m of them), "
            "forward mode one JVP per *input* (n of them). Count passes, then pick the "
            "smaller number.",
        )
    if len(set(answers.values())) == 1:
        mode = next(iter(answers.values()))
        n_in, n_out = (10, 1000) if mode == "rev" else (1000, 10)
        passes = n_out if mode == "rev" else n_in
        other = n_in if mode == "rev" else n_out
        fail(
            name,
            f"you always answer {mode!r}, whatever the shape. With n_in={n_in} inputs and "
            f"n_out={n_out} outputs that mode needs {passes} passes where the other needs "
            f"{other}.",
        )
    for (n_in, n_out), mode in answers.items():
        expected = "fwd" if n_out > n_in else "rev"
        if mode != expected:
            fail(
                name,
                f"for n_in={n_in}, n_out={n_out} you chose {mode!r}, which contradicts the "
                f"shape: count the VJPs (one per output) and the JVPs (one per input).",
            )
    return passed(name, "forward for tall Jacobians, reverse for wide ones.")


def check_hessian(hessian_fn: Callable[[Callable, Tensor], Tensor]) -> Passed:
    """Exercise 3.4: ``hessian_fn(f, x)`` is the Jacobian of the gradient of a scalar ``f``."""
    name = "Exercise 3.4 (a Hessian as the Jacobian of a gradient)"
    g = torch.Generator().manual_seed(3)
    Q = torch.randn(5, 5, generator=g, dtype=torch.float64)
    x = torch.randn(5, generator=g, dtype=torch.float64)

    def f(z: Tensor) -> Tensor:
        return torch.logsumexp(z, 0) + 0.5 * z @ Q @ z

    p = torch.softmax(x, 0)
    H = torch.diag(p) - torch.outer(p, p) + 0.5 * (Q + Q.T)
    grad = p + 0.5 * (Q + Q.T) @ x
    try:
        got = attempt(name, hessian_fn, f, x.clone())
    except ExerciseFailed as error:
        cause = str(error.__cause__ or "")
        if "does not require grad" in cause or "does not have a grad_fn" in cause:
            fail(
                name,
                "the gradient you differentiate again has no graph: the first gradient must "
                "itself be differentiable (create_graph, or a torch.func transform), not a "
                "detached value like x.grad.",
            )
        raise
    got = answer_tensor(name, got, "the Hessian")
    if got.shape == grad.shape and _close(got, grad):
        fail(name, "that is the gradient; the Hessian is the Jacobian *of* the gradient.")
    if _close(got, torch.outer(grad, grad)):
        fail(
            name,
            "g g^T (the outer product of the gradient with itself) is not the Hessian: it "
            "holds no second derivatives. Differentiate the gradient.",
        )
    if got.shape != H.shape:
        fail(name, f"expected shape {tuple(H.shape)} (n x n), got {tuple(got.shape)}.")
    if not torch.isfinite(got).all() or (got == 0).all():
        fail(
            name,
            "the result is zero or not finite: was the gradient detached before you "
            "differentiated it again?",
        )
    if not _close(got, H):
        error = (got.detach().double() - H).abs().max().item()
        fail(name, f"not the Hessian (largest error {error:.2e}).")
    return passed(name, "the Jacobian of the gradient, symmetric as it should be.")
