"""Full Jacobians side by side: row loop, jacrev, jacfwd, auto, legacy, PyTensor, Theano.

    python benchmarks/bench_jacobian.py                  # n, m in {10, 100, 1000}
    python benchmarks/bench_jacobian.py --sizes 10 100   # a quicker run

Two functions ``R^n -> R^m`` in float64 on the CPU: a tanh MLP with 32 hidden
units and ``tanh(A x)``. Besides ``jacfwd`` of the closure, forward mode runs once
more with the weights passed explicitly (``jacobian_fwd_explicit``), which takes
the captured constants' ZeroTensor tangents out of the timing. Every method's
Jacobian is compared with the analytic one before it is timed (the error is
stored next to the time). Theano runs in its own environment (``.venv-theano``)
through ``theano_jacobian_timings.py``, and its rows are merged into the same
table; without that environment they are left out and the file says why.
Writes ``book/data/bench_jacobian.json``.

Everything runs on one thread by default (``--threads``): the methods are then
compared on equal terms, and on a busy machine the batched methods do not stall
waiting for a second core (measured: ``jacrev`` at n = m = 100 took 0.4 ms on
one thread and 32 ms on two threads while other work ran).
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread for NumPy, PyTensor and the Theano subprocess; set before
# NumPy loads its thread pool (torch's own pool is set in main()).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import median_time, write_results  # noqa: E402
from tqdm import tqdm  # noqa: E402

from gradbook.jacobian import (  # noqa: E402
    jacobian,
    jacobian_fwd_explicit,
    jacobian_loop,
    make_tanh_mlp,
    tanh_affine,
    tanh_affine_jacobian,
    tanh_mlp,
    tanh_mlp_jacobian,
)

ROOT = Path(__file__).resolve().parent.parent
THEANO_PYTHON = ROOT / ".venv-theano" / "bin" / "python"
HIDDEN = 32
DTYPE = torch.float64

#: torch methods: name -> Jacobian of (f, x)
TORCH_METHODS: dict[str, Callable] = {
    "torch row loop": jacobian_loop,
    "jacrev": lambda f, x: torch.func.jacrev(f)(x),
    "jacfwd": lambda f, x: torch.func.jacfwd(f)(x),
    "auto": lambda f, x: jacobian(f, x, mode="auto"),
    "autograd.functional (vectorize)": lambda f, x: torch.autograd.functional.jacobian(
        f, x, vectorize=True
    ),
}


#: the same functions with their constants as a second argument: f(x, constants)
EXPLICIT: dict[str, Callable] = {
    "tanh_affine": lambda z, c: tanh_affine(c["A"], z),
    "mlp": lambda z, c: tanh_mlp(c, z),
}


def problem(function: str, n: int, m: int, generator: torch.Generator):
    """``(f, x, J)``: the function of x alone, the point and the analytic Jacobian."""
    x = torch.randn(n, generator=generator, dtype=DTYPE)
    if function == "tanh_affine":
        A = torch.randn(m, n, generator=generator, dtype=DTYPE) / n**0.5
        return (lambda z: tanh_affine(A, z)), x, tanh_affine_jacobian(A, x), {"A": A}
    params = make_tanh_mlp(n, m, HIDDEN, generator=generator, dtype=DTYPE)
    return (lambda z: tanh_mlp(params, z)), x, tanh_mlp_jacobian(params, x), params


def pytensor_functions() -> dict[str, Callable]:
    """Compiled PyTensor Jacobians (scan and vectorised) of both functions."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.gradient import jacobian as pt_jacobian

    x, A = pt.dvector("x"), pt.dmatrix("A")
    W1, W2, b1, b2 = pt.dmatrix("W1"), pt.dmatrix("W2"), pt.dvector("b1"), pt.dvector("b2")
    outputs = {
        "tanh_affine": ([A, x], pt.tanh(A @ x)),
        "mlp": ([W1, b1, W2, b2, x], W2 @ pt.tanh(W1 @ x + b1) + b2),
    }
    compiled = {}
    for function, (inputs, y) in outputs.items():
        for label, vectorize in (("PyTensor scan", False), ("PyTensor vectorize", True)):
            compiled[function, label] = pytensor.function(
                inputs, pt_jacobian(y, x, vectorize=vectorize)
            )
    return compiled


def pytensor_args(function: str, x: torch.Tensor, data: dict) -> list[np.ndarray]:
    if function == "tanh_affine":
        return [data["A"].numpy(), x.numpy()]
    return [data[k].numpy() for k in ("W1", "b1", "W2", "b2")] + [x.numpy()]


def checked_and_timed(
    fn: Callable[[], torch.Tensor], expected: torch.Tensor, budget: float
) -> tuple[float, float]:
    """``(max abs error, median time)``; the checked call is the warm-up.

    Slow methods (a first call over 0.3 s) get no further warm-up.
    """
    start = time.perf_counter()
    error = (fn() - expected).abs().max().item()
    warmup = 0 if time.perf_counter() - start > 0.3 else 1
    return error, median_time(fn, repeat=7, warmup=warmup, budget_s=budget)


def theano_rows(sizes: list[int], functions: list[str]) -> tuple[list[dict], dict]:
    """Run the Theano script in the legacy environment; ``([], why)`` when impossible."""
    if not THEANO_PYTHON.exists():
        return [], {"skipped": f"{THEANO_PYTHON.relative_to(ROOT)} not found (make env)"}
    env = dict(os.environ)
    env.setdefault("THEANO_FLAGS", f"cxx=,blas__ldflags=,base_compiledir={ROOT / '.theano'}")
    command = [
        str(THEANO_PYTHON),
        str(Path(__file__).with_name("theano_jacobian_timings.py")),
        "--sizes",
        *map(str, sizes),
        "--functions",
        *functions,
    ]
    print("== Theano (legacy environment) ...", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return [], {"failed": done.stderr.strip().splitlines()[-1:]}
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    rows = payload.pop("rows")
    if "theano_flags" in payload:  # record paths in the project relative to its root
        payload["theano_flags"] = payload["theano_flags"].replace(f"{ROOT}{os.sep}", "")
    return rows, payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--functions", nargs="+", default=["mlp", "tanh_affine"])
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--no-theano", action="store_true", help="skip the legacy environment")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    warnings.filterwarnings("ignore", category=UserWarning)  # legacy vmap prototype warnings
    generator = torch.Generator().manual_seed(0)
    compiled = pytensor_functions()
    rows = []
    cases = [(f, n, m) for f in args.functions for n in args.sizes for m in args.sizes]
    for function, n, m in tqdm(cases, desc="torch and PyTensor"):
        f, x, expected, data = problem(function, n, m, generator)
        methods: dict[str, Callable[[], object]] = {
            name: (lambda method=method, f=f, x=x: method(f, x))
            for name, method in TORCH_METHODS.items()
        }
        methods["jacfwd (explicit constants)"] = lambda f2=EXPLICIT[function], x=x, data=data: (
            jacobian_fwd_explicit(f2, x, data)
        )
        np_args = pytensor_args(function, x, data)
        for label in ("PyTensor scan", "PyTensor vectorize"):
            fn = compiled[function, label]
            methods[label] = lambda fn=fn, a=np_args: torch.from_numpy(np.asarray(fn(*a)))
        for name, run in methods.items():
            error, seconds = checked_and_timed(run, expected, args.budget)
            rows.append(
                {
                    "function": function,
                    "n": n,
                    "m": m,
                    "method": name,
                    "median_s": seconds,
                    "max_abs_err": error,
                }
            )
    theano = {"skipped": "--no-theano"}
    if not args.no_theano:
        extra, theano = theano_rows(args.sizes, args.functions)
        rows.extend(extra)
    import pytensor

    write_results(
        "jacobian",
        rows,
        dtype="float64",
        hidden=HIDDEN,
        sizes=args.sizes,
        pytensor=pytensor.__version__,
        pytensor_linker=str(pytensor.config.mode),
        theano=theano,
        command=" ".join(["python", "benchmarks/bench_jacobian.py", *sys.argv[1:]]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
