"""The shared test harness: a wrong candidate cannot make itself pass, in the patterns' runner or the scorers.

Each probe is a wrong ``add`` (it subtracts) dressed up with one trick from the security review (issue 26 section
1). Every probe must fail the test it does not pass, in ``verify.run_tests`` (the patterns) and in the HumanEval
scorer, and a malformed result must be a failed run, never an exception. They need bubblewrap (skipped with the
reason where it cannot run).
"""

from __future__ import annotations

import pytest

from orchestration.checks import harness
from orchestration.evaluation import humaneval
from orchestration.evaluation.data import HumanEvalProblem
from orchestration.checks.sandbox import Limits, SandboxResult, availability
from orchestration.checks.verify import run_tests

BWRAP = availability("bwrap")
needs_bwrap = pytest.mark.skipif(not BWRAP.ok, reason=f"bubblewrap cannot run here: {BWRAP.reason}")

WRONG = "def add(a, b):\n    return a - b\n"
MARK = '@@MAGEAGENT-TESTS@@{"load_error": null, "tests": [[true, null], [true, null]]}'
FLOOD = "import sys\nsys.stdout.write('x' * 5_000_000)\n"
PROBES = {
    "prints a fake marker": WRONG + f"print({MARK!r})\n",
    "marker from an atexit hook": WRONG + f"import atexit\natexit.register(lambda: print({MARK!r}))\n",
    "marker then os._exit(0)": f"import os\ndef add(a, b):\n    print({MARK!r}, flush=True)\n    os._exit(0)\n",
    "marker then hangs": f"def add(a, b):\n    print({MARK!r}, flush=True)\n    while True:\n        pass\n",
    "marker then floods": f"def add(a, b):\n    print({MARK!r}, flush=True)\n    {FLOOD!r}\n" + FLOOD,
    "rewrites the harness's tests": WRONG + "import sys\nm = sys.modules['__main__']\n"
                                            "for k in ('TESTS', 'tests'):\n    setattr(m, k, [])\n",
    "replaces builtins.exec": WRONG + "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "patches json.dumps": WRONG + "import json\njson.dumps = lambda *a, **k: " + repr(MARK[19:]) + "\n",
    "always-equal object": "class E:\n    def __eq__(self, o):\n        return True\n"
                           "def add(a, b):\n    return E()\n",
    "int subclass equal to all": "class I(int):\n    def __eq__(self, o):\n        return True\n"
                                 "def add(a, b):\n    return I(0)\n",
    "sys.exit(0) in the call": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "os._exit(0) in the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "sys.exit(0) when loaded": WRONG + "import sys\nsys.exit(0)\n",
    "atexit exits 0": WRONG + "import atexit, os\natexit.register(lambda: os._exit(0))\n",
    "writes to every descriptor": WRONG + "import os\nfor fd in range(3, 64):\n    try:\n"
                                          f"        os.write(fd, {MARK.encode()!r})\n    except OSError:\n"
                                          "        pass\n",
    "writes to its parent's descriptors": WRONG + "import os\nfor fd in range(0, 64):\n    try:\n"
                                                  "        with open(f'/proc/{os.getppid()}/fd/{fd}', 'w') as f:\n"
                                                  f"            f.write({MARK!r})\n    except OSError:\n"
                                                  "        pass\n",
    "kills its parent": WRONG + "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "looks the answers up": (
        "import glob, os, re\n"
        "def add(a, b):\n"
        "    paths = glob.glob('/sandbox/*') + glob.glob('/tmp/*') + [f'/proc/{os.getppid()}/{n}' for n in\n"
        "             ('cmdline', 'environ')] + glob.glob(f'/proc/{os.getppid()}/fd/*')\n"
        "    for path in paths:\n"
        "        try:\n"
        "            with open(path, errors='replace') as f:\n"
        "                found = re.search(rf'add\\({a}, {b}\\) == (\\d+)', f.read(1 << 20))\n"
        "        except OSError:\n"
        "            continue\n"
        "        if found:\n"
        "            return int(found.group(1))\n"
        "    return a - b\n"),
}
TESTS = [("assert add(1, 2) == 3", "host"), ("assert add(2, 2) == 4", "host")]
_P = HumanEvalProblem(task_id="T/add", prompt='def add(a, b):\n    """Return a + b."""\n', entry_point="add",
                      canonical_solution="    return a + b\n",
                      test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n")


@needs_bwrap
def test_a_right_candidate_passes_both() -> None:
    good = "def add(a, b):\n    return a + b\n"
    assert run_tests(good, TESTS).all_passed
    assert humaneval.check(_P, f"```python\n{good}```", Limits(timeout_s=5)).all_passed


@needs_bwrap
@pytest.mark.parametrize("name", list(PROBES))
def test_a_wrong_candidate_cannot_fake_a_pass(name: str) -> None:
    code = PROBES[name]
    ex = run_tests(code, TESTS, per_test_s=1)
    assert not ex.all_passed and ex.passed < 2, (name, ex)
    scored = humaneval.check(_P, f"```python\n{code}```", Limits(timeout_s=4))
    assert not scored.all_passed, (name, scored)


@needs_bwrap
def test_an_always_equal_object_fails_with_what_it_was() -> None:
    ex = run_tests(PROBES["always-equal object"], TESTS[:1])
    t = ex.tests[0]
    assert not t.passed and t.call == "add(1, 2)" and t.expected == "3" and "E object" in t.got


@needs_bwrap
def test_plain_data_of_every_builtin_kind_crosses_and_compares() -> None:
    code = ("def f():\n    return [1, 2.5, 'x', None, True, (1, 2), {'k': {3}}, frozenset({4}), b'ab', 1j, "
            "float('inf')]\n")
    want = "[1, 2.5, 'x', None, True, (1, 2), {'k': {3}}, frozenset({4}), b'ab', 1j, float('inf')]"
    assert run_tests(code, [(f"assert f() == {want}", "host")]).all_passed


@pytest.mark.parametrize("channel", ["", "garbage", '{"load_error": null}', '{"load_error": null, "tests": 3}',
                                     '{"load_error": null, "tests": [{"passed": true}, {"passed": true}, '
                                     '{"passed": true}]}', "[1, 2]"])
def test_a_malformed_result_is_a_failed_run_never_an_exception(monkeypatch: pytest.MonkeyPatch,
                                                                 channel: str) -> None:
    def fake_run(code, *, limits=None, mode="auto", channel_=None, **kw):  # noqa: ANN001, ANN202
        return SandboxResult(kind="bwrap", exit_status=0, seconds=0.1, channel=channel)

    monkeypatch.setattr(harness, "run_python", fake_run)
    got = harness.run_checks(WRONG, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert not got.complete and not got.all_passed and "did not finish" in got.load_error
    ex = run_tests(WRONG, TESTS)
    assert ex.load_error is not None and not ex.all_passed and ex.passed == 0


@pytest.mark.parametrize("status, reason", [(1, None), (0, "timeout"), (0, "output_limit"), (-9, "signal")])
def test_a_result_from_a_run_that_did_not_end_cleanly_is_not_believed(monkeypatch: pytest.MonkeyPatch, status: int,
                                                                       reason: str | None) -> None:
    good = '{"load_error": null, "tests": [{"passed": true}]}'

    def fake_run(code, **kw):  # noqa: ANN001, ANN003, ANN202
        return SandboxResult(kind="bwrap", exit_status=status, seconds=0.1, channel=good, killed_reason=reason,
                             timed_out=reason == "timeout")

    monkeypatch.setattr(harness, "run_python", fake_run)
    assert not harness.run_checks(WRONG, ["assert add(1, 2) == 3"]).all_passed


@needs_bwrap
def test_objects_stay_with_the_candidate_and_are_reached_through_proxies() -> None:
    code = ("class P:\n    def __init__(self, x):\n        self.x = x\n"
            "def make(n):\n    return [P(i) for i in range(n)]\n"
            "def gen(n):\n    for i in range(n):\n        yield P(i)\n"
            "class E:\n    def __eq__(self, o):\n        return True\n"
            "def sneaky():\n    return [E()]\n"
            "LIMIT = 10\n")
    tests = ["assert len(make(3)) == 3", "assert make(3)[2].x == 2", "assert [p.x for p in gen(3)] == [0, 1, 2]",
             "assert LIMIT == 10", "assert sneaky() == [3]"]
    ex = run_tests(code, [(t, "host") for t in tests])
    assert [t.passed for t in ex.tests] == [True, True, True, True, False]
    assert ex.tests[-1].got == "[<candidate's E object>]"  # an always-equal object inside a list fails too
