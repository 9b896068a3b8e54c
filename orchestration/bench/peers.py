"""Section peers: MLX against llama.cpp on the same GGUF, the same token ids, the same machine.

For each local Qwen model the profile's roles use: MLX (the converted dense float32 directory, plain
mlx-lm ``stream_generate``) and llama.cpp (``llama-cpp-python`` on the GGUF the conversion came from,
its own K-quant kernels, as many threads as cores) read the same prompt ids and write greedy tokens.
Prompt and generation tokens per second side by side; nothing of the engine around either.
llama.cpp is an optional, bench-only extra (``pip install -e '.[llama]'``); without it the section says so.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..core.settings import Settings
from .common import say

__all__ = ["run", "PROMPT_TOKENS", "GEN_TOKENS"]

PROMPT_TOKENS = 512
GEN_TOKENS = 48
_TEXT = ("Here is some context about a code base. " + " ".join(
    f"Module m{i} defines function f{i}(x) which returns x plus {i} and is used by the scheduler." for i in range(60)))


def _prompt_ids(tokenizer: Any) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": _TEXT + "\nSummarise what the modules do, in detail."}],
        add_generation_prompt=True)
    head = ids[: PROMPT_TOKENS - 8]
    return head + ids[-8:] if len(ids) > PROMPT_TOKENS else ids


def _mlx(model_dir: str) -> dict[str, Any]:
    """MLX on the converted directory; also the prompt ids both engines read (from its tokenizer)."""
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tok = load(model_dir)
    ids = _prompt_ids(tok)
    greedy = make_sampler(0.0)
    list(stream_generate(model, tok, mx.array(ids[:16]), max_tokens=2, sampler=greedy))  # warm
    last = None
    out: list[int] = []
    for r in stream_generate(model, tok, mx.array(ids), max_tokens=GEN_TOKENS, sampler=greedy):
        last = r
        out.append(int(r.token))
    assert last is not None
    del model
    return {"prompt_tps": round(last.prompt_tps, 1), "generation_tps": round(last.generation_tps, 2),
            "peak_memory_gb": round(last.peak_memory, 2), "tokens": out, "ids": ids}


def _llama(gguf: str, ids: list[int]) -> dict[str, Any]:
    from llama_cpp import Llama

    threads = os.cpu_count() or 1
    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512,
                verbose=False, seed=0)
    llm.create_completion(ids[:16], max_tokens=2, temperature=0.0)  # warm
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    prompt_s = time.perf_counter() - t0
    out: list[int] = []
    t0 = time.perf_counter()
    for _ in range(GEN_TOKENS):
        token = llm.sample(temp=0.0, top_k=1)
        out.append(int(token))
        if token == llm.token_eos():
            break
        llm.eval([token])
    gen_s = time.perf_counter() - t0
    llm.close()
    return {"prompt_tps": round(len(ids) / prompt_s, 1), "generation_tps": round(len(out) / gen_s, 2),
            "threads": threads, "tokens": out}


def _llama_isolated(gguf: str, ids: list[int]) -> dict[str, Any]:
    """``_llama`` in a child process: a crash in llama.cpp's kernels is reported, not the bench's end."""
    import json
    import subprocess
    import sys

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "llama.json"
        p = subprocess.run([sys.executable, "-m", "orchestration.bench.peers", gguf, str(result)],
                           input=json.dumps(ids), capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
            return {"crashed": f"llama.cpp died ({how}) on {gguf}: {p.stderr.strip()[-300:]}"}
        return json.loads(result.read_text())


def run(settings: Settings) -> dict[str, Any]:
    from ..models import qwen25_coder
    from ..models.catalog import local_dir

    try:
        import llama_cpp
    except ImportError:
        return {"skipped": "llama-cpp-python is not installed (an optional bench extra: pip install -e '.[llama]')"}
    names = sorted({c.model for c in settings.roles.values() if c.model in qwen25_coder.MODELS})
    if not names:
        return {"skipped": "no role runs a local Qwen2.5-Coder model (the GGUF both engines read)"}
    res: dict[str, Any] = {"llama_cpp_python": llama_cpp.__version__, "prompt_tokens": None,
                           "generation_tokens": GEN_TOKENS, "models": {}}
    for name in names:
        model = qwen25_coder.MODELS[name]
        gguf = settings.cache_dir / "gguf" / model.source.name
        if not gguf.is_file():
            res["models"][name] = {"skipped": f"{gguf} is missing: run `mageagent setup --model {name}`"}
            continue
        mlx = _mlx(str(local_dir(settings.models_dir, name)))
        ids = mlx.pop("ids")
        res["prompt_tokens"] = len(ids)
        cpp = _llama_isolated(str(gguf), ids)
        if "crashed" in cpp:
            res["models"][name] = {"mlx_dense_fp32": {k: v for k, v in mlx.items() if k != "tokens"},
                                   "skipped": cpp["crashed"]}
            continue
        n = min(len(mlx["tokens"]), len(cpp["tokens"]))
        same = next((i for i in range(n) if mlx["tokens"][i] != cpp["tokens"][i]), n)
        res["models"][name] = {
            "mlx_dense_fp32": {k: v for k, v in mlx.items() if k != "tokens"},
            f"llama_cpp_{model.source.name.rsplit('-', 1)[-1].removesuffix('.gguf')}":
                {k: v for k, v in cpp.items() if k != "tokens"},
            "prompt_ratio_llama_over_mlx": round(cpp["prompt_tps"] / mlx["prompt_tps"], 2),
            "generation_ratio_llama_over_mlx": round(cpp["generation_tps"] / mlx["generation_tps"], 2),
            "greedy_tokens_agreeing_before_first_difference": f"{same}/{n}",
        }
        say(f"  peers: {name} done")
    return res


if __name__ == "__main__":  # the child of _llama_isolated: GGUF and result path as arguments, ids on stdin
    import json
    import sys
    from pathlib import Path

    Path(sys.argv[2]).write_text(json.dumps(_llama(sys.argv[1], json.loads(sys.stdin.read()))))
