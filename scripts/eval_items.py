"""Run eval systems on named items only (the per-item records of another run say which), then score them.

For a change that can alter only some items' outcome (the records of another run say which). It made
docs/eval-qwen-28-escalation, on a step of validated since replaced (docs/eval.md):

    .venv/bin/python scripts/eval_items.py --systems he-validated mbpp-validated \\
        --items HumanEval/103 HumanEval/10 Mbpp/167 Mbpp/418 --out docs/eval-qwen-28-escalation
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    import anyio

    from orchestration.core.settings import load_settings
    from orchestration.evaluation.runner import Dataset, EvalConfig, run_eval, select_items
    from orchestration.evaluation.score import score
    from orchestration.models.blas import preload_openblas

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", nargs="+", required=True)
    ap.add_argument("--items", nargs="+", required=True, help="task ids: HumanEval/N, Mbpp/N")
    ap.add_argument("--max-tokens", type=int, default=768)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    settings = load_settings()
    config = EvalConfig(systems=a.systems, max_tokens=a.max_tokens,
                        command="scripts/eval_items.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    config.check()
    every = select_items(config, settings.cache_dir)
    wanted = set(a.items)
    data = Dataset(humaneval=[p for p in every.humaneval if p.task_id in wanted],
                   mbpp=[p for p in every.mbpp if p.id in wanted])
    missing = wanted - {p.task_id for p in data.humaneval} - {p.id for p in data.mbpp}
    if missing:
        raise SystemExit(f"no such item in the selected suites: {', '.join(sorted(missing))}")
    preload_openblas(settings.blas)
    records = anyio.run(lambda: run_eval(config, settings, a.out, data, concurrency=a.concurrency, reuse=True))
    results = score(data, records, seed=config.seed, sandbox=settings.sandbox,
                    role_models={r: c.model for r, c in settings.roles.items()})
    (a.out / "results.json").write_text(json.dumps({"config": config.model_dump(), "results": results}, indent=1))
    for r in records:
        rounds = [(x["role"], x["outcome"]) for x in r.get("rounds") or []]
        passed = next(p["passed"] for s in results.values() for p in s.get("per_item", [])
                      if p["item"] == r["item"] and p["system"] == r["system"])
        print(f"{r['system']} {r['item']}: hidden tests {'pass' if passed else 'fail'}; rounds {rounds}")


if __name__ == "__main__":
    main()
