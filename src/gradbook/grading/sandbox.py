"""Run a notebook kernel under bubblewrap; the notebook client stays outside.

Only the kernel process runs in the sandbox. The grader keeps the notebook
client (nbclient, through nbgrader's ``Execute``), reads the kernel's replies and
writes every result itself, so nothing a submission does inside can rewrite them.
The two sides talk over jupyter_client's ``ipc`` transport: unix sockets in a
run folder bound into the sandbox (the sandbox has no network, not even a
loopback shared with the grader).

The sandbox (:func:`bwrap_prefix`):

- new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``),
  uid 1000 inside, no capabilities; when the kernel ends, every process it
  started ends with it (it is PID 1's child in its own PID namespace), and the
  sandbox dies with the grader (``--die-with-parent``);
- a new session (no terminal to inject keystrokes into);
- read-only: the system (``/usr``, ``/etc``, ``/sys``), the Python installation
  and virtual environment, and ``gradbook``'s source; nothing else of the host
  (no home folder, no other submissions, no ``solutions/``, no gradebook);
- the sandbox's root (where bubblewrap makes the mount points) read-only;
- writable: a private ``/tmp`` (memory, discarded) and the two folders of this
  run (a throw-away copy of the one submission, and the sockets), both deleted
  by the grader afterwards;
- an address-space cap (``prlimit --as``, 4 GiB by default) and a clean
  environment (no variable of the grader, such as ``GRADEBOOK_DB``, leaks in).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import List, Unicode

INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed; every submission's kernel must run in its "
    "sandbox. Install it (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: "
    "`sudo dnf install bubblewrap`; or `make env` as root), or set UNSAFE_NO_SANDBOX=1 "
    "to grade without a sandbox (submissions then run as you, with your files)."
)
SANDBOX_UID = 1000
DEFAULT_MEMORY = 4 * 2**30
SYSTEM_DIRS = ("/usr", "/etc", "/sys")
USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def bwrap() -> str | None:
    """The path of ``bwrap``, or ``None`` when bubblewrap is not installed."""
    return shutil.which("bwrap")


def _outermost(paths: list[Path]) -> list[Path]:
    """``paths`` without those inside another one of them, sorted."""
    unique = sorted({p for p in paths if p.exists()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return sorted(kept)


def readonly_paths() -> list[Path]:
    """What the kernel needs to read: the Python install, the environment, gradbook."""
    import gradbook

    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent]
    paths.append(Path(sys.executable).resolve().parent.parent)
    paths.append(Path(gradbook.__file__).resolve().parent.parent)  # src/ of an editable install
    for entry in sys.path:
        if entry and ("site-packages" in entry or "dist-packages" in entry):
            paths.append(Path(entry).resolve())
    system = [Path(d) for d in SYSTEM_DIRS]
    return [p for p in _outermost(paths) if not any(p == s or s in p.parents for s in system)]


def bwrap_prefix(
    writable: list[Path], cwd: Path, memory_bytes: int = DEFAULT_MEMORY, threads: int = 1
) -> list[str]:
    """The command that runs what follows it in the sandbox described in the module.

    Args:
        writable: folders bound read-write at their own path (the submission's copy,
            the sockets' folder).
        cwd: the working directory inside.
        memory_bytes: the address-space cap (``RLIMIT_AS``).
        threads: ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` inside.

    Raises:
        RuntimeError: bubblewrap is missing (the message says how to install it).
        ValueError: ``memory_bytes`` or ``threads`` is not positive.
    """
    executable = bwrap()
    if executable is None:
        raise RuntimeError(INSTALL_HINT)
    if memory_bytes <= 0 or threads <= 0:
        raise ValueError(
            f"memory_bytes and threads must be positive, got {memory_bytes} and {threads}"
        )
    prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
    command = [executable, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID)]
    command += ["--gid", str(SANDBOX_UID), "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        command += ["--cap-drop", "ALL"]
    for directory in SYSTEM_DIRS:
        if Path(directory).is_dir() and not Path(directory).is_symlink():
            command += ["--ro-bind", directory, directory]
    for link in USR_LINKS:
        path = Path(link)
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            command += ["--ro-bind", link, link]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in readonly_paths():
        command += ["--ro-bind", str(path), str(path)]
    for path in writable:
        command += ["--bind", str(path), str(path)]
    environment = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "IPYTHONDIR": "/tmp/.ipython",
        "MPLCONFIGDIR": "/tmp/.matplotlib",
        "MPLBACKEND": "Agg",
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    command += ["--remount-ro", "/", "--clearenv"]  # the sandbox's own root: read-only too
    for key, value in environment.items():
        command += ["--setenv", key, value]
    command += ["--chdir", str(cwd), "--", prlimit, f"--as={memory_bytes}", "--"]
    return command


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command starts with :attr:`sandbox_prefix`.

    Use it with ``transport="ipc"`` and a ``connection_file`` in a folder that the
    prefix binds read-write. An empty prefix runs the kernel unsandboxed.
    """

    sandbox_prefix = List(Unicode(), help="argv put before the kernel command").tag(config=True)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return list(self.sandbox_prefix) + super().format_kernel_cmd(extra_arguments)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL  # the kernel's banner, its warnings
        await super()._async_launch_kernel(kernel_cmd, **kw)
        self._sandbox_process = getattr(self.provisioner, "process", None)

    def kill_now(self) -> None:
        """Kill the kernel process (bubblewrap: its whole PID namespace goes with it)."""
        process = getattr(self, "_sandbox_process", None)
        if process is None:
            return
        if process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=10)  # reaped: no zombie left behind
        except subprocess.TimeoutExpired:
            pass
