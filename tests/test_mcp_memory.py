"""The MCP server through the SDK's in-memory client, in both protocol modes, over the scripted fake."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import jsonschema
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_mageagent.bench import listed_tools
from mcp_mageagent.server import DESCRIPTIONS, build_server
from orchestration.bench import footprint
from orchestration.patterns.engine import Engine
from orchestration.core.errors import ConfigError, ModelNotFoundError
from orchestration.patterns import PATTERNS
from orchestration.core.settings import load_settings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.core.types import PatternResult

P, C, V, T = (FAKE_MODELS[r] for r in ("primary", "competitor", "validator", "tools"))
pytestmark = pytest.mark.anyio
MODES = ["legacy", "auto"]  # the 2025-11-25 initialize handshake hosts use, and the newer direct mode
EXAMPLE = Path(__file__).parents[1] / "examples" / "review_and_fix.toml"
_ANSWER = {"prompt", "context", "system", "temperature", "max_tokens"}
ARGS = {"primary": _ANSWER, "validator": _ANSWER, "competitor": _ANSWER, "tools": _ANSWER | {"tools"},
        "auto": _ANSWER | {"tools", "extraction", "deadline_s"}, "hybrid": _ANSWER | {"tools", "extraction", "deadline_s"},
        "validated": _ANSWER | {"tools", "extraction", "verify", "tests", "deadline_s"},
        "compete": _ANSWER | {"tools", "extraction", "verify", "tests", "swap", "deadline_s"}}


def make() -> tuple[ScriptedBackend, object]:
    fake = ScriptedBackend()
    settings = fake_settings()
    return fake, build_server(settings, Engine(settings, {"mlx": fake}))


def script(fake: ScriptedBackend, pattern: str) -> None:
    """Queue what each pattern asks for, with a prompt that needs a file operation. The Read of a.py the request
    asks for is decided by facts: no tools-model step is queued."""
    plan = {
        "primary": [("ans", P)], "validator": [("ans", V)], "competitor": [("ans", C)],
        "tools": [], "hybrid": [("ans", P)],
        "validated": [("ans", P), ("PASS", V)],
        "compete": [("a", P), ("b", C), ("NO", V), ("YES", V)],  # each answer judged alone (pointwise)
        "auto": [("ans", P), ("PASS", V)],
    }[pattern]
    for text, model in plan:
        fake.enqueue(text, model=model)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_listed_with_schemas_and_annotations(mode: str) -> None:
    _, server = make()
    async with Client(server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {f"mage_{p}" for p in PATTERNS}
    for name, tool in tools.items():
        pattern = name.removeprefix("mage_")
        expected = DESCRIPTIONS[pattern].replace("{auto_coding}", "validated")  # make(): the tiny profile's route
        assert tool.description.startswith(expected) and "{" not in tool.description
        props = tool.input_schema["properties"]
        assert tool.input_schema["required"] == ["prompt"]
        assert set(props) == ARGS[pattern]  # only what the pattern reads
        assert all(props[k].get("description") for k in props)
        # compact: optional fields are plain optional types, no titles, nothing left to resolve
        assert props["temperature"] == {"type": "number", "minimum": 0, "maximum": 2, "description": "0 = greedy."}
        text = json.dumps(tool.input_schema)
        assert '"title"' not in text and "anyOf" not in text and "$ref" not in text and "$defs" not in text
        if "tools" in props:
            item = props["tools"]["items"]
            assert item["required"] == ["name"] and {"name", "description", "parameters"} <= set(item["properties"])
        assert tool.annotations.read_only_hint is True and tool.annotations.open_world_hint is False
        assert {"text", "tool_calls", "trace", "totals"} <= set(tool.output_schema["properties"])
        assert '"title"' not in json.dumps(tool.output_schema)


async def test_the_tool_definitions_fit_the_context_budget() -> None:
    """What a host sends its model with every turn: all tools' names, descriptions, input schemas."""
    settings = fake_settings()
    _, server = make()
    r = footprint.count(await listed_tools(server), footprint.tokenizer_path(settings))
    per_tool = {name: v["context_tokens"] for name, v in r["tools"].items()}
    assert r["context_tokens"] == sum(per_tool.values()) and len(per_tool) == len(PATTERNS)
    assert r["context_tokens"] <= footprint.BUDGET_TOKENS == 2000, per_tool
    assert max(per_tool.values()) <= 380, per_tool  # compete: verify, tests and swap on top of the rest
    # output schemas are counted apart (what a host does with them varies); compacted all the same
    raw = footprint.count([{"name": "x", "description": "", "input_schema": {},
                           "output_schema": PatternResult.model_json_schema()}],
                          footprint.tokenizer_path(settings))["output_schema_tokens"]
    assert all(0 < v["output_schema_tokens"] < 0.8 * raw for v in r["tools"].values()), (raw, r["tools"])


async def test_publish_limits_the_tools_custom_patterns_included(tmp_path) -> None:
    config = tmp_path / "c.toml"
    roles = "\n".join(f'[roles.{r}]\nmodel = "{m}"' for r, m in FAKE_MODELS.items())
    config.write_text('publish = ["hybrid", "review_and_fix"]\n' + roles + "\n" + EXAMPLE.read_text())
    settings = load_settings(config, env={})
    fake = ScriptedBackend()
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    script(fake, "hybrid")
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        models = json.loads((await client.read_resource("mageagent://models")).contents[0].text)
        result = await client.call_tool("mage_hybrid", {"prompt": "Read the file a.py"})
        hidden = await client.call_tool("mage_compete", {"prompt": "x"})
    assert names == {"mage_hybrid", "mage_review_and_fix"}
    assert set(models["roles"]) == {"primary", "competitor", "validator", "tools"}  # the resource stays
    assert not result.is_error and result.structured_content["pattern"] == "hybrid"
    assert hidden.is_error and "mage_compete" in hidden.content[0].text


def test_publish_names_known_patterns() -> None:
    with pytest.raises(ConfigError, match="publish") as e:
        fake_settings(publish=[])  # the settings check what needs no pattern table
    assert "empty" in str(e.value)
    settings = fake_settings(publish=["hybird"])  # the names are checked where the pattern table is
    with pytest.raises(ConfigError, match=r"publish: unknown pattern\(s\) hybird; known: auto, hybrid"):
        build_server(settings, Engine(settings, {"mlx": ScriptedBackend()}))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pattern", list(PATTERNS))
async def test_each_tool_returns_complete_structured_content(mode: str, pattern: str) -> None:
    fake, server = make()
    script(fake, pattern)
    prompt = "Implement a class and read the file a.py" if pattern == "auto" else "Read the file a.py"
    async with Client(server, mode=mode) as client:
        output_schema = {t.name: t.output_schema for t in (await client.list_tools()).tools}[f"mage_{pattern}"]
        result = await client.call_tool(f"mage_{pattern}", {"prompt": prompt})
    assert not result.is_error, result.content
    data = result.structured_content
    jsonschema.validate(data, output_schema)
    assert data["pattern"] == pattern
    # every step is in the trace; the tools pattern's Read is decided by facts, with no model step, and says so
    assert data["trace"]["steps"] or data["trace"]["tool_decision"]["decided_by"] == "facts"
    if pattern not in ("primary", "validator", "competitor"):
        assert data["tool_calls"] == [{"tool": "Read", "arguments": {"file_path": "a.py"}, "risk": "read"}]
        assert '"file_path": "a.py"' in result.content[0].text  # the text block mirrors the calls
    assert data["text"].strip().splitlines()[0] in result.content[0].text
    assert not fake.replies


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x", "temperature": 5}, "temperature"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "extraction": "sometimes"}, "extraction"),
        ({"prompt": "x", "tools": [{"name": "t", "parameters": {"type": "object", "properties": {
            "a": {"type": "string", "not": {"const": "b"}}}}}]}, "'not'"),
    ],
)
async def test_bad_arguments_are_errors_naming_the_field(mode: str, args: dict, fragment: str) -> None:
    fake, server = make()
    async with Client(server, mode=mode) as client:
        # the tools pattern checks tool schemas before generating; it always extracts, so takes no extraction
        result = await client.call_tool("mage_hybrid" if "extraction" in args else "mage_tools", args)
    assert result.is_error
    assert fragment in result.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_missing_model_is_an_actionable_error(mode: str) -> None:
    fake, server = make()
    fake.enqueue("x", model=P, error=ModelNotFoundError("the embedded model 'embedded' is not prepared"))
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("mage_primary", {"prompt": "hi"})
    assert result.is_error
    text = result.content[0].text
    assert "primary" in text and "not prepared" in text and "mageagent setup" in text


@pytest.mark.parametrize("mode", MODES)
async def test_models_resource_and_template(mode: str) -> None:
    _, server = make()
    async with Client(server, mode=mode) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        models = json.loads((await client.read_resource("mageagent://models")).contents[0].text)
        tools_role = json.loads((await client.read_resource("mageagent://models/tools")).contents[0].text)
        with pytest.raises(MCPError, match="unknown role 'critic'"):
            await client.read_resource("mageagent://models/critic")
    assert "mageagent://models" in listed and "mageagent://models/{role}" in templates
    assert set(models["roles"]) == {"primary", "competitor", "validator", "tools"}
    assert {"budget_gb", "used_gb"} <= set(models["memory"])
    for entry in models["roles"].values():
        assert {"model", "backend", "quantization", "size_gb", "loaded", "last_used"} <= set(entry)
    assert tools_role["model"] == T and tools_role["role"] == "tools"


@pytest.mark.parametrize("mode", MODES)
async def test_progress_is_reported_while_generating(mode: str) -> None:
    fake, server = make()
    fake.enqueue(" ".join(["word"] * 30), model=P, delay=0.1)  # ~3 s of "generation"
    seen: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message))

    async with Client(server, mode=mode) as client:
        result = await client.call_tool("mage_primary", {"prompt": "hi"}, progress_callback=progress)
    assert not result.is_error
    assert len(seen) >= 3  # the step start plus at least one report a second while generating
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert any("tokens" in (m or "") for _, m in seen) and "answer" in (seen[0][1] or "")


@pytest.mark.parametrize("mode", MODES)
async def test_cancelled_call_stops_and_the_next_call_works(mode: str) -> None:
    fake, server = make()
    fake.enqueue(" ".join(["w"] * 200), model=P, delay=0.05)
    fake.enqueue("second answer", model=P)
    async with Client(server, mode=mode) as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("mage_primary", {"prompt": "long"})
        with anyio.fail_after(5):
            while fake.cancelled == 0:
                await anyio.sleep(0.05)
        result = await client.call_tool("mage_primary", {"prompt": "again"})
    assert fake.cancelled == 1
    assert result.structured_content["text"] == "second answer"


@pytest.mark.parametrize("mode", MODES)
async def test_progress_keeps_coming_while_no_tokens_do(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load or a long prompt read streams nothing: the heartbeat keeps the host's idle clock from running out."""
    import mcp_mageagent.server as srv

    monkeypatch.setattr(srv, "HEARTBEAT_S", 0.25)
    fake, server = make()
    fake.enqueue("late", model=P, delay=2.0)  # 2 s before the first token
    seen: list[tuple[float, float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((anyio.current_time(), done, message))

    async with Client(server, mode=mode) as client:
        result = await client.call_tool("mage_primary", {"prompt": "hi"}, progress_callback=progress)
    assert not result.is_error
    beats = [m for _, _, m in seen if "(working, " in (m or "")]
    assert len(beats) >= 5, seen  # about 2 s / 0.25 s
    assert all(m.startswith("step 1: answer") for m in beats)  # says what it is still doing
    assert [d for _, d, _ in seen] == sorted({d for _, d, _ in seen})  # strictly increasing
    gaps = [b - a for (a, _, _), (b, _, _) in zip(seen, seen[1:])]
    assert max(gaps) < 0.25 * 3, gaps


@pytest.mark.parametrize("mode", MODES)
async def test_a_dropped_connection_stops_the_work(mode: str) -> None:
    fake, server = make()
    fake.enqueue(" ".join(["w"] * 400), model=P, delay=0.05)  # ~20 s if nobody stopped it
    async with anyio.create_task_group() as tg:
        async def host() -> None:
            async with Client(server, mode=mode) as client:
                await client.call_tool("mage_primary", {"prompt": "long"})

        tg.start_soon(host)
        with anyio.fail_after(5):
            while not fake.history:  # the call reached the model
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()  # the host goes away mid-call: its transport closes
    with anyio.fail_after(5):
        while fake.cancelled == 0:
            await anyio.sleep(0.05)
    assert fake.cancelled == 1


@pytest.mark.parametrize(("detail", "kept"), [("compact", False), ("full", True)])
async def test_a_results_trace_is_compact_by_default_and_full_on_request(detail: str, kept: bool) -> None:
    """The host's model reads the whole structured result: the judged candidates' texts are left out by default."""
    fake = ScriptedBackend()
    settings = fake_settings(trace_detail=detail)
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    script(fake, "compete")
    async with Client(server) as client:
        result = await client.call_tool("mage_compete", {"prompt": "x"})
    judgement = result.structured_content["trace"]["judgement"]
    assert judgement["pick"] in ("A", "B")
    assert (judgement["candidates"] == {"A": "a", "B": "b"}) is kept


async def test_compete_with_judge_stronger_keeps_the_stronger_models_answer_through_mcp() -> None:
    """judge = stronger (the default profile's): no judge model runs, and the host sees why B stands."""
    fake = ScriptedBackend()
    settings = fake_settings(judge="stronger", stronger="competitor")
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    fake.enqueue("a", model=P).enqueue("b", model=C)
    async with Client(server) as client:
        schema = {t.name: t.output_schema for t in (await client.list_tools()).tools}["mage_compete"]
        result = await client.call_tool("mage_compete", {"prompt": "Explain recursion."})
    data = result.structured_content
    jsonschema.validate(data, schema)
    judgement = data["trace"]["judgement"]
    assert fake.models_asked == [P, C] and data["text"] == "b"
    assert judgement["method"] == "stronger" and judgement["pick"] == "B"
    assert "the competitor's answer stands" in judgement["rule"]


async def test_compete_decided_by_tests_reaches_the_host() -> None:
    """A pick by tests has no probability: the server's log line formatted it as one and the call failed after
    all its work ("Error executing tool mage_compete")."""
    fake = ScriptedBackend()
    settings = fake_settings(verify="execute")
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    good, bad = ("```python\ndef add(a, b):\n    return a " + op + " b\n```" for op in "+-")
    fake.enqueue(bad, model=P).enqueue(good, model=C)
    async with Client(server) as client:
        result = await client.call_tool("mage_compete", {"prompt": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"],
                                                         "extraction": "never"})
    assert not result.is_error, result.content
    judgement = result.structured_content["trace"]["judgement"]
    assert judgement["method"] == "tests" and judgement["pick"] == "B" and result.structured_content["text"] == good


async def test_validated_ends_at_the_stronger_models_answer_through_mcp() -> None:
    """Where the stronger model's own answer failed too, no repair by the weaker primary follows by default: the
    host gets the better tested answer and rounds that say so."""
    fake = ScriptedBackend()
    settings = fake_settings(verify="execute", stronger="competitor")
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    bad, odd = ("```python\ndef add(a, b):\n    return " + body + "\n```" for body in ("a - b", "a + b + (a == 0)"))
    fake.enqueue(bad, model=P).enqueue(odd, model=C)
    async with Client(server) as client:
        result = await client.call_tool("mage_validated", {"prompt": "Write add(a, b).", "extraction": "never",
                                                           "tests": ["assert add(1, 2) == 3", "assert add(0, 2) == 2"]})
    out = result.structured_content
    assert fake.models_asked == [P, C] and out["text"] == odd
    assert [(r["role"], r["outcome"]) for r in out["trace"]["rounds"]] == [("competitor", "improved")]


async def test_auto_says_where_it_routes_code_on_this_profile() -> None:
    from mcp_mageagent.server import build_server
    from orchestration.models.testing import fake_settings

    for route in ("compete", "primary"):
        async with Client(build_server(fake_settings(auto_coding=route))) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        assert f"Routes code tasks to {route}," in tools["mage_auto"].description


async def test_a_cut_off_answer_reaches_the_host_marked_with_its_rounds_and_no_write() -> None:
    """What a host sees of #28's decisions: the rounds, the cut-off mark, and no Write of incomplete code."""
    fake = ScriptedBackend(continues=False)
    settings = fake_settings(verify="execute", continuation_tokens=0, escalations=0, max_revisions=1)
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    cut = "```python\ndef add(a, b):\n    return a +"
    fake.enqueue(cut, model=P, finish_reason="length").enqueue(cut + " b", model=P, finish_reason="length")
    async with Client(server) as client:
        result = await client.call_tool("mage_validated", {"prompt": "Write add(a, b) and save it to add.py",
                                                           "tests": ["assert add(2, 3) == 5"]})
    out = result.structured_content
    assert out["cut_off"] is True and out["finish_reason"] == "length" and out["tool_calls"] == []
    assert [r["outcome"] for r in out["trace"]["rounds"]] == ["cut off"]
    assert "never written" in out["trace"]["extraction"]
