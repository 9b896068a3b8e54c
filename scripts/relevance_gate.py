"""The host-tool relevance gate over BFCL's own items, no model: how many of each category it answers "no call".

    .venv/bin/python scripts/relevance_gate.py --out docs/relevance-gate.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from orchestration.evaluation.bfcl import task_prompt, tool_definitions
    from orchestration.evaluation.data import BFCL_CATEGORIES, load_bfcl
    from orchestration.core.settings import load_settings
    from orchestration.tools.relevance import relevance_gate

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    cache = load_settings().cache_dir
    out = {}
    for cat in BFCL_CATEGORIES:
        items = load_bfcl(cache, cat)
        gated = [it.id for it in items if relevance_gate(task_prompt(it)[0], tool_definitions(it))]
        out[cat] = {"items": len(items), "no_call": len(gated), "rate": round(len(gated) / len(items), 4),
                    "ids": gated}
        print(f"{cat}: {len(gated)}/{len(items)} answered 'no call' by the gate")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
