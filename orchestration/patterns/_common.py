"""Small pieces the patterns share: one answer from a role, verdict and pick parsing."""

from __future__ import annotations

import re

from .. import prompts
from ..context import RunContext
from ..settings import Role
from ..errors import ModelOutputError
from ..types import Completion, Constraint, Judgement, ToolCall, Verdict

__all__ = ["answer", "validate", "judge", "parse_verdict", "parse_pick", "render_calls"]

VERDICT_CONSTRAINT = Constraint(options=["PASS", "FAIL"], option_continuation={"PASS": None, "FAIL": ": "})
PICK_CONSTRAINT = Constraint(options=["A", "B"], option_continuation={"A": ": ", "B": ": "})
_VERDICT = re.compile(r"^\s*(PASS|FAIL)\b[\s:.\-]*", re.DOTALL)
_PICK = re.compile(r"^\s*(A|B)\b[\s:.\-)]*", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
VERDICT_MAX_TOKENS = 256
JUDGE_MAX_TOKENS = 48  # the pick and one sentence; its reason is cut to a line anyway


async def answer(ctx: RunContext, role: Role, purpose: str = "answer") -> str:
    messages = prompts.answer(ctx.request, ctx.role_system(role))
    return (await ctx.generate(role, messages, purpose=purpose)).text


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
    """('A'|'B', reason) from the judge's reply, read from its start only; None if neither."""
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
        "validator", messages, parse, purpose=purpose, model=model, constraint=PICK_CONSTRAINT,
        max_tokens=max(16, min(JUDGE_MAX_TOKENS, ctx.answer_max_tokens)))
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
                     verdicts=verdicts, disagreement=disagreement, candidates={"A": a, "B": b})


def render_calls(calls: list[ToolCall]) -> str:
    """A readable list of the calls (the tools pattern's text)."""
    import json

    if not calls:
        return "No tool call is needed for this request."
    lines = [f"{i}. {c.tool} {json.dumps(c.arguments, ensure_ascii=False)} [{c.risk}]"
             for i, c in enumerate(calls, 1)]
    return "Tool calls for the host to run:\n" + "\n".join(lines)
