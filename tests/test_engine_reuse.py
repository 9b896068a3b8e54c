"""Prompt caching, speculative decoding and chunked prefill on a real model (the tiny SmolLM2): each must
leave greedy output unchanged, and a cancel during a long prompt must stop within a chunk."""

from __future__ import annotations

import time

import anyio
import pytest

from orchestration.models.mlx_backend import MLXBackend
from orchestration.core.types import GenerationRequest, Message

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]
SYSTEM = ("You are a careful assistant. " * 20).strip()


def ask(text: str, system: str | None = SYSTEM, **kw) -> GenerationRequest:  # noqa: ANN003
    messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=text)]
    return GenerationRequest(model=kw.pop("model", "smollm2-135m"), messages=messages,
                             max_tokens=kw.pop("max_tokens", 24), temperature=0.0, **kw)


@pytest.fixture(scope="module")
def backends(real_settings):  # noqa: ANN001, ANN201
    cached = MLXBackend(real_settings.models_dir, 6.0, prompt_cache_entries=16)
    plain = MLXBackend(real_settings.models_dir, 6.0, prompt_cache_entries=0)
    yield cached, plain
    cached.close()
    plain.close()


async def test_prompt_cache_reuses_prefixes_and_leaves_output_unchanged(backends) -> None:  # noqa: ANN001
    cached, plain = backends
    first = await cached.stream(ask("Name a colour."))
    assert first.cached_prompt_tokens == 0
    again = await cached.stream(ask("Name a colour."))  # the same prompt: all but its last token reused
    assert again.cached_prompt_tokens == again.prompt_tokens - 1 and again.text == first.text
    other = await cached.stream(ask("Name a fruit."))  # shares the system prompt, not the question
    assert 100 < other.cached_prompt_tokens < other.prompt_tokens
    assert other.text == (await plain.stream(ask("Name a fruit."))).text
    # a follow-up that extends the first exchange re-reads nothing of it (the answer's own KV is kept)
    follow = ask("Name a colour.")
    follow.messages += [Message(role="assistant", content=first.text), Message(role="user", content="Another?")]
    got = await cached.stream(follow)
    assert got.cached_prompt_tokens >= first.prompt_tokens
    assert got.text == (await plain.stream(follow)).text
    assert cached.prompt_cache_bytes_used() > 0
    assert (await plain.stream(ask("Name a colour."))).cached_prompt_tokens == 0  # off means off


async def test_prompt_caches_go_when_their_model_unloads(backends) -> None:  # noqa: ANN001
    cached, _ = backends
    await cached.stream(ask("Say hi."))
    assert cached.prompt_cache_bytes_used() > 0
    assert await cached.unload("smollm2-135m")
    assert cached.prompt_cache_bytes_used() == 0
    assert (await cached.stream(ask("Say hi."))).cached_prompt_tokens == 0


async def test_speculative_decoding_is_token_identical(backends) -> None:  # noqa: ANN001
    cached, plain = backends
    req = ask("Write a Python function that adds two numbers.", max_tokens=40)
    base = await plain.stream(req)
    drafted = await plain.stream(req.model_copy(update={"draft_model": "smollm2-135m-q4", "num_draft_tokens": 3}))
    assert drafted.text == base.text and drafted.completion_tokens == base.completion_tokens
    assert drafted.draft_accepted is not None and 0 < drafted.draft_accepted <= drafted.completion_tokens
    assert base.draft_accepted is None


async def test_a_cancel_during_a_long_prompt_stops_within_a_chunk(backends) -> None:  # noqa: ANN001
    _, plain = backends
    long = ask(" ".join(f"item{i}" for i in range(900)), system=None, max_tokens=1)  # ~2.7k tokens, ~10 chunks
    t0 = time.perf_counter()
    full = await plain.stream(long)
    full_s = time.perf_counter() - t0
    assert full.prompt_tokens > 2000
    with anyio.move_on_after(full_s * 0.2) as scope:
        await plain.stream(long)
    cancelled_at = time.perf_counter()
    assert scope.cancelled_caught
    await plain.stream(ask("hi", system=None, max_tokens=1))  # the owner thread is free again
    stopped_s = time.perf_counter() - cancelled_at
    # One chunk is 256 of the prompt's tokens: far less than the rest of the prefill (80% of it).
    assert stopped_s < full_s * 0.4, (stopped_s, full_s)


async def test_drafting_dropped_for_memory_is_said_not_silent(real_settings, caplog) -> None:  # noqa: ANN001
    """Both models must fit the budget together; where they do not, the call runs plainly and says why."""
    tight = MLXBackend(real_settings.models_dir, 1.0, prompt_cache_entries=0)  # the dense model alone fits (0.9 GB)
    try:
        req = ask("Say hi.", max_tokens=4).model_copy(update={"draft_model": "smollm2-135m-q4"})
        with caplog.at_level("WARNING"):
            c = await tight.stream(req)
    finally:
        tight.close()
    assert c.draft_accepted is None and c.note is not None and "no drafting" in c.note and "budget" in c.note
    assert any("no drafting" in r.getMessage() for r in caplog.records)
