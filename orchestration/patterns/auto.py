"""auto: classify the task with the seed's keyword table and run the matching pattern.

A coding request goes to ``auto_coding`` (validated unless the profile's measurements name another), where tests
decide whenever they can run; never to the validator's opinion alone.
"""

from __future__ import annotations

from ..core.types import PatternRequest, PatternResult
from ..run.context import RunContext
from ..run.heuristics import classify
from . import compete, competitor, hybrid, primary, validated, validator

# The patterns auto can route to, imported here rather than from the package's table (which lists auto itself):
# no import circle.
ROUTES = {"validated": validated.run, "hybrid": hybrid.run, "validator": validator.run, "compete": compete.run,
          "competitor": competitor.run, "primary": primary.run}


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    route = classify(request.prompt, request.context)
    pattern, reason = route.pattern, route.reason
    if route.task == "coding" and ctx.settings.auto_coding != pattern:
        pattern = ctx.settings.auto_coding
        reason = reason.replace(f"-> {route.pattern}", f"-> {pattern} (auto_coding)")
    ctx.trace.route = pattern
    ctx.trace.route_reason = reason
    ctx.trace.matched_keywords = route.matched
    return await ROUTES[pattern](request, ctx)
