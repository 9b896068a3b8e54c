"""OpenBLAS against MLX's bundled BLAS: the same prompt read by a dense float32 model, each in its own process
(OpenBLAS must be loaded before mlx.core is imported).

    .venv/bin/python scripts/measure_blas.py --model smollm2-135m --out docs/bench/blas.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from orchestration.models.blas import blas_status, preload_openblas
preload_openblas(sys.argv[2])
from orchestration.models.mlx_backend import MLXBackend
from orchestration.core.settings import load_settings
from orchestration.core.types import GenerationRequest, Message

s = load_settings(env={})
b = MLXBackend(s.models_dir, 8.0, prompt_cache_entries=0)
text = " ".join(f"item{i}" for i in range(int(sys.argv[4])))
req = GenerationRequest(model=sys.argv[3], messages=[Message(role="user", content=text)], max_tokens=1)
async def main():
    await b.stream(req.model_copy(update={"messages": [Message(role="user", content="warm up")]}))
    c = await b.stream(req)
    b.close()
    return {"prompt_tokens": c.prompt_tokens, "prompt_tps": round(c.prompt_tps, 1), "blas": blas_status()}
print(json.dumps(asyncio.run(main())))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--words", type=int, default=130, help="prompt length in words (about 3 tokens each)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    out: dict[str, object] = {"model": a.model, "command": " ".join(["scripts/measure_blas.py"] + sys.argv[1:])}
    for mode in ("openblas", "bundled"):
        r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), mode, a.model, str(a.words)],
                           capture_output=True, text=True, check=True)
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        print(mode, out[mode], file=sys.stderr)
    out["ratio"] = round(out["openblas"]["prompt_tps"] / out["bundled"]["prompt_tps"], 1)  # type: ignore[index]
    print(json.dumps(out, indent=1))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
