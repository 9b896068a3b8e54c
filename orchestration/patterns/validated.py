"""validated: primary answers, the answer is checked, failures are repaired (bounded, escalating), then extraction.

The check is a fact where it can be: with ``verify`` = execute (or auto, when the answer has Python code and a
sandbox exists) tests run against the code and PASS means they ran and passed. The tests are gathered once and
reused by every round; where the request names the function, they are written while the answer is.

Which failing test counts is a fact too, never the validator's opinion: when the first answer fails, the
competitor role (the profile's stronger model) answers the request on its own, seeing neither the failing code
nor the tests. A generated test that both answers fail is most likely wrong and is set aside (reported, never
hidden); of the two answers the one passing more tests is kept (ties: the stronger model's, the competitor's
unless ``stronger`` names the primary). Where that still fails, repairs follow from one user turn holding the
task, each failing test (input, expected, what came back) and the code shown as material: the primary's
(``max_revisions`` rounds; left out, none once the competitor's own answer failed too where ``stronger`` is the
competitor), then the competitor's (the rest of ``escalations``). A repair that returns the same code is "no
change", never a fix; the candidate passing the most tests is the answer (ties: the later). Code cut off at the
token budget is never run or counted as a success. Only where no test can run does the
validator's PASS/FAIL opinion decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..checks.verify import (Origin, host_tests, incomplete_code, python_code, same_code, sandbox_problem,
                             signatures, syntax_problem)
from ..core.settings import Role, Settings
from ..core.types import Execution, PatternRequest, PatternResult, Round, Verdict
from ..run import prompts
from ..run.context import RunContext
from ..tools.extract import maybe_extract
from ._common import answer, code_budget, finish, validate
from ._verify import execute, gather_tests, plan


def _tested(ex: Execution, set_aside: set[str]) -> Verdict:
    """The verdict of an execution, counting the tests not in ``set_aside`` (each test marked accordingly)."""
    for t in ex.tests:
        t.set_aside = t.test in set_aside
    if not ex.counted and ex.load_error is None:  # every generated test was failed by both answers too
        return Verdict(verdict="PASS", method="execute", execution=ex,
                       issues=["no test counted: every test was failed by both independent answers (set aside)"])
    return Verdict(verdict="PASS" if ex.all_passed else "FAIL", issues=ex.feedback(), method="execute",
                   execution=ex)


async def _executed(ctx: RunContext, text: str, tests: list[tuple[str, Origin]], set_aside: set[str],
                    label: str) -> Verdict:
    cut = incomplete_code(text, ctx.is_cut_off(text))
    if cut is not None:
        return Verdict(verdict="FAIL", issues=[cut + "; write the complete code, shorter"], method="execute")
    code = python_code(text)
    if code is None:
        return Verdict(verdict="FAIL", issues=[syntax_problem(text) or "the answer has no Python code to test"],
                       method="execute")
    return _tested(await execute(ctx, code, tests, label), set_aside)


def _defs(text: str) -> str:
    """The ``def`` lines of code that does not parse, as stubs (what generated tests may call)."""
    return "".join(f"{m.group(1)}\n    pass\n" for m in re.finditer(r"^\s*(def \w+\(.*\)\s*(?:->.*)?:)", text, re.M))


def standing(verdict: Verdict) -> int:
    """A tested candidate's place in the pick: tests passed; -1 where nothing ran (cut off, no code, it did not
    load); above all where it passed."""
    ex = verdict.execution
    if verdict.verdict == "PASS":
        return 1 << 20
    return -1 if ex is None or ex.load_error is not None else ex.passed


@dataclass
class _Candidate:
    text: str
    verdict: Verdict

    @property
    def score(self) -> int:
        return standing(self.verdict)


def _outcome(new: _Candidate, best: _Candidate) -> str:
    if new.verdict.verdict == "PASS":
        if new.verdict.execution is not None and not new.verdict.execution.counted:
            return "no test counted"  # every test set aside: a PASS that measured nothing
        return "tie" if best.verdict.verdict == "PASS" else "fixed"
    if new.verdict.execution is None and new.verdict.issues and "cut off" in new.verdict.issues[0]:
        return "cut off"
    if new.verdict.execution is None:
        return "no code"
    return "improved" if new.score > best.score else "worse" if new.score < best.score else "still failing"


async def _repair(ctx: RunContext, role: Role, base: _Candidate, purpose: str) -> str:
    """``role`` repairs ``base`` from its failing checks (the code shown as material, one user turn)."""
    messages = prompts.revision(ctx.request, base.text, base.verdict.issues, ctx.settings.prompts,
                                ctx.role_system(role), code=python_code(base.text))
    return (await ctx.generate(role, messages, purpose=purpose, max_tokens=code_budget(ctx), continue_code=True)).text


def _failed_by_both(a: _Candidate, b: _Candidate, set_aside: set[str]) -> None:
    """A generated test that two independent answers both fail is most likely wrong: it is set aside (kept in
    the report) for every candidate. The host's tests and the prompt's examples always count."""
    ea, eb = a.verdict.execution, b.verdict.execution
    if ea is None or eb is None or ea.load_error is not None or eb.load_error is not None:
        return
    for ta, tb in zip(ea.tests, eb.tests, strict=True):
        if ta.origin == "validator" and not ta.passed and not tb.passed:
            set_aside.add(ta.test)
    a.verdict, b.verdict = _tested(ea, set_aside), _tested(eb, set_aside)


async def _independent(ctx: RunContext, first: _Candidate, tests: list[tuple[str, Origin]], set_aside: set[str]
                       ) -> _Candidate:
    """The stronger model answers the request on its own (neither the failing code nor the tests in sight): the
    tests both answers fail are set aside, and of the two the one passing more tests is the answer (ties: the
    stronger model's)."""
    text = await answer(ctx, "competitor", "escalate (1): competitor answers on its own", code_budget(ctx))
    model = ctx.trace.steps[-1].model
    other = _Candidate(text, await _executed(ctx, text, tests, set_aside, "test the competitor's answer"))
    _failed_by_both(first, other, set_aside)
    ex = other.verdict.execution
    outcome = "no change" if same_code(text, first.text) else _outcome(other, first)
    ctx.trace.rounds.append(Round(round=1, role="competitor", model=model, outcome=outcome,
                                  passed=ex.passed if ex is not None else None,
                                  total=len(ex.counted) if ex is not None else None))
    return other


def primary_revisions(settings: Settings, escalated: bool) -> int:
    """The primary's repair rounds: as set; left out, 1, or none once the stronger model's own answer failed too
    (the default profile's 0.5B repaired 0 of 39 such failures: a weaker model's repair after the stronger one's
    answer is cost without a fix)."""
    if settings.max_revisions is not None:
        return settings.max_revisions
    return 0 if escalated and settings.stronger == "competitor" else 1


async def _by_tests(ctx: RunContext, text: str, tests: list[tuple[str, Origin]]) -> str:
    """Rounds of repair against the same tests; the candidate passing the most is the answer."""
    set_aside: set[str] = set()
    first = _Candidate(text, await _executed(ctx, text, tests, set_aside, "validate"))
    seen, best, n = [first], first, 0
    escalations = ctx.settings.escalations
    if first.verdict.verdict == "FAIL" and escalations and not ctx.same_model("primary", "competitor"):
        n, escalations = 1, escalations - 1
        other = await _independent(ctx, first, tests, set_aside)
        # ties: the stronger model's, the competitor's unless the profile measured the primary stronger
        if other.score > first.score or (other.score == first.score and ctx.settings.stronger != "primary"):
            best = other
        seen.append(other)
    ctx.trace.verdicts += [c.verdict for c in seen]
    which = "the better of the first answer and the competitor's" if len(seen) > 1 else "the first answer"
    ctx.checkpoint(best.text, f"{which}, tested: {best.verdict.verdict}")
    plan_roles: list[Role] = ["primary"] * primary_revisions(ctx.settings, escalated=n > 0) + ["competitor"] * escalations
    while best.verdict.verdict == "FAIL" and plan_roles:
        role = plan_roles.pop(0)
        n += 1
        purpose = f"revise ({n})" if role == "primary" else f"escalate ({n}): {role} repairs"
        new_text = await _repair(ctx, role, best, purpose)
        model = ctx.trace.steps[-1].model
        if any(same_code(new_text, c.text) for c in seen):
            ctx.trace.rounds.append(Round(round=n, role=role, model=model, outcome="no change"))
            if role == "primary":  # repeating itself: the stronger model takes over
                plan_roles = [r for r in plan_roles if r != "primary"]
            continue
        new = _Candidate(new_text, await _executed(ctx, new_text, tests, set_aside, f"re-validate ({n})"))
        ctx.trace.verdicts.append(new.verdict)
        ex = new.verdict.execution
        ctx.trace.rounds.append(Round(round=n, role=role, model=model, outcome=_outcome(new, best),
                                      passed=ex.passed if ex is not None else None,
                                      total=len(ex.counted) if ex is not None else None))
        seen.append(new)
        if new.score >= best.score:  # ties: the later repair, written with the failures in hand
            best = new
            ctx.checkpoint(best.text, f"the best tested answer so far (round {n}): {best.verdict.verdict}")
    ctx.trace.revisions = n
    if best is not first:
        ctx.trace.first_answer = text
    return best.text


async def _by_opinion(ctx: RunContext, text: str) -> str:
    """No test can run: the validator's PASS/FAIL, the primary revises (bounded). A repeat ends the rounds; a
    revision cut off inside its code is never put to the validator or kept."""
    verdict = await validate(ctx, text, "validate")
    ctx.trace.verdicts.append(verdict)
    ctx.checkpoint(text, f"the first answer, the validator's verdict: {verdict.verdict}")
    n = 0
    while verdict.verdict == "FAIL" and n < primary_revisions(ctx.settings, escalated=False):
        n += 1
        new = await _repair(ctx, "primary", _Candidate(text, verdict), f"revise ({n})")
        model = ctx.trace.steps[-1].model
        if same_code(new, text):
            ctx.trace.rounds.append(Round(round=n, role="primary", model=model, outcome="no change"))
            break
        if incomplete_code(new, ctx.is_cut_off(new)):
            ctx.trace.rounds.append(Round(round=n, role="primary", model=model, outcome="cut off"))
            continue
        verdict = await validate(ctx, new, f"re-validate ({n})")
        ctx.trace.verdicts.append(verdict)
        ctx.trace.rounds.append(Round(round=n, role="primary", model=model,
                                      outcome="fixed" if verdict.verdict == "PASS" else "still failing"))
        ctx.trace.first_answer = ctx.trace.first_answer or text
        text = new
    ctx.trace.revisions = n
    return text


_NAMED = re.compile(r"\bdef\s+(\w+)\s*\(([^()]*)\)")


def _named(ctx: RunContext) -> str | None:
    """Stubs of the functions the request itself names (``def name(params)``) when tests will be written for them:
    then they can be written while the answer is (one batch where both roles share a model), not after it."""
    req = ctx.request
    if (req.verify or ctx.settings.verify) == "model" or sandbox_problem(ctx.settings.sandbox) is not None:
        return None
    if host_tests(req.prompt, req.context, req.tests,
                  context_tests=req.context_tests if req.context_tests is not None else ctx.settings.context_tests):
        return None  # the host's tests need no writing
    found = dict(_NAMED.findall(req.prompt + "\n" + (req.context or "")))
    stub = "".join(f"def {name}({params}):\n    pass\n" for name, params in found.items())
    try:
        return stub if stub and signatures(stub) else None
    except SyntaxError:
        return None


async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
    stub = _named(ctx)
    early: list[tuple[str, Origin]] | None = None
    if stub is not None:
        text, early = await ctx.together([
            ("answer", lambda: answer(ctx, "primary", max_tokens=code_budget(ctx))),
            ("write tests", lambda: gather_tests(ctx, stub))])
    else:
        text = await answer(ctx, "primary", max_tokens=code_budget(ctx))
    ctx.checkpoint(text, "the first answer, not yet checked")
    executing, why = plan(ctx, text)
    tests: list[tuple[str, Origin]] = []
    if executing:
        tests = early if early is not None else await gather_tests(ctx, python_code(text) or _defs(text))
        executing = bool(tests)
    ctx.trace.verification = (f"execute: {len(tests)} tests ({', '.join(sorted({o for _, o in tests}))}) in the "
                              f"{ctx.settings.sandbox} sandbox" if executing else ctx.trace.verification or why)
    text = await (_by_tests(ctx, text, tests) if executing else _by_opinion(ctx, text))
    if incomplete_code(text, ctx.is_cut_off(text)):
        ctx.trace.extraction = "skipped: the answer was cut off inside its code (incomplete code is never written)"
        return finish(ctx, text)
    return finish(ctx, text, await maybe_extract(ctx, text))
