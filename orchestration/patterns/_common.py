"""Small pieces the patterns share: one answer from a role, verdicts, the judges, the result."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import ModelOutputError
from ..core.settings import Role
from ..core.types import Completion, Constraint, Judgement, PatternResult, ToolCall, Verdict
from ..run import prompts
from ..run.context import RunContext

__all__ = ["answer", "code_budget", "validate", "judge", "judge_pointwise", "parse_verdict", "parse_pick",
           "render_calls", "finish"]

VERDICT_CONSTRAINT = Constraint(options=["PASS", "FAIL"], option_continuation={"PASS": None, "FAIL": ": "})
# The seed's letter-first form. Measured on the 0.5B (HumanEval, 162 of 162 passes): the forced first letter is
# the position prior (about 0.64 on "A" whatever the answers), and the reason written after it often argues for
# the other answer ("A: B. The solution B is more concise..."). Kept only to read replies of that form.
PICK_CONSTRAINT = Constraint(options=["A", "B"], option_continuation={"A": ": ", "B": ": "})


class _Pick(BaseModel):
    """The pairwise judge's reply: its reason first, then the pick, so the pick follows from the reason."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=300)
    better: str = Field(pattern="^(A|B)$")


PICK_SCHEMA_CONSTRAINT = Constraint(json_schema={
    "type": "object", "additionalProperties": False, "required": ["reason", "better"],
    "properties": {"reason": {"type": "string", "maxLength": 300}, "better": {"enum": ["A", "B"]}}})
CORRECT_CONSTRAINT = Constraint(options=["YES", "NO"], option_continuation={"YES": None, "NO": None})
_VERDICT = re.compile(r"^\s*(PASS|FAIL)\b[\s:.\-]*", re.DOTALL)
_PICK = re.compile(r"^\s*(A|B)\b[\s:.\-)]*", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
VERDICT_MAX_TOKENS = 256
JUDGE_MAX_TOKENS = 120  # a one-sentence reason (at most 300 characters) and the pick, as JSON


def code_budget(ctx: RunContext) -> int:
    """The answer budget of the code patterns: the request's, else one that fits a whole function."""
    return ctx.request.max_tokens or max(ctx.settings.max_tokens, ctx.settings.code_max_tokens)


async def answer(ctx: RunContext, role: Role, purpose: str = "answer", max_tokens: int | None = None) -> str:
    messages = prompts.answer(ctx.request, ctx.role_system(role))
    return (await ctx.generate(role, messages, purpose=purpose, max_tokens=max_tokens, continue_code=True)).text


def finish(ctx: RunContext, text: str, calls: list[ToolCall] | None = None) -> PatternResult:
    """The result, marked where the answer stopped at its token budget."""
    cut = ctx.is_cut_off(text)
    return ctx.result(text, calls).model_copy(update={"cut_off": cut, "finish_reason": "length" if cut else "stop"})


def parse_verdict(text: str) -> tuple[str, list[str]] | None:
    """('PASS'|'FAIL', issues) from the validator's reply, read from its start only; None if neither."""
    m = _VERDICT.match(text)
    if m is None:
        return None
    rest = text[m.end():].strip()
    if m.group(1) == "PASS":
        return "PASS", []
    lines = [_BULLET.sub("", ln).strip() for ln in rest.splitlines()]
    issues = [ln for ln in lines if ln]
    if len(issues) == 1 and ";" in issues[0]:
        issues = [p.strip() for p in issues[0].split(";") if p.strip()]
    return "FAIL", issues


def parse_pick(text: str) -> tuple[str, str] | None:
    """('A'|'B', reason) from the pairwise judge's reply: its JSON (reason, then the pick), or the seed's letter
    first form read from its start only; None if neither."""
    if text.lstrip().startswith("{"):
        try:
            got = _Pick.model_validate_json(text)
        except ValidationError:
            return None
        return got.better, got.reason.strip().split("\n", 1)[0].strip()
    m = _PICK.match(text)
    if m is None:
        return None
    reason = text[m.end():].strip().split("\n", 1)[0].strip()
    return m.group(1), reason


async def validate(ctx: RunContext, response: str, purpose: str, model: str | None = None) -> Verdict:
    """The validator's PASS/FAIL on ``response``; its first token is constrained to PASS or FAIL."""
    messages = prompts.validation(ctx.request, response, ctx.settings.prompts)

    def parse(c: Completion) -> tuple[str, list[str]]:
        parsed = parse_verdict(c.text)
        if parsed is None:
            raise ModelOutputError(f"validator reply starts with neither PASS nor FAIL: {c.text[:120]!r}",
                                   raw=c.text)
        return parsed

    c, parsed = await ctx.generate_parsed(
        "validator", messages, parse, purpose=purpose, model=model, constraint=VERDICT_CONSTRAINT,
        max_tokens=max(16, min(VERDICT_MAX_TOKENS, ctx.answer_max_tokens)))
    verdict, issues = parsed
    confidence = (c.option_probs or {}).get(verdict)
    return Verdict(verdict=verdict, issues=issues, confidence=None if confidence is None else round(confidence, 4))


async def _judge_once(ctx: RunContext, first: str, second: str, purpose: str,
                      model: str | None) -> tuple[str, str, dict[str, float] | None]:
    messages = prompts.judge(ctx.request, first, second, ctx.settings.prompts)

    def parse(c: Completion) -> tuple[str, str]:
        parsed = parse_pick(c.text)
        if parsed is None:
            raise ModelOutputError(f"judge reply starts with neither A nor B: {c.text[:120]!r}", raw=c.text)
        return parsed

    c, parsed = await ctx.generate_parsed(
        "validator", messages, parse, purpose=purpose, model=model, constraint=PICK_SCHEMA_CONSTRAINT,
        max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
    pick, reason = parsed
    return pick, reason, c.option_probs


async def judge(ctx: RunContext, a: str, b: str, swap: bool, model: str | None = None,
                label: str = "judge") -> Judgement:
    """Pick A or B; with ``swap`` judge again with the order reversed and settle disagreement by probability."""
    first, swapped = f"{label} A vs B", f"{label} swapped (B shown as A)"
    if swap:  # the two orders are independent: one batch on a batching backend
        (pick1, reason1, p1), (shown, reason2, p2) = await ctx.together([
            (first, lambda: _judge_once(ctx, a, b, first, model)),
            (swapped, lambda: _judge_once(ctx, b, a, swapped, model))])
    else:
        pick1, reason1, p1 = await _judge_once(ctx, a, b, first, model)
    verdicts = [{"order": "A,B", "pick": pick1, "probs": p1, "reason": reason1}]
    picks, reasons, all_probs = [pick1], {pick1: reason1}, [p1]
    if swap:
        pick2 = "B" if shown == "A" else "A"
        probs2 = None if p2 is None else {"A": p2.get("B", 0.0), "B": p2.get("A", 0.0)}
        verdicts.append({"order": "B,A", "pick": pick2, "shown_pick": shown, "probs": probs2, "reason": reason2})
        picks.append(pick2)
        reasons.setdefault(pick2, reason2)
        all_probs.append(probs2)
    disagreement = len(set(picks)) > 1
    known = all(p is not None for p in all_probs)
    sums = {k: sum((p or {}).get(k, 0.0) for p in all_probs) for k in ("A", "B")}
    # Disagreement is settled by the judge's probabilities summed over both orders; without
    # probabilities (some remote servers) the first order's pick stands and the disagreement is reported.
    final = max(("A", "B"), key=lambda k: sums[k]) if disagreement and known else picks[0]
    confidence = round(min(1.0, sums[final] / len(picks)), 4) if known else None
    return Judgement(pick=final, reason=reasons.get(final, ""), confidence=confidence,
                     verdicts=verdicts, disagreement=disagreement, candidates={"A": a, "B": b},
                     judge_kind="pairwise")


async def _p_correct(ctx: RunContext, text: str, purpose: str, model: str | None) -> float:
    """The judge's probability that ``text`` answers the task correctly, from its YES/NO choice point (where the
    backend gives no probabilities: 1 for YES, 0 for NO)."""
    messages = prompts.correctness(ctx.request, text, ctx.settings.prompts)

    def parse(c: Completion) -> str:
        word = c.text.strip()[:3].upper()
        if word not in ("YES", "NO"):
            raise ModelOutputError(f"judge reply starts with neither YES nor NO: {c.text[:80]!r}", raw=c.text)
        return "YES" if word == "YES" else "NO"

    c, word = await ctx.generate_parsed("validator", messages, parse, purpose=purpose, model=model,
                                        constraint=CORRECT_CONSTRAINT, max_tokens=2, temperature=0.0)
    if c.option_probs and "YES" in c.option_probs:
        return round(c.option_probs["YES"], 4)
    return 1.0 if word == "YES" else 0.0


async def judge_pointwise(ctx: RunContext, a: str, b: str, model: str | None = None,
                          label: str = "judge") -> Judgement:
    """Score each answer on its own (the judge's probability that it is correct) and pick the higher: neither
    answer is in the other's prompt, so the order they are shown in cannot change the pick. A tie goes to B."""
    pa, pb = await ctx.together([(f"{label} A alone", lambda: _p_correct(ctx, a, f"{label} A alone", model)),
                                 (f"{label} B alone", lambda: _p_correct(ctx, b, f"{label} B alone", model))])
    pick = "A" if pa > pb else "B"
    rule = ("each answer scored on its own: the higher probability of being correct" if pa != pb else
            "each answer scored on its own; equal scores: B (the competitor) stands")
    return Judgement(pick=pick, reason=f"P(correct): A {pa:.2f}, B {pb:.2f}", confidence=max(pa, pb),
                     verdicts=[{"candidate": "A", "p_correct": pa}, {"candidate": "B", "p_correct": pb}],
                     candidates={"A": a, "B": b}, rule=rule, consistent=True, judge_kind="pointwise",
                     scores={"A": pa, "B": pb})


def render_calls(calls: list[ToolCall]) -> str:
    """A readable list of the calls (the tools pattern's text)."""
    import json

    if not calls:
        return "No tool call is needed for this request."
    lines = [f"{i}. {c.tool} {json.dumps(c.arguments, ensure_ascii=False)} [{c.risk}]"
             for i, c in enumerate(calls, 1)]
    return "Tool calls for the host to run:\n" + "\n".join(lines)
