"""Section mcp: the stdio server's handshake, tools/list and calls against the engine directly.

The MCP client is the face's (``python -m mcp_mageagent.bench stdio``, in its own process); this section times
the same call on the engine and sets the two side by side.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from ..core.types import PatternRequest
from .common import SMALL, mcp_probe, say, spread

__all__ = ["run"]


async def run(engine: Any, reps: int, config: str | None) -> dict[str, Any]:
    call = PatternRequest(**SMALL, temperature=0.0)
    direct = []
    await engine.run("primary", call)
    for _ in range(reps):
        t0 = time.perf_counter()
        await engine.run("primary", call)
        direct.append(time.perf_counter() - t0)
    args = {"prompt": call.prompt, "max_tokens": call.max_tokens, "temperature": 0}
    timed = mcp_probe(["stdio", "--reps", str(reps), "--call", json.dumps(args)], config)
    say("  mcp: done")
    d, warm = statistics.median(direct), statistics.median(timed["warm_call"])
    return {"start_to_initialize": spread(timed["start_to_initialize"]), "tools_list": spread(timed["tools_list"]),
            "first_call_with_load": spread(timed["first_call_with_load"]), "warm_call": spread(timed["warm_call"]),
            "engine_direct": spread(direct), "warm_overhead_ratio": round(warm / d, 3),
            "warm_overhead_ms": round(1000 * (warm - d), 1)}
