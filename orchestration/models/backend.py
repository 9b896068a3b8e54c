"""The small seam every pattern stands on: a backend streams one generation; ``generate`` joins it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ..core.types import Chunk, Completion, GenerationRequest
from .pool import ModelSpec, ModelState

__all__ = ["OnChunk", "Backend", "generate"]

OnChunk = Callable[[Chunk], Awaitable[None]]


@runtime_checkable
class Backend(Protocol):
    """Runs generations for model keys. Streaming is the primitive: ``on_chunk`` hears every piece."""

    name: str

    async def stream(self, request: GenerationRequest, on_chunk: OnChunk | None = None) -> Completion:
        """Generate for ``request``, calling ``on_chunk`` as text arrives; return the finished completion."""
        ...

    def resolve(self, model: str) -> ModelSpec:
        """What ``model`` names (path, size, quantization) without loading it; raises ModelNotFoundError."""
        ...

    def state(self) -> list[ModelState]:
        """Every model this backend knows: loaded or not, size, last use."""
        ...

    async def warmup(self, models: list[str], pin: bool = False) -> None:
        """Load these models now (one token through each); ``pin`` keeps them loaded."""
        ...

    def close(self) -> None:
        """Release threads and memory."""
        ...


async def generate(backend: Backend, request: GenerationRequest) -> Completion:
    """The join over ``stream``: the whole completion, no callback."""
    return await backend.stream(request)
