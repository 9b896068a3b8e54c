"""validated: primary answers, the answer is checked, primary revises on FAIL (bounded), then extraction.

The check is a fact where it can be: with ``verify`` = execute (or auto, when the answer has Python
code and a sandbox exists) tests run against the code and PASS means they ran and passed; failing tests
with their errors are the revision's feedback. Otherwise the validator model says PASS or FAIL.
"""

from __future__ import annotations

import re

from .. import prompts
from ..context import RunContext
from ..tools.extract import maybe_extract
from ..types import PatternRequest, PatternResult, Verdict
from ..verify import Origin, python_code, syntax_problem
from ._common import answer, validate
from ._verify import blame, execute, gather_tests, plan


async def _executed(ctx: RunContext, text: str, tests: list[tuple[str, Origin]], set_aside: dict[str, bool],
                    label: str) -> Verdict:
    code = python_code(text)
    if code is None:
        return Verdict(verdict="FAIL", issues=[syntax_problem(text) or "the answer has no Python code to test"],
                       method="execute")
    ex = await blame(ctx, code, await execute(ctx, code, tests, label), set_aside)
    if not ex.counted and ex.load_error is None:  # every test was set aside: no evidence either way
        verdict = await validate(ctx, text, f"{label} (model: every generated test was set aside)")
        return verdict.model_copy(update={"execution": ex})
    return Verdict(verdict="PASS" if ex.all_passed else "FAIL", issues=ex.failures(), method="execute",
                   execution=ex)


def _defs(text: str) -> str:
    """The ``def`` lines of code that does not parse, as stubs (what generated tests may call)."""
    return "".join(f"{m.group(1)}\n    pass\n" for m in re.finditer(r"^\s*(def \w+\(.*\)\s*(?:->.*)?:)", text, re.M))


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    text = await answer(ctx, "primary")
    executing, why = plan(ctx, text)
    tests: list[tuple[str, Origin]] = []
    if executing:
        tests = await gather_tests(ctx, python_code(text) or _defs(text))
        executing = bool(tests)
    ctx.trace.verification = (f"execute: {len(tests)} tests ({', '.join(sorted({o for _, o in tests}))}) in the "
                              f"{ctx.settings.sandbox} sandbox" if executing else ctx.trace.verification or why)
    set_aside: dict[str, bool] = {}
    revisions = 0
    while True:
        label = "validate" if revisions == 0 else f"re-validate ({revisions})"
        verdict = await (_executed(ctx, text, tests, set_aside, label) if executing else validate(ctx, text, label))
        ctx.trace.verdicts.append(verdict)
        if verdict.verdict == "PASS" or revisions >= ctx.settings.max_revisions:
            break  # the last verdict is reported as it is, FAIL included
        messages = prompts.revision(request, text, verdict.issues, ctx.settings.prompts, ctx.role_system("primary"))
        revisions += 1
        text = (await ctx.generate("primary", messages, purpose=f"revise ({revisions})")).text
    ctx.trace.revisions = revisions
    return ctx.result(text, await maybe_extract(ctx, text))
