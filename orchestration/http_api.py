"""The seed's OpenAI-compatible HTTP API, served from the same engine (``mageagent serve``).

``POST /v1/chat/completions`` with ``model: "mageagent:PATTERN"``, ``GET /v1/models``, ``GET /health``.
Tool calls come back in OpenAI's ``tool_calls`` field; the trace in the extra ``mageagent`` field.
A thin face like the MCP one: parse, call the engine, map errors (OpenAI-style bodies, 4xx for the
caller's mistakes).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .engine import Engine
from .errors import MageError, ModelNotFoundError, PatternError, UserError
from .types import PatternRequest, PatternResult, ToolDefinition

__all__ = ["build_app", "PREFIX"]

log = logging.getLogger(__name__)
PREFIX = "mageagent:"


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


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


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
                          tools=tools)


def _tool_calls(result: PatternResult) -> list[dict[str, Any]]:
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c.tool, "arguments": json.dumps(c.arguments)}} for c in result.tool_calls]


def _extra(result: PatternResult) -> dict[str, Any]:
    return {"pattern": result.pattern, "trace": result.trace.model_dump(mode="json"),
            "totals": result.totals.model_dump(), "models": result.models,
            "tool_calls": [c.model_dump() for c in result.tool_calls]}


def _usage(result: PatternResult) -> dict[str, int]:
    t = result.totals
    return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "total_tokens": t.prompt_tokens + t.completion_tokens}


def build_app(engine: Engine) -> Starlette:
    """The Starlette app over ``engine``."""

    def models_list() -> list[dict[str, Any]]:
        now = int(time.time())
        return [{"id": PREFIX + name, "object": "model", "created": now, "owned_by": "mageagent"}
                for name in engine.pattern_names()]

    async def list_models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": models_list()})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", **engine.models_state()})

    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not valid JSON", "invalid_request_error")
        try:
            chat_req = ChatRequest.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            param = ".".join(str(p) for p in err["loc"])
            return _error(400, f"{param}: {err['msg']}", "invalid_request_error", param=param)
        name = chat_req.model.removeprefix(PREFIX)
        if not chat_req.model.startswith(PREFIX) or name not in engine.pattern_names():
            valid = ", ".join(m["id"] for m in models_list())
            return _error(404, f"model {chat_req.model!r} does not exist; valid models: {valid}",
                          "invalid_request_error", param="model", code="model_not_found")
        try:
            preq = to_pattern_request(chat_req)
        except (ValueError, MageError) as e:
            return _error(400, str(e), "invalid_request_error", param="messages")
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if chat_req.stream:
            return StreamingResponse(_stream(rid, chat_req.model, name, preq), media_type="text/event-stream")
        try:
            result = await engine.run(name, preq)
        except MageError as e:
            return _mage_error(e)
        calls = _tool_calls(result)
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": int(time.time()), "model": chat_req.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": _usage(result), "mageagent": _extra(result)})

    def _mage_error(e: MageError) -> JSONResponse:
        cause = e.__cause__ if isinstance(e, PatternError) else e
        if isinstance(cause, UserError):
            return _error(400, str(e), "invalid_request_error")
        if isinstance(cause, ModelNotFoundError):
            return _error(503, str(e), "model_unavailable")
        return _error(500, str(e), "server_error")

    async def _stream(rid: str, model: str, name: str, preq: PatternRequest):  # noqa: ANN202
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
        yield chunk({}, "tool_calls" if calls else "stop", usage=_usage(result), mageagent=_extra(result))
        yield "data: [DONE]\n\n"

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])
