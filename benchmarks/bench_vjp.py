"""Chapter 2 benchmark: VJP versus JVP as the number of outputs grows.

A two-layer network ``f(x) = W2 tanh(W1 x)``, ``R^n -> R^m``, with ``n = 64``
inputs and a growing number ``m`` of outputs: the cost of ``f`` itself, of one
VJP and one JVP (``torch.func``), and of the full Jacobian by reverse mode (``m``
VJPs, ``jacrev``) and by forward mode (``n`` JVPs, ``jacfwd``). Every product
and Jacobian is first checked against the closed form ``J = W2 diag(1 - h^2) W1``
with ``h = tanh(W1 x)`` (``v^T J`` and ``J t`` by matrix products with it),
independent of all the methods timed.

The ways to build one Jacobian (row loop, ``is_grads_batched``,
``functional.jacobian``, ``jacrev``, ``jacfwd``, ...) are timed by
``benchmarks/bench_jacobian.py``.

The methods of one size are timed round-robin (each of 21 rounds calls every
method once), so load from other work on the machine falls on all of them alike;
each row stores the median (``seconds``) and the best (``best``) of the rounds.
Writes ``book/data/bench_vjp.json``; chapter 2 renders it. Run with ``--quick``
for a smoke test at reduced sizes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import interleaved_timings, write_results
from tqdm import tqdm


def closed_form_jacobian(w1, w2, x):
    """Jacobian of ``f(x) = W2 tanh(W1 x)`` by hand: ``W2 diag(1 - h^2) W1``, ``(m, n)``.

    ``d tanh(z)/dz = 1 - tanh(z)^2`` and the chain rule; no autodiff.
    """
    h = torch.tanh(w1 @ x)
    return w2 @ ((1 - h**2)[:, None] * w1)


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
        jac = closed_form_jacobian(w1, w2, x)
        expected = {
            "one VJP": v @ jac,
            "one JVP": jac @ t,
            "jacrev (m VJPs)": jac,
            "jacfwd (n JVPs)": jac,
        }
        for name, value in expected.items():
            error = (methods[name]() - value).abs().max().item()
            if error > 1e-5 * (1 + value.abs().max().item()):
                raise RuntimeError(f"{name} disagrees with the closed form by {error:.2e} at m={m}")
        timed = interleaved_timings(methods, device, repeat=21)
        for name, (seconds, best) in timed.items():
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
    out_sizes = [4, 16, 64, 256] if args.quick else [4, 16, 64, 256, 1024, 4096]
    n_in, hidden = 64, 256
    with tqdm(total=5 * len(out_sizes), desc="bench_vjp") as progress:
        rows = bench_vjp_vs_jvp(out_sizes, n_in, hidden, device, progress)
    return write_results(
        "vjp",
        rows,
        device=device,
        quick=args.quick,
        dtype="float32",
        functions={
            "vjp_vs_jvp": "f(x) = W2 tanh(W1 x), x in R^n, W1 (hidden, n), W2 (m, hidden)",
        },
    )


if __name__ == "__main__":
    main()
