"""The OpenAI-compatible backend against a scripted HTTP transport: bodies, retries, errors, logprobs."""

from __future__ import annotations

import json
import math

import httpx2
import pytest

from orchestration.core.errors import BackendUnavailable, ModelNotFoundError, ModelOutputError, RequestError
from orchestration.models.openai_backend import OpenAIBackend
from orchestration.core.settings import load_settings
from orchestration.patterns.engine import Engine
from orchestration.core.errors import ConfigError
from orchestration.core.types import Constraint, GenerationRequest, Message

pytestmark = pytest.mark.anyio
URL = "http://127.0.0.1:9/v1"


def sse(*events: dict, done: bool = True) -> bytes:
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def delta(text: str, finish: str | None = None, **extra: object) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish, **extra}]}


GOOD = sse(delta("Hel"), delta("lo"), delta("", "stop"),
           {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})


class Script:
    def __init__(self, *responses: httpx2.Response) -> None:
        self.responses = list(responses)
        self.bodies: list[dict] = []
        self.headers: list[dict] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        self.headers.append(dict(request.headers))
        return self.responses.pop(0)


def backend(script: Script, **kw: object) -> OpenAIBackend:
    return OpenAIBackend(URL, transport=httpx2.MockTransport(script), **kw)  # type: ignore[arg-type]


def req(**kw: object) -> GenerationRequest:
    return GenerationRequest(model="m", max_tokens=8, messages=[Message(role="user", content="hi")], **kw)


async def test_streams_text_and_usage_and_sends_the_request() -> None:
    script = Script(httpx2.Response(200, content=GOOD))
    chunks = []

    async def on_chunk(c) -> None:  # noqa: ANN001
        chunks.append(c.text)

    c = await backend(script, api_key="sekrit").stream(req(temperature=0.3, seed=5), on_chunk)
    assert c.text == "Hello" and chunks == ["Hel", "lo"]
    assert (c.prompt_tokens, c.completion_tokens, c.finish_reason) == (7, 2, "stop")
    body = script.bodies[0]
    assert body["model"] == "m" and body["stream"] is True and body["seed"] == 5 and body["temperature"] == 0.3
    assert body["stream_options"] == {"include_usage": True}
    assert script.headers[0]["authorization"] == "Bearer sekrit"


async def test_json_schema_goes_as_response_format_or_not() -> None:
    schema = {"type": "array", "maxItems": 1, "items": {"type": "string"}}
    script = Script(*[httpx2.Response(200, content=GOOD)] * 3)
    c1 = await backend(script).stream(req(constraint=Constraint(json_schema=schema)))
    c2 = await backend(script, structured_output="none").stream(req(constraint=Constraint(json_schema=schema)))
    c3 = await backend(script, structured_output="llama_cpp").stream(req(constraint=Constraint(json_schema=schema)))
    assert script.bodies[0]["response_format"]["json_schema"]["schema"] == schema and c1.constrained
    assert "response_format" not in script.bodies[1] and not c2.constrained
    assert script.bodies[2]["response_format"] == {"type": "json_object", "schema": schema} and c3.constrained


@pytest.mark.parametrize("options, continuation, grammar", [
    (["PASS", "FAIL"], {"FAIL": ": "}, 'root ::= "PASS" | "FAIL: " free'),
    (["A", "B"], None, 'root ::= "A" | "B"'),
    (["assert "], {"assert ": ""}, 'root ::= "assert " free'),
    (['say "x"\n'], None, 'root ::= "say \\"x\\"\\n"'),
])
async def test_llama_cpp_mode_sends_option_picks_as_a_gbnf_grammar(options, continuation, grammar) -> None:
    script = Script(*[httpx2.Response(200, content=GOOD)] * 2)
    constraint = Constraint(options=options, option_continuation=continuation)
    await backend(script, structured_output="llama_cpp").stream(req(constraint=constraint))
    await backend(script).stream(req(constraint=constraint))
    assert script.bodies[0]["grammar"].splitlines()[0] == grammar
    assert script.bodies[0]["logprobs"] is True  # the probabilities still come from the top logprobs
    assert "grammar" not in script.bodies[1]  # other servers get no llama.cpp field


async def test_option_probabilities_from_top_logprobs() -> None:
    top = [{"token": "PASS", "logprob": math.log(0.6)}, {"token": "FA", "logprob": math.log(0.3)},
           {"token": "Hmm", "logprob": math.log(0.1)}]
    body = sse(delta("PASS", None, logprobs={"content": [{"token": "PASS", "top_logprobs": top}]}), delta("", "stop"))
    script = Script(httpx2.Response(200, content=body))
    c = await backend(script).stream(req(constraint=Constraint(options=["PASS", "FAIL"],
                                                               option_continuation={"FAIL": ": "})))
    assert script.bodies[0]["logprobs"] is True and script.bodies[0]["top_logprobs"] == 10
    assert c.option_probs == pytest.approx({"PASS": 2 / 3, "FAIL": 1 / 3})


async def test_retries_429_and_5xx_then_succeeds() -> None:
    script = Script(httpx2.Response(429, text="slow down"), httpx2.Response(503, text="busy"),
                    httpx2.Response(200, content=GOOD))
    c = await backend(script, retries=2).stream(req())
    assert c.text == "Hello" and len(script.bodies) == 3


async def test_retries_are_bounded() -> None:
    script = Script(*[httpx2.Response(500, text="boom")] * 2)
    with pytest.raises(BackendUnavailable, match="after 2 attempts"):
        await backend(script, retries=1).stream(req())


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [(401, BackendUnavailable, "api_key_env"), (403, BackendUnavailable, "credentials"),
     (404, ModelNotFoundError, "does not know model 'm'"), (400, RequestError, "rejected the request")],
)
async def test_http_errors_are_actionable(status: int, error: type, fragment: str) -> None:
    script = Script(httpx2.Response(status, text="nope"))
    with pytest.raises(error, match=fragment):
        await backend(script).stream(req())
    assert len(script.bodies) == 1  # never retried


async def test_malformed_event_and_missing_finish_are_errors() -> None:
    with pytest.raises(ModelOutputError, match="malformed"):
        await backend(Script(httpx2.Response(200, content=b"data: {not json\n\n"))).stream(req())
    with pytest.raises(BackendUnavailable, match="without a finish reason"):
        await backend(Script(httpx2.Response(200, content=sse(delta("Hel"), done=False)))).stream(req())


async def test_unreachable_endpoint() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    b = OpenAIBackend(URL, transport=httpx2.MockTransport(refuse), retries=1)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await b.stream(req())


def test_role_config_for_remote_backends() -> None:
    s = load_settings(env={"KEY": "abc"}, roles={"primary": {"model": "qwen", "backend": "openai",
                                                               "base_url": URL, "api_key_env": "KEY"}})
    assert s.roles["primary"].backend_key == f"openai:{URL}"
    engine = Engine(s, env={"KEY": "abc"})
    assert set(engine.backends) == {"mlx", f"openai:{URL}"}
    with pytest.raises(ConfigError, match="KEY"):
        Engine(s, env={})
    with pytest.raises(ConfigError, match="needs base_url"):
        load_settings(env={}, roles={"primary": {"model": "qwen", "backend": "openai"}})


async def test_max_tokens_is_capped_to_what_the_endpoint_accepts() -> None:
    # The extraction sizes its budget from the schema (30,047 tokens for the seed tools): vLLM and OpenAI
    # answer HTTP 400 to that. The body carries at most max_output_tokens.
    script = Script(httpx2.Response(200, content=GOOD), httpx2.Response(200, content=GOOD),
                    httpx2.Response(200, content=GOOD))
    await backend(script).stream(req().model_copy(update={"max_tokens": 30047}))
    await backend(script, max_output_tokens=100).stream(req().model_copy(update={"max_tokens": 30047}))
    await backend(script, max_output_tokens=100).stream(req())
    assert [b["max_tokens"] for b in script.bodies] == [4096, 100, 8]


def test_max_output_tokens_reaches_the_backend_from_the_role() -> None:
    from orchestration.patterns.engine import _default_backends

    s = load_settings(env={}, roles={"tools": {"model": "m", "backend": "openai", "base_url": URL,
                                               "max_output_tokens": 2048}})
    assert _default_backends(s, {})[f"openai:{URL}"].max_output_tokens == 2048  # type: ignore[attr-defined]


async def _forever(line: bytes):  # noqa: ANN202
    while True:
        yield line


@pytest.mark.parametrize("line", [f"data: {json.dumps(delta('x'))}\n\n".encode(), b": keep-alive\n\n",
                                  f"data: {json.dumps(delta(''))}\n\n".encode()],
                         ids=["text", "keep-alive", "empty-delta"])
async def test_an_endless_stream_is_cut_at_max_tokens_plus_a_margin(line: bytes) -> None:
    import time

    chunks = []

    async def on_chunk(c) -> None:  # noqa: ANN001
        chunks.append(c)

    script = Script(httpx2.Response(200, content=_forever(line)))
    t0 = time.perf_counter()
    with pytest.raises(BackendUnavailable, match="kept streaming past max_tokens=8"):
        await backend(script).stream(req(), on_chunk)
    assert time.perf_counter() - t0 < 5
    from orchestration.models.openai_backend import stream_limit

    assert len(chunks) <= stream_limit(8) + 1
