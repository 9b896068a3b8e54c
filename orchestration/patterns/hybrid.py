"""hybrid: the primary answers; the tools model extracts calls when they are needed."""

from __future__ import annotations

from ..core.types import PatternRequest, PatternResult
from ..run.context import RunContext
from ..tools.extract import maybe_extract
from ._common import answer


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    text = await answer(ctx, "primary")
    ctx.checkpoint(text, "the answer")
    # The text stays the primary's answer; the tools model only adds calls.
    return ctx.result(text, await maybe_extract(ctx, text))
