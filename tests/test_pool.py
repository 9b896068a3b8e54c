from __future__ import annotations

import itertools

import pytest

from orchestration.core.errors import ModelLoadError
from orchestration.models.pool import GB, ModelPool, ModelSpec


class Loader:
    def __init__(self) -> None:
        self.loads: list[str] = []
        self.releases = 0

    def __call__(self, spec: ModelSpec) -> str:
        self.loads.append(spec.key)
        return f"handle:{spec.key}"

    def release(self) -> None:
        self.releases += 1


def spec(key: str, gb: float) -> ModelSpec:
    return ModelSpec(key=key, model=key, quantization="4-bit", size_bytes=int(gb * GB))


@pytest.fixture
def pool_and_loader() -> tuple[ModelPool, Loader]:
    loader = Loader()
    ticks = itertools.count(1000)
    return ModelPool(loader, int(10 * GB), release=loader.release, clock=lambda: float(next(ticks))), loader


def test_lazy_and_shared(pool_and_loader: tuple[ModelPool, Loader]) -> None:
    pool, loader = pool_and_loader
    pool.register(spec("a", 2))
    assert loader.loads == []  # registering never loads
    assert pool.acquire(spec("a", 2)) == "handle:a"
    assert pool.acquire(spec("a", 2)) == "handle:a"  # two roles naming one model share one copy
    assert loader.loads == ["a"]


def test_budget_unloads_least_recently_used(pool_and_loader: tuple[ModelPool, Loader]) -> None:
    pool, loader = pool_and_loader
    pool.acquire(spec("a", 4))
    pool.acquire(spec("b", 4))
    pool.acquire(spec("a", 4))  # a is now more recent than b
    pool.acquire(spec("c", 4))  # 12 GB > 10 GB: b must go
    loaded = {s.key for s in pool.state() if s.loaded}
    assert loaded == {"a", "c"}
    assert loader.releases == 1
    assert pool.used_bytes == int(8 * GB)


def test_pinned_is_never_unloaded(pool_and_loader: tuple[ModelPool, Loader]) -> None:
    pool, _ = pool_and_loader
    pool.acquire(spec("a", 4))
    pool.pin("a")
    pool.acquire(spec("b", 4))
    pool.acquire(spec("c", 4))  # a is the LRU but pinned: b goes
    assert {s.key for s in pool.state() if s.loaded} == {"a", "c"}
    pool.pin("c")
    with pytest.raises(ModelLoadError, match="pinned"):
        pool.acquire(spec("d", 4))


def test_model_larger_than_budget_is_refused_with_a_fix(pool_and_loader: tuple[ModelPool, Loader]) -> None:
    pool, loader = pool_and_loader
    with pytest.raises(ModelLoadError, match="memory_budget_gb"):
        pool.acquire(spec("huge", 77))
    assert loader.loads == []


def test_state_report(pool_and_loader: tuple[ModelPool, Loader]) -> None:
    pool, _ = pool_and_loader
    pool.register(spec("idle", 1))
    pool.acquire(spec("a", 2))
    states = {s.key: s for s in pool.state()}
    assert states["idle"].loaded is False and states["idle"].last_used is None and states["idle"].loads == 0
    a = states["a"]
    assert a.loaded and a.loads == 1 and a.size_gb == 2.0 and a.quantization == "4-bit"
    assert a.last_used is not None and a.load_seconds is not None
    assert pool.unload("a") is True
    assert pool.unload("a") is False
    assert {s.key: s.loaded for s in pool.state()} == {"idle": False, "a": False}


def test_the_kv_reserve_counts_against_the_budget(pool_and_loader: tuple[ModelPool, Loader]) -> None:
    pool, loader = pool_and_loader
    a = ModelSpec(key="a", model="a", size_bytes=int(4 * GB), kv_reserve_bytes=int(1.5 * GB))
    b = ModelSpec(key="b", model="b", size_bytes=int(4 * GB), kv_reserve_bytes=int(1.5 * GB))
    pool.acquire(a)
    pool.acquire(b)  # 8 GB of weights would fit in 10; with their KV reserves (11 GB) they do not
    assert loader.loads == ["a", "b"] and not pool.is_loaded("a") and pool.used_bytes == b.budget_bytes
    with pytest.raises(ModelLoadError, match="weights and KV cache"):
        pool.acquire(ModelSpec(key="c", model="c", size_bytes=int(9 * GB), kv_reserve_bytes=int(2 * GB)))
