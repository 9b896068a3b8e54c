"""Section mcp: the stdio server's handshake, tools/list and calls against the engine directly."""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

from .common import SMALL, say, spread

__all__ = ["run"]


async def run(engine: Any, reps: int, config: str | None) -> dict[str, Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from ..core.types import PatternRequest

    call = PatternRequest(**SMALL, temperature=0.0)
    direct = []
    await engine.run("primary", call)
    for _ in range(reps):
        t0 = time.perf_counter()
        await engine.run("primary", call)
        direct.append(time.perf_counter() - t0)
    env = {**os.environ, **({"MAGEAGENT_CONFIG": config} if config else {})}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_mageagent"], env=env)
    handshakes, lists, firsts, warm = [], [], [], []
    args = {"prompt": call.prompt, "max_tokens": call.max_tokens, "temperature": 0}
    for rep in range(reps):
        t0 = time.perf_counter()
        async with Client(params, mode="legacy") as client:
            handshakes.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            await client.list_tools()
            lists.append(time.perf_counter() - t1)
            t2 = time.perf_counter()
            await client.call_tool("mage_primary", args)
            firsts.append(time.perf_counter() - t2)
            if rep == 0:
                for _ in range(reps):
                    t3 = time.perf_counter()
                    await client.call_tool("mage_primary", args)
                    warm.append(time.perf_counter() - t3)
    say("  mcp: done")
    d = statistics.median(direct)
    return {"start_to_initialize": spread(handshakes), "tools_list": spread(lists),
            "first_call_with_load": spread(firsts), "warm_call": spread(warm), "engine_direct": spread(direct),
            "warm_overhead_ratio": round(statistics.median(warm) / d, 3),
            "warm_overhead_ms": round(1000 * (statistics.median(warm) - d), 1)}
