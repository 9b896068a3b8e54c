"""Cancel on every path of the real generation loop (the tiny SmolLM2 on the MLX backend): plain, drafted
(speculative), batched and constrained decoding stop within a token or two of the cancel, and a drafted prompt
is read in chunks with a cancel check between them, from its prompt cache.

Each test cancels the caller while the model is still working (a call that finished first fails the test) and
counts the forward passes the models began after the cancel: a count, not a time, so a busy machine cannot make
it pass or fail.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from orchestration.models.mlx_backend import MLXBackend
from orchestration.core.settings import Settings
from orchestration.core.types import Chunk, Constraint, GenerationRequest, Message

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]
MODEL, DRAFT = "smollm2-135m", "smollm2-135m-q4"
COUNT = "Count from 1 to 1000, separated by commas."  # keeps the tiny model writing past the cancel


def ask(text: str, **kw: object) -> GenerationRequest:
    return GenerationRequest(model=MODEL, messages=[Message(role="user", content=text)],
                             **{"max_tokens": 600, "temperature": 0.0, **kw})


class Forwards:
    """The model's forward passes, counted (when each began); everything else is the model's own."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(time.perf_counter())
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def since(self, t: float) -> int:
        return sum(c >= t for c in self.calls)


async def spy(backend: MLXBackend, model: str) -> Forwards:
    """Load ``model`` on the backend's owner thread and count its forward passes from now on."""
    handle = await backend.worker.run(lambda job: backend.pool.acquire(backend.resolve(model)))
    if not isinstance(handle.model, Forwards):
        handle.model = Forwards(handle.model)
    return handle.model


@pytest.fixture(scope="module")
def backends(real_settings: Settings):  # noqa: ANN201
    one = MLXBackend(real_settings.models_dir, 4.0, batch_size=1, prefill_step=64)
    batched = MLXBackend(real_settings.models_dir, 4.0, batch_size=4)
    yield one, batched
    one.close()
    batched.close()


async def cancel_mid_answer(backend: MLXBackend, requests: list[GenerationRequest], after: int = 8,
                            ) -> tuple[float, float]:
    """Start ``requests`` together and cancel them all once ``after`` chunks have streamed; the moment of the
    cancel and the seconds until the owner thread ran the next job."""
    arrivals: list[float] = []
    reached = anyio.Event()
    finished: list[int] = []

    async def on_chunk(_: Chunk) -> None:
        arrivals.append(time.perf_counter())
        if len(arrivals) >= after:
            reached.set()

    async def one(req: GenerationRequest) -> None:
        finished.append((await backend.stream(req, on_chunk)).completion_tokens)

    gate = threading.Event()  # hold the owner thread so that all requests wait for one driver pass
    backend.worker.submit(lambda job: gate.wait(30))
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for req in requests:
                tg.start_soon(one, req)
            await anyio.sleep(0.2)
            gate.set()
            await reached.wait()
            cancelled_at = time.perf_counter()
            tg.cancel_scope.cancel()
        free_at = await backend.worker.run(lambda job: time.perf_counter())
    assert not finished, f"a call finished ({finished} tokens) before the cancel: nothing was cancelled"
    return cancelled_at, free_at - cancelled_at


# A forward pass is the loop's unit of work. After the cancel the loop may finish the pass it is in and the one
# mlx-lm already queued for the next token (generate_step evaluates a token ahead), and no more.
async def test_plain_decoding_stops_within_a_token(backends) -> None:  # noqa: ANN001
    one, _ = backends
    model = await spy(one, MODEL)
    at, _ = await cancel_mid_answer(one, [ask(COUNT)])
    assert model.since(at) <= 2, model.since(at)


async def test_drafted_decoding_stops_within_a_step(backends) -> None:  # noqa: ANN001
    one, _ = backends
    model, draft = await spy(one, MODEL), await spy(one, DRAFT)
    at, _ = await cancel_mid_answer(one, [ask(COUNT, draft_model=DRAFT, num_draft_tokens=3)])
    assert draft.calls, "the call did not draft"
    # one speculative step: 3 draft passes and one pass of the model
    assert model.since(at) <= 1 and draft.since(at) <= 3, (model.since(at), draft.since(at))


async def test_batched_decoding_stops_within_a_step(backends) -> None:  # noqa: ANN001
    _, batched = backends
    model = await spy(batched, MODEL)
    at, _ = await cancel_mid_answer(batched, [ask(COUNT), ask(COUNT + " Go.")])
    assert batched.batcher is not None and batched.batcher.widest >= 2  # the two shared a decode step
    assert model.since(at) <= 2, model.since(at)


async def test_constrained_decoding_stops_within_a_token(backends) -> None:  # noqa: ANN001
    one, _ = backends
    model = await spy(one, MODEL)
    req = ask("List the numbers from 1 to 1000 as a JSON array.",
              constraint=Constraint(json_schema={"type": "array", "items": {"type": "integer"}}))
    at, _ = await cancel_mid_answer(one, [req])
    assert model.since(at) <= 2, model.since(at)


async def test_a_drafted_prompt_is_read_in_chunks_and_a_cancel_stops_within_one(backends) -> None:  # noqa: ANN001
    one, _ = backends
    model, draft = await spy(one, MODEL), await spy(one, DRAFT)
    long = ask(" ".join(f"item{i}" for i in range(500)), max_tokens=1, draft_model=DRAFT)  # ~1.5k tokens
    before = len(draft.calls)
    with anyio.fail_after(90):  # mlx-lm's own loop would read both prompts to the end first: minutes here
        async with anyio.create_task_group() as tg:
            tg.start_soon(one.stream, long)
            while len(draft.calls) < before + 2:  # two 64-token chunks of the draft's prompt read
                await anyio.sleep(0.002)
            at = time.perf_counter()
            tg.cancel_scope.cancel()
        await one.worker.run(lambda job: None)
    # the chunk being read when the cancel came, at most; mlx-lm's loop would have read all ~24 of each model's
    assert draft.since(at) + model.since(at) <= 1, (draft.since(at), model.since(at))


async def test_a_batched_prompt_is_read_in_chunks_and_a_cancel_stops_within_one(backends) -> None:  # noqa: ANN001
    _, batched = backends
    model = await spy(batched, MODEL)
    longs = [ask(f"{tag} " + " ".join(f"item{i}" for i in range(300)), max_tokens=1) for tag in ("a", "b")]
    before = len(model.calls)
    gate = threading.Event()  # both wait for one driver pass: they are read as one batch
    batched.worker.submit(lambda job: gate.wait(30))
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for req in longs:
                tg.start_soon(batched.stream, req)
            await anyio.sleep(0.2)
            gate.set()
            while len(model.calls) < before + 1:  # the first 256-token chunk of both prompts
                await anyio.sleep(0.002)
            at = time.perf_counter()
            tg.cancel_scope.cancel()
        await batched.worker.run(lambda job: None)
    assert model.since(at) <= 1, model.since(at)  # of ~4 chunks


async def test_drafted_calls_keep_their_prompt_cache_and_their_output(backends) -> None:  # noqa: ANN001
    one, _ = backends
    req = ask("Write a Python function that adds two numbers.", max_tokens=40)
    plain = await one.stream(req)
    drafted = req.model_copy(update={"draft_model": DRAFT, "num_draft_tokens": 3})
    first = await one.stream(drafted)
    again = await one.stream(drafted)
    assert first.text == again.text == plain.text  # greedy: token-identical however it was read
    assert again.cached_prompt_tokens == again.prompt_tokens - 1  # all but the last prompt token reused
    assert again.draft_accepted is not None and again.draft_accepted > 0
    assert again.prompt_tps > 0
    assert {one.resolve(MODEL).key, one.resolve(DRAFT).key} <= set(one._prompt_caches)  # the draft's too
