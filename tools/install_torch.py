"""Install the lock file's torch as a CPU or a CUDA build into the running environment.

    python tools/install_torch.py cpu|cuda [--lock requirements/lock.txt] [--timeout 5]

``make env`` runs it with the environment's Python before it installs the lock file,
whose ``torch==X.Y.Z`` (no build tag) the build installed here then satisfies. The
Makefile chooses ``cuda`` where an NVIDIA GPU is found and ``cpu`` elsewhere;
``make env TORCH=cpu|cuda`` overrides that choice.

Where the CPU build comes from, first match wins:

1. the torch already installed, when it is the pinned version and the wanted build;
2. the indexes pip is configured with, when they offer ``X.Y.Z+cpu`` (a local wheel
   folder or a nearby index) or when their plain ``X.Y.Z`` is a CPU build (macOS, Windows);
3. the PyTorch CPU index, when it answers within ``--timeout`` seconds;
4. otherwise the configured indexes' plain ``X.Y.Z``, with a message saying that on
   Linux this is the CUDA build with its NVIDIA libraries (several GB).

The CUDA build is PyPI's plain ``X.Y.Z`` on Linux, asked for as ``torch===X.Y.Z`` so
that a local ``+cpu`` wheel cannot win over it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BUILDS = ("cpu", "cuda")


def pinned_torch(lock: Path = LOCK) -> str:
    """The version ``X.Y.Z`` that the lock file pins torch to (``torch==X.Y.Z``)."""
    for line in lock.read_text().splitlines():
        match = re.fullmatch(r"torch==([0-9][0-9A-Za-z.]*)", line.strip())
        if match:
            return match.group(1)
    raise ValueError(f"lock: expected a line 'torch==X.Y.Z' in {lock}, found none")


def build_of(version: str, requires: list[str] | None, platform: str = sys.platform) -> str:
    """``"cpu"`` or ``"cuda"``: which build a torch distribution is.

    A local tag says it (``+cpu``, ``+cu128``); without one, a Linux wheel that requires
    NVIDIA packages is the CUDA build and every other wheel (macOS, Windows) a CPU build.
    """
    local = version.partition("+")[2]
    if local:
        return "cuda" if local.startswith(("cu", "rocm")) else "cpu"
    if platform.startswith("linux") and any(r.startswith("nvidia-") for r in requires or []):
        return "cuda"
    return "cpu"


def installed_torch() -> tuple[str, list[str]] | None:
    """Version and requirements of the torch installed in this environment, or None."""
    try:
        dist = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    return dist.version, list(dist.requires or [])


def offered_versions(python: str = sys.executable, timeout: float = 120) -> list[str]:
    """Versions of torch that pip's configured indexes offer for this platform.

    Reads index pages only (``pip index versions``), never downloads a wheel; an empty
    list when pip cannot tell.
    """
    try:
        result = subprocess.run(
            [python, "-m", "pip", "index", "versions", "torch"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_offered(result.stdout)


def parse_offered(pip_output: str) -> list[str]:
    """The versions listed on the ``Available versions:`` line of ``pip index versions``."""
    for line in pip_output.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.partition(":")[2].split(",") if v.strip()]
    return []


def reachable(url: str, timeout: float) -> tuple[bool, str]:
    """Whether ``url`` answers within ``timeout`` seconds, and why not when it does not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400, f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return False, str(reason) or type(reason).__name__


@dataclass(frozen=True)
class Plan:
    """What to install: pip arguments after ``pip install`` (empty: nothing) and why."""

    args: tuple[str, ...]
    message: str


def plan(
    build: str,
    version: str,
    installed: tuple[str, list[str]] | None,
    offered: list[str],
    cpu_index: tuple[bool, str] | None,
    platform: str = sys.platform,
) -> Plan:
    """Decide where the wanted build of torch ``version`` comes from (see the module doc).

    ``cpu_index`` is ``(reachable, why)`` for the PyTorch CPU index, or None when it was
    not asked (it is only asked when the configured indexes offer no CPU build).
    """
    if build not in BUILDS:
        raise ValueError(f"build: expected one of {BUILDS}, got {build!r}")
    if installed and installed[0].partition("+")[0] == version:
        have = build_of(*installed, platform=platform)
        if have == build:
            return Plan((), f"torch {installed[0]} ({have} build) is already installed")
    if build == "cuda":
        return Plan(
            (f"torch==={version}",),
            f"installing torch {version} from the configured indexes (the CUDA build on Linux)",
        )
    local_cpu = [v for v in offered if v.partition("+")[0] == version and "+cpu" in v]
    if local_cpu:
        return Plan(
            ("--no-deps", f"torch=={local_cpu[0]}"),
            f"installing torch {local_cpu[0]}: the configured indexes offer this CPU build",
        )
    if not platform.startswith("linux"):
        return Plan(
            ("--no-deps", f"torch=={version}"),
            f"installing torch {version}: on {platform} the default build is the CPU build",
        )
    if cpu_index is not None and cpu_index[0]:
        return Plan(
            ("--no-deps", "--index-url", CPU_INDEX, f"torch=={version}+cpu"),
            f"installing torch {version}+cpu from {CPU_INDEX}",
        )
    why = cpu_index[1] if cpu_index else "not asked"
    return Plan(
        ("--no-deps", f"torch=={version}"),
        f"{CPU_INDEX} cannot be reached ({why}) and the configured indexes offer no "
        f"{version}+cpu: installing torch {version} from them instead, which on Linux is "
        "the CUDA build with its NVIDIA libraries (several GB)",
    )


def pip_install(args: tuple[str, ...], python: str = sys.executable) -> int:
    return subprocess.run([python, "-m", "pip", "install", "--quiet", *args]).returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", choices=BUILDS, help="which build of torch to install")
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock file pinning torch")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the PyTorch CPU index"
    )
    options = parser.parse_args(argv)
    version = pinned_torch(options.lock)
    installed = installed_torch()
    offered: list[str] = []
    cpu_index = None
    if options.build == "cpu" and not (
        installed and installed[0].partition("+")[0] == version and build_of(*installed) == "cpu"
    ):
        offered = offered_versions()
        if not any(v.partition("+")[0] == version and "+cpu" in v for v in offered):
            if sys.platform.startswith("linux"):
                cpu_index = reachable(f"{CPU_INDEX}/torch/", options.timeout)
    step = plan(options.build, version, installed, offered, cpu_index)
    print(f"torch ({options.build}): {step.message}")
    if not step.args:
        return 0
    status = pip_install(step.args)
    if status and "--index-url" in step.args:
        # the CPU index answered but the install failed: fall back to the configured indexes
        print(f"torch ({options.build}): {CPU_INDEX} failed; trying the configured indexes")
        status = pip_install(("--no-deps", f"torch=={version}"))
    if status:
        return status
    now = installed_torch()
    if now is None:
        print("torch: pip reported success but torch is not installed", file=sys.stderr)
        return 1
    got = build_of(*now)
    print(f"torch ({options.build}): installed torch {now[0]} ({got} build)")
    if got != options.build:
        print(
            f"torch ({options.build}): note: the {got} build is what could be installed here",
            file=sys.stderr,
        )
    if installed and build_of(*installed) == "cuda" and got == "cpu":
        print(
            "torch (cpu): the NVIDIA libraries of the CUDA build stay installed; "
            "for a lean environment: rm -rf .venv && make env TORCH=cpu"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
