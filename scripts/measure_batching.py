"""Eval throughput with and without batching, in one run on this machine.

The same seeded HumanEval items go through one system twice: one item at a time (``--concurrency 1``), then
N at once (the MLX backend decodes their generations as one batch). Reports items per minute for both, the
ratio, and whether the two runs wrote the same text for every item (greedy decoding: they must).

    .venv/bin/python scripts/measure_batching.py --system he-primary --limit 8 --concurrency 8 \
        --max-tokens 128 --out docs/bench/batching.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.models.blas import preload_openblas  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", default="he-primary")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--profile", default=None, help="settings profile (default: the configured one)")
    p.add_argument("--out", default="docs/bench/batching.json")
    args = p.parse_args()

    import anyio

    from orchestration.evaluation.runner import EvalConfig, run_eval, select_items
    from orchestration.core.settings import derive, load_settings

    settings = load_settings(**({"profile": args.profile} if args.profile else {}))
    preload_openblas(settings.blas)
    config = EvalConfig(systems=[args.system], limit=args.limit, seed=args.seed, max_tokens=args.max_tokens)
    data = select_items(config, settings.cache_dir)
    runs = {}
    texts = {}
    for n in (1, args.concurrency):
        with tempfile.TemporaryDirectory() as tmp:
            base = derive(settings, {"batch_size": n})
            t0 = time.perf_counter()
            records = anyio.run(lambda: run_eval(config, base, Path(tmp), data, lambda m: None, concurrency=n))
            wall = time.perf_counter() - t0
        texts[n] = {(r["item"], r["sample"]): r["text"] for r in records}
        steps = [s for r in records for s in r.get("steps") or []]
        runs[f"concurrency_{n}"] = {
            "concurrency": n, "items": len(records), "wall_s": round(wall, 1),
            "items_per_min": round(len(records) / wall * 60, 2),
            "completion_tokens": sum(s["completion_tokens"] for s in steps),
            "errors": sum(1 for r in records if r.get("error"))}
        print(f"concurrency {n}: {len(records)} items in {wall:.0f}s", file=sys.stderr)
    one, many = runs["concurrency_1"], runs[f"concurrency_{args.concurrency}"]
    same = sum(texts[1].get(k) == v for k, v in texts[args.concurrency].items())
    report = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {platform.system()}",
        "models": {r: c.model for r, c in settings.roles.items()},
        "runs": runs,
        "throughput_ratio": round(many["items_per_min"] / one["items_per_min"], 2),
        "identical_texts": f"{same}/{len(texts[args.concurrency])}",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
