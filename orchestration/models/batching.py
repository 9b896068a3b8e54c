"""Continuous batching on the owner thread: concurrent generations for one model share one decode.

On a memory-bound CPU a decode step reads every weight once whatever the batch size, so 4-8 sequences
cost little more per step than one. Callers submit tickets (a request and its job); one driver job on
the owner thread takes the oldest ticket's model, runs every waiting ticket for that model as one
mlx-lm ``BatchGenerator``, and admits newcomers for that model between steps while no other model is
waiting (then the batch drains and the next model gets its turn). A ticket that waits alone runs the
plain path instead: prompt cache, speculative drafting, one sequence.

Greedy output is token-identical to the plain path (tested); a seeded sampler draws from its own key,
so a seeded sample does not depend on what else shares its batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ContextOverflowError, GenerationCancelled, MageError
from ..types import Chunk, Completion, GenerationRequest
from .pool import ModelSpec
from .worker import Job

if TYPE_CHECKING:
    from .mlx_backend import LoadedModel, MLXBackend

__all__ = ["Ticket", "Batcher", "sampler_for"]

log = logging.getLogger(__name__)


def sampler_for(request: GenerationRequest) -> Callable[[Any], Any]:
    """Greedy at temperature 0; a seeded request draws from its own random key (split once per token), so
    its sample is the same alone or in any batch, on either path."""
    from mlx_lm.sample_utils import make_sampler

    if request.temperature <= 0 or request.seed is None:
        return make_sampler(temp=request.temperature, top_p=request.top_p)
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_top_p

    temp, top_p = request.temperature, request.top_p
    state = {"key": mx.random.key(request.seed)}

    def sample(logprobs: Any) -> Any:
        state["key"], sub = mx.random.split(state["key"])
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        return mx.random.categorical(logprobs * (1 / temp), key=sub)

    return sample


@dataclass
class Ticket:
    request: GenerationRequest
    job: Job[Completion]
    spec: ModelSpec | None = None


@dataclass
class _Seq:
    ticket: Ticket
    prompt: list[int]
    rest: int
    detok: Any
    grammar: Any
    t0: float
    first: float | None = None
    parts: list[str] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)


class Batcher:
    """The waiting tickets and the driver that serves them (one per MLX backend)."""

    def __init__(self, backend: MLXBackend, size: int) -> None:
        self.backend = backend
        self.size = size
        self._lock = threading.Lock()
        self._pending: list[Ticket] = []
        self._driving = False
        self.batches = 0  # batches of two or more run so far (for tests and the bench)
        self.widest = 0

    def submit(self, request: GenerationRequest, deliver: Callable[[Any], None]) -> Job[Completion]:
        job: Job[Completion] = Job(None, deliver)
        with self._lock:
            self._pending.append(Ticket(request, job))
            start = not self._driving
            self._driving = True
        if start:
            self.backend.worker.submit(self._drive)
        return job

    # -- the driver (owner thread) -------------------------------------------------------------------
    def _drive(self, _: Job[None]) -> None:
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._driving = False
                        return
                    head = self._pending[0]
                if not self._resolve(head):
                    continue
                assert head.spec is not None
                group = self._take(head.spec.key, self.size, exclusive=False)
                if len(group) == 1:
                    self._one(group[0])
                else:
                    self._batch(head.spec, group)
        except BaseException as e:  # noqa: BLE001 - never leave a caller waiting
            with self._lock:
                left, self._pending, self._driving = self._pending, [], False
            for t in left:
                _fail(t, e)
            raise

    def _resolve(self, t: Ticket) -> bool:
        if t.spec is not None:
            return True
        try:
            t.spec = self.backend.resolve(t.request.model)
            return True
        except BaseException as e:  # noqa: BLE001 - the caller hears it
            with self._lock:
                self._pending.remove(t)
            _fail(t, e)
            return False

    def _take(self, key: str, room: int, *, exclusive: bool) -> list[Ticket]:
        """Pop up to ``room`` waiting tickets for ``key``, oldest first. ``exclusive``: none while a ticket
        for another model waits (it is served next)."""
        with self._lock:
            waiting = list(self._pending)
        for t in waiting:
            self._resolve(t)
        with self._lock:
            if exclusive and any(t.spec is not None and t.spec.key != key for t in self._pending):
                return []
            chosen = [t for t in self._pending if t.spec is not None and t.spec.key == key][:room]
            for t in chosen:
                self._pending.remove(t)
        return chosen

    def _one(self, t: Ticket) -> None:
        """The plain path for a ticket that waits alone: prompt cache and drafting as usual."""
        if not _start(t):
            return
        assert t.spec is not None
        try:
            result = self.backend._generate(t.job, t.spec, t.request)
        except BaseException as e:  # noqa: BLE001
            t.job.future.set_exception(e)
        else:
            t.job.future.set_result(result)

    def _admit(self, gen: Any, handle: LoadedModel, spec: ModelSpec, t: Ticket, live: dict[int, _Seq]) -> None:
        if not _start(t):
            return
        req = t.request
        try:
            t0 = time.perf_counter()
            prompt = handle.tokenizer.apply_chat_template([m.model_dump() for m in req.messages],
                                                          add_generation_prompt=True)
            room = handle.context_length - len(prompt)
            if room < 1:
                raise ContextOverflowError(
                    f"the prompt is {len(prompt)} tokens but {spec.model} holds {handle.context_length}: "
                    "shorten the prompt or the context")
            cache, rest = self.backend._lookup(spec, handle, prompt)
            # The batch's token context holds the whole prompt (cached prefix included).
            grammar = handle.grammar(req.constraint, len(prompt)) if req.constraint is not None else None
            (uid,) = gen.insert([rest], max_tokens=[min(req.max_tokens, room)], caches=[cache],
                                all_tokens=[list(prompt[: len(prompt) - len(rest)])],
                                samplers=[sampler_for(req)],
                                logits_processors=[[grammar] if grammar is not None else []])
        except BaseException as e:  # noqa: BLE001
            t.job.future.set_exception(e)
            return
        live[uid] = _Seq(t, list(prompt), len(rest), handle.tokenizer.detokenizer, grammar, t0)

    def _batch(self, spec: ModelSpec, tickets: list[Ticket]) -> None:
        import mlx.core as mx
        from mlx_lm.generate import BatchGenerator

        live: dict[int, _Seq] = {}
        gen = None
        try:
            handle: LoadedModel = self.backend.pool.acquire(spec)
            eos = sorted(handle.tokenizer.eos_token_ids)
            gen = BatchGenerator(handle.model, stop_tokens=[[e] for e in eos], completion_batch_size=self.size,
                                 prefill_batch_size=self.size, prefill_step_size=self.backend.prefill_step)
            for t in tickets:
                self._admit(gen, handle, spec, t, live)
            self.batches += 1
            while live:
                for uid in [u for u, s in live.items() if s.ticket.job.cancel_flag.is_set()]:
                    gen.remove([uid])
                    _fail(live.pop(uid).ticket, GenerationCancelled("generation cancelled by the caller"))
                if len(live) < self.size:
                    for t in self._take(spec.key, self.size - len(live), exclusive=True):
                        self._admit(gen, handle, spec, t, live)
                if not live:
                    break
                self.widest = max(self.widest, len(live))
                _, responses = gen.next()
                for r in responses:
                    seq = live.get(r.uid)
                    if seq is None:
                        continue
                    seq.first = seq.first or time.perf_counter()
                    seq.generated.append(int(r.token))
                    if r.finish_reason != "stop":
                        seq.detok.add_token(int(r.token))
                    if r.finish_reason is None:
                        text = seq.detok.last_segment
                        if text:
                            seq.parts.append(text)
                        seq.ticket.job.emit(Chunk(text=text, tokens=len(seq.generated)))
                        continue
                    del live[r.uid]
                    self._finish(spec, seq, r, mx.get_peak_memory() / 1e9)
        except BaseException as e:  # noqa: BLE001 - a failed batch fails its callers, not the driver
            for seq in live.values():
                _fail(seq.ticket, e)
            if not isinstance(e, Exception):
                raise
        finally:
            if gen is not None:
                gen.close()

    def _finish(self, spec: ModelSpec, seq: _Seq, r: Any, peak_gb: float) -> None:
        seq.detok.finalize()
        tail = seq.detok.last_segment
        if tail:
            seq.parts.append(tail)
        seq.ticket.job.emit(Chunk(text=tail, tokens=len(seq.generated)))
        g = seq.grammar
        if g is not None and g.error is not None:
            seq.ticket.job.future.set_exception(MageError(f"constrained decoding failed: {g.error}"))
            return
        if g is not None:
            self.backend.last_mask_seconds_per_token = g.mask_seconds / max(1, g.steps)
        cached = r.prompt_cache
        if cached is not None and r.all_tokens is not None:
            self.backend._remember(spec, list(r.all_tokens), cached)
        now = time.perf_counter()
        first = seq.first or now
        n = len(seq.generated)
        seq.ticket.job.future.set_result(Completion(
            text="".join(seq.parts), model=spec.model, prompt_tokens=len(seq.prompt),
            cached_prompt_tokens=len(seq.prompt) - seq.rest, completion_tokens=n,
            finish_reason="stop" if r.finish_reason == "stop" else "length", seconds=now - seq.t0,
            prompt_tps=seq.rest / max(first - seq.t0, 1e-9), generation_tps=(n - 1) / max(now - first, 1e-9),
            peak_memory_gb=peak_gb, option_probs=g.option_probs if g is not None else None,
            constrained=g is not None, batched=True))


def _start(t: Ticket) -> bool:
    if t.job.cancel_flag.is_set():
        t.job.future.set_exception(GenerationCancelled("cancelled before it started"))
        return False
    return t.job.future.set_running_or_notify_cancel()


def _fail(t: Ticket, e: BaseException) -> None:
    if not t.job.future.done():
        t.job.future.set_exception(e)
