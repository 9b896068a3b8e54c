"""Section remote: the primary role in-process versus on mlx_lm.server (an OpenAI-compatible backend)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from ..settings import Settings, derive
from .common import SMALL, say, spread

__all__ = ["run"]


async def run(settings: Settings, reps: int) -> dict[str, Any]:
    """The primary role in-process versus on mlx_lm.server (same model directory, same request)."""
    from ..engine import Engine
    from ..models.catalog import LOCAL, local_dir
    from ..testing import free_port, mlx_lm_server_command, wait_http
    from ..types import PatternRequest

    model = settings.roles["primary"].model
    if model not in LOCAL:
        return {"skipped": f"primary is {model}; this comparison serves a local model on mlx_lm.server"}
    model_dir = local_dir(settings.models_dir, model)
    port = free_port()
    proc = subprocess.Popen(mlx_lm_server_command(str(model_dir), port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    call = PatternRequest(**SMALL, temperature=0.0)
    res: dict[str, Any] = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        remote_roles = {"primary": {"model": str(model_dir), "backend": "openai", "structured_output": "none",
                                    "base_url": f"http://127.0.0.1:{port}/v1"}}
        for name, roles in (("in_process", {}), ("mlx_lm_server", remote_roles)):
            eng = Engine(derive(settings, {"roles": roles}))
            try:
                await eng.run("primary", call)  # load
                ts = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    await eng.run("primary", call)
                    ts.append(time.perf_counter() - t0)
            finally:
                eng.close()
            res[name] = spread(ts)
    finally:
        proc.terminate()
        proc.wait(10)
    res["ratio"] = round(res["mlx_lm_server"]["median_s"] / res["in_process"]["median_s"], 3)
    say("  remote: done")
    return res
