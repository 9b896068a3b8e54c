"""How long the default profile's code answers are, from an evaluation's records: the basis of code_max_tokens.

Every step that writes code (an answer, a candidate, a repair; a continuation counts with the step it
continues) is one answer: its completion tokens, per suite and model role, with how many stopped at the budget.

    .venv/bin/python scripts/answer_lengths.py docs/eval-qwen-28-full/records.jsonl \
        --out docs/eval-qwen-28-full/answer_lengths.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

WRITES_CODE = ("answer", "solution A", "solution B", "revise", "escalate")
CONTINUATION = ": continue the cut-off code"


def _percentile(xs: list[int], q: float) -> int:
    """The nearest-rank percentile (a length some answer actually had)."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))] if s else 0


def answers(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per generated (not reused) code-writing step, its continuation's tokens added."""
    out: list[dict[str, Any]] = []
    for rec in records:
        for step in rec.get("steps") or []:
            purpose = step.get("purpose") or ""
            if step.get("reused") or not purpose.startswith(WRITES_CODE):
                continue
            if purpose.endswith(CONTINUATION) and out and out[-1]["record"] is rec:
                out[-1]["tokens"] += step["completion_tokens"]
                out[-1]["cut_off"] = step.get("finish_reason") == "length"
                continue
            out.append({"record": rec, "suite": rec["suite"], "role": step["role"],
                        "tokens": step["completion_tokens"], "cut_off": step.get("finish_reason") == "length"})
    return out


def summary(found: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {"all": found}
    for a in found:
        groups.setdefault(f"{a['suite']} {a['role']}", []).append(a)
    return {k: {"n": len(v), "p50": _percentile([a["tokens"] for a in v], 50),
                "p95": _percentile([a["tokens"] for a in v], 95), "p99": _percentile([a["tokens"] for a in v], 99),
                "max": max((a["tokens"] for a in v), default=0), "cut_off": sum(a["cut_off"] for a in v)}
            for k, v in sorted(groups.items())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("records", type=Path, nargs="+", help="records.jsonl of `mageagent eval` runs")
    ap.add_argument("--out", type=Path, help="write the summary here as JSON (else print it)")
    a = ap.parse_args(argv)
    records = [json.loads(line) for p in a.records for line in p.read_text().splitlines() if line.strip()]
    max_tokens = {json.loads((p.parent / "run.json").read_text()).get("max_tokens") for p in a.records
                  if (p.parent / "run.json").exists()}
    doc = {"command": "scripts/answer_lengths.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
           "budget": sorted(max_tokens), "tokens": summary(answers(records))}
    text = json.dumps(doc, indent=1) + "\n"
    if a.out:
        a.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
