"""auto: classify the task with the seed's keyword table and run the matching pattern."""

from __future__ import annotations

from ..context import RunContext
from ..heuristics import classify
from ..types import PatternRequest, PatternResult


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    from . import PATTERNS

    route = classify(request.prompt, request.context)
    ctx.trace.route = route.pattern
    ctx.trace.route_reason = route.reason
    ctx.trace.matched_keywords = route.matched
    return await PATTERNS[route.pattern](request, ctx)
