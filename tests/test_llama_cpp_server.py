"""Roles on a real llama-cpp-python server (the optional ``.[llama]`` extra) serving the tiny model's GGUF:
the ``llama_cpp`` constraint forms hold on the server's output (option picks through a GBNF grammar, JSON
schemas through ``response_format`` type ``json_object``), and a pattern runs end to end on it.
Skipped where the extra is not installed (the default CI set-up does not install it)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python's server is the optional '.[llama]' extra")

from orchestration.bench.remote import llama_cpp_roles, llama_cpp_server  # noqa: E402
from orchestration.patterns.engine import Engine  # noqa: E402
from orchestration.models.openai_backend import OpenAIBackend  # noqa: E402
from orchestration.models.smollm2 import find_gguf  # noqa: E402
from orchestration.core.settings import derive, load_settings  # noqa: E402
from orchestration.core.types import Constraint, GenerationRequest, Message, PatternRequest  # noqa: E402

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]
ALIAS = "smollm2-gguf"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = load_settings(env={}, profile="tiny")
    found = find_gguf(settings.cache_dir)
    if found is None:
        pytest.skip("the tiny model's GGUF is not set up (mageagent setup)")
    with llama_cpp_server(str(found[0]), ALIAS, tmp_path_factory.mktemp("llama") / "server.log",
                          timeout=120) as base_url:
        yield base_url


def ask(text: str, constraint: Constraint, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(model=ALIAS, max_tokens=max_tokens, constraint=constraint,
                             messages=[Message(role="user", content=text)])


async def test_an_option_pick_is_one_of_the_options_with_probabilities(server: str) -> None:
    b = OpenAIBackend(server, structured_output="llama_cpp")
    c = await b.stream(ask("Is 7 prime? Answer PASS or FAIL.", Constraint(options=["PASS", "FAIL"]), 4))
    assert c.text in ("PASS", "FAIL")
    assert c.option_probs is not None and sum(c.option_probs.values()) == pytest.approx(1.0)


async def test_a_forced_prefix_then_free_text(server: str) -> None:
    b = OpenAIBackend(server, structured_output="llama_cpp")
    c = await b.stream(ask("Write one test for add(a, b).", Constraint(options=["assert "],
                                                                       option_continuation={"assert ": ""}), 12))
    assert c.text.startswith("assert ") and len(c.text) > len("assert ")


async def test_a_json_schema_holds_on_the_output(server: str) -> None:
    schema = {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
        "tool": {"enum": ["Read", "Glob"]}, "arguments": {"type": "object", "properties": {
            "file_path": {"enum": ["app.py"]}}, "required": ["file_path"], "additionalProperties": False}},
        "required": ["tool", "arguments"], "additionalProperties": False}}
    b = OpenAIBackend(server, structured_output="llama_cpp")
    c = await b.stream(ask("Read app.py. Reply with the JSON tool calls.", Constraint(json_schema=schema), 160))
    assert c.finish_reason == "stop", c.text
    calls = json.loads(c.text)
    assert isinstance(calls, list) and len(calls) <= 2 and c.constrained
    assert all(x["tool"] in ("Read", "Glob") and x["arguments"] == {"file_path": "app.py"} for x in calls)


async def test_hybrid_runs_end_to_end_on_the_server(server: str) -> None:
    s = derive(load_settings(env={}, profile="tiny"), {"roles": llama_cpp_roles(server, ALIAS)})
    eng = Engine(s)
    try:
        r = await eng.run("hybrid", PatternRequest(prompt="Read the file app.py and explain it", max_tokens=24,
                                                   temperature=0.0, extraction="always"))
    finally:
        eng.close()
    assert [st.purpose for st in r.trace.steps] == ["answer", "extract tool calls"]
    assert r.trace.steps[0].completion_tokens > 0
    assert all(c.tool in {"Read", "Write", "Edit", "Bash", "Glob", "Grep"} for c in r.tool_calls)
