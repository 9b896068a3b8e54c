"""Every pattern over the scripted fake backend: roles, prompts, parsing, bounds, routing, failures."""

from __future__ import annotations

import json

import pytest

from orchestration.run import prompts
from orchestration.patterns.engine import Engine
from orchestration.core.errors import ConfigError, ModelLoadError, ModelNotFoundError, PatternError, RequestError
from orchestration.core.settings import Settings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.core.types import PatternRequest, ToolDefinition

P, C, V, T = (FAKE_MODELS[r] for r in ("primary", "competitor", "validator", "tools"))
READ = [{"tool": "Read", "arguments": {"file_path": "src/main.py"}}]

pytestmark = pytest.mark.anyio


def make(**settings) -> tuple[Engine, ScriptedBackend]:  # noqa: ANN003
    # These flows script the tools model's extraction step; the default, calls from facts with the model only
    # choosing, has its own tests (test_tool_decisions.py).
    settings.setdefault("extraction_constraint", "grounded")
    fake = ScriptedBackend()
    return Engine(fake_settings(**settings), {"mlx": fake}), fake


def req(prompt: str = "Explain the plan", **kw) -> PatternRequest:  # noqa: ANN003
    return PatternRequest(prompt=prompt, **kw)


async def test_primary_is_one_step_without_tools() -> None:
    engine, fake = make()
    fake.enqueue("answer", model=P)
    r = await engine.run("primary", req("Read the file x.py"))
    assert r.text == "answer" and r.tool_calls == []
    assert fake.models_asked == [P]
    assert [s.role for s in r.trace.steps] == ["primary"]
    assert fake.history[0].messages[-1].content == "Read the file x.py"


async def test_request_context_and_system_reach_the_model() -> None:
    engine, fake = make()
    fake.enqueue("ok", model=P)
    await engine.run("primary", req("Fix it", context="def f(): pass", system="Be terse."))
    msgs = fake.history[0].messages
    assert msgs[0].role == "system" and msgs[0].content == "Be terse."
    assert msgs[1].content == "Fix it\n\nContext:\ndef f(): pass"


@pytest.mark.parametrize("name,role", [("validator", V), ("competitor", C)])
async def test_direct_models(name: str, role: str) -> None:
    engine, fake = make()
    fake.enqueue("hi", model=role)
    r = await engine.run(name, req("hello"))
    assert r.text == "hi" and fake.models_asked == [role]


async def test_competitor_uses_its_own_system_prompt() -> None:
    engine, fake = make()
    fake.enqueue("x", model=C)
    await engine.run("competitor", req("hello"))
    assert fake.history[0].messages[0].content == engine.settings.roles["competitor"].system


async def test_tools_pattern_is_one_constrained_step() -> None:
    engine, fake = make()
    fake.enqueue(READ, model=T)
    r = await engine.run("tools", req("show me src/main.py"))
    assert fake.models_asked == [T]
    assert [c.model_dump() for c in r.tool_calls] == [{**READ[0], "risk": "read"}]
    assert "Read" in r.text and "src/main.py" in r.text
    constraint = fake.history[0].constraint
    assert constraint is not None and constraint.json_schema["type"] == "array"
    assert fake.history[0].temperature == 0.0  # the tools role samples greedily by default
    assert fake.history[0].max_tokens > engine.settings.max_tokens  # sized from the schema, not max_tokens


async def test_hybrid_extracts_when_heuristics_match_and_keeps_primary_text() -> None:
    engine, fake = make()
    fake.enqueue("I will read it.", model=P).enqueue(READ, model=T)
    r = await engine.run("hybrid", req("Read the file src/main.py"))
    assert r.text == "I will read it."
    assert r.tool_calls[0].tool == "Read"
    assert fake.models_asked == [P, T]
    extraction_user = fake.history[1].messages[-1].content
    assert "Read the file src/main.py" in extraction_user and "I will read it." in extraction_user
    assert "Read:" in fake.history[1].messages[0].content  # the tool list is in the system prompt


@pytest.mark.parametrize(
    ("mode", "prompt", "answer", "extracts"),
    [
        ("auto", "What is 2+2?", "4", False),
        ("auto", "What is 2+2?", "I would run python to check", True),  # the answer matches
        ("always", "What is 2+2?", "4", True),
        ("never", "Read the file a.py", "ok", False),
    ],
)
async def test_hybrid_extraction_switch(mode: str, prompt: str, answer: str, extracts: bool) -> None:
    engine, fake = make()
    fake.enqueue(answer, model=P)
    if extracts:
        fake.enqueue([], model=T)
    r = await engine.run("hybrid", req(prompt, extraction=mode))
    assert fake.models_asked == ([P, T] if extracts else [P])
    assert r.trace.extraction is not None and (("skipped" in r.trace.extraction) is not extracts)


async def test_settings_extraction_default_applies() -> None:
    engine, fake = make(extraction="never")
    fake.enqueue("ok", model=P)
    await engine.run("hybrid", req("Read the file a.py"))
    assert fake.models_asked == [P]


async def test_validated_pass_goes_straight_to_extraction() -> None:
    engine, fake = make()
    fake.enqueue("code", model=P).enqueue("PASS", model=V, option_probs={"PASS": 0.9, "FAIL": 0.1})
    fake.enqueue([], model=T)
    r = await engine.run("validated", req("Implement it and write the file"))
    assert fake.models_asked == [P, V, T]
    assert r.trace.verdicts[0].verdict == "PASS" and r.trace.verdicts[0].confidence == 0.9
    assert r.trace.revisions == 0
    vmsgs = fake.history[1].messages
    assert vmsgs[0].content == prompts.VALIDATION
    assert "code" in vmsgs[1].content and "Implement it" in vmsgs[1].content
    assert fake.history[1].constraint.options == ["PASS", "FAIL"]


async def test_validated_fail_revises_with_feedback_and_revalidates() -> None:
    engine, fake = make()
    fake.enqueue("v1", model=P).enqueue("FAIL: off by one\n- no error handling", model=V)
    fake.enqueue("v2", model=P).enqueue("PASS", model=V)
    r = await engine.run("validated", req("Implement it", extraction="never"))
    assert fake.models_asked == [P, V, P, V]
    assert r.text == "v2" and r.trace.revisions == 1
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL", "PASS"]
    assert r.trace.verdicts[0].issues == ["off by one", "no error handling"]
    revision = fake.history[2].messages
    assert "assistant" not in [m.role for m in revision]  # the old answer is material, not the model's own turn
    assert "Implement it" in revision[-1].content and "v1" in revision[-1].content
    assert "- off by one" in revision[-1].content and "- no error handling" in revision[-1].content


@pytest.mark.parametrize("bound", [0, 1, 2])
async def test_revision_bound_and_honest_last_verdict(bound: int) -> None:
    engine, fake = make(max_revisions=bound)
    fake.enqueue("v0", model=P)
    for i in range(bound + 1):
        fake.enqueue("FAIL: still wrong", model=V)
        if i < bound:
            fake.enqueue(f"v{i + 1}", model=P)
    r = await engine.run("validated", req("Implement it", extraction="never"))
    assert r.trace.revisions == bound
    assert len(r.trace.verdicts) == bound + 1
    assert r.trace.verdicts[-1].verdict == "FAIL"  # reported as it is, not as success
    assert r.text == f"v{bound}"
    assert not fake.replies


@pytest.mark.parametrize(
    ("reply", "verdict", "issues"),
    [
        ("PASS", "PASS", []),
        ("PASS - no failures found", "PASS", []),  # the seed counted this as FAIL
        ("FAIL: a; b; c", "FAIL", ["a", "b", "c"]),
        ("FAIL:\n1. bad name\n2. no tests", "FAIL", ["bad name", "no tests"]),
        ("FAIL", "FAIL", []),
    ],
)
async def test_verdict_parsing(reply: str, verdict: str, issues: list[str]) -> None:
    engine, fake = make(max_revisions=0)
    fake.enqueue("code", model=P).enqueue(reply, model=V)
    r = await engine.run("validated", req("Implement it", extraction="never"))
    assert (r.trace.verdicts[0].verdict, r.trace.verdicts[0].issues) == (verdict, issues)


@pytest.mark.parametrize("reply", ["No FAIL here", "PASSED", "The answer: PASS", "", "fail: lowercase"])
async def test_unreadable_verdict_fails_the_pattern_naming_step_and_role(reply: str) -> None:
    engine, fake = make()
    fake.enqueue("code", model=P).enqueue(reply, model=V)
    with pytest.raises(PatternError) as e:
        await engine.run("validated", req("Implement it"))
    assert e.value.role == "validator" and e.value.step == "validate"
    assert "validator" in str(e.value)


async def test_compete_judges_and_extracts_on_the_winner() -> None:
    engine, fake = make(judge="pairwise")
    fake.enqueue("solution A text", model=P).enqueue("solution B text", model=C)
    fake.enqueue("B: it handles errors.", model=V, option_probs={"A": 0.3, "B": 0.7})
    fake.enqueue([{"tool": "Read", "arguments": {"file_path": "a.py"}}], model=T)  # grounded: the task names a.py
    r = await engine.run("compete", req("Implement a reader and read the file a.py", swap=False))
    assert fake.models_asked == [P, C, V, T]
    j = r.trace.judgement
    assert j is not None and j.pick == "B" and j.reason == "it handles errors." and j.confidence == 0.7
    assert j.candidates == {"A": "solution A text", "B": "solution B text"} and not j.disagreement
    assert r.text == "solution B text"
    assert "solution B text" in fake.history[3].messages[-1].content
    judge_msgs = fake.history[2].messages
    assert judge_msgs[0].content == prompts.JUDGE
    assert judge_msgs[1].content.index("Solution A:\nsolution A text") < judge_msgs[1].content.index("Solution B:")


async def test_compete_swap_agreeing() -> None:
    engine, fake = make(judge="pairwise")
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue("A: better", model=V, option_probs={"A": 0.8, "B": 0.2})
    fake.enqueue("B: better", model=V, option_probs={"A": 0.4, "B": 0.6})  # B shown = original A
    r = await engine.run("compete", req("hello", swap=True, extraction="never"))
    j = r.trace.judgement
    assert j.pick == "A" and not j.disagreement
    assert j.confidence == pytest.approx((0.8 + 0.6) / 2)
    assert fake.history[3].messages[1].content.index("Solution A:\nb") >= 0  # order really swapped
    assert [v["order"] for v in j.verdicts] == ["A,B", "B,A"]


async def test_compete_swap_disagreement_settled_by_summed_probabilities() -> None:
    engine, fake = make(judge="pairwise")
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue("A: first is better", model=V, option_probs={"A": 0.55, "B": 0.45})  # position bias
    fake.enqueue("A: first is better", model=V, option_probs={"A": 0.9, "B": 0.1})  # shown A = original B
    r = await engine.run("compete", req("hello", swap=True, extraction="never"))
    j = r.trace.judgement
    assert j.disagreement
    # A: 0.55 + 0.1 = 0.65 ; B: 0.45 + 0.9 = 1.35
    assert j.pick == "B" and j.confidence == pytest.approx(1.35 / 2) and r.text == "b"


async def test_compete_swap_from_settings() -> None:
    engine, fake = make(judge_swap=True, judge="pairwise")
    fake.enqueue("a", model=P).enqueue("b", model=C).enqueue("A: x", model=V).enqueue("B: y", model=V)
    r = await engine.run("compete", req("hello", extraction="never"))
    assert len(r.trace.judgement.verdicts) == 2


async def test_compete_pairwise_judges_both_orders_by_default_and_reports_consistency() -> None:
    engine, fake = make(judge="pairwise")
    assert engine.settings.judge_swap is True
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue("A: x", model=V, option_probs={"A": 0.7, "B": 0.3})
    fake.enqueue("A: x", model=V, option_probs={"A": 0.6, "B": 0.4})  # the first-shown again: inconsistent
    r = await engine.run("compete", req("hello", extraction="never"))
    j = r.trace.judgement
    assert len(j.verdicts) == 2 and j.disagreement and j.consistent is False
    assert "disagreed" in j.rule and "summed over both orders" in j.rule
    assert j.method == "judge" and j.judge_model == V and j.recused is True  # the validator wrote neither


@pytest.mark.parametrize("reply", ["C: neither", "Both are fine", "a: lowercase"])
async def test_unreadable_pick_fails(reply: str) -> None:
    engine, fake = make(judge="pairwise")
    fake.enqueue("a", model=P).enqueue("b", model=C).enqueue(reply, model=V)
    with pytest.raises(PatternError, match="judge"):
        await engine.run("compete", req("hello"))


@pytest.mark.parametrize(
    ("prompt", "route", "models"),
    [
        ("Implement a stack class", "validated", [P, V]),
        ("Explain the architecture", "hybrid", [P]),
        ("What is the capital of France?", "validator", [V]),
    ],
)
async def test_auto_routes(prompt: str, route: str, models: list[str]) -> None:
    engine, fake = make(extraction="never")
    for m in models:
        fake.enqueue("PASS" if (m == V and route == "validated") else "text", model=m)
    r = await engine.run("auto", req(prompt))
    assert r.pattern == "auto" and r.trace.route == route
    assert route in r.trace.route_reason
    assert fake.models_asked == models


async def test_step_failure_names_step_and_role_and_keeps_the_cause() -> None:
    engine, fake = make()
    fake.enqueue("a", model=P).enqueue("x", model=C, error=ModelNotFoundError("no such model"))
    with pytest.raises(PatternError) as e:
        await engine.run("compete", req("hello"))
    assert e.value.role == "competitor" and e.value.step == "solution B"
    assert isinstance(e.value.__cause__, ModelNotFoundError)
    assert "no such model" in str(e.value)


async def test_cut_off_extraction_is_an_error_never_a_partial_call() -> None:
    engine, fake = make()
    fake.enqueue('[{"tool": "Read", "arguments": {"file_pa', model=T, finish_reason="length")
    with pytest.raises(PatternError, match="cut off"):
        await engine.run("tools", req("read a.py"))


async def test_host_tools_replace_the_catalogue() -> None:
    engine, fake = make()
    tool = ToolDefinition(name="deploy", description="Deploy a service",
                          parameters={"type": "object", "properties": {"service": {"type": "string"}},
                                      "required": ["service"]}, annotations={"destructiveHint": False})
    fake.enqueue([{"tool": "deploy", "arguments": {"service": "api"}}], model=T)
    r = await engine.run("tools", req("deploy the api", tools=[tool]))
    assert r.tool_calls[0].tool == "deploy" and r.tool_calls[0].risk == "write"
    alts = fake.history[0].constraint.json_schema["items"]["anyOf"]
    assert [a["properties"]["tool"]["const"] for a in alts] == ["deploy"]
    assert "deploy:" in fake.history[0].messages[0].content


async def test_totals_and_models_used() -> None:
    engine, fake = make()
    fake.enqueue("one two three", model=P).enqueue("PASS", model=V)
    r = await engine.run("validated", req("Implement it", extraction="never"))
    assert r.totals.completion_tokens == 4
    assert r.totals.prompt_tokens == sum(s.prompt_tokens for s in r.trace.steps)
    assert r.models == {"primary": P, "validator": V}
    assert json.loads(r.model_dump_json())["trace"]["steps"][0]["purpose"] == "answer"


async def test_unknown_pattern_lists_the_valid_ones() -> None:
    engine, _ = make()
    with pytest.raises(RequestError, match="hybrid"):
        await engine.run("nope", req())


async def test_progress_reports_each_step() -> None:
    engine, fake = make()
    fake.enqueue("a b c", model=P).enqueue("PASS", model=V)
    seen: list = []

    async def progress(step: int, purpose: str, role: str, tokens: int, message: str) -> None:
        seen.append((step, purpose, role))

    await engine.run("validated", req("Implement it", extraction="never"), progress)
    assert (1, "answer", "primary") in seen and (2, "validate", "validator") in seen


async def test_unconstrained_backend_output_is_validated_and_retried_with_feedback() -> None:
    engine, fake = make()
    fake.enqueue("Sure! Here you go: Read src/main.py", model=T, constrained=False)
    fake.enqueue(READ, model=T, constrained=False)
    r = await engine.run("tools", req("show me src/main.py"))
    assert r.tool_calls[0].tool == "Read"
    assert [s.purpose for s in r.trace.steps] == ["extract tool calls", "extract tool calls (retry 1)"]
    retry = fake.history[1].messages
    assert retry[-2].role == "assistant" and "not usable" in retry[-1].content


async def test_unconstrained_retries_are_bounded() -> None:
    engine, fake = make()
    for _ in range(3):
        fake.enqueue("no json here", model=T, constrained=False)
    with pytest.raises(PatternError, match="not a tool-call array"):
        await engine.run("tools", req("show me src/main.py"))
    assert len(fake.history) == 3


async def test_unconstrained_verdict_is_retried_and_confidence_unknown() -> None:
    engine, fake = make()
    fake.enqueue("code", model=P)
    fake.enqueue("Looks fine to me", model=V, constrained=False)
    fake.enqueue("PASS", model=V, constrained=False, option_probs=None)
    r = await engine.run("validated", req("Implement it", extraction="never"))
    assert r.trace.verdicts[0].verdict == "PASS" and r.trace.verdicts[0].confidence is None
    assert [s.purpose for s in r.trace.steps] == ["answer", "validate", "validate (retry 1)"]


async def test_swap_disagreement_without_probabilities_is_settled_by_a_rule_the_order_cannot_change() -> None:
    engine, fake = make(judge="pairwise")
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue("A: x", model=V, constrained=False).enqueue("A: y", model=V, constrained=False)
    r = await engine.run("compete", req("hello", swap=True, extraction="never"))
    j = r.trace.judgement
    assert j.disagreement and j.pick == "B" and j.confidence is None and j.reason == "y"
    assert "B (the competitor) stands" in j.rule



async def test_compete_on_one_model_generates_both_answers_at_once_and_keeps_the_trace_in_order() -> None:
    fake = ScriptedBackend()
    engine = Engine(fake_settings(roles={"competitor": {"model": P}}, judge="pairwise"), {"mlx": fake})
    fake.enqueue("answer one is long", model=P, delay=0.01).enqueue("two", model=P, delay=0.01)
    fake.enqueue("A: x", model=V, option_probs={"A": 0.7, "B": 0.3}, delay=0.01)
    fake.enqueue("B: y", model=V, option_probs={"A": 0.2, "B": 0.8}, delay=0.01)
    r = await engine.run("compete", req("hello", extraction="never"))
    assert fake.most_in_flight == 2  # A with B, then the two judge orders together
    assert [s.purpose for s in r.trace.steps] == ["solution A", "solution B", "judge A vs B",
                                                  "judge swapped (B shown as A)"]
    j = r.trace.judgement
    assert j.candidates == {"A": "answer one is long", "B": "two"} and j.consistent and j.pick == "A"


async def test_compete_on_two_models_stays_sequential() -> None:
    fake = ScriptedBackend()
    engine = Engine(fake_settings(judge="pairwise"), {"mlx": fake})
    fake.enqueue("a", model=P, delay=0.01).enqueue("b", model=C, delay=0.01)
    fake.enqueue("A: x", model=V)
    await engine.run("compete", req("hello", extraction="never", swap=False))
    assert fake.models_asked == [P, C, V] and fake.most_in_flight == 1


async def test_a_failure_inside_concurrent_steps_is_the_pattern_error_itself() -> None:
    fake = ScriptedBackend()
    engine = Engine(fake_settings(roles={"competitor": {"model": P}}), {"mlx": fake})
    fake.enqueue("a", model=P, delay=0.01).enqueue("", model=P, error=ModelLoadError("boom"))
    with pytest.raises(PatternError) as e:
        await engine.run("compete", req("hello", extraction="never"))
    assert e.value.step == "solution B" and "boom" in str(e.value)


# -- decisions that rest on something (issue 28) --------------------------------------------------------------------
async def test_a_revision_that_repeats_the_answer_is_no_change_never_a_fix() -> None:
    engine, fake = make(max_revisions=2)
    fake.enqueue("```python\ndef f(x):\n    return x\n```", model=P).enqueue("FAIL: off by one", model=V)
    fake.enqueue("Here it is again:\n```python\ndef f(x):\n        return x\n```", model=P)  # same code, re-spaced
    r = await engine.run("validated", req("Implement f", extraction="never"))
    assert fake.models_asked == [P, V, P]  # the repeat is not validated again, and no further round is spent
    assert [(x.role, x.outcome) for x in r.trace.rounds] == [("primary", "no change")]
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL"] and r.trace.revisions == 1


async def test_pointwise_judge_is_the_default_and_scores_each_answer_alone() -> None:
    prompts_seen = {}
    for a, b, pa, pb, winner in [("x", "y", 0.3, 0.8, "y"), ("y", "x", 0.8, 0.3, "y")]:  # the same two, swapped
        engine, fake = make()
        fake.enqueue(a, model=P).enqueue(b, model=C)
        fake.enqueue("YES", model=V, option_probs={"YES": pa, "NO": 1 - pa})
        fake.enqueue("YES", model=V, option_probs={"YES": pb, "NO": 1 - pb})
        r = await engine.run("compete", req("hello", extraction="never"))
        j = r.trace.judgement
        assert r.text == winner and j.judge_kind == "pointwise" and j.consistent is True
        assert j.scores == {"A": pa, "B": pb} and j.confidence == 0.8
        ask_a, ask_b = (fake.history[i].messages[-1].content for i in (2, 3))
        assert f"Solution:\n{a}\n" in ask_a and f"Solution:\n{b}\n" not in ask_a  # neither sees the other
        assert fake.history[2].constraint.options == ["YES", "NO"]
        prompts_seen.setdefault(a, set()).add(ask_a)
        prompts_seen.setdefault(b, set()).add(ask_b)
    # each answer's prompt is the same whether it was shown as A or B: the order cannot reach the pick
    assert all(len(v) == 1 for v in prompts_seen.values())


async def test_pairwise_judge_reply_that_prefers_b_yields_b() -> None:
    engine, fake = make(judge="pairwise")
    fake.enqueue("a", model=P).enqueue("b", model=C)
    fake.enqueue('{"reason": "B handles the empty list and A does not.", "better": "B"}', model=V)
    r = await engine.run("compete", req("hello", swap=False, extraction="never"))
    j = r.trace.judgement
    assert j.pick == "B" and r.text == "b" and j.reason == "B handles the empty list and A does not."
    assert fake.history[2].constraint.json_schema["required"] == ["reason", "better"]  # the reason comes first


async def test_an_answer_cut_off_inside_its_code_is_marked_and_never_written() -> None:
    engine, fake = make(continuation_tokens=0)
    cut = "Saving to prime.py:\n```python\ndef is_prime(n):\n    for i in range(2, n):\n"
    fake.enqueue(cut, model=P, finish_reason="length").enqueue("PASS", model=V)
    r = await engine.run("validated", req("Write is_prime(n) and save it to prime.py", extraction="always"))
    assert r.cut_off and r.finish_reason == "length" and r.tool_calls == []
    assert fake.models_asked == [P, V] and r.trace.extraction.startswith("skipped: the answer was cut off")


async def test_a_complete_answer_is_not_marked() -> None:
    engine, fake = make()
    fake.enqueue("done", model=P).enqueue("PASS", model=V)
    r = await engine.run("validated", req("Implement it", extraction="never"))
    assert not r.cut_off and r.finish_reason == "stop"


async def test_auto_sends_a_coding_request_to_the_measured_best_pattern() -> None:
    engine, fake = make(extraction="never", auto_coding="competitor")
    fake.enqueue("def push(): ...", model=C)
    r = await engine.run("auto", req("Implement a stack class"))
    assert r.trace.route == "competitor" and "competitor (auto_coding)" in r.trace.route_reason
    assert fake.models_asked == [C]


@pytest.mark.parametrize(("code", "template", "shown"), [
    ("def f(x):\n    return x\n", None, "```python\ndef f(x):\n    return x\n```"),  # the code, fenced
    (None, None, "prose answer"),  # no code: the answer itself
    (None, "Fix these:\n{issues}", "prose answer"),  # an old override without {answer}: the answer is appended
])
def test_revision_prompt_is_one_user_turn_with_the_failures_and_the_answer_as_material(
        code: str | None, template: str | None, shown: str) -> None:
    from orchestration.core.settings import PromptOverrides

    msgs = prompts.revision(req("Implement f", context="ctx"), "prose answer",
                            ["f(1) should be 2, but your code returned 1"],
                            PromptOverrides(revision=template) if template else None, "sys", code=code)
    assert [m.role for m in msgs] == ["system", "user"]
    body = msgs[1].content
    assert body.startswith("Implement f\n\nContext:\nctx") and "- f(1) should be 2, but your code returned 1" in body
    assert shown in body


def test_correctness_prompt_shows_one_answer() -> None:
    msgs = prompts.correctness(req("Implement f"), "ANSWER-1")
    assert msgs[0].content == prompts.CORRECTNESS and "ANSWER-1" in msgs[1].content
    assert msgs[1].content.endswith("Answer YES or NO.")


async def test_a_revision_cut_off_inside_its_code_is_never_put_to_the_validator_or_kept() -> None:
    engine, fake = make(continuation_tokens=0)
    fake.enqueue("v0", model=P).enqueue("FAIL: wrong", model=V)
    fake.enqueue("```python\ndef f(x):\n    return x +", model=P, finish_reason="length")
    r = await engine.run("validated", req("Implement f", extraction="never"))
    assert fake.models_asked == [P, V, P] and [x.outcome for x in r.trace.rounds] == ["cut off"]
    assert r.text == "v0" and not r.cut_off and r.trace.verdicts[-1].verdict == "FAIL"


# -- auto's measured coding route ---------------------------------------------------------------------------
def _suite(**rows: tuple[int, int, float]) -> dict:
    return {"systems": {name: {"k": k, "n": n, "seconds_total": s} for name, (k, n, s) in rows.items()}}


@pytest.mark.parametrize("results, expected", [
    # compete passes more but costs more than its gain: primary has the most passes per second
    ({"humaneval": _suite(**{"he-primary": (60, 100, 1000.0), "he-compete": (70, 100, 2000.0)})}, "primary"),
    # the other way round: compete's passes per second beat primary's
    ({"humaneval": _suite(**{"he-primary": (40, 100, 1000.0), "he-compete": (90, 100, 1500.0)})}, "compete"),
    # summed over both suites: validated wins on MBPP by enough to win overall
    ({"humaneval": _suite(**{"he-primary": (50, 100, 1000.0), "he-validated": (55, 100, 1100.0)}),
      "mbpp": _suite(**{"mbpp-primary": (10, 100, 1000.0), "mbpp-validated": (60, 100, 1200.0)})}, "validated"),
    # a pattern measured on one suite only is not compared with those measured on both
    ({"humaneval": _suite(**{"he-primary": (50, 100, 1000.0), "he-competitor": (99, 100, 10.0)}),
      "mbpp": _suite(**{"mbpp-primary": (50, 100, 1000.0)})}, "primary"),
])
def test_auto_coding_route_is_the_most_passes_per_second(results, expected):
    from orchestration.evaluation.routing import choose

    assert choose(results, "qwen", source="x").coding == expected


def test_auto_coding_route_measures_compete_as_it_now_decides_where_the_results_derive_it():
    """compete:ties-to-B is compete with judge = stronger (the default profile's), from the same records."""
    from orchestration.evaluation.routing import choose

    he = _suite(**{"he-primary": (50, 100, 1000.0), "he-compete": (55, 100, 1000.0)})
    he["systems"]["he-compete:ties-to-B"] = {"k": 45, "n": 100, "seconds_total": 1000.0}
    assert choose({"humaneval": he}, "qwen", source="x").coding == "compete"  # a profile that judges ties
    choice = choose({"humaneval": he}, "qwen", source="x", derived={"compete": "ties-to-B"})
    assert choice.coding == "primary" and [f.passed for f in choice.figures] == [50, 45]


def test_auto_coding_route_measures_validated_without_the_primarys_repair_where_the_results_derive_it():
    """validated:no-primary-repair is validated as the default profile now runs it: the same passes here, for
    less time, which turns the route."""
    from orchestration.evaluation.routing import choose

    he = _suite(**{"he-primary": (50, 100, 1000.0), "he-validated": (60, 100, 1300.0)})
    he["systems"]["he-validated:no-primary-repair"] = {"k": 60, "n": 100, "seconds_total": 1100.0}
    assert choose({"humaneval": he}, "qwen", source="x").coding == "primary"  # 50/1000 > 60/1300
    choice = choose({"humaneval": he}, "qwen", source="x", derived={"validated": "no-primary-repair"})
    assert choice.coding == "validated" and [f.seconds for f in choice.figures] == [1000.0, 1100.0]
    del he["systems"]["he-validated:no-primary-repair"]  # results scored before the row existed
    with pytest.raises(ConfigError, match="lack he-validated:no-primary-repair .* --rescore"):
        choose({"humaneval": he}, "qwen", source="x", derived={"validated": "no-primary-repair"})


def test_auto_coding_route_needs_a_code_suite():
    from orchestration.evaluation.routing import choose

    with pytest.raises(ConfigError, match="no code suite"):
        choose({"bfcl": {}}, "qwen", source="x")


def test_settings_take_auto_coding_from_the_profile_measurement_unless_set(monkeypatch, tmp_path):
    import orchestration.core.settings as settings_module
    from orchestration.evaluation.routing import choose, write_route

    routes = tmp_path / "measured_routes.json"
    write_route(choose({"humaneval": _suite(**{"he-primary": (10, 100, 1000.0), "he-compete": (90, 100, 1000.0)})},
                       "tiny", source="x"), routes)
    monkeypatch.setattr(settings_module, "_MEASURED_ROUTES", settings_module._measured_routes(routes))
    assert Settings(profile="tiny").auto_coding == "compete"
    assert Settings(profile="tiny", auto_coding="primary").auto_coding == "primary"
    assert Settings(profile="qwen-1.5b").auto_coding == "validated"  # not measured: the default


def test_auto_coding_route_prices_by_run_alone_seconds_where_the_results_have_them():
    """A batched run's wall seconds make a shared answer look free to the second system that uses it."""
    from orchestration.evaluation.routing import choose

    he = _suite(**{"he-primary": (50, 100, 1000.0), "he-compete": (60, 100, 1000.0)})
    assert choose({"humaneval": he}, "qwen", source="x").coding == "compete"  # wall: same seconds, more passes
    he["systems"]["he-primary"]["modelled_s_total"] = 500.0
    he["systems"]["he-compete"]["modelled_s_total"] = 1500.0  # run alone it generates two answers and judges
    assert choose({"humaneval": he}, "qwen", source="x").coding == "primary"


def test_the_shipped_measurement_sets_the_default_profiles_auto_route():
    from orchestration.evaluation.routing import read_routes

    routes = read_routes()
    assert "qwen" in routes  # written by scripts/auto_routes.py from docs/eval-qwen-28
    assert Settings(profile="qwen").auto_coding == routes["qwen"].coding
