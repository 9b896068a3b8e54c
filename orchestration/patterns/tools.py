"""tools: straight to tool calls, from the request alone (facts first; the tools model chooses or, for host tools,
writes them under their schemas)."""

from __future__ import annotations

from ..core.types import PatternRequest, PatternResult
from ..run.context import RunContext
from ..tools.extract import extract_tool_calls
from ._common import render_calls


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    ctx.trace.extraction = "always: the tools pattern is extraction"
    calls = await extract_tool_calls(ctx, None)
    text = render_calls(calls)
    decision = ctx.trace.tool_decision
    if not calls and decision is not None:  # say why: nothing asked, nothing grounded, or a call refused
        text = f"No tool call: {decision.reason}." + "".join(f"\nRefused: {r}" for r in decision.refused)
    return ctx.result(text, calls)
