"""The seed's OpenAI-compatible HTTP API, driven by the official `openai` client as a third-party client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import openai
import pytest
import uvicorn

from orchestration.patterns.engine import Engine
from orchestration.faces.http_api import build_app
from orchestration.core.settings import HttpSettings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings, free_port

P, C, V, T = (FAKE_MODELS[r] for r in ("primary", "competitor", "validator", "tools"))


class ServerThread:
    """uvicorn on 127.0.0.1 in a thread, over an engine with the scripted fake backend."""

    def __init__(self, http: HttpSettings | None = None, api_key: str | None = None) -> None:
        self.fake = ScriptedBackend()
        settings = fake_settings()
        self.engine = Engine(settings, {"mlx": self.fake})
        self.port = free_port()
        app = build_app(self.engine, http, api_key=api_key) if http or api_key else build_app(self.engine)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread() as s:
        yield s


def test_models_lists_the_patterns(srv: ServerThread) -> None:
    ids = {m.id for m in srv.client.models.list()}
    assert ids == {f"mageagent:{p}" for p in ("auto", "hybrid", "validated", "compete", "tools", "primary",
                                              "validator", "competitor")}


def test_plain_completion_with_trace(srv: ServerThread) -> None:
    srv.fake.enqueue("4", model=P)
    r = srv.client.chat.completions.create(
        model="mageagent:primary", temperature=0.2, max_tokens=10,
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}])
    assert r.choices[0].message.content == "4" and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 1
    extra = r.model_extra["mageagent"]
    assert extra["pattern"] == "primary" and extra["trace"]["steps"][0]["role"] == "primary"
    sent = srv.fake.history[0]
    assert sent.messages[0].content == "Be terse." and sent.max_tokens == 10 and sent.temperature == 0.2


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_cut_off_at_its_budget_finishes_by_length(srv: ServerThread, stream: bool) -> None:
    srv.fake.enqueue("The answer is that two and two make", model=P, finish_reason="length")
    kw = {"model": "mageagent:primary", "max_tokens": 8, "messages": [{"role": "user", "content": "2+2?"}]}
    if stream:
        finish, extra = None, None
        for chunk in srv.client.chat.completions.create(stream=True, **kw):
            finish = chunk.choices[0].finish_reason or finish
            extra = (chunk.model_extra or {}).get("mageagent") or extra
    else:
        r = srv.client.chat.completions.create(**kw)
        finish, extra = r.choices[0].finish_reason, r.model_extra["mageagent"]
    assert finish == "length" and extra["cut_off"] is True and extra["finish_reason"] == "length"


def test_earlier_turns_become_context(srv: ServerThread) -> None:
    srv.fake.enqueue("ok", model=P)
    srv.client.chat.completions.create(model="mageagent:primary", messages=[
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "second"}])
    assert srv.fake.history[0].messages[-1].content == "second\n\nContext:\nuser: first\n\nassistant: reply"


def test_tool_calls_come_back_in_openai_fields_and_target_request_tools(srv: ServerThread) -> None:
    srv.fake.enqueue("I will look it up.", model=P)
    srv.fake.enqueue([{"tool": "get_weather", "arguments": {"city": "Paris"}}], model=T)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    r = srv.client.chat.completions.create(model="mageagent:hybrid", tools=tools, messages=[
        {"role": "user", "content": "Use the tool to search the weather in Paris"}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "I will look it up."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.function.arguments == '{"city": "Paris"}'
    alts = srv.fake.history[1].constraint.json_schema["items"]["anyOf"]
    assert [a["properties"]["tool"]["const"] for a in alts] == ["get_weather"]
    assert r.model_extra["mageagent"]["tool_calls"][0]["risk"] == "destructive"  # unannotated host tool


def test_streaming(srv: ServerThread) -> None:
    srv.fake.enqueue("x" * 150 + " done", model=P)
    srv.fake.enqueue([{"tool": "Read", "arguments": {"file_path": "a.py"}}], model=T)
    stream = srv.client.chat.completions.create(model="mageagent:hybrid", stream=True, messages=[
        {"role": "user", "content": "Read the file a.py"}])
    text, calls, finish, extra = "", [], None, None
    for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        calls += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
        extra = (chunk.model_extra or {}).get("mageagent") or extra
    assert text == "x" * 150 + " done"
    assert finish == "tool_calls" and calls[0].function.name == "Read"
    assert extra["pattern"] == "hybrid"


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"model": "mageagent:nope"}, 404, "valid models: mageagent:auto"),
        ({"model": "gpt-4o"}, 404, "does not exist"),
        ({"model": "mageagent:primary", "temperature": 7}, 400, "temperature"),
        ({"model": "mageagent:primary", "n": 2}, 400, "n"),
        ({"model": "mageagent:primary", "messages": [{"role": "system", "content": "only system"}]}, 400,
         "user message"),
        ({"model": "mageagent:primary", "messages": []}, 400, "messages"),
    ],
)
def test_bad_requests_get_openai_style_errors(srv: ServerThread, kwargs: dict, status: int, fragment: str) -> None:
    args = {"messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(openai.APIStatusError) as e:
        srv.client.chat.completions.create(**args)
    assert e.value.status_code == status
    assert fragment in e.value.body["message"]
    assert e.value.body["type"] == "invalid_request_error"


def test_health_reports_the_pool(srv: ServerThread) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/health") as resp:
        data = json.loads(resp.read())
    assert data["status"] == "ok" and set(data["roles"]) == {"primary", "competitor", "validator", "tools"}


def test_engine_failure_is_a_server_error_with_the_reason(srv: ServerThread) -> None:
    srv.fake.enqueue("a", model=P).enqueue("not a verdict", model=V)
    with pytest.raises(openai.APIStatusError) as e:
        srv.client.chat.completions.create(model="mageagent:validated",
                                           messages=[{"role": "user", "content": "Implement x"}])
    assert e.value.status_code == 500 and "validator" in e.value.body["message"]




# -- at the door: key, Host/Origin, content type, sizes, parsing, queue, disconnects --------------------------
def raw(srv: ServerThread, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
        host: str | None = None) -> tuple[int, dict, dict]:
    """One request with full control of the bytes and headers: status, headers, JSON body."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{srv.port}")
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if body is not None:
        hdrs.setdefault("Content-Length", str(len(body)))
    for k, v in hdrs.items():
        if v is not None:
            conn.putheader(k, v)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)


def chat_body(content: object = "hi", **extra: object) -> bytes:
    import json

    return json.dumps({"model": "mageagent:primary", "messages": [{"role": "user", "content": content}],
                       **extra}).encode()


def assert_openai_error(status: int, body: dict, expected: int) -> None:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]


def test_api_key_is_required_and_compared_when_set() -> None:
    with ServerThread(HttpSettings(), api_key="s3cret") as srv:
        for auth in (None, "Bearer wrong", "Basic s3cret", "Bearer s3cre", "Bearer s3cret!"):
            status, _, body = raw(srv, "GET", "/v1/models", headers={"Authorization": auth})
            assert_openai_error(status, body, 401)
            assert body["error"]["code"] == "invalid_api_key"
        status, _, body = raw(srv, "POST", "/v1/chat/completions", chat_body(), {"Authorization": "Bearer x"})
        assert_openai_error(status, body, 401)
        assert srv.fake.history == []
        assert raw(srv, "GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})[0] == 200
        srv.fake.enqueue("ok", model=P)
        openai_client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="s3cret", max_retries=0)
        assert openai_client.chat.completions.create(
            model="mageagent:primary", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == "ok"


def test_the_api_key_setting_and_the_loopback_rule() -> None:
    from orchestration.core.errors import ConfigError
    from orchestration.faces.access import api_key

    assert api_key(HttpSettings(), "127.0.0.1", {}) is None
    assert api_key(HttpSettings(), "::1", {}) is None and api_key(HttpSettings(), "localhost", {}) is None
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"):
        with pytest.raises(ConfigError, match="refusing to bind .* without an API key"):
            api_key(HttpSettings(), host, {})
    with pytest.raises(ConfigError, match="MAGE_KEY, but that environment variable is not set"):
        api_key(HttpSettings(api_key_env="MAGE_KEY"), "0.0.0.0", {})
    assert api_key(HttpSettings(api_key_env="MAGE_KEY"), "0.0.0.0", {"MAGE_KEY": "k"}) == "k"


@pytest.mark.parametrize(("headers", "host", "status", "code"), [
    ({}, "evil.example:80", 421, "invalid_host"),             # DNS rebinding: a foreign name for 127.0.0.1
    ({"Origin": "http://evil.example"}, None, 403, "invalid_origin"),
    ({"Content-Type": "text/plain"}, None, 400, "invalid_content_type"),
    ({"Content-Type": None}, None, 400, "invalid_content_type"),
])
def test_host_origin_and_content_type_are_checked(srv: ServerThread, headers: dict, host: str | None, status: int,
                                                  code: str) -> None:
    s, _, body = raw(srv, "POST", "/v1/chat/completions", chat_body(), headers, host=host)
    assert_openai_error(s, body, status)
    assert body["error"]["code"] == code and srv.fake.history == []


def test_allowed_hosts_and_origins_extend_loopback() -> None:
    http = HttpSettings(allowed_hosts=["mage.lan:*"], allowed_origins=["http://mage.lan:*"])
    with ServerThread(http) as srv:
        assert raw(srv, "GET", "/v1/models", host="mage.lan:3457", headers={"Origin": "http://mage.lan:3457"})[0] == 200
        assert raw(srv, "GET", "/v1/models", host="other.lan:3457")[0] == 421
        assert raw(srv, "GET", "/v1/models", headers={"Origin": "http://localhost:5173"})[0] == 200



@pytest.mark.parametrize(("host", "origin"), [
    ("127.0.0.1:3457", None), ("localhost", None), ("[::1]:80", "http://[::1]:5173"), ("127.0.0.1:", None),
    ("mage.lan:1", "http://mage.lan:2"), ("mage.lan", None), ("10.0.0.2:3457", None), ("10.0.0.2:3458", None),
    (None, None), ("", None), ("evil.example", None), ("127.0.0.1.evil:80", None), ("localhost:80", "null"),
    ("localhost:80", "http://evil.example"), ("localhost:80", "https://localhost:80"), ("localhost:80", ""),
    ("localhost:80", "http://localhost"), ("localhost:80", "http://10.0.0.2:3457"),
])
def test_the_host_origin_check_is_the_sdks(host: str | None, origin: str | None) -> None:
    """The engine's own Host/Origin check answers as the MCP SDK's does (the MCP face's HTTP transport uses the
    SDK's, fed the same lists), case by case."""
    import anyio
    from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
    from starlette.requests import Request

    from orchestration.faces.access import allowed_hosts, allowed_origins, host_origin_refusal

    http = HttpSettings(allowed_hosts=["mage.lan:*", "10.0.0.2:3457"], allowed_origins=["http://mage.lan:*",
                                                                                         "http://10.0.0.2:3457"])
    sdk = TransportSecurityMiddleware(TransportSecuritySettings(
        allowed_hosts=allowed_hosts(http), allowed_origins=allowed_origins(http)))
    headers = [(k.encode(), v.encode()) for k, v in (("host", host), ("origin", origin)) if v is not None]
    answer = anyio.run(sdk.validate_request, Request({"type": "http", "method": "GET", "headers": headers}))
    ours = host_origin_refusal(http, host, origin)
    expected = None if answer is None else (answer.status_code, bytes(answer.body).decode())
    assert (None if ours is None else ours[:2]) == expected

@pytest.mark.parametrize(("body", "fragment"), [
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),                       # was a RecursionError: plain 500
    (chat_body([{"type": "text", "text": "x", "n": [[[[[[[[]]]]]]]] * 0}]).replace(b'"n": []', b'"n": '
                                                                                 + b"[" * 80 + b"]" * 80),
     "nests deeper"),
    (b'{"model": "mageagent:primary", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "not UTF-8"),
    (chat_body("\\ud800 lone").replace(b"\\\\ud800", b"\\ud800"), "lone UTF-16 surrogate"),
    (b'{"model": ', "not valid JSON"),
    (b"", "not valid JSON"),
])
def test_malformed_bodies_are_400_in_openai_shape(srv: ServerThread, body: bytes, fragment: str) -> None:
    s, _, data = raw(srv, "POST", "/v1/chat/completions", body)
    assert_openai_error(s, data, 400)
    assert fragment in data["error"]["message"] and srv.fake.history == []


def test_body_size_and_prompt_length_are_limited() -> None:
    with ServerThread(HttpSettings(max_body_bytes=4096, max_prompt_chars=1000)) as srv:
        s, _, data = raw(srv, "POST", "/v1/chat/completions", chat_body("x" * 5000))
        assert_openai_error(s, data, 413)
        s, _, data = raw(srv, "POST", "/v1/chat/completions", chat_body("x" * 100),
                         {"Content-Length": "99999999"})  # a lying header is refused before reading
        assert_openai_error(s, data, 413)
        s, _, data = raw(srv, "POST", "/v1/chat/completions", chat_body("x" * 1001))
        assert_openai_error(s, data, 400)
        assert data["error"]["code"] == "context_length_exceeded" and "1001 characters" in data["error"]["message"]
        assert srv.fake.history == []


def test_unknown_routes_and_methods_keep_the_openai_shape(srv: ServerThread) -> None:
    s, _, data = raw(srv, "GET", "/v1/nothing")
    assert_openai_error(s, data, 404)
    s, _, data = raw(srv, "GET", "/v1/chat/completions")
    assert_openai_error(s, data, 405)


def test_a_bad_host_tool_schema_is_refused_before_any_model_runs(srv: ServerThread) -> None:
    tools = [{"type": "function", "function": {"name": "deploy", "parameters": {
        "type": "object", "properties": {"env": {"type": "string", "enum": []}}}}}]
    s, _, data = raw(srv, "POST", "/v1/chat/completions", chat_body("deploy it", tools=tools))
    assert_openai_error(s, data, 400)
    assert "'deploy'" in data["error"]["message"] and "enum" in data["error"]["message"]
    assert data["error"]["param"] == "tools" and srv.fake.history == []


def test_beyond_the_queue_depth_is_429_with_retry_after() -> None:
    with ServerThread(HttpSettings(queue_depth=1, retry_after_s=7)) as srv:
        srv.fake.enqueue("slow " * 20, model=P, delay=0.05)
        done: list[int] = []
        t = threading.Thread(target=lambda: done.append(raw(srv, "POST", "/v1/chat/completions", chat_body())[0]))
        t.start()
        deadline = time.time() + 5
        while not srv.fake.history:
            assert time.time() < deadline
            time.sleep(0.01)
        s, headers, data = raw(srv, "POST", "/v1/chat/completions", chat_body())
        assert_openai_error(s, data, 429)
        assert headers["retry-after"] == "7" and data["error"]["type"] == "rate_limit_error"
        t.join(10)
        assert done == [200]
        srv.fake.enqueue("next", model=P)  # the slot was given back
        assert raw(srv, "POST", "/v1/chat/completions", chat_body())[0] == 200


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_cancels_its_run(stream: bool) -> None:
    import http.client
    import socket

    with ServerThread(HttpSettings(queue_depth=1)) as srv:
        srv.fake.enqueue("word " * 400, model=P, delay=0.05)  # 20 s if nobody stops it
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", "/v1/chat/completions", chat_body(stream=stream),
                     {"Content-Type": "application/json"})
        deadline = time.time() + 5
        while not srv.fake.history:
            assert time.time() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        t0 = time.time()
        while srv.fake.cancelled == 0:
            assert time.time() - t0 < 3, "the run went on after the client left"
            time.sleep(0.02)
        srv.fake.enqueue("next", model=P)  # and its queue slot is free again
        assert raw(srv, "POST", "/v1/chat/completions", chat_body())[0] == 200


def test_health_resolves_models_off_the_event_loop(srv: ServerThread) -> None:
    seen: list[int] = []
    original = srv.engine.models_state

    def recording() -> dict:
        seen.append(threading.get_ident())
        return original()

    srv.engine.models_state = recording  # type: ignore[method-assign]
    assert raw(srv, "GET", "/health")[0] == 200
    assert seen and seen[0] != srv.thread.ident  # uvicorn's loop runs on srv.thread


def test_models_answer_while_a_backtracking_host_pattern_is_grounded(srv: ServerThread) -> None:
    """Issue 26 §5 over HTTP: a host tool whose path pattern backtracks in Python's re (x5 per two characters)
    is grounded in linear time, so GET /v1/models keeps answering at once while the call runs."""
    name = "a" * 25 + ".txt"
    tool = {"type": "function", "function": {"name": "open_note", "description": "Open a note", "parameters": {
        "type": "object", "properties": {"file_path": {"type": "string", "pattern": r"^(\w+\w?)+(\.py)?$",
                                                       "x-mageagent": "path"}},
        "required": ["file_path"]}}}
    srv.fake.enqueue("Opening it.", model=P)
    srv.fake.enqueue([], model=T, delay=0.5)
    done: list[object] = []
    chat = threading.Thread(target=lambda: done.append(srv.client.chat.completions.create(
        model="mageagent:hybrid", messages=[{"role": "user", "content": f"Read the file {name} of my notes"}],
        tools=[tool])))
    chat.start()
    gaps = []
    while chat.is_alive() and len(gaps) < 200:
        t0 = time.perf_counter()
        assert raw(srv, "GET", "/v1/models")[0] == 200
        gaps.append(time.perf_counter() - t0)
    chat.join(60)
    assert done and gaps and max(gaps) < 2.0, gaps
