"""validator: direct access to the validator model (auto's fast route for simple tasks)."""

from __future__ import annotations

from ..context import RunContext
from ..types import PatternRequest, PatternResult
from ._common import answer


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    ctx.trace.extraction = "skipped: direct model access"
    return ctx.result(await answer(ctx, "validator"))
