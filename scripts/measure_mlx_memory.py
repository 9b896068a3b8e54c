"""MLX memory under concurrent load: RSS, active, buffer-cache and peak memory after each round of 8 concurrent
primary calls on the tiny profile (20-500-word prompts, 16-96-token answers, seeded).

    .venv/bin/python scripts/measure_mlx_memory.py > docs/bench/mlx_memory.txt
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import anyio, resource, os, random
from orchestration.models.blas import preload_openblas
preload_openblas("auto")
import mlx.core as mx
from orchestration.core.settings import load_settings
from orchestration.patterns.engine import Engine
from orchestration.core.types import PatternRequest

def rss():
    return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * 4096 / 2**20

async def main():
    s = load_settings(env={}, profile="tiny", temperature=0.0, batch_size=8, continuation_tokens=0)
    e = Engine(s)
    rnd = random.Random(0)
    for round_ in range(6):
        async with anyio.create_task_group() as tg:
            for i in range(8):
                words = " ".join(f"w{rnd.randrange(1000)}" for _ in range(rnd.randrange(20, 500)))
                tg.start_soon(e.run, "primary", PatternRequest(prompt=f"Summarize: {words}", max_tokens=rnd.randrange(16, 96)))
        print(round_, f"rss {rss():.0f} MB active {mx.get_active_memory()/2**20:.0f} MB cache {mx.get_cache_memory()/2**20:.0f} MB peak {mx.get_peak_memory()/2**20:.0f} MB", flush=True)
    e.close()
anyio.run(main)
