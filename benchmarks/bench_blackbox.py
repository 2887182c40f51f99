"""VJP estimators of a black box side by side: evaluations and time to 1e-3, training loss.

    python benchmarks/bench_blackbox.py            # full run (make bench)
    python benchmarks/bench_blackbox.py --quick    # smaller budgets, to check it works

Two tasks, one run:

- ``test function``: chapter 7's smooth NumPy function, m = 20 inputs, n = 10
  outputs, VJP at its point ``x0`` with a fixed cotangent;
- ``pendulum``: the training task's black box (SciPy's LSODA), the gradient
  of the mean squared error at the start of training (p = 8, n = 32).

For each estimator: the black-box evaluations and the wall time it needs to
reach a VJP relative error of 1e-3 (``None`` when it does not within the
budget, with the error it reached and an extrapolation for the random ones),
and, on the pendulum, the final training loss after a fixed budget of
evaluations. Results go to ``book/data/bench_blackbox.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from _common import median_time, write_results

from gradbook.blackbox import (
    SPSA,
    DrivenPendulum,
    EvaluationCounter,
    FiniteDifferences,
    JacobianTracker,
    RecursiveLeastSquares,
    broyden_update,
    finite_difference_jacobian,
    fit_through_blackbox,
    secant_jacobian,
    smooth_test_function,
    spsa_vjp,
    vjp_relative_error,
)

TARGET = 1e-3


# Forward differences through the pendulum's ODE solver (rtol 1e-10) take a
# step of about sqrt(rtol), not the default sqrt(u): with sqrt(u) the solver's
# own error divided by the step swamps the gradient, and the fit changes from
# one CPU to the next (chapter 7 shows it).
PENDULUM_FORWARD_STEP = 1e-5


def pendulum_task(seed: int = 7):
    """The training task: data from a hidden torque, start at zero torque."""
    pendulum = DrivenPendulum()
    rng = np.random.default_rng(seed)
    theta_true = 0.6 * rng.standard_normal(pendulum.num_params)
    data = pendulum(theta_true) + 0.01 * rng.standard_normal(pendulum.num_obs)
    return pendulum, data, np.zeros(pendulum.num_params)


def one_shot(name: str, fun: Callable, x: np.ndarray, g: np.ndarray, exact: np.ndarray) -> dict:
    """Finite differences: one estimate, cost m + 1 (forward) or 2m (central)."""
    counted = EvaluationCounter(fun)
    method = name.split()[0]
    J = finite_difference_jacobian(counted, x, method=method)
    error = vjp_relative_error(g @ J, exact)
    seconds = median_time(lambda: finite_difference_jacobian(fun, x, method=method), repeat=5)
    reached = error <= TARGET
    return {
        "estimator": name,
        "evaluations_to_target": counted.calls if reached else None,
        "seconds_to_target": seconds if reached else None,
        "evaluations_run": counted.calls,
        "error_at_end": error,
    }


def sequential(
    name: str,
    fun: Callable,
    x: np.ndarray,
    g: np.ndarray,
    exact: np.ndarray,
    budget: int,
    seed: int,
) -> dict:
    """Random probes at x, one at a time: least-squares secant, Broyden from zero, RLS.

    Every run draws its probes afresh from ``seed``, so the timed runs repeat the
    probes of the counted one. ``budget`` counts ``f(x)`` too: ``budget - 1`` probes.
    """
    m = x.size
    fx = fun(x)
    h = 1e-6 * max(1.0, float(np.abs(x).max()))

    def run(stop_at: int | None) -> tuple[int | None, float, int]:
        """``(evaluations to the target or None, error at the end, evaluations used)``."""
        rng = np.random.default_rng(seed)
        J = np.zeros((g.size, m))
        rls = RecursiveLeastSquares(g.size, m, delta=1e-6)
        dX, dF = [], []
        reached, error, used = None, float("inf"), 1  # f(x)
        for k in range(1, budget):
            used = k + 1  # k probes and f(x)
            u = rng.standard_normal(m)
            dx = h * u / np.linalg.norm(u)
            df = fun(x + dx) - fx
            if name.startswith("Broyden"):
                J = broyden_update(J, dx, df)
            elif name.startswith("RLS"):
                rls.update(dx / h, df / h)
                J = rls.jacobian.numpy()
            else:
                dX.append(dx)
                dF.append(df)
                J = secant_jacobian(np.stack(dX, 1), np.stack(dF, 1))
            error = vjp_relative_error(g @ J, exact)
            if error <= TARGET and reached is None:
                reached = used
                if stop_at is not None:
                    break
            if stop_at is not None and used >= stop_at:
                break
        return reached, error, used

    reached, error, used = run(None)
    seconds = None
    if reached is not None:
        seconds = median_time(lambda: run(reached), repeat=3, warmup=1)
    return {
        "estimator": name,
        "evaluations_to_target": reached,
        "seconds_to_target": seconds,
        "evaluations_run": used,
        "error_at_end": error,
    }


def random_directions(
    name: str,
    fun: Callable,
    x: np.ndarray,
    g: np.ndarray,
    exact: np.ndarray,
    budget: int,
    seed: int,
) -> dict:
    """SPSA / forward gradient: running mean of single-sample estimates, 2 evaluations each."""
    distribution = "rademacher" if name.startswith("SPSA") else "gaussian"
    gen = torch.Generator().manual_seed(seed)
    total = np.zeros_like(x)
    reached, error, samples = None, float("inf"), 0
    start = time.perf_counter()
    seconds = None
    for samples in range(1, budget // 2 + 1):
        total += spsa_vjp(fun, x, g, 1, 1e-4, gen, distribution=distribution)
        error = vjp_relative_error(total / samples, exact)
        if error <= TARGET and reached is None:
            reached, seconds = 2 * samples, time.perf_counter() - start
            break
    # error ~ sqrt(C / k): the evaluations the 1e-3 target would need
    extrapolated = 2 * samples * (error / TARGET) ** 2 if reached is None else None
    return {
        "estimator": name,
        "evaluations_to_target": reached,
        "seconds_to_target": seconds,
        "evaluations_run": 2 * samples,
        "error_at_end": error,
        "evaluations_extrapolated": extrapolated,
    }


def vjp_rows(task: str, fun: Callable, x: np.ndarray, g: np.ndarray, exact, budgets) -> list[dict]:
    rows = [one_shot(n, fun, x, g, exact) for n in ("forward differences", "central differences")]
    for name in ("least-squares secant", "Broyden from zero", "RLS (ridge)"):
        rows.append(sequential(name, fun, x, g, exact, budgets["probes"], seed=1))
    for name in ("SPSA (Rademacher)", "forward gradient (Gaussian)"):
        rows.append(random_directions(name, fun, x, g, exact, budgets["random"], seed=2))
    for row in rows:
        row["task"] = task
        print(
            f"{task:14s} {row['estimator']:28s} to 1e-3: {row['evaluations_to_target']!s:>6} evals"
            f"  error at end {row['error_at_end']:.1e}"
        )
    return rows


def training_rows(budget: int) -> list[dict]:
    pendulum, data, theta0 = pendulum_task()
    methods = {
        "exact (sensitivities)": pendulum.jacobian,
        "central differences": "central",
        "forward differences": FiniteDifferences("forward", PENDULUM_FORWARD_STEP),
        "Broyden, free secants only": JacobianTracker("broyden", probes=0),
        "Broyden + 1 probe": JacobianTracker(
            "broyden", probes=1, generator=np.random.default_rng(0)
        ),
        "RLS (0.9) + 1 probe": JacobianTracker(
            "rls", probes=1, forgetting=0.9, generator=np.random.default_rng(0)
        ),
        "SPSA, 1 sample": SPSA(1, 1e-4, np.random.default_rng(0)),
    }
    rows = []
    for name, jacobian in methods.items():
        history = fit_through_blackbox(pendulum, data, theta0, jacobian, budget=budget, lr=0.1)
        rows.append(
            {
                "task": "training",
                "estimator": name,
                "budget": budget,
                "steps": len(history.loss),
                "evaluations": history.evaluations[-1],
                "final_loss": history.final_loss,
                "wall_s": history.seconds[-1],
            }
        )
        print(
            f"training {name:28s} steps {len(history.loss):4d} final loss {history.final_loss:.3e}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (a smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quick = args.quick

    f = smooth_test_function()
    g = np.random.default_rng(1).standard_normal(f.shape[0])
    rows = vjp_rows(
        "test function",
        f,
        f.x0,
        g,
        g @ f.jacobian(f.x0),
        {"probes": 100 if quick else 400, "random": 2_000 if quick else 200_000},
    )

    pendulum, data, theta0 = pendulum_task()
    q, J = pendulum.simulate_with_jacobian(theta0)
    g_loss = 2 * (q - data) / data.size  # the gradient of the mean squared error w.r.t. q
    rows += vjp_rows(
        "pendulum",
        pendulum,
        theta0,
        g_loss,
        g_loss @ J,
        {"probes": 40 if quick else 100, "random": 200 if quick else 4_000},
    )
    rows += training_rows(60 if quick else 120)
    write_results(
        "blackbox",
        rows,
        target=TARGET,
        quick=quick,
        test_function={"m": f.shape[1], "n": f.shape[0]},
        pendulum={"p": pendulum.num_params, "n": pendulum.num_obs},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
