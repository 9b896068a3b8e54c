"""Section tools: constrained versus unconstrained extraction over the request table (tool_table.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import say, spread

__all__ = ["TOOL_TABLE", "run"]

# (request, the tool it should call): data, so the table can grow without touching code.
TOOL_TABLE: list[tuple[str, str]] = [(row["request"], row["expected"]) for row in
                                     json.loads((Path(__file__).parent / "tool_table.json").read_text())]


async def run(engine: Any, items: int) -> dict[str, Any]:
    from ..run import prompts
    from ..core.errors import ModelOutputError
    from ..tools.catalogue import SEED_TOOLS
    from ..tools.extract import extraction_schema, lenient_json, parse_calls
    from ..tools.schema import token_bound
    from ..core.types import Constraint, GenerationRequest, PatternRequest

    cfg = engine.settings.roles["tools"]
    backend = engine.backends[cfg.backend_key]
    schema = extraction_schema(SEED_TOOLS, 2, 64)
    budget = token_bound(schema) + 1
    valid = {"constrained": 0, "unconstrained": 0}
    tps: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
    masks: list[float] = []
    rows = []
    table = TOOL_TABLE[:items]
    for text, expected in table:
        messages = prompts.extraction(PatternRequest(prompt=text), None, SEED_TOOLS, engine.settings.prompts)
        row: dict[str, Any] = {"request": text, "expected": expected}
        for kind in ("constrained", "unconstrained"):
            req = GenerationRequest(model=cfg.model, messages=messages, temperature=0.0,
                                    max_tokens=budget if kind == "constrained" else min(budget, 160),
                                    constraint=Constraint(json_schema=schema) if kind == "constrained" else None)
            c = await backend.stream(req)
            if c.completion_tokens > 3:
                tps[kind].append(c.generation_tps)
            if kind == "constrained" and getattr(backend, "last_mask_seconds_per_token", None) is not None:
                masks.append(backend.last_mask_seconds_per_token)
            try:
                calls = parse_calls(c.text if kind == "constrained" else lenient_json(c.text), SEED_TOOLS)
                valid[kind] += 1
            except ModelOutputError:
                calls = None
            row[kind] = [x.tool for x in calls] if calls is not None else None
        rows.append(row)
    n = len(table)
    hits = sum(1 for r in rows if r["constrained"] and r["constrained"][0] == r["expected"])
    say("  tools: done")
    return {"items": n, "valid_rate_constrained": round(valid["constrained"] / n, 3),
            "valid_rate_unconstrained": round(valid["unconstrained"] / n, 3),
            "expected_tool_accuracy": round(hits / n, 3),
            "tps_constrained": spread(tps["constrained"], ""), "tps_unconstrained": spread(tps["unconstrained"], ""),
            "mask_ms_per_token": spread([1000 * m for m in masks], ""), "table": rows}
