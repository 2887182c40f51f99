"""Theano-PyMC's scan Jacobian, timed inside the legacy environment (``.venv-theano``).

    .venv-theano/bin/python benchmarks/theano_jacobian_timings.py --sizes 10 100 1000

Run by ``benchmarks/bench_jacobian.py``, which merges the JSON this script prints
on stdout into the chapter's table. Only NumPy and Theano are imported here (the
legacy environment has neither torch nor gradbook). The problems are the
benchmark's two functions, written again in Theano:

- ``tanh_affine``: ``tanh(A x)``, ``A`` of shape ``(m, n)``;
- ``mlp``: ``W2 tanh(W1 x + b1) + b2`` with 32 hidden units.

Each Jacobian comes from ``theano.gradient.jacobian`` (a ``scan`` over the output
entries) and is compared with the analytic Jacobian computed in NumPy; the error
is reported with the timing. Theano runs with ``THEANO_FLAGS=cxx=,blas__ldflags=``
(Python-mode scan), which this script sets when the caller has not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

HIDDEN = 32


def _configure_theano() -> None:
    """The flags Theano-PyMC 1.1.2 needs on Python 3.11, and quiet imports."""
    if "THEANO_FLAGS" not in os.environ:
        compiledir = os.path.join(tempfile.gettempdir(), "gradbook-theano")
        os.environ["THEANO_FLAGS"] = f"cxx=,blas__ldflags=,base_compiledir={compiledir}"
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)


def timings(fn, repeat: int, budget_s: float) -> tuple[float, float]:
    """Median and best wall time of ``fn()`` after a warm-up call; stops early past ``budget_s``."""
    fn()
    times: list[float] = []
    start_all = time.perf_counter()
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= 3 and time.perf_counter() - start_all > budget_s:
            break
    return statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--functions", nargs="+", default=["mlp", "tanh_affine"])
    args = parser.parse_args(argv)

    _configure_theano()
    import numpy as np
    import theano
    import theano.tensor as T

    x = T.dvector("x")
    A = T.dmatrix("A")
    W1, W2 = T.dmatrix("W1"), T.dmatrix("W2")
    b1, b2 = T.dvector("b1"), T.dvector("b2")
    compiled = {
        "tanh_affine": theano.function([A, x], theano.gradient.jacobian(T.tanh(T.dot(A, x)), x)),
        "mlp": theano.function(
            [W1, b1, W2, b2, x],
            theano.gradient.jacobian(T.dot(W2, T.tanh(T.dot(W1, x) + b1)) + b2, x),
        ),
    }
    rng = np.random.default_rng(0)
    rows = []
    for function in args.functions:
        for n in args.sizes:
            for m in args.sizes:
                xv = rng.standard_normal(n)
                if function == "tanh_affine":
                    inputs = [rng.standard_normal((m, n)) / np.sqrt(n), xv]
                    t = np.tanh(inputs[0] @ xv)
                    expected = (1 - t * t)[:, None] * inputs[0]
                else:
                    w1 = rng.standard_normal((HIDDEN, n)) / np.sqrt(n)
                    bias1 = 0.1 * rng.standard_normal(HIDDEN)
                    w2 = rng.standard_normal((m, HIDDEN)) / np.sqrt(HIDDEN)
                    inputs = [w1, bias1, w2, 0.1 * rng.standard_normal(m), xv]
                    h = np.tanh(w1 @ xv + bias1)
                    expected = w2 @ ((1 - h * h)[:, None] * w1)
                fn = compiled[function]
                error = float(np.abs(fn(*inputs) - expected).max())
                seconds, best = timings(lambda: fn(*inputs), args.repeat, args.budget)  # noqa: B023
                rows.append(
                    {
                        "function": function,
                        "n": n,
                        "m": m,
                        "method": "Theano scan",
                        "median_s": seconds,
                        "best_s": best,
                        "max_abs_err": error,
                    }
                )
                print(f"{function} n={n} m={m}: {seconds:.3g} s", file=sys.stderr)
    payload = {
        "theano": theano.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "theano_flags": os.environ["THEANO_FLAGS"],
        "rows": rows,
    }
    json.dump(payload, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
