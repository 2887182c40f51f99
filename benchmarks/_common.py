"""Timing and reporting helpers shared by every benchmark script.

Each ``benchmarks/bench_*.py`` measures the library side by side with its peer in
one run and writes ``book/data/bench_<name>.json``; the chapter renders that file,
so the book shows the numbers of the last ``make bench``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

DATA_DIR = Path(__file__).resolve().parent.parent / "book" / "data"


def synchronize(device: torch.device | str = "cpu") -> None:
    """Wait for queued CUDA kernels so that timings measure the work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timings(
    fn: Callable[[], Any],
    device: torch.device | str = "cpu",
    *,
    repeat: int = 7,
    warmup: int = 2,
    budget_s: float = 5.0,
) -> tuple[float, float]:
    """``(median, best)`` wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup``.

    The best run is the least disturbed by other work on a shared machine; the
    median shows the typical cost. Stops early (with at least three runs) once
    ``budget_s`` seconds are spent, so a slow method cannot stall a benchmark.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start_all = time.perf_counter()
    for _ in range(repeat):
        times.append(seconds(fn, device))
        if len(times) >= 3 and time.perf_counter() - start_all > budget_s:
            break
    return statistics.median(times), min(times)


def seconds(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Wall time of one call of ``fn()``, queued CUDA work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_timings(
    fns: dict[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    *,
    repeat: int = 7,
    warmup: int = 2,
    budget_s: float | None = None,
) -> dict[str, tuple[float, float]]:
    """``name -> (median, best)`` seconds of each function, timed round-robin.

    Load from other work on the machine then falls on all of them alike, where
    :func:`timings` measures one function after another. With ``budget_s``,
    stops early (after at least three rounds) once ``budget_s`` seconds per
    function are spent.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {key: [] for key in fns}
    start_all = time.perf_counter()
    for round_ in range(repeat):
        for key, fn in fns.items():
            samples[key].append(seconds(fn, device))
        spent = time.perf_counter() - start_all
        if budget_s is not None and round_ >= 2 and spent > budget_s * len(fns):
            break
    return {key: (statistics.median(values), min(values)) for key, values in samples.items()}


def interleaved_medians(
    fns: dict[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    *,
    repeat: int = 7,
    warmup: int = 2,
) -> dict[str, float]:
    """Median seconds of each function, timed round-robin (see :func:`interleaved_timings`)."""
    timed = interleaved_timings(fns, device, repeat=repeat, warmup=warmup)
    return {key: median for key, (median, _) in timed.items()}


def median_time(fn: Callable[[], Any], **kwargs: Any) -> float:
    """Median wall time of ``fn()`` in seconds; the arguments are those of :func:`timings`."""
    return timings(fn, **kwargs)[0]


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on."""
    device = torch.device(device)
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_results(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write ``rows`` (one dict per measurement) and the machine to ``book/data``."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"bench_{name}.json"
    payload = {"name": name, "machine": machine_info(extra.pop("device", "cpu"))}
    payload.update(extra)
    payload["rows"] = rows
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(DATA_DIR.parent.parent)}")
    return path
