"""The sandbox for model-written code: each hostile program is contained and reported, and the next one runs.

The isolation tests need a working bubblewrap (they are skipped, with the reason, where it cannot run: install
``bubblewrap`` and allow user namespaces). Each keeps its limits at 1-3 s.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestration.core.errors import ConfigError
from orchestration.checks.sandbox import Limits, availability, resolve, run_python

BWRAP = availability("bwrap")
needs_bwrap = pytest.mark.skipif(not BWRAP.ok, reason=f"bubblewrap cannot run here: {BWRAP.reason}")
FAST = Limits(timeout_s=2, memory_mb=512, processes=16, max_output_bytes=64 * 1024)


def _next_item_passes() -> None:
    got = run_python("assert sum(range(10)) == 45\nprint('fine')\n", limits=FAST)
    assert got.passed and got.stdout == "fine\n", got


def _alive(token: str) -> list[int]:
    """Host processes whose command line holds ``token`` (zombies have none)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if token.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _gone(token: str, within_s: float = 2.0) -> bool:
    end = time.monotonic() + within_s
    while _alive(token):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


# -- outcomes ------------------------------------------------------------------------------------------------
@needs_bwrap
@pytest.mark.parametrize("source, status, reason", [
    ("assert 1 + 1 == 2\n", "passed", None),
    ("assert 1 + 1 == 3\n", "failed", None),
    ("raise SystemExit(3)\n", "failed", None),
    ("while True:\n    pass\n", "timeout", "timeout"),
    ("x = bytearray(2 * 1024**3)\n", "failed", None),  # over the address-space limit: MemoryError
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "failed", "signal"),
])
def test_outcomes(source, status, reason):
    got = run_python(source, limits=FAST)
    assert (got.status, got.killed_reason, got.kind) == (status, reason, "bwrap"), got
    if source.startswith("raise"):
        assert got.exit_status == 3
    if reason == "signal":
        assert got.exit_status == -11


@needs_bwrap
def test_the_program_sees_no_environment_no_home_and_is_not_root():
    src = ("import os\nassert 'HOME' not in os.environ and not any(k.startswith('MAGEAGENT') for k in os.environ)\n"
           "assert os.getuid() != 0 and os.geteuid() != 0\nassert os.getcwd() == '/sandbox'\n"
           "open('scratch.txt', 'w').write('the work dir is writable')\nprint(sorted(os.listdir('/')))\n")
    got = run_python(src, limits=FAST)
    assert got.passed, got
    top = set(eval(got.stdout))  # noqa: S307 - our own program's repr of a list of names
    assert "home" not in top and "work" not in top and "mnt" not in top


# -- the hostile programs of issue 18 ------------------------------------------------------------------------
@needs_bwrap
def test_files_outside_its_dir_cannot_be_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519").write_text("PRIVATE KEY")
    repo = Path(__file__).resolve().parents[1]
    targets = [str(secret), str(ssh / "id_ed25519"), str(Path.home()), str(Path.home() / ".ssh"),
               str(repo / "README.md"), str(repo / ".git" / "config"), "/etc/shadow", "/etc/passwd"]
    src = ("import os\nfor p in %r:\n    try:\n        if os.path.isdir(p):\n"
           "            print('LISTED', p, sorted(os.listdir(p)))\n        else:\n            open(p).read()\n"
           "            print('READ', p)\n    except OSError as e:\n        print('DENIED', p, type(e).__name__)\n"
           % targets)
    got = run_python(src, limits=FAST)
    assert got.passed, got
    assert not [line for line in got.stdout.splitlines() if line.startswith("READ ")], got.stdout
    # Where the interpreter lives under the home (pyenv), the home shows the path to it and nothing else.
    home = Path.home()
    prefix = Path(sys.base_prefix).resolve()
    allowed = [prefix.relative_to(home).parts[0]] if prefix.is_relative_to(home) else []
    for line in got.stdout.splitlines():
        if line.startswith("LISTED"):
            assert line == f"LISTED {home} {allowed!r}", got.stdout
    assert got.stdout.count("DENIED") == len(targets) - got.stdout.count("LISTED")
    _next_item_passes()


@needs_bwrap
def test_no_network_not_even_the_hosts_loopback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        port = server.getsockname()[1]
        src = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=1)\n"
               "    print('CONNECTED')\n"
               "except OSError as e:\n    print('REFUSED', type(e).__name__)\n"
               "try:\n    socket.getaddrinfo('example.com', 80)\n    print('RESOLVED')\nexcept OSError:\n    pass\n"
               % port)
        got = run_python(src, limits=FAST)
        assert got.passed, got
        assert "REFUSED" in got.stdout and "CONNECTED" not in got.stdout and "RESOLVED" not in got.stdout
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the host
    _next_item_passes()


@needs_bwrap
def test_process_limit_stops_a_fork_loop():
    src = ("import os, sys, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
           "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n"
           "    print('refused after', n, type(e).__name__)\n    sys.exit(0)\nprint('no limit', n)\n")
    got = run_python(src, limits=FAST)
    assert got.passed, got
    assert got.stdout.startswith("refused after"), got.stdout
    assert int(got.stdout.split()[2]) < FAST.processes
    _next_item_passes()


@needs_bwrap
def test_fork_bomb_is_contained_and_leaves_nothing():
    token = uuid.uuid4().hex
    bomb = f"import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass  # {token}"
    src = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', '{bomb}'])\n"
    t0 = time.monotonic()
    got = run_python(src, limits=Limits(timeout_s=2, memory_mb=256, processes=16))
    assert time.monotonic() - t0 < 5
    assert got.timed_out and got.killed_reason == "timeout", got
    assert _gone(token), "fork-bomb processes outlived the run"
    _next_item_passes()


@needs_bwrap
def test_writing_a_gigabyte_is_stopped():
    one_file = "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * 2**20)\n"
    got = run_python(one_file, limits=Limits(timeout_s=3, file_mb=16))
    assert got.status == "failed" and "File too large" in got.stderr, got
    many_files = ("for i in range(80):\n    with open(f'part{i}', 'wb') as f:\n        for _ in range(12):\n"
                  "            f.write(b'x' * 2**20)\n")
    got = run_python(many_files, limits=Limits(timeout_s=3, file_mb=16, disk_mb=64))
    assert got.status == "failed" and "No space left on device" in got.stderr, got
    in_tmp = "import os\nos.chdir('/tmp')\n" + many_files
    got = run_python(in_tmp, limits=Limits(timeout_s=3, file_mb=16, disk_mb=64))
    assert got.status == "failed" and "No space left on device" in got.stderr, got
    _next_item_passes()


@needs_bwrap
def test_sleeping_forever_is_killed_at_the_wall_clock():
    got = run_python("import time\ntime.sleep(10**6)\n", limits=Limits(timeout_s=1))
    assert got.timed_out and got.killed_reason == "timeout" and got.status == "timeout"
    assert 1 <= got.seconds < 2.5
    closed = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(10**6)\n"  # no pipe left to wait on
    got = run_python(closed, limits=Limits(timeout_s=1))
    assert got.timed_out and got.seconds < 2.5
    _next_item_passes()


@needs_bwrap
@pytest.mark.parametrize("parent", ["exits at once", "runs past the timeout"])
def test_a_setsid_child_does_not_outlive_the_program(parent):
    token = uuid.uuid4().hex
    tail = "" if parent == "exits at once" else "time.sleep(10**6)\n"
    src = ("import subprocess, sys, time\n"
           f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)  # {token}'], "
           "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
           "time.sleep(0.3)\nprint('spawned', flush=True)\n" + tail)
    got = run_python(src, limits=Limits(timeout_s=1.5))
    assert "spawned" in got.stdout, got
    assert got.timed_out is (parent != "exits at once")
    assert _gone(token), "the setsid child outlived its program"
    _next_item_passes()


@needs_bwrap
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_hundred_megabytes_of_output_is_cut_at_the_cap(stream):
    src = f"import sys\nfor _ in range(100):\n    sys.{stream}.write('x' * 1_000_000)\n"
    t0 = time.monotonic()
    got = run_python(src, limits=FAST)
    assert time.monotonic() - t0 < 3
    assert got.killed_reason == "output_limit" and got.output_truncated and got.status == "failed", got
    assert len(getattr(got, stream)) == FAST.max_output_bytes
    _next_item_passes()


# -- choosing the kind ---------------------------------------------------------------------------------------
@pytest.fixture
def fresh_probe():
    availability.cache_clear()
    yield
    availability.cache_clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auto means bubblewrap on Linux")
def test_no_isolation_is_refused_with_the_fix(tmp_path, monkeypatch, fresh_probe):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on the PATH
    with pytest.raises(ConfigError, match="bwrap is not installed") as e:
        run_python("print(1)\n")
    assert 'sandbox = "weak"' in str(e.value) and "apt-get install bubblewrap" in str(e.value)
    with pytest.raises(ConfigError):
        resolve("bwrap")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux only")
def test_a_bwrap_that_cannot_start_is_reported_with_why(tmp_path, monkeypatch, fresh_probe):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    got = availability("bwrap")
    assert not got.ok and "setting up uid map" in got.reason and "user namespaces" in got.reason
    with pytest.raises(ConfigError, match="uid map"):
        resolve("auto")


def test_weak_mode_runs_only_when_asked(caplog):
    got = run_python("print('hello')\n", limits=FAST, mode="weak")
    assert got.passed and got.kind == "weak" and got.stdout == "hello\n"
    got = run_python("import time\ntime.sleep(10**6)\n", limits=Limits(timeout_s=1), mode="weak")
    assert got.timed_out and got.seconds < 2.5
    got = run_python("import sys\nsys.stdout.write('x' * 10_000_000)\n", limits=FAST, mode="weak")
    assert got.killed_reason == "output_limit" and len(got.stdout) == FAST.max_output_bytes


@needs_bwrap
def test_auto_picks_bubblewrap_here():
    assert resolve("auto") == "bwrap"
    assert run_python("print(1)\n", limits=FAST).kind == "bwrap"


# -- issue 26: limits a candidate cannot slip -----------------------------------------------------------------
_ESCAPE = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
    print('unshare refused', os.strerror(ctypes.get_errno()))
os.makedirs('/tmp/m', exist_ok=True)
if libc.mount(b'none', b'/tmp/m', b'tmpfs', 0, b'size=1g') != 0:
    print('mount refused', os.strerror(ctypes.get_errno()))
    raise SystemExit(0)
written = 0
try:
    with open('/tmp/m/big', 'wb') as f:
        for _ in range(240):
            f.write(b'x' * 2**20)
            written += 1
except OSError:
    pass
print('wrote MB', written)
'''


@needs_bwrap
def test_no_user_namespace_and_no_mount_inside():
    got = run_python(_ESCAPE, limits=Limits(timeout_s=3, disk_mb=64, file_mb=512))
    assert got.passed, got
    assert "unshare refused" in got.stdout and "mount refused" in got.stdout and "wrote" not in got.stdout, got
    # The command-line tools go through the same calls.
    got = run_python("import subprocess\nr = subprocess.run(['unshare', '-Urm', 'true'], capture_output=True)\n"
                     "print(r.returncode)\n", limits=FAST)
    assert got.passed and got.stdout.strip() != "0", got
    _next_item_passes()


_FORK_MEMORY = r'''
import os, time
kids = 0
for _ in range(4):
    try:
        pid = os.fork()
    except OSError:
        print('fork refused', flush=True)
        break
    if pid == 0:
        try:
            b = bytearray(210 << 20)
            for i in range(0, len(b), 4096):
                b[i] = 1
            print('held', flush=True)
            time.sleep(1)
        except MemoryError:
            print('MemoryError', flush=True)
        os._exit(0)
    kids += 1
for _ in range(kids):
    os.wait()
'''


@needs_bwrap
def test_memory_is_capped_for_the_whole_sandbox_not_each_process():
    got = run_python(_FORK_MEMORY, limits=Limits(timeout_s=4, memory_mb=256))
    held = got.stdout.count("held")
    assert held * 210 <= 256, got  # four children with 210 MB each was the escape
    _next_item_passes()


def test_the_rlimit_total_stays_within_memory_mb():
    from orchestration.checks.sandbox import cap

    for memory, processes in [(64, 64), (256, 16), (512, 16), (1024, 64), (4096, 8)]:
        got = cap(Limits(memory_mb=memory, processes=processes), parent="")
        assert got.how == "rlimits" and got.processes <= max(2, processes)
        assert got.processes * got.process_memory_mb <= memory
    assert cap(Limits(), parent="/sys/fs/cgroup/x").how == "cgroup"


def test_the_cgroup_parent_is_one_that_delegates_memory_and_pids(tmp_path, monkeypatch):
    from orchestration.checks import sandbox

    root = tmp_path / "cg"
    (root / "a" / "b").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "a" / "cgroup.subtree_control").write_text("memory pids\n")
    (root / "a" / "cgroup.procs").write_text("")
    (root / "a" / "b" / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(sandbox, "_cgroup_root", lambda: root)
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "0::/a/b\n" if str(self) == "/proc/self/cgroup"
                        else real(self, *a, **k))
    sandbox._cgroup_parent.cache_clear()
    try:
        assert sandbox._cgroup_parent() == (str(root / "a") if sys.platform.startswith("linux") else None)
        (root / "a" / "cgroup.subtree_control").write_text("memory\n")  # no pids: not a cap
        sandbox._cgroup_parent.cache_clear()
        assert sandbox._cgroup_parent() is None
    finally:
        sandbox._cgroup_parent.cache_clear()


def test_the_seccomp_filter_is_whole_instructions_for_both_architectures():
    from orchestration.checks.sandbox import seccomp_filter

    for machine in ("x86_64", "aarch64"):
        prog = seccomp_filter(machine)
        assert prog is not None and len(prog) % 8 == 0 and len(prog) // 8 < 64
    assert seccomp_filter("riscv64") is None


@needs_bwrap
def test_not_as_root_bwrap_also_disables_user_namespaces_where_it_can(monkeypatch):
    from orchestration.checks import sandbox

    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    argv = sandbox._bwrap_argv("bwrap", 3, FAST, seccomp_fd=4)
    assert argv[argv.index("--seccomp") + 1] == "4"
    if sandbox._bwrap_disables_userns(sandbox.shutil.which("bwrap")):  # bwrap 0.8+ with user namespaces
        assert {"--unshare-all", "--unshare-user", "--disable-userns"} <= set(argv)


@needs_bwrap
def test_concurrent_runs_do_not_share_one_process_budget() -> None:
    """RLIMIT_NPROC counts a uid's processes host-wide: runs that all dropped to nobody shared one budget, and in
    the re-measure's records concurrent runs failed to start their worker (BlockingIOError, EAGAIN), which was
    scored as the candidate's failure. Each run now drops to a uid of its own."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestration.checks.verify import run_tests

    code = "def add(a, b):\n    return a + b\n"
    tests = [("assert add(1, 2) == 3", "host"), ("assert add(0, 0) == 0", "host")]
    with ThreadPoolExecutor(12) as pool:
        runs = list(pool.map(lambda _: run_tests(code, tests, mode="bwrap"), range(24)))
    assert [r.load_error for r in runs if r.load_error] == [] and all(r.all_passed for r in runs)
