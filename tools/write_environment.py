"""Write environment.yml (conda, Binder) with exactly the pins of requirements/lock.txt."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# conda / Binder environment: the same exact pins as requirements/lock.txt.
# Written by tools/write_environment.py (`make lock`); tests/test_book_config.py checks they agree.
name: gradients-in-practice
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def lock_pins(lock: Path = ROOT / "requirements" / "lock.txt") -> list[str]:
    lines = (line.strip() for line in lock.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def render() -> str:
    pins = "".join(f"      - {pin}\n" for pin in lock_pins())
    return HEADER + pins + "      - -e .\n"


if __name__ == "__main__":
    (ROOT / "environment.yml").write_text(render())
    print("wrote environment.yml")
