"""Chapter 2 benchmark: ways to build a Jacobian, and VJP versus JVP as outputs grow.

Part ``jacobian``: the full Jacobian of ``f(x) = tanh(A x + b)``, ``R^n -> R^m``
(``n = 100``), by

- ``loop``: one ``torch.autograd.grad`` per output row (one-hot ``grad_outputs``),
  :func:`gradbook.vjp.jacobian_explicit`;
- ``is_grads_batched``: ``autograd.grad(..., is_grads_batched=True)`` with the
  identity as a batch of ``grad_outputs`` (legacy vmap path);
- ``functional.jacobian(vectorize=True)``: ``torch.autograd.functional`` (legacy path);
- ``torch.func.jacrev`` (vmap over VJPs) and ``torch.func.jacfwd`` (vmap over JVPs).

Part ``vjp_vs_jvp``: a two-layer network ``R^n -> R^m`` with ``n = 64`` inputs
and a growing number ``m`` of outputs: the cost of ``f`` itself, of one VJP and
one JVP (``torch.func``), and of the full Jacobian by reverse mode (``m``
VJPs, ``jacrev``) and by forward mode (``n`` JVPs, ``jacfwd``).

Every Jacobian is first checked against the closed form
``J = diag(1 - y^2) A`` with ``y = f(x)``, independent of all the methods timed.
Each row stores the median (``seconds``) and the best (``best``) of the runs.
Writes ``book/data/bench_vjp.json``; chapter 2 renders it. Run with ``--quick``
for a smoke test at reduced sizes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import timings, write_results
from tqdm import tqdm

from gradbook.vjp import jacobian_explicit


def closed_form_jacobian(a, b, x):
    """Jacobian of ``f(x) = tanh(A x + b)`` by hand: ``(1 - y^2)[:, None] * A``, ``(m, n)``.

    ``d tanh(z)/dz = 1 - tanh(z)^2``, so row ``k`` is ``(1 - y_k^2) A_k``; no autodiff.
    """
    y = torch.tanh(a @ x + b)
    return (1 - y**2)[:, None] * a


def jacobian_methods(f, x, m):
    """name -> zero-argument callable returning the (m, n) Jacobian."""

    def batched():
        xin = x.detach().requires_grad_(True)
        y = f(xin)
        eye = torch.eye(m, dtype=y.dtype, device=y.device)
        return torch.autograd.grad(y, xin, eye, is_grads_batched=True)[0]

    return {
        "loop": lambda: jacobian_explicit(f, x),
        "is_grads_batched": batched,
        "functional.jacobian(vectorize=True)": lambda: torch.autograd.functional.jacobian(
            f, x, vectorize=True
        ),
        "torch.func.jacrev": lambda: torch.func.jacrev(f)(x),
        "torch.func.jacfwd": lambda: torch.func.jacfwd(f)(x),
    }


def bench_jacobian(sizes, n, device, progress):
    rows = []
    gen = torch.Generator().manual_seed(0)
    for m in sizes:
        a = (torch.randn(m, n, generator=gen) / n**0.5).to(device)
        b = torch.randn(m, generator=gen).to(device)
        x = torch.randn(n, generator=gen).to(device)

        def f(t, a=a, b=b):
            return torch.tanh(a @ t + b)

        methods = jacobian_methods(f, x, m)
        reference = closed_form_jacobian(a, b, x)
        for name, method in methods.items():
            error = (method() - reference).abs().max().item()
            if error > 1e-5:
                raise RuntimeError(
                    f"{name} disagrees with the closed-form Jacobian by {error:.2e} at m={m}"
                )
            seconds, best = timings(method, device, repeat=15)
            rows.append(
                {
                    "part": "jacobian",
                    "method": name,
                    "n": n,
                    "m": m,
                    "seconds": seconds,
                    "best": best,
                }
            )
            progress.update(1)
    return rows


def bench_vjp_vs_jvp(sizes, n, hidden, device, progress):
    rows = []
    gen = torch.Generator().manual_seed(1)
    w1 = (torch.randn(hidden, n, generator=gen) / n**0.5).to(device)
    x = torch.randn(n, generator=gen).to(device)
    for m in sizes:
        w2 = (torch.randn(m, hidden, generator=gen) / hidden**0.5).to(device)

        def f(t, w2=w2):
            return w2 @ torch.tanh(w1 @ t)

        v = torch.randn(m, generator=gen).to(device)
        t = torch.randn(n, generator=gen).to(device)

        def one_vjp(f=f, v=v):
            return torch.func.vjp(f, x)[1](v)[0]

        def one_jvp(f=f, t=t):
            return torch.func.jvp(f, (x,), (t,))[1]

        methods = {
            "f": lambda f=f: f(x),
            "one VJP": one_vjp,
            "one JVP": one_jvp,
            "jacrev (m VJPs)": lambda f=f: torch.func.jacrev(f)(x),
            "jacfwd (n JVPs)": lambda f=f: torch.func.jacfwd(f)(x),
        }
        for name, method in methods.items():
            seconds, best = timings(method, device, repeat=21)
            row = {"part": "vjp_vs_jvp", "method": name, "n": n, "m": m, "hidden": hidden}
            rows.append(row | {"seconds": seconds, "best": best})
            progress.update(1)
    return rows


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: steadier timings)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.quick:
        jac_sizes, out_sizes = [10, 100, 300], [4, 16, 64, 256]
    else:
        jac_sizes, out_sizes = [10, 100, 300, 1000], [4, 16, 64, 256, 1024, 4096]
    n_jac, n_in, hidden = 100, 64, 256
    total = 5 * len(jac_sizes) + 5 * len(out_sizes)
    with tqdm(total=total, desc="bench_vjp") as progress:
        rows = bench_jacobian(jac_sizes, n_jac, device, progress)
        rows += bench_vjp_vs_jvp(out_sizes, n_in, hidden, device, progress)
    return write_results(
        "vjp",
        rows,
        device=device,
        quick=args.quick,
        dtype="float32",
        functions={
            "jacobian": "f(x) = tanh(A x + b), x in R^n, A (m, n)",
            "vjp_vs_jvp": "f(x) = W2 tanh(W1 x), x in R^n, W1 (hidden, n), W2 (m, hidden)",
        },
    )


if __name__ == "__main__":
    main()
