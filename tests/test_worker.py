from __future__ import annotations

import threading
import time

import anyio
import pytest

from orchestration.core.errors import GenerationCancelled
from orchestration.models.worker import DeviceWorker, Job


@pytest.fixture
def worker():  # noqa: ANN201
    w = DeviceWorker("test-owner")
    yield w
    w.shutdown()


def _record(log: list, active: list, tag: str, seconds: float = 0.02):  # noqa: ANN202
    def fn(job: Job) -> str:
        active.append(1)
        assert len(active) == 1, "two jobs ran at once"
        log.append((tag, threading.get_ident()))
        time.sleep(seconds)
        active.pop()
        return tag

    return fn


def test_jobs_from_many_threads_run_one_at_a_time_on_the_owner_thread(worker: DeviceWorker) -> None:
    log: list = []
    active: list = []
    results: list = []

    def client(i: int) -> None:
        results.append(worker.submit(_record(log, active, f"t{i}")).future.result(5))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [f"t{i}" for i in range(6)]
    assert {ident for _, ident in log} == {worker.thread_ident}
    assert worker.thread_ident != threading.get_ident()


@pytest.mark.anyio
async def test_jobs_from_many_tasks_run_serially(worker: DeviceWorker) -> None:
    log: list = []
    active: list = []
    out: list = []

    async def one(i: int) -> None:
        out.append(await worker.run(_record(log, active, f"a{i}")))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert sorted(out) == [f"a{i}" for i in range(5)]
    assert {ident for _, ident in log} == {worker.thread_ident}


@pytest.mark.anyio
async def test_events_stream_back_while_the_job_runs(worker: DeviceWorker) -> None:
    seen: list = []

    def fn(job: Job) -> int:
        for i in range(5):
            job.emit(i)
        return 42

    async def on_event(e: int) -> None:
        seen.append(e)

    assert await worker.run(fn, on_event) == 42
    assert seen == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_exception_reaches_caller_and_worker_keeps_serving(worker: DeviceWorker) -> None:
    def boom(job: Job) -> None:
        raise ValueError("bad job")

    with pytest.raises(ValueError, match="bad job"):
        await worker.run(boom)
    assert await worker.run(lambda job: "still alive") == "still alive"


@pytest.mark.anyio
async def test_cancel_stops_within_one_token(worker: DeviceWorker) -> None:
    steps: list[int] = []
    started = threading.Event()

    def token_loop(job: Job) -> None:
        for i in range(10_000):
            job.check_cancelled()  # what the MLX generation loop does every token
            steps.append(i)
            started.set()
            time.sleep(0.01)

    async def caller() -> None:
        await worker.run(token_loop)

    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            while not started.is_set():
                await anyio.sleep(0.01)
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    n_at_cancel = len(steps)
    # the next job runs only after the cancelled loop has stopped
    assert await worker.run(lambda job: len(steps)) <= n_at_cancel + 1
    assert n_at_cancel < 100


def test_cancelled_before_start_never_runs(worker: DeviceWorker) -> None:
    gate = threading.Event()
    first = worker.submit(lambda job: gate.wait(5))
    ran: list = []
    second = worker.submit(lambda job: ran.append(1))
    second.cancel()
    gate.set()
    first.future.result(5)
    with pytest.raises(GenerationCancelled):
        second.future.result(5)
    assert ran == []


def test_shutdown_runs_stop_hooks_on_the_owner_thread(worker: DeviceWorker) -> None:
    where: list = []
    worker.on_stop.append(lambda: where.append(threading.get_ident()))
    worker.submit(lambda job: None).future.result(5)
    worker.shutdown()
    assert where == [worker.thread_ident]


@pytest.mark.anyio
async def test_the_mlx_backend_resolves_models_on_the_owner_thread(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Resolving can touch the disk or the hub: never on the event loop's thread."""
    import threading

    from orchestration.models.mlx_backend import MLXBackend
    from orchestration.core.types import Completion, GenerationRequest, Message

    backend = MLXBackend(tmp_path, 1.0)
    seen: list[str] = []

    def resolve(model: str):  # noqa: ANN202
        seen.append(threading.current_thread().name)
        return None

    monkeypatch.setattr(backend, "resolve", resolve)
    monkeypatch.setattr(backend, "_generate", lambda job, spec, req: Completion(
        text="x", model=req.model, prompt_tokens=1, completion_tokens=1, seconds=0.0))
    try:
        await backend.stream(GenerationRequest(model="m", messages=[Message(role="user", content="hi")],
                                               max_tokens=1))
    finally:
        backend.close()
    assert seen and seen[0] != threading.main_thread().name and seen[0] == backend.worker._thread.name
