"""Every prompt the patterns send, as pure functions returning message lists.

The validation, judge and extraction texts are the seed's; each system text can be replaced
from the config file (``[prompts]``), where ``{tools}`` in the extraction text stands for the
rendered tool list.
"""

from __future__ import annotations

import json

from ..core.settings import PromptOverrides
from ..core.types import Message, PatternRequest, ToolDefinition

__all__ = [
    "VALIDATION",
    "JUDGE",
    "EXTRACTION",
    "REVISION",
    "CORRECTNESS",
    "correctness",
    "user_content",
    "answer",
    "step",
    "validation",
    "revision",
    "judge",
    "extraction",
    "render_tools",
    "TEST_WRITING",
    "tests_request",
]

VALIDATION = """Review the response for issues:
1. Syntax errors
2. Logic bugs
3. Missing error handling
4. Security vulnerabilities
5. Performance problems

Output ONLY "PASS" if no issues found, or "FAIL: <brief list of issues>\""""

JUDGE = """Compare two solutions and pick the better one.
Consider: correctness, efficiency, readability, error handling.
Answer in JSON: first "reason", one sentence on which solution is better and why, then "better", "A" or "B"."""

CORRECTNESS = """You review code. Decide whether the solution is correct: it does exactly what the task asks for \
every valid input. Answer YES or NO."""

EXTRACTION = """You are a tool-calling assistant. Based on the task and response, extract required tool calls.

Output tool calls as JSON array:
[{"tool": "tool_name", "arguments": {"arg1": "value1"}}]

Available tools:
{tools}

If no tools are needed, output: []"""

REVISION = """This answer to the task above fails these checks:
{issues}

The answer:
{answer}

Find the mistake and write the corrected, complete code in one ```python block."""


def user_content(request: PatternRequest) -> str:
    """The task as the models read it: the prompt, then the host's context if any."""
    if request.context:
        return f"{request.prompt}\n\nContext:\n{request.context}"
    return request.prompt


def _with_system(system: str | None, messages: list[Message]) -> list[Message]:
    return ([Message(role="system", content=system)] if system else []) + messages


def answer(request: PatternRequest, role_system: str | None = None) -> list[Message]:
    """A model answering the task; the request's system text wins over the role's."""
    return _with_system(request.system or role_system, [Message(role="user", content=user_content(request))])


def step(text: str, system: str | None = None) -> list[Message]:
    """A custom pattern's generate step: its rendered template as the user turn."""
    return _with_system(system, [Message(role="user", content=text)])


def validation(request: PatternRequest, response: str, overrides: PromptOverrides | None = None) -> list[Message]:
    system = (overrides and overrides.validation) or VALIDATION
    body = f"Task:\n{user_content(request)}\n\nResponse to review:\n{response}"
    return _with_system(system, [Message(role="user", content=body)])


def revision(request: PatternRequest, response: str, issues: list[str],
             overrides: PromptOverrides | None = None, role_system: str | None = None,
             code: str | None = None) -> list[Message]:
    """One user turn: the task, each failing check (input, expected, what came back), and the previous answer
    shown as material (its ``code`` where it has some), never replayed as the model's own turn: greedy decoding
    then writes the same answer again. The same prompt serves the primary's repair and the escalation."""
    template = (overrides and overrides.revision) or REVISION
    listed = "\n".join(f"- {i}" for i in issues) or "- (no details given)"
    shown = f"```python\n{code.rstrip()}\n```" if code else response
    body = template.replace("{issues}", listed)
    body = body.replace("{answer}", shown) if "{answer}" in body else f"{body}\n\nThe answer:\n{shown}"
    return _with_system(request.system or role_system,
                        [Message(role="user", content=f"{user_content(request)}\n\n{body}")])


def correctness(request: PatternRequest, response: str, overrides: PromptOverrides | None = None) -> list[Message]:
    """The pointwise judge: one answer alone, YES or NO (no other answer in sight, so no order to favour)."""
    body = f"Task:\n{user_content(request)}\n\nSolution:\n{response}\n\nIs the solution correct? Answer YES or NO."
    return [Message(role="system", content=CORRECTNESS), Message(role="user", content=body)]


def judge(request: PatternRequest, a: str, b: str, overrides: PromptOverrides | None = None) -> list[Message]:
    system = (overrides and overrides.judge) or JUDGE
    body = f"Task:\n{user_content(request)}\n\nSolution A:\n{a}\n\nSolution B:\n{b}"
    return _with_system(system, [Message(role="user", content=body)])


def _placeholder(name: str, spec: object) -> object:
    if isinstance(spec, dict):
        if spec.get("examples"):
            return spec["examples"][0]
        if spec.get("enum"):
            return spec["enum"][0]
    return f"<{name}>"  # a name, not a type: small models copy type words ("string") into calls


def render_tools(tools: list[ToolDefinition]) -> str:
    """One line per tool: name, argument example, description (the seed's layout and placeholders)."""
    lines = []
    for t in tools:
        props = t.parameters.get("properties", {})
        example = {name: _placeholder(name, spec) for name, spec in props.items()}
        desc = f" - {t.description}" if t.description else ""
        lines.append(f"- {t.name}: {json.dumps(example)}{desc}")
    return "\n".join(lines)


BLOCK_NOTE = ("An argument ending in _block is the number N of a code block of the response, marked (block N).\n"
              "To save code from the response to a file, use Write with the block's number. Use Bash only to run "
              "a command the task asks for.")


def extraction(request: PatternRequest, response: str | None, tools: list[ToolDefinition],
               overrides: PromptOverrides | None = None, files: list[str] | None = None,
               blocks: list[str] | None = None) -> list[Message]:
    """The seed's extraction prompt. Grounded extraction passes the tools' decoding views (block numbers in
    place of content), the response with its blocks marked (or, with no response, the task's ``blocks``), and
    the files the task and response name."""
    template = (overrides and overrides.extraction) or EXTRACTION
    listed = render_tools(tools)
    if any(k.endswith("_block") for t in tools for k in t.parameters.get("properties", {})):
        listed += "\n" + BLOCK_NOTE
    system = template.replace("{tools}", listed)
    body = f"Task:\n{user_content(request)}"
    if response is not None:
        body += f"\n\nResponse:\n{response}"
    elif blocks:
        body += "\n\nBlocks:\n" + "\n".join(f"(block {n})\n{b}" for n, b in enumerate(blocks, 1))
    if files:
        body += "\n\nFiles named: " + ", ".join(files)
    return _with_system(system, [Message(role="user", content=body)])


TEST_WRITING = """Write unit tests for the task below, as Python assert statements.
Rules:
- One assert per line, each a complete statement such as: assert name(arguments) == expected_value
- Call only the names listed under "Signatures"; compute each expected value by hand from the task.
- Cover typical inputs and edge cases (empty, zero, negative, one element) the task allows.
- Write at most {n} lines and nothing else: no imports, no prose, no code fences."""

def tests_request(request: PatternRequest, signatures: list[str], n: int = 5) -> list[Message]:
    """The validator writes tests from the task and the candidate's signatures (never its body). The ask comes
    last: a small model given a task with code in it otherwise just completes the code."""
    sig = "\n".join(signatures) or "(none found)"
    ask = (f"Now write at most {n} unit tests for this task as Python assert statements, one per line, calling "
           f"only: {', '.join(s.split('(')[0].removeprefix('def ').removeprefix('class ') for s in signatures)}. "
           "No function definitions, no prose.")
    return [Message(role="system", content=TEST_WRITING.format(n=n)),
            Message(role="user", content=f"Task:\n{user_content(request)}\n\nSignatures:\n{sig}\n\n{ask}")]


CHOOSE_CALLS = """You decide which action a coding assistant's host should carry out for the user's request. The \
options were built from the request, the files and the answer; you only choose. Answer with the number of the one \
option the request asks for, or none if the request asks for no action (a question, an explanation)."""


def choose_calls(request: PatternRequest, answer: str | None, labels: list[str]) -> list[Message]:
    """The tools model picks one of the candidate actions (numbered) or none; the answer is shown shortened."""
    shown = "" if not answer else f"\n\nAnswer (shortened):\n{answer[:600]}"
    options = "\n".join(f"{n}. {label}" for n, label in enumerate(labels, 1))
    return [Message(role="system", content=CHOOSE_CALLS),
            Message(role="user", content=f"Request:\n{request.prompt}{shown}\n\nOptions:\n{options}\nnone. No "
                                         "action\n\nWhich option?")]
