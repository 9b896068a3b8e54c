"""The per-call context a pattern runs in: role -> model resolution, step recording, progress.

Patterns call ``ctx.generate(role, messages, purpose=...)``; the context picks the role's model and
sampling, streams through the backend, records the step in the trace, reports progress, and turns
a failure into a PatternError naming the step and the role.
"""

from __future__ import annotations

import logging
import re
import time

import anyio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ..core.errors import DeadlineReached, GenerationCancelled, MageError, ModelOutputError, PatternError
from ..core.settings import Role, Settings
from ..core.types import (Chunk, Completion, Constraint, GenerationRequest, Message, PatternRequest, PatternResult,
                          Step, ToolCall, Totals, Trace)
from ..models.backend import Backend

__all__ = ["RunContext", "OnProgress", "open_fence"]

log = logging.getLogger(__name__)
T = TypeVar("T")
OnProgress = Callable[[int, str, str, int, str], Awaitable[None]]
PROGRESS_INTERVAL_S = 1.0
DEADLINE_MARGIN_S = 0.5  # what a deadline leaves for building and sending the result
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.M)


def open_fence(text: str) -> bool:
    """``text`` ends inside a fenced code block (an odd number of fence lines)."""
    return len(_FENCE_LINE.findall(text)) % 2 == 1


class RunContext:
    """Everything one pattern run needs; a fresh one per call."""

    def __init__(self, pattern: str, request: PatternRequest, settings: Settings,
                 backends: Mapping[str, Backend], on_progress: OnProgress | None = None) -> None:
        self.pattern = pattern
        self.request = request
        self.settings = settings
        self.backends = backends
        self.trace = Trace(pattern=pattern)
        self._on_progress = on_progress
        self._t0 = time.perf_counter()
        # Texts of generations that stopped at their token budget: never run, scored or written as complete.
        self.cut_off_texts: set[str] = set()
        deadline_s = request.deadline_s or settings.deadline_s
        self.deadline_s = deadline_s
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.best: tuple[str, str] | None = None  # (text, what it is): what a deadline returns

    # -- roles ---------------------------------------------------------------------------------------
    def role_system(self, role: Role) -> str | None:
        return self.settings.roles[role].system

    @property
    def answer_max_tokens(self) -> int:
        return self.request.max_tokens or self.settings.max_tokens

    def _temperature(self, role: Role, override: float | None) -> float:
        if override is not None:
            return override
        cfg = self.settings.roles[role]
        if cfg.temperature is not None:
            return cfg.temperature
        if self.request.temperature is not None:
            return self.request.temperature
        return self.settings.temperature

    async def progress(self, purpose: str, role: str, tokens: int, message: str) -> None:
        if self._on_progress is not None:
            await self._on_progress(len(self.trace.steps) + 1, purpose, role, tokens, message)

    # -- generation ----------------------------------------------------------------------------------
    async def generate(self, role: Role, messages: list[Message], *, purpose: str, max_tokens: int | None = None,
                       temperature: float | None = None, constraint: Constraint | None = None,
                       model: str | None = None, continue_code: bool = False) -> Completion:
        """Run one step on ``role``'s model (or ``model`` on the role's backend) and record it in the trace. With
        ``continue_code``, an answer cut off inside a code block is continued once (a bounded second step)."""
        first = await self._generate(role, messages, purpose=purpose, max_tokens=max_tokens,
                                     temperature=temperature, constraint=constraint, model=model)
        budget = self.settings.continuation_tokens
        cfg = self.settings.roles[role]
        if not (continue_code and first.finish_reason == "length" and budget > 0 and open_fence(first.text)
                and getattr(self.backends[cfg.backend_key], "continues", False)):
            return first
        # The chat template strips the end of a continued turn (transformers' continue_final_message), so a cut
        # inside indentation would lose spaces: continue from the stripped text, and the model writes them again.
        head = first.text.rstrip()
        more = await self._generate(role, messages + [Message(role="assistant", content=head)],
                                    purpose=f"{purpose}: continue the cut-off code", max_tokens=budget,
                                    temperature=temperature, model=model, continue_final=True)
        text = head + more.text
        if more.finish_reason == "length":
            self.cut_off_texts.add(text)
        return first.model_copy(update={
            "text": text, "completion_tokens": first.completion_tokens + more.completion_tokens,
            "finish_reason": more.finish_reason, "seconds": first.seconds + more.seconds})

    async def _generate(self, role: Role, messages: list[Message], *, purpose: str, max_tokens: int | None,
                        temperature: float | None, constraint: Constraint | None = None, model: str | None,
                        continue_final: bool = False) -> Completion:
        cfg = self.settings.roles[role]
        if model is not None:
            cfg = cfg.model_copy(update={"model": model})
        backend = self.backends[cfg.backend_key]
        draft = cfg.draft_model if self.settings.speculative and model is None else None
        req = GenerationRequest(model=cfg.model, messages=messages, max_tokens=max_tokens or self.answer_max_tokens,
                                temperature=self._temperature(role, temperature), top_p=cfg.top_p, seed=cfg.seed,
                                constraint=constraint, draft_model=draft, num_draft_tokens=cfg.num_draft_tokens,
                                continue_final=continue_final)
        step_no = len(self.trace.steps) + 1
        left = self.time_left()
        if left is not None and left <= DEADLINE_MARGIN_S:
            raise DeadlineReached(f"{purpose}: no time left before the deadline", step=purpose)
        await self.progress(purpose, role, 0, f"step {step_no}: {purpose} ({role}: {cfg.model})")
        last_report = time.monotonic()
        pieces: list[str] = []  # the text so far: what a deadline keeps of a step it cuts

        async def on_chunk(chunk: Chunk) -> None:
            nonlocal last_report
            pieces.append(chunk.text)
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                await self.progress(purpose, role, chunk.tokens,
                                    f"step {step_no}: {purpose} ({role}): {chunk.tokens} tokens")

        t0 = time.perf_counter()
        try:
            if left is None:
                completion = await backend.stream(req, on_chunk)
            else:
                # Cut between tokens or prefill chunks (a cancel), so the model stays usable for the next call.
                with anyio.fail_after(left - DEADLINE_MARGIN_S):
                    completion = await backend.stream(req, on_chunk)
        except TimeoutError as e:
            so_far = "".join(pieces)
            if self.best is None and so_far.strip() and not constraint:
                self.checkpoint(so_far, f"the {purpose} as far as it got ({len(so_far)} characters, cut at the "
                                        "deadline: incomplete)")
                self.cut_off_texts.add(so_far)
            raise DeadlineReached(f"{purpose}: stopped at the deadline", step=purpose) from e
        except GenerationCancelled:
            raise
        except MageError as e:
            raise PatternError(f"{self.pattern}: step {step_no} '{purpose}' on role {role} ({cfg.model}) failed: {e}",
                               pattern=self.pattern, step=purpose, role=role) from e
        seconds = time.perf_counter() - t0
        if completion.finish_reason == "length":
            self.cut_off_texts.add(completion.text)
        self.trace.steps.append(Step(role=role, model=cfg.model, purpose=purpose,
                                     prompt_tokens=completion.prompt_tokens,
                                     completion_tokens=completion.completion_tokens,
                                     seconds=round(seconds, 4), finish_reason=completion.finish_reason,
                                     cached_prompt_tokens=completion.cached_prompt_tokens,
                                     draft_accepted=completion.draft_accepted, batched=completion.batched,
                                     reused=completion.reused, note=completion.note))
        log.info("%s step %d %s (%s) %d+%d tokens %.2fs", self.pattern, step_no, purpose, role,
                 completion.prompt_tokens, completion.completion_tokens, seconds)
        return completion

    def same_model(self, a: Role, b: Role) -> bool:
        """Both roles run one model on one backend: their steps can share a batch."""
        ra, rb = self.settings.roles[a], self.settings.roles[b]
        return (ra.backend_key, ra.model) == (rb.backend_key, rb.model)

    async def together(self, calls: list[tuple[str, Callable[[], Awaitable[T]]]]) -> list[T]:
        """Run independent steps at once (a batching backend decodes same-model steps as one batch); the
        results and the trace keep the calls' order. ``calls``: (purpose, thunk) pairs."""
        import anyio

        start = len(self.trace.steps)
        results: list[Any] = [None] * len(calls)

        errors: list[Exception | None] = [None] * len(calls)

        async def one(i: int) -> None:
            try:
                results[i] = await calls[i][1]()
            except Exception as e:  # noqa: BLE001 - raised below as itself, not inside an exception group
                errors[i] = e

        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(one, i)
        order = {purpose: i for i, (purpose, _) in reversed(list(enumerate(calls)))}
        self.trace.steps[start:] = sorted(self.trace.steps[start:], key=lambda s: order.get(s.purpose, len(calls)))
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:  # the first failure in call order, as the sequential steps would have raised
            raise failed
        return results

    async def generate_parsed(self, role: Role, messages: list[Message], parse: Callable[[Completion], T], *,
                              purpose: str, retries: int = 2, **kw: Any) -> tuple[Completion, T]:
        """Generate and parse; where the backend could not enforce the constraint, feed the error back and
        retry (bounded). ``parse`` raises ModelOutputError for output it cannot use."""
        for attempt in range(retries + 1):
            completion = await self.generate(role, messages, purpose=purpose if attempt == 0 else
                                             f"{purpose} (retry {attempt})", **kw)
            try:
                return completion, parse(completion)
            except ModelOutputError as e:
                if completion.constrained or attempt == retries:
                    raise self.fail(str(e), step=purpose, role=role) from e
                messages = messages + [Message(role="assistant", content=completion.text),
                                       Message(role="user", content=f"That output is not usable: {e}. Answer again "
                                                                    "in exactly the required format.")]
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the deadline ----------------------------------------------------------------------------------------
    def time_left(self) -> float | None:
        """Seconds until the deadline (None: no deadline)."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def checkpoint(self, text: str, what: str) -> None:
        """The best result so far: what the pattern returns if the deadline comes before it finishes."""
        self.best = (text, what)

    def partial_result(self, reached: DeadlineReached) -> PatternResult:
        """The best result so far, marked partial, with what was skipped and why."""
        text, what = self.best or ("", "nothing")
        skipped = [f"{reached.step}: not finished within deadline_s = {self.deadline_s:g} s"]
        if self.best is None:
            skipped.append("no answer had finished: the text is empty")
        else:
            skipped.append(f"returned {what} (later steps and tool calls skipped)")
        result = self.result(text, [])
        return result.model_copy(update={"partial": True, "skipped": skipped})

    def is_cut_off(self, text: str) -> bool:
        """``text`` is (or ends with) a generation that stopped at its token budget."""
        return any(text == t or (t and text.endswith(t)) for t in self.cut_off_texts)

    def fail(self, message: str, *, step: str, role: str) -> PatternError:
        return PatternError(f"{self.pattern}: step '{step}' on role {role}: {message}",
                            pattern=self.pattern, step=step, role=role)

    # -- result --------------------------------------------------------------------------------------
    def result(self, text: str, tool_calls: list[ToolCall] | None = None) -> PatternResult:
        steps = self.trace.steps
        totals = Totals(prompt_tokens=sum(s.prompt_tokens for s in steps),
                        completion_tokens=sum(s.completion_tokens for s in steps),
                        seconds=round(time.perf_counter() - self._t0, 4))
        used = {s.role: s.model for s in steps}
        cut = self.is_cut_off(text)
        return PatternResult(pattern=self.pattern, text=text, tool_calls=tool_calls or [], trace=self.trace,
                             totals=totals, models=used, cut_off=cut, finish_reason="length" if cut else "stop")
