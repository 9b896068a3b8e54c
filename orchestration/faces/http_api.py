"""The seed's OpenAI-compatible HTTP API, served from the same engine (``mageagent serve``).

``POST /v1/chat/completions`` with ``model: "mageagent:PATTERN"``, ``GET /v1/models``, ``GET /health``.
Tool calls come back in OpenAI's ``tool_calls`` field; the trace in the extra ``mageagent`` field.
A thin face like the MCP one: parse, call the engine, map errors (OpenAI-style bodies, 4xx for the
caller's mistakes).

At the door, in this order: a JSON content type for POST, Host and Origin against an allow-list (DNS
rebinding; ``access.host_origin_refusal``, the MCP SDK's rule and answers), the API key
(``Authorization: Bearer``, compared in constant time), the body size, then parsing (bad UTF-8, deep
nesting and lone surrogates are 400s), the prompt length in characters, and a bounded queue (429 with
Retry-After beyond it). Every error, 404 and 500 included, has OpenAI's ``{"error": {...}}`` shape. A client
that disconnects cancels its run, streaming or not.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..core.errors import MageError, ModelNotFoundError, PatternError, UserError
from ..core.settings import HttpSettings
from ..core.types import PatternRequest, PatternResult, ToolDefinition
from ..patterns.engine import Engine
from ..tools.catalogue import resolve_tools
from .access import MAX_JSON_DEPTH, check_json_tree, check_prompt_size, error_body, host_origin_refusal

__all__ = ["build_app", "PREFIX", "parse_body", "to_pattern_request"]

log = logging.getLogger(__name__)
PREFIX = "mageagent:"
T = TypeVar("T")
# A body past the limit is read to its end and dropped (up to this much) before the 413, so the client, still
# sending, reads the answer instead of a reset connection.
DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_IDLE_S = 2.0  # a client that declared more than it sends stops being waited for after this pause


class _Function(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class _Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: _Function


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts(cls, v: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        for i, part in enumerate(v if isinstance(v, list) else []):  # other part types are ignored
            if part.get("type") == "text" and not isinstance(part.get("text"), str):
                got = "null" if part.get("text") is None else type(part["text"]).__name__
                raise ValueError(f"part {i} is a text part whose 'text' is {got}, not a string")
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The OpenAI fields this API uses; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    stream: bool = False
    tools: list[_Tool] | None = None
    n: int = Field(1, ge=1, le=1, description="only one choice is produced")
    deadline_s: float | None = Field(None, gt=0, le=86400, description="mageagent: return the best result so far by "
                                     "then, marked partial")


class _Refused(Exception):
    """An error response decided before the engine runs."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status, headers=headers)


def parse_body(raw: bytes) -> Any:
    """The request body as JSON; ValueError (with a reason a client can act on) for anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"the request body is not UTF-8 (byte {e.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:
        raise ValueError(f"the request body is not valid JSON ({e})") from None
    check_json_tree(value)
    return value


def to_pattern_request(chat: ChatRequest) -> PatternRequest:
    """System messages -> system; the last user message -> prompt; earlier turns -> context."""
    system = "\n\n".join(m.text() for m in chat.messages if m.role in ("system", "developer")) or None
    turns = [m for m in chat.messages if m.role not in ("system", "developer")]
    last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
    if last_user is None:
        raise ValueError("messages: at least one user message is required")
    history = turns[:last_user] + turns[last_user + 1:]
    context = "\n\n".join(f"{m.role}: {m.text()}" for m in history) or None
    tools = [ToolDefinition(name=t.function.name, description=t.function.description,
                            parameters=t.function.parameters) for t in chat.tools] if chat.tools else None
    return PatternRequest(prompt=turns[last_user].text(), context=context, system=system,
                          temperature=chat.temperature, max_tokens=chat.max_tokens or chat.max_completion_tokens,
                          tools=tools, deadline_s=chat.deadline_s)


def _tool_calls(result: PatternResult) -> list[dict[str, Any]]:
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c.tool, "arguments": json.dumps(c.arguments)}} for c in result.tool_calls]


def _extra(result: PatternResult) -> dict[str, Any]:
    return {"pattern": result.pattern, "trace": result.trace.model_dump(mode="json"),
            "totals": result.totals.model_dump(), "models": result.models,
            "tool_calls": [c.model_dump() for c in result.tool_calls],
            "partial": result.partial, "skipped": result.skipped,
            "cut_off": result.cut_off, "finish_reason": result.finish_reason}


def _finish(result: PatternResult, calls: list[dict[str, Any]]) -> str:
    """OpenAI's finish_reason: ``length`` where the answer stopped at its token budget (no calls come with a
    cut-off answer), ``tool_calls`` where there are calls, else ``stop``."""
    return "length" if result.cut_off else "tool_calls" if calls else "stop"


def _usage(result: PatternResult) -> dict[str, int]:
    t = result.totals
    return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "total_tokens": t.prompt_tokens + t.completion_tokens}


class _Stream(StreamingResponse):
    """A streaming response that closes its generator (cancelling the run) and releases its queue slot
    however it ends: finished, client gone, or cancelled."""

    def __init__(self, content: Any, release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes; beyond it 413 in OpenAI's shape, once the client has sent it all.

    The SDK's RequestBodyLimitMiddleware answers in plain text and does not read on: a client still sending
    then meets a reset connection, not the answer. Here a body past the limit is read to its end (up to
    DRAIN_BYTES, keeping nothing) before the 413.
    """
    too_big = _Refused(_error(413, f"the request body is larger than {limit} bytes", "invalid_request_error",
                              code="request_too_large"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_BYTES:
        too_big.response.headers["connection"] = "close"
        raise too_big
    body, seen = bytearray(), 0
    over = declared.isdigit() and int(declared) > limit
    chunks = request.stream().__aiter__()
    while True:
        try:  # past the limit, read on (keeping nothing) while the client still sends
            with anyio.fail_after(DRAIN_IDLE_S if over or seen > limit else None):
                chunk = await chunks.__anext__()
        except (StopAsyncIteration, TimeoutError):
            break
        seen += len(chunk)
        if seen > DRAIN_BYTES:
            too_big.response.headers["connection"] = "close"
            raise too_big
        if seen <= limit:
            body += chunk
        else:
            body.clear()
    if over or seen > limit:
        raise too_big
    return bytes(body)


async def until_disconnect(request: Request, fn: Callable[[], Awaitable[T]]) -> T | None:
    """``fn()``'s result, or None when the client went away first (``fn`` is then cancelled)."""
    out: list[Any] = []

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        log.info("client disconnected: its run is cancelled")
        tg.cancel_scope.cancel()

    async def work() -> None:
        try:
            out.append(await fn())
        except MageError as e:
            out.append(e)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        tg.start_soon(work)
    if out and isinstance(out[0], MageError):
        raise out[0]
    return out[0] if out else None


def _mage_error(e: MageError) -> JSONResponse:
    cause = e.__cause__ if isinstance(e, PatternError) else e
    if isinstance(cause, UserError):
        return _error(400, str(e), "invalid_request_error")
    if isinstance(cause, ModelNotFoundError):
        return _error(503, str(e), "model_unavailable")
    return _error(500, str(e), "server_error")


def _completion(rid: str, model: str, result: PatternResult) -> JSONResponse:
    calls = _tool_calls(result)
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if calls:
        message["tool_calls"] = calls
    return JSONResponse({
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(result, calls)}],
        "usage": _usage(result), "mageagent": _extra(result)})


async def _sse(engine: Engine, rid: str, model: str, name: str, preq: PatternRequest):  # noqa: ANN202
    """Progress as SSE comments while the pattern runs (clients ignore them), then the answer."""
    send, receive = anyio.create_memory_object_stream[str](math.inf)
    outcome: dict[str, Any] = {}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(data)}\n\n"

    async def progress(step: int, purpose: str, role: str, tokens: int, message: str) -> None:
        send.send_nowait(f": {message}\n\n")

    async def run() -> None:
        try:
            outcome["result"] = await engine.run(name, preq, progress)
        except MageError as e:
            outcome["error"] = e
        finally:
            send.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        yield chunk({"role": "assistant", "content": ""})
        async with receive:
            async for comment in receive:
                yield comment
    if "error" in outcome:
        err = outcome["error"]
        yield f"data: {json.dumps({'error': {'message': str(err), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    result: PatternResult = outcome["result"]
    text = result.text
    for i in range(0, len(text), 64):
        yield chunk({"content": text[i:i + 64]})
    calls = _tool_calls(result)
    if calls:
        yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
    yield chunk({}, _finish(result, calls), usage=_usage(result), mageagent=_extra(result))
    yield "data: [DONE]\n\n"


class _Api:
    """The routes over one engine: the door (Host/Origin, API key), the queue, and the three endpoints."""

    def __init__(self, engine: Engine, http: HttpSettings, key: str | None) -> None:
        self.engine, self.http = engine, http
        self.key = key.encode() if key else None
        self.admitted = 0

    def models_list(self) -> list[dict[str, Any]]:
        now = int(time.time())
        return [{"id": PREFIX + name, "object": "model", "created": now, "owned_by": "mageagent"}
                for name in self.engine.pattern_names()]

    async def guard(self, request: Request) -> None:
        if request.method == "POST" and not request.headers.get("content-type", "").lower().startswith(
                "application/json"):
            raise _Refused(_error(400, "Invalid Content-Type header", "invalid_request_error",
                                  code="invalid_content_type"))
        refused = host_origin_refusal(self.http, request.headers.get("host"), request.headers.get("origin"))
        if refused is not None:
            status, message, code = refused
            raise _Refused(_error(status, message, "invalid_request_error", code=code))
        if self.key is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
                raise _Refused(_error(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                      "invalid_request_error", code="invalid_api_key",
                                      headers={"WWW-Authenticate": "Bearer"}))

    def endpoint(self, fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                await self.guard(request)
                return await fn(request)
            except _Refused as r:
                return r.response

        return handle

    def admit(self) -> Callable[[], None]:
        """A queue slot (429 with Retry-After when none is free) and the function that frees it, once."""
        http = self.http
        if self.admitted >= http.queue_depth:
            raise _Refused(_error(429, f"{self.admitted} requests are already queued or running (queue_depth "
                                  f"{http.queue_depth}); retry after {http.retry_after_s}s", "rate_limit_error",
                                  code="queue_full", headers={"Retry-After": str(http.retry_after_s)}))
        self.admitted += 1
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                self.admitted -= 1

        return release

    async def list_models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": self.models_list()})

    async def health(self, _: Request) -> Response:
        # Resolving models reads files (and may ask the hub's cache): never on the event loop.
        state = await anyio.to_thread.run_sync(self.engine.models_state)
        return JSONResponse({"status": "ok", **state})

    async def parse(self, request: Request) -> tuple[ChatRequest, str, PatternRequest]:
        """The request, its pattern and the pattern request; _Refused with the 4xx for anything wrong."""
        try:
            body = parse_body(await read_body(request, self.http.max_body_bytes))
        except ValueError as e:
            raise _Refused(_error(400, str(e), "invalid_request_error")) from None
        try:
            chat_req = ChatRequest.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            param = ".".join(str(p) for p in err["loc"])
            raise _Refused(_error(400, f"{param}: {err['msg'].removeprefix('Value error, ')}",
                                  "invalid_request_error", param=param)) from None
        name = chat_req.model.removeprefix(PREFIX)
        if not chat_req.model.startswith(PREFIX) or name not in self.engine.pattern_names():
            valid = ", ".join(m["id"] for m in self.models_list())
            raise _Refused(_error(404, f"model {chat_req.model!r} does not exist; valid models: {valid}",
                                  "invalid_request_error", param="model", code="model_not_found"))
        try:
            preq = to_pattern_request(chat_req)
        except (ValueError, MageError) as e:
            raise _Refused(_error(400, str(e), "invalid_request_error", param="messages")) from None
        try:
            if preq.tools:
                resolve_tools(preq.tools)  # a bad host schema is refused before any model runs
        except MageError as e:
            raise _Refused(_error(400, str(e), "invalid_request_error", param="tools")) from None
        try:
            check_prompt_size(preq, self.http.max_prompt_chars)
        except MageError as e:
            raise _Refused(_error(400, str(e), "invalid_request_error", param="messages",
                                  code="context_length_exceeded")) from None
        return chat_req, name, preq

    async def chat(self, request: Request) -> Response:
        chat_req, name, preq = await self.parse(request)
        release = self.admit()
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if chat_req.stream:
            return _Stream(_sse(self.engine, rid, chat_req.model, name, preq), release)
        try:
            result = await until_disconnect(request, lambda: self.engine.run(name, preq))
        except MageError as e:
            return _mage_error(e)
        finally:
            release()
        if result is None:  # nobody is listening; the status is for the logs
            return _error(499, "the client closed the request", "invalid_request_error")
        return _completion(rid, chat_req.model, result)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), "invalid_request_error", headers=exc.headers)


async def _server_error(_: Request, exc: Exception) -> Response:
    log.error("unexpected %s in the HTTP API: %s", type(exc).__name__, exc, exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")


def build_app(engine: Engine, http: HttpSettings | None = None, *, api_key: str | None = None) -> Starlette:
    """The Starlette app over ``engine``; with ``api_key`` every request must carry it as a Bearer token."""
    api = _Api(engine, http or HttpSettings(), api_key)
    return Starlette(routes=[
        Route("/v1/chat/completions", api.endpoint(api.chat), methods=["POST"]),
        Route("/v1/models", api.endpoint(api.list_models), methods=["GET"]),
        Route("/health", api.endpoint(api.health), methods=["GET"]),
    ], exception_handlers={HTTPException: _http_error, Exception: _server_error})
