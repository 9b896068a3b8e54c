"""validated: primary answers, validator says PASS/FAIL, primary revises on FAIL (bounded), then extraction."""

from __future__ import annotations

from .. import prompts
from ..context import RunContext
from ..tools.extract import maybe_extract
from ..types import PatternRequest, PatternResult
from ._common import answer, validate


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    text = await answer(ctx, "primary")
    revisions = 0
    while True:
        verdict = await validate(ctx, text, "validate" if revisions == 0 else f"re-validate ({revisions})")
        ctx.trace.verdicts.append(verdict)
        if verdict.verdict == "PASS" or revisions >= ctx.settings.max_revisions:
            break  # the last verdict is reported as it is, FAIL included
        messages = prompts.revision(request, text, verdict.issues, ctx.settings.prompts, ctx.role_system("primary"))
        revisions += 1
        text = (await ctx.generate("primary", messages, purpose=f"revise ({revisions})")).text
    ctx.trace.revisions = revisions
    return ctx.result(text, await maybe_extract(ctx, text))
