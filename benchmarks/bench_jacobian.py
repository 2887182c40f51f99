"""Full Jacobians side by side: row loop, jacrev, jacfwd, auto, legacy, PyTensor, Theano.

    python benchmarks/bench_jacobian.py                  # n, m in {10, 100, 1000}
    python benchmarks/bench_jacobian.py --sizes 10 100   # a quicker run

Two functions ``R^n -> R^m`` in float64 on the CPU: a tanh MLP with 32 hidden
units and ``tanh(A x)``. The torch methods are the row loop
(:func:`gradbook.jacobian.jacobian_loop`, one ``torch.autograd.grad`` per output
entry), ``torch.func.jacrev`` (vmap over VJPs), ``torch.func.jacfwd`` (vmap over
JVPs), :func:`gradbook.jacobian.jacobian` with ``mode="auto"``, and the two
legacy batched paths on the autograd engine's vmap prototype:
``autograd.grad(..., is_grads_batched=True)`` with the identity as a batch of
``grad_outputs``, and ``torch.autograd.functional.jacobian(vectorize=True)``.
Chapter 3 renders the whole table; chapter 2 reads the legacy paths' rows.
Besides ``jacfwd`` of the closure, forward mode runs once
more with the weights passed explicitly (``jacobian_fwd_explicit``), which takes
the captured constants' ZeroTensor tangents out of the timing. Every method's
Jacobian is compared with the analytic one before it is timed (the error is
stored next to the time); the analytic Jacobians are the closed forms
:func:`gradbook.jacobian.tanh_affine_jacobian` (``diag(1 - tanh(Ax)^2) A``) and
:func:`gradbook.jacobian.tanh_mlp_jacobian`, written by hand without autodiff and
so independent of every method timed. Theano runs in its own environment (``.venv-theano``)
through ``theano_jacobian_timings.py``, and its rows are merged into the same
table; without that environment they are left out and the file says why.
Writes ``book/data/bench_jacobian.json``.

The methods of one case are timed round-robin (each of 9 rounds calls every
method once), so load from other work on the machine falls on all of them alike,
and the whole sweep over the cases runs ``--passes`` times (3), so a burst of
load hits one pass of a case, not all. Each row stores the median over the
passes of each pass's median (``median_s``) and the best round of all
(``best_s``); the chapters read the best, the time least disturbed by other work.
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
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import interleaved_timings, write_results  # noqa: E402
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


def grads_batched(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The Jacobian by one ``autograd.grad`` call with ``is_grads_batched=True`` (legacy path).

    The batch of ``grad_outputs`` is the identity, one one-hot cotangent per output
    entry, so row ``k`` of the result is ``e_k^T J``.
    """
    leaf = x.detach().requires_grad_(True)
    y = f(leaf)
    eye = torch.eye(y.numel(), dtype=y.dtype, device=y.device).reshape(y.numel(), *y.shape)
    (rows,) = torch.autograd.grad(y, leaf, eye, is_grads_batched=True)
    return rows.reshape(*y.shape, *x.shape)


#: torch methods: name -> Jacobian of (f, x)
TORCH_METHODS: dict[str, Callable] = {
    "torch row loop": jacobian_loop,
    "jacrev": lambda f, x: torch.func.jacrev(f)(x),
    "jacfwd": lambda f, x: torch.func.jacfwd(f)(x),
    "auto": lambda f, x: jacobian(f, x, mode="auto"),
    "is_grads_batched": grads_batched,
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


def case_methods(function: str, f: Callable, x: torch.Tensor, data: dict, compiled: dict):
    """name -> zero-argument callable returning the Jacobian of one case."""
    methods: dict[str, Callable[[], torch.Tensor]] = {
        name: (lambda method=method: method(f, x)) for name, method in TORCH_METHODS.items()
    }
    methods["jacfwd (explicit constants)"] = lambda: jacobian_fwd_explicit(
        EXPLICIT[function], x, data
    )
    np_args = pytensor_args(function, x, data)
    for label in ("PyTensor scan", "PyTensor vectorize"):
        fn = compiled[function, label]
        methods[label] = lambda fn=fn: torch.from_numpy(np.asarray(fn(*np_args)))
    return methods


def pytensor_args(function: str, x: torch.Tensor, data: dict) -> list[np.ndarray]:
    if function == "tanh_affine":
        return [data["A"].numpy(), x.numpy()]
    return [data[k].numpy() for k in ("W1", "b1", "W2", "b2")] + [x.numpy()]


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
    parser.add_argument(
        "--budget", type=float, default=3.0, help="seconds per method and case (at least 3 rounds)"
    )
    parser.add_argument(
        "--passes", type=int, default=3, help="sweeps over all cases (best and median over them)"
    )
    parser.add_argument("--no-theano", action="store_true", help="skip the legacy environment")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    warnings.filterwarnings("ignore", category=UserWarning)  # legacy vmap prototype warnings
    generator = torch.Generator().manual_seed(0)
    compiled = pytensor_functions()
    cases = [(f, n, m) for f in args.functions for n in args.sizes for m in args.sizes]
    problems = {case: problem(*case, generator) for case in cases}
    medians: dict[tuple, list[float]] = {}
    bests: dict[tuple, list[float]] = {}
    errors: dict[tuple, float] = {}
    # whole sweeps, one after another: a burst of load from other work then hits
    # one pass of a case, not all of them
    for sweep in range(args.passes):
        for function, n, m in tqdm(cases, desc=f"torch and PyTensor, pass {sweep + 1}"):
            f, x, expected, data = problems[function, n, m]
            methods = case_methods(function, f, x, data, compiled)
            # the check is each method's first call (a warm-up); then all are timed together
            for name, run in methods.items():
                errors[function, n, m, name] = (run() - expected).abs().max().item()
            timed = interleaved_timings(methods, repeat=9, warmup=1, budget_s=args.budget)
            for name, (seconds, best) in timed.items():
                medians.setdefault((function, n, m, name), []).append(seconds)
                bests.setdefault((function, n, m, name), []).append(best)
    rows = [
        {
            "function": function,
            "n": n,
            "m": m,
            "method": name,
            "median_s": statistics.median(medians[function, n, m, name]),
            "best_s": min(bests[function, n, m, name]),
            "max_abs_err": errors[function, n, m, name],
        }
        for function, n, m, name in medians
    ]
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
