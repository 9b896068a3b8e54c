"""compete: primary (A) and competitor (B) answer in turn, the validator judges, the winner goes to extraction."""

from __future__ import annotations

from ..context import RunContext
from ..tools.extract import maybe_extract
from ..types import PatternRequest, PatternResult
from ._common import answer, judge


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    a = await answer(ctx, "primary", "solution A")
    b = await answer(ctx, "competitor", "solution B")
    swap = request.swap if request.swap is not None else ctx.settings.judge_swap
    judgement = await judge(ctx, a, b, swap)
    ctx.trace.judgement = judgement
    winner = a if judgement.pick == "A" else b
    return ctx.result(winner, await maybe_extract(ctx, winner))
