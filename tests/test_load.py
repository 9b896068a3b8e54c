"""Load and fault layer (marker ``load``): the stdio server under 20 concurrent calls, remote backends that die
or never stop, 10,000 fuzzed stdin frames, cancellation on the owner thread, and the start-up error edges.

Everything runs over the scripted fake backend (in a server subprocess where the test is about the real
process), so the layer takes well under a minute. Figures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

pytestmark = [pytest.mark.load]

# The stdio server over the one scripted fake, answering each request by its shape (a verdict or pick for an
# options constraint, an empty call array for a schema, words otherwise) so concurrent calls need no queue order.
SERVER = r"""
import os
from orchestration.patterns.engine import Engine
from orchestration.models.openai_backend import OpenAIBackend
from orchestration.core.settings import load_settings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend
from mcp_mageagent.server import build_server

class ByShape(ScriptedBackend):
    async def stream(self, request, on_chunk=None):
        c = request.constraint
        text = (c.options[0] + ": fine" if c.options else "[]") if c is not None else " ".join(
            ["word"] * int(os.environ.get("FAKE_WORDS", "8")))
        self.enqueue(text, delay=float(os.environ.get("FAKE_DELAY", "0.02")))
        return await super().stream(request, on_chunk)

roles = {r: {"model": m} for r, m in FAKE_MODELS.items()}
backends = {"mlx": ByShape()}
url = os.environ.get("REMOTE_URL")
if url:
    roles["primary"] = {"model": "remote", "backend": "openai", "base_url": url, "retries": 0, "timeout_s": 5}
    backends["openai:" + url] = OpenAIBackend(url, retries=0, timeout_s=5)
settings = load_settings(env={}, roles=roles)
build_server(settings, Engine(settings, backends)).run("stdio")
"""


def params(**env: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-c", SERVER], env={**os.environ, **env})


CALLS = [("mage_primary", "Say hi"), ("mage_validator", "Is 2 prime?"), ("mage_competitor", "Sort a list"),
         ("mage_tools", "Read the file a.py"), ("mage_hybrid", "Read the file a.py and explain it"),
         ("mage_validated", "Implement a stack class"), ("mage_compete", "Write a function to add numbers"),
         ("mage_auto", "Explain recursion"), ("mage_auto", "What is the capital of France?"),
         ("mage_hybrid", "Plan a migration")]


@pytest.mark.anyio
async def test_twenty_concurrent_calls_over_one_stdio_server() -> None:
    latencies: dict[int, float] = {}
    steps: dict[int, int] = {}
    order: list[int] = []
    async with Client(params(FAKE_DELAY="0.05"), mode="legacy") as client:  # a step: 8 tokens, 0.4 s
        await client.list_tools()
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            tool, prompt = CALLS[i % len(CALLS)]
            r = await client.call_tool(tool, {"prompt": prompt, "max_tokens": 16})
            assert not r.is_error, r.content
            latencies[i] = time.perf_counter() - t0
            steps[i] = len(r.structured_content["trace"]["steps"])
            order.append(i)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
        total = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    waits = sorted(latencies.values())
    print(f"\n20 calls: total {total:.2f}s, median {statistics.median(waits):.2f}s, max {max(waits):.2f}s, "
          f"min {min(waits):.2f}s; steps per call {sorted(steps.values())}; completion order {order}; "
          f"peak RSS of a child process {peak_mb:.0f} MB")
    assert len(latencies) == 20
    # Fair, not FIFO: the calls' steps interleave on the event loop, so one-step calls finish long before
    # the four-step ones instead of every call finishing at the end.
    one_step = [latencies[i] for i in latencies if steps[i] == 1]
    long_ones = [latencies[i] for i in latencies if steps[i] >= 3]
    assert one_step and long_ones and statistics.median(one_step) < min(long_ones)
    assert total < 20


class _Remote(BaseHTTPRequestHandler):
    """A local OpenAI-compatible endpoint whose behaviour per request comes from ``modes``."""

    modes: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._send(200, b'{"object": "list", "data": [{"id": "remote"}]}', "application/json")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        mode = self.modes.pop(0) if self.modes else "ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def event(text: str, finish: str | None = None) -> bytes:
            return f"data: {json.dumps({'choices': [{'delta': {'content': text}, 'finish_reason': finish}]})}\n\n".encode()

        try:
            if mode == "ok":
                self.wfile.write(event("fine") + event("", "stop") + b"data: [DONE]\n\n")
            elif mode == "die":  # the server process dies mid-answer: the socket is torn down
                self.wfile.write(event("half") + event(" an"))
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            else:  # "forever": it never stops and ignores max_tokens
                while True:
                    self.wfile.write(event(" more"))
        except OSError:
            pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.anyio
async def test_remote_backend_dying_mid_stream_or_streaming_forever_is_a_clean_error() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Remote)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Remote.modes = ["die", "ok", "forever", "ok"]
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        async with Client(params(REMOTE_URL=url), mode="legacy") as client:
            with anyio.fail_after(30):
                died = await client.call_tool("mage_primary", {"prompt": "hi", "max_tokens": 8})
                after_death = await client.call_tool("mage_primary", {"prompt": "hi", "max_tokens": 8})
                t0 = time.perf_counter()
                endless = await client.call_tool("mage_primary", {"prompt": "hi", "max_tokens": 8})
                cut_after = time.perf_counter() - t0
                after_endless = await client.call_tool("mage_primary", {"prompt": "hi", "max_tokens": 8})
    finally:
        httpd.shutdown()
    text = died.content[0].text
    assert died.is_error and "broke off mid-stream" in text and "Traceback" not in text
    assert endless.is_error and "kept streaming past max_tokens=8" in endless.content[0].text
    print(f"\nendless stream cut after {cut_after:.2f}s")
    for ok in (after_death, after_endless):
        assert not ok.is_error and ok.structured_content["text"] == "fine"


def _fuzz_frames(n: int, rng: random.Random) -> list[bytes]:
    kinds = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))).replace(b"\n", b" "),
        lambda: json.dumps({"jsonrpc": "2.0", "id": rng.randrange(10**6), "method": "tools/call",
                            "params": {"name": "mage_primary"}}).encode()[: rng.randrange(1, 60)],
        lambda: json.dumps({"jsonrpc": "2.0", "id": 10**rng.randrange(30, 400), "method": "ping"}).encode(),
        lambda: json.dumps({"jsonrpc": "2.0", "id": "x" * rng.randrange(1, 5000), "method": "ping"}).encode(),
        lambda: json.dumps({"jsonrpc": "2.0", "id": rng.randrange(10**6), "method": rng.choice(
            ["nope", "tools/nothing", "", "resources/read", "initialize", "tools/call"]),
            "params": rng.choice([None, [], {}, {"name": 5}, {"uri": "mageagent://models/ghost"}, "s"])}).encode(),
        lambda: rng.choice([b"null", b"[]", b"[1,2]", b"{}", b'"s"', b"1e999", b'{"jsonrpc": "1.0"}',
                            b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}',
                            b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', b"\xff\xfe\xfd", b"\xed\xa0\x80"]),
    ]
    return [rng.choice(kinds)() for _ in range(n)]


def test_ten_thousand_fuzzed_stdin_frames() -> None:
    rng = random.Random(18)
    frames = _fuzz_frames(10_000, rng)
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
    reader.start()
    assert proc.stdin is not None
    init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}}
    proc.stdin.write(json.dumps(init).encode() + b"\n")
    proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    probes = []
    t0 = time.perf_counter()
    try:
        for i, frame in enumerate(frames):
            proc.stdin.write(frame + b"\n")
            if i % 500 == 499:
                probe = f"probe-{i}"
                probes.append(probe)
                proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": probe, "method": "tools/list"}).encode()
                                 + b"\n")
        proc.stdin.flush()
        deadline = time.time() + 45
        answered: set[str] = set()
        while time.time() < deadline and len(answered) < len(probes):
            answered = {json.loads(ln).get("id") for ln in list(lines) if b'"probe-' in ln} & set(probes)
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        assert proc.poll() is None, "the server died under fuzzing"
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    reader.join(5)
    print(f"\n10,000 fuzzed frames: {len(lines)} replies in {elapsed:.1f}s; {len(answered)}/{len(probes)} probes "
          "answered")
    assert answered == set(probes), f"unanswered probes: {sorted(set(probes) - answered)[:5]}"
    for ln in lines:  # stdout carries JSON-RPC only
        msg = json.loads(ln)
        assert msg.get("jsonrpc") == "2.0", ln[:200]
    tools = next(json.loads(ln) for ln in lines if b'"probe-499"' in ln)
    assert len(tools["result"]["tools"]) == 8


@pytest.mark.anyio
async def test_cancel_during_generation_frees_the_owner_thread_within_a_token() -> None:
    # The owner thread checks the cancel flag once per token (mlx_backend._generate); emulate a 20 ms token.
    from orchestration.models.worker import DeviceWorker

    worker = DeviceWorker(name="load-test-owner")
    token_s = 0.02
    made: list[float] = []

    def generate(job) -> int:  # noqa: ANN001
        for i in range(100_000):
            job.check_cancelled()
            time.sleep(token_s)
            made.append(time.perf_counter())
        return i

    with anyio.move_on_after(0.3):
        await worker.run(generate)
    cancelled_at = time.perf_counter()
    started: list[float] = []
    await worker.run(lambda job: started.append(time.perf_counter()))
    worker.shutdown()
    after = [t for t in made if t > cancelled_at]
    wait = started[0] - cancelled_at
    print(f"\ncancel: {len(after)} token(s) after the cancel, next job started {wait * 1000:.0f} ms later")
    assert len(after) <= 1 and wait < token_s + 0.08


# -- start-up and run-time error edges: one clear line, never a traceback ---------------------------------------
def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("entry", [["-m", "mcp_mageagent"], ["-m", "orchestration.faces.cli", "models"]])
def test_a_non_utf8_config_file_is_one_line(tmp_path: Path, entry: list[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b"max_tokens = 5  # caf\xe9\n")
    r = _run(entry[:2] + ["--config", str(cfg)] + entry[2:], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not UTF-8" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_missing_api_key_env_is_one_line(tmp_path: Path) -> None:
    env = {"MAGEAGENT_ROLES__PRIMARY__BACKEND": "openai", "MAGEAGENT_ROLES__PRIMARY__MODEL": "m",
           "MAGEAGENT_ROLES__PRIMARY__BASE_URL": "http://127.0.0.1:9/v1",
           "MAGEAGENT_ROLES__PRIMARY__API_KEY_ENV": "MAGE_TEST_NO_SUCH_KEY"}
    r = _run(["-m", "mcp_mageagent"], tmp_path, **env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "MAGE_TEST_NO_SUCH_KEY" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _run(["-m", "mcp_mageagent", "--transport", "streamable-http", "--host", "0.0.0.0"], tmp_path)
    assert r.returncode == 2 and "without an API key" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _run(["-m", "mcp_mageagent", "--transport", "streamable-http"], tmp_path,
             MAGEAGENT_HTTP__API_KEY_ENV="MAGE_TEST_NO_SUCH_KEY")
    assert r.returncode == 2 and "MAGE_TEST_NO_SUCH_KEY" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.anyio
async def test_a_warmup_failing_with_a_non_mage_error_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from mcp_mageagent.server import build_server
    from orchestration.patterns.engine import Engine
    from orchestration.models.testing import ScriptedBackend, fake_settings

    fake = ScriptedBackend()

    async def broken(models: list[str], pin: bool = False) -> None:
        raise RuntimeError("metal device lost")

    fake.warmup = broken  # type: ignore[method-assign]
    settings = fake_settings(warmup=True)
    fake.enqueue("still here")
    async with Client(build_server(settings, Engine(settings, {"mlx": fake}))) as client:
        await anyio.sleep(0.1)
        r = await client.call_tool("mage_primary", {"prompt": "hi"})
    assert not r.is_error
    lines = [rec for rec in caplog.records if "warm-up failed" in rec.getMessage()]
    assert len(lines) == 1 and "RuntimeError: metal device lost" not in (lines[0].exc_text or "")
    assert "RuntimeError" in lines[0].getMessage() and lines[0].exc_info is None


@pytest.mark.anyio
async def test_models_resource_is_read_off_the_event_loop() -> None:
    from mcp_mageagent.server import build_server
    from orchestration.patterns.engine import Engine
    from orchestration.models.testing import ScriptedBackend, fake_settings

    settings = fake_settings()
    engine = Engine(settings, {"mlx": ScriptedBackend()})
    seen: list[int] = []
    original = engine.models_state

    def recording() -> dict:
        seen.append(threading.get_ident())
        return original()

    engine.models_state = recording  # type: ignore[method-assign]
    async with Client(build_server(settings, engine)) as client:
        await client.read_resource("mageagent://models")
        await client.read_resource("mageagent://models/primary")
    assert len(seen) == 2 and threading.get_ident() not in seen


def test_streamable_http_checks_host_and_the_api_key(tmp_path: Path) -> None:
    import http.client

    from orchestration.models.testing import free_port, wait_http  # noqa: F401

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mcp_mageagent", "--transport", "streamable-http", "--port",
                             str(port)], cwd=tmp_path, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, "MAGEAGENT_HTTP__API_KEY_ENV": "MAGE_TEST_KEY",
                                 "MAGE_TEST_KEY": "k3y"})
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()

    def post(host: str, auth: str | None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("POST", "/mcp", skip_host=True)
        conn.putheader("Host", host)
        for k, v in {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                     "Content-Length": str(len(body)), "Authorization": auth}.items():
            if v is not None:
                conn.putheader(k, v)
        conn.endheaders(body)
        status = conn.getresponse().status
        conn.close()
        return status

    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
                time.sleep(0.2)
        assert post(f"127.0.0.1:{port}", None) == 401
        assert post(f"127.0.0.1:{port}", "Bearer nope") == 401
        assert post(f"evil.example:{port}", "Bearer k3y") == 421  # DNS rebinding
        assert post(f"127.0.0.1:{port}", "Bearer k3y") == 200
    finally:
        proc.terminate()
        proc.wait(10)
