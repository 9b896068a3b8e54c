"""Execution-grounded verification: code and test parsing (tables), the sandboxed test run, and validated /
compete over the scripted fake backend with tests that really run (bubblewrap here)."""

from __future__ import annotations

import pytest

from orchestration.engine import Engine
from orchestration.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.types import PatternRequest
from orchestration.verify import host_tests, parse_tests, python_code, run_tests, signatures

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
    got = host_tests("Write add(a, b).\n>>> add(1, 2)\n3\n>>> add(-1, 1)\n0\n", "assert add(0, 0) == 0",
                     ["assert add(5, 5) == 10"])
    assert got == [("assert add(5, 5) == 10", "host"), ("assert add(0, 0) == 0", "host"),
                   ("assert add(1, 2) == 3", "example"), ("assert add(-1, 1) == 0", "example")]


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
    engine, fake = make()
    fake.enqueue(BAD, model=P)
    fake.enqueue("assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0", model=V)
    fake.enqueue("CODE", model=V)  # fault check on add(1, 2)
    fake.enqueue("CODE", model=V)  # fault check on add(-1, 1)
    fake.enqueue(GOOD, model=P)  # the revision
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum."))
    first, last = r.trace.verdicts
    assert first.method == "execute" and first.verdict == "FAIL"
    assert first.issues == ["`assert add(1, 2) == 3` failed: got -1", "`assert add(-1, 1) == 0` failed: got -2"]
    assert last.verdict == "PASS" and last.execution.passed == 3 and last.execution.sandbox == "bwrap"
    assert r.text == GOOD and r.trace.revisions == 1
    assert "3 tests (validator)" in r.trace.verification
    # the tests were written from the request and the signature, never the body
    writing = fake.history[1].messages[1].content
    assert "def add(a, b)" in writing and "return a - b" not in writing
    assert "got -1" in fake.history[4].messages[-1].content  # the failures are the revision's feedback


@pytest.mark.anyio
async def test_a_cut_off_answer_fails_on_its_syntax_and_is_revised() -> None:
    engine, fake = make()
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
async def test_a_generated_test_blamed_by_the_validator_is_set_aside_not_hidden() -> None:
    engine, fake = make()
    fake.enqueue(GOOD, model=P)
    fake.enqueue("assert add(1, 2) == 3\nassert add(2, 2) == 5", model=V)  # the second test is wrong
    fake.enqueue("TEST", model=V)
    r = await engine.run("validated", req("Write a function add(a, b) that returns the sum."))
    v = r.trace.verdicts[0]
    assert v.verdict == "PASS" and r.trace.revisions == 0
    assert [(t.test, t.passed, t.set_aside) for t in v.execution.tests] == [
        ("assert add(1, 2) == 3", True, False), ("assert add(2, 2) == 5", False, True)]


@pytest.mark.anyio
async def test_host_tests_are_never_set_aside() -> None:
    engine, fake = make(max_revisions=0)
    fake.enqueue(GOOD, model=P)
    r = await engine.run("validated", req("Write add(a, b).", tests=["assert add(2, 2) == 5"]))
    assert fake.models_asked == [P]  # no fault check for the host's own test
    assert r.trace.verdicts[0].verdict == "FAIL"


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
    fake.enqueue("A: x", model=V, option_probs={"A": 0.7, "B": 0.3})
    fake.enqueue("B: y", model=V, option_probs={"A": 0.2, "B": 0.8})  # shown B = original A: consistent
    r = await engine.run("compete", req("Write a function add(a, b) that returns the sum."))
    j = r.trace.judgement
    assert j.method == "judge" and j.test_scores == {"A": 1, "B": 1} and j.consistent is True
    assert j.rule == "tests tied (A 1, B 1); both orders picked the same answer" and j.pick == "A"
    assert all(run.tests[1].set_aside for run in j.execution.values())


@pytest.mark.anyio
async def test_judge_recuses_when_the_validator_wrote_an_answer() -> None:
    # The validator shares the primary's model, the tools role has a third: that one judges.
    engine, fake = make(verify="model", roles={"primary": {"model": P}, "competitor": {"model": C},
                                               "validator": {"model": P}, "tools": {"model": T}})
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue("A: x", model=T).enqueue("B: y", model=T)
    r = await engine.run("compete", req("hello"))
    assert r.trace.judgement.judge_model == T and r.trace.judgement.recused is True
    engine, fake = make(verify="model", roles={"primary": {"model": P}, "competitor": {"model": C},
                                               "validator": {"model": P}, "tools": {"model": C}})
    fake.enqueue("a", model=P).enqueue("b", model=C).enqueue("A: x", model=P).enqueue("B: y", model=P)
    r = await engine.run("compete", req("hello"))
    assert r.trace.judgement.judge_model == P and r.trace.judgement.recused is False  # no third model
