"""Sections patterns and overhead: each pattern's wall time on the fixed prompt, and against plain mlx-lm."""

from __future__ import annotations

import statistics
import time
from typing import Any

from .common import PROMPT, say, spread

__all__ = ["PATTERNS", "run"]

PATTERNS = ["primary", "tools", "hybrid", "validated", "compete", "auto"]
SEED_RATIOS = {"primary": 1.0, "tools": 0.13, "hybrid": 1.5, "validated": 2.0, "compete": 3.0}


async def run(engine: Any, reps: int, max_tokens: int, overhead: bool) -> dict[str, Any]:
    from ..core.types import PatternRequest

    request = PatternRequest(prompt=PROMPT, extraction="always", max_tokens=max_tokens, temperature=0.0)
    await engine.run("primary", request)  # load and warm up outside the measurement
    times: dict[str, list[float]] = {p: [] for p in PATTERNS}
    steps: dict[str, list[list[dict[str, Any]]]] = {p: [] for p in PATTERNS}
    route = None
    for rep in range(reps):
        for p in PATTERNS:
            t0 = time.perf_counter()
            r = await engine.run(p, request)
            times[p].append(time.perf_counter() - t0)
            steps[p].append([{"purpose": s.purpose, "role": s.role, "model": s.model, "prompt_tokens": s.prompt_tokens,
                              "completion_tokens": s.completion_tokens, "seconds": s.seconds} for s in r.trace.steps])
            route = r.trace.route or route
        say(f"  patterns: repetition {rep + 1}/{reps} done")
    base = statistics.median(times["primary"])
    out: dict[str, Any] = {"auto_route": route, "patterns": {}}
    for p in PATTERNS:
        last = steps[p][-1]
        step_medians = [{"purpose": s["purpose"], "role": s["role"], "prompt_tokens": s["prompt_tokens"],
                         "completion_tokens": s["completion_tokens"],
                         "median_s": round(statistics.median(run[i]["seconds"] for run in steps[p]
                                                             if len(run) == len(last)), 3)}
                        for i, s in enumerate(last)]
        out["patterns"][p] = {**spread(times[p]), "ratio_to_primary": round(statistics.median(times[p]) / base, 3),
                              "seed_ratio": SEED_RATIOS.get(p), "steps": step_medians}
    if overhead:
        out["overhead"] = await _overhead(engine, times, steps)
    return out


async def _overhead(engine: Any, times: dict[str, list[float]],
                    steps: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    """Wall time of each pattern run against plain mlx-lm for the same token counts, per run, then medians."""
    res = {}
    for p in PATTERNS:
        ratios, raws = [], []
        for wall, run in zip(times[p], steps[p]):
            raw = 0.0
            for s in run:
                backend = engine.backends[engine.settings.roles[s["role"]].backend_key]
                if not hasattr(backend, "raw_seconds"):
                    return {"skipped": "a role is on a remote backend; raw mlx-lm timing needs in-process models"}
                raw += await backend.raw_seconds(s["model"], s["prompt_tokens"], s["completion_tokens"])
            raws.append(raw)
            if raw > 0:  # a run decided by facts alone (the tools pattern on a named file) has no model step
                ratios.append(wall / raw)
        if not ratios:
            res[p] = {"wall_median_s": round(statistics.median(times[p]), 3), "raw_mlx_lm_median_s": 0.0,
                      "ratio_median": None, "note": "no model step: decided by facts"}
            continue
        res[p] = {"wall_median_s": round(statistics.median(times[p]), 3), "raw_mlx_lm_median_s":
                  round(statistics.median(raws), 3), "ratio_median": round(statistics.median(ratios), 3),
                  "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)}
    say("  overhead: done")
    return res
