"""MLX memory under concurrent load: RSS, active, buffer-cache and peak memory after each round of 8 concurrent
primary calls on the tiny profile (20-500-word prompts, 16-96-token answers, seeded).

    .venv/bin/python scripts/measure_mlx_memory.py > docs/bench/mlx_memory.txt
    .venv/bin/python scripts/measure_mlx_memory.py --lazy   # the prompt cache before commit 380aa44: entries kept unevaluated
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

def keep_lazy() -> None:
    """The prompt cache as it was: a batched call's KV state inserted unevaluated (a lazy slice of the batch)."""
    from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache
    from orchestration.models import mlx_backend

    def _remember(self, spec, tokens, cache):
        n = mlx_backend._cache_tokens(cache)
        if not self.prompt_cache_entries or n == 0 or n > len(tokens) or not can_trim_prompt_cache(cache):
            return
        lru = self._prompt_caches.get(spec.key)
        if lru is None:
            lru = self._prompt_caches[spec.key] = LRUPromptCache(self.prompt_cache_entries, self.prompt_cache_bytes)
        lru.insert_cache(spec.key, tokens[:n], cache)

    mlx_backend.MLXBackend._remember = _remember


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
if "--lazy" in sys.argv[1:]:
    keep_lazy()
anyio.run(main)
