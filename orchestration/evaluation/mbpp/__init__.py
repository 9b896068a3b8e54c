"""MBPP (sanitized): the data set that ships with the project, its task text and its check.

The model sees what a real request gives it: the task sentence and the function's name and parameters, never
the asserts (so tests must be written, as in the patterns). The check runs the problem's asserts in the shared
harness (:mod:`orchestration.checks.harness`), the candidate taken out of the answer by the patterns' own rule.
"""

from __future__ import annotations

import ast
import json
import warnings
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ...checks.harness import HarnessRun, run_checks
from ...checks.sandbox import Limits, SandboxMode
from ...checks.verify import incomplete_code, python_code
from ...core.errors import ConfigError
from ...models.sources import sha256_file

__all__ = ["MbppProblem", "DATA", "SHA256", "load_mbpp", "task_prompt", "check"]

DATA = Path(__file__).with_name("sanitized-mbpp.json")
SHA256 = "7fec016546acaee11dbe14f9f0bb670e59f41919f7b522a59fba34871da78551"
TEST_SPLIT = range(11, 511)  # the paper's test split: task ids 11-510 (257 of the sanitized set)


class MbppProblem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task_id: int
    prompt: str
    code: str
    test_imports: list[str]
    test_list: list[str]

    @property
    def id(self) -> str:
        return f"Mbpp/{self.task_id}"

    @property
    def signature(self) -> str:
        """``def name(params)`` of the function the asserts call (from the reference code, shown to the model)."""
        with warnings.catch_warnings():  # a few asserts and solutions hold regular expressions in plain strings
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            called = {n.func.id for t in self.test_list for n in ast.walk(ast.parse(t))
                      if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            defs = [n for n in ast.parse(self.code).body if isinstance(n, ast.FunctionDef)]
        node = next((d for d in defs if d.name in called), defs[-1])
        return f"def {node.name}({ast.unparse(node.args)})"


@lru_cache(maxsize=1)
def load_mbpp() -> tuple[MbppProblem, ...]:
    """The 257 problems of the test split, checked against the pinned hash."""
    got = sha256_file(DATA)
    if got != SHA256:
        raise ConfigError(f"{DATA} has sha256 {got}, not the pinned {SHA256}; restore the file from git")
    items = [MbppProblem.model_validate(x) for x in json.loads(DATA.read_text())]
    return tuple(p for p in items if p.task_id in TEST_SPLIT)


def task_prompt(problem: MbppProblem) -> str:
    return (f"{problem.prompt.strip()}\n\nWrite it as the Python function `{problem.signature}`. Reply with the whole "
            "function (its imports included) in one ```python code block.")


def check(problem: MbppProblem, answer: str, limits: Limits | None = None, mode: SandboxMode = "auto",
          cut_off: bool = False) -> HarnessRun:
    """Run the problem's asserts against the answer's code; ``.all_passed``: every one passed. An answer
    ``cut_off`` inside its code is never run."""
    why = incomplete_code(answer, cut_off)
    code = None if why else python_code(answer)
    if code is None:
        return HarnessRun(sandbox="none", complete=True, load_error=why or "the answer has no Python code")
    return run_checks(code, problem.test_list, setup="\n".join(problem.test_imports), per_test_s=6.0, limits=limits,
                      mode=mode)
