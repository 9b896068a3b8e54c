"""Continuous batching in the MLX backend (tiny model): concurrent generations for one model share one decode,
with outputs token-identical to one-at-a-time, per-sequence constraints and cancels, seeded sampling alone."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from orchestration.models.catalog import local_dir
from orchestration.models.mlx_backend import MLXBackend
from orchestration.core.settings import Settings
from orchestration.core.types import Chunk, Completion, Constraint, GenerationRequest, Message

pytestmark = [pytest.mark.anyio, pytest.mark.real_model]

PROMPTS = ["Write a Python function that reverses a string.", "What is 2+2?",
           "List three colours, one per line.", "Explain recursion in one sentence to a child who likes trains."]


def _req(model: str, text: str, **kw: object) -> GenerationRequest:
    return GenerationRequest(model=model, messages=[Message(role="user", content=text)],
                             **{"max_tokens": 20, "temperature": 0.0, **kw})


@pytest.fixture(scope="module")
def tiny(real_settings: Settings) -> str:
    return str(local_dir(real_settings.models_dir, "smollm2-135m"))


def _backend(settings: Settings, batch_size: int) -> MLXBackend:
    return MLXBackend(settings.models_dir, 4.0, batch_size=batch_size)


async def _together(backend: MLXBackend, requests: list[GenerationRequest]) -> list[Completion | BaseException]:
    """Submit every request while the owner thread is held, so all of them wait for one driver pass."""
    gate = threading.Event()
    backend.worker.submit(lambda job: gate.wait(30))
    out: list[Completion | BaseException] = [None] * len(requests)  # type: ignore[list-item]

    async def one(i: int) -> None:
        try:
            out[i] = await backend.stream(requests[i])
        except Exception as e:  # noqa: BLE001 - the test looks at each outcome
            out[i] = e

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
        await anyio.sleep(0.2)
        gate.set()
    return out


async def _both_ways(settings: Settings, requests: list[GenerationRequest]) -> tuple[list[Completion], list[Any],
                                                                                 MLXBackend]:
    """The requests one at a time on a backend that never batches, then all together on one that does."""
    plain = _backend(settings, 1)
    batched = _backend(settings, 8)
    try:
        alone = [await plain.stream(r) for r in requests]
        together = await _together(batched, requests)
    finally:
        plain.close()
        batched.close()
    return alone, together, batched


async def test_batched_greedy_is_token_identical_to_one_at_a_time(real_settings: Settings, tiny: str) -> None:
    verdict = Constraint(options=["PASS", "FAIL"], option_continuation={"PASS": None, "FAIL": ": "})
    requests = [_req(tiny, p, max_tokens=n) for p, n in zip(PROMPTS, (24, 6, 16, 20))]
    requests.append(_req(tiny, "Is 'def f(): return 1' valid Python? Answer PASS or FAIL.", constraint=verdict,
                         max_tokens=8))
    alone, together, batched = await _both_ways(real_settings, requests)
    assert batched.batcher is not None and batched.batcher.batches == 1 and batched.batcher.widest == 5
    for a, b in zip(alone, together):
        assert isinstance(b, Completion), b
        assert b.batched and not a.batched
        assert (b.text, b.completion_tokens, b.finish_reason) == (a.text, a.completion_tokens, a.finish_reason)
    assert together[-1].constrained and together[-1].text.startswith(("PASS", "FAIL"))
    assert together[-1].option_probs == pytest.approx(alone[-1].option_probs, abs=1e-4)
    assert together[1].finish_reason == "length" and together[1].completion_tokens == 6


async def test_newcomers_join_a_running_batch(real_settings: Settings, tiny: str) -> None:
    backend = _backend(real_settings, 4)
    plain = _backend(real_settings, 1)
    try:
        first = [_req(tiny, PROMPTS[0], max_tokens=40), _req(tiny, PROMPTS[3], max_tokens=40)]
        late = _req(tiny, PROMPTS[2], max_tokens=10)
        results: dict[str, Completion] = {}

        async def run(name: str, r: GenerationRequest, delay: float) -> None:
            await anyio.sleep(delay)
            results[name] = await backend.stream(r)

        gate = threading.Event()
        backend.worker.submit(lambda job: gate.wait(30))
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", first[0], 0)
            tg.start_soon(run, "b", first[1], 0)
            await anyio.sleep(0.2)
            gate.set()
            chunks: list[int] = []
            # The late request arrives once the batch is decoding (after its first streamed token).
            while not chunks:
                await anyio.sleep(0.05)
                chunks = [1] if backend.batcher is not None and backend.batcher.batches else []
            await anyio.sleep(0.3)
            tg.start_soon(run, "late", late, 0)
        expected = [await plain.stream(r) for r in (*first, late)]
    finally:
        backend.close()
        plain.close()
    assert backend.batcher is not None and backend.batcher.batches == 1 and backend.batcher.widest == 3
    for name, e in zip(("a", "b", "late"), expected):
        assert results[name].batched and results[name].text == e.text


async def test_a_cancel_leaves_the_rest_of_the_batch_intact(real_settings: Settings, tiny: str) -> None:
    backend = _backend(real_settings, 4)
    plain = _backend(real_settings, 1)
    try:
        keep = _req(tiny, PROMPTS[0], max_tokens=24)
        doomed = _req(tiny, PROMPTS[3], max_tokens=200)
        gate = threading.Event()
        backend.worker.submit(lambda job: gate.wait(30))
        kept: list[Completion] = []
        cancelled = anyio.Event()

        async def run_doomed() -> None:
            with anyio.CancelScope() as scope:
                async def heard(chunk: Chunk) -> None:
                    if chunk.tokens >= 3:  # decoding beside the other sequence: cancel now
                        scope.cancel()
                await backend.stream(doomed, heard)
            cancelled.set()

        async def run_keep() -> None:
            kept.append(await backend.stream(keep))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_doomed)
            tg.start_soon(run_keep)
            await anyio.sleep(0.2)
            gate.set()
        expected = await plain.stream(keep)
        after = await backend.stream(_req(tiny, PROMPTS[1], max_tokens=4))  # the driver still serves
    finally:
        backend.close()
        plain.close()
    assert cancelled.is_set()
    assert kept[0].batched and kept[0].text == expected.text
    assert after.completion_tokens == 4


async def test_seeded_sampling_joins_the_batch_and_draws_what_it_draws_alone(real_settings: Settings,
                                                                            tiny: str) -> None:
    backend = _backend(real_settings, 8)
    plain = _backend(real_settings, 1)
    try:
        seeded = [_req(tiny, PROMPTS[2], temperature=0.9, seed=s, max_tokens=16) for s in (7, 8)]
        out = await _together(backend, [seeded[0], _req(tiny, PROMPTS[0]), seeded[1]])
        alone = [await plain.stream(r) for r in seeded]
        again = await plain.stream(seeded[0])
    finally:
        backend.close()
        plain.close()
    assert all(isinstance(o, Completion) and o.batched for o in out)
    assert [out[0].text, out[2].text] == [a.text for a in alone]
    assert again.text == alone[0].text and alone[0].text != alone[1].text  # the seed matters, and only it


async def test_an_unknown_model_fails_only_its_own_ticket(real_settings: Settings, tiny: str) -> None:
    from orchestration.core.errors import ModelNotFoundError

    backend = _backend(real_settings, 4)
    try:
        out = await _together(backend, [_req(tiny, PROMPTS[1], max_tokens=4),
                                         _req("/nonexistent/model-dir", PROMPTS[1]),
                                         _req(tiny, PROMPTS[0], max_tokens=4)])
    finally:
        backend.close()
    assert isinstance(out[1], ModelNotFoundError)
    assert isinstance(out[0], Completion) and isinstance(out[2], Completion) and out[0].batched



async def test_two_models_run_side_by_side_in_their_own_lanes(real_settings: Settings, tiny: str) -> None:
    q4 = str(local_dir(real_settings.models_dir, "smollm2-135m-q4"))
    requests = [_req(tiny, PROMPTS[0], max_tokens=30), _req(q4, PROMPTS[1], max_tokens=8),
                _req(tiny, PROMPTS[2], max_tokens=6), _req(q4, PROMPTS[3], max_tokens=12)]
    alone, together, batched = await _both_ways(real_settings, requests)
    assert batched.batcher is not None and batched.batcher.batches == 2 and batched.batcher.most_lanes == 2
    for a, b in zip(alone, together):
        assert isinstance(b, Completion) and b.batched and (b.text, b.model) == (a.text, a.model)
