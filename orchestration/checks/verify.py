"""Execution-grounded verification: tests run against the candidate's code in the sandbox.

Tests come from the host (``tests``, or ``assert`` lines and ``>>>`` examples in the prompt; in the context
only when the host says so),
else the validator writes a handful of ``assert`` lines from the request alone (it sees the candidate's
function signatures, never its body, so it cannot copy its bugs). The candidate runs isolated
(:mod:`orchestration.checks.sandbox`: bubblewrap on Linux, sandbox-exec on macOS): this is the model's own code,
never a host tool call. A failing *generated* test may be wrong itself: one that two independent answers both
fail is set aside (reported, never hidden) by the patterns that have two answers (validated, compete).
"""

from __future__ import annotations

import ast
import re
import sys
from typing import Literal

from ..core.errors import ConfigError
from ..core.types import Execution, TestOutcome
from ..tools.grounding import code_blocks
from .harness import run_checks
from .sandbox import Limits, SandboxMode, resolve

__all__ = ["python_code", "syntax_problem", "signatures", "host_tests", "parse_tests",
           "run_tests", "sandbox_problem", "incomplete_code", "same_code"]

# host: the ``tests`` argument or the prompt; example: a ``>>>`` example in the prompt; context: from the context,
# taken only when the host asked for it; validator: written by the validator model.
Origin = Literal["host", "example", "context", "validator"]
MAX_TESTS = 8
_DOCTEST = re.compile(r"^\s*>>> (.+)\n\s*(?!>>>)(\S.*)$", re.M)


def _is_program(block: str) -> bool:
    try:
        tree = ast.parse(block)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                              ast.Assign)) for n in tree.body)


def python_code(text: str) -> str | None:
    """The answer's Python: its fenced blocks that parse as a program, joined; or the whole text if it is one.
    The one rule for the code to run, in the patterns and the evaluation's scorers alike."""
    blocks = [b for b in code_blocks(text) if _is_program(b)]
    if blocks:
        return "\n\n".join(b.rstrip("\n") for b in blocks) + "\n"
    return text if _is_program(text) else None


def syntax_problem(text: str) -> str | None:
    """Why the answer's Python does not parse, when it has a fenced block meant as Python (tagged python/py,
    or holding a ``def``/``class``) and none of its blocks is a program; None otherwise."""
    if python_code(text) is not None:
        return None
    for block in code_blocks(text):
        if not re.search(r"^\s*(def|class)\s", block, re.M) and "```py" not in text:
            continue
        try:
            ast.parse(block)
        except SyntaxError as e:
            return f"the code does not parse: {e.msg} (line {e.lineno}); it may be cut off: give the complete code"
    return None


def signatures(code: str) -> list[str]:
    """The top-level ``def``/``class`` lines of ``code`` (what generated tests may call)."""
    out = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(f"def {node.name}({ast.unparse(node.args)})")
        elif isinstance(node, ast.ClassDef):
            out.append(f"class {node.name}")
    return out


# A test line runs on the harness's trusted side: it may call and compare, not reach for the process itself.
_FORBIDDEN = frozenset({"__import__", "exec", "eval", "compile", "open", "globals", "locals", "vars", "getattr",
                        "setattr", "delattr", "breakpoint", "input", "exit", "quit", "help", "memoryview"})


def _statement(line: str) -> str | None:
    line = line.strip()
    if not line.startswith("assert "):
        return None
    try:
        tree = ast.parse(line)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and (node.id in _FORBIDDEN or node.id.startswith("__"))) or \
                (isinstance(node, ast.Attribute) and node.attr.startswith("_")) or isinstance(node, ast.Lambda):
            return None
    return line


def parse_tests(text: str) -> list[str]:
    """The well-formed one-line ``assert`` statements in ``text``, deduplicated, at most MAX_TESTS."""
    seen: dict[str, None] = {}
    for line in text.replace("```python", "\n").replace("```", "\n").splitlines():
        if (stmt := _statement(line)) is not None:
            seen.setdefault(stmt)
    return list(seen)[:MAX_TESTS]


def _examples(text: str) -> list[str]:
    out = []
    for call, expected in _DOCTEST.findall(text):
        stmt = f"assert {call.strip()} == {expected.strip()}"
        if _statement(stmt) is not None:
            out.append(stmt)
    return out


def host_tests(prompt: str, context: str | None, given: list[str] | None, *,
               context_tests: bool = False) -> list[tuple[str, Origin]]:
    """Tests the host meant: ``given`` (the ``tests`` argument), then ``assert`` lines and ``>>>`` examples in the
    prompt; those in ``context`` only when the host says so (``context_tests``): a context is material to work
    on, and an ``assert`` in it is no statement of what the answer must do. Each test comes with its origin."""
    found: dict[str, Origin] = {}
    for t in given or []:
        for stmt in parse_tests(t) or [t]:
            found.setdefault(stmt, "host")
    for stmt in parse_tests(prompt):
        found.setdefault(stmt, "host")
    for stmt in _examples(prompt):
        found.setdefault(stmt, "example")
    if context_tests and context:
        for stmt in parse_tests(context) + _examples(context):
            found.setdefault(stmt, "context")
    return list(found.items())[:MAX_TESTS]


def sandbox_problem(mode: SandboxMode) -> str | None:
    """Why code cannot be executed here (None when a sandbox of ``mode`` is available)."""
    try:
        resolve(mode)
    except ConfigError as e:
        return str(e)
    return None


def _imports(code: str) -> str:
    """The candidate's top-level imports of standard modules, for the tests' side (``assert f(math.pi) == ...``);
    each guarded, so a module missing here fails no run."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ""
    out = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if all(n.split(".")[0] in sys.stdlib_module_names for n in names):
            out.append(f"try:\n    {ast.unparse(node)}\nexcept Exception:\n    pass\n")
    return "".join(out)


def run_tests(code: str, tests: list[tuple[str, Origin]], *, mode: SandboxMode = "auto",
              per_test_s: int = 3, limits: Limits | None = None) -> Execution:
    """Run each test against ``code`` in the shared harness (``orchestration.checks.harness``: the candidate in its own
    process, the tests and the verdict out of its reach); each test's outcome, input, expected value and result."""
    run = run_checks(code, [t for t, _ in tests], setup=_imports(code), per_test_s=per_test_s, limits=limits,
                     mode=mode)
    if not run.complete or run.load_error is not None:
        return Execution(sandbox=run.sandbox, load_error=run.load_error, seconds=run.seconds)
    outcomes = [TestOutcome(test=t, origin=o, passed=c.passed, error=c.error, call=c.call, expected=c.expected,
                            got=c.got, raised=c.raised)
                for (t, o), c in zip(tests, run.tests)]
    return Execution(sandbox=run.sandbox, tests=outcomes, seconds=run.seconds)


def _open_fence(text: str) -> bool:
    """``text`` ends inside a fenced block (its last fence line opens one)."""
    inside = False
    for line in text.splitlines():
        if re.match(r"^\s*(```|~~~)", line):
            inside = not inside
    return inside


def incomplete_code(text: str, cut_off: bool) -> str | None:
    """Why code cut off at the token budget must not run as if complete (None when it is complete): the answer
    stopped inside a code block, or it is bare code. An answer cut off in prose after its blocks keeps them."""
    if not cut_off:
        return None
    if _open_fence(text) or not code_blocks(text):
        return "the answer was cut off at its token budget inside its code: the code is incomplete and was not run"
    return None


def same_code(a: str, b: str) -> bool:
    """Two answers carry the same code once whitespace is normalised (a revision that changed nothing)."""
    def norm(text: str) -> str:
        return " ".join((python_code(text) or text).split())

    return norm(a) == norm(b)
