"""primary: the reasoning model alone, no tool extraction."""

from __future__ import annotations

from ..core.types import PatternRequest, PatternResult
from ..run.context import RunContext
from ._common import answer


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    ctx.trace.extraction = "skipped: primary never extracts tool calls"
    return ctx.result(await answer(ctx, "primary"))
