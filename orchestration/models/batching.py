"""Continuous batching on the owner thread: concurrent generations for one model share one decode.

On a memory-bound CPU a decode step reads every weight once whatever the batch size, so 4-8 sequences
cost little more per step than one. Callers submit tickets (a request and its job); one driver job on
the owner thread keeps a *lane* per model (an mlx-lm ``BatchGenerator`` with its live sequences), admits
waiting tickets into their model's lane between steps (up to ``size`` each; a new model's lane opens while
all open lanes' models fit the memory budget together) and steps the lanes in turn, so one model's long
last answer never holds the other model's callers. A ticket that waits alone, with no lane open, runs
the plain path instead: prompt cache, speculative drafting, one sequence.

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

from ..core.errors import GenerationCancelled, MageError
from ..core.types import Chunk, Completion, GenerationRequest
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
    shared: bool = False  # decoded beside another sequence at some step


class Batcher:
    """The waiting tickets and the driver that serves them (one per MLX backend)."""

    def __init__(self, backend: MLXBackend, size: int) -> None:
        self.backend = backend
        self.size = size
        self._lock = threading.Lock()
        self._pending: list[Ticket] = []
        self._driving = False
        # For tests and the bench: lanes (one model's running batch) opened so far, the most sequences in one
        # lane, the most lanes (models) running at once.
        self.batches = 0
        self.widest = 0
        self.most_lanes = 0

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
        lanes: dict[str, _Lane] = {}
        try:
            while True:
                with self._lock:
                    if not self._pending and not lanes:
                        self._driving = False
                        return
                    alone = not lanes and len(self._pending) == 1
                if alone:  # nothing to share a batch with: the plain path (prompt cache, drafting)
                    (t,) = self._take(1)
                    if self._resolve(t):
                        self._one(t)
                    continue
                self._fill(lanes)
                self.most_lanes = max(self.most_lanes, len(lanes))
                for key in list(lanes):
                    if not lanes[key].step(self):
                        lanes.pop(key).close()
        except BaseException as e:  # noqa: BLE001 - never leave a caller waiting
            with self._lock:
                left, self._pending, self._driving = self._pending, [], False
            for t in left:
                _fail(t, e)
            for lane in lanes.values():
                lane.fail(e)
            raise

    def _fill(self, lanes: dict[str, _Lane]) -> None:
        """Admit waiting tickets, oldest first, into their model's lane: a new lane opens while every open
        lane's model and the new one fit the memory budget together; the rest wait, in order."""
        deferred: list[Ticket] = []
        for t in self._take(None):
            if not self._resolve(t):
                continue
            assert t.spec is not None
            lane = lanes.get(t.spec.key)
            if lane is None:
                need = t.spec.budget_bytes + sum(la.spec.budget_bytes for la in lanes.values())
                if lanes and need > self.backend.pool.budget_bytes:
                    deferred.append(t)
                    continue
                try:
                    lane = lanes[t.spec.key] = _Lane(self, t.spec)
                except BaseException as e:  # noqa: BLE001 - a model that fails to load fails its callers
                    _fail(t, e)
                    continue
            if len(lane.live) >= self.size:
                deferred.append(t)
                continue
            self._admit(lane.gen, lane.handle, t.spec, t, lane.live)
        if deferred:
            with self._lock:
                self._pending[:0] = deferred

    def _resolve(self, t: Ticket) -> bool:
        """Resolve a taken ticket's model; a name that resolves to nothing fails that ticket only."""
        if t.spec is not None:
            return True
        try:
            t.spec = self.backend.resolve(t.request.model)
            return True
        except BaseException as e:  # noqa: BLE001 - the caller hears it
            _fail(t, e)
            return False

    def _take(self, room: int | None) -> list[Ticket]:
        """Pop up to ``room`` (None: all) waiting tickets, oldest first."""
        with self._lock:
            n = len(self._pending) if room is None else room
            chosen, self._pending = self._pending[:n], self._pending[n:]
        return chosen

    def _one(self, t: Ticket) -> None:
        """The plain path for a ticket that waits alone: prompt cache and drafting as usual."""
        if not _start(t):
            return
        try:
            result = self.backend._generate(t.job, t.spec, t.request)  # type: ignore[arg-type]
        except BaseException as e:  # noqa: BLE001 - the caller hears every failure
            t.job.future.set_exception(e)
        else:
            t.job.future.set_result(result)

    def _admit(self, gen: Any, handle: LoadedModel, spec: ModelSpec, t: Ticket, live: dict[int, _Seq]) -> None:
        if not _start(t):
            return
        req = t.request
        try:
            t0 = time.perf_counter()
            prompt, max_tokens = handle.prompt(req, spec.model)
            cache, rest = self.backend._lookup(spec, handle, prompt)
            # The batch's token context holds the whole prompt (cached prefix included).
            grammar = handle.grammar(req.constraint, len(prompt)) if req.constraint is not None else None
            (uid,) = gen.insert([rest], max_tokens=[max_tokens], caches=[cache],
                                all_tokens=[list(prompt[: len(prompt) - len(rest)])],
                                samplers=[sampler_for(req)],
                                logits_processors=[[grammar] if grammar is not None else []])
        except BaseException as e:  # noqa: BLE001
            t.job.future.set_exception(e)
            return
        live[uid] = _Seq(t, prompt, len(rest), handle.tokenizer.detokenizer, grammar, t0)

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
            constrained=g is not None, batched=seq.shared))


class _Lane:
    """One model's running batch: its generator and live sequences, stepped once per driver round."""

    def __init__(self, batcher: Batcher, spec: ModelSpec) -> None:
        from mlx_lm.generate import BatchGenerator

        self.spec = spec
        self.handle: LoadedModel = batcher.backend.pool.acquire(spec)
        eos = sorted(self.handle.tokenizer.eos_token_ids)
        self.gen = BatchGenerator(self.handle.model, stop_tokens=[[e] for e in eos],
                                  completion_batch_size=batcher.size, prefill_batch_size=batcher.size,
                                  prefill_step_size=batcher.backend.prefill_step)
        self.live: dict[int, _Seq] = {}
        batcher.batches += 1

    def step(self, batcher: Batcher) -> bool:
        """One prefill chunk or decode step; False once nothing is left to run (the lane closes)."""
        import mlx.core as mx

        for uid in [u for u, q in self.live.items() if q.ticket.job.cancel_flag.is_set()]:
            self.gen.remove([uid])
            _fail(self.live.pop(uid).ticket, GenerationCancelled("generation cancelled by the caller"))
        if not self.live:
            return False
        batcher.backend.pool.acquire(self.spec)  # in use: last to be evicted
        batcher.widest = max(batcher.widest, len(self.live))
        if len(self.live) > 1:
            for q in self.live.values():
                q.shared = True
        try:
            _, responses = self.gen.next()
        except Exception as e:  # noqa: BLE001 - a failed batch fails its callers, not the driver
            self.fail(e)
            return False
        for r in responses:
            seq = self.live.get(r.uid)
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
            del self.live[r.uid]
            batcher._finish(self.spec, seq, r, mx.get_peak_memory() / 1e9)
        return bool(self.live)

    def fail(self, e: BaseException) -> None:
        for seq in self.live.values():
            _fail(seq.ticket, e)
        self.live.clear()

    def close(self) -> None:
        self.gen.close()


def _start(t: Ticket) -> bool:
    if t.job.cancel_flag.is_set():
        t.job.future.set_exception(GenerationCancelled("cancelled before it started"))
        return False
    return t.job.future.set_running_or_notify_cancel()


def _fail(t: Ticket, e: BaseException) -> None:
    if not t.job.future.done():
        t.job.future.set_exception(e)
