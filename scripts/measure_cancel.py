"""How fast a cancel takes effect while the model reads a long prompt (chunked prefill), in one run.

The primary model reads a ~4k-token prompt once in full (its prefill time), then the same prompt again,
cancelled at 30% of that time; the figure is the time from the cancel to the next (one-token) call having
started and finished, against the time the rest of the prefill would have taken.

    .venv/bin/python scripts/measure_cancel.py --out docs/bench/cancel.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.models.blas import preload_openblas  # noqa: E402


async def measure(model: str, words: int, prefill_step: int) -> dict:
    import anyio

    from orchestration.models.mlx_backend import MLXBackend
    from orchestration.core.settings import load_settings
    from orchestration.core.types import GenerationRequest, Message

    settings = load_settings()
    backend = MLXBackend(settings.models_dir, settings.memory_budget_gb, prefill_step=prefill_step,
                         prompt_cache_entries=0)

    def ask(text: str) -> GenerationRequest:
        return GenerationRequest(model=model, messages=[Message(role="user", content=text)], max_tokens=1)

    long = ask(" ".join(f"item{i}" for i in range(words)))
    try:
        await backend.stream(ask("hi"))  # load
        t0 = time.perf_counter()
        full = await backend.stream(long)
        full_s = time.perf_counter() - t0
        with anyio.move_on_after(full_s * 0.3):
            await backend.stream(long)
        cancelled = time.perf_counter()
        await backend.stream(ask("hi"))
        after = time.perf_counter() - cancelled
    finally:
        backend.close()
    return {"model": model, "prompt_tokens": full.prompt_tokens, "prefill_step": prefill_step,
            "full_prefill_s": round(full_s, 2), "cancel_at_s": round(full_s * 0.3, 2),
            "rest_of_prefill_s": round(full_s * 0.7, 2), "cancel_to_next_call_done_s": round(after, 2),
            "one_chunk_s": round(full_s * prefill_step / full.prompt_tokens, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--words", type=int, default=1300, help="prompt words (item0 item1 ...; ~3 tokens each)")
    p.add_argument("--prefill-step", type=int, default=256)
    p.add_argument("--out", default="docs/bench/cancel.json")
    args = p.parse_args()
    import anyio

    preload_openblas()
    r = anyio.run(measure, args.model, args.words, args.prefill_step)
    r["command"] = "python " + " ".join(sys.argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=1) + "\n")
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
