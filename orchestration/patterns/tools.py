"""tools: the tools model alone, one constrained step from the task straight to tool calls."""

from __future__ import annotations

from ..context import RunContext
from ..tools.extract import extract_tool_calls
from ..types import PatternRequest, PatternResult
from ._common import render_calls


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    ctx.trace.extraction = "always: the tools pattern is extraction"
    calls = await extract_tool_calls(ctx, None)
    return ctx.result(render_calls(calls), calls)
