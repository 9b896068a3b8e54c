"""The evaluation runner and scorer over the scripted fake: records, resume, re-score, A/B/judge/oracle, BFCL."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from orchestration.faces import cli
from orchestration.core.errors import ConfigError
from orchestration.evaluation.data import load_bfcl, load_humaneval
from orchestration.evaluation.runner import Dataset, EvalConfig, read_records, run_eval
from orchestration.evaluation.score import score
from orchestration.models.testing import ScriptedBackend, fake_settings

pytestmark = pytest.mark.anyio


def _code(answer: str) -> str:
    return f"Here it is:\n```python\n{answer}```\n"


@pytest.fixture
def data(eval_cache):
    problem = load_humaneval(eval_cache, download=False)[0]  # has_close_elements
    simple = [i for i in load_bfcl(eval_cache, "simple_python", download=False) if i.id == "simple_python_0"]
    irrelevant = [i for i in load_bfcl(eval_cache, "irrelevance", download=False) if i.id == "irrelevance_0"]
    return Dataset(humaneval=[problem], bfcl=simple + irrelevant)


def _script(problem, systems: tuple[str, ...] = ("he-primary", "he-validated-model", "he-validated",  # noqa: ANN001
                                                  "he-compete-judge", "he-compete", "he-primary-k3")) -> ScriptedBackend:
    good = _code(problem.prompt + problem.canonical_solution)
    bad = _code(f"def {problem.entry_point}(numbers, threshold):\n    return False\n")
    also_bad = _code(f"def {problem.entry_point}(numbers, threshold):\n    # comment\n    return False\n")
    P, C, V = "primary-model", "competitor-model", "validator-model"
    plan = {
        "he-primary": [(good, P)],
        "he-validated-model": [(bad, P), ("FAIL: always False", V), (good, P), ("PASS", V)],
        "he-validated": [(bad, P), (good, C)],  # the prompt's >>> examples fail the first answer: the 1.5B's own
        "he-compete-judge": [(good, P), (bad, C), ("NO", V), ("YES", V)],  # each scored alone: B, wrongly
        "he-compete": [(good, P), (bad, C)],  # the tests decide: no judge
        "he-primary-k3": [(bad, P), (good, P), (also_bad, P)],  # the majority (bad, same code) fails, one passes
    }
    f = ScriptedBackend()
    for name in systems:
        for text, model in plan[name]:
            f.enqueue(text, model=model)
    call = [{"tool": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}]
    f.enqueue(call, model="tools-model")  # bfcl-tools on simple_python_0
    f.enqueue("Sure! " + json.dumps(call[0]) + " is the call.", model="tools-model")  # bfcl-tools-free: lenient
    # bfcl-tools on irrelevance_0: no call, decided by the relevance gate without a model step
    f.enqueue("I cannot compute that.", model="tools-model")  # bfcl-tools-free: no JSON at all
    return f


CONFIG = EvalConfig(systems=["he-primary", "he-validated-model", "he-validated", "he-compete-judge", "he-compete",
                             "he-primary-k3", "bfcl-tools", "bfcl-tools-free"], limit=1)


async def test_run_records_every_output_and_scores_them(data, tmp_path):
    fake = _script(data.humaneval[0])
    records = await run_eval(CONFIG, fake_settings(), tmp_path, data, say=lambda m: None, backends={"mlx": fake})
    assert not fake.replies, "every scripted reply was used"
    assert len(records) == 1 + 1 + 1 + 1 + 1 + 3 + 2 + 2
    lines = read_records(tmp_path / "records.jsonl")
    assert lines == records
    free_fail = next(r for r in records if r["system"] == "bfcl-tools-free" and r["item"] == "irrelevance_0")
    assert free_fail["error"] and free_fail["raw"] == "I cannot compute that." and free_fail["text"] is None
    compete = next(r for r in records if r["system"] == "he-compete-judge")
    assert compete["judgement"]["pick"] == "B" and len(compete["judgement"]["verdicts"]) == 2
    by_tests = next(r for r in records if r["system"] == "he-compete")["judgement"]
    assert by_tests["method"] == "tests" and by_tests["pick"] == "A" and by_tests["verdicts"] == []

    results = score(data, records)
    assert results["humaneval"]["canonical_passed"] == 1
    he = results["humaneval"]["systems"]
    assert he["he-primary"]["k"] == 1 and he["he-validated-model"]["k"] == 1
    assert he["he-validated"]["k"] == 1  # the prompt's examples failed the first answer; the competitor's passed
    assert he["he-compete-judge"]["k"] == 0  # the judge picked the wrong one ...
    assert (he["he-compete-judge:A"]["k"], he["he-compete-judge:B"]["k"]) == (1, 0)
    assert he["he-compete"]["k"] == 1  # ... the tests did not
    # judge = stronger, from the same records: where the tests decide it is their pick, not B's (B is wrong here)
    assert he["he-compete:ties-to-B"]["k"] == 1 and he["he-compete:B"]["k"] == 0
    assert "he-compete-judge:ties-to-B" not in he  # no test ran there: it would be the B column
    from orchestration.evaluation.routing import figures  # auto's route reads the derived row (no rates: wall)

    assert {f.pattern: f.passed for f in figures(results, derived={"compete": "ties-to-B"})} == {
        "primary": 1, "validated": 1, "compete": 1}
    # the two always-False samples behave alike on the examples: the larger group (wrong) wins the vote
    assert he["he-primary-k3"]["k"] == 0 and he["he-primary-k3:oracle"]["k"] == 1
    assert he["he-primary-k3:code-majority"]["k"] == 0
    # ... and its pick by the prompt's own examples finds the right one (the always-False pair passes 1 of 2)
    assert he["he-primary-k3:tests"]["k"] == 1
    k3 = next(x for x in results["humaneval"]["per_item"] if x["system"] == "he-primary-k3")
    assert k3["examples_passed"] == [1, 2, 1] and k3["tests_sample"] == 1 and k3["behaviour_sample"] == 0
    assert k3["groups"] == 2
    assert any(x["a"] == "he-primary" and x["b"] == "he-primary-k3:tests"
               for x in results["humaneval"]["comparisons"])
    checks = results["humaneval"]["checks"]  # both first answers were wrong, and both checks said FAIL
    assert [(checks[n]["caught"], checks[n]["false_alarms"]) for n in ("he-validated-model", "he-validated")] == \
        [(1, 0), (1, 0)]
    c = results["humaneval"]["compete"]["he-compete-judge"]
    assert c["by_pointwise"] == 1 and c["position_consistency"]["n"] == 0  # no order to be consistent about
    one = c["one_right"]  # exactly one of A and B passes here: A
    assert (one["pick"]["k"], one["always_A"]["k"], one["always_B"]["k"], one["pick"]["n"]) == (0, 1, 0, 1)
    bf = results["bfcl"]["systems"]
    assert (bf["bfcl-tools"]["valid"]["k"], bf["bfcl-tools"]["exact"]["k"]) == (2, 2)
    assert (bf["bfcl-tools-free"]["valid"]["k"], bf["bfcl-tools-free"]["exact"]["k"]) == (1, 1)
    cmp = {(x["a"], x["b"]): x for x in results["bfcl"]["comparisons"]["valid"]}
    assert cmp[("bfcl-tools-free", "bfcl-tools")]["b_only"] == 1

    # resumed: nothing is generated again
    again = ScriptedBackend()
    assert await run_eval(CONFIG, fake_settings(), tmp_path, data, say=lambda m: None,
                          backends={"mlx": again}) == records
    assert again.history == []


async def test_resume_refuses_different_options(data, tmp_path):
    await run_eval(EvalConfig(systems=["bfcl-tools"], limit=1, bfcl_categories=["irrelevance"]), fake_settings(),
                   tmp_path, Dataset(bfcl=data.bfcl[1:]), say=lambda m: None,
                   backends={"mlx": ScriptedBackend().enqueue([])})
    with pytest.raises(ConfigError, match="different limit"):
        await run_eval(EvalConfig(systems=["bfcl-tools"], limit=2), fake_settings(), tmp_path, data,
                       say=lambda m: None, backends={"mlx": ScriptedBackend()})


def test_unknown_system_and_category_are_refused():
    with pytest.raises(ConfigError, match="unknown system"):
        EvalConfig(systems=["he-best"]).check()
    with pytest.raises(ConfigError, match="unknown BFCL category"):
        EvalConfig(bfcl_categories=["live"]).check()


async def test_rescore_from_the_command_line_reads_only_records(data, tmp_path, eval_cache, monkeypatch):
    judged = ("he-primary", "he-validated-model", "he-compete-judge", "he-primary-k3")  # no execution: any item
    cfg = CONFIG.model_copy(update={"limit": 1, "seed": 0, "systems": [*judged, "bfcl-tools", "bfcl-tools-free"]})
    # the same selection the command line makes from --limit 1 --seed 0
    from orchestration.evaluation.runner import select_items

    chosen = select_items(cfg, eval_cache, download=False)
    fake = _script(chosen.humaneval[0], judged)
    # BFCL items differ with the seed's draw: answer each with an empty array / no JSON
    fake.replies = type(fake.replies)(list(fake.replies)[:12])
    for _ in chosen.bfcl:
        fake.enqueue([], model="tools-model").enqueue("no JSON here", model="tools-model")
    await run_eval(cfg, fake_settings(), tmp_path, chosen, say=lambda m: None, backends={"mlx": fake})
    monkeypatch.setenv("XDG_CACHE_HOME", str(eval_cache.parent))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["eval", "--out", str(tmp_path), "--rescore", "--no-download", "--json"]) == 0
    doc = json.loads(buf.getvalue())
    assert doc["results"]["humaneval"]["systems"]["he-compete-judge:oracle"]["k"] == 1
    assert (tmp_path / "report.md").read_text().startswith("# mageagent eval")
    assert "he-primary-k3" in (tmp_path / "report.md").read_text()
    # a stopped run scored on its common items: drop one k3 sample, and the item leaves every system's count
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    (tmp_path / "records.jsonl").write_text("\n".join(
        x for x in lines if not ('"he-primary-k3"' in x and '"sample": 2' in x)) + "\n")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["eval", "--out", str(tmp_path), "--rescore", "--finished-only", "--no-download",
                         "--json"]) == 0
    results = json.loads(buf.getvalue())["results"]
    assert results["humaneval"]["systems"] == {}  # the one problem is unfinished for k3: no system counts it
    assert results["bfcl"]["systems"]["bfcl-tools"]["valid"]["n"] == len(chosen.bfcl)  # BFCL's items all finished
    assert "only the items every system finished: " in (tmp_path / "report.md").read_text()


async def test_items_run_concurrently_and_every_record_lands(data, tmp_path):
    fake = ScriptedBackend()
    for _ in range(4):  # he-primary once, he-primary-k3 three samples: all at once
        fake.enqueue(_code("def has_close_elements(numbers, threshold):\n    return False\n"), model="primary-model",
                     delay=0.02)
    config = EvalConfig(systems=["he-primary", "he-primary-k3"], limit=1)
    records = await run_eval(config, fake_settings(), tmp_path, data, say=lambda m: None, backends={"mlx": fake},
                             concurrency=4)
    assert fake.most_in_flight == 4 and not fake.replies
    assert sorted((r["system"], r["sample"]) for r in records) == [("he-primary", 0), ("he-primary-k3", 0),
                                                                  ("he-primary-k3", 1), ("he-primary-k3", 2)]
    assert read_records(tmp_path / "records.jsonl") == records


async def test_concurrency_counts_items_each_with_all_its_systems(eval_cache, tmp_path):
    # Counting jobs held one item's six systems, which share their greedy answers, in flight: one distinct
    # generation per model to batch. Two items at once means all eight of their jobs, and never a third item.
    problems = load_humaneval(eval_cache, download=False)[:3]
    fake = ScriptedBackend()
    for _ in range(12):  # 3 problems x (he-primary + 3 k3 samples)
        fake.enqueue(_code("def f(x):\n    return False\n"), model="primary-model", delay=0.05)
    config = EvalConfig(systems=["he-primary", "he-primary-k3"], limit=3)
    records = await run_eval(config, fake_settings(), tmp_path, Dataset(humaneval=problems), say=lambda m: None,
                             backends={"mlx": fake}, concurrency=2)
    assert fake.most_in_flight == 8 and not fake.replies and len(records) == 12


async def test_reuse_generates_a_shared_greedy_answer_once(data, tmp_path):
    problem = data.humaneval[0]
    good = _code(problem.prompt + problem.canonical_solution)
    fake = ScriptedBackend()
    fake.enqueue(good, model="primary-model", delay=0.02)  # he-primary's answer is also compete's A
    fake.enqueue(_code("def has_close_elements(numbers, threshold):\n    return True\n"), model="competitor-model")
    fake.enqueue("YES", model="validator-model").enqueue("NO", model="validator-model")
    config = EvalConfig(systems=["he-primary", "he-compete-judge"], limit=1)
    records = await run_eval(config, fake_settings(), tmp_path, data, say=lambda m: None, backends={"mlx": fake},
                             concurrency=2, reuse=True)
    assert not fake.replies and fake.models_asked.count("primary-model") == 1
    by = {r["system"]: r for r in records}
    assert by["he-compete-judge"]["judgement"]["candidates"]["A"] == by["he-primary"]["text"]
    reused = [s["reused"] for r in records for s in r["steps"] if s["role"] == "primary"]
    assert sorted(reused) == [False, True]


async def test_memo_keys_only_deterministic_requests():
    from orchestration.evaluation.memo import MemoBackend, memo_key
    from orchestration.core.types import GenerationRequest, Message

    def r(**kw):  # noqa: ANN003, ANN202
        return GenerationRequest(model="primary-model", messages=[Message(role="user", content="hi")],
                                 **{"max_tokens": 4, **kw})

    assert memo_key(r(temperature=0.7)) is None
    assert memo_key(r(temperature=0.7, seed=1)) != memo_key(r(temperature=0.7, seed=2))
    assert memo_key(r()) == memo_key(r(draft_model="small"))
    assert memo_key(r()) != memo_key(r(max_tokens=5))
    fake = ScriptedBackend().enqueue("x y", model="primary-model", delay=0.02).enqueue("z", model="primary-model")
    memo = MemoBackend(fake)
    import anyio

    out = []
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(lambda: _append(out, memo.stream(r())))
    assert [o.text for o in out] == ["x y"] * 3 and sum(o.reused for o in out) == 2
    assert (memo.hits, memo.misses) == (2, 1)
    assert (await memo.stream(r(temperature=0.5))).text == "z"  # unseeded sampling always generates


async def _append(out, coro):  # noqa: ANN001, ANN202
    out.append(await coro)


async def test_samples_draw_at_the_systems_temperature_even_where_the_role_fixes_its_own(data, tmp_path):
    fake = ScriptedBackend()
    for _ in range(3):
        fake.enqueue(_code("def has_close_elements(numbers, threshold):\n    return False\n"), model="primary-model")
    settings = fake_settings(roles={"primary": {"model": "primary-model", "temperature": 0.0}})
    await run_eval(EvalConfig(systems=["he-primary-k3"], limit=1), settings, tmp_path, data, say=lambda m: None,
                   backends={"mlx": fake})
    assert [r.temperature for r in fake.history] == [0.7, 0.7, 0.7]
    assert sorted(r.seed for r in fake.history) == [1000, 1001, 1002]


def test_finished_only_keeps_the_items_every_system_finished():
    from orchestration.evaluation.report import markdown
    from orchestration.evaluation.runner import finished_only

    config = EvalConfig(systems=["he-primary", "he-primary-k3", "bfcl-tools"], limit=3)

    def rec(suite, item, system, sample=0):  # noqa: ANN001, ANN202
        return {"suite": suite, "item": item, "system": system, "sample": sample}

    full = [rec("humaneval", "HumanEval/0", "he-primary")] + [rec("humaneval", "HumanEval/0", "he-primary-k3", k)
                                                             for k in range(3)]
    part = [rec("humaneval", "HumanEval/1", "he-primary"), rec("humaneval", "HumanEval/1", "he-primary-k3", 0),
            rec("humaneval", "HumanEval/1", "he-primary-k3", 2)]  # sample 1 missing
    only_one = [rec("humaneval", "HumanEval/2", "he-primary-k3", k) for k in range(3)]  # he-primary missing
    bfcl = [rec("bfcl", "simple_python_0", "bfcl-tools")]  # BFCL needs only its own suite's systems
    assert finished_only(full + part + only_one + bfcl, config) == full + bfcl
    md = markdown({}, config.model_dump(), {"models": "m", "scope": "only the items every system finished: 2 items"})
    assert "- scored: only the items every system finished: 2 items" in md


async def test_a_cut_off_answer_is_recorded_and_never_scored_as_a_pass(data, tmp_path):
    problem = data.humaneval[0]
    # The right code, but the budget ran out inside its block: what is there would pass if run.
    cut = "```python\n" + problem.prompt + problem.canonical_solution
    fake = ScriptedBackend(continues=False)
    fake.enqueue(cut, model="primary-model", finish_reason="length")
    config = EvalConfig(systems=["he-primary"], limit=1)
    records = await run_eval(config, fake_settings(), tmp_path, Dataset(humaneval=[problem]), say=lambda m: None,
                             backends={"mlx": fake})
    assert records[0]["cut_off"] is True
    he = score(Dataset(humaneval=[problem]), records)["humaneval"]
    assert he["systems"]["he-primary"]["k"] == 0 and he["systems"]["he-primary"]["cut_off"] == 1


async def test_a_cut_off_candidate_of_compete_is_never_scored_as_a_pass(data, tmp_path):
    """compete's A, B and oracle columns (and the judge's accuracy table) score each candidate as the pattern saw
    it: a candidate cut off inside its code is a failure there too, even when what is there would pass."""
    problem = data.humaneval[0]
    cut = "```python\n" + problem.prompt + problem.canonical_solution
    fake = ScriptedBackend(continues=False)
    fake.enqueue(cut, model="primary-model", finish_reason="length")
    fake.enqueue(_code(f"def {problem.entry_point}(numbers, threshold):\n    return False\n"), model="competitor-model")
    fake.enqueue("YES", model="validator-model").enqueue("NO", model="validator-model")
    config = EvalConfig(systems=["he-compete-judge"], limit=1)
    records = await run_eval(config, fake_settings(), tmp_path, Dataset(humaneval=[problem]), say=lambda m: None,
                             backends={"mlx": fake})
    assert records[0]["judgement"]["candidates"]["A"] == cut
    he = score(Dataset(humaneval=[problem]), records)["humaneval"]
    row = next(r for r in he["per_item"] if r["system"] == "he-compete-judge")
    assert row["A"] is False and row["B"] is False and he["systems"]["he-compete-judge:oracle"]["k"] == 0


def test_the_quality_cost_chart_has_a_panel_per_code_suite(tmp_path):
    pytest.importorskip("matplotlib")
    from orchestration.evaluation.report import plot

    one = {"k": 3, "n": 4, "rate": 0.75, "ci95": [0.3, 0.95], "seconds_mean": 12.0}
    results = {"humaneval": {"n": 4, "systems": {"he-primary": one, "he-compete": {**one, "seconds_mean": 30.0}}},
               "mbpp": {"n": 4, "systems": {"mbpp-primary": one}}}
    assert plot(results, tmp_path / "quality.png") and (tmp_path / "quality.png").stat().st_size > 1000
    assert not plot({"bfcl": {}}, tmp_path / "none.png")


async def test_a_whole_suite_runs_in_a_seeded_random_order_with_the_suites_interleaved(eval_cache, tmp_path):
    """A stopped run's finished items are a random sample of every suite, not the first problems of one."""
    from orchestration.evaluation.mbpp import load_mbpp
    from orchestration.evaluation.runner import _pick

    items = list(range(50))
    whole = _pick(items, None, 0)
    assert sorted(whole) == items and whole != items and whole == _pick(items, 500, 0)
    he, mb = load_humaneval(eval_cache, download=False)[:2], list(load_mbpp()[:2])
    fake = ScriptedBackend()
    for _ in range(4):
        fake.enqueue(_code("def f():\n    return 1\n"))
    order: list[str] = []
    await run_eval(EvalConfig(systems=["he-primary", "mbpp-primary"]), fake_settings(), tmp_path,
                   Dataset(humaneval=he, mbpp=mb), say=order.append, backends={"mlx": fake})
    assert [line.split()[0].lstrip("[") for line in order] == ["humaneval", "mbpp", "humaneval", "mbpp"]


def test_a_partly_scored_suite_says_how_many_of_its_problems_were_scored():
    from orchestration.evaluation.report import _code_section

    one = {"k": 3, "n": 4, "rate": 0.75, "ci95": [0.3, 0.95], "description": "d"}
    rest = {"comparisons": [], "sandbox": {"kind": "bwrap", "timeout_s": 10, "memory_mb": 1024, "file_mb": 16,
                                           "open_files": 64}}
    partial = _code_section({"n": 164, "systems": {"he-primary": one}, **rest}, "HumanEval")
    assert partial[0] == "## HumanEval (4 of its 164 problems scored), pass@1"
    whole = _code_section({"n": 4, "systems": {"he-primary": one}, **rest}, "HumanEval")
    assert whole[0] == "## HumanEval (4 problems), pass@1"


def test_the_charts_labels_name_each_point_once_and_do_not_overlap() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orchestration.evaluation.report import _label

    fig, ax = plt.subplots()
    ax.plot([10, 10.2, 30, 10], [50, 50.1, 70, 50], "o")
    ax.set_xscale("log")
    ax.autoscale_view()
    # primary and auto share a point; validated-model sits right beside it; compete stands apart
    _label(ax, {(10, 50): ["primary", "auto"], (10.2, 50.1): ["validated-model"], (30, 70): ["compete"]})
    texts = {t.get_text(): t for t in ax.texts}
    assert set(texts) == {"primary = auto", "validated-model", "compete"}
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)
