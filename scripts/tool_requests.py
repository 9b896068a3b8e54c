"""The request table (scripts/data/tool_requests.json, 150 rows): the whole hybrid pattern on the default profile,
scored on the calls a host would run.

Each row is a request (and for edits a file passed as context) with the calls a host wants. The primary answers
at the given budget; the calls are decided as the server decides them (``after``), and the same answer is also
given to the earlier model-written extraction (``before``: extraction_constraint = grounded), so both are scored on
one answer. Records are appended per (row, budget) to ``records.jsonl`` and a rerun skips what is there:

    .venv/bin/python scripts/tool_requests.py --budgets 128 256 512 --concurrency 6 --out docs/tool-requests
    .venv/bin/python scripts/tool_requests.py --out docs/tool-requests --report   # the report from the records

A row is all right when the calls' tools are the expected ones in order (consecutive Edits of one file count as
one) and each call is right: a Write to the expected path whose content parses (Python) and defines the expected
name; Edits that apply to the context (each old text once), keep every definition the file had and change the
expected ones; the expected Bash command exactly; Read/Glob/Grep with the expected path or pattern. Also counted:
made-up Bash commands (a command that is neither in the request or the answer's text, nor a fixed template over a
name the request gives) and calls that would lose data (a Write over a file the host showed, or Edits that drop a
definition).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import re
import sys
import time
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.models.blas import preload_openblas  # noqa: E402

TABLE = ROOT / "scripts" / "data" / "tool_requests.json"
TEMPLATES = [r"python3? (?P<n>\S+)", r"pytest(?: (?P<n>\S+))?", r"rm(?: -r)? (?P<n>\S+)", r"pip install (?:-r )?(?P<n>\S+)",
             r"ls (?P<n>\S+)", r"git (?:status|diff|log)", r"bash (?P<n>\S+)", r"node (?P<n>\S+)", r"ruff check \.",
             r"mypy \.", r"black \.", r"flake8", r"pylint \.", r"npx (?:eslint|prettier --check) \.", r"npm test",
             r"cargo test", r"go test \./\.\.\.", r"make test"]


def _defs(code: str) -> dict[str, str]:
    """name -> source of each top-level definition and assignment (class methods as Class.method)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return {}
    out: dict[str, str] = {}
    for node in tree.body:
        seg = ast.get_source_segment(code, node) or ""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = seg
            if isinstance(node, ast.ClassDef):
                for m in node.body:
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        out[f"{node.name}.{m.name}"] = ast.get_source_segment(code, m) or ""
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = seg
    return out


def _grouped(calls: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    for c in calls:
        if groups and c["tool"] == "Edit" and groups[-1][0]["tool"] == "Edit" and \
                groups[-1][0]["arguments"].get("file_path") == c["arguments"].get("file_path"):
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _call_ok(e: dict[str, Any], group: list[dict[str, Any]], row: dict[str, Any]) -> tuple[bool, str]:
    args = group[0]["arguments"]
    tool = e["tool"]
    if tool == "Write":
        if args.get("file_path") != e["file_path"]:
            return False, f"path {args.get('file_path')!r}"
        content = args.get("content", "")
        if e["file_path"].endswith(".py"):
            defs = _defs(content)
            if not defs and not content.strip():
                return False, "empty content"
            try:
                ast.parse(content)
            except SyntaxError:
                return False, "content does not parse"
            if e.get("defines") and e["defines"] not in defs:
                return False, f"content does not define {e['defines']}"
        return bool(content.strip()), "ok"
    if tool == "Edit":
        text = row["context"] or ""
        for c in group:
            a = c["arguments"]
            if a.get("file_path") != e["file_path"]:
                return False, f"path {a.get('file_path')!r}"
            if text.count(a.get("old_string", "")) != 1:
                return False, "old_string not unique in the file"
            text = text.replace(a["old_string"], a.get("new_string", ""), 1)
        before, after = _defs(row["context"] or ""), _defs(text)
        if not after:
            return False, "the edited file does not parse"
        lost = [k for k in e.get("keeps", []) if k not in after]
        if lost:
            return False, f"drops {lost}"
        unchanged = [k for k in e.get("changes", []) if k in before and before[k] == after.get(k)
                     or k not in before and k not in after]
        if unchanged:
            return False, f"does not change {unchanged}"
        return True, "ok"
    if tool == "Bash":
        return (args.get("command") in _as_list(e["command"]), f"command {args.get('command')!r}")
    if tool == "Read":
        return args.get("file_path") == e["file_path"], f"path {args.get('file_path')!r}"
    if tool in ("Glob", "Grep"):
        pat = args.get("pattern", "")
        ok = any(pat == p or (tool == "Grep" and pat.lower() == str(p).lower()) for p in _as_list(e["pattern"]))
        if "path" in e and (args.get("path") or "").rstrip("/") != e["path"].rstrip("/"):
            return False, f"path {args.get('path')!r}"
        return ok, f"pattern {pat!r}"
    return False, f"unknown tool {tool}"


def made_up(call: dict[str, Any], row: dict[str, Any], answer: str | None) -> bool:
    """A Bash command not quoted in the request or the answer and not a fixed template over a name given there."""
    if call["tool"] != "Bash":
        return False
    cmd = call["arguments"].get("command", "")
    if cmd and (cmd in row["request"] or (answer and cmd in answer)):
        return False
    for t in TEMPLATES:
        m = re.fullmatch(t, cmd)
        if m:
            name = m.groupdict().get("n")
            return bool(name) and name not in row["request"] and name != "requirements.txt"
    return True


def loses_data(calls: list[dict[str, Any]], row: dict[str, Any]) -> bool:
    ctx = row.get("context")
    if not ctx:
        return False
    names = set(_defs(ctx))
    text = ctx
    for c in calls:
        a = c["arguments"]
        if c["tool"] == "Write" and a.get("file_path") and a["file_path"] in row["request"]:
            if not names <= set(_defs(a.get("content", ""))):
                return True
        if c["tool"] == "Edit" and text.count(a.get("old_string", "")) == 1:
            text = text.replace(a["old_string"], a.get("new_string", ""), 1)
    return bool(names - set(_defs(text))) and bool(_defs(text))


def score(row: dict[str, Any], calls: list[dict[str, Any]] | None, answer: str | None) -> dict[str, Any]:
    calls = calls or []
    groups = _grouped(calls)
    expected = row["expected"]
    why = "ok"
    ok = [g[0]["tool"] for g in groups] == [e["tool"] for e in expected]
    if not ok:
        why = f"tools {[g[0]['tool'] for g in groups]} != {[e['tool'] for e in expected]}"
    else:
        for e, g in zip(expected, groups):
            good, reason = _call_ok(e, g, row)
            if not good:
                ok, why = False, f"{e['tool']}: {reason}"
                break
    return {"all_right": ok, "why": why, "made_up_bash": sum(made_up(c, row, answer) for c in calls),
            "loses_data": loses_data(calls, row)}


async def run(budgets: list[int], concurrency: int, out: Path, limit: int | None, before: bool) -> None:
    import anyio

    from orchestration.run.context import RunContext
    from orchestration.patterns.engine import Engine
    from orchestration.core.errors import MageError
    from orchestration.core.settings import load_settings
    from orchestration.tools.extract import extract_tool_calls
    from orchestration.core.types import PatternRequest

    settings = load_settings()
    old_settings = settings.model_copy(update={"extraction_constraint": "grounded"})
    rows = json.loads(TABLE.read_text())[:limit]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.jsonl"
    done = {(r["id"], r["budget"]) for r in read(path)}
    # Round-robin over the categories, so a run stopped early has every category in its records.
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_cat[row["category"]].append(row)
    mixed = [r for group in zip_longest(*by_cat.values()) for r in group if r is not None]
    todo = [(b, row) for b in budgets for row in mixed if (row["id"], b) not in done]
    print(f"{len(todo)} to run ({len(done)} already recorded)", file=sys.stderr)
    engine = Engine(settings)
    sem = anyio.Semaphore(concurrency)
    lock = anyio.Lock()

    async def one(budget: int, row: dict[str, Any]) -> None:
        async with sem:
            request = PatternRequest(prompt=row["request"], context=row.get("context"), max_tokens=budget)
            t0 = time.perf_counter()
            rec: dict[str, Any] = {"id": row["id"], "category": row["category"], "budget": budget}
            try:
                r = await engine.run("hybrid", request)
                rec.update(answer=r.text, calls=[c.model_dump() for c in r.tool_calls],
                           finish_reason=next((s.finish_reason for s in r.trace.steps if s.role == "primary"), None),
                           decision=r.trace.tool_decision.model_dump() if r.trace.tool_decision else None,
                           steps=[s.model_dump() for s in r.trace.steps], seconds=round(time.perf_counter() - t0, 2))
                if before:
                    ctx = RunContext("before", request, old_settings, engine.backends)
                    try:
                        rec["before_calls"] = [c.model_dump() for c in await extract_tool_calls(ctx, r.text)]
                    except MageError as e:
                        rec["before_calls"], rec["before_error"] = None, str(e)[:300]
                    rec["before_seconds"] = round(sum(s.seconds for s in ctx.trace.steps), 2)
            except MageError as e:
                rec.update(error=str(e)[:500], calls=None)
            async with lock:
                with path.open("a") as f:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            s = score(row, rec.get("calls"), rec.get("answer"))
            print(f"{budget:4d} {row['id']:8s} {'ok ' if s['all_right'] else 'BAD'} {rec.get('seconds')}s "
                  f"{s['why'][:70]}", file=sys.stderr)

    try:
        async with anyio.create_task_group() as tg:
            for budget, row in todo:
                tg.start_soon(one, budget, row)
    finally:
        engine.close()


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def report(out: Path) -> dict[str, Any]:
    """Per budget and category: all-right rates after and before, made-up Bash, data-losing calls."""
    rows = {r["id"]: r for r in json.loads(TABLE.read_text())}
    recs = read(out / "records.jsonl")
    table: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    main_job: dict[int, Any] = {}
    for rec in recs:
        row = rows[rec["id"]]
        after = score(row, rec.get("calls"), rec.get("answer"))
        for key in ((rec["budget"], rec["category"]), (rec["budget"], "all")):
            t = table[key]
            t["rows"] += 1
            t["after"] += after["all_right"]
            t["made_up_after"] += after["made_up_bash"]
            t["loses_after"] += after["loses_data"]
            t["cut_off"] += rec.get("finish_reason") == "length"
            t["model_step"] += bool(rec.get("decision") and rec["decision"]["decided_by"] == "model")
            if "before_calls" in rec:
                b = score(row, rec["before_calls"], rec.get("answer"))
                t["before_rows"] += 1
                t["before"] += b["all_right"]
                t["made_up_before"] += b["made_up_bash"]
                t["loses_before"] += b["loses_data"]
        if rec["id"] == "save-01":
            main_job[rec["budget"]] = {"calls": [(c["tool"], c["arguments"].get("file_path")) for c in
                                                 rec.get("calls") or []], "all_right": after["all_right"],
                                       "finish_reason": rec.get("finish_reason")}
    result = {"cells": {f"{b}/{c}": dict(v) for (b, c), v in sorted(table.items(), key=lambda kv: (kv[0][0],
                                                                                                kv[0][1]))},
              "main_job": main_job}
    lines = ["| budget | category | rows | all right (after) | all right (before) | made-up Bash after / before | "
             "data-losing calls after / before | answers cut off | model chose |", "|---|---|---|---|---|---|---|---|---|"]
    for (b, c), v in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all", kv[0][1])):
        before = f"{v['before']}/{v['before_rows']} = {100 * v['before'] / v['before_rows']:.1f}%" \
            if v["before_rows"] else "-"
        lines.append(f"| {b} | {c} | {v['rows']} | {v['after']}/{v['rows']} = {100 * v['after'] / v['rows']:.1f}% | "
                     f"{before} | {v['made_up_after']} / {v['made_up_before'] if v['before_rows'] else '-'} | "
                     f"{v['loses_after']} / {v['loses_before'] if v['before_rows'] else '-'} | {v['cut_off']} | "
                     f"{v['model_step']} |")
    (out / "report.md").write_text("# The request table on the default profile\n\n" + __doc__.split("\n\n")[1]
                                   + "\n\n" + "\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[512])
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--no-before", action="store_true", help="skip the earlier model-written extraction")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "tool-requests")
    ap.add_argument("--report", action="store_true", help="only write the report from the records")
    a = ap.parse_args()
    if not a.report:
        preload_openblas("auto")
        asyncio.run(run(a.budgets, a.concurrency, a.out, a.limit, not a.no_before))
    print((a.out / "report.md").read_text() if report(a.out) else "", end="")


if __name__ == "__main__":
    main()
