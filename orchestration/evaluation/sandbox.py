"""Run untrusted candidate code in a separate, limited process (never ``exec`` in this one).

Each program runs in a fresh temporary directory as ``python -I`` (isolated: no environment variables, no
user site, no working directory on the path) with an empty environment, no stdin, in its own session so
a timeout kills every process it started, under resource limits: CPU seconds, address space, file size,
open files, no core dumps. Where ``unshare -rn`` works (a user namespace with no network), the program
has no network either; ``network_isolated()`` says whether it does.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Literal

from pydantic import BaseModel

__all__ = ["Limits", "Outcome", "run_program", "network_isolated"]


class Limits(BaseModel):
    timeout_s: float = 10.0
    memory_mb: int = 1024
    file_mb: int = 16
    open_files: int = 64


class Outcome(BaseModel):
    status: Literal["passed", "failed", "timeout"]
    returncode: int | None
    seconds: float
    stderr: str = ""


@functools.lru_cache(maxsize=1)
def network_isolated() -> bool:
    """True where ``unshare -rn`` can start a process without network (Linux user namespaces)."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _limiter(limits: Limits):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        import resource

        cpu = int(limits.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        mem = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_program(source: str, limits: Limits | None = None) -> Outcome:
    """Run ``source`` as a Python program; passed = exit status 0 within the time limit."""
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="mageagent-sandbox-") as tmp:
        path = os.path.join(tmp, "candidate.py")
        with open(path, "w") as f:
            f.write(source)
        cmd = [sys.executable, "-I", "-B", path]
        if network_isolated():
            cmd = [shutil.which("unshare") or "unshare", "-rn", *cmd]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_limiter(limits))
        try:
            _, err = proc.communicate(timeout=limits.timeout_s)
            status: Literal["passed", "failed", "timeout"] = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, err = proc.communicate()
            status = "timeout"
        seconds = time.perf_counter() - t0
    tail = err.decode("utf-8", "replace")[-600:]
    return Outcome(status=status, returncode=proc.returncode, seconds=round(seconds, 3), stderr=tail)
