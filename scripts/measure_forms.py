"""Speed and correctness of each local Qwen2.5-Coder model in each MLX form, measured in one run.

For each model (0.5B, 1.5B) and form (dense float32, bfloat16, 8-bit and 4-bit MLX quantization made
in memory from the dense weights): prompt tok/s on an ~880-token prompt, generation tok/s (greedy),
peak memory, and whether greedy answers to two small coding requests pass their asserts (run in the
project's sandbox where one exists, else refused). Then the 1.5B drafted by the 0.5B (speculative
decoding, ``num_draft_tokens`` 2-4): tok/s, acceptance, and whether the output is token-identical.

Usage: .venv/bin/python scripts/measure_forms.py [--out docs/forms.json] [--gen 64] [--forms fp32,bf16,q8,q4]
Writes JSON records (resumable: a finished (model, form) is not measured again) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.models.blas import preload_openblas  # noqa: E402

preload_openblas()

TASKS = {
    "is_prime": ("Write a Python function is_prime(n) that returns True when n is a prime number. "
                 "Reply with the code only.",
                 "assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]\n"
                 "assert not is_prime(1) and not is_prime(0)"),
    "run_length_encode": ("Write a Python function run_length_encode(s) that returns a list of (character, count) "
                          "tuples. Reply with the code only.",
                          "assert run_length_encode('aaabcc') == [('a', 3), ('b', 1), ('c', 2)]\n"
                          "assert run_length_encode('') == []"),
}
LONG = ("Here is some context about a code base. " + " ".join(
    f"Module m{i} defines function f{i}(x) which returns x plus {i} and is used by the scheduler." for i in range(40)))


def _check(text: str, asserts: str) -> bool:
    from orchestration.checks.sandbox import run_python  # the project's isolated runner (bubblewrap here)

    blocks = re.findall(r"```(?:python|py)?\n(.*?)```", text, re.S)
    code = blocks[0] if blocks else text
    return run_python(code + "\n" + asserts).passed


def _form(model, form: str):  # noqa: ANN001, ANN202
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_map

    if form == "bf16":
        model.update(tree_map(lambda a: a.astype(mx.bfloat16), model.parameters()))
    elif form in ("q8", "q4"):
        nn.quantize(model, group_size=64, bits=8 if form == "q8" else 4)
    mx.eval(model.parameters())
    return model


def measure(path: Path, form: str, gen: int, tasks: bool = True) -> dict:
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tok = load(str(path))
    model = _form(model, form)
    greedy = make_sampler(temp=0.0)
    prompt = tok.apply_chat_template([{"role": "user", "content": LONG + "\nSummarize in one line."}],
                                     add_generation_prompt=True)
    mx.reset_peak_memory()
    last = None
    for last in stream_generate(model, tok, prompt, max_tokens=gen, sampler=greedy):
        pass
    out = {"prompt_tokens": last.prompt_tokens, "prompt_tps": round(last.prompt_tps, 1),
           "generation_tokens": last.generation_tokens, "generation_tps": round(last.generation_tps, 2),
           "peak_gb": round(mx.get_peak_memory() / 1e9, 2)}
    for name, (ask, asserts) in (TASKS.items() if tasks else ()):
        p = tok.apply_chat_template([{"role": "user", "content": ask}], add_generation_prompt=True)
        text = "".join(r.text for r in stream_generate(model, tok, p, max_tokens=200, sampler=greedy))
        out[name] = _check(text, asserts)
    return out


def speculative(big: Path, small: Path, gen: int, drafts: list[int]) -> list[dict]:
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tok = load(str(big))
    draft, _ = load(str(small))
    greedy = make_sampler(temp=0.0)
    p = tok.apply_chat_template([{"role": "user", "content": TASKS["run_length_encode"][0]}],
                                add_generation_prompt=True)
    base = list(stream_generate(model, tok, p, max_tokens=gen, sampler=greedy))
    rows = [{"num_draft_tokens": 0, "generation_tps": round(base[-1].generation_tps, 2), "identical": True}]
    ref = [r.token for r in base]
    for n in drafts:
        t0 = time.perf_counter()
        recs = list(stream_generate(model, tok, p, max_tokens=gen, sampler=greedy, draft_model=draft,
                                    num_draft_tokens=n))
        accepted = sum(1 for r in recs if getattr(r, "from_draft", False))
        rows.append({"num_draft_tokens": n, "generation_tps": round(recs[-1].generation_tps, 2),
                     "wall_s": round(time.perf_counter() - t0, 2), "accepted": accepted, "tokens": len(recs),
                     "acceptance": round(accepted / max(1, len(recs)), 3), "identical": [r.token for r in recs] == ref})
    return rows


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else "pass" if ok else "fail"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/forms.json"))
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--forms", default="fp32,bf16,q8,q4")
    ap.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--drafts", default="2,3,4")
    ap.add_argument("--no-tasks", action="store_true", help="speed only: skip the two coding requests")
    args = ap.parse_args()
    from orchestration.models.catalog import local_dir
    from orchestration.core.settings import load_settings

    models_dir = load_settings().models_dir
    done = json.loads(args.out.read_text()) if args.out.exists() else {"forms": {}, "speculative": None}
    for name in args.models.split(","):
        for form in args.forms.split(","):
            key = f"{name}/{form}"
            if key in done["forms"]:
                continue
            t0 = time.perf_counter()
            done["forms"][key] = {**measure(local_dir(models_dir, name), form, args.gen, not args.no_tasks),
                                  "seconds": round(time.perf_counter() - t0, 1)}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(done, indent=2))
            print(key, done["forms"][key], file=sys.stderr, flush=True)
    if args.drafts and done.get("speculative") is None:
        done["speculative"] = speculative(local_dir(models_dir, "qwen2.5-coder-1.5b"),
                                          local_dir(models_dir, "qwen2.5-coder-0.5b"), args.gen,
                                          [int(n) for n in args.drafts.split(",")])
        args.out.write_text(json.dumps(done, indent=2))
    print("| model / form | prompt tok/s | gen tok/s | peak GB | is_prime | run_length_encode |")
    print("|---|---|---|---|---|---|")
    for key, r in done["forms"].items():
        print(f"| {key} | {r['prompt_tps']} | {r['generation_tps']} | {r['peak_gb']} | "
              f"{_mark(r.get('is_prime'))} | {_mark(r.get('run_length_encode'))} |")
    for r in done["speculative"] or []:
        print(f"speculative 1.5B drafted by 0.5B, {r['num_draft_tokens']} draft tokens: {r['generation_tps']} tok/s, "
              f"acceptance {r.get('acceptance', '-')}, identical {r['identical']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
