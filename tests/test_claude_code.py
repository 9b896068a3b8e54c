"""A third-party client: Claude Code's own CLI (npm, pinned in tests/inspector) adds the server and checks its health.

`claude mcp list` and `claude mcp get` start the server, do the MCP handshake and list its tools; they need no
login and no network. HOME is a temporary directory, so the user's own Claude configuration is never read or
changed. The tiny profile: listing tools loads no model, and nothing slow could load if it did.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.testing import free_port

BIN = Path(__file__).parent / "inspector" / "node_modules" / ".bin" / "claude"
SERVER = Path(sys.executable).parent / "mcp-mageagent"
TINY = {"MAGEAGENT_PROFILE": "tiny"}
CONNECTED = "✔ Connected"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the Claude Code CLI test needs it")
    assert BIN.exists(), "run scripts/bootstrap.sh (it installs tests/inspector with npm ci)"
    assert SERVER.exists(), f"{SERVER} not found: install the project (scripts/bootstrap.sh)"
    (tmp_path / "home").mkdir()
    (tmp_path / "project").mkdir()
    return tmp_path


def claude(home: Path, *args: str, timeout: float = 120) -> str:
    """Run ``claude ARGS`` with HOME in the temporary directory; its stdout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_", "ANTHROPIC_", "MAGEAGENT_")) and k != "MCP_TIMEOUT"}
    env.update(HOME=str(home / "home"), DISABLE_TELEMETRY="1", DISABLE_AUTOUPDATER="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=home / "project")
    assert proc.returncode == 0, f"claude {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout


def server_stderr(command: list[str], env: dict[str, str]) -> str:
    """What the server writes to stderr when started as Claude Code starts it (stdin closed at once)."""
    try:
        p = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                           env={**os.environ, **env})
    except subprocess.TimeoutExpired as e:
        return (e.stderr or b"").decode(errors="replace")[-3000:] if isinstance(e.stderr, bytes) else str(e.stderr)
    return p.stderr[-3000:]


def assert_connected(home: Path, name: str, command: list[str] | None, env: dict[str, str]) -> str:
    listed = claude(home, "mcp", "list")
    line = next((ln for ln in listed.splitlines() if ln.startswith(f"{name}:")), "")
    detail = server_stderr(command, env) if command and CONNECTED not in line else ""
    assert CONNECTED in line, f"claude mcp list:\n{listed}\nserver stderr:\n{detail}"
    got = claude(home, "mcp", "get", name)
    assert "Status: ✔ Connected" in got, f"claude mcp get {name}:\n{got}\nserver stderr:\n{detail}"
    return got


def test_claude_code_connects_to_the_stdio_server(home: Path) -> None:
    added = claude(home, "mcp", "add", "mageagent", "-e", "MAGEAGENT_PROFILE=tiny", "--", str(SERVER))
    assert "Added stdio MCP server mageagent" in added
    t0 = time.perf_counter()
    got = assert_connected(home, "mageagent", [str(SERVER)], TINY)
    assert time.perf_counter() - t0 < 60
    assert "Type: stdio" in got and f"Command: {SERVER}" in got and "MAGEAGENT_PROFILE=tiny" in got


def test_claude_code_connects_with_a_config_file(home: Path) -> None:
    config = home / "mageagent.toml"
    config.write_text(f'profile = "tiny"\nlog_level = "DEBUG"\nlog_file = "{home / "server.log"}"\n')
    claude(home, "mcp", "add", "mageagent", "-e", f"MAGEAGENT_CONFIG={config}", "--", str(SERVER))
    got = assert_connected(home, "mageagent", [str(SERVER)], {"MAGEAGENT_CONFIG": str(config)})
    assert f"MAGEAGENT_CONFIG={config}" in got
    assert (home / "server.log").exists()  # the server Claude Code started read this config: its log file


def test_a_broken_server_fails_the_health_check_and_says_why(home: Path) -> None:
    """The failure path of assert_connected: the server's own words reach the assertion message."""
    missing = home / "missing.toml"
    claude(home, "mcp", "add", "mageagent", "--", str(SERVER), "--config", str(missing))
    with pytest.raises(AssertionError) as e:
        assert_connected(home, "mageagent", [str(SERVER), "--config", str(missing)], {})
    assert "Failed to connect" in str(e.value) and f"config file {missing}: cannot be read" in str(e.value)


def test_claude_code_connects_over_streamable_http(home: Path) -> None:
    port = free_port()
    err = (home / "server.err").open("w")
    proc = subprocess.Popen([str(SERVER), "--transport", "streamable-http", "--port", str(port)],
                            env={**os.environ, **TINY}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, (home / "server.err").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the HTTP server did not listen within 60 s"
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/mcp"
        added = claude(home, "mcp", "add", "--transport", "http", "mageagent", url)
        assert "Added HTTP MCP server mageagent" in added
        listed = claude(home, "mcp", "list")
        assert f"mageagent: {url} (HTTP) - {CONNECTED}" in listed, \
            f"{listed}\nserver stderr:\n{(home / 'server.err').read_text()[-3000:]}"
        assert "Type: http" in claude(home, "mcp", "get", "mageagent")
    finally:
        proc.terminate()
        proc.wait(10)
        err.close()


def test_the_readme_timeout_line_gives_claude_code_a_per_server_limit(home: Path) -> None:
    entry = {"command": str(SERVER), "env": TINY, "timeout": 1800000}  # as the README's add-json line, plus tiny
    assert "Added stdio MCP server mageagent" in claude(home, "mcp", "add-json", "mageagent", json.dumps(entry))
    got = assert_connected(home, "mageagent", [str(SERVER)], TINY)
    assert "Timeout: 1800000ms" in got
