"""The model pool: lazy loading, a memory budget with least-recently-used unloading, pinning.

The pool is plain bookkeeping around an injected ``loader``; the MLX backend calls it only from
its owner thread, and ``state()`` may be read from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from ..core.errors import ModelLoadError

__all__ = ["ModelSpec", "ModelState", "ModelPool"]

log = logging.getLogger(__name__)
GB = 1024**3


class ModelSpec(BaseModel):
    """A model the pool can load; ``key`` identifies one loaded copy (roles naming the same key share it)."""

    key: str
    model: str
    backend: str = "mlx"
    quantization: str | None = None
    size_bytes: int = 0  # the weights
    kv_reserve_bytes: int = 0  # room kept for the KV cache of one call (context up to KV_RESERVE_TOKENS)

    @property
    def budget_bytes(self) -> int:
        """What the model takes from the memory budget while loaded: weights plus its KV reserve."""
        return self.size_bytes + self.kv_reserve_bytes


class ModelState(BaseModel):
    key: str
    model: str
    backend: str
    quantization: str | None
    size_gb: float
    loaded: bool
    pinned: bool
    last_used: str | None
    load_seconds: float | None
    loads: int


class _Entry:
    def __init__(self, spec: ModelSpec, handle: Any, load_seconds: float, now: float) -> None:
        self.spec = spec
        self.handle = handle
        self.load_seconds = load_seconds
        self.last_used = now


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class ModelPool:
    """Loads models on first use and keeps the loaded set within ``budget_bytes``."""

    def __init__(
        self,
        loader: Callable[[ModelSpec], Any],
        budget_bytes: int,
        *,
        release: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._loader = loader
        self.budget_bytes = budget_bytes
        self._release = release or (lambda: None)
        self._clock = clock
        self._loaded: dict[str, _Entry] = {}
        self._pinned: set[str] = set()
        self._known: dict[str, ModelSpec] = {}
        self._last_used: dict[str, float] = {}
        self._loads: dict[str, int] = {}
        self._lock = threading.RLock()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.spec.budget_bytes for e in self._loaded.values())

    def register(self, spec: ModelSpec) -> None:
        """Make a model known (for the state report) without loading it."""
        with self._lock:
            self._known.setdefault(spec.key, spec)

    def is_loaded(self, key: str) -> bool:
        with self._lock:
            return key in self._loaded

    def acquire(self, spec: ModelSpec) -> Any:
        """Return the loaded handle for ``spec``, loading it (and unloading others) if needed."""
        with self._lock:
            self._known.setdefault(spec.key, spec)
            entry = self._loaded.get(spec.key)
            if entry is not None:
                entry.last_used = self._last_used[spec.key] = self._clock()
                return entry.handle
            if spec.budget_bytes > self.budget_bytes:
                raise ModelLoadError(
                    f"model {spec.model} needs about {spec.budget_bytes / GB:.1f} GB (weights and KV cache) but "
                    f"the memory budget is "
                    f"{self.budget_bytes / GB:.1f} GB; raise memory_budget_gb (MAGEAGENT_MEMORY_BUDGET_GB)"
                )
            self._make_room(spec.budget_bytes, keep=spec.key)
        t0 = time.perf_counter()
        handle = self._loader(spec)
        seconds = time.perf_counter() - t0
        with self._lock:
            now = self._clock()
            self._loaded[spec.key] = _Entry(spec, handle, seconds, now)
            self._last_used[spec.key] = now
            self._loads[spec.key] = self._loads.get(spec.key, 0) + 1
        log.info("loaded %s in %.2fs (%.2f GB)", spec.model, seconds, spec.size_bytes / GB)
        return handle

    def _make_room(self, need: int, keep: str) -> None:
        while self.used_bytes + need > self.budget_bytes:
            victims = [e for k, e in self._loaded.items() if k not in self._pinned and k != keep]
            if not victims:
                raise ModelLoadError(
                    f"cannot fit {need / GB:.1f} GB within the memory budget of {self.budget_bytes / GB:.1f} GB: "
                    f"the loaded models are pinned ({', '.join(sorted(self._pinned))}); unpin one or raise "
                    "memory_budget_gb"
                )
            lru = min(victims, key=lambda e: e.last_used)
            self._unload_locked(lru.spec.key, "least recently used, to fit the memory budget")

    def _unload_locked(self, key: str, why: str) -> None:
        entry = self._loaded.pop(key, None)
        if entry is None:
            return
        log.info("unloading %s (%s)", entry.spec.model, why)
        del entry
        self._release()

    def unload(self, key: str) -> bool:
        """Unload ``key`` and give its memory back; False if it was not loaded."""
        with self._lock:
            if key not in self._loaded:
                return False
            self._unload_locked(key, "asked to")
            return True

    def unload_all(self) -> None:
        """Drop every loaded model (pinned ones too) and give the memory back."""
        with self._lock:
            for key in list(self._loaded):
                self._unload_locked(key, "shutting down")

    def pin(self, key: str) -> None:
        with self._lock:
            self._pinned.add(key)

    def unpin(self, key: str) -> None:
        with self._lock:
            self._pinned.discard(key)

    def state(self) -> list[ModelState]:
        with self._lock:
            out = []
            for key, spec in self._known.items():
                entry = self._loaded.get(key)
                out.append(
                    ModelState(
                        key=key,
                        model=spec.model,
                        backend=spec.backend,
                        quantization=spec.quantization,
                        size_gb=round(spec.size_bytes / GB, 3),
                        loaded=entry is not None,
                        pinned=key in self._pinned,
                        last_used=_iso(self._last_used.get(key)),
                        load_seconds=None if entry is None else round(entry.load_seconds, 3),
                        loads=self._loads.get(key, 0),
                    )
                )
            return out
