"""What the bench sections share: the fixed prompt, the short call, the spread of a measurement."""

from __future__ import annotations

import statistics
import sys
from typing import Any

__all__ = ["PROMPT", "SMALL", "spread", "say"]

PROMPT = "Write a Python function that checks whether a number is prime, and save it to the file prime.py"
# The short call of the mcp, http and remote sections.
SMALL = {"prompt": "Say hello in one short sentence.", "max_tokens": 16}


def spread(values: list[float], suffix: str = "_s") -> dict[str, Any] | None:
    """Median, min, max and count (keys end in ``suffix``; seconds by default); None for no values."""
    if not values:
        return None
    return {f"median{suffix}": round(statistics.median(values), 3), f"min{suffix}": round(min(values), 3),
            f"max{suffix}": round(max(values), 3), "n": len(values)}


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
