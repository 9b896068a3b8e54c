"""One owner thread per device: all MLX loading and generation runs there, fed by a queue.

MLX arrays and streams belong to the thread that made them, so async callers never touch MLX:
they submit a job, receive its events (progress) while it runs, and await its result. Cancelling
the awaiting task sets the job's flag, which the token loop checks every step.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from ..core.errors import GenerationCancelled

__all__ = ["Job", "DeviceWorker"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Job(Generic[T]):
    """A unit of work for the owner thread, with its cancel flag and event channel."""

    def __init__(self, fn: Callable[[Job[T]], T] | None, on_event: Callable[[Any], None] | None = None) -> None:
        self.fn = fn
        self.future: Future[T] = Future()
        self.cancel_flag = threading.Event()
        self._on_event = on_event

    def cancel(self) -> None:
        self.cancel_flag.set()

    def check_cancelled(self) -> None:
        """Raise GenerationCancelled if the caller gave up; call once per token."""
        if self.cancel_flag.is_set():
            raise GenerationCancelled("generation cancelled by the caller")

    def emit(self, event: Any) -> None:
        if self._on_event is not None:
            self._on_event(event)


class DeviceWorker:
    """A single daemon thread that runs submitted jobs one at a time, in order."""

    def __init__(self, name: str = "mlx-owner") -> None:
        self.name = name
        self._queue: queue.Queue[Job[Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.thread_ident: int | None = None
        self.on_stop: list[Callable[[], None]] = []
        self._exit_hook = False

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
                if not self._exit_hook:
                    # MLX arrays must die on the thread that made them, and an MLX thread that exits
                    # can abort the process at shutdown: so at exit the hooks run on the owner thread
                    # (threading's hook runs before finalization) and the daemon thread stays parked.
                    register = getattr(threading, "_register_atexit", atexit.register)
                    register(self.shutdown)
                    self._exit_hook = True

    def _loop(self) -> None:
        self.thread_ident = threading.get_ident()
        while True:
            job = self._queue.get()
            if job.cancel_flag.is_set():
                job.future.set_exception(GenerationCancelled("cancelled before it started"))
                continue
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                result = job.fn(job)
            except GenerationCancelled as e:
                log.info("job cancelled: %s", e)
                job.future.set_exception(e)
            except BaseException as e:  # noqa: BLE001 - every failure travels back to the caller
                job.future.set_exception(e)
            else:
                job.future.set_result(result)

    def submit(self, fn: Callable[[Job[T]], T], on_event: Callable[[Any], None] | None = None) -> Job[T]:
        """Queue ``fn(job)`` for the owner thread; usable from any thread."""
        job: Job[T] = Job(fn, on_event)
        self._ensure_started()
        self._queue.put(job)
        return job

    async def run(
        self,
        fn: Callable[[Job[T]], T],
        on_event: Callable[[Any], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``fn`` on the owner thread and await its result, delivering its events to ``on_event``."""
        return await self.attend(lambda deliver: self.submit(fn, deliver), on_event)

    async def attend(
        self,
        start: Callable[[Callable[[Any], None]], Job[T]],
        on_event: Callable[[Any], Awaitable[None]] | None = None,
    ) -> T:
        """Await a job that ``start(deliver)`` creates (and queues, or hands to a batch), delivering the events
        it emits to ``on_event``; cancelling the caller cancels the job."""
        token = anyio.lowlevel.current_token()
        loop_thread = threading.get_ident()
        send, receive = anyio.create_memory_object_stream[Any](math.inf)

        def deliver(event: Any) -> None:
            try:
                anyio.from_thread.run_sync(send.send_nowait, event, token=token)
            except Exception:  # the caller's loop is gone or the stream is closed: nobody is listening
                pass

        def finished(_: Future[Any]) -> None:
            if threading.get_ident() == loop_thread:  # already done when the callback was added
                send.close()
                return
            try:
                anyio.from_thread.run_sync(send.close, token=token)
            except Exception:
                pass

        job = start(deliver)
        job.future.add_done_callback(finished)
        try:
            async with receive:
                async for event in receive:
                    if on_event is not None:
                        await on_event(event)
            # The stream closes when the job is done; the result is ready now.
            return job.future.result()
        except BaseException:
            job.cancel()
            raise

    def _run_stop_hooks(self, job: Job[None]) -> None:
        for hook in self.on_stop:
            try:
                hook()
            except Exception:
                log.exception("worker stop hook failed")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Run the stop hooks (which free MLX memory) on the owner thread; the thread itself stays parked."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
        if not running:
            return
        job = self.submit(self._run_stop_hooks)
        try:
            job.future.result(timeout)
        except Exception:
            log.warning("worker did not finish its stop hooks within %.0fs", timeout)
