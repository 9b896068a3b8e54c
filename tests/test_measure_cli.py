"""`mageagent bench` and `mageagent eval` end to end on the real embedded model, as a user runs them (tiny)."""

from __future__ import annotations

import json

import pytest

from test_cli import mageagent

pytestmark = pytest.mark.real_model


def test_eval_tiny_subset_end_to_end(tmp_path, eval_cache):
    out = tmp_path / "run"
    p = mageagent("eval", "--limit", "2", "--seed", "3", "--max-tokens", "24", "--bfcl-categories", "simple_python",
                  "--systems", "he-primary", "bfcl-tools", "bfcl-tools-free", "--out", str(out), "--json", "-q",
                  timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)  # one JSON document on stdout
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert {(r["suite"], r["system"]) for r in records} == {("humaneval", "he-primary"), ("bfcl", "bfcl-tools"),
                                                             ("bfcl", "bfcl-tools-free")}
    assert len(records) == 2 * 3
    for he in (r for r in records if r["system"] == "he-primary"):
        assert he["text"] and he["steps"][0]["completion_tokens"] <= 24 and he["error"] is None
    for tools in (r for r in records if r["system"] == "bfcl-tools"):
        assert tools["error"] is None, tools["error"]  # constrained extraction always yields a valid array
    res = doc["results"]
    assert res["humaneval"]["n"] == 2 and res["humaneval"]["systems"]["he-primary"]["n"] == 2
    assert res["humaneval"]["canonical_passed"] == 2
    assert res["bfcl"]["systems"]["bfcl-tools"]["valid"]["k"] == 2
    assert doc["config"]["command"].startswith("mageagent eval --limit 2")
    report = (out / "report.md").read_text()
    assert "## HumanEval (2 problems)" in report and "## BFCL (2 items" in report
    # re-scoring reads the records only and gives the same numbers
    again = mageagent("eval", "--out", str(out), "--rescore", "--no-download", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["results"] == res


def test_bench_sections_end_to_end(tmp_path):
    out = tmp_path / "bench"
    p = mageagent("bench", "--reps", "1", "--max-tokens", "4", "--tool-items", "1", "--out", str(out), "--json",
                  "--sections", "patterns", "overhead", "tools", "mcp", "http", "remote", timeout=900,
                  # 4-token answers are all cut off; continuing each (up to 384 tokens) is not what this measures
                  env={"MAGEAGENT_CONTINUATION_TOKENS": "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert set(r["patterns"]) == {"primary", "tools", "hybrid", "validated", "compete", "auto"}
    assert r["patterns"]["primary"]["ratio_to_primary"] == 1.0
    for name, v in r["patterns"].items():
        if name == "tools":  # the bench task names its file but gives no code: facts decide, no model step
            assert v["n"] == 1 and r["overhead"][name]["ratio_median"] is None
            continue
        assert v["n"] == 1 and v["median_s"] > 0 and v["steps"], name
        assert r["overhead"][name]["raw_mlx_lm_median_s"] > 0
    assert r["patterns"]["compete"]["median_s"] > r["patterns"]["primary"]["median_s"]
    assert r["tools"]["valid_rate_constrained"] == 1.0 and r["tools"]["mask_ms_per_token"]["median"] > 0
    m = r["mcp"]
    assert 0 < m["tools_list"]["median_s"] < m["start_to_initialize"]["median_s"] + 5
    assert m["warm_call"]["n"] == 1 and m["engine_direct"]["median_s"] > 0
    assert r["http"]["warm_call"]["median_s"] > 0 and r["http"]["warm_overhead_ratio"] > 0
    assert r["remote"]["mlx_lm_server"]["median_s"] > 0 and r["remote"]["ratio"] > 0
    assert "memory" not in r  # not asked for
    md = (out / "bench.md").read_text()
    assert "| compete |" in md and "MCP stdio" in md
    png = out / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_probe_counts_a_shared_model_once_and_sees_the_difference():
    from orchestration.bench import memory_probe

    r = memory_probe({role: "embedded" for role in ("primary", "competitor", "validator", "tools")}, 4)
    assert list(r["loaded_models"]) == ["embedded"]
    assert 0.3 < r["models_gb"] < 1.0
    assert r["peak_rss_gb"] > r["models_gb"]  # the weights are resident, plus Python, MLX and the KV cache
    q4 = memory_probe({role: "embedded-q4" for role in ("primary", "competitor", "validator", "tools")}, 4)
    assert list(q4["loaded_models"]) == ["embedded-q4"] and q4["models_gb"] < r["models_gb"]
    # each probe's own peak: the 4-bit copy is ~0.4 GB smaller, and the bench process's memory is not counted
    assert q4["peak_rss_gb"] < r["peak_rss_gb"] - 0.2
