"""The MCP server: every pattern an MCP tool, the models as resources, progress and cancellation.

Thin over :mod:`orchestration`: declare tools and resources, call the engine, map its errors.
Nothing here writes to stdout; on stdio that is the protocol channel.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from mcp_types import Tool as MCPTool
from pydantic import Field, ValidationError

from mcp_mageagent.compact import compact_schema
from mcp_mageagent.guard import bounded_stdin, screened
from mcp_mageagent.tasks import TasksExtension, TaskStore, current_task
from orchestration.models.blas import preload_openblas
from orchestration.patterns.engine import Engine
from orchestration.faces.access import (allowed_hosts, allowed_origins, api_key, check_prompt_size,
                                        check_verification, http_protocol, one_line, require_bearer)
from orchestration.core.errors import ConfigError, MageError, ModelNotFoundError, PatternError
from orchestration.faces.format import for_host, result_text, trace_line
from orchestration.core.settings import ROLES, Settings, load_settings
from orchestration.tools.catalogue import resolve_tools
from orchestration.core.types import PatternRequest, PatternResult, ToolDefinition

__all__ = ["build_server", "main", "DESCRIPTIONS", "tool_name", "tool_args"]

log = logging.getLogger("mcp_mageagent")

# What a model needs to choose a tool and fill it; every word is sent with each turn of the host's model (see
# orchestration/bench/footprint.py). What all tools share is said once, in the server's instructions.
DESCRIPTIONS: dict[str, str] = {
    "auto": "Unsure which tool? Routes code tasks to {auto_coding}, analysis to hybrid, the rest to the fast "
            "validator model.",
    "hybrid": "Best general use: the reasoning model answers, plus the tool calls it needs (files, shell). "
              "Cost ~1.5x primary.",
    "validated": "Code that must be right: answer, sandboxed tests (else a review), repair on failure, tool "
                 "calls. Cost ~2x primary.",
    "compete": "Critical code: two models answer; tests, else the stronger model or a judge, pick one; its tool "
               "calls. Cost ~3x primary.",
    "tools": "Fastest: the request straight to tool calls (Read, Write, Edit, Bash, Glob, Grep or yours), "
             "no reasoning. Cost ~0.15x primary.",
    "primary": "The reasoning model alone, no tool calls: explain, reason, plan. Cost 1x.",
    "validator": "The small fast model alone: simple questions, quick checks.",
    "competitor": "The coding model alone: a second opinion on code.",
}
_INSTRUCTIONS = ("Local multi-model orchestration: each mage_* tool runs one pattern on models on this machine "
                 "and returns the answer plus tool calls (structuredContent.tool_calls) for YOU to run; this "
                 "server runs none. Unsure which to use? Call mage_auto.")

Prompt = Annotated[str, Field(min_length=1, description="The whole task.")]
ContextArg = Annotated[str | None, Field(description="Code or text to see.")]
System = Annotated[str | None, Field(description="System prompt.")]
Temperature = Annotated[float | None, Field(ge=0, le=2, description="0 = greedy.")]
MaxTokens = Annotated[int | None, Field(ge=1, le=32768, description="Token limit per answer.")]
Tools = Annotated[list[ToolDefinition] | None, Field(
    description="Your tools; default Read, Write, Edit, Bash, Glob, Grep.")]
Extraction = Annotated[Literal["auto", "always", "never"] | None, Field(
    description="When to make tool calls; auto: when needed.")]
Swap = Annotated[bool | None, Field(description="Judge twice, A and B swapped.")]
Verify = Annotated[Literal["model", "execute", "auto"] | None, Field(
    description="execute: sandboxed tests.")]
Tests = Annotated[list[str] | None, Field(description="Asserts to pass.")]
# Bounds are checked by PatternRequest; the published schema stays short (it is sent with every turn).
Deadline = Annotated[float | None, Field(description="Seconds; then the best so far.")]
_ARGS: dict[str, Any] = {"prompt": Prompt, "context": ContextArg, "system": System, "temperature": Temperature,
                         "max_tokens": MaxTokens, "tools": Tools, "extraction": Extraction, "swap": Swap,
                         "verify": Verify, "tests": Tests, "deadline_s": Deadline}
_DIRECT = ("primary", "validator", "competitor")  # one model answers: no tool calls to target or extract
# Progress at least this often while a call runs (a step start, then each second of tokens, else this beat):
# Claude Code aborts a call silent for 30 min on stdio, 5 min over HTTP (each notification resets that clock).
HEARTBEAT_S = 15.0


def tool_args(pattern: str) -> list[str]:
    """The arguments a pattern's tool takes: what the pattern reads, nothing it would ignore."""
    names = ["prompt", "context", "system", "temperature", "max_tokens"]
    if pattern not in _DIRECT:
        names.append("tools")
        if pattern != "tools":  # the tools pattern always extracts
            names.append("extraction")
    if pattern in ("validated", "compete"):  # the patterns that check code
        names += ["verify", "tests"]
    if pattern in ("auto", "hybrid", "validated", "compete"):  # the multi-step ones (settings deadline_s: all)
        names.append("deadline_s")
    if pattern == "compete":
        names.append("swap")
    return names


class _Server(MCPServer):
    """``tools/list`` with compact schemas (calls are still validated against pydantic's full ones)."""

    async def list_tools(self) -> list[MCPTool]:
        return [t.model_copy(update={
            "input_schema": compact_schema(t.input_schema, lean=True),
            "output_schema": compact_schema(t.output_schema, nullable=True) if t.output_schema else None})
            for t in await super().list_tools()]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:  # the SDK's argument check: pydantic's many lines and docs URL -> one line
            if not isinstance(e, UnexpectedToolError) and isinstance(e.__cause__, ValidationError):
                raise ToolError(one_line(e.__cause__)) from e.__cause__
            raise  # a crash stays one (its text stays in the server log)

    max_line_bytes = 4 * 1024 * 1024  # set from http.max_body_bytes by build_server

    async def run_stdio_async(self) -> None:
        """stdio with every request answered, its lines and the requests in flight bounded (mcp_mageagent.guard)."""
        with bounded_stdin(self.max_line_bytes) as stdin:
            transport = stdio_server(stdin=stdin)  # type: ignore[arg-type]  # an async iterable of lines suffices
            async with transport as (read, write), screened(read, write) as (read, write):
                low = self._lowlevel_server
                await low.run(read, write, low.create_initialization_options())


def tool_name(pattern: str) -> str:
    return f"mage_{pattern}"


def _error_message(e: MageError) -> str:
    msg = str(e)
    cause = e.__cause__
    if isinstance(e, PatternError) and isinstance(cause, ModelNotFoundError) and "setup" not in msg:
        msg += " Run `mageagent setup` for the embedded model."
    return msg


def _make_tool(engine: Engine, pattern: str) -> Callable[..., Awaitable[CallToolResult]]:
    async def call(ctx: Context, **kw: Any) -> CallToolResult:
        try:
            request = PatternRequest(**{k: v for k, v in kw.items() if v is not None})
        except ValidationError as e:
            raise ToolError(one_line(e)) from e
        try:
            check_prompt_size(request, engine.settings.http.max_prompt_chars)  # before anything is tokenized
            if request.tools:
                resolve_tools(request.tools)  # a bad host schema is refused before any model runs
        except MageError as e:
            raise ToolError(str(e)) from e
        counter, last_sent, last_message, started = 0, time.monotonic(), "started", time.monotonic()

        task = current_task()  # a call run as an MCP task reports its step as the task's status, not as progress

        async def send(message: str) -> None:
            nonlocal counter, last_sent
            counter += 1
            last_sent = time.monotonic()
            if task is not None:
                task.note(message)
                return
            try:
                await ctx.report_progress(counter, None, message)
            except Exception:  # a client that went away must not break generation bookkeeping
                log.debug("progress notification failed", exc_info=True)

        async def progress(step: int, purpose: str, role: str, tokens: int, message: str) -> None:
            nonlocal last_message
            last_message = message
            await send(message)

        async def heartbeat() -> None:
            # A model load or a long prompt read streams no tokens; hosts abort a call that is silent too long.
            while True:
                await anyio.sleep(HEARTBEAT_S - (time.monotonic() - last_sent))
                if time.monotonic() - last_sent >= HEARTBEAT_S:
                    await send(f"{last_message} (working, {time.monotonic() - started:.0f}s)")

        failure: MageError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            try:
                result = await engine.run(pattern, request, progress)
            except MageError as e:  # raised outside the task group, which would wrap it
                failure = e
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:  # user, model and pattern errors alike: the calling model reads the message
            raise ToolError(_error_message(failure)) from failure
        log.info("%s: %s", tool_name(pattern), trace_line(result))
        result = for_host(result, engine.settings.trace_detail)
        return CallToolResult(content=[TextContent(type="text", text=result_text(result, for_host=True))],
                              structured_content=result.model_dump(mode="json"))

    async def tool(ctx: Context, **kw: Any) -> CallToolResult:
        return await call(ctx, **kw)

    # The SDK reads a tool's schema from its signature: give this one exactly the arguments its pattern uses.
    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_ARGS[name],
                                default=inspect.Parameter.empty if name == "prompt" else None)
              for name in tool_args(pattern)]
    params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
    returns = Annotated[CallToolResult, PatternResult]
    tool.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    tool.__name__ = tool_name(pattern)
    return tool


def _description(pattern: str, engine: Engine) -> str:
    text = DESCRIPTIONS.get(pattern) or engine.descriptions[pattern]
    return text.replace("{auto_coding}", engine.settings.auto_coding)  # the profile's measured route


def build_server(settings: Settings, engine: Engine | None = None) -> MCPServer:
    """The MCP server over an engine (built from ``settings`` when not given). Loads no model."""
    engine = engine or Engine(settings)
    unknown = [p for p in settings.publish or [] if p not in engine.pattern_names()]
    if unknown:  # checked here, where the pattern table is, not in the settings below it
        raise ConfigError(f"publish: unknown pattern(s) {', '.join(unknown)}; known: "
                          f"{', '.join(engine.pattern_names())}")
    tasks = TaskStore(settings.tasks)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Engine]:
        async with tasks.running(), anyio.create_task_group() as tg:
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

    server = _Server(
        name="mcp-mageagent",
        instructions=_INSTRUCTIONS,
        version="0.1.0",
        lifespan=lifespan,
        log_level=settings.log_level,
        extensions=[TasksExtension(tasks, {tool_name(p) for p in settings.tasks.patterns})],
    )
    server.max_line_bytes = settings.http.max_body_bytes
    annotations = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False,
                                  open_world_hint=False)
    for pattern in engine.pattern_names():
        if settings.publish is not None and pattern not in settings.publish:
            continue
        server.add_tool(_make_tool(engine, pattern), name=tool_name(pattern),
                        title=f"MageAgent {pattern}",
                        description=_description(pattern, engine),
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
        try:
            settings.log_file.parent.mkdir(parents=True, exist_ok=True)
            # Prompts and answers land in the log: owner-only, created so and tightened if it already existed.
            os.close(os.open(settings.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            os.chmod(settings.log_file, 0o600)
            fh = logging.FileHandler(settings.log_file)
        except OSError as e:
            raise ConfigError(f"log_file {settings.log_file}: cannot be written ({e.strerror or e})") from e
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
        check_verification(settings)
        server = build_server(settings)  # a remote role's missing api_key_env is reported here
        key = api_key(settings.http, args.host, os.environ) if args.transport != "stdio" else None
        _configure_logging(settings)
    except MageError as e:
        sys.stderr.write(f"mcp-mageagent: {e}\n")
        return 2
    if args.transport == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        # The SDK's Host/Origin checks on every host (it enables them for loopback names only), our body limit,
        # and the API key off loopback.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                             allowed_hosts=allowed_hosts(settings.http),
                                             allowed_origins=allowed_origins(settings.http))
        app = server.streamable_http_app(transport_security=security, host=args.host,
                                         max_request_body_size=settings.http.max_body_bytes)
        config = uvicorn.Config(require_bearer(app, key) if key else app, host=args.host, port=args.port,
                                log_level=settings.log_level.lower(), http=http_protocol(settings.http))
        anyio.run(uvicorn.Server(config).serve)
    return 0
