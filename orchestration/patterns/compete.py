"""compete: primary (A) and competitor (B) answer, the better one wins, then extraction on the winner.

Where tests can run (``verify``), the answer passing more of them wins; generated tests that both answers
fail are set aside first (weighed by agreement, as CodeT does). The model judge decides only when there
are no tests or they tie; it judges in both orders by default and a disagreement between the orders is
reported with the rule that settled it. The judge is a model that wrote neither answer where the profile
has one.
"""

from __future__ import annotations

from ..context import RunContext
from ..tools.extract import maybe_extract
from ..types import Execution, Judgement, PatternRequest, PatternResult
from ..verify import python_code
from ._common import answer, judge
from ._verify import execute, gather_tests, judge_model, plan


async def _by_tests(ctx: RunContext, a: str, b: str) -> tuple[dict[str, Execution], dict[str, int]] | None:
    code = {"A": python_code(a), "B": python_code(b)}
    tests = await gather_tests(ctx, code["A"] or code["B"] or "")
    if not tests:
        return None
    ctx.trace.verification = (f"execute: {len(tests)} tests ({', '.join(sorted({o for _, o in tests}))}) in the "
                              f"{ctx.settings.sandbox} sandbox")
    runs: dict[str, Execution] = {}
    for k in ("A", "B"):
        runs[k] = (await execute(ctx, code[k], tests, f"test solution {k}") if code[k] is not None
                   else Execution(sandbox=ctx.settings.sandbox, load_error="the answer has no Python code"))
    for i, (_, origin) in enumerate(tests):
        outcomes = [r.tests[i] for r in runs.values() if r.load_error is None and i < len(r.tests)]
        if origin == "validator" and len(outcomes) == 2 and not any(t.passed for t in outcomes):
            for t in outcomes:
                t.set_aside = True
    return runs, {k: r.passed for k, r in runs.items()}


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    if ctx.same_model("primary", "competitor"):  # one model writes both: one batch
        a, b = await ctx.together([("solution A", lambda: answer(ctx, "primary", "solution A")),
                                   ("solution B", lambda: answer(ctx, "competitor", "solution B"))])
    else:
        a = await answer(ctx, "primary", "solution A")
        b = await answer(ctx, "competitor", "solution B")
    executing, why = plan(ctx, a, b)
    scored = await _by_tests(ctx, a, b) if executing else None
    if scored is None:
        ctx.trace.verification = ctx.trace.verification or why
    model, recused = judge_model(ctx)
    if scored is not None and scored[1]["A"] != scored[1]["B"]:
        runs, scores = scored
        pick = "A" if scores["A"] > scores["B"] else "B"
        total = len(runs[pick].counted)
        judgement = Judgement(pick=pick, reason=f"passed {scores[pick]} of {total} tests", method="tests",
                              rule=f"tests: A passed {scores['A']}, B passed {scores['B']}",
                              test_scores=scores, execution=runs, candidates={"A": a, "B": b})
    else:
        swap = request.swap if request.swap is not None else ctx.settings.judge_swap
        judgement = await judge(ctx, a, b, swap, model=model)
        tie = f"tests tied (A {scored[1]['A']}, B {scored[1]['B']}); " if scored is not None else ""
        if not swap:
            rule = "one order judged (swap off): position bias is not controlled"
        elif not judgement.disagreement:
            rule = "both orders picked the same answer"
        elif judgement.confidence is not None:
            rule = "the orders disagreed (a tie): settled by the judge's probabilities summed over both orders"
        else:
            rule = "the orders disagreed (a tie) and the backend gives no probabilities: the first order's pick stands"
        judgement = judgement.model_copy(update={
            "rule": tie + rule, "consistent": (not judgement.disagreement) if swap else None,
            "test_scores": scored[1] if scored is not None else None,
            "execution": scored[0] if scored is not None else None})
    judgement = judgement.model_copy(update={"judge_model": model if judgement.method == "judge" else None,
                                             "recused": recused if judgement.method == "judge" else None})
    ctx.trace.judgement = judgement
    winner = a if judgement.pick == "A" else b
    return ctx.result(winner, await maybe_extract(ctx, winner))
