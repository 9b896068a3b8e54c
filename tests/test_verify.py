"""Execution-grounded verification: code and test parsing (tables), the sandboxed test run, and validated /
compete over the scripted fake backend with tests that really run (bubblewrap here)."""

from __future__ import annotations

import pytest

from orchestration.patterns.engine import Engine
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.core.types import PatternRequest
from orchestration.checks.verify import host_tests, parse_tests, python_code, run_tests, signatures

P, C, V, T = (FAKE_MODELS[r] for r in ("primary", "competitor", "validator", "tools"))
GOOD = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\n"
BAD = "Here it is:\n```python\ndef add(a, b):\n    return a - b\n```\n"


@pytest.mark.parametrize(("text", "code"), [
    (GOOD, "def add(a, b):\n    return a + b\n"),
    ("no code here, just words", None),
    ("```bash\nls -la\n```", None),  # parses as Python, but defines nothing
    ("```python\nimport math\n```\ntext\n```\ndef f():\n    return math.pi\n```",
     "import math\n\ndef f():\n    return math.pi\n"),
    ("def f(x):\n    return x\n", "def f(x):\n    return x\n"),  # a bare program
    ("```python\ndef broken(:\n```", None),
])
def test_python_code(text: str, code: str | None) -> None:
    assert python_code(text) == code


@pytest.mark.parametrize(("text", "tests"), [
    ("assert f(1) == 2\nassert f(2) == 3", ["assert f(1) == 2", "assert f(2) == 3"]),
    ("```python\nassert f(1) == 2\n```", ["assert f(1) == 2"]),
    ("Here are tests:\n1. assert f(1) == 2\nassert f(1) == 2\nassert f(", ["assert f(1) == 2"]),
    ("assert f(1) == 2; import os", []),  # two statements on a line: refused
    ("no tests", []),
    ("\n".join(f"assert f({i}) == {i}" for i in range(20)), [f"assert f({i}) == {i}" for i in range(8)]),
])
def test_parse_tests(text: str, tests: list[str]) -> None:
    assert parse_tests(text) == tests


def test_host_tests_from_argument_asserts_and_examples() -> None:
    got = host_tests("Write add(a, b).\nassert add(0, 0) == 0\n>>> add(1, 2)\n3\n>>> add(-1, 1)\n0\n", None,
                     ["assert add(5, 5) == 10"])
    assert got == [("assert add(5, 5) == 10", "host"), ("assert add(0, 0) == 0", "host"),
                   ("assert add(1, 2) == 3", "example"), ("assert add(-1, 1) == 0", "example")]


# Issue 26 §7: a context is material to work on; its asserts and examples are tests only when the host says so.
CONTEXT = "# utils.py\ndef helper():\n    pass\nassert 1 + 1 == 2\n>>> helper()\nNone\n"


@pytest.mark.parametrize(("prompt", "given", "context_tests", "want"), [
    ("Write add(a, b).", None, False, []),
    ("Write add(a, b).", None, True, [("assert 1 + 1 == 2", "context"), ("assert helper() == None", "context")]),
    ("Write add(a, b).", ["assert add(1, 2) == 3"], False, [("assert add(1, 2) == 3", "host")]),
    ("Write add(a, b).\nassert add(2, 2) == 4", None, False, [("assert add(2, 2) == 4", "host")]),
    ("Write add(a, b).\nassert add(2, 2) == 4", ["assert add(1, 2) == 3"], True,
     [("assert add(1, 2) == 3", "host"), ("assert add(2, 2) == 4", "host"), ("assert 1 + 1 == 2", "context"),
      ("assert helper() == None", "context")]),
])
def test_tests_come_only_from_where_the_host_meant_them(prompt, given, context_tests, want) -> None:
    assert host_tests(prompt, CONTEXT, given, context_tests=context_tests) == want


@pytest.mark.anyio
async def test_an_assert_in_the_context_does_not_make_a_wrong_add_pass() -> None:
    engine, fake = make(max_revisions=0, escalations=0)
    fake.enqueue(BAD, model=P)
    fake.enqueue("assert add(1, 2) == 3", model=V)  # the validator writes the tests, as with no host tests
    fake.enqueue("CODE", model=V)
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum.",
                                          context="notes.py:\nassert 1 + 1 == 2\n"))
    v = r.trace.verdicts[0]
    assert v.verdict == "FAIL" and v.method == "execute", v
    assert [(t.test, t.origin) for t in v.execution.tests] == [("assert add(1, 2) == 3", "validator")]


def test_signatures() -> None:
    assert signatures("import os\ndef f(a, b=2, *c, **d):\n    pass\nclass K:\n    pass\n") == \
        ["def f(a, b=2, *c, **d)", "class K"]


def test_run_tests_reports_each_outcome_with_what_went_wrong() -> None:
    ex = run_tests("def add(a, b):\n    return a - b\n",
                   [("assert add(0, 0) == 0", "host"), ("assert add(1, 2) == 3", "validator"),
                    ("assert undefined_name(1)", "validator")])
    assert ex.sandbox in ("bwrap", "sandbox-exec")
    assert [t.passed for t in ex.tests] == [True, False, False]
    assert ex.tests[1].error == "got -1"
    assert ex.tests[2].error.startswith("NameError")
    assert not ex.all_passed and ex.passed == 1
    assert ex.failures() == ["`assert add(1, 2) == 3` failed: got -1",
                             "`assert undefined_name(1)` failed: NameError: name 'undefined_name' is not defined"]


def test_run_tests_contains_broken_and_endless_code() -> None:
    assert run_tests("def f(:\n", [("assert f() == 1", "host")]).load_error.startswith("SyntaxError")
    ex = run_tests("def f():\n    while True:\n        pass\n", [("assert f() == 1", "host"), ("assert 1 == 1", "host")],
                   per_test_s=1)
    assert ex.tests[0].error.startswith("TimeoutError") and ex.tests[1].passed  # the next test still ran
    # a demo block under __main__ does not run (it might wait for input)
    ex = run_tests("def g():\n    return 1\nif __name__ == '__main__':\n    input()\n", [("assert g() == 1", "host")])
    assert ex.all_passed


def make(**overrides):  # noqa: ANN003, ANN201
    fake = ScriptedBackend()
    return Engine(fake_settings(**{"verify": "execute", **overrides}), {"mlx": fake}), fake


def req(prompt: str, **kw) -> PatternRequest:  # noqa: ANN003
    return PatternRequest(prompt=prompt, extraction="never", **kw)


@pytest.mark.anyio
async def test_validated_executes_generated_tests_and_revises_on_their_failures() -> None:
    engine, fake = make(escalations=0)  # the primary alone: its revision from the failures
    fake.enqueue(BAD, model=P)
    fake.enqueue("assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0", model=V)
    fake.enqueue(GOOD, model=P)  # the revision
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum."))
    first, last = r.trace.verdicts
    assert first.method == "execute" and first.verdict == "FAIL"
    assert first.issues == ["add(1, 2) should be 3, but your code returned -1",
                            "add(-1, 1) should be 0, but your code returned -2"]
    assert last.verdict == "PASS" and last.execution.passed == 3 and last.execution.sandbox == "bwrap"
    assert r.text == GOOD and r.trace.revisions == 1
    assert "3 tests (validator)" in r.trace.verification
    # the tests were written from the request and the signature, never the body
    writing = fake.history[1].messages[1].content
    assert "def add(a, b)" in writing and "return a - b" not in writing
    assert fake.models_asked == [P, V, P]  # no opinion asked about the failing tests
    revision = fake.history[2].messages
    assert [m.role for m in revision if m.role != "system"] == ["user"]  # the old code is material, not its turn
    assert "add(1, 2) should be 3, but your code returned -1" in revision[-1].content
    assert "return a - b" in revision[-1].content and "Write a function add" in revision[-1].content
    assert [(x.role, x.outcome, x.passed, x.total) for x in r.trace.rounds] == [("primary", "fixed", 3, 3)]


@pytest.mark.anyio
async def test_a_cut_off_answer_fails_on_its_syntax_and_is_revised() -> None:
    engine, fake = make(escalations=0)
    cut = '```python\ndef add(a, b):\n    """Add two numbers.\n'  # the budget ran out inside the docstring
    fake.enqueue(cut, model=P)
    fake.enqueue("assert add(1, 2) == 3", model=V)  # tests written from the stub signature
    fake.enqueue(GOOD, model=P)
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum."))
    first, last = r.trace.verdicts
    assert first.verdict == "FAIL" and first.method == "execute"
    assert first.issues[0].startswith("the code does not parse: unterminated triple-quoted string")
    assert "def add(a, b)" in fake.history[1].messages[1].content
    assert last.verdict == "PASS" and r.text == GOOD


@pytest.mark.anyio
async def test_validated_host_tests_pass_without_asking_the_validator() -> None:
    engine, fake = make()
    fake.enqueue(GOOD, model=P)
    r = await engine.run("validated", req("Write add(a, b).", tests=["assert add(2, 3) == 5"]))
    assert fake.models_asked == [P]
    v = r.trace.verdicts[0]
    assert v.verdict == "PASS" and v.method == "execute" and v.execution.tests[0].origin == "host"


@pytest.mark.anyio
async def test_a_generated_test_both_independent_answers_fail_is_set_aside_without_asking_an_opinion() -> None:
    """The validator said TEST (set it aside) to every failing test it was asked about in the re-measure's
    records, the wrong answers' included: now a second, independent answer decides."""
    engine, fake = make()
    fake.enqueue(GOOD, model=P)
    fake.enqueue("assert add(1, 2) == 3\nassert add(2, 2) == 5", model=V)  # the second test is wrong
    also_good = "```python\ndef add(a, b):\n    return b + a\n```"
    fake.enqueue(also_good, model=C)  # the stronger model, on its own: fails the wrong test too
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum."))
    assert fake.models_asked == [P, V, C]  # no fault check: nothing is asked of the validator but tests
    first, other = r.trace.verdicts
    assert first.verdict == other.verdict == "PASS"
    assert [(t.test, t.passed, t.set_aside) for t in first.execution.tests] == [
        ("assert add(1, 2) == 3", True, False), ("assert add(2, 2) == 5", False, True)]
    assert r.text == also_good  # a tie: the stronger model's answer
    # ... and reported as one: the first answer passes the counted test too, so the competitor fixed nothing.
    assert [(x.role, x.outcome, x.passed, x.total) for x in r.trace.rounds] == [("competitor", "tie", 1, 1)]


@pytest.mark.anyio
async def test_a_round_where_every_test_was_set_aside_measured_nothing_and_says_so() -> None:
    """Mbpp/16 in the re-measure: both answers failed every generated test, so 0 of 0 counted, and the round was
    recorded as "fixed". It is a PASS that measured nothing."""
    engine, fake = make(max_revisions=0, escalations=1)
    fake.enqueue(BAD, model=P)
    fake.enqueue("assert add(1, 2) == 7\nassert add(2, 2) == 9", model=V)  # both tests wrong
    fake.enqueue(GOOD, model=C)
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum."))
    assert fake.models_asked == [P, V, C]
    assert [(x.role, x.outcome, x.passed, x.total) for x in r.trace.rounds] == [
        ("competitor", "no test counted", 0, 0)]
    assert all(t.set_aside for v in r.trace.verdicts for t in v.execution.tests)
    assert "no test counted" in r.trace.verdicts[-1].issues[0]


@pytest.mark.anyio
async def test_a_test_only_the_first_answer_fails_counts_and_the_answer_passing_it_wins() -> None:
    engine, fake = make()
    fake.enqueue(BAD, model=P).enqueue(ADD_TESTS, model=V).enqueue(GOOD, model=C)
    r = await engine.run("validated", req(ADD_TASK))
    assert fake.models_asked == [P, V, C]
    assert [(x.round, x.role, x.outcome, x.passed) for x in r.trace.rounds] == [(1, "competitor", "fixed", 2)]
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL", "PASS"] and r.text == GOOD
    assert r.trace.first_answer == BAD
    assert not any(t.set_aside for t in r.trace.verdicts[0].execution.tests)  # the competitor passed them
    own = fake.history[2].messages[-1].content  # its own answer: neither the failing code nor the tests in sight
    assert ADD_TASK in own and "return a - b" not in own and "add(1, 2)" not in own
    assert [s.purpose for s in r.trace.steps][-1] == "escalate (1): competitor answers on its own"


@pytest.mark.anyio
async def test_host_tests_are_never_set_aside() -> None:
    engine, fake = make(max_revisions=0)
    fake.enqueue(GOOD, model=P).enqueue(GOOD, model=C)
    r = await engine.run("validated", req("Write add(a, b).", tests=["assert add(2, 2) == 5"]))
    assert fake.models_asked == [P, C]  # the host's test: failed by both, it still counts
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL", "FAIL"]
    assert not any(t.set_aside for v in r.trace.verdicts for t in v.execution.tests)


@pytest.mark.parametrize(("verify", "answer", "why"), [
    ("auto", "Use a dictionary and count.", "model: the answer has no Python code"),
    ("model", GOOD, "model: verify = model"),
    ("execute", "Just prose.", "model: verify = execute, but the answer has no Python code to run"),
])
@pytest.mark.anyio
async def test_when_nothing_runs_the_validator_decides_and_the_trace_says_why(verify: str, answer: str,
                                                                              why: str) -> None:
    engine, fake = make()
    fake.enqueue(answer, model=P).enqueue("PASS", model=V)
    r = await engine.run("validated", req("Explain counting words.", verify=verify))
    assert r.trace.verification == why and r.trace.verdicts[0].method == "model"


@pytest.mark.anyio
async def test_weak_or_missing_sandbox_is_reported_not_silently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.patterns import _verify

    monkeypatch.setattr(_verify, "sandbox_problem", lambda mode: "bwrap is not installed")
    engine, fake = make()
    fake.enqueue(GOOD, model=P).enqueue("PASS", model=V)
    r = await engine.run("validated", req("Write add.", verify="auto"))
    assert r.trace.verification == "model: no sandbox to run the code in (bwrap is not installed)"


@pytest.mark.anyio
async def test_compete_the_answer_passing_more_tests_wins_without_the_judge() -> None:
    engine, fake = make()
    fake.enqueue(BAD, model=P).enqueue(GOOD, model=C)
    fake.enqueue("assert add(1, 2) == 3\nassert add(0, 0) == 0", model=V)
    r = await engine.run("compete", req("Write a function add(a, b) that returns the sum."))
    assert fake.models_asked == [P, C, V]  # tests written once; no judge step
    j = r.trace.judgement
    assert j.pick == "B" and j.method == "tests" and j.test_scores == {"A": 1, "B": 2}
    assert j.rule == "tests: A passed 1, B passed 2" and r.text == GOOD


@pytest.mark.anyio
async def test_compete_tests_failed_by_both_are_set_aside_and_a_tie_goes_to_the_judge_in_both_orders() -> None:
    engine, fake = make()
    fake.enqueue(GOOD, model=P).enqueue(GOOD.replace("a + b", "b + a"), model=C)
    fake.enqueue("assert add(1, 2) == 3\nassert add(2, 2) == 5", model=V)  # the second is wrong: both fail it
    fake.enqueue("YES", model=V, option_probs={"YES": 0.7, "NO": 0.3})  # A alone
    fake.enqueue("YES", model=V, option_probs={"YES": 0.6, "NO": 0.4})  # B alone
    r = await engine.run("compete", req("Write a function add(a, b) that returns the sum."))
    j = r.trace.judgement
    assert j.method == "judge" and j.test_scores == {"A": 1, "B": 1} and j.consistent is True
    assert j.rule == "tests tied (A 1, B 1); each answer scored on its own: the higher probability of being correct"
    assert j.pick == "A" and j.scores == {"A": 0.7, "B": 0.6} and j.judge_kind == "pointwise"
    assert all(run.tests[1].set_aside for run in j.execution.values())


@pytest.mark.parametrize(("stronger", "pick"), [("competitor", "B"), ("primary", "A")])
@pytest.mark.anyio
async def test_compete_ties_go_to_the_stronger_model_without_asking_a_judge(stronger: str, pick: str) -> None:
    """The same tie as above, where the pointwise judge (at chance on the default profile's one-right items)
    picked A: with judge = stronger no judge model runs and the stronger model's answer stands."""
    engine, fake = make(judge="stronger", stronger=stronger)
    b = GOOD.replace("a + b", "b + a")
    fake.enqueue(GOOD, model=P).enqueue(b, model=C)
    fake.enqueue("assert add(1, 2) == 3\nassert add(2, 2) == 5", model=V)
    r = await engine.run("compete", req("Write a function add(a, b) that returns the sum."))
    assert fake.models_asked == [P, C, V]  # the validator wrote the tests; nobody judged
    j = r.trace.judgement
    assert j.method == "stronger" and j.pick == pick and j.test_scores == {"A": 1, "B": 1}
    assert j.rule.startswith(f"tests tied (A 1, B 1); the {stronger}'s answer stands")
    assert r.text == (GOOD if pick == "A" else b) and j.judge_model is None


@pytest.mark.anyio
async def test_compete_with_no_test_to_run_keeps_the_stronger_models_answer() -> None:
    engine, fake = make(verify="model", judge="stronger", stronger="competitor")
    fake.enqueue("a", model=P).enqueue("b", model=C)
    r = await engine.run("compete", req("hello"))
    assert fake.models_asked == [P, C] and r.text == "b" and r.trace.judgement.method == "stronger"
    assert r.trace.judgement.test_scores is None


@pytest.mark.anyio
async def test_judge_recuses_when_the_validator_wrote_an_answer() -> None:
    # The validator shares the primary's model, the tools role has a third: that one judges.
    engine, fake = make(verify="model", roles={"primary": {"model": P}, "competitor": {"model": C},
                                               "validator": {"model": P}, "tools": {"model": T}})
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue("YES", model=T).enqueue("NO", model=T)
    r = await engine.run("compete", req("hello"))
    assert r.trace.judgement.judge_model == T and r.trace.judgement.recused is True
    engine, fake = make(verify="model", roles={"primary": {"model": P}, "competitor": {"model": C},
                                               "validator": {"model": P}, "tools": {"model": C}})
    fake.enqueue("a", model=P).enqueue("b", model=C).enqueue("YES", model=P).enqueue("NO", model=P)
    r = await engine.run("compete", req("hello"))
    assert r.trace.judgement.judge_model == P and r.trace.judgement.recused is False  # no third model


# -- revisions that revise, escalation, cut-off answers (issue 28) -------------------------------------------------
ADD_TASK = "Write a function add(a, b) that returns the sum."
ADD_TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0"


@pytest.mark.anyio
async def test_a_repeated_repair_is_no_change_never_a_fix() -> None:
    engine, fake = make(escalations=0)  # max_revisions 1
    fake.enqueue(BAD, model=P).enqueue(ADD_TESTS, model=V)
    fake.enqueue(BAD.replace("Here it is:", "Fixed:") + "\n", model=P)  # the same code again: whitespace and prose
    r = await engine.run("validated", req(ADD_TASK))
    assert fake.models_asked == [P, V, P]
    assert [(x.round, x.role, x.outcome) for x in r.trace.rounds] == [(1, "primary", "no change")]
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL"]  # the repeat was never run as a new answer
    assert r.text == BAD and r.trace.revisions == 1


THREE = ADD_TESTS + "\nassert add(2, 2) == 4"
# passes add(1, 2) and add(2, 2), fails add(0, 0): no test failed by BAD (which passes only add(0, 0)) as well
ODD = "```python\ndef add(a, b):\n    return a + b if a > 0 else 1\n```"


@pytest.mark.anyio
async def test_after_the_primary_repeats_itself_the_stronger_model_repairs_from_the_failing_tests() -> None:
    engine, fake = make(escalations=2)  # max_revisions 1
    fake.enqueue(BAD, model=P).enqueue(THREE, model=V)
    fake.enqueue(ODD, model=C)  # its own answer: 2 of 3, more than BAD's 1
    fake.enqueue("Fixed:\n" + ODD, model=P)  # the primary hands the best code back
    fake.enqueue(GOOD, model=C)  # the competitor's repair
    r = await engine.run("validated", req(ADD_TASK))
    assert fake.models_asked == [P, V, C, P, C]  # tests written once, reused by every round
    assert [(x.round, x.role, x.outcome) for x in r.trace.rounds] == [
        (1, "competitor", "improved"), (2, "primary", "no change"), (3, "competitor", "fixed")]
    assert r.text == GOOD and r.trace.revisions == 3
    repair = fake.history[4].messages[-1].content
    assert "add(0, 0) should be 0, but your code returned 1" in repair and "else 1" in repair
    assert [s.purpose for s in r.trace.steps][-1] == "escalate (3): competitor repairs"


@pytest.mark.anyio
async def test_a_repair_cut_off_at_the_budget_is_never_a_success() -> None:
    engine, fake = make(escalations=0, continuation_tokens=0)
    fake.enqueue(BAD, model=P).enqueue(ADD_TESTS, model=V)
    # Cut off inside its block; what is there parses and would pass if run as if complete.
    fake.enqueue("```python\ndef add(a, b):\n    return a + b\n", model=P, finish_reason="length")
    r = await engine.run("validated", req(ADD_TASK))
    assert [x.outcome for x in r.trace.rounds] == ["cut off"]
    assert r.trace.verdicts[-1].verdict == "FAIL" and r.trace.verdicts[-1].execution is None
    assert "cut off" in r.trace.verdicts[-1].issues[0]
    assert r.text == BAD and not r.cut_off  # the best answer that ran stands; it is complete


@pytest.mark.anyio
async def test_the_candidate_passing_most_tests_is_the_answer_even_when_a_later_repair_is_worse() -> None:
    engine, fake = make()  # max_revisions 1, escalations 1
    fake.enqueue(BAD, model=P).enqueue(THREE, model=V)  # BAD passes 1 of 3
    fake.enqueue(ODD, model=C)  # passes 2 of 3
    fake.enqueue("```python\ndef add(a, b):\n    return None\n```", model=P)  # the primary's repair: 0 of 3
    r = await engine.run("validated", req(ADD_TASK))
    assert [(x.outcome, x.passed) for x in r.trace.rounds] == [("improved", 2), ("worse", 0)]
    assert r.text == ODD


@pytest.mark.parametrize(("settings", "asked", "rounds"), [
    # the stronger model's own answer failed too: the weaker primary's repair is skipped (0 fixes in 27)
    ({"stronger": "competitor"}, [P, V, C], [(1, "competitor", "improved")]),
    # stated, it stands
    ({"stronger": "competitor", "max_revisions": 1}, [P, V, C, P], [(1, "competitor", "improved"),
                                                                    (2, "primary", "fixed")]),
    # nothing measured, or the primary is the stronger model: its repair follows
    ({}, [P, V, C, P], [(1, "competitor", "improved"), (2, "primary", "fixed")]),
    ({"stronger": "primary"}, [P, V, C, P], [(1, "competitor", "improved"), (2, "primary", "fixed")]),
])
@pytest.mark.anyio
async def test_the_weaker_primary_repairs_after_the_stronger_models_answer_only_when_asked(
        settings: dict, asked: list[str], rounds: list[tuple]) -> None:
    engine, fake = make(**settings)  # escalations 1
    fake.enqueue(BAD, model=P).enqueue(THREE, model=V)  # BAD passes 1 of 3
    fake.enqueue(ODD, model=C)  # 2 of 3
    fake.enqueue(GOOD, model=P)  # a repair that would fix it
    r = await engine.run("validated", req(ADD_TASK))
    assert fake.models_asked == asked
    assert [(x.round, x.role, x.outcome) for x in r.trace.rounds] == rounds
    assert r.text == (ODD if len(asked) == 3 else GOOD)


@pytest.mark.parametrize(("stronger", "kept"), [("primary", BAD), ("competitor", "C"), (None, "C")])
@pytest.mark.anyio
async def test_a_tie_between_the_first_answer_and_the_competitors_keeps_the_stronger_models(
        stronger: str | None, kept: str) -> None:
    engine, fake = make(max_revisions=0, **({"stronger": stronger} if stronger else {}))
    three = "```python\ndef add(a, b):\n    return 3\n```"  # passes add(1, 2) only; BAD passes add(0, 0) only
    fake.enqueue(BAD, model=P).enqueue(THREE, model=V).enqueue(three, model=C)
    r = await engine.run("validated", req(ADD_TASK))
    assert [(x.role, x.outcome, x.passed, x.total) for x in r.trace.rounds] == [
        ("competitor", "still failing", 1, 2)]  # add(2, 2) == 4, failed by both, set aside
    assert r.text == (three if kept == "C" else kept)


@pytest.mark.parametrize("stronger", ["competitor", None])
@pytest.mark.anyio
async def test_without_a_distinct_stronger_model_the_primary_still_repairs(stronger: str | None) -> None:
    engine, fake = make(escalations=0, **({"stronger": stronger} if stronger else {}))
    fake.enqueue(BAD, model=P).enqueue(ADD_TESTS, model=V).enqueue(GOOD, model=P)
    r = await engine.run("validated", req(ADD_TASK))
    assert fake.models_asked == [P, V, P]
    assert [(x.role, x.outcome) for x in r.trace.rounds] == [("primary", "fixed")] and r.text == GOOD


@pytest.mark.anyio
async def test_compete_never_runs_an_answer_cut_off_inside_its_code() -> None:
    engine, fake = make(continuation_tokens=0)
    cut = "```python\ndef add(a, b):\n    return a + b\n"  # parses, passes if run: but it was cut off
    fake.enqueue(cut, model=P, finish_reason="length").enqueue(BAD, model=C)
    fake.enqueue(ADD_TESTS, model=V)
    r = await engine.run("compete", req(ADD_TASK))
    j = r.trace.judgement
    assert j.method == "tests" and j.pick == "B" and j.test_scores == {"A": 0, "B": 1}
    assert "cut off" in j.execution["A"].load_error and not r.cut_off


@pytest.mark.anyio
async def test_tests_for_a_function_the_request_names_are_written_while_the_answer_is() -> None:
    fake = ScriptedBackend()
    engine = Engine(fake_settings(verify="execute", roles={"validator": {"model": P}}), {"mlx": fake})
    fake.enqueue(GOOD, delay=0.01).enqueue(ADD_TESTS, delay=0.01)  # the answer and the tests, at once
    r = await engine.run("validated", req("Write `def add(a, b)` that returns the sum."))
    assert fake.most_in_flight == 2 and [s.purpose for s in r.trace.steps] == ["answer", "write tests"]
    assert "def add(a, b)" in fake.history[1].messages[-1].content
    assert r.trace.verdicts[0].verdict == "PASS" and r.trace.verdicts[0].execution.passed == 2


@pytest.mark.anyio
async def test_an_explicit_execute_with_no_sandbox_is_refused_not_downgraded(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.core.errors import RequestError
    from orchestration.patterns import _verify

    monkeypatch.setattr(_verify, "sandbox_problem", lambda mode: "bwrap is not installed")
    engine, fake = make()
    fake.enqueue(GOOD, model=P)
    with pytest.raises(RequestError, match="bwrap is not installed"):
        await engine.run("validated", req("Write add.", verify="execute"))


@pytest.mark.anyio
async def test_context_asserts_count_only_when_the_host_says_so() -> None:
    """A context holding ``assert 1 + 1 == 2`` is material, not the test set: without the flag the validator
    writes tests; with it, the context's assert is a test named by its origin."""
    from orchestration.checks.verify import host_tests

    assert host_tests("Write add(a, b).", "assert 1 + 1 == 2\n", None) == []
    assert host_tests("Write add(a, b).", "assert 1 + 1 == 2\n", None, context_tests=True) == [
        ("assert 1 + 1 == 2", "context")]
    engine, fake = make()
    fake.enqueue(GOOD, model=P)
    r = await engine.run("validated", req("Write add(a, b).", context="assert 1 + 1 == 2\n", verify="execute",
                                          context_tests=True))
    tests = r.trace.verdicts[0].execution.tests
    assert [(t.test, t.origin, t.passed) for t in tests] == [("assert 1 + 1 == 2", "context", True)]


@pytest.mark.anyio
async def test_code_answers_get_the_code_budget_not_the_general_one() -> None:
    """code_max_tokens (768) was set from the lengths of the default profile's answers; validated's and compete's
    code-writing steps ask for it, not for the smaller general max_tokens."""
    engine, fake = make(max_tokens=100, code_max_tokens=777, max_revisions=0)
    fake.enqueue(BAD, model=P).enqueue(ADD_TESTS, model=V).enqueue(GOOD, model=C)
    await engine.run("validated", req(ADD_TASK))
    fake.enqueue(GOOD, model=P).enqueue(BAD, model=C).enqueue(ADD_TESTS, model=V)
    await engine.run("compete", req(ADD_TASK))
    written = [(h.model, h.max_tokens) for h in fake.history if h.model != V]
    assert written == [(P, 777), (C, 777), (P, 777), (C, 777)]
