"""Custom patterns: config parsing and its errors, execution over the fake, publication as MCP tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from mcp_mageagent.server import build_server
from orchestration.patterns.engine import Engine
from orchestration.core.errors import ConfigError
from orchestration.core.settings import load_settings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend
from orchestration.core.types import PatternRequest

P, C, V, T = (FAKE_MODELS[r] for r in ("primary", "competitor", "validator", "tools"))
EXAMPLE = Path(__file__).parents[1] / "examples" / "review_and_fix.toml"
FAKE_ROLES = "\n".join(f'[roles.{r}]\nmodel = "{m}"' for r, m in FAKE_MODELS.items())


def settings_from(tmp_path: Path, text: str):  # noqa: ANN201
    p = tmp_path / "c.toml"
    p.write_text(FAKE_ROLES + "\n" + text)
    return load_settings(p, env={})


def step(name: str, kind: str, **kw: object) -> str:
    lines = ["[[patterns.p.steps]]", f'name = "{name}"', f'kind = "{kind}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in kw.items()]  # JSON values are valid TOML here
    return "\n".join(lines) + "\n"


HEAD = '[patterns.p]\ndescription = "test pattern"\n'


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (step("a", "generate", role="primary", prompt="{nope}"), "step 'a': unknown reference 'nope'"),
        (step("a", "generate", role="primary", prompt="{b}") + step("b", "generate", role="primary", prompt="x"),
         "unknown reference 'b'"),
        (step("a", "generate", role="primary", prompt="x") + step("v", "validate", prompt="{a}", on_fail="zz"),
         "on_fail 'zz' is not an earlier step"),
        (step("a", "generate", role="primary", prompt="x") + step("a", "generate", role="primary", prompt="y"),
         "used twice"),
        (step("a", "generate", prompt="x"), "needs a role"),
        (step("a", "generate", role="primary"), "needs a prompt"),
        (step("a", "generate", role="primary", prompt="x") + step("j", "judge", candidates=["a"]),
         "candidates"),
        (step("a", "extract_tools"), "needs source"),
        (step("a", "generate", role="primary", prompt="{a.b}"), "malformed placeholder"),
        (step("a", "generate", role="critic", prompt="x"), "'primary', 'competitor', 'validator' or 'tools'"),
        (step("a", "generate", role="primary", prompt="x", colour="red"), "unknown key"),
        (step("x", "extract_tools", source="prompt"), "no generate or judge step"),
    ],
)
def test_bad_custom_patterns_are_config_errors_at_start_up(tmp_path: Path, body: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from(tmp_path, HEAD + body)
    assert fragment in str(e.value)
    assert "c.toml" in str(e.value) and "patterns" in str(e.value)


GEN = step("a", "generate", role="primary", prompt="x")
CALLS = step("t", "extract_tools", source="a")


@pytest.mark.parametrize(
    ("head", "body", "fragment"),
    [  # each of these was accepted and failed mid-call with a KeyError (or a missing output) before
        (HEAD, GEN + step("t", "extract_tools", source="prompt"), "source 'prompt' is not an earlier"),
        (HEAD, GEN + step("t", "extract_tools", source="context"), "source 'context' is not an earlier"),
        (HEAD, GEN + step("j", "judge", candidates=["prompt", "a"]), "candidates 'prompt' is not an earlier"),
        (HEAD, GEN + step("j", "judge", candidates=["a", "feedback"]), "candidates 'feedback'"),
        (HEAD, GEN + CALLS + step("b", "generate", role="primary", prompt="{t}"), "unknown reference 't'"),
        (HEAD, GEN + CALLS + step("j", "judge", candidates=["a", "t"]), "candidates 't'"),
        (HEAD, GEN + CALLS + step("u", "extract_tools", source="t"), "source 't'"),
        (HEAD + 'result = "t"\n', GEN + CALLS, "result 't' is not a generate, validate or judge step"),
    ],
)
def test_references_to_request_text_and_tool_calls_are_checked_at_start_up(tmp_path: Path, head: str, body: str,
                                                                           fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from(tmp_path, head + body)
    assert fragment in str(e.value)


def test_builtin_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="built-in"):
        settings_from(tmp_path, '[patterns.hybrid]\ndescription = "x"\n'
                      '[[patterns.hybrid.steps]]\nname = "a"\nkind = "generate"\nrole = "primary"\nprompt = "x"\n')


def test_the_shipped_example_parses() -> None:
    s = load_settings(EXAMPLE, env={})
    p = s.patterns["review_and_fix"]
    assert [x.name for x in p.steps] == ["review", "issues", "fix", "check", "calls"]
    assert p.answer_step == "fix" and p.steps[1].role == "validator" and p.steps[4].role == "tools"


def example_engine(tmp_path: Path) -> tuple[Engine, ScriptedBackend]:
    fake = ScriptedBackend()
    text = EXAMPLE.read_text()
    settings = settings_from(tmp_path, text)
    return Engine(settings, {"mlx": fake}), fake


@pytest.mark.anyio
async def test_review_and_fix_runs_steps_in_order_with_templating_and_a_bounded_loop(tmp_path: Path) -> None:
    engine, fake = example_engine(tmp_path)
    fake.enqueue("the loop is off by one", model=P)            # review
    fake.enqueue("FAIL: off by one", model=V)                  # issues
    fake.enqueue("fixed v1", model=C)                          # fix
    fake.enqueue("FAIL: still wrong", model=V)                 # check -> back to fix (round 1 of 1)
    v2 = "```python\nfor i in range(n): ...\n```"
    fake.enqueue(v2, model=C)                                  # fix again, with the feedback
    fake.enqueue("FAIL: meh", model=V)                         # check: bound reached, go on
    r = await engine.run("review_and_fix", PatternRequest(prompt="fix a.py", context="for i in range(n+1): ..."))
    # The extraction step is decided by facts (a.py shown + its new version): an Edit, no tools-model step.
    assert fake.models_asked == [P, V, C, V, C, V]
    assert [s.purpose for s in r.trace.steps] == ["review", "issues", "fix", "check", "fix", "check"]
    assert r.text == v2 and r.trace.revisions == 1
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL", "FAIL", "FAIL"]
    assert [(c.tool, c.arguments) for c in r.tool_calls] == [
        ("Edit", {"file_path": "a.py", "old_string": "for i in range(n+1): ...", "new_string": "for i in range(n): ..."})]
    review_prompt = fake.history[0].messages[-1].content
    assert "Task: fix a.py" in review_prompt and "for i in range(n+1)" in review_prompt
    fix1 = fake.history[2].messages[-1].content
    assert "- off by one" in fix1 and "the loop is off by one" in fix1
    fix2 = fake.history[4].messages[-1].content
    assert "- still wrong" in fix2  # the feedback of the failed check
    assert len(fake.history) == 6 and r.trace.tool_decision.decided_by == "facts"


@pytest.mark.anyio
async def test_custom_judge_and_model_override(tmp_path: Path) -> None:
    fake = ScriptedBackend()
    fake.known.add("other-model")
    settings = settings_from(tmp_path, HEAD + step("a", "generate", role="primary", prompt="A: {prompt}")
                             + step("b", "generate", role="competitor", model="other-model", prompt="B: {prompt}")
                             + step("pick", "judge", candidates=["a", "b"], swap=True))
    engine = Engine(settings, {"mlx": fake})
    fake.enqueue("first", model=P).enqueue("second", model="other-model")
    fake.enqueue("B: better", model=V).enqueue("A: better", model=V)  # consistent: original B both times
    r = await engine.run("p", PatternRequest(prompt="q"))
    assert r.text == "second" and r.trace.judgement.pick == "B" and not r.trace.judgement.disagreement
    assert fake.history[1].messages[-1].content == "B: q"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_custom_patterns_are_published_as_mcp_tools(tmp_path: Path, mode: str) -> None:
    engine, fake = example_engine(tmp_path)
    server = build_server(engine.settings, engine)
    for text, model in [("review", P), ("PASS", V), ("fixed", C), ("PASS", V), ([], T)]:
        fake.enqueue(text, model=model)
    async with Client(server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("mage_review_and_fix", {"prompt": "fix it", "context": "x = 1"})
    tool = tools["mage_review_and_fix"]
    assert tool.description.startswith("Review code, list its issues")
    assert set(tool.input_schema["properties"]) >= {"prompt", "context", "tools", "extraction"}
    assert not result.is_error and result.structured_content["text"] == "fixed"
    assert result.structured_content["pattern"] == "review_and_fix"


@pytest.mark.real_model
@pytest.mark.anyio
async def test_review_and_fix_once_on_the_embedded_model(real_settings) -> None:  # noqa: ANN001
    s = load_settings(EXAMPLE, env={}, profile="tiny", max_tokens=16, extraction_max_string=32,
                      extraction_max_calls=1)
    engine = Engine(s)
    try:
        r = await engine.run("review_and_fix", PatternRequest(
            prompt="Fix the bug", context="def add(a, b):\n    return a - b\n"))
    finally:
        engine.close()
    assert r.pattern == "review_and_fix" and r.text.strip()
    assert [s.purpose for s in r.trace.steps][:3] == ["review", "issues", "fix"]
    assert r.trace.tool_decision is not None  # the extract step ran: by facts (no model step) or by the chooser
    assert len(r.trace.verdicts) >= 2
