"""Section http: a warm call through `mageagent serve` (the OpenAI-compatible API) against the engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from .common import SMALL, say, spread

__all__ = ["run"]


async def run(reps: int, config: str | None) -> dict[str, Any]:
    import httpx2

    from ..models.testing import free_port, wait_http

    port = free_port()
    env = {**os.environ, **({"MAGEAGENT_CONFIG": config} if config else {})}
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.faces.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        body = {"model": "mageagent:primary", "messages": [{"role": "user", "content": SMALL["prompt"]}],
                "max_tokens": SMALL["max_tokens"], "temperature": 0}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        times = []
        async with httpx2.AsyncClient(timeout=300) as client:
            (await client.post(url, json=body)).raise_for_status()  # load
            for _ in range(reps):
                t0 = time.perf_counter()
                (await client.post(url, json=body)).raise_for_status()
                times.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(10)
    say("  http: done")
    return {"warm_call": spread(times)}
