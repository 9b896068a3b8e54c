"""The MCP server: every pattern an MCP tool, the models as resources, progress and cancellation.

Thin over :mod:`orchestration`: declare tools and resources, call the engine, map its errors.
Nothing here writes to stdout; on stdio that is the protocol channel.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from orchestration.models.blas import preload_openblas
from orchestration.engine import Engine
from orchestration.errors import MageError, ModelNotFoundError, PatternError
from orchestration.format import result_text, trace_line
from orchestration.http_api import api_key, require_bearer, transport_security
from orchestration.settings import ROLES, Settings, load_settings
from orchestration.tools.catalogue import resolve_tools
from orchestration.types import PatternRequest, PatternResult, ToolDefinition

__all__ = ["build_server", "main", "DESCRIPTIONS", "tool_name"]

log = logging.getLogger("mcp_mageagent")

_COST = "Runs local models on this machine; the server never runs a tool call itself, the host does."
DESCRIPTIONS: dict[str, str] = {
    "auto": "Pick the pattern automatically (use when unsure): coding tasks (implement, function, class, "
            "refactor, fix bug, code blocks) go to validated, reasoning tasks (explain, analyze, plan, design, "
            "architecture, compare) to hybrid, anything else to the fast validator model. The result says which "
            "route ran and why. Cost: that of the chosen pattern.",
    "hybrid": "Best general capability: the primary reasoning model answers, then the tools model extracts "
              "schema-valid tool calls when the task needs file or shell operations. Use for analysis plus "
              "implementation, architecture decisions that need files changed, code review with suggestions. "
              "Cost: about 1.5x a primary call.",
    "validated": "Code where correctness matters: the primary answers, a validator reviews it for syntax, logic, "
                 "error handling, security and performance (PASS or FAIL with issues), the primary revises on "
                 "FAIL, then tool calls are extracted. Cost: about 2x a primary call.",
    "compete": "Maximum quality for critical code or decisions: two models answer independently (A: reasoning, "
               "B: coding), a judge picks the better on correctness, efficiency, readability and error handling "
               "(optionally judging twice with the order swapped), then tool calls are extracted from the "
               "winner. Cost: about 3x a primary call.",
    "tools": "Fastest way to turn a request into tool calls (Read, Write, Edit, Bash, Glob, Grep or the host's "
             "own tools): the tools model alone, output valid by construction. Use for quick file operations "
             "and rapid iteration when no heavy reasoning is needed. Cost: about 0.15x a primary call.",
    "primary": "The primary reasoning model alone, no tool calls: pure reasoning, explaining complex code, "
               "architecture planning. Cost: the baseline (1x).",
    "validator": "Direct access to the small, fast validator model: simple questions and quick checks. "
                 "Cost: well under a primary call.",
    "competitor": "Direct access to the coding-focused competitor model, for a second opinion on code. "
                  "Cost: below a primary call.",
}

Prompt = Annotated[str, Field(min_length=1, description="The task or question, in full.")]
ContextArg = Annotated[str | None, Field(
    description="Code, file contents or other text the models should see with the prompt.")]
System = Annotated[str | None, Field(description="Optional system instruction for the answering model(s).")]
Temperature = Annotated[float | None, Field(ge=0, le=2, description="Sampling temperature 0..2 (default 0.7; "
                                                                    "0 is greedy).")]
MaxTokens = Annotated[int | None, Field(ge=1, le=32768, description="Most tokens each answer may have.")]
Tools = Annotated[list[ToolDefinition] | None, Field(
    description="Tool definitions to extract calls against (name, description, JSON-schema parameters, as MCP "
                "and OpenAI define them). Default: Read, Write, Edit, Bash, Glob, Grep.")]
Extraction = Annotated[Literal["auto", "always", "never"] | None, Field(
    description="Tool-call extraction: auto (when the task or answer needs tools), always, or never.")]
Swap = Annotated[bool | None, Field(
    description="Judge twice with A and B swapped to cancel position bias (slower; default from settings).")]


def tool_name(pattern: str) -> str:
    return f"mage_{pattern}"


def _error_message(e: MageError) -> str:
    msg = str(e)
    cause = e.__cause__
    if isinstance(e, PatternError) and isinstance(cause, ModelNotFoundError) and "setup" not in msg:
        msg += " Run `mageagent setup` for the embedded model."
    return msg


def _make_tool(engine: Engine, pattern: str, with_swap: bool) -> Callable[..., Awaitable[CallToolResult]]:
    async def call(ctx: Context, **kw: Any) -> CallToolResult:
        try:
            request = PatternRequest(**{k: v for k, v in kw.items() if v is not None})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise ToolError(f"invalid arguments: {problems}") from e
        try:
            if request.tools:
                resolve_tools(request.tools)  # a bad host schema is refused before any model runs
        except MageError as e:
            raise ToolError(str(e)) from e
        counter = 0

        async def progress(step: int, purpose: str, role: str, tokens: int, message: str) -> None:
            nonlocal counter
            counter += 1
            try:
                await ctx.report_progress(counter, None, message)
            except Exception:  # a client that went away must not break generation bookkeeping
                log.debug("progress notification failed", exc_info=True)

        try:
            result = await engine.run(pattern, request, progress)
        except MageError as e:  # user, model and pattern errors alike: the calling model reads the message
            raise ToolError(_error_message(e)) from e
        log.info("%s: %s", tool_name(pattern), trace_line(result))
        return CallToolResult(content=[TextContent(type="text", text=result_text(result, for_host=True))],
                              structured_content=result.model_dump(mode="json"))

    if with_swap:
        async def tool(prompt: Prompt, ctx: Context, context: ContextArg = None, system: System = None,
                       temperature: Temperature = None, max_tokens: MaxTokens = None, tools: Tools = None,
                       extraction: Extraction = None, swap: Swap = None
                       ) -> Annotated[CallToolResult, PatternResult]:
            return await call(ctx, prompt=prompt, context=context, system=system, temperature=temperature,
                              max_tokens=max_tokens, tools=tools, extraction=extraction, swap=swap)
    else:
        async def tool(prompt: Prompt, ctx: Context, context: ContextArg = None, system: System = None,
                       temperature: Temperature = None, max_tokens: MaxTokens = None, tools: Tools = None,
                       extraction: Extraction = None) -> Annotated[CallToolResult, PatternResult]:
            return await call(ctx, prompt=prompt, context=context, system=system, temperature=temperature,
                              max_tokens=max_tokens, tools=tools, extraction=extraction)
    tool.__name__ = tool_name(pattern)
    return tool


def build_server(settings: Settings, engine: Engine | None = None) -> MCPServer:
    """The MCP server over an engine (built from ``settings`` when not given). Loads no model."""
    engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Engine]:
        async with anyio.create_task_group() as tg:
            if settings.warmup:
                async def warm() -> None:
                    try:
                        await engine.warmup()
                    except MageError as e:
                        log.warning("warm-up failed: %s", e)
                    except Exception as e:  # noqa: BLE001 - one line, and the server keeps serving
                        log.error("warm-up failed (%s): %s; the models load on first use instead",
                                  type(e).__name__, e)

                tg.start_soon(warm)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()

    server = MCPServer(
        name="mcp-mageagent",
        instructions="Local multi-model orchestration. Each mage_* tool runs one pattern and returns the answer "
                     "plus tool calls (in structuredContent.tool_calls) for YOU to carry out; this server never "
                     "runs them. Unsure which to use? Call mage_auto.",
        version="0.1.0",
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    annotations = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False,
                                  open_world_hint=False)
    for pattern in engine.pattern_names():
        server.add_tool(_make_tool(engine, pattern, with_swap=pattern == "compete"), name=tool_name(pattern),
                        title=f"MageAgent {pattern}",
                        description=(DESCRIPTIONS.get(pattern) or engine.descriptions[pattern]) + " " + _COST,
                        annotations=ToolAnnotations(title=f"MageAgent {pattern}",
                                                    **annotations.model_dump(exclude={"title"})),
                        structured_output=True)

    @server.resource("mageagent://models", name="models", mime_type="application/json",
                     description="Every role's model: id, backend, quantization, size, loaded, last use; "
                                 "plus the memory budget and use.")
    def models() -> str:
        return json.dumps(engine.models_state(), indent=2)

    @server.resource("mageagent://models/{role}", name="model", mime_type="application/json",
                     description="One role's model state (role: primary, competitor, validator, tools).")
    def model(role: str) -> str:
        if role not in ROLES:
            raise ResourceError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        return json.dumps(engine.models_state()["roles"][role], indent=2)

    return server


def _configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not root.handlers:  # MCPServer normally installed its stderr handler already
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        root.addHandler(h)
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(settings.log_file)
        fh.setFormatter(fmt)
        root.addHandler(fh)


def main(argv: list[str] | None = None) -> int:
    """Console entry: ``mcp-mageagent [--config F] [--transport stdio|streamable-http] [--host] [--port]``."""
    p = argparse.ArgumentParser(prog="mcp-mageagent", description="MCP server for MageAgent orchestration.")
    p.add_argument("--config", help="TOML config file (default: $MAGEAGENT_CONFIG)")
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="bind address for streamable-http (loopback by default)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--warmup", action="store_true", help="load the models in the background at start")
    args = p.parse_args(argv)
    try:
        settings = load_settings(args.config, warmup=True if args.warmup else None)
        preload_openblas(settings.blas)
        server = build_server(settings)  # a remote role's missing api_key_env is reported here
        key = api_key(settings.http, args.host, os.environ) if args.transport != "stdio" else None
    except MageError as e:
        sys.stderr.write(f"mcp-mageagent: {e}\n")
        return 2
    _configure_logging(settings)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        # The SDK's Host/Origin checks on every host (it enables them for loopback names only), our body limit,
        # and the API key off loopback.
        app = server.streamable_http_app(transport_security=transport_security(settings.http), host=args.host,
                                         max_request_body_size=settings.http.max_body_bytes)
        config = uvicorn.Config(require_bearer(app, key) if key else app, host=args.host, port=args.port,
                                log_level=settings.log_level.lower())
        anyio.run(uvicorn.Server(config).serve)
    return 0
