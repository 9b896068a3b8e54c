"""Grounded tool calls: candidates from the request and the answer, the grammar that enforces them, expansion.

The grammar tests drive llguidance directly with a byte-level tokenizer built here (one token per byte), so they
need no model: a made-up path is fed token by token and refused.
"""

from __future__ import annotations

import json

import anyio
import jsonschema
import pytest

from orchestration.run import prompts
from orchestration.patterns.engine import Engine
from orchestration.core.errors import PatternError, SchemaError
from orchestration.core.settings import Settings
from orchestration.models.grammar import grammar_for
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.tools.catalogue import SEED_TOOLS
from orchestration.tools.extract import extraction_schema, grounded_tools, parse_grounded
from orchestration.tools.grounding import (Grounding, code_blocks, decoding_parameters, expand, file_names,
                                           ground, labelled_answer)
from orchestration.tools.schema import token_bound, validate_definition
from orchestration.core.types import Constraint, PatternRequest, ToolDefinition

P, T = FAKE_MODELS["primary"], FAKE_MODELS["tools"]
F = "```"
LONG = "x = [" + ", ".join(str(i) for i in range(2000)) + "]\n"  # one line of ~10 KB
ODD = "echo \"it's `date`\" 'a \\\"b\\\"'\nprint('héllo ✓ 你好 🌍')\t# tab\n"


def fenced(body: str, lang: str = "python", fence: str = F) -> str:
    return f"{fence}{lang}\n{body}{fence}"


# -- code blocks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "blocks"), [
    ("No code here, just prose about `inline` things.", []),
    (f"Here:\n\n{fenced('def f():' + chr(10) + '    return 1' + chr(10))}\n\nDone.", ["def f():\n    return 1\n"]),
    (f"{fenced('a = 1' + chr(10))}\ntext\n{fenced('b = 2' + chr(10), 'sh')}\n~~~\nc = 3\n~~~\n",
     ["a = 1\n", "b = 2\n", "c = 3\n"]),
    (fenced(ODD, "sh"), [ODD]),
    (fenced(LONG), [LONG]),
    # a four-backtick fence holds a three-backtick one; an unclosed fence (a cut-off answer) runs to the end
    ("````md\n```py\nx\n```\n````\n", ["```py\nx\n```\n"]),
    ("intro\n```python\ndef cut(", ["def cut("]),
    ("```\n\n```", ["\n"]),
])
def test_code_blocks_are_verbatim(answer: str, blocks: list[str]) -> None:
    assert code_blocks(answer) == blocks


def test_labelled_answer_marks_each_block_and_stubs_long_ones() -> None:
    answer = f"Intro\n{fenced('a' + chr(10))}\nmid\n{fenced('b' + chr(10))}\nend"
    shown = labelled_answer(answer)
    assert shown.replace("(block 1)\n", "").replace("(block 2)\n", "") == answer
    assert shown.index("(block 1)") < shown.index("a\n") < shown.index("(block 2)") < shown.index("b\n")
    assert labelled_answer("just prose") == "(block 1)\njust prose"
    long = f"Intro\n{fenced(STACK + '    pass' + chr(10))}\nend"
    assert labelled_answer(long) == "Intro\n(block 1: 4 lines of code, starting `class Stack:`)\nend"


# -- candidates --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "names"), [
    ("Write a stack class and save it to stack.py.", ["stack.py"]),
    ("Show me src/utils/helpers.py, then README.md and the Makefile", ["src/utils/helpers.py", "README.md",
                                                                      "Makefile"]),
    ("use os.path and self.items, e.g. json.dumps; see https://example.com/a.py", []),
    ("open `my file.txt` or 'notes.md'", ["notes.md", "file.txt"]),  # a name with a space is not recognised
    ("compare v1.2 with 3.14", []),
])
def test_file_names(text: str, names: list[str]) -> None:
    assert file_names(text) == names


def test_ground_draws_from_prompt_context_and_answer() -> None:
    req = PatternRequest(prompt="Fix the bug in loop.py", context="total = 0\nfor i in range(n + 1):\n    total += i\n")
    answer = f"Change it (see also notes.md):\n{fenced('for i in range(n):' + chr(10))}"
    g = ground(req, answer)
    assert g.paths == ["loop.py", "notes.md"]
    assert g.blocks == ["for i in range(n):\n"]
    assert "for i in range(n + 1):" in g.old_spans and "total += i" in g.old_spans  # a line, and it stripped
    assert all(s in req.context for s in g.old_spans)
    assert "for i in range(n):\n" in g.new_spans and "for i in range(n):" in g.new_spans


def test_whole_answer_is_the_only_block_when_it_has_no_fence() -> None:
    g = ground(PatternRequest(prompt="Save a haiku to poem.txt"), "Red leaves fall\ncold pond\nbare trees")
    assert g.blocks == ["Red leaves fall\ncold pond\nbare trees"]


def test_without_an_answer_content_comes_from_the_prompt_or_stays_free() -> None:
    assert ground(PatternRequest(prompt="Write 'print(1)' to the file a.py"), None).blocks == ["print(1)"]
    g = ground(PatternRequest(prompt="Create a file hello.txt containing the word hi"), None)
    assert g.blocks == []
    params = decoding_parameters(SEED_TOOLS[1], g)
    assert params is not None and params["properties"]["content"]["type"] == "string"
    assert params["properties"]["file_path"]["enum"] == ["hello.txt"]


# -- decoding views ----------------------------------------------------------------------------------------
def _views(g: Grounding) -> dict[str, dict]:
    return {t.name: v.parameters for t, v in grounded_tools(SEED_TOOLS, g)}


@pytest.mark.parametrize(("n_blocks", "numbers"), [(0, [1]), (1, [1]), (3, [1, 2, 3])])
def test_write_content_is_a_block_number(n_blocks: int, numbers: list[int]) -> None:
    answer = "\n".join(fenced(f"v = {i}\n") for i in range(n_blocks)) or "prose only"
    views = _views(ground(PatternRequest(prompt="save it to out.py"), answer))
    write = views["Write"]
    assert set(write["properties"]) == {"file_path", "content_block"} and write["required"] == ["file_path",
                                                                                                  "content_block"]
    assert write["properties"]["content_block"]["enum"] == numbers
    assert write["properties"]["file_path"]["enum"] == ["out.py"]


def test_tools_needing_what_the_request_lacks_are_not_offered() -> None:
    views = _views(ground(PatternRequest(prompt="Run the tests"), "Run `pytest -q`."))
    assert set(views) == {"Bash", "Glob", "Grep"}  # no file named: no Read, Write or Edit; no directory: no path
    assert "path" not in views["Glob"]["properties"]
    # Edit needs text to replace: the context, or text the prompt quotes
    views = _views(ground(PatternRequest(prompt="in a.py replace `x = 1` with `x = 2`"), None))
    assert views["Edit"]["properties"]["old_string"]["enum"] == ["x = 1", "x = 2"]
    assert "Edit" not in _views(ground(PatternRequest(prompt="in a.py set x to 2"), "x = 2"))


def test_directories_ground_glob_and_grep_paths() -> None:
    views = _views(ground(PatternRequest(prompt="List the markdown files under docs/ and in src/app.py"), None))
    assert views["Glob"]["properties"]["path"]["enum"] == ["docs/", "src"]


# -- the grammar: llguidance with a byte tokenizer -----------------------------------------------------------
@pytest.fixture(scope="module")
def lltok():  # noqa: ANN201
    import llguidance
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<eos>": 0}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return llguidance.LLTokenizer(tok.to_str(), eos_token=0)


def consumed(lltok, grammar: str, text: str) -> tuple[int, bool]:  # noqa: ANN001
    """How many tokens of ``text`` the grammar took before refusing one, and whether all of it is accepted."""
    import llguidance

    m = llguidance.LLMatcher(lltok, grammar, log_level=0)
    assert not m.is_error(), m.get_error()
    ids = lltok.tokenize_str(text)
    for i, t in enumerate(ids):
        if not m.consume_token(t):
            return i, False
    return len(ids), m.is_accepting()


def grounded_grammar(request: PatternRequest, answer: str | None) -> tuple[str, Grounding]:
    g = ground(request, answer)
    schema = extraction_schema([v for _, v in grounded_tools(SEED_TOOLS, g)], 2, 64)
    return grammar_for(Constraint(json_schema=schema)), g


def call(tool: str, **arguments: object) -> str:
    return json.dumps([{"tool": tool, "arguments": arguments}], ensure_ascii=False, separators=(",", ":"))


def test_a_path_named_nowhere_cannot_be_produced(lltok) -> None:  # noqa: ANN001
    answer = f"Here it is:\n{fenced('class Stack:' + chr(10) + '    pass' + chr(10))}\nSave it as `stack.py`."
    grammar, _ = grounded_grammar(PatternRequest(prompt="Write a stack class and save it"), answer)
    assert consumed(lltok, grammar, call("Write", file_path="stack.py", content_block=1)) == (
        len(call("Write", file_path="stack.py", content_block=1).encode()), True)
    made_up = call("Write", file_path="src/app.py", content_block=1)
    n, ok = consumed(lltok, grammar, made_up)
    start = made_up.index("src/app.py")
    assert not ok and start <= n <= start + 1  # refused within the path (it shares only its "s" with stack.py)
    n, ok = consumed(lltok, grammar, call("Write", file_path="stack.pyc", content_block=1))
    assert not ok
    n, ok = consumed(lltok, grammar, call("Read", file_path="S1.txt"))
    assert not ok


def test_content_is_never_retyped_and_block_numbers_are_bounded(lltok) -> None:  # noqa: ANN001
    answer = "\n".join(fenced(b) for b in ("a = 1\n", ODD, LONG))
    grammar, g = grounded_grammar(PatternRequest(prompt="save the blocks to a.py"), answer)
    assert consumed(lltok, grammar, call("Write", file_path="a.py", content_block=3))[1]
    assert not consumed(lltok, grammar, call("Write", file_path="a.py", content_block=4))[1]
    assert not consumed(lltok, grammar, call("Write", file_path="a.py", content="a = 1\n"))[1]
    [c] = parse_grounded(call("Write", file_path="a.py", content_block=3), SEED_TOOLS, g)
    assert c.arguments == {"file_path": "a.py", "content": LONG} and c.risk == "write"
    [c] = parse_grounded(call("Write", file_path="a.py", content_block=2), SEED_TOOLS, g)
    assert c.arguments["content"] == ODD


def test_an_edit_replaces_text_of_the_context(lltok) -> None:  # noqa: ANN001
    request = PatternRequest(prompt="In settings.py change the port from 8000 to 8080",
                             context="HOST = 'localhost'\nPORT = 8000\n")
    grammar, g = grounded_grammar(request, fenced("PORT = 8080\n"))
    good = call("Edit", file_path="settings.py", old_string="PORT = 8000", new_string="PORT = 8080")
    assert consumed(lltok, grammar, good)[1]
    invented = call("Edit", file_path="settings.py", old_string="PORT = 80", new_string="PORT = 8080")
    assert not consumed(lltok, grammar, invented)[1]  # a prefix of a span, closed early: not a span
    n, ok = consumed(lltok, grammar, call("Edit", file_path="settings.py", old_string="port: 8000",
                                          new_string="PORT = 8080"))
    assert not ok
    assert not consumed(lltok, grammar, call("Edit", file_path="settings.py", old_string="PORT = 8000",
                                             new_string="PORT = 9999"))[1]
    [c] = parse_grounded(good, SEED_TOOLS, g)
    assert request.context.replace(c.arguments["old_string"], c.arguments["new_string"]) == \
        "HOST = 'localhost'\nPORT = 8080\n"


def test_no_tool_and_free_tools_stay_possible(lltok) -> None:  # noqa: ANN001
    grammar, _ = grounded_grammar(PatternRequest(prompt="Explain decorators"), "A decorator wraps a function.")
    assert consumed(lltok, grammar, "[]")[1]
    assert consumed(lltok, grammar, call("Bash", command="ls -la"))[1]
    assert consumed(lltok, grammar, call("Grep", pattern="def \\w+"))[1]
    assert not consumed(lltok, grammar, call("Bash", command="x" * 65))[1]  # free but bounded
    assert not consumed(lltok, grammar, call("Write", file_path="notes.txt", content_block=1))[1]


def test_unusual_characters_in_candidates_compile_and_match(lltok) -> None:  # noqa: ANN001
    ctx = 'say "hi" `now` — ✓ 🌍\n' + LONG
    request = PatternRequest(prompt="edit data.py", context=ctx)
    grammar, g = grounded_grammar(request, fenced('say "bye" `later` ✓\n'))
    good = call("Edit", file_path="data.py", old_string='say "hi" `now` — ✓ 🌍', new_string='say "bye" `later` ✓\n')
    assert consumed(lltok, grammar, good)[1]
    [c] = parse_grounded(good, SEED_TOOLS, g)
    assert c.arguments["old_string"] in ctx


# -- expansion and validation ------------------------------------------------------------------------------
def test_expanded_calls_validate_against_the_tool_schema() -> None:
    g = ground(PatternRequest(prompt="save to a.py and b.py"), f"{fenced('one' + chr(10))}\n{fenced('two' + chr(10))}")
    text = json.dumps([{"tool": "Write", "arguments": {"file_path": "b.py", "content_block": 2}},
                       {"tool": "Write", "arguments": {"file_path": "a.py", "content_block": 1}}])
    calls = parse_grounded(text, SEED_TOOLS, g)
    schema = {t.name: t.parameters for t in SEED_TOOLS}
    for c in calls:
        jsonschema.validate(c.arguments, schema[c.tool])
    assert [c.arguments["content"] for c in calls] == ["two\n", "one\n"]


@pytest.mark.parametrize("arguments", [
    {"file_path": "c.py", "content_block": 1},            # a path named nowhere
    {"file_path": "a.py", "content_block": 3},            # no block 3
    {"file_path": "a.py", "content": "typed again"},      # content re-typed instead of chosen
])
def test_ungrounded_output_is_refused(arguments: dict) -> None:
    g = ground(PatternRequest(prompt="save to a.py"), fenced("one\n"))
    from orchestration.core.errors import ModelOutputError

    with pytest.raises(ModelOutputError, match="not grounded"):
        parse_grounded(json.dumps([{"tool": "Write", "arguments": arguments}]), SEED_TOOLS, g)


def test_token_bound_of_literals_is_their_json_length() -> None:
    assert token_bound({"enum": ["ab", 'q"'], "type": "string"}) == len('"q\\""') + 2
    assert token_bound({"enum": [1, 12]}) == 4
    g = ground(PatternRequest(prompt="save to a.py"), fenced(LONG))
    schema = extraction_schema([v for _, v in grounded_tools(SEED_TOOLS, g)], 1, 64)
    assert token_bound(schema) < 1000  # the 10 KB block costs one number, not 10,000 tokens


# -- host tools: the x-mageagent convention ------------------------------------------------------------------
SAVE = ToolDefinition(name="save_file", description="Save a file", parameters={
    "type": "object",
    "properties": {"target": {"type": "string", "x-mageagent": "path"},
                   "body": {"type": "string", "x-mageagent": "content"},
                   "mode": {"type": "string", "enum": ["overwrite", "append"]}},
    "required": ["target", "body", "mode"]})


def test_host_tools_are_grounded_where_marked() -> None:
    validate_definition(SAVE)
    g = ground(PatternRequest(prompt="put it in out.txt"), fenced("data\n", ""))
    params = decoding_parameters(SAVE, g)
    assert params is not None
    assert params["properties"]["target"]["enum"] == ["out.txt"]
    assert params["properties"]["body_block"]["enum"] == [1] and "body" not in params["properties"]
    assert params["properties"]["mode"] == {"type": "string", "enum": ["overwrite", "append"]}
    args = expand(SAVE, {"target": "out.txt", "body_block": 1, "mode": "append"}, g)
    assert args == {"target": "out.txt", "body": "data\n", "mode": "append"}
    [c] = parse_grounded(json.dumps([{"tool": "save_file", "arguments": {"target": "out.txt", "body_block": 1,
                                                                         "mode": "append"}}]), [SAVE], g)
    assert c.arguments["body"] == "data\n" and c.risk == "destructive"  # unannotated host tool: may destroy


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "string", "x-mageagent": "filename"}, "choose one of"),
    ({"type": "integer", "x-mageagent": "path"}, "top-level string"),
])
def test_bad_grounding_marks_are_refused(spec: dict, message: str) -> None:
    tool = ToolDefinition(name="t", parameters={"type": "object", "properties": {"p": spec}})
    with pytest.raises(SchemaError, match=message):
        validate_definition(tool)
    nested = ToolDefinition(name="t", parameters={"type": "object", "properties": {"o": {
        "type": "object", "properties": {"p": {"type": "string", "x-mageagent": "path"}}}}})
    with pytest.raises(SchemaError, match="top-level string"):
        validate_definition(nested)


def test_host_content_that_no_block_fits_stays_a_plain_string() -> None:
    short = ToolDefinition(name="note", parameters={"type": "object", "properties": {
        "text": {"type": "string", "maxLength": 3, "x-mageagent": "content"}}, "required": ["text"]})
    params = decoding_parameters(short, ground(PatternRequest(prompt="note it"), fenced("too long\n")))
    assert params is not None and params["properties"]["text"] == {"type": "string", "maxLength": 3}


# -- through the engine, over the scripted fake ------------------------------------------------------------
def make(**overrides: object) -> tuple[Engine, ScriptedBackend]:
    overrides.setdefault("extraction_constraint", "grounded")  # the model-written path these tests ground
    fake = ScriptedBackend()
    return Engine(fake_settings(**overrides), {"mlx": fake}), fake


STACK = "class Stack:\n    def __init__(self):\n        self.items = []\n"
ANSWER = f"Here is the class:\n\n{fenced(STACK)}\n\nIt keeps the items in a list."


@pytest.mark.anyio
async def test_hybrid_write_carries_the_answers_code_exactly() -> None:
    engine, fake = make()
    fake.enqueue(ANSWER, model=P)
    fake.enqueue([{"tool": "Write", "arguments": {"file_path": "stack.py", "content_block": 1}}], model=T)
    r = await engine.run("hybrid", PatternRequest(prompt="Write a stack class and save it to stack.py",
                                                  extraction="always"))
    assert [c.model_dump() for c in r.tool_calls] == [
        {"tool": "Write", "arguments": {"file_path": "stack.py", "content": STACK}, "risk": "write"}]
    sent = fake.history[1]
    schema = json.dumps(sent.constraint.json_schema)
    assert '"enum": ["stack.py"]' in schema and "content_block" in schema
    user = sent.messages[-1].content
    assert "(block 1)\n```python" in user and user.endswith("Files named: stack.py")
    assert prompts.BLOCK_NOTE in sent.messages[0].content


@pytest.mark.anyio
async def test_the_tools_pattern_shows_the_tasks_blocks_by_number() -> None:
    engine, fake = make()
    fake.enqueue([{"tool": "Write", "arguments": {"file_path": "a.py", "content_block": 1}}], model=T)
    r = await engine.run("tools", PatternRequest(prompt="Write 'print(1)' to the file a.py"))
    assert r.tool_calls[0].arguments == {"file_path": "a.py", "content": "print(1)"}
    assert fake.history[0].messages[-1].content.endswith("Blocks:\n(block 1)\nprint(1)\n\nFiles named: a.py")


@pytest.mark.anyio
async def test_an_unenforced_ungrounded_call_is_fed_back_then_refused() -> None:
    engine, fake = make()
    fake.enqueue(ANSWER, model=P)
    bad = [{"tool": "Write", "arguments": {"file_path": "src/app.py", "content_block": 1}}]
    for _ in range(3):
        fake.enqueue(bad, model=T, constrained=False)
    with pytest.raises(PatternError, match="not grounded"):
        await engine.run("hybrid", PatternRequest(prompt="Write a stack class and save it to stack.py",
                                                  extraction="always"))
    assert "not grounded" in fake.history[2].messages[-1].content  # the error went back to the model


@pytest.mark.anyio
@pytest.mark.parametrize("constraint", ["grammar", "none"])
async def test_the_plain_and_the_free_baselines_still_work(constraint: str) -> None:
    engine, fake = make(extraction_constraint=constraint)
    fake.enqueue(ANSWER, model=P)
    reply = [{"tool": "Write", "arguments": {"file_path": "S1.txt", "content": "retyped"}}]
    fake.enqueue(reply if constraint == "grammar" else "Sure: " + json.dumps(reply), model=T,
                 constrained=constraint == "grammar")
    r = await engine.run("hybrid", PatternRequest(prompt="Write a stack class and save it to stack.py",
                                                  extraction="always"))
    assert r.tool_calls[0].arguments == {"file_path": "S1.txt", "content": "retyped"}  # valid, not grounded
    sent = fake.history[1]
    assert (sent.constraint is None) == (constraint == "none")
    assert "(block 1)" not in sent.messages[-1].content and "content_block" not in sent.messages[0].content


@pytest.mark.anyio
async def test_plain_host_tools_get_the_seed_prompt_unchanged() -> None:
    engine, fake = make()
    plain = ToolDefinition(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    fake.enqueue([{"tool": "lookup", "arguments": {"q": "x"}}], model=T)
    request = PatternRequest(prompt="Look up 'weather' for notes.md", tools=[plain])
    await engine.run("tools", request)
    assert fake.history[0].messages == prompts.extraction(request, None, [plain])


@pytest.mark.anyio
async def test_the_mcp_tools_argument_carries_the_convention() -> None:
    from mcp import Client

    from mcp_mageagent.server import build_server

    fake = ScriptedBackend()
    settings = fake_settings()
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    fake.enqueue(ANSWER, model=P)
    fake.enqueue([{"tool": "save_file", "arguments": {"target": "stack.py", "body_block": 1, "mode": "overwrite"}}],
                 model=T)
    async with Client(server) as client:
        result = await client.call_tool("mage_hybrid", {
            "prompt": "Write a stack class and save it to stack.py", "extraction": "always",
            "tools": [SAVE.model_dump()]})
    assert not result.is_error
    [c] = result.structured_content["tool_calls"]
    assert c["arguments"] == {"target": "stack.py", "body": STACK, "mode": "overwrite"}
    assert '"enum": ["stack.py"]' in json.dumps(fake.history[1].constraint.json_schema)


# -- the tiny real model, through mage_hybrid over the in-memory MCP client ---------------------------------
@pytest.mark.real_model
@pytest.mark.anyio
async def test_tiny_model_writes_the_answers_code_to_the_named_file(real_engine: Engine,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp import Client

    from mcp_mageagent.server import build_server

    # The product's continuation (the fixture turns it off for plumbing tests): the 96-token answer's code block
    # is cut off, continued once, then written.
    monkeypatch.setattr(real_engine.settings, "continuation_tokens", Settings().continuation_tokens)
    server = build_server(real_engine.settings, real_engine)
    # greedy SmolLM2-135M: for "adds two numbers ... add.py" it answers Bash "bash"; for this one it writes
    prompt = "Write a FizzBuzz program in Python and save it to fizzbuzz.py"
    async with Client(server) as client:
        result = await client.call_tool("mage_hybrid", {"prompt": prompt, "extraction": "always",
                                                        "max_tokens": 96, "temperature": 0})
    assert not result.is_error, result.content
    out = result.structured_content
    answer = out["text"]
    writes = [c for c in out["tool_calls"] if c["tool"] == "Write"]
    assert writes, out["tool_calls"]
    for w in writes:
        assert w["arguments"]["file_path"] in file_names(prompt + "\n" + answer)
        assert w["arguments"]["content"] in (code_blocks(answer) or [answer])
    assert any(w["arguments"]["file_path"] == "fizzbuzz.py" for w in writes)
    assert code_blocks(answer) and writes[0]["arguments"]["content"] == code_blocks(answer)[0]


# -- a host's pattern cannot freeze grounding (issue 26 §5) ---------------------------------------------------
BACKTRACKING = r"^(\w+\w?)+(\.py)?$"  # the review's ^(\w+\w?)+$, allowing .py: exponential on "aaa...a.txt"
SLOW_NAME = "a" * 21 + ".txt"  # 25 characters: Python's re held the loop for seconds on it (x4 per two more)
PATTERNED = ToolDefinition(name="open_file", parameters={
    "type": "object", "properties": {"target": {"type": "string", "x-mageagent": "path", "pattern": BACKTRACKING}},
    "required": ["target"]})


def test_a_backtracking_host_pattern_is_matched_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from orchestration.tools.schema import pattern_matcher

    long_name = "a" * 200 + ".txt"  # hours of backtracking for re
    g = ground(PatternRequest(prompt=f"Compare {long_name} and {SLOW_NAME} with stack.py"), None)
    assert {long_name, SLOW_NAME, "stack.py"} <= set(g.paths)

    def backtracking(*args: object, **kwargs: object) -> None:
        raise AssertionError("the host's pattern went to Python's backtracking re")

    monkeypatch.setattr(re, "search", backtracking)  # what jsonschema's "pattern" keyword calls
    params = decoding_parameters(PATTERNED, g)
    monkeypatch.undo()
    assert params is not None and params["properties"]["target"]["enum"] == ["stack.py"]
    assert pattern_matcher(BACKTRACKING).supported  # llguidance's engine, not a fallback


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    (r"^(\w+\w?)+$", "a" * 60 + ".py", False),
    (r"^(\w+\w?)+$", "abc_def", True),
    (r"\.py$", "src/app.py", True),  # unanchored: JSON Schema searches
    (r"\.py$", "app.pyc", False),
    (r"^src/", "src/app.py", True),
    (r"^src/", "lib/src/app.py", False),
    (r"^a|b$", "xb", True),  # anchors inside an alternation: the JSON-schema route
    (r"^a|b$", "bx", False),
    (r"^[^\"]*$", 'say "hi"', False),
    (r"^.{3}$", "日本語", True),
    (r"^a.b$", "a\nb", False),
    (r"(?=a)a", "a", False),  # a look-ahead: llguidance has none, so nothing matches
])
def test_linear_patterns_follow_json_schema(pattern: str, text: str, matches: bool) -> None:
    from orchestration.tools.schema import pattern_matcher

    assert pattern_matcher(pattern)(text) is matches


def test_a_pattern_the_linear_engine_cannot_read_offers_no_candidate() -> None:
    tool = ToolDefinition(name="open_file", parameters={"type": "object", "properties": {
        "target": {"type": "string", "x-mageagent": "path", "pattern": r"^(?!secret).*\.py$"}},
        "required": ["target"]})
    assert decoding_parameters(tool, ground(PatternRequest(prompt="open stack.py"), None)) is None
    with pytest.raises(SchemaError, match="look-arounds"):  # and the host hears why, up front
        validate_definition(tool)


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:ping is removed")
async def test_mcp_ping_is_answered_while_a_patterned_call_is_grounded() -> None:
    """Pings go out back to back for the whole call; none waits behind grounding. (A time bound is the only way to
    see a blocked loop from outside: with Python's re the name above held the loop for seconds.)"""
    from mcp import Client

    from mcp_mageagent.server import build_server

    fake = ScriptedBackend()
    settings = fake_settings()
    server = build_server(settings, Engine(settings, {"mlx": fake}))
    fake.enqueue("Done.", model=P, delay=0.05)
    fake.enqueue([{"tool": "open_file", "arguments": {"target": "stack.py"}}], model=T)
    gaps: list[float] = []
    done = anyio.Event()
    result: list[object] = []
    async with Client(server, mode="legacy") as client:  # ping is a method of the 2025-11-25 protocol

        async def call() -> None:
            result.append(await client.call_tool("mage_hybrid", {
                "prompt": f"Open {SLOW_NAME} or stack.py", "extraction": "always",
                "tools": [PATTERNED.model_dump()]}))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            last = anyio.current_time()
            while not done.is_set():
                await client.send_ping()
                now = anyio.current_time()
                gaps.append(now - last)
                last = now
                await anyio.sleep(0.005)
    [r] = result
    assert not r.is_error  # type: ignore[attr-defined]
    assert r.structured_content["tool_calls"][0]["arguments"] == {"target": "stack.py"}  # type: ignore[attr-defined]
    assert '"enum": ["stack.py"]' in json.dumps(fake.history[1].constraint.json_schema)  # it was grounded
    assert len(gaps) >= 3 and max(gaps) < 2.0, max(gaps)
