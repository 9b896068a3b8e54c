"""Score tool-call extraction over the request table (orchestration/bench/tool_table.json) on one model.

Each row gives a request (prompt, optional context), a fixed answer (or none: the tools pattern) and the calls
a host would want. Only extraction runs, so the figures measure extraction alone:

    .venv/bin/python scripts/tool_table.py --model smollm2-135m --constraint grounded --out /tmp/grounded.json
    .venv/bin/python scripts/tool_table.py --model smollm2-135m --constraint grammar   # before grounding

Scores per row: the expected tools chosen (in order; none for a no-tool row), every expected path right, every
expected content exact (a Write's content equals the answer's block, an Edit applied to the context gives the
expected text), paths made up (a path named nowhere in the prompt, context or answer), tokens and seconds of
the extraction step(s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.models.blas import preload_openblas  # noqa: E402

TABLE = ROOT / "orchestration" / "bench" / "tool_table.json"
PATH_KEYS = ("file_path", "path")


def expected_content(row: dict[str, Any], spec: Any) -> str:
    from orchestration.tools.grounding import code_blocks

    if spec == "answer":
        return row["answer"]
    if isinstance(spec, int):
        return code_blocks(row["answer"])[spec - 1]
    return spec


def _trim(text: str) -> str:
    return text.rstrip("\n")


def score_row(row: dict[str, Any], calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Tool, path and content scores of one row's calls (None: the extraction failed)."""
    expected = row["calls"]
    out: dict[str, Any] = {"valid": calls is not None}
    calls = calls or []
    out["tool_ok"] = out["valid"] and [c["tool"] for c in calls] == [e["tool"] for e in expected]
    out["first_ok"] = out["valid"] and [c["tool"] for c in calls[:1]] == [e["tool"] for e in expected[:1]]
    named = "\n".join(t for t in (row["request"], row.get("context") or "", row.get("answer") or ""))
    out["made_up_paths"] = [c["arguments"][k] for c in calls for k in PATH_KEYS
                            if isinstance(c["arguments"].get(k), str) and c["arguments"][k] not in named]
    used: set[int] = set()
    path_ok: list[bool] = []
    content_ok: list[bool] = []
    for e in expected:
        i = next((i for i, c in enumerate(calls) if i not in used and c["tool"] == e["tool"]), None)
        call = calls[i] if i is not None else None
        if i is not None:
            used.add(i)
        args = call["arguments"] if call else {}
        if "path" in e:
            path_ok.append(args.get("file_path", args.get("path")) == e["path"])
        if "content" in e:
            content_ok.append(args.get("content") == expected_content(row, e["content"]))
        if "result" in e:
            old, new, ctx = args.get("old_string"), args.get("new_string"), row.get("context") or ""
            content_ok.append(isinstance(old, str) and isinstance(new, str) and bool(old) and old in ctx
                              and _trim(ctx.replace(old, new, 1)) == _trim(e["result"]))
    out["path_ok"] = all(path_ok) if path_ok else None
    out["content_ok"] = all(content_ok) if content_ok else None
    return out


async def run(model: str, constraint: str, limit: int | None, max_string: int) -> dict[str, Any]:
    from orchestration.run.context import RunContext
    from orchestration.patterns.engine import Engine
    from orchestration.core.errors import MageError
    from orchestration.core.settings import ROLES, load_settings
    from orchestration.tools.extract import extract_tool_calls
    from orchestration.core.types import PatternRequest

    settings = load_settings(env={}, roles={r: {"model": model, "temperature": 0.0} for r in ROLES},
                             temperature=0.0, extraction_constraint=constraint, extraction_max_string=max_string)
    engine = Engine(settings)
    rows = json.loads(TABLE.read_text())[:limit]
    results = []
    try:
        for n, row in enumerate(rows, 1):
            request = PatternRequest(prompt=row["request"], context=row.get("context"))
            ctx = RunContext("tool-table", request, settings, engine.backends)
            t0 = time.perf_counter()
            error = None
            try:
                calls = [c.model_dump() for c in await extract_tool_calls(ctx, row.get("answer"))]
            except MageError as e:
                calls, error = None, str(e)[:300]
            wall = time.perf_counter() - t0
            steps = ctx.trace.steps
            r = {"request": row["request"], "expected": [e["tool"] for e in row["calls"]], "calls": calls,
                 "error": error, "tokens": sum(s.completion_tokens for s in steps),
                 "prompt_tokens": sum(s.prompt_tokens for s in steps), "seconds": round(wall, 3),
                 **score_row(row, calls)}
            results.append(r)
            print(f"{n:2d} {'ok ' if r['tool_ok'] else 'BAD'} {r['tokens']:4d} tok {wall:6.2f}s  {row['request'][:60]}"
                  f" -> {[c['tool'] for c in calls] if calls is not None else error[:80]}", file=sys.stderr)
    finally:
        engine.close()
    return {"model": model, "constraint": constraint, "extraction_max_string": max_string,
            "summary": summarize(results), "rows": results}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(key: str) -> dict[str, Any]:
        vals = [r[key] for r in rows if r[key] is not None]
        return {"hits": sum(bool(v) for v in vals), "of": len(vals)}

    tokens = [r["tokens"] for r in rows]
    seconds = [r["seconds"] for r in rows]
    return {"rows": len(rows), "valid": rate("valid"), "tool_chosen": rate("tool_ok"), "first_tool": rate("first_ok"),
            "paths_right": rate("path_ok"),
            "content_exact": rate("content_ok"), "made_up_paths": sum(len(r["made_up_paths"]) for r in rows),
            "tokens_median": statistics.median(tokens), "tokens_mean": round(statistics.mean(tokens), 1),
            "seconds_median": round(statistics.median(seconds), 3), "seconds_mean": round(statistics.mean(seconds), 3),
            "seconds_total": round(sum(seconds), 1)}


HEADER = ("| model | constraint | rows | valid | tools chosen (all) | first tool | paths right | content exact | "
          "made-up paths | tokens median (mean) | seconds median (mean) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def rescore(res: dict[str, Any]) -> dict[str, Any]:
    """A saved result scored again against the table (the table's rows matched by request text)."""
    table = {r["request"]: r for r in json.loads(TABLE.read_text())}
    rows = [{**r, **score_row(table[r["request"]], r["calls"])} for r in res["rows"]]
    return {**res, "rows": rows, "summary": summarize(rows)}


def line(res: dict[str, Any]) -> str:
    s = res["summary"]

    def f(k: str) -> str:
        return f"{s[k]['hits']}/{s[k]['of']}"

    return (f"| {res['model']} | {res['constraint']} | {s['rows']} | {f('valid')} | {f('tool_chosen')} | "
            f"{f('first_tool')} | "
            f"{f('paths_right')} | {f('content_exact')} | {s['made_up_paths']} | {s['tokens_median']} "
            f"({s['tokens_mean']}) | {s['seconds_median']} ({s['seconds_mean']}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--constraint", choices=["grounded", "grammar", "none"], default="grounded")
    ap.add_argument("--limit", type=int, default=None, help="first N rows only")
    ap.add_argument("--max-string", type=int, default=400, help="extraction_max_string (free strings)")
    ap.add_argument("--out", type=Path, help="write the full result as JSON here")
    ap.add_argument("--rescore", type=Path, nargs="+", help="score saved results again (no model runs)")
    a = ap.parse_args()
    if a.rescore:
        print(HEADER)
        for path in a.rescore:
            print(line(rescore(json.loads(path.read_text()))))
        return
    preload_openblas("auto")
    res = asyncio.run(run(a.model, a.constraint, a.limit, a.max_string))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print(HEADER)
    print(line(res))


if __name__ == "__main__":
    main()
