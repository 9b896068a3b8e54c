"""validator: direct access to the validator model (auto's fast route for simple tasks)."""

from __future__ import annotations

from ..core.types import PatternRequest, PatternResult
from ..run.context import RunContext
from ._common import answer


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    ctx.trace.extraction = "skipped: direct model access"
    return ctx.result(await answer(ctx, "validator"))
