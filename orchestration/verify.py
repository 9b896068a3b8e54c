"""Execution-grounded verification: tests run against the candidate's code in the sandbox.

Tests come from the host (``tests``, or ``assert`` lines and ``>>>`` examples in the prompt or context),
else the validator writes a handful of ``assert`` lines from the request alone (it sees the candidate's
function signatures, never its body, so it cannot copy its bugs). The candidate runs isolated
(:mod:`orchestration.sandbox`: bubblewrap on Linux, sandbox-exec on macOS): this is the model's own code,
never a host tool call. A failing *generated* test may be wrong itself: the validator is asked whether
the code or the test is at fault, and a test it blames is set aside (reported, never hidden).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Literal

from .sandbox import Limits, SandboxMode, resolve, run_python
from .errors import ConfigError
from .tools.grounding import code_blocks
from .types import Execution, TestOutcome

__all__ = ["python_code", "syntax_problem", "signatures", "host_tests", "parse_tests",
           "run_tests", "sandbox_problem"]

Origin = Literal["host", "example", "validator"]
MAX_TESTS = 8
_SENTINEL = "@@MAGEAGENT-TESTS@@"
_DOCTEST = re.compile(r"^\s*>>> (.+)\n\s*(?!>>>)(\S.*)$", re.M)


def _is_program(block: str) -> bool:
    try:
        tree = ast.parse(block)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                              ast.Assign)) for n in tree.body)


def python_code(text: str) -> str | None:
    """The answer's Python: its fenced blocks that parse as a program, joined; or the whole text if it is one."""
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


def _statement(line: str) -> str | None:
    line = line.strip()
    if not line.startswith("assert "):
        return None
    try:
        tree = ast.parse(line)
    except SyntaxError:
        return None
    return line if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert) else None


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


def host_tests(prompt: str, context: str | None, given: list[str] | None) -> list[tuple[str, Origin]]:
    """Tests the host supplied: ``given``, then ``assert`` lines and ``>>>`` examples in the prompt or context."""
    text = prompt + "\n" + (context or "")
    found: dict[str, Origin] = {}
    for t in given or []:
        for stmt in parse_tests(t) or [t]:
            found.setdefault(stmt, "host")
    for stmt in parse_tests(text):
        found.setdefault(stmt, "host")
    for stmt in _examples(text):
        found.setdefault(stmt, "example")
    return list(found.items())[:MAX_TESTS]


_HARNESS = '''
import ast, contextlib, io, json, signal, sys
CODE = {code!r}
TESTS = {tests!r}
def _alarm(signum, frame):
    raise TimeoutError("the test ran past {per_test}s")
signal.signal(signal.SIGALRM, _alarm)
ns = {{"__name__": "candidate"}}
out = {{"load_error": None, "tests": []}}
def _actual(test):
    # For `assert X == Y`, what X was: the feedback a revision needs.
    node = ast.parse(test).body[0].test
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return repr(eval(compile(ast.Expression(node.left), "test", "eval"), ns))[:300]
        except BaseException as e:
            return None
    return None
try:
    signal.alarm({per_test})
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(CODE, "candidate.py", "exec"), ns)
    signal.alarm(0)
except BaseException as e:
    signal.alarm(0)
    out["load_error"] = (type(e).__name__ + ": " + str(e))[:500]
else:
    for t in TESTS:
        try:
            signal.alarm({per_test})
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(t, "test", "exec"), ns)
            signal.alarm(0)
            out["tests"].append([True, None])
        except BaseException as e:
            signal.alarm(0)
            msg = type(e).__name__ + (": " + str(e) if str(e) else "")
            if isinstance(e, AssertionError):
                got = _actual(t)
                if got is not None:
                    msg = "got " + got
            out["tests"].append([False, msg[:500]])
sys.stdout.write("\\n{sentinel}" + json.dumps(out) + "\\n")
'''


def sandbox_problem(mode: SandboxMode) -> str | None:
    """Why code cannot be executed here (None when a sandbox of ``mode`` is available)."""
    try:
        resolve(mode)
    except ConfigError as e:
        return str(e)
    return None


def run_tests(code: str, tests: list[tuple[str, Origin]], *, mode: SandboxMode = "auto",
              per_test_s: int = 3, limits: Limits | None = None) -> Execution:
    """Run ``code`` then each test in one sandboxed process; each test's outcome and error."""
    script = _HARNESS.format(code=code, tests=[t for t, _ in tests], per_test=per_test_s, sentinel=_SENTINEL)
    budget = limits or Limits(timeout_s=min(60.0, 5.0 + per_test_s * (len(tests) + 1)))
    res = run_python(script, limits=budget, mode=mode)
    marker = res.stdout.rfind(_SENTINEL)
    if marker < 0:
        why = "timed out" if res.timed_out else (res.killed_reason or f"exit status {res.exit_status}")
        tail = res.stderr.strip().splitlines()[-1:] or [""]
        return Execution(sandbox=res.kind, load_error=f"the program did not finish ({why}) {tail[0][:300]}".strip(),
                         seconds=res.seconds)
    data = json.loads(res.stdout[marker + len(_SENTINEL):].strip().splitlines()[0])
    outcomes = [TestOutcome(test=t, origin=o, passed=ok, error=err)
                for (t, o), (ok, err) in zip(tests, data["tests"])]
    return Execution(sandbox=res.kind, tests=outcomes, load_error=data["load_error"], seconds=res.seconds)
