"""MCP tasks (SEP-2663): a declaring client gets a task for a long tool, polls it, cancels it, sees it expire.

The in-memory client covers who gets a task and who does not; the real stdio server (over the scripted fake,
answering by shape) covers a task created, polled to its result, cancelled mid-step and expired, as a host
sees them on the wire.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Literal

import anyio
import pytest
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim, advertise
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Request, RequestParams, Result

from mcp_mageagent.server import build_server
from mcp_mageagent.tasks import EXTENSION_ID
from orchestration.patterns.engine import Engine
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings

pytestmark = pytest.mark.anyio
P, V, T = FAKE_MODELS["primary"], FAKE_MODELS["validator"], FAKE_MODELS["tools"]
MODERN = "2026-07-28"


# -- a requester for the extension, as a host would have it --------------------------------------------------
class TaskHandle(Result):
    result_type: Literal["task"]
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskState(Result):
    task_id: str
    status: str
    status_message: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(RequestParams):
    task_id: str


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


async def get_task(client: Client, task_id: str) -> TaskState:
    return await client.session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), TaskState)


async def poll(client: Client, task_id: str, seen: list[TaskState], until: set[str], timeout: float = 30,
               every: float = 0.05) -> TaskState:
    with anyio.fail_after(timeout):
        while True:
            state = await get_task(client, task_id)
            seen.append(state)
            if state.status in until:
                return state
            await anyio.sleep(every)


class Tasks(ClientExtension):
    """Declares the extension; a task answer is polled to its end and its result returned as the call's."""

    identifier = EXTENSION_ID

    def __init__(self) -> None:
        self.seen: list[TaskState] = []

    def claims(self) -> list[ResultClaim[Any]]:
        async def resolve(handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
            state = TaskState.model_validate(handle.model_dump(by_alias=True))
            while state.status == "working":
                await anyio.sleep(0.05)
                state = await ctx.session.send_request(GetTask(params=TaskIdParams(task_id=handle.task_id)),
                                                       TaskState)
                self.seen.append(state)
            assert state.status == "completed", state
            return CallToolResult.model_validate(state.result)

        return [ResultClaim(result_type="task", model=TaskHandle, resolve=resolve)]


# -- in memory: who gets a task ---------------------------------------------------------------------------------
def server(fake: ScriptedBackend, **tasks: Any):  # noqa: ANN201
    settings = fake_settings(tasks={"patterns": ["validated"], **tasks})
    return build_server(settings, Engine(settings, {"mlx": fake}))


def script_validated(fake: ScriptedBackend, delay: float = 0.0) -> None:
    fake.enqueue("def add(a, b): return a + b", model=P, delay=delay)
    fake.enqueue("PASS", model=V)
    fake.enqueue([], model=T)


async def test_a_declaring_client_gets_a_task_and_its_result_by_polling() -> None:
    fake = ScriptedBackend()
    script_validated(fake, delay=0.02)
    ext = Tasks()
    async with Client(server(fake), mode="auto", extensions=[ext]) as client:  # server/discover, then 2026-07-28
        assert client.protocol_version == MODERN
        assert EXTENSION_ID in (client.server_capabilities.extensions or {})
        result = await client.call_tool("mage_validated", {"prompt": "Write add(a, b)", "extraction": "always"})
    assert not result.is_error, result.content
    assert result.structured_content["pattern"] == "validated"
    assert ext.seen and ext.seen[-1].status == "completed" and ext.seen[-1].ttl_ms is not None
    working = [s.status_message for s in ext.seen if s.status == "working"]
    assert any(m and "answer" in m for m in working), working  # the step running now, from the progress callback


async def test_tasks_cancel_stops_the_generation_mid_answer_and_the_task_reads_cancelled() -> None:
    fake = ScriptedBackend()
    fake.enqueue(" ".join(["word"] * 400), model=P, delay=0.02)  # 8 s of answer
    seen: list[TaskState] = []
    async with Client(server(fake), mode="auto", extensions=[Tasks()]) as client:
        handle = await client.session.call_tool("mage_validated", {"prompt": "Write add(a, b)"}, allow_claimed=True)
        assert isinstance(handle, TaskHandle)
        with anyio.fail_after(5):
            while not (seen and "tokens" in (seen[-1].status_message or "")):
                seen.append(await get_task(client, handle.task_id))
                await anyio.sleep(0.02)
        await client.session.send_request(CancelTask(params=TaskIdParams(task_id=handle.task_id)), Result)
        final = await poll(client, handle.task_id, seen, {"completed", "failed", "cancelled"}, timeout=2)
    assert final.status == "cancelled" and fake.cancelled == 1  # the generation itself was stopped
    assert len(fake.history) == 1  # no later step ran


@pytest.mark.parametrize("case", ["undeclared", "untargeted-tool", "legacy"])
async def test_other_clients_and_tools_get_plain_calls(case: str) -> None:
    fake = ScriptedBackend()
    tool = "mage_validated"
    if case == "untargeted-tool":
        tool = "mage_primary"
        fake.enqueue("hello", model=P)
    else:
        script_validated(fake)
    ext = {"undeclared": [], "untargeted-tool": [Tasks()], "legacy": [advertise(EXTENSION_ID)]}[case]
    async with Client(server(fake), mode="legacy" if case == "legacy" else MODERN, extensions=ext) as client:
        result = await client.session.call_tool(tool, {"prompt": "Write add(a, b)"}, allow_claimed=True)
    assert isinstance(result, CallToolResult) and not result.is_error, result


async def test_task_methods_refuse_clients_without_the_extension_and_unknown_ids() -> None:
    async with Client(server(ScriptedBackend()), mode=MODERN) as client:
        with pytest.raises(MCPError) as e:
            await get_task(client, "x")
    assert e.value.error.code == -32021
    async with Client(server(ScriptedBackend()), mode=MODERN, extensions=[Tasks()]) as client:
        with pytest.raises(MCPError) as e:
            await get_task(client, "no-such-task")
    assert e.value.error.code == -32602 and "not found" in e.value.error.message


# -- the real stdio server ---------------------------------------------------------------------------------------
SERVER = r"""
import os
from orchestration.patterns.engine import Engine
from orchestration.core.settings import load_settings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend
from mcp_mageagent.server import _configure_logging, build_server

class ByShape(ScriptedBackend):
    # A prompt that says 'slowly' answers in 400 words at 20 per second; any other in 4.
    async def stream(self, request, on_chunk=None):
        c = request.constraint
        slow = "slowly" in request.messages[-1].content
        text = (c.options[0] + ": fine" if c.options else "[]") if c is not None else " ".join(
            ["word"] * (400 if slow else 4))
        self.enqueue(text, delay=0.05 if slow else 0.0)
        return await super().stream(request, on_chunk)

env = {k: v for k, v in os.environ.items() if k.startswith("MAGEAGENT_TASKS__") or k.startswith("MAGEAGENT_LOG")}
settings = load_settings(env=env, roles={r: {"model": m} for r, m in FAKE_MODELS.items()}, verify="model")
_configure_logging(settings)
build_server(settings, Engine(settings, {"mlx": ByShape()})).run("stdio")
"""


def stdio(tmp_path, **env: str) -> StdioServerParameters:  # noqa: ANN001
    return StdioServerParameters(command=sys.executable, args=["-c", SERVER], env={
        **os.environ, "MAGEAGENT_TASKS__PATTERNS": "validated,compete", "MAGEAGENT_LOG_LEVEL": "INFO",
        "MAGEAGENT_LOG_FILE": str(tmp_path / "server.log"), **env})


async def test_over_stdio_a_task_is_created_polled_to_its_result_and_expires(tmp_path) -> None:  # noqa: ANN001
    seen: list[TaskState] = []
    async with Client(stdio(tmp_path, MAGEAGENT_TASKS__TTL_S="1.5"), mode="auto", extensions=[Tasks()]) as client:
        assert client.protocol_version == MODERN  # the SDK server answers server/discover: no handshake
        t0 = time.perf_counter()
        handle = await client.session.call_tool("mage_validated", {"prompt": "Write add(a, b)"}, allow_claimed=True)
        created_s = time.perf_counter() - t0
        assert isinstance(handle, TaskHandle) and handle.status == "working" and handle.ttl_ms is None
        done = await poll(client, handle.task_id, seen, {"completed", "failed", "cancelled"})
        assert done.status == "completed", done
        result = CallToolResult.model_validate(done.result)
        assert not result.is_error and result.structured_content["pattern"] == "validated"
        assert done.ttl_ms is not None and done.ttl_ms >= 1500
        # a plain tool is still a plain call on the same connection
        plain = await client.session.call_tool("mage_primary", {"prompt": "hi"}, allow_claimed=True)
        assert isinstance(plain, CallToolResult) and not plain.is_error
        await anyio.sleep(1.7)  # past the TTL: the result is dropped
        with pytest.raises(MCPError) as e:
            await get_task(client, handle.task_id)
    assert created_s < 5
    assert e.value.error.code == -32602 and "expired" in e.value.error.message
    assert [s.status for s in seen].count("completed") == 1


async def test_over_stdio_a_task_cancelled_mid_step_stops_and_the_next_call_answers(tmp_path) -> None:  # noqa: ANN001
    seen: list[TaskState] = []
    async with Client(stdio(tmp_path), mode="auto", extensions=[Tasks()]) as client:
        # 400 words at 20/s: 20 s for the first step alone
        handle = await client.session.call_tool("mage_validated", {"prompt": "Write add(a, b) slowly"},
                                                allow_claimed=True)
        assert isinstance(handle, TaskHandle)
        with anyio.fail_after(10):  # until the answer step reports its tokens
            while not (seen and "tokens" in (seen[-1].status_message or "")):
                seen.append(await get_task(client, handle.task_id))
                await anyio.sleep(0.05)
        assert seen[-1].status == "working"
        t0 = time.perf_counter()
        await client.session.send_request(CancelTask(params=TaskIdParams(task_id=handle.task_id)), Result)
        final = await poll(client, handle.task_id, seen, {"completed", "failed", "cancelled"}, timeout=5)
        cancelled_s = time.perf_counter() - t0
        result = await client.call_tool("mage_primary", {"prompt": "hi"})
        next_s = time.perf_counter() - t0
    assert final.status == "cancelled" and final.result is None
    assert cancelled_s < 1.0, cancelled_s  # one chunk of the fake is 0.05 s
    assert not result.is_error and next_s < 2.0
    log = (tmp_path / "server.log").read_text()
    assert f"task {handle.task_id} cancelled" in log and "pattern validated done" not in log


async def test_past_max_running_a_call_is_a_plain_call() -> None:
    fake = ScriptedBackend()
    fake.enqueue(" ".join(["word"] * 200), model=P, delay=0.02)  # the task: 4 s of answer
    script_validated(fake)  # the plain call
    async with Client(server(fake, max_running=1), mode="auto", extensions=[Tasks()]) as client:
        first = await client.session.call_tool("mage_validated", {"prompt": "Write add(a, b)"}, allow_claimed=True)
        second = await client.session.call_tool("mage_validated", {"prompt": "Write sub(a, b)"}, allow_claimed=True)
        assert isinstance(first, TaskHandle) and isinstance(second, CallToolResult) and not second.is_error
        await client.session.send_request(CancelTask(params=TaskIdParams(task_id=first.task_id)), Result)


@pytest.mark.real_model
async def test_over_streamable_http_a_task_on_the_tiny_model_is_polled_to_its_answer(tmp_path) -> None:  # noqa: ANN001
    import socket
    import subprocess

    from orchestration.models.testing import free_port

    port = free_port()
    env = {**os.environ, "MAGEAGENT_PROFILE": "tiny", "MAGEAGENT_TASKS__PATTERNS": "primary"}
    with (tmp_path / "server.err").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mcp_mageagent", "--transport", "streamable-http",
                                 "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        with anyio.fail_after(60):
            while True:
                assert proc.poll() is None, (tmp_path / "server.err").read_text()[-2000:]
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    await anyio.sleep(0.2)
        seen: list[TaskState] = []
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="auto", extensions=[Tasks()]) as client:
            assert client.protocol_version == MODERN
            handle = await client.session.call_tool("mage_primary", {"prompt": "Say hi", "max_tokens": 8},
                                                    allow_claimed=True)
            assert isinstance(handle, TaskHandle)
            done = await poll(client, handle.task_id, seen, {"completed", "failed", "cancelled"}, timeout=90)
    finally:
        proc.terminate()
        proc.wait(10)
    assert done.status == "completed", done
    assert CallToolResult.model_validate(done.result).structured_content["text"].strip()
    assert any("answer" in (s.status_message or "") for s in seen if s.status == "working")
