"""Chapter 6 benchmark: SO(3) exp/log maps against roma, accuracy against scipy, fitting cost.

Part ``speed``: ``gradbook.so3.exp_map`` / ``log_map`` against roma's
``rotvec_to_rotmat`` / ``rotmat_to_rotvec`` on ``n`` random rotations (1e5 by
default), float32 and float64, forward and forward+backward. ``log_map`` is
timed with its default validation (``check=True``) and without it. The
implementations are run alternately, so that a slower patch of a shared
machine hits both; each row stores the median (``seconds``) and the best
(``best``) of the runs. Target: gradbook no slower than 1.25x roma.

Part ``accuracy``: the maximum entry error in float64 against
``scipy.spatial.transform.Rotation`` in three regimes of the angle: near 0
(``1e-12 .. 1e-3``, and exactly 0), uniform (random rotations) and near pi
(``pi - 1e-8 .. pi - 1e-2``). Target: 5e-15 for gradbook.

Part ``fit``: on the forum's data (100 points, ``v = (0.3, -0.2, 0.1)``, with
and without its 1e-2 noise), the number of residual evaluations that
``fit_rotation`` needs to reach the Kabsch rotation, against
``scipy.optimize.least_squares`` with the analytic Jacobian on the 3n-vector
residual and on the forum's norm-valued residual. Target: the Kabsch solution to
1e-9 in no more evaluations than scipy.

Writes ``book/data/bench_so3.json``; chapter 6 renders it. ``--quick`` runs a
smoke test at reduced sizes.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

import numpy as np
import roma
import torch
from _common import interleaved_timings, write_results
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from gradbook.so3 import (
    exp_map,
    fit_rotation,
    forum_points,
    geodesic_distance,
    hat,
    kabsch,
    log_map,
    right_jacobian,
)

SPEED_TARGET = 1.25  # gradbook's time / roma's time, at most
ACCURACY_TARGET = 5e-15  # float64, maximum entry error against scipy
FIT_TARGET = 1e-9  # distance to the Kabsch rotation, radians and matrix entries


def forward_backward(fn, x):
    def run():
        out = fn(x)
        out.backward(torch.ones_like(out))

    return run


def speed_part(n: int, device: torch.device, repeat: int) -> list[dict]:
    rows = []
    v64 = torch.from_numpy(Rotation.random(n, rng=0).as_rotvec())
    jobs = [
        (dtype, op, mode)
        for dtype in (torch.float32, torch.float64)
        for op in ("exp", "log")
        for mode in ("forward", "forward+backward")
    ]
    for dtype, op, mode in tqdm(jobs, desc="speed"):
        v = v64.to(device, dtype)
        R = exp_map(v)
        if op == "exp":
            impls = {"gradbook": exp_map, "roma": roma.rotvec_to_rotmat}
            x = v
        else:
            impls = {
                "gradbook": log_map,
                "gradbook (check=False)": lambda M: log_map(M, check=False),
                "roma": roma.rotmat_to_rotvec,
            }
            x = R
        if mode == "forward":
            fns = {name: (lambda f=f, x=x: f(x)) for name, f in impls.items()}
        else:
            leaf = x.clone().requires_grad_(True)
            fns = {name: forward_backward(f, leaf) for name, f in impls.items()}
        result = interleaved_timings(fns, device, repeat=repeat, budget_s=4.0)
        roma_best = result["roma"][1]
        for name, (median, best) in result.items():
            rows.append(
                {
                    "part": "speed",
                    "op": op,
                    "dtype": str(dtype).removeprefix("torch."),
                    "mode": mode,
                    "method": name,
                    "n": n,
                    "seconds": median,
                    "best": best,
                    "ratio_to_roma": best / roma_best,
                }
            )
    return rows


def regime_vectors(regime: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    axes = rng.standard_normal((n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    if regime == "near 0":
        angles = np.concatenate([[0.0], 10.0 ** rng.uniform(-12, -3, n - 1)])
    elif regime == "uniform":
        return Rotation.random(n, rng=2).as_rotvec()
    else:  # near pi
        angles = np.pi - 10.0 ** rng.uniform(-8, -2, n)
    return axes * angles[:, None]


def accuracy_part(n: int) -> list[dict]:
    rows = []
    for regime in ("near 0", "uniform", "near pi"):
        v = regime_vectors(regime, n)
        R = Rotation.from_rotvec(v).as_matrix()
        v_ref = Rotation.from_matrix(R).as_rotvec()
        vt, Rt = torch.from_numpy(v), torch.from_numpy(R)
        errors = {
            ("exp", "gradbook"): np.abs(exp_map(vt).numpy() - R).max(),
            ("exp", "roma"): np.abs(roma.rotvec_to_rotmat(vt).numpy() - R).max(),
            ("log", "gradbook"): np.abs(log_map(Rt).numpy() - v_ref).max(),
            ("log", "roma"): np.abs(roma.rotmat_to_rotvec(Rt).numpy() - v_ref).max(),
        }
        for (op, method), error in errors.items():
            rows.append(
                {
                    "part": "accuracy",
                    "op": op,
                    "method": method,
                    "regime": regime,
                    "n": n,
                    "dtype": "float64",
                    "max_error": float(error),
                }
            )
    return rows


def scipy_fits(p: np.ndarray, q: np.ndarray) -> dict[str, object]:
    """least_squares with the analytic Jacobian: 3n-vector residual and norm residual."""
    P = torch.from_numpy(p)

    def rotation(v):
        return Rotation.from_rotvec(v).as_matrix()

    def jacobian_vector(v):  # d(R p_i)/dv = -R [p_i]x J_r(v), shape (n, 3, 3)
        Jr = right_jacobian(torch.from_numpy(v)).numpy()
        return -rotation(v) @ hat(P).numpy() @ Jr

    def vector_residual(v):
        return (p @ rotation(v).T - q).ravel()

    def norm_residual(v):
        return np.linalg.norm(p @ rotation(v).T - q, axis=1)

    def norm_jacobian(v):
        r = p @ rotation(v).T - q
        with np.errstate(all="ignore"):
            return (
                np.einsum("ni,nij->nj", r, jacobian_vector(v)) / np.linalg.norm(r, axis=1)[:, None]
            )

    results = {}
    for name, residual, jacobian in [
        (
            "scipy least_squares, 3n residual",
            vector_residual,
            lambda v: jacobian_vector(v).reshape(-1, 3),
        ),
        ("scipy least_squares, norm residual", norm_residual, norm_jacobian),
    ]:
        try:
            results[name] = least_squares(residual, np.zeros(3), jacobian)
        except ValueError as error:  # NaN Jacobian: 0/0 where a residual norm vanishes
            results[name] = error
    return results


def fit_part() -> list[dict]:
    rows = []
    for noise in (True, False):
        p, q = forum_points(noise)
        P, Q = torch.from_numpy(p), torch.from_numpy(q)
        R_kabsch = kabsch(P, Q)
        data = "forum data (noise 1e-2)" if noise else "noise-free"
        R, info = fit_rotation(P, Q)
        rows.append(
            {
                "part": "fit",
                "data": data,
                "method": "gradbook fit_rotation (LM, R Exp(d))",
                "evaluations": info.evaluations,
                "jacobian_evaluations": info.jacobian_evaluations,
                "distance_to_kabsch": geodesic_distance(R, R_kabsch).item(),
                "max_entry_error": (R - R_kabsch).abs().max().item(),
            }
        )
        for name, result in scipy_fits(p, q).items():
            if isinstance(result, Exception):
                rows.append(
                    {
                        "part": "fit",
                        "data": data,
                        "method": name,
                        "error": f"{type(result).__name__}: {result}",
                    }
                )
                continue
            Rs = torch.from_numpy(Rotation.from_rotvec(result.x).as_matrix())
            rows.append(
                {
                    "part": "fit",
                    "data": data,
                    "method": name,
                    "evaluations": int(result.nfev),
                    "jacobian_evaluations": int(result.njev),
                    "distance_to_kabsch": geodesic_distance(Rs, R_kabsch).item(),
                    "max_entry_error": (Rs - R_kabsch).abs().max().item(),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--device", default="cpu", help="device for the speed part")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    n = 10_000 if args.quick else 100_000
    repeat = 5 if args.quick else 40
    rows = (
        speed_part(n, device, repeat) + accuracy_part(2_000 if args.quick else 20_000) + fit_part()
    )
    write_results(
        "so3",
        rows,
        device=device,
        quick=args.quick,
        targets={
            "speed_ratio": SPEED_TARGET,
            "accuracy_float64": ACCURACY_TARGET,
            "fit_distance": FIT_TARGET,
        },
        peers={name: version(name) for name in ("roma", "scipy")},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
