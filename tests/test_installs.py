"""The ways in: `make env` (CPU or CUDA torch), Binder (binder/), Colab (the install cell)."""

from __future__ import annotations

import ast
import importlib.metadata
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import types
from contextlib import redirect_stdout
from pathlib import Path

import install_torch
import nbbuild
import nbformat
import pytest
import set_repository
import write_environment

ROOT = Path(__file__).resolve().parent.parent

BINDER = ROOT / "binder"
LOCK = ROOT / "requirements" / "lock.txt"
NOTEBOOKS = sorted(
    p for d in ("book", "solutions", "notebooks") for p in (ROOT / d).glob("*.ipynb")
)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_of(path: Path) -> dict[str, str]:
    """``{name: version}`` of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            assert norm(name) not in pins, f"{path.name} pins {name} twice"
            pins[norm(name)] = version
    return pins


# ---------------------------------------------------------------- Binder


def test_binder_agrees_with_the_lock_file_on_every_shared_pin():
    lock, binder = pins_of(LOCK), pins_of(BINDER / "requirements.txt")
    assert binder, "binder/requirements.txt pins nothing"
    for name, version in binder.items():
        assert name in lock, f"binder pins {name}, which the lock file does not"
        if name == "torch":
            base, _, tag = version.partition("+")
            assert tag == "cpu", f"binder must install the CPU build of torch, got {version}"
            assert base == lock["torch"], f"binder torch {base}, lock torch {lock['torch']}"
        else:
            assert version == lock[name], f"{name}: binder {version}, lock file {lock[name]}"


def test_lock_file_was_resolved_against_the_cpu_build():
    """`make lock` resolves with the CPU build: no NVIDIA library may reach the pins."""
    cuda_only = [n for n in pins_of(LOCK) if n.startswith(("nvidia-", "triton"))]
    assert not cuda_only, f"the lock file pins CUDA-only packages: {cuda_only}"
    assert "tools/install_torch.py cpu" in (ROOT / "Makefile").read_text().split("\nlock:")[1]


def test_binder_installs_the_cpu_build_and_the_library():
    lines = [
        line.strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert lines[-1] == "-e ."
    assert all("nvidia" not in line for line in lines)


def test_binder_leaves_out_the_book_and_test_tools():
    binder = pins_of(BINDER / "requirements.txt")
    for tool in ("jupyter-book", "sphinx", "nbval", "pytest", "hypothesis", "ruff", "kornia"):
        assert tool not in binder, f"Binder installs {tool}, which no notebook needs"
    for needed in ("jupyterlab", "ipykernel", "torch", "numpy", "pytensor"):
        assert needed in binder, f"Binder misses {needed}"


def notebook_imports(path: Path) -> set[str]:
    """Top-level modules that a notebook's code cells import."""
    modules = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_binder_has_every_distribution_the_python3_notebooks_import():
    """Each module a notebook imports, when installed here, comes from a Binder pin."""
    providers = importlib.metadata.packages_distributions()
    binder = set(pins_of(BINDER / "requirements.txt")) | {"gradbook"}
    seen = set()
    for path in NOTEBOOKS:
        if nbformat.read(path, as_version=4).metadata["kernelspec"]["name"] != "python3":
            continue
        for module in notebook_imports(path) - set(sys.stdlib_module_names):
            for dist in providers.get(module, []):  # not installed here: not needed to run
                seen.add(module)
                assert norm(dist) in binder, f"{path.name} imports {module} ({dist}): not in Binder"
    assert {"torch", "numpy", "cv2", "pytensor", "gradbook"} <= seen


def test_binder_requirements_are_the_closure_written_by_the_tool():
    assert (BINDER / "requirements.txt").read_text() == write_environment.render_binder(), (
        "run .venv/bin/python tools/write_environment.py"
    )


def test_render_binder_keeps_only_the_closure_and_tags_torch():
    text = write_environment.render_binder({"numpy", "torch", "jinja2"})
    body = [line for line in text.splitlines() if line and not line.startswith(("#", "--"))]
    lock = pins_of(LOCK)
    assert body == [
        f"Jinja2=={lock['jinja2']}",
        f"numpy=={lock['numpy']}",
        f"torch=={lock['torch']}+cpu",
        "-e .",
    ]


def test_requirement_closure_follows_requirements_and_markers():
    closure = write_environment.requirement_closure(("jupyterlab",))
    assert {"jupyterlab", "jupyter-server", "tornado", "jinja2", "markupsafe"} <= closure
    assert "pytest" not in closure and "torch" not in closure
    with pytest.raises(ValueError, match="not installed here"):
        write_environment.requirement_closure(("no-such-distribution-here",))


def test_binder_runtime_is_the_python_of_the_lock_file():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert "resolved for Python 3.11" in (ROOT / "Makefile").read_text()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_binder_postbuild_builds_the_theano_kernel_like_make_env():
    post = (BINDER / "postBuild").read_text()
    env_mk = (ROOT / "envs" / "theano-pymc" / "env.mk").read_text()
    assert os.access(BINDER / "postBuild", os.X_OK), "binder/postBuild must be executable"
    assert post.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in post
    requirements = re.search(r"^THEANO_REQUIREMENTS := (\S+)$", env_mk, re.M).group(1)
    kernel = re.search(r"^THEANO_KERNEL := (\S+)$", env_mk, re.M).group(1)
    flags = re.search(r"^THEANO_KERNEL_FLAGS := (\S+)=\$\(abspath \.theano\)$", env_mk, re.M)
    assert f"-r {requirements}" in post
    assert f"--name {kernel}" in post
    assert f'THEANO_FLAGS "{flags.group(1)}=$PWD/.theano"' in post
    theano = nbformat.read(ROOT / "book" / "03a-theano-scan.ipynb", as_version=4)
    assert theano.metadata["kernelspec"]["name"] == kernel
    result = subprocess.run(["bash", "-n", str(BINDER / "postBuild")], capture_output=True)
    assert result.returncode == 0, result.stderr


def test_environment_yml_no_longer_claims_to_be_binders():
    header = (ROOT / "environment.yml").read_text().split("name:")[0]
    assert "Binder reads binder/" in header


# ---------------------------------------------------------------- make env: torch


def test_pinned_torch_reads_the_lock_file(tmp_path):
    assert install_torch.pinned_torch(LOCK) == pins_of(LOCK)["torch"]
    lock = tmp_path / "lock.txt"
    lock.write_text("# torch==9.9.9 in a comment\nnumpy==2.0.0\n")
    with pytest.raises(ValueError, match=r"lock: expected a line 'torch==X.Y.Z'"):
        install_torch.pinned_torch(lock)


@pytest.mark.parametrize(
    ("version", "requires", "platform", "build"),
    [
        ("2.13.0+cpu", [], "linux", "cpu"),
        ("2.13.0+cu128", [], "linux", "cuda"),
        ("2.13.0+rocm6.4", [], "linux", "cuda"),
        (
            "2.13.0",
            ["filelock", "nvidia-cudnn-cu12==9.10.2.21; platform_system == 'Linux'"],
            "linux",
            "cuda",
        ),
        ("2.13.0", ["filelock", "sympy>=1.13.3"], "linux", "cpu"),
        ("2.13.0", ["filelock"], "darwin", "cpu"),
        ("2.13.0", ["nvidia-cublas-cu12"], "win32", "cpu"),
    ],
)
def test_build_of(version, requires, platform, build):
    assert install_torch.build_of(version, requires, platform) == build


def test_parse_offered_reads_pip_index_versions():
    output = (
        "torch (2.15.0)\n"
        "Available versions: 2.15.0, 2.14.1, 2.13.0+cpu, 2.13.0, 2.12.1\n"
        "  INSTALLED: 2.13.0+cpu\n"
        "  LATEST:    2.15.0\n"
    )
    assert install_torch.parse_offered(output) == [
        "2.15.0",
        "2.14.1",
        "2.13.0+cpu",
        "2.13.0",
        "2.12.1",
    ]
    assert install_torch.parse_offered("ERROR: No matching distribution found for torch\n") == []


CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_INSTALLED = ("2.13.0+cpu", ["filelock"])
CUDA_INSTALLED = ("2.13.0", ["filelock", "nvidia-cublas-cu12==12.8.4.1"])


@pytest.mark.parametrize(
    ("build", "installed", "offered", "cpu_index", "platform", "args", "says"),
    [
        # already there: nothing to install, no index asked
        ("cpu", CPU_INSTALLED, [], None, "linux", (), "already installed"),
        ("cuda", CUDA_INSTALLED, [], None, "linux", (), "already installed"),
        # a local CPU wheel (this machine, CI): taken, the CPU index never asked
        (
            "cpu",
            None,
            ["2.14.0", "2.13.0+cpu", "2.13.0"],
            None,
            "linux",
            ("--no-deps", "torch==2.13.0+cpu"),
            "offer this CPU build",
        ),
        # PyPI only, CPU index reachable
        (
            "cpu",
            None,
            ["2.14.0", "2.13.0"],
            (True, "HTTP 200"),
            "linux",
            ("--no-deps", "--index-url", CPU_INDEX, "torch==2.13.0+cpu"),
            CPU_INDEX,
        ),
        # PyPI only, CPU index unreachable: the plain pin, with the reason and the size
        (
            "cpu",
            None,
            ["2.13.0"],
            (False, "timed out"),
            "linux",
            ("--no-deps", "torch==2.13.0"),
            "cannot be reached (timed out)",
        ),
        # macOS and Windows: PyPI's plain build is the CPU build
        (
            "cpu",
            None,
            ["2.13.0"],
            None,
            "darwin",
            ("--no-deps", "torch==2.13.0"),
            "default build is the CPU build",
        ),
        # the CUDA build replaces a CPU one, and a local +cpu wheel cannot win (===)
        (
            "cuda",
            CPU_INSTALLED,
            ["2.13.0+cpu", "2.13.0"],
            None,
            "linux",
            ("torch===2.13.0",),
            "CUDA build",
        ),
        # the CPU build replaces the CUDA one, and another version
        (
            "cpu",
            CUDA_INSTALLED,
            ["2.13.0+cpu"],
            None,
            "linux",
            ("--no-deps", "torch==2.13.0+cpu"),
            "CPU build",
        ),
        (
            "cpu",
            ("2.12.0+cpu", []),
            ["2.13.0+cpu"],
            None,
            "linux",
            ("--no-deps", "torch==2.13.0+cpu"),
            "CPU build",
        ),
    ],
)
def test_plan(build, installed, offered, cpu_index, platform, args, says):
    step = install_torch.plan(build, "2.13.0", installed, offered, cpu_index, platform)
    assert step.args == args
    assert says in step.message
    if cpu_index is not None and not cpu_index[0]:
        assert "CUDA build" in step.message and "several GB" in step.message


def test_plan_refuses_an_unknown_build():
    with pytest.raises(ValueError, match=r"build: expected one of \('cpu', 'cuda'\), got 'gpu'"):
        install_torch.plan("gpu", "2.13.0", None, [], None)


@pytest.fixture
def no_proxy(monkeypatch):
    """Local test servers are reached directly, whatever proxy the environment names."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_reachable_gives_up_after_the_timeout_on_a_silent_server(no_proxy):
    """An index that accepts the connection but never answers costs at most the timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        start = time.monotonic()
        ok, why = install_torch.reachable(f"http://127.0.0.1:{port}/torch/", timeout=0.5)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert not ok and "timed out" in why
    assert elapsed < 3


def test_reachable_reports_a_refused_connection_and_an_http_error(no_proxy):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ok, why = install_torch.reachable(f"http://127.0.0.1:{port}/", timeout=2)
    assert not ok and "refused" in why.lower()

    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Missing(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Missing)
    thread = threading.Thread(target=httpd.handle_request, daemon=True)
    thread.start()
    try:
        ok, why = install_torch.reachable(f"http://127.0.0.1:{httpd.server_port}/", timeout=5)
    finally:
        thread.join(5)
        httpd.server_close()
    assert (ok, why) == (False, "HTTP 404")


def test_main_installs_what_the_plan_says(monkeypatch, capsys):
    calls = []
    state = {"torch": None}

    def fake_pip(args, python=sys.executable):
        calls.append(args)
        state["torch"] = ("2.13.0+cpu", ["filelock"])
        return 0

    monkeypatch.setattr(install_torch, "installed_torch", lambda: state["torch"])
    monkeypatch.setattr(install_torch, "offered_versions", lambda: ["2.13.0+cpu", "2.13.0"])
    monkeypatch.setattr(install_torch, "reachable", pytest.fail)  # never asked here
    monkeypatch.setattr(install_torch, "pip_install", fake_pip)
    assert install_torch.main(["cpu", "--lock", str(LOCK)]) == 0
    version = pins_of(LOCK)["torch"]
    assert calls == [("--no-deps", f"torch=={version}+cpu")]
    assert f"installed torch {version}+cpu (cpu build)" in capsys.readouterr().out
    # a second run finds it installed and asks nothing
    monkeypatch.setattr(install_torch, "offered_versions", pytest.fail)
    assert install_torch.main(["cpu", "--lock", str(LOCK)]) == 0
    assert len(calls) == 1
    assert "already installed" in capsys.readouterr().out


def test_main_falls_back_when_the_cpu_index_fails(monkeypatch, capsys):
    calls = []

    def fake_pip(args, python=sys.executable):
        calls.append(args)
        return 1 if "--index-url" in args else 0

    monkeypatch.setattr(install_torch.sys, "platform", "linux")
    monkeypatch.setattr(install_torch, "installed_torch", lambda: None)
    monkeypatch.setattr(install_torch, "offered_versions", lambda: ["2.13.0"])
    monkeypatch.setattr(install_torch, "reachable", lambda url, timeout: (True, "HTTP 200"))
    monkeypatch.setattr(install_torch, "pip_install", fake_pip)
    assert install_torch.main(["cpu", "--lock", str(LOCK)]) == 1  # installed_torch stays None
    version = pins_of(LOCK)["torch"]
    assert calls[1] == ("--no-deps", f"torch=={version}")
    assert "trying the configured indexes" in capsys.readouterr().out


def make_dry_run(*args: str, path: str | None = None) -> str:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    env.pop("TORCH", None)
    env.pop("MAKEFLAGS", None)
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "env", "VENV=/nonexistent/venv", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    return result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_env_picks_the_torch_build(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    path = f"{fake}:{os.environ['PATH']}"
    smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"\n')
    smi.chmod(0o755)
    assert "tools/install_torch.py cuda" in make_dry_run(path=path)
    assert "tools/install_torch.py cpu" in make_dry_run("TORCH=cpu", path=path)
    # a driver that finds no GPU: nvidia-smi fails
    smi.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n')
    if not Path("/proc/driver/nvidia").exists():
        assert "tools/install_torch.py cpu" in make_dry_run(path=path)
    assert "tools/install_torch.py cuda" in make_dry_run("TORCH=cuda", path=path)
    out = make_dry_run("TORCH=gpu")
    assert "TORCH must be cpu or cuda, got 'gpu'" in out
    assert "install_torch" not in out


# ---------------------------------------------------------------- Colab


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_install_cell_is_the_tools(path):
    """Every notebook that installs gradbook does so with the cell set_repository writes."""
    notebook = nbformat.read(path, as_version=4)
    if notebook.metadata["kernelspec"]["name"] != "python3":
        return
    first = notebook.cells[0]
    assert first.source == nbbuild.colab_install_source(), (
        f"{path.relative_to(ROOT)}: run python tools/set_repository.py"
    )
    assert first.outputs == [] and "remove-cell" in first.metadata.get("tags", [])
    others = [c.source for c in notebook.cells[1:] if c.cell_type == "code"]
    assert not any("google.colab" in s or "pip install" in s for s in others)


def test_the_cell_installs_a_revision_and_gradbooks_torch_requirement():
    source = nbbuild.colab_install_source()
    revision = nbbuild.colab_revision()
    assert f'REVISION = "{revision}"' in source
    assert f'REPOSITORY = "{nbbuild.repository_url()}"' in source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [d for d in project["dependencies"] if d.startswith("torch")]
    assert f'TORCH = "{torch[0]}"' in source
    assert re.fullmatch(r"v\d+(\.\d+)*\S*|[0-9a-f]{40}", revision), (
        f"Colab must install a tag or a full commit, not {revision!r}"
    )
    if revision.startswith("v"):
        assert revision == f"v{project['version']}", (
            f"Colab installs the tag {revision} but pyproject.toml is version "
            f"{project['version']}: run tools/set_repository.py --revision v{project['version']}"
        )


def run_cell(source: str, distributions: list[dict], pip_result=0, after_install=None):
    """Execute the install cell as Colab would, with pip and the installed set faked."""
    calls = []
    state = {"dists": distributions}

    def fake_distributions():
        return [
            types.SimpleNamespace(metadata={"Name": d["name"]}, version=d["version"])
            for d in state["dists"]
        ]

    def fake_run(command, **kwargs):
        calls.append(command)
        if not pip_result and after_install is not None:
            state["dists"] = after_install
        return types.SimpleNamespace(returncode=pip_result, stderr="ERROR: no such tag\n")

    fake_metadata = types.ModuleType("importlib.metadata")
    fake_metadata.distributions = fake_distributions
    fake_subprocess = types.ModuleType("subprocess")
    fake_subprocess.run = fake_run
    saved = {name: sys.modules.get(name) for name in ("google.colab", "subprocess")}
    saved_metadata = sys.modules["importlib.metadata"]
    sys.modules["google.colab"] = types.ModuleType("google.colab")
    sys.modules["subprocess"] = fake_subprocess
    sys.modules["importlib.metadata"] = fake_metadata
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            exec(compile(source, "<install cell>", "exec"), {"__name__": "__main__"})
    finally:
        sys.modules["importlib.metadata"] = saved_metadata
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return calls, out.getvalue()


def dists(**versions):
    return [{"name": name, "version": version} for name, version in versions.items()]


def test_colab_cell_keeps_colabs_torch_and_prints_what_it_installed():
    source = nbbuild.colab_install_source("https://example.org/r", "v9.9", "torch>=2.4")
    colab = dists(torch="2.6.0+cu124", numpy="2.0.2")
    calls, out = run_cell(source, colab, after_install=colab + dists(gradbook="9.9", tqdm="4.1"))
    assert len(calls) == 1
    command = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert "gradbook @ git+https://example.org/r@v9.9" in command
    assert "torch==2.6.0+cu124" in command  # Colab's build, so pip cannot replace it
    assert "installed gradbook 9.9" in out and "installed tqdm 4.1" in out
    assert "numpy" not in out
    assert "torch 2.6.0+cu124: Colab's own, kept" in out


def test_colab_cell_installs_torch_when_colabs_is_too_old():
    source = nbbuild.colab_install_source("https://example.org/r", "0" * 40, "torch>=2.4")
    calls, out = run_cell(
        source,
        dists(torch="2.3.1+cu121"),
        after_install=dists(torch="2.13.0", gradbook="0.1.0"),
    )
    assert not any(part.startswith("torch==") for part in calls[0])
    assert f"gradbook @ git+https://example.org/r@{'0' * 40}" in calls[0]
    assert "installed torch 2.13.0 (was 2.3.1+cu121)" in out
    assert "torch 2.13.0: installed for torch>=2.4" in out


def test_colab_cell_fails_loudly_with_pips_reason():
    source = nbbuild.colab_install_source("https://example.org/r", "v0.0.0", "torch>=2.4")
    with pytest.raises(
        RuntimeError, match=r"(?s)could not install gradbook @ .*@v0\.0\.0.*no such tag"
    ):
        run_cell(source, dists(torch="2.6.0"), pip_result=1)


def test_colab_cell_does_nothing_off_colab():
    assert "google.colab" not in sys.modules
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(nbbuild.colab_install_source(), "<install cell>", "exec"), {})
    assert out.getvalue() == ""


# ---------------------------------------------------------------- set_repository


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the files set_repository reads and writes, with two notebooks."""
    for name in ("_config.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("book", "solutions", "notebooks", "requirements"):
        (tmp_path / folder).mkdir()
    shutil.copy(ROOT / "requirements" / "colab-revision.txt", tmp_path / "requirements")
    shutil.copy(ROOT / "book" / "introduction.md", tmp_path / "book")
    lesson = sorted((ROOT / "book").glob("0*.ipynb"))[0]
    shutil.copy(lesson, tmp_path / "book" / lesson.name)
    shutil.copy(ROOT / "book" / "03a-theano-scan.ipynb", tmp_path / "book")
    monkeypatch.setattr(nbbuild, "ROOT", tmp_path)
    monkeypatch.setattr(set_repository, "ROOT", tmp_path)
    return tmp_path


def test_set_repository_is_idempotent_and_touches_only_the_first_cell(project):
    lesson = next(project.glob("book/0[!3]*.ipynb"))
    theano = project / "book" / "03a-theano-scan.ipynb"
    original = nbformat.read(lesson, as_version=4)
    original.cells[0].source = "# On Colab: an old install cell\nimport google.colab"
    nbformat.write(original, lesson)
    theano_before = theano.read_text()

    assert set_repository.main([]) == 0
    once = lesson.read_text()
    updated = nbformat.read(lesson, as_version=4)
    assert updated.cells[0].source == nbbuild.colab_install_source()
    assert updated.cells[1:] == original.cells[1:]
    assert updated.metadata == original.metadata
    assert theano.read_text() == theano_before  # no install cell: untouched

    assert set_repository.main([]) == 0
    assert lesson.read_text() == once


def test_set_repository_writes_a_revision(project, capsys):
    lesson = next(project.glob("book/0[!3]*.ipynb"))
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert set_repository.main(["--revision", "v2.0.0"]) == 0
    assert nbbuild.colab_revision() == "v2.0.0"
    assert 'REVISION = "v2.0.0"' in nbformat.read(lesson, as_version=4).cells[0].source

    assert set_repository.main(["--revision", head]) == 0
    assert nbbuild.colab_revision() == head
    assert f'REVISION = "{head}"' in nbformat.read(lesson, as_version=4).cells[0].source
    assert "1 notebook(s) updated" in capsys.readouterr().out

    for bad in ("main..HEAD", "not a ref", "--", "nonexistent-branch-or-tag"):
        assert set_repository.main(["--revision", bad]) == 2
    assert nbbuild.colab_revision() == head  # unchanged by the refusals


def test_resolve_revision():
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert set_repository.resolve_revision("HEAD") == head
    assert set_repository.resolve_revision(head[:10]) == head
    assert set_repository.resolve_revision("v1.2.3") == "v1.2.3"  # a release tag to come
    with pytest.raises(ValueError, match="expected a tag or a commit, got 'a b'"):
        set_repository.resolve_revision("a b")
    with pytest.raises(ValueError, match=r"expected a tag .* got 'zzzz'"):
        set_repository.resolve_revision("zzzz")
    branch = subprocess.run(
        ["git", "-C", str(ROOT), "branch", "--show-current"], capture_output=True, text=True
    ).stdout.strip()
    if branch:
        with pytest.raises(ValueError, match="is a branch, which moves"):
            set_repository.resolve_revision(branch)
