"""deadline_s on the default profile: each multi-step pattern on the bench task with a deadline, the wall time to
its result (partial or not), and whether the next call then works.

    .venv/bin/python scripts/measure_deadline.py --deadline 55 --out docs/bench/deadline.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.models.blas import preload_openblas  # noqa: E402


async def run(deadline: float, max_tokens: int) -> dict:
    from orchestration.bench.common import PROMPT
    from orchestration.patterns.engine import Engine
    from orchestration.core.settings import load_settings
    from orchestration.core.types import PatternRequest

    engine = Engine(load_settings())
    rows = []
    try:
        await engine.run("primary", PatternRequest(prompt="Say hi.", max_tokens=2))  # models loaded before timing
        for pattern in ("hybrid", "validated", "compete", "auto"):
            t0 = time.perf_counter()
            r = await engine.run(pattern, PatternRequest(prompt=PROMPT, max_tokens=max_tokens, temperature=0.0,
                                                         deadline_s=deadline))
            wall = time.perf_counter() - t0
            t1 = time.perf_counter()
            nxt = await engine.run("primary", PatternRequest(prompt="Say hi.", max_tokens=4))
            rows.append({"pattern": pattern, "deadline_s": deadline, "wall_s": round(wall, 2),
                         "partial": r.partial, "skipped": r.skipped, "steps": [s.purpose for s in r.trace.steps],
                         "text_chars": len(r.text), "tool_calls": len(r.tool_calls),
                         "next_call_ok": bool(nxt.text.strip()), "next_call_s": round(time.perf_counter() - t1, 2)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        engine.close()
    return {"command": "scripts/measure_deadline.py " + " ".join(sys.argv[1:]), "prompt": PROMPT,
            "max_tokens": max_tokens, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deadline", type=float, default=55)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    preload_openblas("auto")
    res = asyncio.run(run(a.deadline, a.max_tokens))
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
