"""Run untrusted Python (model-written code) in an isolated, limited process; never ``exec`` it in this one.

Kinds, best first:

- ``bwrap`` (Linux, bubblewrap): new PID, network, IPC, UTS (and user, when we are not root) namespaces, so
  no network and no other process in sight; a root made of read-only binds of the system directories and the
  interpreter only (no home, no repository, no ``/etc`` beyond the loader's cache); a private, size-capped
  tmpfs work dir and ``/tmp``; the candidate runs as a uid of its own (no account's) when we are root; limits on CPU seconds,
  address space, processes, file size, open files, core dumps. At the wall-clock limit the whole namespace is
  killed: bwrap's PID 1 goes and the kernel kills everything left, ``setsid`` children included.
  Inside, no new namespace and no mount: a seccomp filter (``--seccomp``, x86-64 and arm64) refuses
  ``unshare``, ``setns``, ``clone`` with a namespace flag, ``clone3`` (ENOSYS: libc falls back to ``clone``)
  and the mount calls, so a candidate cannot make a user namespace, gain capabilities there and mount a
  tmpfs past ``disk_mb``; bwrap's ``--disable-userns`` is added where it applies (not as root).
  ``memory_mb`` and ``processes`` hold for the whole sandbox: in a cgroup v2 child with ``memory.max`` and
  ``pids.max`` where the server's cgroup (or its parent) delegates those controllers to us; otherwise by
  ``RLIMIT_NPROC`` times a per-process address space sized so the product stays within ``memory_mb``
  (``memory_mb // n`` each for ``n = min(processes, memory_mb // 128)`` processes). ``cap()`` says which.
- ``sandbox-exec`` (macOS): a deny-default Seatbelt profile (no network; reads limited to the system and the
  interpreter; writes to the work dir only) plus the same limits. Written from Apple's profile language, not
  exercised by this project's tests (they run on Linux).
- ``weak``: a plain subprocess with the limits, an empty environment, a temp work dir and its own session.
  It can read the user's files and reach the network, and a ``setsid`` child escapes the kill. Used only
  when the settings ask for it (``sandbox = "weak"``).

Output is read with a cap: a program that writes more than ``max_output_bytes`` to stdout or stderr is
killed and reported. Nothing waits without a deadline.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ConfigError

__all__ = ["Limits", "SandboxResult", "SandboxKind", "SandboxMode", "Availability", "Cap", "availability", "cap",
           "resolve", "run_python", "seccomp_filter"]

log = logging.getLogger(__name__)

SandboxKind = Literal["bwrap", "sandbox-exec", "weak"]
SandboxMode = Literal["auto", "bwrap", "sandbox-exec", "weak"]
KilledReason = Literal["timeout", "output_limit", "cpu_limit", "signal"]

_NOBODY = 65534
_WORK = "/sandbox"  # the work dir inside bwrap
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_GRACE_S = 0.3  # weak mode: how long to drain pipes a leftover child keeps open after the program exited


class Limits(BaseModel):
    """What one program may use."""

    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(10.0, gt=0, le=3600, description="wall clock, start-up included")
    memory_mb: int = Field(1024, ge=64, description="memory of the whole sandbox, every process together")
    file_mb: int = Field(16, ge=1, description="largest file it may write")
    disk_mb: int = Field(64, ge=1, description="the work dir and /tmp, each (bwrap: tmpfs size)")
    processes: int = Field(64, ge=2, description="processes and threads (bwrap only: weak counts per user)")
    open_files: int = Field(64, ge=16)
    max_output_bytes: int = Field(1_000_000, ge=1024, description="stdout and stderr, each")


class SandboxResult(BaseModel):
    """How one program ended. ``exit_status`` is negative for a signal, None if it never exited."""

    kind: SandboxKind
    exit_status: int | None
    stdout: str = ""
    stderr: str = ""
    output_truncated: bool = False
    timed_out: bool = False
    killed_reason: KilledReason | None = None
    seconds: float
    channel: str | None = Field(None, description="what the program wrote to its result descriptor (``channel``)")

    @property
    def passed(self) -> bool:
        return self.exit_status == 0 and self.killed_reason is None

    @property
    def status(self) -> Literal["passed", "failed", "timeout"]:
        return "timeout" if self.timed_out else "passed" if self.passed else "failed"


class Availability(BaseModel):
    kind: SandboxKind
    ok: bool
    reason: str = ""


# -- the interpreter and the limits ------------------------------------------------------------------------
def _interpreter() -> tuple[str, list[str]]:
    """The base interpreter (not a venv's: candidates get the standard library) and the trees it needs."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    trees = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    if not any(exe.startswith(t + os.sep) for t in trees):
        trees.add(os.path.dirname(exe))
    return exe, sorted(trees)


_MIN_PROCESS_MB = 128  # the least address space one process gets when the total is split by rlimits


class Cap(BaseModel):
    """How ``memory_mb`` and ``processes`` hold for the whole sandbox: a cgroup, or rlimits whose product does."""

    how: Literal["cgroup", "rlimits"]
    processes: int
    process_memory_mb: int
    cgroup_parent: str | None = None


def cap(limits: Limits, parent: str | None = None) -> Cap:
    """The whole-sandbox cap for ``limits`` here (``parent``: a delegating cgroup v2 dir, found if not given)."""
    parent = parent if parent is not None else _cgroup_parent()
    if parent:
        return Cap(how="cgroup", processes=limits.processes, process_memory_mb=limits.memory_mb,
                   cgroup_parent=parent)
    n = max(2, min(limits.processes, limits.memory_mb // _MIN_PROCESS_MB))
    return Cap(how="rlimits", processes=n, process_memory_mb=limits.memory_mb // n)


def _rlimits(limits: Limits, *, nproc: bool, budget: Cap | None = None) -> list[tuple[str, int]]:
    cpu = math.ceil(limits.timeout_s) + 1
    per = budget.process_memory_mb if budget else limits.memory_mb
    out = [("RLIMIT_CPU", cpu), ("RLIMIT_AS", per << 20), ("RLIMIT_FSIZE", limits.file_mb << 20),
           ("RLIMIT_NOFILE", limits.open_files), ("RLIMIT_CORE", 0)]
    if nproc:  # per user outside a namespace: a weak-mode limit would count every process the user runs
        out.append(("RLIMIT_NPROC", budget.processes if budget else limits.processes))
    return out


# As root, each run drops to a uid of its own: RLIMIT_NPROC counts every process of a uid on the host, so runs
# sharing nobody's uid shared one process budget, and concurrent runs failed to start their worker (EAGAIN,
# scored as the candidate's failure). These ids belong to no account: 2^30 + (pid mod 2^16) * 256 + a counter.
_RUN_UIDS = itertools.count()


def _run_uid() -> int:
    return (1 << 30) + ((os.getpid() & 0xFFFF) << 8) + (next(_RUN_UIDS) & 0xFF)


def _launcher(limits: Limits, exe: str, budget: Cap) -> str:
    """Run first inside bwrap: set the limits, drop root (NPROC binds no uid-0 process) to this run's own uid
    (``_run_uid``), exec the program."""
    uid = _run_uid()
    return ("import os, resource\n"
            f"for name, value in {_rlimits(limits, nproc=True, budget=budget)!r}:\n"
            "    resource.setrlimit(getattr(resource, name), (value, value))\n"
            "if os.getuid() == 0:\n"
            f"    os.setgroups([]); os.setresgid({_NOBODY}, {_NOBODY}, {_NOBODY}); "
            f"os.setresuid({uid}, {uid}, {uid})\n"
            f"os.execv({exe!r}, [{exe!r}, '-I', '-B', 'candidate.py'])\n")


def _preexec(limits: Limits):  # noqa: ANN202 - a preexec_fn for the weak and macOS kinds
    pairs = _rlimits(limits, nproc=False)

    def apply() -> None:
        import resource

        for name, value in pairs:
            resource.setrlimit(getattr(resource, name), (value, value))

    return apply


# -- one cap for the whole sandbox: a cgroup v2 child where we are given one --------------------------------
def _cgroup_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (root / "cgroup.controllers").is_file():
            return root
    return None


@functools.lru_cache(maxsize=1)
def _cgroup_parent() -> str | None:
    """A cgroup v2 dir we may make children in, with memory and pids delegated to them: our own cgroup or its
    parent (systemd ``Delegate=yes``, or root on a cgroup v2 host). None where the host gives no such thing."""
    if not sys.platform.startswith("linux") or (root := _cgroup_root()) is None:
        return None
    try:
        own = next(line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    here = root / own.lstrip("/")
    for d in (here, here.parent):
        try:
            enabled = (d / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        # Moving bwrap in needs write access to the common ancestor's cgroup.procs: ``d`` itself.
        if {"memory", "pids"} <= set(enabled) and os.access(d, os.W_OK) and d.is_relative_to(root) \
                and os.access(d / "cgroup.procs", os.W_OK):
            return str(d)
    return None


def _make_cgroup(parent: str, limits: Limits) -> Path | None:
    """A fresh child of ``parent`` holding ``memory.max`` (swap 0) and ``pids.max``; None if it cannot be made."""
    path = Path(parent, f"mageagent-sandbox-{os.getpid()}-{time.monotonic_ns()}")
    try:
        path.mkdir()
        (path / "memory.max").write_text(str(limits.memory_mb << 20))
        (path / "pids.max").write_text(str(limits.processes + 2))  # + bwrap and its reaper
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
    except OSError as e:
        log.warning("cannot make a sandbox cgroup in %s (%s): per-process limits only for this run", parent, e)
        _remove_cgroup(path)
        return None
    return path


def _remove_cgroup(path: Path) -> None:
    end = time.monotonic() + 2
    while path.exists():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > end:
                log.warning("sandbox cgroup %s still busy; left in place", path)
                return
            time.sleep(0.02)


def _enter_cgroup(path: Path):  # noqa: ANN202 - a preexec_fn: bwrap and everything it starts go in
    procs = str(path / "cgroup.procs")

    def enter() -> None:
        with open(procs, "w") as f:
            f.write("0")

    return enter


# -- no namespaces and no mounts inside: a seccomp filter for bwrap's --seccomp -------------------------------
# Classic BPF over seccomp_data (nr at 0, arch at 4, args[0]'s low word at 16 on little-endian). No maintained
# Python library writes these without libseccomp's C library, hence these few lines.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_SYSCALLS = {  # name: (x86-64, arm64); the new mount API is numbered the same on both
    "clone": (56, 220), "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "clone3": (435, 435), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442),
}
_CLONE_NEW = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _ENOSYS = 1, 38


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The BPF program (``struct sock_filter[]``) bwrap loads with ``--seccomp``; None on other architectures."""
    import platform
    import struct

    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH or sys.byteorder != "little":
        return None
    col = 0 if machine == "x86_64" else 1
    nr = {name: nums[col] for name, nums in _SYSCALLS.items()}
    # The checks on nr, each a jump to one of four endings placed after them: (opcode, target, k).
    checks: list[tuple[int, str, int]] = [(0x35, "deny", 0x40000000)] if machine == "x86_64" else []  # x32 ABI
    checks += [(0x15, "deny", n) for name, n in nr.items() if name not in ("clone", "clone3")]
    checks += [(0x15, "enosys", nr["clone3"]), (0x15, "clone", nr["clone"])]
    ends = {"allow": 0, "clone": 1, "deny": 4, "enosys": 5}  # offsets within the endings below
    prog = [(0x20, 0, 0, 4), (0x15, 1, 0, _AUDIT_ARCH[machine]), (0x06, 0, 0, _RET_ERRNO | _EPERM),  # other ABI
            (0x20, 0, 0, 0)]  # A = nr
    for i, (op, target, k) in enumerate(checks):
        prog.append((op, len(checks) - i - 1 + ends[target], 0, k))
    prog += [(0x06, 0, 0, _RET_ALLOW),
             (0x20, 0, 0, 16), (0x45, 1, 0, _CLONE_NEW),  # clone: a namespace flag in args[0] -> deny
             (0x06, 0, 0, _RET_ALLOW),
             (0x06, 0, 0, _RET_ERRNO | _EPERM),
             (0x06, 0, 0, _RET_ERRNO | _ENOSYS)]
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


@functools.lru_cache(maxsize=1)
def _bwrap_disables_userns(bwrap: str) -> bool:
    """Whether this bwrap takes ``--disable-userns`` here (0.8+, with a user namespace of its own): one trial."""
    try:
        got = subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/",
                              "--", "/bin/true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return got.returncode == 0


# -- bubblewrap --------------------------------------------------------------------------------------------
def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _bwrap_argv(bwrap: str, code_fd: int, limits: Limits, budget: Cap | None = None,
                seccomp_fd: int = -1) -> list[str]:
    exe, trees = _interpreter()
    if os.geteuid() == 0:
        # As root, bwrap's --unshare-all would map uid 0 alone into a user namespace, leaving no uid to drop
        # to; the namespaces are named one by one and the launcher drops to nobody with these two caps.
        ns = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
              "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        ns = ["--unshare-all"]
        if _bwrap_disables_userns(bwrap):  # needs the user namespace named (a setuid bwrap does not imply it)
            ns += ["--unshare-user", "--disable-userns"]
    if seccomp_fd >= 0:
        ns += ["--seccomp", str(seccomp_fd)]
    argv = [bwrap, *ns, "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            argv += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            argv += ["--ro-bind", host, host]
    argv += ["--perms", "0755", "--dir", "/etc", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for tree in trees:
        if tree == "/usr" or tree.startswith("/usr/"):
            continue
        for d in _ancestors(tree + "/x"):  # created traversable: a 0700 home above the interpreter stays shut
            argv += ["--perms", "0755", "--dir", d]
        argv += ["--ro-bind", tree, tree]
    size = str(limits.disk_mb << 20)
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
             "--perms", "1777", "--size", size, "--tmpfs", _WORK,
             "--perms", "0444", "--ro-bind-data", str(code_fd), f"{_WORK}/candidate.py",
             "--chdir", _WORK, "--", exe, "-I", "-S", "-B", "-c", _launcher(limits, exe, budget or cap(limits))]
    return argv


def _exit_status(kind: SandboxKind, code: int | None) -> int | None:
    # bwrap reports a child killed by signal N as 128 + N (a program exiting with 129..192 reads the same).
    if kind == "bwrap" and code is not None and 128 < code <= 128 + 64:
        return -(code - 128)
    return code


# -- macOS -------------------------------------------------------------------------------------------------
def _seatbelt_profile(work: str, trees: list[str]) -> str:
    def q(p: str) -> str:
        return '"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"'

    reads = " ".join(f"(subpath {q(t)})" for t in trees)
    return f"""(version 1)
(deny default)
(allow process-fork)
(allow process-exec {reads})
(allow signal (target same-sandbox))
(allow sysctl-read)
(allow file-read-metadata)
(allow file-read* (subpath "/usr/lib") (subpath "/usr/share") (subpath "/System") (subpath "/Library/Apple")
  (subpath "/private/var/db/dyld") (literal "/dev/null") (literal "/dev/urandom") (literal "/dev/random")
  (literal "/private/etc/localtime") {reads} (subpath {q(work)}))
(allow file-write* (subpath {q(work)}) (literal "/dev/null"))
"""


# -- running -----------------------------------------------------------------------------------------------
def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # bwrap's group; its PID 1 dies with it and takes the namespace
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc: subprocess.Popen[bytes], limits: Limits, deadline: float, kind: SandboxKind,
             channel: int = -1) -> tuple[bytes, bytes, bool, KilledReason | None, bytes]:
    """Read stdout, stderr (and the result channel), each up to the cap, until all close or the deadline."""
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    if channel >= 0:
        bufs[channel] = bytearray()
    truncated, reason = False, None
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and reason is None:
            now = time.monotonic()
            if now >= deadline:
                reason = "timeout"
                break
            if kind == "weak" and proc.poll() is not None:  # a leftover child may hold the pipes open
                exited_at = exited_at or now
                if now - exited_at > _GRACE_S:
                    break
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                room = limits.max_output_bytes - len(buf)
                buf += chunk[:room]
                if len(chunk) > room:
                    truncated, reason = True, "output_limit"
                    break
    return (bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), truncated, reason,
            bytes(bufs.get(channel, b"")))


def _data_fd(data: bytes, tmp: str) -> int:
    """A read-only descriptor holding ``data`` and named by no path (a memfd, else an unlinked file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("job")
    else:
        path = os.path.join(tmp, ".job")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(path)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _bwrap_setup(code: str, limits: Limits, tmp: str
                 ) -> tuple[list[str], int, int, Path | None, dict[str, object]]:
    """bwrap's argv and what it is handed: the code's descriptor, the seccomp filter's (-1: none), the job's
    cgroup (None: the rlimits' total instead) and Popen's extra arguments (entering that cgroup)."""
    code_fd = os.memfd_create("candidate") if hasattr(os, "memfd_create") else os.open(
        os.path.join(tmp, "candidate.py"), os.O_RDWR | os.O_CREAT, 0o600)
    os.write(code_fd, code.encode())
    os.lseek(code_fd, 0, os.SEEK_SET)
    kw: dict[str, object] = {}
    cgroup: Path | None = None
    budget = cap(limits)
    if budget.cgroup_parent and (cgroup := _make_cgroup(budget.cgroup_parent, limits)) is not None:
        kw = {"preexec_fn": _enter_cgroup(cgroup)}
    elif budget.how == "cgroup":  # the cgroup could not be made: the rlimits' total instead
        budget = cap(limits, parent="")
    seccomp_fd = -1
    if (bpf := seccomp_filter()) is not None:
        seccomp_fd = _data_fd(bpf, tmp)
    else:
        log.warning("no seccomp filter for %s: the candidate may create namespaces", os.uname().machine)
    argv = _bwrap_argv(shutil.which("bwrap") or "bwrap", code_fd, limits, budget, seccomp_fd)
    return argv, code_fd, seccomp_fd, cgroup, kw


def _end(proc: subprocess.Popen[bytes], read_end: int, cgroup: Path | None) -> None:
    """Kill the program's process group and reap it; close our ends, remove its cgroup."""
    # Also ends what a weak-mode program left in its group. The group id cannot have been reused:
    # a pid stays reserved while it names a live group, and a free one comes back only after pid_max.
    _kill(proc)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process SIGKILL cannot end
        log.error("sandboxed process %d did not die after SIGKILL", proc.pid)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if read_end >= 0:
        os.close(read_end)
    if cgroup is not None:
        _remove_cgroup(cgroup)


def _run(kind: SandboxKind, code: str, limits: Limits, channel: bool = False,
         data: bytes | None = None) -> SandboxResult:
    t0 = time.monotonic()
    deadline = t0 + limits.timeout_s
    with tempfile.TemporaryDirectory(prefix="mageagent-sandbox-") as tmp:
        exe, trees = _interpreter()
        pass_fds: tuple[int, ...] = ()
        code_fd = -1
        kw: dict[str, object] = {}
        env = dict(_ENV)
        read_end = write_end = -1
        if channel:  # a pipe the program alone holds: its number in the environment, the read end ours
            read_end, write_end = os.pipe()
            env["MAGEAGENT_RESULT_FD"] = str(write_end)
        data_fd = -1
        if data is not None:  # input no file in the sandbox holds: only a descriptor the program is handed
            data_fd = _data_fd(data, tmp)
            env["MAGEAGENT_DATA_FD"] = str(data_fd)
        seccomp_fd = -1
        cgroup: Path | None = None
        if kind == "bwrap":
            argv, code_fd, seccomp_fd, cgroup, kw = _bwrap_setup(code, limits, tmp)
            pass_fds, cwd = tuple(fd for fd in (code_fd, seccomp_fd) if fd >= 0), tmp
        else:
            work = os.path.realpath(tmp)
            Path(work, "candidate.py").write_text(code)
            argv = [exe, "-I", "-B", "candidate.py"]
            if kind == "sandbox-exec":
                argv = ["/usr/bin/sandbox-exec", "-p", _seatbelt_profile(work, trees), *argv]
            cwd, kw = work, {"preexec_fn": _preexec(limits)}
        pass_fds += tuple(fd for fd in (write_end, data_fd) if fd >= 0)
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds,
                                    **kw)  # type: ignore[call-overload]
        except BaseException:
            if read_end >= 0:
                os.close(read_end)
            if cgroup is not None:
                _remove_cgroup(cgroup)
            raise
        finally:
            if code_fd >= 0:
                os.close(code_fd)
            for fd in (write_end, data_fd, seccomp_fd):
                if fd >= 0:
                    os.close(fd)
        try:
            out, err, truncated, reason, result = _collect(proc, limits, deadline, kind, read_end)
            if reason is None:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:  # closed its output, kept running
                    reason = "timeout"
        finally:
            _end(proc, read_end, cgroup)
    status = _exit_status(kind, proc.returncode)
    if reason is None and status == -signal.SIGXCPU:
        reason = "cpu_limit"
    elif reason is None and status is not None and status < 0:
        reason = "signal"
    return SandboxResult(kind=kind, exit_status=status, stdout=out.decode("utf-8", "replace"),
                         stderr=err.decode("utf-8", "replace"), output_truncated=truncated,
                         timed_out=reason == "timeout", killed_reason=reason,
                         seconds=round(time.monotonic() - t0, 3),
                         channel=result.decode("utf-8", "replace") if channel else None)


# -- choosing the kind -------------------------------------------------------------------------------------
_USERNS_HINT = ("; unprivileged user namespaces look disabled (sysctl kernel.unprivileged_userns_clone=0, "
                "user.max_user_namespaces=0, or Ubuntu's kernel.apparmor_restrict_unprivileged_userns=1)")


@functools.lru_cache(maxsize=None)
def availability(kind: SandboxKind) -> Availability:
    """Whether ``kind`` can run a program here, found by running one; the reason when it cannot."""
    if kind == "weak":
        return Availability(kind=kind, ok=True)
    if kind == "bwrap":
        if not sys.platform.startswith("linux"):
            return Availability(kind=kind, ok=False, reason="bubblewrap is Linux only")
        if shutil.which("bwrap") is None:
            return Availability(kind=kind, ok=False, reason="bwrap is not installed (Debian/Ubuntu: apt-get "
                                                            "install bubblewrap)")
    if kind == "sandbox-exec" and not os.path.exists("/usr/bin/sandbox-exec"):
        return Availability(kind=kind, ok=False, reason="/usr/bin/sandbox-exec is absent (macOS only)")
    try:
        got = _run(kind, "import json, math, re\nprint('ok')\n", Limits(timeout_s=20))
    except OSError as e:
        return Availability(kind=kind, ok=False, reason=f"{kind} could not start: {e}")
    if got.passed and got.stdout.strip() == "ok":
        return Availability(kind=kind, ok=True)
    why = (got.stderr.strip() or f"exit status {got.exit_status}")[-400:]
    if kind == "bwrap" and any(s in why for s in ("uid map", "user namespace", "Operation not permitted",
                                                  "No permissions to create")):
        why += _USERNS_HINT
    return Availability(kind=kind, ok=False, reason=f"{kind} failed a trial run: {why}")


def resolve(mode: SandboxMode) -> SandboxKind:
    """The kind ``mode`` runs with here; ConfigError (with the reason) when no isolation is available."""
    if mode == "weak":
        _warn_weak()
        return "weak"
    if mode == "auto":
        kind: SandboxKind = "sandbox-exec" if sys.platform == "darwin" else "bwrap"
    else:
        kind = mode
    got = availability(kind)
    if not got.ok:
        raise ConfigError(f"refusing to run model-written code without isolation: {got.reason}. Install "
                          "bubblewrap (Linux) or set sandbox = \"weak\" (MAGEAGENT_SANDBOX=weak) to run it in a "
                          "plain subprocess that can read your files and reach the network")
    return kind


@functools.lru_cache(maxsize=1)
def _warn_weak() -> None:
    log.warning("sandbox = weak: model-written code runs in a plain subprocess (limits only; it can read your "
                "files and reach the network)")


def run_python(code: str, *, limits: Limits | None = None, mode: SandboxMode = "auto",
               channel: bool = False, data: bytes | None = None) -> SandboxResult:
    """Run ``code`` as a Python program (``candidate.py`` in an empty work dir) under the sandbox ``mode``. With
    ``channel`` the program gets a pipe of its own (its descriptor in ``MAGEAGENT_RESULT_FD``) whose contents come
    back as ``channel``: a result its children never hold unless it hands them the descriptor. ``data`` reaches
    it the same way (``MAGEAGENT_DATA_FD``), never as a file its children could read."""
    return _run(resolve(mode), code, limits or Limits(), channel, data)
