"""MCP tasks (SEP-2663, ``io.modelcontextprotocol/tasks``, protocol revision 2026-07-28): a long call answers at
once with a task, which the host polls with ``tasks/get`` and may stop with ``tasks/cancel``.

Built on the SDK's extension hooks (``mcp.server.extension``: new methods plus a ``tools/call`` interceptor), not
on ``fastmcp-tasks``: that package implements SEP-2663 for FastMCP 4, so it would mean a second server framework
(``fastmcp-slim``) and a Redis-style job queue (``pydocket``, ``burner-redis``, cloudpickle: about thirty packages)
under a server whose work must stay on our one MLX owner thread anyway. What is hand-written here is the task
table: a record per task, its status and result, and a TTL.

- A task is offered only to a request that declares the extension on a 2026-07-28 connection (the SDK cannot
  deliver the ``resultType: "task"`` shape on the handshake era's wire), and only for the tools named in
  ``settings.tasks.patterns``. Everything else is a plain call, as before.
- The work runs in the server's lifespan task group. Its progress (the step now running) is the task's
  ``statusMessage``; no progress notifications are sent for a task (the spec has none on tasks).
- ``tasks/cancel`` cancels the work: the generation loop stops at its next token or prefill chunk.
- A running task is never dropped; a finished one is kept ``ttl_s`` and then dropped (``ttlMs`` says so: null
  while running, then creation-to-expiry).
- Task ids are random UUIDs: over HTTP, a task is reachable only by whoever holds its id.
- At most ``max_running`` tasks work at once; past that a call is a plain call, which the connection's own bound
  on requests in flight holds (a task answers at once, so it would escape that bound).
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, RequestParams
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from orchestration.core.settings import TaskSettings

__all__ = ["EXTENSION_ID", "TaskRecord", "TaskStore", "TasksExtension", "current_task"]

log = logging.getLogger(__name__)

EXTENSION_ID = "io.modelcontextprotocol/tasks"
Status = Literal["working", "completed", "failed", "cancelled"]
_EXPIRED_REMEMBERED = 1024  # ids of dropped tasks kept to say "expired" rather than "not found"
_current: contextvars.ContextVar[TaskRecord | None] = contextvars.ContextVar("mageagent_task", default=None)


def current_task() -> TaskRecord | None:
    """The task whose work is running in this context (None in a plain call)."""
    return _current.get()


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TaskRecord:
    """One task: its status, the step running now, and its result or error once done."""

    task_id: str
    created: float  # wall clock, for the ISO timestamps
    started: float  # monotonic
    status: Status = "working"
    status_message: str | None = "queued"
    updated: float = 0.0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished: float | None = None  # monotonic
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def note(self, message: str) -> None:
        """The step running now (the progress callback's message)."""
        if self.status == "working":
            self.status_message = message
            self.updated = time.time()

    def wire(self, ttl_s: float, poll_ms: int) -> dict[str, Any]:
        """The task as ``tasks/get`` reports it (a DetailedTask)."""
        ttl = None if self.finished is None else round((self.finished - self.started + ttl_s) * 1000)
        out: dict[str, Any] = {"taskId": self.task_id, "status": self.status, "createdAt": _iso(self.created),
                               "lastUpdatedAt": _iso(self.updated or self.created), "ttlMs": ttl,
                               "pollIntervalMs": poll_ms}
        if self.status_message is not None:
            out["statusMessage"] = self.status_message
        if self.status == "completed":
            out["result"] = self.result
        elif self.status == "failed":
            out["error"] = self.error
        return out


class TaskStore:
    """The server's tasks: started in its task group, looked up by id, dropped ``ttl_s`` after they finish."""

    def __init__(self, settings: TaskSettings) -> None:
        self.settings = settings
        self._tasks: dict[str, TaskRecord] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._tg: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TaskStore]:
        """Accept tasks while inside; leaving cancels the work still running (the server is stopping)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    @property
    def accepting(self) -> bool:
        """Running, with room for one more task (``max_running`` bounds the work a client can start and leave)."""
        working = sum(r.finished is None for r in self._tasks.values())
        return self._tg is not None and working < self.settings.max_running

    def start(self, work: Callable[[], Awaitable[dict[str, Any]]]) -> TaskRecord:
        """Record a task and start ``work`` (which returns the final result's wire form); the record exists
        before this returns, so a ``tasks/get`` right after the create answers."""
        if self._tg is None:
            raise RuntimeError("the task store is not running")
        self._purge()
        record = TaskRecord(task_id=str(uuid.uuid4()), created=time.time(), started=time.monotonic())
        self._tasks[record.task_id] = record
        self._tg.start_soon(self._run, record, work)
        return record

    async def _run(self, record: TaskRecord, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        token = _current.set(record)
        result: dict[str, Any] | None = None
        try:
            with record.scope:
                result = await work()
            if result is None:  # the cancel reached the work; one that came after it finished changes nothing
                self._finish(record, "cancelled", "cancelled by the client")
            else:
                record.result = result
                self._finish(record, "completed", "done")
        except MCPError as e:  # a JSON-RPC error of the call itself: the task failed
            record.error = e.error.model_dump(mode="json", by_alias=True, exclude_none=True)
            self._finish(record, "failed", e.error.message)
        except Exception as e:  # noqa: BLE001 - the task reports it; the server keeps serving
            log.exception("task %s failed", record.task_id)
            record.error = {"code": INTERNAL_ERROR, "message": f"{type(e).__name__}: {e}"}
            self._finish(record, "failed", record.error["message"])
        finally:
            if record.finished is None:  # the store itself was cancelled (the server is stopping)
                self._finish(record, "cancelled", "the server stopped")
            _current.reset(token)

    @staticmethod
    def _finish(record: TaskRecord, status: Status, message: str) -> None:
        record.status, record.status_message = status, message
        record.finished, record.updated = time.monotonic(), time.time()
        log.info("task %s %s: %s", record.task_id, status, message)

    def get(self, task_id: str) -> TaskRecord:
        """The task, or INVALID_PARAMS (-32602) naming why it is not there."""
        self._purge()
        record = self._tasks.get(task_id)
        if record is None:
            why = "Task has expired" if task_id in self._expired else "Task not found"
            raise MCPError(code=INVALID_PARAMS, message=f"Failed to retrieve task: {why}", data={"taskId": task_id})
        return record

    def cancel(self, task_id: str) -> TaskRecord:
        """Ask the task's work to stop; it is cancelled once the work has unwound (a finished task stays as is)."""
        record = self.get(task_id)
        if record.finished is None:
            record.note("cancelling")
            record.scope.cancel()
        return record

    def _purge(self) -> None:
        now = time.monotonic()
        for task_id in [t for t, r in self._tasks.items()
                        if r.finished is not None and now - r.finished > self.settings.ttl_s]:
            del self._tasks[task_id]
            self._expired[task_id] = None
            while len(self._expired) > _EXPIRED_REMEMBERED:
                self._expired.popitem(last=False)


class TaskIdParams(RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateTaskParams(TaskIdParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


def declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client declared the extension, on a wire that can carry a task."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and EXTENSION_ID in capabilities.extensions)


class TasksExtension(Extension):
    """``tools/call`` answers with a task for the long tools; ``tasks/get``, ``tasks/cancel``, ``tasks/update``."""

    identifier = EXTENSION_ID

    def __init__(self, store: TaskStore, tools: set[str]) -> None:
        self.store = store
        self.task_tools = tools

    def methods(self) -> list[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [MethodBinding("tasks/get", TaskIdParams, self._get, versions),
                MethodBinding("tasks/cancel", TaskIdParams, self._cancel, versions),
                MethodBinding("tasks/update", UpdateTaskParams, self._update, versions)]

    def _wire(self, record: TaskRecord, result_type: str) -> dict[str, Any]:
        return {"resultType": result_type, **record.wire(self.store.settings.ttl_s, self.store.settings.poll_ms)}

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        require_client_extension(ctx, EXTENSION_ID)
        return self._wire(self.store.get(params.task_id), "complete")

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        require_client_extension(ctx, EXTENSION_ID)
        self.store.cancel(params.task_id)
        return {"resultType": "complete"}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        # Our tasks never ask the client for input: responses to no outstanding request are ignored (spec).
        require_client_extension(ctx, EXTENSION_ID)
        self.store.get(params.task_id)
        return {"resultType": "complete"}

    async def intercept_tool_call(self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        if params.name not in self.task_tools or not self.store.accepting or not declares_tasks(ctx):
            return await call_next(ctx)
        version = ctx.protocol_version

        async def work() -> dict[str, Any]:
            result = await call_next(ctx)
            dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True) \
                if isinstance(result, BaseModel) else dict(result or {})
            return serialize_server_result("tools/call", version, dumped)  # as a plain call would answer

        record = self.store.start(work)
        log.info("%s: task %s", params.name, record.task_id)
        return self._wire(record, "task")
