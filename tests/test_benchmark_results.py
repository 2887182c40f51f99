"""The stored benchmark results hold what the chapters read from them.

Chapter 3 renders every row of ``book/data/bench_jacobian.json`` and chapter 2
reads its legacy paths' rows; chapter 2 renders ``book/data/bench_vjp.json``
(VJP versus JVP only: the ways to build a Jacobian are timed once, in
``benchmarks/bench_jacobian.py``).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from gradbook.lesson import load_benchmark

ROOT = Path(__file__).resolve().parent.parent

TORCH_METHODS = {
    "torch row loop",
    "jacrev",
    "jacfwd",
    "auto",
    "is_grads_batched",
    "autograd.functional (vectorize)",
    "jacfwd (explicit constants)",
    "PyTensor scan",
    "PyTensor vectorize",
}


@pytest.fixture(scope="module")
def jacobian():
    return load_benchmark("jacobian", ROOT)


def test_every_case_has_every_method_once(jacobian):
    sizes = jacobian["sizes"]
    seen = {}
    for row in jacobian["rows"]:
        key = row["function"], row["n"], row["m"], row["method"]
        assert key not in seen, f"{key} appears twice"
        seen[key] = row
    for function, n, m in itertools.product(("mlp", "tanh_affine"), sizes, sizes):
        for method in TORCH_METHODS:
            assert (function, n, m, method) in seen, f"no row for {function, n, m, method}"


def test_every_jacobian_was_right_and_every_time_is_ordered(jacobian):
    for row in jacobian["rows"]:
        assert row["max_abs_err"] < 1e-10, row  # float64 against the closed form
        assert 0 < row["best_s"] <= row["median_s"], row


def test_chapter_2_finds_the_legacy_rows(jacobian):
    rows = [r for r in jacobian["rows"] if r["function"] == "tanh_affine" and r["n"] == 100]
    sizes = {r["m"] for r in rows}
    assert {100, max(jacobian["sizes"])} <= sizes
    legacy = {"is_grads_batched", "autograd.functional (vectorize)"}
    assert legacy <= {r["method"] for r in rows}


def test_the_vjp_benchmark_holds_only_vjp_versus_jvp():
    bench = load_benchmark("vjp", ROOT)
    assert {r["part"] for r in bench["rows"]} == {"vjp_vs_jvp"}
    methods = {"f", "one VJP", "one JVP", "jacrev (m VJPs)", "jacfwd (n JVPs)"}
    for m in {r["m"] for r in bench["rows"]}:
        assert {r["method"] for r in bench["rows"] if r["m"] == m} == methods
    assert all(0 < r["best"] <= r["seconds"] for r in bench["rows"])
