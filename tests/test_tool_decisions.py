"""Tool calls from facts (issue 24): candidates built from the request, the context and the answer; the request's
own asks decide; the tools model only chooses among candidates; nothing the host runs loses data."""

from __future__ import annotations

import pytest

from orchestration.patterns.engine import Engine
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.tools.candidates import answer_blocks, build_candidates, context_files, guard_calls
from orchestration.tools.intent import read_intent
from orchestration.tools.merge import apply_edits, definitions, diff_edits, merge_code
from orchestration.tools.relevance import relevance_gate
from orchestration.core.types import PatternRequest, ToolCall, ToolDefinition

P, T = FAKE_MODELS["primary"], FAKE_MODELS["tools"]
pytestmark = pytest.mark.anyio

PRIME = "```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    return all(n % d for d in range(2, n))\n```"
CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
FIXED_ADD = "The bug is the minus sign.\n\n```python\ndef add(a, b):\n    return a + b\n```\n"


def make() -> tuple[Engine, ScriptedBackend]:
    fake = ScriptedBackend()
    return Engine(fake_settings(), {"mlx": fake}), fake


def tools_of(result) -> list[str]:  # noqa: ANN001
    return [c.tool for c in result.tool_calls]


# -- the README's main job and its paraphrases: a Write without a model step --------------------------------------
@pytest.mark.parametrize("tail", ["", "\n\nThis function returns True for primes and False otherwise.",
                                  "\n\nExample:\n```python\nprint(is_prime(7))\n```\nIt prints True."])
async def test_named_file_and_code_block_give_the_write_without_a_model_step(tail: str) -> None:
    engine, fake = make()
    fake.enqueue("Here it is:\n\n" + PRIME + tail, model=P)
    r = await engine.run("hybrid", PatternRequest(
        prompt="Write a Python function is_prime(n) that returns True if n is prime, and save it to prime.py"))
    assert fake.models_asked == [P]  # no tools-model step at all
    assert tools_of(r) == ["Write"]
    assert r.tool_calls[0].arguments == {"file_path": "prime.py", "content": answer_blocks(PRIME)[0].body}
    assert r.tool_calls[0].risk == "write"
    d = r.trace.tool_decision
    assert d is not None and d.decided_by == "facts" and "no model step" in d.reason


@pytest.mark.parametrize("prompt", [
    "Write a Python function slugify(title) that lowercases and joins words with dashes. Put it in text_utils.py.",
    "Create text_utils.py with a slugify(title) function",
    "Implement slugify(title) and store it in text_utils.py",
    "I need slugify(title) in a new file called text_utils.py",
    "Write slugify(title); the file text_utils.py should contain it",
])
async def test_save_paraphrases_give_one_write_and_no_bash(prompt: str) -> None:
    engine, fake = make()
    fake.enqueue("```python\ndef slugify(title):\n    return '-'.join(title.lower().split())\n```\n\n"
                 "```bash\necho 'hello world' | tr ' ' '-'\n```", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt=prompt))
    assert tools_of(r) == ["Write"], r.trace.tool_decision
    assert r.tool_calls[0].arguments["file_path"] == "text_utils.py"
    assert "def slugify" in r.tool_calls[0].arguments["content"]


async def test_context_file_and_changed_function_give_an_edit_that_keeps_the_other_function() -> None:
    engine, fake = make()
    fake.enqueue(FIXED_ADD, model=P)
    r = await engine.run("hybrid", PatternRequest(
        prompt="Fix the bug in calc.py: add should return the sum of its arguments", context=CALC))
    assert fake.models_asked == [P]
    assert tools_of(r) == ["Edit"]
    args = r.tool_calls[0].arguments
    assert args["file_path"] == "calc.py" and CALC.count(args["old_string"]) == 1
    after = apply_edits(CALC, [(args["old_string"], args["new_string"])])
    assert "return a + b" in after and "def mul(a, b):\n    return a * b" in after


async def test_a_partial_write_over_a_context_file_is_never_returned() -> None:
    """Even where the tools model (host-tools path) writes it: the guard refuses a Write that drops `mul`."""
    req = PatternRequest(prompt="Fix add in calc.py", context=CALC)
    partial = ToolCall(tool="Write", arguments={"file_path": "calc.py", "content": "def add(a, b):\n    return a + b\n"},
                       risk="write")
    whole = ToolCall(tool="Write", arguments={"file_path": "calc.py", "content": CALC.replace("a - b", "a + b")},
                     risk="write")
    kept, refused = guard_calls([partial, whole], req)
    assert kept == [whole.model_copy(update={"risk": "destructive"})]  # a whole-file overwrite says so
    assert refused and "mul" in refused[0]


def test_an_edit_whose_old_text_is_not_unique_is_refused() -> None:
    req = PatternRequest(prompt="Fix calc.py", context="x = 1\nx = 1\n")
    kept, refused = guard_calls([ToolCall(tool="Edit", arguments={"file_path": "calc.py", "old_string": "x = 1",
                                                                  "new_string": "x = 2"}, risk="write")], req)
    assert kept == [] and "2 times" in refused[0]


async def test_cut_off_answer_is_never_written() -> None:
    engine, fake = make()
    engine.settings.continuation_tokens = 0  # no continuation: the cut-off block stands
    fake.enqueue("```python\ndef is_prime(n):\n    if n < 2:\n        return Fal", model=P, finish_reason="length")
    r = await engine.run("hybrid", PatternRequest(prompt="Write is_prime(n) and save it to prime.py"))
    assert r.tool_calls == []
    assert any("cut off" in x for x in r.trace.tool_decision.refused)


@pytest.mark.parametrize(("prompt", "command"), [
    ("Create hello.py that prints hello, then run it", "python hello.py"),
    ("Write add(a, b) in add.py and then run the tests with pytest", "pytest"),
    ("Save the tests to test_add.py and run the tests", "pytest test_add.py"),
])
async def test_run_requests_give_a_grounded_command_after_the_write(prompt: str, command: str) -> None:
    engine, fake = make()
    fake.enqueue("```python\ndef add(a, b):\n    return a + b\n\nprint('hello')\n```", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt=prompt))
    assert tools_of(r) == ["Write", "Bash"]
    assert r.tool_calls[1].arguments["command"] == command


async def test_no_bash_command_text_comes_from_a_model() -> None:
    """Where the facts leave candidates the request does not ask for, the model picks among them by number: the
    command it returns is one the answer wrote verbatim, or nothing."""
    engine, fake = make()
    fake.enqueue("Use the requests library:\n\n```bash\npip install requests\n```", model=P)
    fake.enqueue("1", model=T, option_probs={"1": 0.7, "none": 0.3})
    r = await engine.run("hybrid", PatternRequest(prompt="I want to fetch web pages in my script"))
    assert fake.history[1].constraint.options == ["1", "none"]
    assert [c.arguments for c in r.tool_calls] == [{"command": "pip install requests"}]
    d = r.trace.tool_decision
    assert d.decided_by == "model" and d.probabilities == {"1": 0.7, "none": 0.3}


async def test_the_chooser_can_answer_none() -> None:
    engine, fake = make()
    fake.enqueue("```bash\npip install requests\n```", model=P)
    fake.enqueue("none", model=T, option_probs={"1": 0.2, "none": 0.8})
    r = await engine.run("hybrid", PatternRequest(prompt="I want to fetch web pages in my script"))
    assert r.tool_calls == []


async def test_a_question_gets_no_call_even_when_the_answer_shows_code() -> None:
    engine, fake = make()
    fake.enqueue(FIXED_ADD + "\n```bash\npython calc.py\n```", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt="Why does add in calc.py return the wrong value?",
                                                  context=CALC))
    assert r.tool_calls == [] and fake.models_asked == [P]


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Show me the contents of src/main.py", [("Read", {"file_path": "src/main.py"})]),
    ("Find all Python files in the project", [("Glob", {"pattern": "**/*.py"})]),
    ("List all markdown files under docs/", [("Glob", {"pattern": "**/*.md", "path": "docs"})]),
    ("Search the code for the word TODO", [("Grep", {"pattern": "TODO"})]),
    ("Find where the function parse_args is defined", [("Grep", {"pattern": "parse_args"})]),
    ("Delete the build directory", [("Bash", {"command": "rm -r build"})]),
    ("Check the git status of the repository", [("Bash", {"command": "git status"})]),
    ("Run the linter ruff on the project", [("Bash", {"command": "ruff check ."})]),
    ("Read config.yaml and then list all YAML files", [("Read", {"file_path": "config.yaml"}),
                                                       ("Glob", {"pattern": "**/*.yaml"})]),
    ("Add a helper to utils.py", [("Read", {"file_path": "utils.py"})]),  # not shown: read, never overwritten
])
async def test_tools_pattern_builds_calls_from_the_request(prompt: str, expected: list) -> None:
    engine, fake = make()
    r = await engine.run("tools", PatternRequest(prompt=prompt))
    assert [(c.tool, c.arguments) for c in r.tool_calls] == expected
    assert fake.models_asked == []


async def test_a_test_that_expects_calls_fails_on_zero_calls() -> None:
    """The pattern the issue found in three tests: a check inside ``for call in calls`` passes on no call."""
    engine, fake = make()
    fake.enqueue("No code here.", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt="Write is_prime and save it to prime.py"))
    assert r.tool_calls == []  # nothing to write: so a test asserting a Write must see one, not loop over none
    assert "no code or text" in r.trace.tool_decision.reason


# -- units ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("prompt", "destinations"), [
    ("Write is_prime and save it to prime.py", ["prime.py"]),
    ("Put it in text_utils.py.", ["text_utils.py"]),
    ("Fix the bug in calc.py", []),
    ("Explain what main.py does", []),
    ("Add a function to utils.py", []),
    ("Write a stack class in Python and save it to stack.py", ["stack.py"]),
])
def test_destinations(prompt: str, destinations: list[str]) -> None:
    assert read_intent(prompt).destinations == destinations


def test_merge_replaces_a_method_shown_alone_and_keeps_the_rest() -> None:
    cls = "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def pop(self):\n        return 1\n"
    m = merge_code(cls, "def pop(self):\n    return self.items.pop()\n")
    assert m is not None and m.changed == ["Stack.pop"]
    assert "        return self.items.pop()" in m.merged and "__init__" in m.merged
    edits = diff_edits(cls, m.merged)
    assert apply_edits(cls, edits) == m.merged


def test_merge_adds_new_definitions_and_imports() -> None:
    m = merge_code(CALC, "import math\n\ndef sub(a, b):\n    return a - b\n")
    assert m is not None and set(definitions(m.merged)) == {"add", "mul", "sub"}
    assert m.merged.startswith("import math\n")
    assert apply_edits(CALC, diff_edits(CALC, m.merged)) == m.merged


def test_edits_are_unique_where_the_changed_line_repeats() -> None:
    dup = "def f():\n    return 1\n\n\ndef g():\n    return 1\n"
    m = merge_code(dup, "def g():\n    return 2\n")
    edits = diff_edits(dup, m.merged)
    assert all(dup.count(old) == 1 for old, _ in edits)
    assert apply_edits(dup, edits) == m.merged


def test_context_files_by_header_and_by_name() -> None:
    req = PatternRequest(prompt="Fix a.py and b.py", context="# File: a.py\nx = 1\n# File: b.py\ny = 2\n")
    assert context_files(req, read_intent(req.prompt)) == {"a.py": "x = 1\n", "b.py": "y = 2\n"}
    req = PatternRequest(prompt="Fix the bug in calc.py", context="```python\n" + CALC + "```")
    assert context_files(req, read_intent(req.prompt)) == {"calc.py": CALC}


@pytest.mark.parametrize("path", ["~/.bashrc", "../../../../etc/profile.d/env.sh",
                                  "/usr/lib/python3/dist-packages/sitecustomize.py", "src/../../outside.py",
                                  "./../x.py", "~root/.ssh/config.py", "C:/Windows/system.ini", "/proc/self/environ.txt",
                                  "docs/../../../.profile"])
def test_paths_outside_the_folder_are_never_written_unless_the_request_names_them(path: str) -> None:
    call = ToolCall(tool="Write", arguments={"file_path": path, "content": "x"}, risk="write")
    kept, refused = guard_calls([call], PatternRequest(prompt="Save the helper", context=f"see {path}"))
    assert kept == [] and "outside" in refused[0]
    kept, _ = guard_calls([call], PatternRequest(prompt=f"Save the helper to {path}"))
    assert kept[0].risk == "destructive"


def test_candidates_mark_what_the_request_asks() -> None:
    c = build_candidates(PatternRequest(prompt="Save it to a.py and run it"),
                         "```python\nprint(1)\n```\n```bash\nrm -rf /\n```")
    asked = [(x.calls[0].tool, x.asked) for x in c.items]
    assert asked == [("Write", True), ("Bash", True), ("Bash", False)]
    assert c.items[1].calls[0].arguments["command"] == "python a.py"


@pytest.mark.parametrize(("prompt", "tool", "fits"), [
    ("Calculate the area of a triangle with base 10 and height 5", "determine_body_mass_index", False),
    ("Calculate the area of a triangle with base 10 and height 5", "calculate_triangle_area", True),
    ("Find the greatest common divisor of 12 and 15", "math.gcd", True),
    ("What is the capital of France?", "math.factorial", False),
    ("Hypotenuse of a right triangle with sides 3 and 4", "math.hypot", True),
])
def test_relevance_gate(prompt: str, tool: str, fits: bool) -> None:
    gate = relevance_gate(prompt, [ToolDefinition(name=tool, description="")])
    assert (gate is None) is fits


async def test_irrelevant_host_tools_get_no_call_and_no_model_step() -> None:
    engine, fake = make()
    tool = ToolDefinition(name="determine_body_mass_index", description="Calculate BMI given weight and height.",
                          parameters={"type": "object", "properties": {"weight": {"type": "number"}}})
    r = await engine.run("tools", PatternRequest(prompt="What is the capital of France?", tools=[tool]))
    assert r.tool_calls == [] and fake.models_asked == []
    assert "no offered tool fits" in r.trace.tool_decision.reason


@pytest.mark.parametrize(("prompt", "how_to"), [
    ("How do I install numpy?", True), ("How would you test median in utils.py?", True),
    ("How to read a file line by line", True), ("Install numpy", False), ("Which files import numpy?", False),
])
def test_how_to_questions_ask_for_no_action(prompt: str, how_to: bool) -> None:
    c = build_candidates(PatternRequest(prompt=prompt), None)
    assert read_intent(prompt).how_to is how_to
    assert all(not x.asked for x in c.items if x.calls[0].tool == "Bash") or not how_to


async def test_code_cut_off_inside_its_block_is_continued_once_then_written() -> None:
    engine, fake = make()
    fake.enqueue("```python\ndef is_prime(n):\n    if n < 2:\n        return Fal", model=P, finish_reason="length")
    fake.enqueue("se\n    return all(n % d for d in range(2, n))\n```\nDone.", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt="Write is_prime(n) and save it to prime.py"))
    cont = fake.history[1]
    assert cont.continue_final and cont.messages[-1].role == "assistant" and cont.messages[-1].content.endswith("Fal")
    assert [s.purpose for s in r.trace.steps] == ["answer", "answer: continue the cut-off code"]
    assert tools_of(r) == ["Write"] and "return False" in r.tool_calls[0].arguments["content"]


async def test_code_still_cut_off_after_the_continuation_is_reported_and_never_written() -> None:
    engine, fake = make()
    fake.enqueue("```python\ndef is_prime(n):\n    if n < 2:\n", model=P, finish_reason="length")
    fake.enqueue("        return False\n    for d in range(2,", model=P, finish_reason="length")
    r = await engine.run("hybrid", PatternRequest(prompt="Write is_prime(n) and save it to prime.py"))
    assert r.tool_calls == [] and any("cut off" in x for x in r.trace.tool_decision.refused)
    assert len(fake.history) == 2  # bounded: one continuation


def test_a_large_context_is_merged() -> None:
    big = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(3000))
    c = build_candidates(PatternRequest(prompt="Fix f7 in big.py", context=big),
                         "```python\ndef f7(x):\n    return x * 7\n```")
    (edit,) = [x for x in c.items if x.asked]
    (call,) = edit.calls
    assert big.count(call.arguments["old_string"]) == 1  # "return x + 7" alone is also in "+ 70": grown to be unique
    after = apply_edits(big, [(call.arguments["old_string"], call.arguments["new_string"])])
    assert "def f7(x):\n    return x * 7\n" in after and "return x + 70\n" in after


async def test_an_answer_that_repeats_the_file_with_other_blank_lines_changes_nothing() -> None:
    """Seen in the request table (edit-26): the 0.5B repeated text_tools.py with single blank lines; a whole-file
    fallback turned that into three whitespace Edits. Definitions all equal: no Edit."""
    text = "import re\n\n\ndef words(s):\n    return s.split()\n\n\ndef title(s):\n    return s.upper()\n"
    answer = "```python\nimport re\n\ndef words(s):\n    return s.split()\n\ndef title(s):\n    return s.upper()\n```"
    c = build_candidates(PatternRequest(prompt="Add a function count_words(s) to text_tools.py", context=text), answer)
    assert [x for x in c.items if x.calls[0].tool == "Edit"] == []


async def test_a_summary_request_is_a_question() -> None:
    """Seen in the request table (none-24): "Summarize what config.py configures" went to the chooser, which
    picked an Edit of the answer's unrelated Flask code. Summaries and reviews ask to be told something."""
    engine, fake = make()
    fake.enqueue("It sets DEBUG.\n\n```python\nfrom flask import Flask\napp = Flask(__name__)\n```", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt="Summarize what config.py configures",
                                                  context="DEBUG = True\n\n\ndef url():\n    return 1\n"))
    assert r.tool_calls == [] and fake.models_asked == [P]


async def test_a_cut_inside_indentation_is_continued_from_the_stripped_text() -> None:
    """Seen in the request table at 128 tokens (save-26, save-30): the template strips the continued turn's trailing
    spaces, so text + continuation lost a space of indentation and the code no longer parsed."""
    engine, fake = make()
    fake.enqueue("```python\ndef f(n):\n    if n:\n    ", model=P, finish_reason="length")
    fake.enqueue("\n        return 1\n    return 0\n```", model=P)
    r = await engine.run("hybrid", PatternRequest(prompt="Write f(n) and save it to f.py"))
    assert fake.history[1].messages[-1].content.endswith("if n:")
    assert r.tool_calls[0].arguments["content"] == "def f(n):\n    if n:\n        return 1\n    return 0\n"
