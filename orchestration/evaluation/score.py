"""Score recorded outputs: HumanEval by running each candidate in the sandbox, BFCL with the call checker.

Scoring reads only the records and the data, so a run can be re-scored (a changed checker, a different
comparison) without generating again.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from typing import Any

from ..errors import ModelOutputError
from ..sandbox import Limits, SandboxKind, SandboxMode, resolve
from ..tools.extract import parse_calls
from ..verify import host_tests, python_code, run_tests
from ..types import ToolCall
from . import bfcl, humaneval
from .data import BfclItem
from .runner import SYSTEMS, Dataset
from .stats import compare, wilson

__all__ = ["score"]

HE_COMPARISONS = [  # (baseline, contender)
    ("he-primary", "he-validated"),
    ("he-validated-model", "he-validated"),
    ("he-primary", "he-validated-model"),
    ("he-primary", "he-compete"),
    ("he-compete-judge", "he-compete"),
    ("he-competitor", "he-compete"),
    ("he-compete:A", "he-compete"),
    ("he-primary-k3", "he-compete"),
    ("he-primary", "he-primary-k3"),
    ("he-primary", "he-primary-k3:tests"),
    ("he-primary-k3:tests", "he-validated"),
    ("he-primary-k3:tests", "he-compete"),
    ("he-primary", "he-hybrid"),
    ("he-primary", "he-auto"),
    ("he-primary", "he-primary-q4"),
]
BFCL_COMPARISONS = [
    ("bfcl-tools-free", "bfcl-tools"),
    ("bfcl-tools-q4-free", "bfcl-tools-q4"),
    ("bfcl-tools", "bfcl-tools-q4"),
    ("bfcl-tools-free", "bfcl-tools-q4-free"),
    ("bfcl-tools", "bfcl-hybrid"),
]


def _rate(flags: list[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def _cost(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per item (all of its samples together): median seconds and mean completion tokens; failed runs."""
    secs: dict[str, float] = defaultdict(float)
    toks: dict[str, int] = defaultdict(int)
    for r in recs:
        secs[r["item"]] += r["seconds"]
        toks[r["item"]] += r.get("completion_tokens") or 0
    return {"seconds_median": round(statistics.median(secs.values()), 2) if secs else None,
            "seconds_total": round(sum(secs.values()), 1),
            "completion_tokens_mean": round(statistics.mean(toks.values()), 1) if toks else None,
            "errors": sum(1 for r in recs if r.get("error"))}


def _comparisons(table: dict[str, dict[str, bool]], pairs: list[tuple[str, str]], items: list[str],
                 seed: int) -> list[dict[str, Any]]:
    out = []
    for a, b in pairs:
        if a not in table or b not in table:
            continue
        common = [i for i in items if i in table[a] and i in table[b]]
        c = compare(a, [table[a][i] for i in common], b, [table[b][i] for i in common], seed=seed)
        out.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.model_dump().items()})
    return out


# -- HumanEval ---------------------------------------------------------------------------------------------
def _score_humaneval(data: Dataset, records: list[dict[str, Any]], limits: Limits, kind: SandboxKind,
                     seed: int) -> dict[str, Any]:
    problems = {p.task_id: p for p in data.humaneval}
    passed: dict[tuple[str, str], bool] = {}  # each distinct candidate runs once

    def run(task: str, text: str | None) -> bool:
        if not text:
            return False
        if (task, text) not in passed:
            passed[(task, text)] = humaneval.check(problems[task], text, limits, kind).passed
        return passed[(task, text)]

    examples: dict[tuple[str, str], int] = {}

    def examples_passed(task: str, text: str | None) -> int:
        """How many of the prompt's own ``>>>`` examples a candidate passes (what validated executes; -1:
        no code, or it does not load). The hidden tests are never shown to a pick."""
        if (task, text or "") not in examples:
            code = python_code(text or "")
            tests = host_tests(humaneval.task_prompt(problems[task]), None, None)
            if code is None:
                examples[(task, text or "")] = -1
            else:
                ex = run_tests(code, tests, mode=kind)
                examples[(task, text or "")] = -1 if ex.load_error else sum(t.passed for t in ex.tests)
        return examples[(task, text or "")]

    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["suite"] == "humaneval" and r["item"] in problems:
            by[r["system"]][r["item"]].append(r)
    table: dict[str, dict[str, bool]] = {}
    systems: dict[str, Any] = {}
    compete: dict[str, Any] = {}
    per_item: list[dict[str, Any]] = []
    for name, items in by.items():
        spec = SYSTEMS[name]
        flags: dict[str, bool] = {}
        if spec.samples > 1:
            oracle: dict[str, bool] = {}
            tests_pick: dict[str, bool] = {}
            for task, recs in items.items():
                recs = sorted(recs, key=lambda r: r["sample"])
                if len(recs) < spec.samples:
                    continue  # an unfinished item is not scored
                passes = [run(task, r["text"]) for r in recs]
                codes = [humaneval.normalize_code(r["text"] or "") for r in recs]
                votes = Counter(codes)
                top = max(votes.values())
                chosen = next(i for i, code in enumerate(codes) if votes[code] == top)  # ties: the earliest
                flags[task] = passes[chosen]
                oracle[task] = any(passes)
                # The pick by its own tests: most of the prompt's examples passed; ties by votes, then the earliest.
                shown = [examples_passed(task, r["text"]) for r in recs]
                by_tests = max(range(len(recs)), key=lambda i: (shown[i], votes[codes[i]], -i))
                tests_pick[task] = passes[by_tests]
                per_item.append({"item": task, "system": name, "passes": passes, "majority_sample": chosen,
                                 "examples_passed": shown, "tests_sample": by_tests})
            table[f"{name}:oracle"] = oracle
            table[f"{name}:tests"] = tests_pick
        else:
            for task, recs in items.items():
                rec = recs[0]
                flags[task] = run(task, rec["text"])
                row = {"item": task, "system": name, "passed": flags[task], "error": rec.get("error")}
                if spec.pattern == "compete" and rec.get("judgement"):
                    j = rec["judgement"]
                    a, b = run(task, j["candidates"].get("A")), run(task, j["candidates"].get("B"))
                    row.update(A=a, B=b, pick=j["pick"], method=j.get("method", "judge"),
                               orders=[v["pick"] for v in j.get("verdicts", [])])
                    table.setdefault(f"{name}:A", {})[task] = a
                    table.setdefault(f"{name}:B", {})[task] = b
                    table.setdefault(f"{name}:oracle", {})[task] = a or b
                elif spec.pattern == "compete":  # the pattern failed: A, B and oracle unknown, count as failures
                    for part in ("A", "B", "oracle"):
                        table.setdefault(f"{name}:{part}", {})[task] = False
                per_item.append(row)
        table[name] = flags
        all_recs = [r for recs in items.values() for r in recs]
        systems[name] = {**_rate(list(flags.values())), **_cost(all_recs), "description": spec.description}
        if spec.samples > 1:
            systems[f"{name}:oracle"] = {**_rate(list(table[f"{name}:oracle"].values())),
                                         "description": f"any of the {spec.samples} samples passes"}
            systems[f"{name}:tests"] = {**_rate(list(table[f"{name}:tests"].values())),
                                        "description": f"the one of {spec.samples} samples that passes the most "
                                                       "of the prompt's examples (ties: majority, then first)"}
    for name in [n for n in by if SYSTEMS[n].pattern == "compete"]:
        judged = [r["judgement"] for recs in by[name].values() for r in recs if r.get("judgement")]
        by_judge = [j for j in judged if j.get("method", "judge") == "judge"]
        two = [j for j in by_judge if len(j.get("verdicts", [])) == 2]
        firsts = [j["verdicts"][0].get("shown_pick", j["verdicts"][0]["pick"]) for j in by_judge if j.get("verdicts")]
        seconds = [j["verdicts"][1]["shown_pick"] for j in two]
        shown = firsts + seconds
        for part in ("A", "B", "oracle"):
            key = f"{name}:{part}"
            systems[key] = {**_rate(list(table.get(key, {}).values())),
                            "description": {"A": f"{name}'s candidate A alone (primary)",
                                            "B": f"{name}'s candidate B alone (competitor)",
                                            "oracle": "A or B passes (a perfect pick)"}[part]}
        picks = Counter(j["pick"] for j in judged)
        same = sum(1 for j in judged if j["candidates"].get("A") == j["candidates"].get("B"))
        compete[name] = {"judged": len(judged), "by_tests": len(judged) - len(by_judge),
                         "picked_A": picks.get("A", 0), "picked_B": picks.get("B", 0),
                         "position_consistency": _rate([j["verdicts"][0]["pick"] == j["verdicts"][1]["pick"]
                                                        for j in two]),
                         "first_shown_picked": _rate([s == "A" for s in shown]),
                         "identical_candidates": same}
    items = list(problems)
    # The harness's own check: each problem's canonical solution must pass in the same sandbox.
    canonical = sum(run(t, "```python\n" + p.prompt + p.canonical_solution + "```") for t, p in problems.items())
    return {"n": len(items), "canonical_passed": canonical, "systems": systems, "compete": compete,
            "comparisons": _comparisons(table, HE_COMPARISONS, items, seed), "per_item": per_item,
            "sandbox": {**limits.model_dump(), "kind": kind}}


# -- BFCL --------------------------------------------------------------------------------------------------
def _calls_of(rec: dict[str, Any], item: BfclItem) -> list[ToolCall] | None:
    """The record's calls, re-validated against the item's tools (None: no valid call array)."""
    if rec.get("error") or rec.get("tool_calls") is None:
        return None
    try:
        return parse_calls(json.dumps([{"tool": c["tool"], "arguments": c["arguments"]}
                                       for c in rec["tool_calls"]]), bfcl.tool_definitions(item))
    except (ModelOutputError, KeyError, TypeError):  # a record that no longer validates is an invalid output
        return None


def _score_bfcl(data: Dataset, records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    items = {i.id: i for i in data.bfcl}
    valid: dict[str, dict[str, bool]] = defaultdict(dict)
    exact: dict[str, dict[str, bool]] = defaultdict(dict)
    first: dict[str, dict[str, bool]] = defaultdict(dict)  # diagnostic: had only the first call been kept
    recs_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_item = []
    for r in records:
        if r["suite"] != "bfcl" or r["item"] not in items:
            continue
        item = items[r["item"]]
        calls = _calls_of(r, item)
        result = bfcl.check_calls(item, calls)
        valid[r["system"]][item.id] = calls is not None
        # Irrelevance is stricter than BFCL's own rule: an undecodable output is an error for the host,
        # not an abstention, so only a valid empty array counts as "no call".
        exact[r["system"]][item.id] = result.correct and calls is not None
        if item.category != "irrelevance":
            first[r["system"]][item.id] = calls is not None and bfcl.check_calls(item, calls[:1]).correct
        recs_by[r["system"]].append(r)
        per_item.append({"item": item.id, "system": r["system"], "valid": calls is not None,
                         "correct": exact[r["system"]][item.id], "reason": result.reason if calls is not None
                         else (r.get("error") or "")[:200]})
    systems = {}
    categories = sorted({i.category for i in items.values()})
    for name in valid:
        by_cat = {}
        for cat in categories:
            ids = [i for i in valid[name] if items[i].category == cat]
            by_cat[cat] = {"valid": _rate([valid[name][i] for i in ids]), "exact": _rate([exact[name][i] for i in ids])}
        systems[name] = {"valid": _rate(list(valid[name].values())), "exact": _rate(list(exact[name].values())),
                         "exact_first_call_only": _rate(list(first[name].values())),
                         "by_category": by_cat, **_cost(recs_by[name]), "description": SYSTEMS[name].description}
    order = list(items)
    return {"n": len(items), "categories": {c: sum(1 for i in items.values() if i.category == c) for c in categories},
            "systems": systems,
            "comparisons": {"valid": _comparisons(dict(valid), BFCL_COMPARISONS, order, seed),
                            "exact": _comparisons(dict(exact), BFCL_COMPARISONS, order, seed)},
            "per_item": per_item}


def score(data: Dataset, records: list[dict[str, Any]], *, seed: int = 0, limits: Limits | None = None,
          sandbox: SandboxMode = "auto") -> dict[str, Any]:
    """Score the records; HumanEval candidates run in the ``sandbox`` (refused up front where it cannot)."""
    out: dict[str, Any] = {}
    if data.humaneval:
        out["humaneval"] = _score_humaneval(data, records, limits or Limits(), resolve(sandbox), seed)
    if data.bfcl:
        out["bfcl"] = _score_bfcl(data, records, seed)
    return out
