"""Reuse of identical deterministic generations across the systems of one evaluation run.

Several systems start the same way: he-primary's answer is he-validated's first answer and he-compete's
A, all greedy on the same prompt. A deterministic request (temperature 0, or a seeded sampler, which
draws from its own key) gives the same completion every time, alone or batched (tested), so the run
generates it once; callers asking at the same moment share the one generation. A reused completion says
so (``reused``), and the step that used it records it, so per-item times stay honest.
"""

from __future__ import annotations

from typing import Any

import anyio

from ..core.types import Completion, GenerationRequest
from ..models.backend import Backend, OnChunk
from ..models.pool import ModelSpec, ModelState

__all__ = ["MemoBackend", "memo_key"]


def memo_key(request: GenerationRequest) -> str | None:
    """The request's identity, or None when it samples without a seed (each call may differ)."""
    if request.temperature > 0 and request.seed is None:
        return None
    # Drafting changes the speed, not the greedy output: it is not part of the identity.
    return request.model_copy(update={"draft_model": None, "num_draft_tokens": 3}).model_dump_json()


class MemoBackend:
    """A backend that answers a repeated deterministic request from the first answer."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self._done: dict[str, Completion] = {}
        self._running: dict[str, anyio.Event] = {}
        self.hits = 0
        self.misses = 0

    async def stream(self, request: GenerationRequest, on_chunk: OnChunk | None = None) -> Completion:
        key = memo_key(request)
        if key is None:
            return await self.inner.stream(request, on_chunk)
        while key in self._running and key not in self._done:
            await self._running[key].wait()
        if key in self._done:
            self.hits += 1
            return self._done[key].model_copy(update={"reused": True, "seconds": 0.0})
        self.misses += 1
        event = self._running[key] = anyio.Event()
        try:
            completion = await self.inner.stream(request, on_chunk)
            self._done[key] = completion
            return completion
        finally:
            del self._running[key]
            event.set()  # waiters find the answer, or (on failure) generate it themselves

    def resolve(self, model: str) -> ModelSpec:
        return self.inner.resolve(model)

    def state(self) -> list[ModelState]:
        return self.inner.state()

    async def warmup(self, models: list[str], pin: bool = False) -> None:
        await self.inner.warmup(models, pin)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # the bench and tools reach backend-specific parts
        return getattr(self.inner, name)
