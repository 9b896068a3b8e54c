"""``mageagent bench``: speed and memory of the configured profile, as medians and ratios measured in one run.

Sections (all by default):
- patterns: each pattern's wall time on a fixed prompt with fixed max_tokens, median/min/max over reps, ratio to
  primary, and the median seconds of each step (the plot's bars);
- overhead: each pattern's wall time against the sum of plain mlx-lm ``generate_step`` runs for the same prompt
  and completion token counts of its steps (what the engine adds: templates, grammar, detokenizing, trace);
- tools: constrained versus unconstrained extraction (tokens/s, valid-call rate, expected tool) and the grammar
  mask's cost per token over a fixed table;
- mcp: the stdio server's start to ``initialize`` answer, ``tools/list``, first and warm ``tools/call`` against
  the same call on the engine directly (the client is the MCP face's, run as a process:
  ``python -m mcp_mageagent.bench``);
- http: a warm call through ``mageagent serve`` (the OpenAI-compatible API) against the engine directly;
- remote: primary on ``mlx_lm.server`` (an OpenAI-compatible backend) against in-process, same model;
- memory: peak resident memory of a fresh process running compete (short answers) on each memory profile
  against the sum of the sizes of the models it loaded;
- footprint: the tokens a host puts in its model's context for the published tools (names, descriptions,
  input schemas; output schemas apart), with a real tokenizer, against the budget.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.settings import Settings
from . import footprint, http_api, mcp_stdio, memory, patterns, peers, remote, tools
from .common import PROMPT
from .memory import MEMORY_PROFILES, memory_probe
from .report import markdown, plot
from .tools import TOOL_TABLE

__all__ = ["SECTIONS", "MEMORY_PROFILES", "TOOL_TABLE", "run_bench", "markdown", "plot", "memory_probe"]

SECTIONS = ("patterns", "overhead", "tools", "mcp", "http", "remote", "memory", "footprint", "peers")


async def run_bench(settings: Settings, *, reps: int = 3, max_tokens: int = 48, sections: list[str] | None = None,
                    tool_items: int = len(TOOL_TABLE)) -> dict[str, Any]:
    from ..models.blas import blas_status
    from ..patterns.engine import Engine

    if reps < 1:
        raise ValueError("reps must be at least 1")
    chosen = list(sections or SECTIONS)
    bad = [s for s in chosen if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    config = str(settings.config_file) if settings.config_file else None  # for the server subprocesses
    run_settings = settings.model_copy(update={"extraction_max_string": 64, "extraction_max_calls": 2})
    engine = Engine(run_settings)
    out: dict[str, Any] = {"profile": settings.profile, "roles": {r: c.model for r, c in settings.roles.items()},
                           "blas": blas_status(), "reps": reps, "max_tokens": max_tokens, "prompt": PROMPT,
                           "sections": chosen, "cpu_count": os.cpu_count()}
    try:
        if "patterns" in chosen or "overhead" in chosen:
            out.update(await patterns.run(engine, reps, max_tokens, "overhead" in chosen))
        if "tools" in chosen:
            out["tools"] = await tools.run(engine, tool_items)
        if "mcp" in chosen:
            out["mcp"] = await mcp_stdio.run(engine, reps, config)
        out["models"] = [s.model_dump(mode="json") for b in engine.backends.values() for s in b.state()]
    finally:
        engine.close()
    if "http" in chosen:
        out["http"] = await http_api.run(reps, config)
        if "mcp" in out:
            out["http"]["warm_overhead_ratio"] = round(out["http"]["warm_call"]["median_s"] /
                                                       out["mcp"]["engine_direct"]["median_s"], 3)
    if "remote" in chosen:
        out["remote"] = await remote.run(settings, reps)
    if "memory" in chosen:
        out["memory"] = memory.run(max_tokens, reps)
    if "footprint" in chosen:
        out["footprint"] = footprint.run(settings, config)
    if "peers" in chosen:
        out["peers"] = peers.run(settings)
    return out


