"""Every MCP request answered, and the requests in flight bounded: the real stdio server as a subprocess (no model
loads: each request here is refused or answered before any model runs), plus the guard's units."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_mageagent.guard import request_id
from mcp_mageagent.server import build_server
from orchestration.patterns.engine import Engine
from orchestration.models.testing import ScriptedBackend, fake_settings

ROOT = Path(__file__).parents[1]


def nested(depth: int, leaf: Any, key: str = "a") -> Any:
    for _ in range(depth):
        leaf = {key: leaf}
    return leaf


class StdioServer:
    """``python -m mcp_mageagent`` on the tiny profile, spoken to line by line."""

    def __init__(self, tmp_path: Path) -> None:
        env = {**os.environ, "MAGEAGENT_PROFILE": "tiny", "MAGEAGENT_LOG_FILE": str(tmp_path / "server.log")}
        self.proc = subprocess.Popen([sys.executable, "-m", "mcp_mageagent"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""

    def send(self, message: dict[str, Any] | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 20) -> dict[str, Any] | None:
        """The next message, or None when none came within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def initialize(self) -> None:
        self.send({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        reply = self.receive(60)
        assert reply is not None and reply["id"] == "init", reply
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def stdio(tmp_path: Path):  # noqa: ANN201
    server = StdioServer(tmp_path)
    try:
        server.initialize()
        yield server
    finally:
        server.close()


def test_requests_the_sdk_cannot_parse_get_an_error_naming_their_id(stdio: StdioServer) -> None:
    call = {"jsonrpc": "2.0", "method": "tools/call"}
    surrogate = ('{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "mage_primary", '
                 '"arguments": {"prompt": "cut in half: \\ud83d"}}}')
    deep_schema = {**call, "id": 2, "params": {"name": "mage_tools", "arguments": {
        "prompt": "x", "tools": [{"name": "t", "parameters": nested(250, {"type": "object"}, "properties")}]}}}
    deep_meta = {"jsonrpc": "2.0", "id": "three", "method": "tools/list", "params": {"_meta": nested(300, {})}}
    # deep enough to pass the SDK's parser, deeper than either face accepts
    mid_schema = {**call, "id": 4, "params": {"name": "mage_tools", "arguments": {
        "prompt": "x", "tools": [{"name": "t", "parameters": nested(100, {"type": "object"}, "properties")}]}}}
    very_deep = '{"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": ' + "[" * 5000 + "]" * 5000 + "}"
    for message in (surrogate, deep_schema, deep_meta, mid_schema, very_deep):
        stdio.send(message)
    replies = [stdio.receive() for _ in range(5)]
    assert [r and r.get("id") for r in replies] == [1, 2, "three", 4, 5], replies
    for r in replies:
        assert r is not None and r["error"]["code"] in (-32700, -32600)
        assert "\n" not in r["error"]["message"]
    assert "surrogate" in replies[0]["error"]["message"]
    assert all("nests deeper" in r["error"]["message"] for r in replies[1:] if r)
    stdio.send({"jsonrpc": "2.0", "method": "notifications/progress", "params": nested(300, {})})  # no id: no answer
    stdio.send("this is not JSON")  # JSON-RPC: a parse error with no id is answered with id null
    parse_error = stdio.receive()
    assert parse_error is not None and parse_error["id"] is None and parse_error["error"]["code"] == -32700
    stdio.send({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})
    after = stdio.receive()
    assert after is not None and after["id"] == 6 and len(after["result"]["tools"]) == 8  # still serving


def test_a_host_that_stops_reading_cannot_grow_the_server(stdio: StdioServer) -> None:
    """600 requests written while nothing reads the answers: the server stops reading instead of queueing them,
    and every request is answered once the host reads again. Each request carries 8 KB of _meta, so few fill the
    pipe; each answer is a 90 KB tools list. With MAX_IN_FLIGHT unbounded the server reads on (143 MB more in
    8 s); before the guard 3,000 unpadded requests took it from 77 to 867 MB. (3,000 tools lists took 2 minutes
    to drain; 600 take 20 s.)"""
    n = 600
    pad = {"_meta": {"pad": "x" * 8000}}
    before = stdio.rss_mb()
    sent = [0]

    def write() -> None:
        for i in range(n):
            stdio.send({"jsonrpc": "2.0", "id": i, "method": "tools/list", "params": pad})
            sent[0] += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(3)
    blocked_at = sent[0]
    time.sleep(5)
    held = stdio.rss_mb()
    assert writer.is_alive() and sent[0] < n, "the server read every request though no answer was read"
    # unbounded it reads on (about 30 requests and 18 MB a second here); bounded the writer stays blocked
    assert sent[0] == blocked_at, (blocked_at, sent[0])
    assert held - before < 120, (before, held)
    ids = set()
    while len(ids) < n:
        reply = stdio.receive(60)
        assert reply is not None, f"{len(ids)} of {n} answered"
        ids.add(reply["id"])
    writer.join(10)
    assert ids == set(range(n))


def test_the_request_id_of_a_message_too_deep_to_parse() -> None:
    text = '{"jsonrpc": "2.0", "params": ' + "[" * 20000 + "]" * 20000 + ', "id": "x\\"y", "method": "m"}'
    assert request_id(text) == (True, 'x"y')
    assert request_id('{"jsonrpc": "2.0", "method": "m", "params": ' + "[" * 20000) == (False, None)  # cut off
    assert request_id('{"jsonrpc": "2.0", "id": 3, "method": "m", "params": {"a": "\\u12"}}') == (True, 3)
    assert request_id('{"jsonrpc": "2.0", "method": "note"}') == (False, None)  # a notification
    assert request_id("not json") == (False, None)



@pytest.mark.anyio
@pytest.mark.parametrize(("args", "field"), [({"prompt": "x", "temperature": 5}, "temperature"),
                                             ({"prompt": ""}, "prompt"), ({}, "prompt"),
                                             ({"prompt": "x", "tools": [{"name": "a b"}]}, "tools.0.name")])
async def test_invalid_tool_input_is_one_line_naming_the_field(args: dict[str, Any], field: str) -> None:
    settings = fake_settings()
    async with Client(build_server(settings, Engine(settings, {"mlx": ScriptedBackend()}))) as client:
        result = await client.call_tool("mage_tools", args)
    text = result.content[0].text
    assert result.is_error and text.startswith(f"invalid arguments: {field}: "), text
    assert "\n" not in text and "errors.pydantic.dev" not in text and "input_value" not in text


@pytest.mark.anyio
async def test_the_prompt_size_cap_holds_on_mcp_before_any_model_runs() -> None:
    settings = fake_settings()
    fake = ScriptedBackend()
    async with Client(build_server(settings, Engine(settings, {"mlx": fake}))) as client:
        big = await client.call_tool("mage_primary", {"prompt": "Summarize.", "context": "x" * 400_000})
        with anyio.fail_after(10):
            fake.enqueue("fine", model=settings.roles["primary"].model)
            small = await client.call_tool("mage_primary", {"prompt": "Summarize.", "context": "x" * 1000})
    assert big.is_error and "400010 characters" in big.content[0].text and "400000" in big.content[0].text
    assert not small.is_error
    assert len(fake.history) == 1  # the refused call reached no model (nor its tokenizer)


@pytest.mark.parametrize("log_file", ["/proc/no/such/place/m.log", "/dev/null/m.log"])
def test_a_log_file_that_cannot_be_written_is_one_line(log_file: str) -> None:
    p = subprocess.run([sys.executable, "-m", "mcp_mageagent"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env={**os.environ, "MAGEAGENT_PROFILE": "tiny",
                                                      "MAGEAGENT_LOG_FILE": log_file})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith(f"mcp-mageagent: log_file {log_file}: cannot be written (") and \
        p.stderr.count("\n") == 1, p.stderr


def test_verify_execute_without_a_sandbox_is_refused_at_start() -> None:
    """Not quietly turned into the model's opinion on every call: the server does not start, and says why."""
    env = {**os.environ, "MAGEAGENT_PROFILE": "tiny", "MAGEAGENT_VERIFY": "execute",
           "MAGEAGENT_SANDBOX": "sandbox-exec" if sys.platform == "linux" else "bwrap"}
    p = subprocess.run([sys.executable, "-m", "mcp_mageagent"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=env)
    assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("mcp-mageagent: verify = execute, but no sandbox (")
    cli = subprocess.run([sys.executable, "-m", "orchestration.faces.cli", "run", "validated", "hi"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=env)
    assert cli.returncode == 2 and "verify = execute, but no sandbox" in cli.stderr
    doctor = subprocess.run([sys.executable, "-m", "orchestration.faces.cli", "doctor", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=env)
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "verify")
    assert doctor.returncode == 1 and not check["ok"] and "no sandbox" in check["detail"] and check["fix"]


@pytest.mark.parametrize(("value", "code", "fragment"), [
    ('"cut \\ud83d"', -32700, "lone UTF-16 surrogate"), ('"\\udc00 alone"', -32700, "lone UTF-16 surrogate"),
    ('"bad \\u12"', -32700, "not valid JSON: Invalid \\uXXXX escape"), ("[" * 300 + "]" * 300, -32600, "nests deeper"),
    ("[" * 5000 + "]" * 5000, -32600, "nests deeper"), ('{"a": }', -32700, "not valid JSON: Expecting value")])
def test_the_refusal_says_what_is_wrong(value: str, code: int, fragment: str) -> None:
    from mcp_types import jsonrpc_message_adapter

    from mcp_mageagent.guard import _why

    line = '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"v": ' + value + "}}"
    with pytest.raises(Exception) as e:
        jsonrpc_message_adapter.validate_json(line, by_name=False)
    got_code, message, raw = _why(e.value)
    assert (got_code, raw) == (code, line) and fragment in message, message
    assert request_id(raw) == (True, 7)  # read up to the broken part


@pytest.mark.anyio
async def test_a_crash_inside_a_tool_is_not_called_invalid_arguments() -> None:
    from orchestration.core.types import PatternRequest

    settings = fake_settings()
    engine = Engine(settings, {"mlx": ScriptedBackend()})

    async def crash(*_: Any, **__: Any) -> None:
        PatternRequest(prompt="")  # a pydantic ValidationError from inside the engine: a bug, not the caller's

    engine.run = crash  # type: ignore[method-assign]
    async with Client(build_server(settings, engine)) as client:
        result = await client.call_tool("mage_primary", {"prompt": "x"})
    assert result.is_error and result.content[0].text == "Error executing tool mage_primary"


def test_the_mcp_face_borrows_nothing_from_the_http_face() -> None:
    """What both faces need (API key, loopback, Host/Origin, Bearer) is shared, in orchestration/faces/access.py."""
    import ast

    for path in (ROOT / "mcp_mageagent").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.endswith("http_api") for n in names), (path.name, ast.unparse(node))


def test_a_line_past_the_body_limit_is_dropped_not_held(tmp_path: Path) -> None:
    """One limit for a request on every face: a longer line is read to its end, never held, and answered."""
    env = {**os.environ, "MAGEAGENT_PROFILE": "tiny", "MAGEAGENT_HTTP__MAX_BODY_BYTES": str(1 << 20)}
    server = StdioServer(tmp_path)
    server.proc.kill()
    server.proc.wait()
    server.proc = subprocess.Popen([sys.executable, "-m", "mcp_mageagent"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        server.initialize()
        before = server.rss_mb()
        big = {"jsonrpc": "2.0", "id": "big", "method": "tools/call", "params": {
            "name": "mage_primary", "arguments": {"prompt": "x" * (64 << 20)}}}
        server.send(big)
        reply = server.receive(60)
        assert reply is not None and reply["id"] == "big" and reply["error"]["code"] == -32600, reply
        assert "this server reads at most 1048576" in reply["error"]["message"]
        assert server.rss_mb() - before < 40  # 64 MB went by, never held
        server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        after = server.receive()
        assert after is not None and after["id"] == 2 and "result" in after
    finally:
        server.close()


def test_bounded_lines_unit() -> None:
    import io

    from mcp_mageagent.guard import BoundedLines

    lines = BoundedLines(io.BytesIO(b'{"a": 1}\n' + b'{"id": 9, "method": "m", "params": "' + b"y" * 100 + b'"}\n'
                                    + b"tail"), limit=50)
    assert lines.readline() == '{"a": 1}\n'
    stand_in = json.loads(lines.readline())
    assert stand_in == {"jsonrpc": "2.0", "id": 9, "method": "mageagent/oversized",
                        "params": {"bytes": 139, "limit": 50}}
    assert lines.readline() == "tail" and lines.readline() is None
