"""HumanEval: the task text given to a pattern, the candidate module taken from its answer, and its check.

The code comes out of an answer by the patterns' own rule (:func:`orchestration.checks.verify.python_code`) and is
checked by the patterns' own harness (:mod:`orchestration.checks.harness`): the candidate in a worker process, the
problem's ``check`` run by the supervisor against it, so an exit status, a printed line or an object that
equals everything passes nothing.
"""

from __future__ import annotations

import re

from ..checks.harness import HarnessRun, run_checks
from ..checks.sandbox import Limits, SandboxMode
from ..checks.verify import incomplete_code, python_code
from .data import HumanEvalProblem

__all__ = ["task_prompt", "candidate_module", "check", "normalize_code"]


def task_prompt(problem: HumanEvalProblem) -> str:
    return ("Complete the following Python function. Reply with the whole function (its imports included) "
            "in one ```python code block.\n\n```python\n" + problem.prompt.rstrip() + "\n```")


def candidate_module(problem: HumanEvalProblem, answer: str) -> str | None:
    """The candidate as a module: the problem's prompt (imports, helpers, the stub) then the answer's code, whose
    definition of the entry point replaces the stub; None when the answer has no Python code."""
    code = python_code(answer)
    if code is None:
        return None
    return problem.prompt + "    pass\n\n" + code


def check(problem: HumanEvalProblem, answer: str, limits: Limits | None = None, mode: SandboxMode = "auto",
          cut_off: bool = False) -> HarnessRun:
    """Run the problem's ``check`` against the answer's code in the harness; ``.all_passed``: every test passed.
    An answer ``cut_off`` inside its code is never run."""
    limits = limits or Limits()
    why = incomplete_code(answer, cut_off)
    module = None if why else candidate_module(problem, answer)
    if module is None:
        return HarnessRun(sandbox="none", complete=True, load_error=why or "the answer has no Python code")
    setup = problem.prompt + "    pass\n\n" + problem.test  # trusted: the data set's helpers and check()
    return run_checks(module, [f"check({problem.entry_point})"], setup=setup, bind=[problem.entry_point],
                      per_test_s=max(1.0, limits.timeout_s - 2.0), limits=limits, mode=mode)


def normalize_code(answer: str) -> str:
    """The code with comments, blank lines and trailing spaces removed: what a majority vote compares."""
    lines = []
    for line in (python_code(answer) or answer).splitlines():
        line = re.sub(r"\s+#.*$", "", line).rstrip()
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines)
