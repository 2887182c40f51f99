"""benchmarks/_common.py: how often the timing helpers call what they time (no timings checked)."""

from __future__ import annotations

from _common import interleaved_medians, interleaved_timings, timings


def counter():
    calls = []
    return calls, lambda: calls.append(None)


def test_timings_calls_warmup_plus_repeat_and_orders_its_answer():
    calls, fn = counter()
    median, best = timings(fn, repeat=5, warmup=2, budget_s=60.0)
    assert len(calls) == 7
    assert 0 <= best <= median


def test_timings_stops_at_three_runs_once_the_budget_is_spent():
    calls, fn = counter()
    timings(fn, repeat=100, warmup=0, budget_s=0.0)
    assert len(calls) == 3


def test_interleaved_medians_times_every_function_round_robin():
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    medians = interleaved_medians(fns, repeat=3, warmup=1)
    assert set(medians) == {"a", "b"} and all(value >= 0 for value in medians.values())
    assert order == ["a", "b"] + ["a", "b"] * 3  # warm-ups first, then alternating


def test_interleaved_timings_give_median_and_best_and_respect_the_budget():
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    timed = interleaved_timings(fns, repeat=100, warmup=0, budget_s=0.0)
    assert order == ["a", "b"] * 3  # at least three rounds, then the budget stops it
    assert all(0 <= best <= median for median, best in timed.values())
    order.clear()
    interleaved_timings(fns, repeat=4, warmup=1)
    assert order == ["a", "b"] * 5
