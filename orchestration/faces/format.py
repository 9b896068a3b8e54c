"""Plain-text renderings of a pattern result that the faces share (the CLI, the MCP server's text mirror, logs)."""

from __future__ import annotations

import json

from ..core.types import PatternResult

__all__ = ["trace_line", "result_text", "for_host"]


def for_host(result: PatternResult, detail: str = "compact") -> PatternResult:
    """The result as a host's model reads it (Claude Code hands it the whole structured result): by default
    without what repeats the answer at length (the judged candidates' full texts, the first answer a repair
    replaced); ``detail = "full"`` keeps everything."""
    if detail == "full":
        return result
    t = result.trace
    update: dict[str, object] = {"first_answer": None}
    if t.judgement is not None:
        update["judgement"] = t.judgement.model_copy(update={"candidates": {}})
    return result.model_copy(update={"trace": t.model_copy(update=update)})


def trace_line(result: PatternResult) -> str:
    """One line: pattern, route, steps with their seconds, totals."""
    t = result.trace
    steps = ", ".join(f"{s.purpose}[{s.role}] {s.seconds:.1f}s" for s in t.steps)
    extra = f" route={t.route}" if t.route else ""
    if t.verdicts:
        extra += f" verdict={t.verdicts[-1].verdict} revisions={t.revisions}"
    if t.judgement:
        j = t.judgement  # a pick by tests or by the stronger model has no probability
        extra += f" pick={j.pick} by {j.method}" + (f" ({j.confidence:.2f})" if j.confidence is not None else "")
    d = t.tool_decision
    if d is not None:
        extra += f" calls={d.decided_by}"
        if d.decided_by == "model" and d.probabilities:
            extra += f"({max(d.probabilities.values()):.2f})"
        if d.refused:
            extra += f" refused={len(d.refused)}"
    return (f"[{result.pattern}{extra}] {steps} | {result.totals.prompt_tokens}+{result.totals.completion_tokens} "
            f"tokens, {result.totals.seconds:.1f}s")


def result_text(result: PatternResult, *, for_host: bool = False) -> str:
    """The answer, the tool calls as JSON, the trace line: for a person (CLI) or a host model (MCP text)."""
    parts = [result.text.rstrip() or ("(empty answer)" if for_host else "")]
    if result.partial:
        parts.append("PARTIAL (the deadline came first): " + "; ".join(result.skipped))
    if result.tool_calls:
        calls = json.dumps([c.model_dump() for c in result.tool_calls], indent=2)
        head = ("Tool calls for the host to run (this server runs none):" if for_host
                else "Tool calls (for the host to run):")
        parts.append(f"{head}\n{calls}")
    elif not for_host:
        parts.append("Tool calls: none")
    parts.append(trace_line(result))
    return "\n\n".join(parts)
