"""What a system's steps would cost run alone, one request at a time: its tokens at each model's measured rates.

An evaluation runs many items at once (batched by model) and generates a greedy answer that several systems share
once, so a record's wall seconds hold queueing and shared work: they cannot say what one system costs. This model
can: every step's prompt tokens at the model's single-stream prompt rate plus its completion tokens at its
generation rate, counted for each system that uses the step (a shared answer counts for each). It leaves out the
prompt cache, batching and drafting, which make real runs cheaper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Single-stream rates, dense float32 MLX with OpenBLAS on this 2-core CPU (tokens per second: prompt, generation),
# measured by `mageagent bench --sections peers` into docs/bench/peers/bench.json (prompt 512 tokens, 48 generated).
SINGLE_STREAM: dict[str, tuple[float, float]] = {
    "qwen2.5-coder-0.5b": (141.8, 5.52),
    "qwen2.5-coder-1.5b": (64.3, 2.07),
}
SOURCE = "docs/bench/peers/bench.json"


def modelled_seconds(steps: list[dict[str, Any]], role_models: Mapping[str, str]) -> float | None:
    """The steps' cost run alone; None where a step's model has no measured rate."""
    total = 0.0
    for s in steps:
        rates = SINGLE_STREAM.get(role_models.get(s.get("role", ""), ""))
        if rates is None:
            return None
        total += (s.get("prompt_tokens") or 0) / rates[0] + (s.get("completion_tokens") or 0) / rates[1]
    return round(total, 2)


def with_modelled_seconds(records: list[dict[str, Any]], role_models: Mapping[str, str]) -> list[dict[str, Any]]:
    def steps(r: dict[str, Any], purpose: str, role: str | None = None) -> list[dict[str, Any]]:
        return [s for s in r.get("steps") or [] if (s.get("purpose") or "").startswith(purpose)
                and role in (None, s.get("role"))]

    return [{**r, "modelled_seconds": modelled_seconds(r.get("steps") or [], role_models),
             "modelled_judge_seconds": modelled_seconds(steps(r, "judge"), role_models) or 0.0,
             "modelled_primary_repair_seconds": modelled_seconds(steps(r, "revise", "primary"), role_models) or 0.0}
            for r in records]
