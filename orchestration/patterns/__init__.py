"""The built-in patterns: a plain name -> ``async def run(request, ctx) -> PatternResult`` mapping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..core.types import PatternRequest, PatternResult
from ..run.context import RunContext
from . import auto, compete, competitor, hybrid, primary, tools, validated, validator

__all__ = ["PATTERNS", "PatternFn"]

PatternFn = Callable[[PatternRequest, RunContext], Awaitable[PatternResult]]

PATTERNS: dict[str, PatternFn] = {
    "auto": auto.run,
    "hybrid": hybrid.run,
    "validated": validated.run,
    "compete": compete.run,
    "tools": tools.run,
    "primary": primary.run,
    "validator": validator.run,
    "competitor": competitor.run,
}
