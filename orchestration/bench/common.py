"""What the bench sections share: the fixed prompt, the short call, the spread of a measurement, the MCP probe."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from ..core.errors import MageError

__all__ = ["PROMPT", "SMALL", "spread", "say", "mcp_probe"]

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


def mcp_probe(args: list[str], config: str | None) -> Any:
    """What ``python -m mcp_mageagent.bench ARGS`` prints: the MCP face measured by a client of its own, in its own
    process, as the http section measures ``mageagent serve`` (the engine imports no MCP). Its stderr is ours."""
    env = {**os.environ, **({"MAGEAGENT_CONFIG": config} if config else {})}
    p = subprocess.run([sys.executable, "-m", "mcp_mageagent.bench", *args], env=env, stdout=subprocess.PIPE,
                       text=True, check=False)
    if p.returncode != 0:
        raise MageError(f"python -m mcp_mageagent.bench {args[0]} exited with {p.returncode} (its error is above)")
    return json.loads(p.stdout)
