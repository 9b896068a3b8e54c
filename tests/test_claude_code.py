"""A third-party client: Claude Code's own CLI (npm, pinned in tests/inspector) adds the server and checks its health.

`claude mcp list` and `claude mcp get` start the server, do the MCP handshake and list its tools; they need no
login and no network. HOME is a temporary directory, so the user's own Claude configuration is never read or
changed. The tiny profile: listing tools loads no model, and nothing slow could load if it did.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.settings import load_settings
from orchestration.models.testing import free_port

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


def claude(home: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run ``claude ARGS`` with HOME in the temporary directory (and ``env`` added); its stdout."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CLAUDE_", "ANTHROPIC_", "MAGEAGENT_")) and k != "MCP_TIMEOUT"}
    base.update(HOME=str(home / "home"), DISABLE_TELEMETRY="1", DISABLE_AUTOUPDATER="1",
                CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", **(env or {}))
    env = base
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


# -- Claude Code calls the tools: its model is a scripted stand-in for the Messages API on 127.0.0.1 -----------
TOOL = "mcp__mageagent__mage_hybrid"
FINAL = "DONE: the tool answered."


class MessagesStandIn:
    """A scripted Messages API on 127.0.0.1: while no tool result has come back it answers with a ``tool_use`` of
    ``TOOL`` (``arguments``), then with ``FINAL``; streamed as server-sent events when asked. Every request body
    is kept in ``requests``."""

    def __init__(self, arguments: dict[str, Any]) -> None:
        self.arguments = arguments
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> MessagesStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                standin.requests.append({"path": self.path, "body": body})
                if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                    return self._send(b'{"input_tokens": 10}', "application/json")
                blocks, stop = standin.answer(body)
                message = {"id": f"msg_{len(standin.requests)}", "type": "message", "role": "assistant",
                           "model": body.get("model", "stand-in"), "content": blocks, "stop_reason": stop,
                           "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}
                if body.get("stream"):
                    self._send(_sse(message), "text/event-stream")
                else:
                    self._send(json.dumps(message).encode(), "application/json")

            def _send(self, data: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if tool_results(body):
            return [{"type": "text", "text": FINAL}], "end_turn"
        if TOOL in {t.get("name") for t in body.get("tools", [])}:
            return [{"type": "tool_use", "id": "toolu_01", "name": TOOL, "input": self.arguments}], "tool_use"
        return [{"type": "text", "text": "ok"}], "end_turn"

    def model_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].startswith("/v1/messages")
                and "count_tokens" not in r["path"]]


def _sse(message: dict[str, Any]) -> bytes:
    """The streamed form of a whole message: start, each block's start/delta/stop, the stop reason, stop."""
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {**message, "content": [],
                                                                          "stop_reason": None}}]
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
        else:
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [{"type": "content_block_start", "index": i, "content_block": start},
                   {"type": "content_block_delta", "index": i, "delta": delta},
                   {"type": "content_block_stop", "index": i}]
    events += [{"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 5}}, {"type": "message_stop"}]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for m in body.get("messages", []) if isinstance(m.get("content"), list) for b in m["content"]
            if b.get("type") == "tool_result"]


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


# The stdio server over the scripted fake, answering by shape: words (FAKE_WORDS of them, FAKE_DELAY s apart)
# for an answer, an empty call list for a schema.
FAKE_SERVER = r"""
import os
from orchestration.patterns.engine import Engine
from orchestration.core.settings import load_settings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend
from mcp_mageagent.server import build_server

class ByShape(ScriptedBackend):
    async def stream(self, request, on_chunk=None):
        c = request.constraint
        text = (c.options[0] + ": fine" if c.options else "[]") if c is not None else " ".join(
            ["word"] * int(os.environ["FAKE_WORDS"]))
        self.enqueue(text, delay=float(os.environ["FAKE_DELAY"]) if c is None else 0.0)
        return await super().stream(request, on_chunk)

settings = load_settings(env={}, roles={r: {"model": m} for r, m in FAKE_MODELS.items()}, verify="model")
build_server(settings, Engine(settings, {"mlx": ByShape()})).run("stdio")
"""


def claude_calls(home: Path, standin: MessagesStandIn, server: list[str], server_env: dict[str, str],
                 timeout: float = 240, **env: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``claude -p`` with the stand-in as its model and the server as its only MCP server (its stdin and stdout
    recorded); Claude Code's JSON output and the server's wire, both ways, in order of arrival per side."""
    wire = home / "wire"
    wire.mkdir(exist_ok=True)
    command = " ".join(shlex.quote(a) for a in server)
    config = home / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"mageagent": {
        "command": "/bin/sh", "args": ["-c", f"tee {wire / 'in.jsonl'} | {command} | tee {wire / 'out.jsonl'}"],
        "env": server_env}}}))
    out = claude(home, "-p", "Explain src/app.py with the mageagent hybrid tool.", "--mcp-config", str(config),
                 "--strict-mcp-config", "--allowedTools", TOOL, "--output-format", "json", timeout=timeout,
                 env={"ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": "sk-stand-in",
                      "ENABLE_TOOL_SEARCH": "false", "CLAUDE_CODE_MCP_STARTUP_WAIT_MS": "60000", **env})
    messages = [json.loads(line) for name in ("in.jsonl", "out.jsonl")
                for line in (wire / name).read_text().splitlines() if line.strip()]
    return json.loads(out), messages


@pytest.mark.real_model
def test_claude_code_calls_mage_hybrid_and_hands_its_model_the_answer_and_the_calls(home: Path) -> None:
    """The tiny profile: Claude Code (2.1.332, print mode) calls mage_hybrid for its model and sends the result
    back in its next request. Pinned here: it speaks 2026-07-28 over stdio (server/discover, a per-request
    envelope), does not declare the tasks extension in print mode (a plain call with progress), and shows its
    model each tool's name, description and input schema only, and the structuredContent JSON as the result."""
    args = {"prompt": "Read the file src/app.py and explain it", "max_tokens": 24}
    env = {"MAGEAGENT_PROFILE": "tiny", "MAGEAGENT_CACHE_DIR": str(load_settings(env={}).cache_dir),
           "MAGEAGENT_TASKS__PATTERNS": "hybrid"}  # offered as a task to a client that declares the extension
    t0 = time.perf_counter()
    with MessagesStandIn(args) as standin:
        out, wire = claude_calls(home, standin, [str(SERVER)], env)
    elapsed = time.perf_counter() - t0
    assert out["result"] == FINAL and not out["is_error"], out
    first, *rest = standin.model_requests()
    assert rest, "Claude Code never came back to its model with the tool's result"
    # what Claude Code showed its model of our tools
    ours = [t for t in first["tools"] if t["name"].startswith("mcp__mageagent__")]
    assert len(ours) == 8 and all(set(t) == {"name", "description", "input_schema"} for t in ours)
    tools_chars = sum(len(json.dumps(t)) for t in ours)
    # what it passed back: the result of the call its model asked for, with the answer and the calls
    (block,) = [b for b in tool_results(rest[-1]) if b["tool_use_id"] == "toolu_01"]
    assert not block.get("is_error"), result_text(block)
    shown = json.loads(result_text(block))  # the structuredContent JSON, nothing else
    assert shown["pattern"] == "hybrid" and shown["text"].strip()
    assert [(c["tool"], c["arguments"].get("file_path")) for c in shown["tool_calls"]] == [("Read", "src/app.py")]
    result_chars = len(result_text(block))
    # the wire: the 2026-07-28 era, no tasks declared, progress while the call ran
    assert wire[0]["method"] == "server/discover"
    assert wire[0]["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    discovered = next(m["result"] for m in wire if m.get("id") == wire[0]["id"] and "result" in m)
    assert "io.modelcontextprotocol/tasks" in discovered["capabilities"]["extensions"]  # offered, not taken up
    (call,) = [m for m in wire if m.get("method") == "tools/call"]
    declared = call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"].get("extensions") or {}
    assert "io.modelcontextprotocol/tasks" not in declared
    assert not any(m.get("method", "").startswith("tasks/") for m in wire)
    assert any(m.get("method") == "notifications/progress" for m in wire)
    (answer,) = [m for m in wire if m.get("id") == call["id"] and "result" in m]
    assert "resultType" in answer["result"] and answer["result"]["resultType"] == "complete"
    assert elapsed < 180
    # The context a host pays (printed with -s; README's host section): 8 tools' definitions, one result.
    print(f"\nClaude Code: our 8 tools {tools_chars} chars of {sum(len(json.dumps(t)) for t in first['tools'])}; "
          f"a hybrid result {result_chars} chars; {elapsed:.1f}s")
    assert tools_chars < 8_500, tools_chars  # today's figure is 8,246: no growth unnoticed
    assert result_chars < 6_000, result_chars


SILENT_SERVER = r"""
import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer(name="silent")

@server.tool(name="mage_hybrid")
async def mage_hybrid(prompt: str) -> str:
    await anyio.sleep(35)  # no progress
    return "late"

server.run("stdio")
"""


def test_progress_keeps_a_long_call_alive_past_claude_codes_idle_limit(home: Path) -> None:
    """Claude Code aborts a call that sends neither a response nor progress for its idle limit, checked every
    30 s. With the limit at 2 s, a 34 s call (the fake writing 680 words, 20 a second) that reports progress
    every second gets through and its result reaches the model; beside it, the same wait from a server that
    stays silent is aborted (the control: the limit is in force)."""
    def run(name: str, server: str, server_env: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                          list[dict[str, Any]]]:
        sub = home / name
        (sub / "home").mkdir(parents=True)
        (sub / "project").mkdir()
        with MessagesStandIn({"prompt": "Read the file src/app.py and explain it"}) as standin:
            out, wire = claude_calls(sub, standin, [sys.executable, "-c", server],
                                     {"PATH": os.environ["PATH"], **server_env},
                                     CLAUDE_CODE_MCP_TOOL_IDLE_TIMEOUT="2000")
        return out, wire, tool_results(standin.model_requests()[-1])

    with ThreadPoolExecutor(2) as pool:  # side by side: one 30 s tick for both
        talking = pool.submit(run, "talking", FAKE_SERVER, {"FAKE_WORDS": "680", "FAKE_DELAY": "0.05"})
        silent = pool.submit(run, "silent", SILENT_SERVER, {})
        (out, wire, (block,)), (_, _, (aborted,)) = talking.result(), silent.result()
    assert out["result"] == FINAL, out
    assert not block.get("is_error"), result_text(block)
    assert json.loads(result_text(block))["text"].count("word") == 680
    assert sum(m.get("method") == "notifications/progress" for m in wire) >= 30
    assert aborted.get("is_error") and "sent no response or progress" in result_text(aborted), aborted
