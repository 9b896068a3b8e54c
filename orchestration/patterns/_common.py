"""Small pieces the patterns share: one answer from a role, verdict and pick parsing."""

from __future__ import annotations

import re

from .. import prompts
from ..context import RunContext
from ..settings import Role
from ..types import Constraint, Judgement, ToolCall, Verdict

__all__ = ["answer", "validate", "judge", "parse_verdict", "parse_pick", "render_calls"]

VERDICT_CONSTRAINT = Constraint(options=["PASS", "FAIL"], option_continuation={"PASS": None, "FAIL": ": "})
PICK_CONSTRAINT = Constraint(options=["A", "B"], option_continuation={"A": ": ", "B": ": "})
_VERDICT = re.compile(r"^\s*(PASS|FAIL)\b[\s:.\-]*", re.DOTALL)
_PICK = re.compile(r"^\s*(A|B)\b[\s:.\-)]*", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
VERDICT_MAX_TOKENS = 256
JUDGE_MAX_TOKENS = 96


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


async def validate(ctx: RunContext, response: str, purpose: str) -> Verdict:
    """The validator's PASS/FAIL on ``response``; its first token is constrained to PASS or FAIL."""
    messages = prompts.validation(ctx.request, response, ctx.settings.prompts)
    c = await ctx.generate("validator", messages, purpose=purpose,
                           max_tokens=max(16, min(VERDICT_MAX_TOKENS, ctx.answer_max_tokens)),
                           constraint=VERDICT_CONSTRAINT)
    parsed = parse_verdict(c.text)
    if parsed is None:
        raise ctx.fail(f"validator reply starts with neither PASS nor FAIL: {c.text[:120]!r}",
                       step=purpose, role="validator")
    verdict, issues = parsed
    confidence = (c.option_probs or {}).get(verdict, 1.0)
    return Verdict(verdict=verdict, issues=issues, confidence=round(confidence, 4))


async def _judge_once(ctx: RunContext, first: str, second: str, purpose: str) -> tuple[str, str, dict[str, float]]:
    messages = prompts.judge(ctx.request, first, second, ctx.settings.prompts)
    c = await ctx.generate("validator", messages, purpose=purpose,
                           max_tokens=max(16, min(JUDGE_MAX_TOKENS, ctx.answer_max_tokens)),
                           constraint=PICK_CONSTRAINT)
    parsed = parse_pick(c.text)
    if parsed is None:
        raise ctx.fail(f"judge reply starts with neither A nor B: {c.text[:120]!r}", step=purpose, role="validator")
    pick, reason = parsed
    probs = c.option_probs or {"A": float(pick == "A"), "B": float(pick == "B")}
    return pick, reason, probs


async def judge(ctx: RunContext, a: str, b: str, swap: bool) -> Judgement:
    """Pick A or B; with ``swap`` judge again with the order reversed and settle disagreement by probability."""
    pick1, reason1, p1 = await _judge_once(ctx, a, b, "judge A vs B")
    verdicts = [{"order": "A,B", "pick": pick1, "probs": p1, "reason": reason1}]
    picks, reasons, sums = [pick1], {pick1: reason1}, dict(p1)
    if swap:
        shown, reason2, p2 = await _judge_once(ctx, b, a, "judge swapped (B shown as A)")
        pick2 = "B" if shown == "A" else "A"
        probs2 = {"A": p2.get("B", 0.0), "B": p2.get("A", 0.0)}
        verdicts.append({"order": "B,A", "pick": pick2, "shown_pick": shown, "probs": probs2, "reason": reason2})
        picks.append(pick2)
        reasons.setdefault(pick2, reason2)
        sums = {k: sums.get(k, 0.0) + probs2.get(k, 0.0) for k in ("A", "B")}
    disagreement = len(set(picks)) > 1
    final = max(("A", "B"), key=lambda k: sums.get(k, 0.0)) if disagreement else picks[0]
    confidence = sums.get(final, 0.0) / len(picks)
    return Judgement(pick=final, reason=reasons.get(final, ""), confidence=round(min(1.0, confidence), 4),
                     verdicts=verdicts, disagreement=disagreement, candidates={"A": a, "B": b})


def render_calls(calls: list[ToolCall]) -> str:
    """A readable list of the calls (the tools pattern's text)."""
    import json

    if not calls:
        return "No tool call is needed for this request."
    lines = [f"{i}. {c.tool} {json.dumps(c.arguments, ensure_ascii=False)} [{c.risk}]"
             for i, c in enumerate(calls, 1)]
    return "Tool calls for the host to run:\n" + "\n".join(lines)
