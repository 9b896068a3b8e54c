"""The seed's OpenAI-compatible HTTP API, driven by the official `openai` client as a third-party client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import openai
import pytest
import uvicorn

from orchestration.engine import Engine
from orchestration.http_api import build_app
from orchestration.testing import FAKE_MODELS, ScriptedBackend, fake_settings, free_port

P, C, V, T = (FAKE_MODELS[r] for r in ("primary", "competitor", "validator", "tools"))


class ServerThread:
    """uvicorn on 127.0.0.1 in a thread, over an engine with the scripted fake backend."""

    def __init__(self) -> None:
        self.fake = ScriptedBackend()
        settings = fake_settings()
        self.engine = Engine(settings, {"mlx": self.fake})
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(build_app(self.engine), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
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


