"""compete: primary (A) and competitor (B) answer, the better one wins, then extraction on the winner.

Where tests can run (``verify``), the answer passing more of them wins; generated tests that both answers
fail are set aside first (weighed by agreement, as CodeT does). An answer cut off inside its code is never
run (it passes nothing). Where the tests tie or cannot run, ``judge`` decides: ``stronger`` (the default where
the profile's pass rates are measured) keeps the answer of the model that passes more problems, a fact about the
two models, since every model-scored judge tried on the default profile fell short of it where one answer is right;
``pointwise`` scores each answer on its own (the judge's probability that it is correct), so the order they are
shown in cannot change the pick; ``pairwise`` asks which of the two is better, in both orders with
``judge_swap``, and a disagreement between the orders is reported with the rule that settled it. The judge is
a model that wrote neither answer where the profile has one.
"""

from __future__ import annotations

from ..checks.verify import incomplete_code, python_code
from ..core.types import Execution, Judgement, PatternRequest, PatternResult
from ..run.context import RunContext
from ..tools.extract import maybe_extract
from ._common import answer, code_budget, finish, judge, judge_pointwise
from ._verify import execute, gather_tests, judge_model, plan


async def _by_tests(ctx: RunContext, a: str, b: str) -> tuple[dict[str, Execution], dict[str, int]] | None:
    texts = {"A": a, "B": b}
    cut = {k: incomplete_code(t, ctx.is_cut_off(t)) for k, t in texts.items()}
    code = {k: None if cut[k] else python_code(t) for k, t in texts.items()}
    tests = await gather_tests(ctx, code["A"] or code["B"] or "")
    if not tests:
        return None
    ctx.trace.verification = (f"execute: {len(tests)} tests ({', '.join(sorted({o for _, o in tests}))}) in the "
                              f"{ctx.settings.sandbox} sandbox")
    runs: dict[str, Execution] = {}
    for k in ("A", "B"):
        c = code[k]
        runs[k] = (await execute(ctx, c, tests, f"test solution {k}") if c is not None
                   else Execution(sandbox=ctx.settings.sandbox, load_error=cut[k] or "the answer has no Python code"))
    for i, (_, origin) in enumerate(tests):
        outcomes = [r.tests[i] for r in runs.values() if r.load_error is None and i < len(r.tests)]
        if origin == "validator" and len(outcomes) == 2 and not any(t.passed for t in outcomes):
            for t in outcomes:
                t.set_aside = True
    return runs, {k: r.passed for k, r in runs.items()}


async def _pairwise(ctx: RunContext, a: str, b: str, model: str) -> Judgement:
    swap = ctx.request.swap if ctx.request.swap is not None else ctx.settings.judge_swap
    j = await judge(ctx, a, b, swap, model=model)
    pick = j.pick
    if not swap:
        rule = "one order judged (swap off): position bias is not controlled"
    elif not j.disagreement:
        rule = "both orders picked the same answer"
    elif j.confidence is not None:
        rule = "the orders disagreed (a tie): settled by the judge's probabilities summed over both orders"
    else:  # no probabilities to weigh: a rule that does not depend on the order shown
        pick = "B"
        rule = "the orders disagreed (a tie) and the backend gives no probabilities: B (the competitor) stands"
    reason = next((v["reason"] for v in j.verdicts if v["pick"] == pick), j.reason)
    return j.model_copy(update={"pick": pick, "reason": reason, "rule": rule,
                                "consistent": (not j.disagreement) if swap else None})


def _stronger(ctx: RunContext, a: str, b: str) -> Judgement:
    """The answer of the role whose model passes more problems on this profile (``settings.stronger``): no model
    is asked, and which answer is shown first plays no part."""
    role = ctx.settings.stronger
    assert role is not None  # settings refuse judge = stronger without it
    pick = "A" if role == "primary" else "B"
    model = ctx.settings.roles[role].model
    return Judgement(pick=pick, reason=f"the {role}'s answer ({model}): its model passes more problems on this "
                                       "profile", method="stronger", candidates={"A": a, "B": b},
                     rule=f"the {role}'s answer stands: its model passes more problems on this profile "
                          "(settings.stronger, from the measured pass rates)")


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    budget = code_budget(ctx)
    if ctx.same_model("primary", "competitor"):  # one model writes both: one batch
        a, b = await ctx.together([("solution A", lambda: answer(ctx, "primary", "solution A", budget)),
                                   ("solution B", lambda: answer(ctx, "competitor", "solution B", budget))])
    else:
        a = await answer(ctx, "primary", "solution A", budget)
        ctx.checkpoint(a, "solution A (the primary's); solution B did not finish")
        b = await answer(ctx, "competitor", "solution B", budget)
    ctx.checkpoint(a, "solution A (the primary's), not yet judged")
    executing, why = plan(ctx, a, b)
    scored = await _by_tests(ctx, a, b) if executing else None
    if scored is not None:
        lead = "A" if scored[1]["A"] >= scored[1]["B"] else "B"
        ctx.checkpoint(a if lead == "A" else b, f"solution {lead}, passing more tests so far "
                                                f"(A {scored[1]['A']}, B {scored[1]['B']}), not judged")
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
        tie = f"tests tied (A {scored[1]['A']}, B {scored[1]['B']}); " if scored is not None else ""
        if ctx.settings.judge == "stronger":
            judgement = _stronger(ctx, a, b)
        else:
            judgement = await (judge_pointwise(ctx, a, b, model=model) if ctx.settings.judge == "pointwise"
                               else _pairwise(ctx, a, b, model))
            judgement = judgement.model_copy(update={"judge_model": model, "recused": recused})
        judgement = judgement.model_copy(update={
            "rule": tie + judgement.rule, "test_scores": scored[1] if scored is not None else None,
            "execution": scored[0] if scored is not None else None})
    ctx.trace.judgement = judgement
    winner = a if judgement.pick == "A" else b
    if incomplete_code(winner, ctx.is_cut_off(winner)):
        ctx.trace.extraction = "skipped: the answer was cut off inside its code (incomplete code is never written)"
        return finish(ctx, winner)
    return finish(ctx, winner, await maybe_extract(ctx, winner))
