"""The one test harness the patterns and the evaluation's scorers share: a pass that candidate code cannot fake.

Inside the sandbox a trusted *supervisor* (``supervisor.py``) runs the tests and a separate *worker* process
(``worker.py``) holds the candidate's code; the tests reach the candidate's functions through proxies, results
come back as plain data (exact built-in types; anything else is an opaque handle equal only to itself), and
every comparison is made by the supervisor. Its verdict leaves through a pipe only it holds. So a candidate
that prints a fake result, exits with status 0 (``sys.exit``, ``os._exit``, an ``atexit`` hook), patches the
test list or ``json``, or returns an object whose ``__eq__`` is always true fails the tests it did not pass.
Any timeout, kill, output overflow, non-zero exit of the supervisor, or a result that does not parse is a
failed run (``complete`` False), never an exception.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..sandbox import Limits, SandboxMode, run_python

__all__ = ["CheckOutcome", "HarnessRun", "run_checks"]

_HERE = Path(__file__).parent


class CheckOutcome(BaseModel):
    """One test: passed or why not; for ``assert X == Y`` what X was and what was expected."""

    model_config = ConfigDict(extra="ignore")
    passed: bool
    error: str | None = None
    call: str | None = Field(None, description="X of `assert X == Y`")
    expected: str | None = Field(None, description="repr of Y")
    got: str | None = Field(None, description="repr of X's value")
    raised: str | None = Field(None, description="the exception X raised instead")


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    load_error: str | None
    tests: list[CheckOutcome]


class HarnessRun(BaseModel):
    """What the harness found. ``complete`` False: the run itself failed (count every test as failed)."""

    sandbox: str
    complete: bool
    load_error: str | None = None
    tests: list[CheckOutcome] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def all_passed(self) -> bool:
        return self.complete and self.load_error is None and bool(self.tests) and all(t.passed for t in self.tests)


@lru_cache(maxsize=1)
def _sources() -> tuple[str, str]:
    return (_HERE / "supervisor.py").read_text(), (_HERE / "worker.py").read_text()


def run_checks(candidate: str, tests: list[str], *, setup: str = "", bind: list[str] | None = None,
               per_test_s: float = 3.0, limits: Limits | None = None, mode: SandboxMode = "auto") -> HarnessRun:
    """Load ``candidate`` (module source) in the worker and run each of ``tests`` (statements, trusted) in the
    supervisor after ``setup`` (trusted source: imports, helpers). ``bind``: the candidate's names the tests see
    (None: all it defines that ``setup`` does not)."""
    supervisor, worker = _sources()
    job = {"candidate": candidate, "tests": list(tests), "setup": setup, "bind": bind, "per_test_s": per_test_s,
           "worker": worker}
    budget = limits or Limits(timeout_s=min(120.0, 5.0 + (per_test_s + 0.5) * (len(tests) + 1)))
    # The job (tests and expected values included) travels as a descriptor the supervisor reads and closes before
    # the worker starts: no file in the sandbox holds it, so the candidate cannot look the answers up.
    res = run_python(f"{supervisor}\n\nmain()\n", limits=budget, mode=mode, channel=True,
                     data=json.dumps(job).encode())
    why = ("timed out" if res.timed_out else f"killed ({res.killed_reason})" if res.killed_reason
           else f"exit status {res.exit_status}" if res.exit_status != 0 else None)
    report = None
    if why is None:
        try:
            report = _Report.model_validate_json(res.channel or "")
        except ValidationError:
            why = "no readable result"
    if report is None or len(report.tests) > len(tests) or (report.load_error is None and len(report.tests) != len(tests)):
        tail = res.stderr.strip().splitlines()[-1:] or [""]
        return HarnessRun(sandbox=res.kind, complete=False, seconds=res.seconds,
                          load_error=f"the tests did not finish ({why or 'a malformed result'}) {tail[0][:300]}".strip())
    return HarnessRun(sandbox=res.kind, complete=True, load_error=report.load_error, tests=report.tests,
                      seconds=res.seconds)
