"""Chapter 4 benchmark: the pseudo-inverse of a convolution, FFT versus dense versus iterative.

Part ``fft_vs_dense``: ``conv2d_pinv(y, K)`` (circular padding, batched
per-frequency SVD) against ``torch.linalg.pinv`` of the dense
``(c H W) x (c H W)`` operator matrix applied to the same ``y``, float64, at
``c = 4, 16 x 16`` (and a smaller size), with the relative difference of the
two answers. The dense time includes building the matrix.

Part ``fft_scaling``: the FFT pseudo-inverse alone, ``c = 32``, growing images up
to the asker's ``32 x 128 x 128`` (float64).

Part ``zeros``: the zero-padded operator ``F.conv2d(x, K, padding=1)``.
``gradbook``'s CGLS (``conv2d`` and ``conv_transpose2d``), with and without the
circular preconditioner, against ``scipy.sparse.linalg.lsqr`` on the same
operator (a ``LinearOperator`` calling the same convolutions), all to the same
relative tolerance, and their error against the dense least-squares solution
(``numpy.linalg.lstsq``), for a well-conditioned, a smooth positive and a random
kernel at ``c = 4, 16 x 16``.

Each timing row stores the median (``seconds``) and the best (``best``) run.
Writes ``book/data/bench_convinv.json``; chapter 4 renders it. ``--quick`` runs
reduced sizes as a smoke test.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import timings, write_results
from scipy.sparse.linalg import lsqr
from tqdm import tqdm

from gradbook.convinv import (
    conv2d_circular,
    conv2d_linear_operator,
    conv2d_matrix,
    conv2d_pinv,
    conv2d_zeros,
)

DTYPE = torch.float64


def kernels(c, gen):
    """The three kernels of the chapter: well conditioned, smooth positive, random."""
    well = 0.05 * torch.randn(c, c, 3, 3, generator=gen, dtype=DTYPE)
    well[:, :, 1, 1] += torch.eye(c, dtype=DTYPE)
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=DTYPE) / 16
    delta = torch.zeros(3, 3, dtype=DTYPE)
    delta[1, 1] = 1
    mix = torch.eye(c, dtype=DTYPE) + 0.3 * torch.randn(c, c, generator=gen, dtype=DTYPE)
    smooth = mix[:, :, None, None] * (blur + 0.1 * delta)
    random = torch.randn(c, c, 3, 3, generator=gen, dtype=DTYPE)
    return {"well-conditioned": well, "smooth positive": smooth, "random": random}


def bench_fft_vs_dense(cases, device, bar):
    rows = []
    gen = torch.Generator().manual_seed(0)
    for c, n in cases:
        weight = torch.randn(c, c, 3, 3, generator=gen, dtype=DTYPE).to(device)
        y = torch.randn(1, c, n, n, generator=gen, dtype=DTYPE).to(device)

        def fft(y=y, weight=weight):
            return conv2d_pinv(y, weight)

        def dense(y=y, weight=weight, n=n):
            matrix = conv2d_matrix(weight, (n, n), "circular")
            return (torch.linalg.pinv(matrix) @ y.reshape(-1)).reshape(y.shape)

        difference = ((fft() - dense()).norm() / dense().norm()).item()
        for method, fn in [("fft", fft), ("dense pinv", dense)]:
            seconds, best = timings(fn, device, repeat=5 if method == "dense pinv" else 15)
            rows.append(
                {
                    "part": "fft_vs_dense",
                    "method": method,
                    "c": c,
                    "size": n,
                    "unknowns": c * n * n,
                    "seconds": seconds,
                    "best": best,
                    "relative_difference": difference,
                }
            )
            bar.update(1)
    return rows


def bench_fft_scaling(sizes, c, device, bar):
    rows = []
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(c, c, 3, 3, generator=gen, dtype=DTYPE).to(device)
    for n in sizes:
        x = torch.randn(1, c, n, n, generator=gen, dtype=DTYPE).to(device)
        y = conv2d_circular(x, weight)
        error = ((conv2d_pinv(y, weight) - x).norm() / x.norm()).item()
        seconds, best = timings(lambda y=y: conv2d_pinv(y, weight), device, repeat=5)
        rows.append(
            {
                "part": "fft_scaling",
                "method": "fft",
                "c": c,
                "size": n,
                "unknowns": c * n * n,
                "seconds": seconds,
                "best": best,
                "relative_error": error,
            }
        )
        bar.update(1)
    return rows


def bench_zeros(c, n, tol, max_iter, bar):
    rows = []
    gen = torch.Generator().manual_seed(2)
    for name, weight in kernels(c, gen).items():
        x = torch.randn(1, c, n, n, generator=gen, dtype=DTYPE)
        y = conv2d_zeros(x, weight)
        matrix = conv2d_matrix(weight, (n, n), "zeros").numpy()
        reference = np.linalg.lstsq(matrix, y.reshape(-1).numpy(), rcond=None)[0]
        singular = np.linalg.svd(matrix, compute_uv=False)
        condition = float(singular[0] / singular[-1])

        def error_of(solution, reference=reference):
            return float(np.linalg.norm(solution - reference) / np.linalg.norm(reference))

        for method, preconditioner in [("cgls", None), ("cgls + circular", "circular")]:

            def run(preconditioner=preconditioner, y=y, weight=weight):
                return conv2d_pinv(
                    y,
                    weight,
                    "zeros",
                    tol=tol,
                    max_iter=max_iter,
                    preconditioner=preconditioner,
                    return_info=True,
                )

            solution, info = run()
            seconds, best = timings(run, repeat=3, warmup=0)
            rows.append(
                {
                    "part": "zeros",
                    "kernel": name,
                    "method": method,
                    "c": c,
                    "size": n,
                    "condition_zeros": condition,
                    "iterations": info.iterations,
                    "converged": info.converged,
                    "seconds": seconds,
                    "best": best,
                    "error_vs_dense": error_of(solution.reshape(-1).numpy()),
                }
            )
            bar.update(1)
        operator = conv2d_linear_operator(weight, (n, n), "zeros")

        def scipy_run(operator=operator, y=y):
            # lsqr stops when ||A^T r|| <= atol ||A|| ||r||: the same kind of test as CGLS
            return lsqr(operator, y.reshape(-1).numpy(), atol=tol, btol=tol, iter_lim=max_iter)

        result = scipy_run()
        seconds, best = timings(scipy_run, repeat=3, warmup=0)
        rows.append(
            {
                "part": "zeros",
                "kernel": name,
                "method": "scipy lsqr",
                "c": c,
                "size": n,
                "condition_zeros": condition,
                "iterations": int(result[2]),
                "converged": int(result[1]) in (1, 2),
                "seconds": seconds,
                "best": best,
                "error_vs_dense": error_of(result[0]),
            }
        )
        bar.update(1)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (smoke test)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        dense_cases, sizes, c_scaling, zeros_size, max_iter = [(2, 8), (4, 8)], [16, 32], 8, 8, 500
    else:
        dense_cases = [(4, 8), (4, 16)]
        sizes, c_scaling, zeros_size, max_iter = [16, 32, 64, 128], 32, 16, 5000
    total = 2 * len(dense_cases) + len(sizes) + 9
    with tqdm(total=total, desc="bench_convinv") as bar:
        rows = bench_fft_vs_dense(dense_cases, device, bar)
        rows += bench_fft_scaling(sizes, c_scaling, device, bar)
        rows += bench_zeros(4, zeros_size, 1e-10, max_iter, bar)
    write_results(
        "convinv",
        rows,
        device=device,
        quick=args.quick,
        dtype="float64",
        solver_tol=1e-10,
    )


if __name__ == "__main__":
    main()
