"""deadline_s: every pattern returns by then with the best it has, marked partial; the next call works."""

from __future__ import annotations

import time

import pytest

from orchestration.patterns.engine import Engine
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings
from orchestration.core.types import PatternRequest

P, C, V = FAKE_MODELS["primary"], FAKE_MODELS["competitor"], FAKE_MODELS["validator"]
CODE = "```python\ndef add(a, b):\n    return a + b\n```"
pytestmark = pytest.mark.anyio


def make(**kw) -> tuple[Engine, ScriptedBackend]:  # noqa: ANN003
    fake = ScriptedBackend()
    return Engine(fake_settings(**kw), {"mlx": fake}), fake


async def test_hybrid_returns_the_answer_when_the_chooser_runs_past_the_deadline() -> None:
    engine, fake = make()
    fake.enqueue("```bash\npip install requests\n```", model=P)
    fake.enqueue("1", model=FAKE_MODELS["tools"], delay=1.0)  # 1 s for its one chunk: past the 1.2 s deadline
    t0 = time.monotonic()
    r = await engine.run("hybrid", PatternRequest(prompt="I want to fetch web pages", deadline_s=1.2))
    assert time.monotonic() - t0 < 1.2
    assert r.partial and r.text.startswith("```bash") and r.tool_calls == []
    assert "choose tool calls" in r.skipped[0] and "the answer" in r.skipped[1]
    fake.enqueue("ok", model=P)
    assert (await engine.run("primary", PatternRequest(prompt="again"))).text == "ok"  # the next call works


async def test_validated_returns_the_first_tested_answer_with_its_verdict() -> None:
    engine, fake = make()
    fake.enqueue("```python\ndef add(a, b):\n    return a - b\n```", model=P)
    fake.enqueue("FAIL: returns the difference", model=V)
    fake.enqueue(CODE, model=P, delay=1.0)  # the revision does not finish in time
    r = await engine.run("validated", PatternRequest(prompt="Write add(a, b)", verify="model", deadline_s=1.5))
    assert r.partial and "a - b" in r.text
    assert [v.verdict for v in r.trace.verdicts] == ["FAIL"]
    assert "verdict: FAIL" in r.skipped[1]


async def test_compete_returns_a_finished_candidate_when_judging_runs_late() -> None:
    engine, fake = make(verify="model")
    fake.enqueue("A's answer", model=P).enqueue("B's answer", model=C)
    fake.enqueue("YES", model=V, delay=1.0)
    r = await engine.run("compete", PatternRequest(prompt="Explain sorting", deadline_s=1.0))
    assert r.partial and r.text == "A's answer" and "judge" in r.skipped[0]


async def test_nothing_finished_gives_an_empty_partial_result_that_says_so() -> None:
    engine, fake = make()
    fake.enqueue("slow", model=P, delay=1.5)  # its one chunk would come after the deadline
    r = await engine.run("primary", PatternRequest(prompt="x", deadline_s=0.9))
    assert r.partial and r.text == "" and "no answer had finished" in r.skipped[1]


async def test_the_settings_deadline_applies_and_a_calls_own_wins() -> None:
    engine, fake = make(deadline_s=0.8)
    fake.enqueue("late", model=P, delay=0.5)
    assert (await engine.run("primary", PatternRequest(prompt="x"))).partial
    fake.enqueue("in time", model=P, delay=0.5)
    r = await engine.run("primary", PatternRequest(prompt="x", deadline_s=30))
    assert not r.partial and r.text == "in time"


async def test_an_answer_cut_by_the_deadline_is_returned_as_far_as_it_got_and_never_written() -> None:
    engine, fake = make()
    answer = "```python\ndef is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n```"
    fake.enqueue(answer, model=P, delay=0.2)  # a word every 0.2 s: about half of it by the deadline
    r = await engine.run("hybrid", PatternRequest(prompt="Write is_prime and save it to prime.py", deadline_s=1.2))
    assert r.partial and r.text and answer.startswith(r.text) and r.text != answer
    assert r.tool_calls == [] and r.cut_off and "as far as it got" in r.skipped[1]
