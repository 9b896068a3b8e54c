"""HumanEval: the task text given to a pattern, the code taken from its answer, the program that checks it."""

from __future__ import annotations

import re

from ..sandbox import Limits, SandboxMode, SandboxResult, run_python
from .data import HumanEvalProblem

__all__ = ["task_prompt", "extract_code", "program", "check", "normalize_code"]

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def task_prompt(problem: HumanEvalProblem) -> str:
    return ("Complete the following Python function. Reply with the whole function (its imports included) "
            "in one ```python code block.\n\n```python\n" + problem.prompt.rstrip() + "\n```")


def extract_code(answer: str) -> str:
    """The answer's code: the first fenced block holding a ``def`` (else the first block; an unclosed block
    runs to the end), or the whole answer where it has no fence."""
    blocks = _FENCE.findall(answer)
    for block in blocks:
        if re.search(r"^\s*def\s", block, re.MULTILINE):
            return block
    return blocks[0] if blocks else answer


def program(problem: HumanEvalProblem, answer: str) -> str:
    """The checking program: the problem's prompt (imports, helpers, signature), then the candidate, then the
    tests. A candidate that defines the entry point replaces the prompt's stub; one that does not is read as
    the body that continues the prompt."""
    code = extract_code(answer)
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE):
        body = problem.prompt + "    pass\n\n" + code
    else:
        body = problem.prompt + code
    return f"{body}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def check(problem: HumanEvalProblem, answer: str, limits: Limits | None = None,
          mode: SandboxMode = "auto") -> SandboxResult:
    """Run the checking program in the sandbox; ``.passed``: every test passed within the limits."""
    return run_python(program(problem, answer), limits=limits, mode=mode)


def normalize_code(answer: str) -> str:
    """The code with comments, blank lines and trailing spaces removed: what a majority vote compares."""
    lines = []
    for line in extract_code(answer).splitlines():
        line = re.sub(r"\s+#.*$", "", line).rstrip()
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines)
