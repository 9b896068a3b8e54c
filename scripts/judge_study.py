"""Order-free judges scored offline on a run's compete candidates, where exactly one of A and B is right.

    .venv/bin/python scripts/judge_study.py docs/eval-qwen-28-full --models qwen2.5-coder-0.5b qwen2.5-coder-1.5b \
        --out docs/eval-qwen-28-full/judge_study.jsonl
    .venv/bin/python scripts/judge_study.py docs/eval-qwen-28-full --summary docs/eval-qwen-28-full/judge_study.jsonl \
        > docs/eval-qwen-28-full/judge_study.json

The candidates are those the run's pointwise compete system judged (A: the primary's answer, B: the
competitor's); which one is right comes from the run's hidden-test scoring. Each candidate is scored on its own
by one model, so the order they are shown in cannot matter:

- ``p_yes``: the model's P(YES) to "Is the solution correct?" (the shipped pointwise judge; the 0.5B's figures
  must reproduce the run's recorded scores);
- ``coder``: the mean log-probability of the answer given the request (how natural the answer is);
- ``reviewer``: the log-probability of the problem statement given the code with its docstrings and comments
  removed (how well the code explains the task; Zhang et al. 2023, Coder-Reviewer reranking);
- ``coder+reviewer``: the coder score plus the reviewer score / 50 (the mean log-probability has a much smaller
  scale than the summed one).

Per-item rows are appended to ``--out`` as they are computed (a stopped study resumes); ``--summary`` tallies
each judge's accuracy per suite against always A and always B (the stronger model).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

SUITES = {"humaneval": "he", "mbpp": "mbpp"}


def strip_docs(code: str) -> str:
    """The code without docstrings or comments (what it does, not what it says it does); unchanged if it does not
    parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def one_right_items(run: Path) -> list[dict]:
    """Per suite, the pointwise compete system's items where exactly one candidate passed the hidden tests."""
    results = json.loads((run / "results.json").read_text())["results"]
    records = {(r["system"], r["item"]): r for r in map(json.loads, (run / "records.jsonl").open()) if r.get("judgement")}
    out = []
    for suite, prefix in SUITES.items():
        for row in results.get(suite, {}).get("per_item", []):
            if (row["system"] != f"{prefix}-compete-judge" or row.get("A") is None or row.get("B") is None
                    or row["A"] == row["B"]):
                continue
            j = records[(row["system"], row["item"])]["judgement"]
            out.append({"suite": suite, "item": row["item"], "right": "A" if row["A"] else "B",
                        "A": j["candidates"]["A"], "B": j["candidates"]["B"], "recorded_p_yes": j.get("scores")})
    return out


def tally(rows: list[dict], judges: list[str]) -> dict:
    """Accuracy of each judge (higher score wins; a tie goes to B, as in the shipped judge) per suite."""
    out: dict = {}
    for suite in SUITES:
        mine = [r for r in rows if r["suite"] == suite]
        if not mine:
            continue
        cell = {"n": len(mine), "always_A": sum(r["right"] == "A" for r in mine),
                "always_B": sum(r["right"] == "B" for r in mine)}
        for judge in judges:
            scored = [r for r in mine if judge in r["scores"]["A"]]
            right = sum(("A" if r["scores"]["A"][judge] > r["scores"]["B"][judge] else "B") == r["right"]
                        for r in scored)
            cell[judge] = right if len(scored) == len(mine) else {"right": right, "of": len(scored)}
        out[suite] = cell
    return out


def _scorer(model_name: str) -> tuple[Callable[[list[dict], str], tuple[float, int]], Callable[[list[dict]], float]]:
    """log P(target | messages) under the model, summed over the target's tokens (and the token count); and
    P(YES) against NO as the first token of the reply."""
    import mlx.core as mx
    from mlx_lm import load

    from orchestration.core.settings import default_cache_dir

    model, tok = load(str(default_cache_dir() / "models" / f"{model_name}-instruct-dense"))

    def logp(messages: list[dict], target: str) -> tuple[float, int]:
        prefix = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = tok.encode(target, add_special_tokens=False)
        full = mx.array([list(prefix) + ids])
        logits = model(full)[0, len(prefix) - 1:-1].astype(mx.float32)
        lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        total = mx.take_along_axis(lp, mx.array(ids)[:, None], axis=-1).sum().item()
        return float(total), len(ids)

    def p_yes(messages: list[dict]) -> float:
        prefix = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        logits = model(mx.array([list(prefix)]))[0, -1].astype(mx.float32)
        yes, no = (tok.encode(w, add_special_tokens=False)[0] for w in ("YES", "NO"))
        a, b = logits[yes].item(), logits[no].item()
        return 1 / (1 + math.exp(b - a))

    return logp, p_yes


def score_items(items: list[dict], model_name: str, out: Path) -> None:
    from orchestration.checks.verify import python_code
    from orchestration.core.types import PatternRequest
    from orchestration.evaluation import humaneval, mbpp
    from orchestration.evaluation.data import load_humaneval
    from orchestration.core.settings import default_cache_dir
    from orchestration.run import prompts

    done = {(r["item"], r["model"]) for r in map(json.loads, out.open())} if out.exists() else set()
    todo = [it for it in items if (it["item"], model_name) not in done]
    if not todo:
        return
    problems = {p.task_id: p for p in load_humaneval(default_cache_dir(), download=False)}
    problems |= {f"Mbpp/{p.task_id}": p for p in mbpp.load_mbpp()}
    logp, p_yes = _scorer(model_name)
    for it in todo:
        prob = problems[it["item"]]
        task = humaneval.task_prompt(prob) if it["suite"] == "humaneval" else mbpp.task_prompt(prob)
        statement = prob.prompt.strip()
        req = PatternRequest(prompt=task)
        ask = [m.model_dump() for m in prompts.answer(req)]
        scores = {}
        for side in ("A", "B"):
            text = it[side]
            code = strip_docs(python_code(text) or text)
            c_lp, c_n = logp(ask, text)
            r_lp, _ = logp([{"role": "user", "content": f"```python\n{code}\n```\n\nWrite the task this code "
                                                            "solves, as its docstring would state it."}], statement)
            judged = [m.model_dump() for m in prompts.correctness(req, text)]
            scores[side] = {"p_yes": round(p_yes(judged), 4), "coder": round(c_lp / max(c_n, 1), 4),
                            "reviewer": round(r_lp, 3)}
            scores[side]["coder+reviewer"] = round(scores[side]["coder"] + scores[side]["reviewer"] / 50, 4)
        row = {"suite": it["suite"], "item": it["item"], "model": model_name, "right": it["right"],
               "recorded_p_yes": it["recorded_p_yes"], "scores": scores}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(it["item"], model_name, json.dumps(scores), file=sys.stderr, flush=True)


JUDGES = ["p_yes", "coder", "reviewer", "coder+reviewer"]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--summary", type=Path)
    args = ap.parse_args(argv)
    if args.models and args.out is None:
        ap.error("--models needs --out (the per-item rows, appended as they are computed)")
    if args.summary:
        rows = [json.loads(line) for line in args.summary.open() if line.strip()]
        doc = {m: tally([r for r in rows if r["model"] == m], JUDGES) for m in sorted({r["model"] for r in rows})}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    from orchestration.models.blas import preload_openblas

    preload_openblas()
    items = one_right_items(args.run)
    for m in args.models:
        score_items(items, m, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
