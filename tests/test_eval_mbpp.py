"""MBPP (sanitized, test split) as an evaluation suite: the data in the project, what the model is shown, the check."""

from __future__ import annotations

import pytest

from orchestration.evaluation import mbpp
from orchestration.evaluation.runner import SYSTEMS, Dataset, EvalConfig, run_eval
from orchestration.evaluation.score import score
from orchestration.checks.sandbox import availability
from orchestration.models.testing import ScriptedBackend, fake_settings

needs_bwrap = pytest.mark.skipif(not availability("bwrap").ok, reason="bubblewrap cannot run here")


def test_the_test_split_is_257_problems_pinned_by_hash() -> None:
    problems = mbpp.load_mbpp()
    assert len(problems) == 257 and all(11 <= p.task_id <= 510 for p in problems)
    assert len({p.id for p in problems}) == 257 and problems[0].id == "Mbpp/11"
    assert "CC BY 4.0" in (mbpp.DATA.parent / "README.md").read_text()


def test_the_model_sees_the_sentence_and_the_signature_never_the_asserts() -> None:
    for p in mbpp.load_mbpp():
        text = mbpp.task_prompt(p)
        assert p.prompt.strip() in text and p.signature in text
        assert "assert" not in text and not any(t in text for t in p.test_list)
    first = mbpp.load_mbpp()[0]
    assert first.signature == "def remove_Occ(s, ch)"


@needs_bwrap
def test_reference_solutions_pass_and_a_wrong_one_fails() -> None:
    p = next(x for x in mbpp.load_mbpp() if x.task_id == 11)
    assert mbpp.check(p, f"```python\n{p.code}\n```").all_passed
    assert not mbpp.check(p, "```python\ndef remove_Occ(s, ch):\n    return s\n```").all_passed
    assert not mbpp.check(p, f"```python\n{p.code}\n", cut_off=True).all_passed  # cut off: never run


@needs_bwrap
@pytest.mark.anyio
async def test_mbpp_systems_run_and_score_beside_humaneval(tmp_path) -> None:
    p = next(x for x in mbpp.load_mbpp() if x.task_id == 11)
    assert {"mbpp-primary", "mbpp-validated", "mbpp-compete", "mbpp-competitor", "mbpp-auto"} <= set(SYSTEMS)
    assert "mbpp-primary-k3" not in SYSTEMS  # no examples in the prompt to group samples by
    fake = ScriptedBackend()
    fake.enqueue(f"```python\n{p.code}\n```", model="primary-model")
    fake.enqueue("```python\ndef remove_Occ(s, ch):\n    return s\n```", model="competitor-model")
    config = EvalConfig(systems=["mbpp-primary", "mbpp-competitor"], limit=1)
    records = await run_eval(config, fake_settings(), tmp_path, Dataset(mbpp=[p]), say=lambda m: None,
                             backends={"mlx": fake})
    asked = fake.history[0].messages[-1].content
    assert asked == mbpp.task_prompt(p) and "assert" not in asked
    results = score(Dataset(mbpp=[p]), records)["mbpp"]
    assert results["canonical_passed"] == 1
    assert results["systems"]["mbpp-primary"]["k"] == 1 and results["systems"]["mbpp-competitor"]["k"] == 0
    assert any(c["a"] == "mbpp-primary" and c["b"] == "mbpp-competitor" for c in results["comparisons"])
