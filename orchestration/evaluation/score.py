"""Score recorded outputs: HumanEval and MBPP by running each candidate in the shared harness (the patterns' own,
in the sandbox), BFCL with the call checker.

Scoring reads only the records and the data, so a run can be re-scored (a changed checker, a different
comparison) without generating again.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from ..checks.sandbox import Limits, SandboxKind, SandboxMode, resolve
from ..checks.verify import host_tests, incomplete_code, python_code, run_tests
from ..core.errors import ModelOutputError
from ..core.types import ToolCall, Verdict
from ..patterns import validated
from ..tools.extract import parse_calls
from . import bfcl, humaneval, mbpp
from .cost import with_modelled_seconds
from .data import BfclItem
from .runner import SYSTEMS, Dataset
from .stats import compare, wilson

__all__ = ["score"]

HE_COMPARISONS = [  # (baseline, contender)
    ("he-primary", "he-validated"),
    ("he-validated", "he-validated:no-primary-repair"),
    ("he-primary", "he-validated:no-primary-repair"),
    ("he-validated-model", "he-validated"),
    ("he-primary", "he-validated-model"),
    ("he-primary", "he-compete"),
    ("he-compete-judge", "he-compete"),
    ("he-competitor", "he-compete"),
    ("he-compete:A", "he-compete"),
    ("he-compete", "he-compete:ties-to-B"),
    ("he-competitor", "he-compete:ties-to-B"),
    ("he-primary-k3", "he-compete"),
    ("he-primary", "he-primary-k3"),
    ("he-primary-k3:code-majority", "he-primary-k3"),
    ("he-competitor", "he-validated"),
    ("he-compete-pairwise", "he-compete-judge"),
    ("he-primary", "he-competitor"),
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
    alone: dict[str, float] = defaultdict(float)
    for r in recs:
        secs[r["item"]] += r["seconds"]
        toks[r["item"]] += r.get("completion_tokens") or 0
        if r.get("modelled_seconds") is not None:
            alone[r["item"]] += r["modelled_seconds"]
    modelled = len(alone) == len(secs) and bool(secs)  # every item's steps have measured rates
    return {"modelled_s_mean": round(statistics.mean(alone.values()), 2) if modelled else None,
            "modelled_s_total": round(sum(alone.values()), 1) if modelled else None,"seconds_median": round(statistics.median(secs.values()), 2) if secs else None,
            "seconds_mean": round(statistics.mean(secs.values()), 2) if secs else None,
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


# -- the code suites (HumanEval, MBPP) ------------------------------------------------------------------------
def _cut(rec: dict[str, Any]) -> bool:
    return bool(rec.get("cut_off"))


def _candidate_cut(rec: dict[str, Any], label: str) -> bool:
    """Whether compete's candidate ``label`` (A or B) stopped at its budget: the last step that wrote it
    (its continuation, where there was one) ended by length."""
    steps = [s for s in rec.get("steps") or [] if (s.get("purpose") or "").startswith(f"solution {label}")]
    return bool(steps) and steps[-1].get("finish_reason") == "length"


def _judge_stats(name: str, recs: list[dict[str, Any]], ab: dict[str, tuple[bool, bool]]) -> dict[str, Any]:
    """How a compete system picked: by tests or by which judge, position effects of a pairwise judge, and the
    judge's accuracy where exactly one of A and B passes the hidden tests (against always A and always B)."""
    judged = [(r["item"], r["judgement"]) for r in recs if r.get("judgement")]
    by_judge = [(i, j) for i, j in judged if j.get("method", "judge") == "judge"]
    pairwise = [j for _, j in by_judge if j.get("judge_kind", "pairwise") == "pairwise"]
    two = [j for j in pairwise if len(j.get("verdicts", [])) == 2]
    shown = ([j["verdicts"][0].get("shown_pick", j["verdicts"][0].get("pick")) for j in pairwise if j.get("verdicts")]
             + [j["verdicts"][1].get("shown_pick") for j in two])
    picks = Counter(j["pick"] for _, j in judged)
    one_right = [(i, j) for i, j in judged if i in ab and ab[i][0] != ab[i][1]]
    right = {i: "A" if ab[i][0] else "B" for i, _ in one_right}
    judged_one = [(i, j) for i, j in one_right if j.get("method", "judge") == "judge"]
    return {"judged": len(judged), "by_tests": sum(1 for _, j in judged if j.get("method") == "tests"),
            "by_stronger": sum(1 for _, j in judged if j.get("method") == "stronger"),
            "by_pointwise": sum(1 for _, j in by_judge if j.get("judge_kind") == "pointwise"),
            "picked_A": picks.get("A", 0), "picked_B": picks.get("B", 0),
            "position_consistency": _rate([j["verdicts"][0].get("pick") == j["verdicts"][1].get("pick")
                                           for j in two]),
            "first_shown_picked": _rate([x == "A" for x in shown]),
            "identical_candidates": sum(1 for _, j in judged if j["candidates"].get("A") == j["candidates"].get("B")),
            # where exactly one of A and B is right: how often each way of choosing takes it
            "one_right": {"pick": _rate([j["pick"] == right[i] for i, j in one_right]),
                          "judge_only": _rate([j["pick"] == right[i] for i, j in judged_one]),
                          "always_A": _rate([right[i] == "A" for i, _ in one_right]),
                          "always_B": _rate([right[i] == "B" for i, _ in one_right])}}


class _CodeRuns:
    """One suite's candidates run in the patterns' own harness, each distinct one once."""

    def __init__(self, suite: str, problems: dict[str, Any], limits: Limits, kind: SandboxKind) -> None:
        self.module = humaneval if suite == "humaneval" else mbpp
        self.problems, self.limits, self.kind = problems, limits, kind
        self.passed: dict[tuple[str, str, bool], bool] = {}
        self.behaviour: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}

    def run(self, task: str, text: str | None, cut_off: bool = False) -> bool:
        """Passes the hidden tests, in the patterns' own harness; an answer cut off inside its code is never run."""
        if not text:
            return False
        key = (task, text, cut_off)
        if key not in self.passed:
            self.passed[key] = self.module.check(self.problems[task], text, self.limits, self.kind, cut_off).all_passed
        return self.passed[key]

    def on_examples(self, task: str, text: str | None, cut_off: bool) -> tuple[int, tuple[str, ...]]:
        """(examples passed, what the code did on each) on the prompt's own ``>>>`` examples (what validated
        executes; -1: no code, cut off or it does not load). The hidden tests are never shown to a pick."""
        key = (task, text or "")
        if key not in self.behaviour:
            code = None if incomplete_code(text or "", cut_off) else python_code(text or "")
            tests = host_tests(self.module.task_prompt(self.problems[task]), None, None)
            if code is None or not tests:
                self.behaviour[key] = (-1 if code is None else 0, ("no code",) if code is None else ())
            else:
                ex = run_tests(code, tests, mode=self.kind)
                if ex.load_error:
                    self.behaviour[key] = (-1, ("does not load",))
                else:
                    self.behaviour[key] = (sum(t.passed for t in ex.tests),
                                           tuple(t.got or t.raised or ("ok" if t.passed else t.error or "")
                                                 for t in ex.tests))
        return self.behaviour[key]


def _score_code(suite: str, problems: dict[str, Any], records: list[dict[str, Any]], limits: Limits,
                kind: SandboxKind, seed: int) -> dict[str, Any]:
    runs = _CodeRuns(suite, problems, limits, kind)
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["suite"] == suite and r["item"] in problems:
            by[r["system"]][r["item"]].append(r)
    table: dict[str, dict[str, bool]] = {}
    systems: dict[str, Any] = {}
    compete: dict[str, Any] = {}
    per_item: list[dict[str, Any]] = []
    for name, items in by.items():
        spec = SYSTEMS[name]
        if spec.samples > 1:
            flags = _score_sampled(name, spec.samples, items, runs, table, per_item)
        else:
            flags, ab = _score_single(name, spec.pattern, items, runs, table, per_item)
            if spec.pattern == "compete":
                compete[name] = _judge_stats(name, [r for recs in items.values() for r in recs], ab)
        table[name] = flags
        systems.update(_system_rows(name, items, flags, table))
        if spec.pattern == "validated" and spec.overrides.get("verify") != "model":
            systems.update(_without_primary_repair(name, items, by, runs, table))
    checks = _detectors(by, lambda r: runs.run(r["item"], r.get("first_answer") or r["text"], _cut(r)))
    items = list(problems)
    # The harness's own check: each problem's reference solution must pass in the same harness and sandbox.
    canonical = sum(runs.run(t, "```python\n" + _reference(suite, p) + "\n```") for t, p in problems.items())
    prefix = "he-" if suite == "humaneval" else "mbpp-"
    pairs = [(a.replace("he-", prefix, 1), b.replace("he-", prefix, 1)) for a, b in HE_COMPARISONS]
    return {"n": len(items), "canonical_passed": canonical, "systems": systems, "compete": compete,
            "checks": checks, "comparisons": _comparisons(table, pairs, items, seed), "per_item": per_item,
            "sandbox": {**limits.model_dump(), "kind": kind}}


def _score_sampled(name: str, samples: int, items: dict[str, list[dict[str, Any]]], runs: _CodeRuns,
                   table: dict[str, dict[str, bool]], per_item: list[dict[str, Any]]) -> dict[str, bool]:
    """A system that draws several samples per item: its pick by behaviour, plus the oracle, the pick by the
    prompt's examples and the old code-majority vote as columns of ``table``."""
    flags: dict[str, bool] = {}
    oracle: dict[str, bool] = {}
    tests_pick: dict[str, bool] = {}
    code_vote: dict[str, bool] = {}
    for task, recs in items.items():
        recs = sorted(recs, key=lambda r: r["sample"])
        if len(recs) < samples:
            continue  # an unfinished item is not scored
        passes = [runs.run(task, r["text"], _cut(r)) for r in recs]
        seen = [runs.on_examples(task, r["text"], _cut(r)) for r in recs]
        # MBR-exec: samples grouped by what they do on the examples; the largest group (ties: the one
        # passing more examples), its earliest sample. Samples that run nothing never form a group.
        groups = Counter(b for n, b in seen if n >= 0)
        chosen = max(range(len(recs)), key=lambda i: (groups.get(seen[i][1], 0) if seen[i][0] >= 0 else 0,
                                                      seen[i][0], -i))
        flags[task] = passes[chosen]
        oracle[task] = any(passes)
        by_tests = max(range(len(recs)), key=lambda i: (seen[i][0], -i))
        tests_pick[task] = passes[by_tests]
        codes = [humaneval.normalize_code(r["text"] or "") for r in recs]
        votes = Counter(codes)
        code_vote[task] = passes[next(i for i, c in enumerate(codes) if votes[c] == max(votes.values()))]
        per_item.append({"item": task, "system": name, "passes": passes, "behaviour_sample": chosen,
                         "groups": len(groups), "examples_passed": [n for n, _ in seen],
                         "tests_sample": by_tests, "cut_off": [_cut(r) for r in recs]})
    table[f"{name}:oracle"] = oracle
    table[f"{name}:tests"] = tests_pick
    table[f"{name}:code-majority"] = code_vote
    return flags


def _score_single(name: str, pattern: str, items: dict[str, list[dict[str, Any]]], runs: _CodeRuns,
                  table: dict[str, dict[str, bool]], per_item: list[dict[str, Any]]
                  ) -> tuple[dict[str, bool], dict[str, tuple[bool, bool]]]:
    """A system with one answer per item; for compete, its candidates A and B (and A or B) as columns of
    ``table``. Returns the flags and, per judged item, whether A and B pass."""
    flags: dict[str, bool] = {}
    ab: dict[str, tuple[bool, bool]] = {}
    for task, recs in items.items():
        rec = recs[0]
        flags[task] = runs.run(task, rec["text"], _cut(rec))
        row = {"item": task, "system": name, "passed": flags[task], "error": rec.get("error"),
               "cut_off": _cut(rec), "rounds": [x.get("outcome") for x in rec.get("rounds") or []],
               "seconds": rec.get("seconds")}
        if pattern == "compete" and rec.get("judgement"):
            j = rec["judgement"]
            a, b = (runs.run(task, j["candidates"].get(k), _candidate_cut(rec, k)) for k in ("A", "B"))
            ab[task] = (a, b)
            row.update(A=a, B=b, pick=j["pick"], method=j.get("method", "judge"),
                       judge_kind=j.get("judge_kind"), scores=j.get("scores"),
                       orders=[v.get("pick") for v in j.get("verdicts", [])])
            table.setdefault(f"{name}:A", {})[task] = a
            table.setdefault(f"{name}:B", {})[task] = b
            table.setdefault(f"{name}:oracle", {})[task] = a or b
            # judge = stronger: the same tests decide, and where they tie or cannot run B (the 1.5B) stands
            table.setdefault(f"{name}:ties-to-B", {})[task] = flags[task] if row["method"] == "tests" else b
        elif pattern == "compete":  # the pattern failed: A, B and oracle unknown, count as failures
            for part in ("A", "B", "oracle", "ties-to-B"):
                table.setdefault(f"{name}:{part}", {})[task] = False
        per_item.append(row)
    return flags, ab


def _answer_without_repair(rec: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, bool] | None:
    """What validated answers for ``rec`` (the competitor answered, the primary repaired) without the primary's
    repairs: ``("", False)`` for the run's own answer, else the answer a repair replaced and whether it was cut off
    (``theirs``: the competitor system's record of the same item); None where that cannot be shown."""
    rounds, verdicts = rec.get("rounds") or [], rec.get("verdicts") or []
    # the candidates that ran: the first answer, the competitor's own, then each repair that was no repeat
    ran = [("first", -1), ("competitor", 0)] + [(x.get("role"), i) for i, x in enumerate(rounds)
                                                 if i > 0 and x.get("outcome") != "no change"]
    if len(verdicts) != len(ran):
        return None
    standing = [validated.standing(Verdict.model_validate(v)) for v in verdicts]  # as the pattern ranks them
    best = 1 if standing[1] >= standing[0] else 0  # ties: the competitor's
    before, took = best, None
    for k in range(2, len(ran)):
        if standing[k] >= standing[best]:
            if ran[k][0] == "primary" and took is None:
                took = ran[k][1]
            best = k
    if took is None:
        return "", False  # no repair by the primary became the best
    if rounds[took + 1:]:
        return None  # a later round started from the repair
    steps = rec.get("steps") or []
    if before == 0 and rec.get("first_answer") is not None:
        answer = [s for s in steps if (s.get("purpose") or "").startswith("answer")]
        return rec["first_answer"], bool(answer) and answer[-1].get("finish_reason") == "length"
    esc = [s for s in steps if (s.get("purpose") or "").startswith("escalate (1)")]
    mine = [s for s in theirs.get("steps") or [] if (s.get("purpose") or "").startswith("answer")]
    if before == 1 and theirs.get("text") and len(esc) == 1 and len(mine) == 1 and all(
            esc[0].get(k) == mine[0].get(k) for k in ("prompt_tokens", "completion_tokens")):
        return theirs["text"], _cut(theirs)
    return None


def _without_primary_repair(name: str, items: dict[str, list[dict[str, Any]]],
                            by: Mapping[str, Mapping[str, list[dict[str, Any]]]], runs: _CodeRuns,
                            table: dict[str, dict[str, bool]]) -> dict[str, Any]:
    """validated as it now decides where the competitor is the stronger model: once the competitor's own answer
    failed too, no repair by the primary follows; the best of the first answer and the competitor's stands.

    Exact from the records: the rounds before the primary's repair are the same, and they end at that best. The
    pick is replayed from the recorded verdicts (the candidates that ran, in order; a later one replaces the best
    when it stands at least as high). Where no repair by the primary became the best, the answer is the run's
    own. Where one did, it is the one that repair replaced: the first answer (recorded), or the competitor's own
    answer, which is the competitor system's greedy answer to the same prompt (the same prompt and completion
    token counts are checked). An item where that cannot be shown (other counts, a continued answer, verdicts
    that do not match the rounds, a later round that built on the repair) is counted as run, at its full cost,
    and listed under ``unverified``. Records of the older validated (the primary repairing first) give no row."""
    if any(((recs[0].get("rounds") or [{}])[0]).get("role") == "primary" for recs in items.values()):
        return {}
    other = by.get(name.split("-", 1)[0] + "-competitor", {})
    flags: dict[str, bool] = {}
    costs: list[float] = []
    changed: list[str] = []
    unverified: list[str] = []
    for task, recs in items.items():
        rec, flag = recs[0], table[name].get(task, False)
        rounds = rec.get("rounds") or []
        cost = rec.get("modelled_seconds")
        if rounds and rounds[0].get("role") == "competitor" and any(x.get("role") == "primary" for x in rounds):
            found = _answer_without_repair(rec, (other.get(task) or [{}])[0])
            if found is None:
                unverified.append(task)
            else:
                if found[0]:
                    flag = runs.run(task, *found)
                    changed.append(task)
                if cost is not None:
                    cost -= rec.get("modelled_primary_repair_seconds", 0.0)
        flags[task] = flag
        costs += [cost] if cost is not None else []
    key = f"{name}:no-primary-repair"
    table[key] = flags
    priced = bool(costs) and len(costs) == len(items)
    return {key: {**_rate(list(flags.values())),
                  **({"modelled_s_mean": round(statistics.mean(costs), 2), "modelled_s_total": round(sum(costs), 1)}
                     if priced else {"modelled_s_mean": None}),
                  "seconds_total": round(sum(r["seconds"] for recs in items.values() for r in recs), 1),
                  "answer_changed": sorted(changed), "unverified": sorted(unverified),
                  "description": "no repair by the primary once the competitor's own answer failed too (the "
                                 "default where the competitor is the stronger model), computed from these "
                                 "records (its cost: less the primary's repair steps)"}}


def _system_rows(name: str, items: dict[str, list[dict[str, Any]]], flags: dict[str, bool],
                 table: dict[str, dict[str, bool]]) -> dict[str, Any]:
    """The ``systems`` entries of one system: its own row, then its extra columns (samples, compete)."""
    spec = SYSTEMS[name]
    all_recs = [r for recs in items.values() for r in recs]
    rows: dict[str, Any] = {name: {**_rate(list(flags.values())), **_cost(all_recs), "description": spec.description,
                                   "cut_off": sum(1 for r in all_recs if _cut(r))}}
    if spec.samples > 1:
        rows[f"{name}:oracle"] = {**_rate(list(table[f"{name}:oracle"].values())),
                                  "description": f"any of the {spec.samples} samples passes"}
        rows[f"{name}:tests"] = {**_rate(list(table[f"{name}:tests"].values())),
                                 "description": f"the one of {spec.samples} samples that passes the most "
                                                "of the prompt's examples (ties: the first)"}
        rows[f"{name}:code-majority"] = {**_rate(list(table[f"{name}:code-majority"].values())),
                                         "description": "majority of the normalized code (the old vote)"}
    # (a compete where no test ran keeps B everywhere: its B column)
    if spec.pattern == "compete" and any((r.get("judgement") or {}).get("method") == "tests" for r in all_recs):
        unjudged = [r.get("modelled_seconds") - r.get("modelled_judge_seconds", 0.0) for r in all_recs
                    if r.get("modelled_seconds") is not None]
        rows[f"{name}:ties-to-B"] = {
            **_rate(list(table.get(f"{name}:ties-to-B", {}).values())),
            **({"modelled_s_mean": round(statistics.mean(unjudged), 2), "modelled_s_total": round(sum(unjudged), 1)}
               if unjudged and len(unjudged) == len(all_recs) else {"modelled_s_mean": None}),
            "seconds_total": rows[name]["seconds_total"],  # wall, judge steps included: an upper bound
            "description": "the same tests decide; where they tie or cannot run, B (the stronger model's answer) "
                           "stands: judge = 'stronger', computed from these records (its cost: less the judge steps)"}
    if spec.pattern == "compete":
        for part in ("A", "B", "oracle"):
            key = f"{name}:{part}"
            rows[key] = {**_rate(list(table.get(key, {}).values())),
                         "description": {"A": f"{name}'s candidate A alone (primary)",
                                         "B": f"{name}'s candidate B alone (competitor)",
                                         "oracle": "A or B passes (a perfect pick)"}[part]}
    return rows


def _detectors(by: dict[str, dict[str, list[dict[str, Any]]]], first_right: Callable[[dict[str, Any]], bool]
               ) -> dict[str, Any]:
    """Each validated system's first check as a detector of a wrong first answer (run against the hidden tests):
    FAIL on a wrong answer is a catch, FAIL on a right one a false alarm."""
    out = {}
    for name, items in by.items():
        if SYSTEMS[name].pattern != "validated":
            continue
        cells: Counter[tuple[str, str]] = Counter()
        for recs in items.values():
            verdicts = recs[0].get("verdicts") or []
            if not verdicts:
                continue
            cells[("FAIL" if verdicts[0]["verdict"] == "FAIL" else "PASS",
                   "right" if first_right(recs[0]) else "wrong")] += 1
        caught, alarms = cells[("FAIL", "wrong")], cells[("FAIL", "right")]
        wrong = caught + cells[("PASS", "wrong")]
        out[name] = {"n": sum(cells.values()), "caught": caught, "missed": cells[("PASS", "wrong")],
                     "false_alarms": alarms, "passed_right": cells[("PASS", "right")],
                     "precision": round(caught / (caught + alarms), 4) if caught + alarms else None,
                     "recall": round(caught / wrong, 4) if wrong else None}
    return out


def _reference(suite: str, problem: Any) -> str:
    return problem.prompt + problem.canonical_solution if suite == "humaneval" else problem.code


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
          sandbox: SandboxMode = "auto", role_models: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Score the records; HumanEval candidates run in the ``sandbox`` (refused up front where it cannot).
    ``role_models`` (role -> model) prices each record's steps run alone (``evaluation.cost``)."""
    out: dict[str, Any] = {}
    if role_models is not None:
        records = with_modelled_seconds(records, role_models)
    if data.humaneval:
        out["humaneval"] = _score_code("humaneval", {p.task_id: p for p in data.humaneval}, records,
                                       limits or Limits(), resolve(sandbox), seed)
    if data.mbpp:
        out["mbpp"] = _score_code("mbpp", {p.id: p for p in data.mbpp}, records, limits or Limits(),
                                  resolve(sandbox), seed)
    if data.bfcl:
        out["bfcl"] = _score_bfcl(data, records, seed)
    return out
