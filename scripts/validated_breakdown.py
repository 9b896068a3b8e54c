"""Where validated's gain comes from, read from a run's per-item records and its scored results.

    .venv/bin/python scripts/validated_breakdown.py docs/eval-qwen-28-full \
        > docs/eval-qwen-28-full/validated_breakdown.json

Per suite: on how many items the first answer failed a test and the competitor answered on its own; how many
generated tests were set aside (failed by both answers); the items validated won and lost against primary
(hidden tests), and on each whose answer it kept; what each repair round came to, by role.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def breakdown(records: list[dict], per_item: list[dict], prefix: str) -> dict:
    passed = {(p["system"], p["item"]): p.get("passed") for p in per_item}
    items = sorted({p["item"] for p in per_item if p["system"] == f"{prefix}-validated"})
    by_item = {r["item"]: r for r in records if r["system"] == f"{prefix}-validated"}
    primary_text = {r["item"]: r["text"] for r in records if r["system"] == f"{prefix}-primary"}
    out: dict = {"items": len(items), "competitor_answered": 0, "tests_run": 0, "tests_generated": 0,
                 "tests_set_aside": 0, "won": [], "lost": [], "kept_first_answer": 0, "kept_first_answer_wrong": 0,
                 "repairs": Counter()}
    for item in items:
        rec = by_item[item]
        rounds = rec.get("rounds") or []
        # round 1 by the competitor is its own answer (validated's first escalation); the rest are repairs
        answered = bool(rounds) and rounds[0]["role"] == "competitor" and rounds[0]["round"] == 1
        out["competitor_answered"] += answered
        for r in rounds[answered:]:
            out["repairs"][f"{r['role']}: {r['outcome']}"] += 1
        final = [v for v in rec.get("verdicts") or [] if v.get("execution")]
        tests = final[-1]["execution"]["tests"] if final else []
        out["tests_run"] += len(tests)
        out["tests_generated"] += sum(t.get("origin") == "validator" for t in tests)
        out["tests_set_aside"] += sum(bool(t.get("set_aside")) for t in tests)
        p, v = passed.get((f"{prefix}-primary", item)), passed.get((f"{prefix}-validated", item))
        first = rec["text"] == primary_text.get(item)
        if first:
            out["kept_first_answer"] += 1
            out["kept_first_answer_wrong"] += not v
        if v and not p:
            out["won"].append(item)
        if p and not v:
            out["lost"].append(item)
    out["repairs"] = dict(out["repairs"])
    return out


def main(argv: list[str]) -> None:
    run = Path(argv[0])
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]
    results = json.loads((run / "results.json").read_text())["results"]
    doc = {suite: breakdown(records, results[suite]["per_item"], prefix)
           for suite, prefix in (("humaneval", "he"), ("mbpp", "mbpp")) if suite in results}
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
