"""auto's coding route from measurements: the pattern with the most passed problems per second of run time.

``scripts/auto_routes.py`` reads a scored evaluation (``results.json`` of ``mageagent eval``) and writes the choice
for a profile into ``measured_routes.json`` beside this module; settings read that file for ``auto_coding``'s
default (an explicit ``auto_coding`` still wins).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..core.errors import ConfigError

ROUTES_FILE = Path(__file__).with_name("measured_routes.json")
# The patterns auto can send a coding request to, and the eval system that measures each (he-*, mbpp-*).
CODING_PATTERNS = ("primary", "competitor", "validated", "compete")
SUITES = {"humaneval": "he", "mbpp": "mbpp"}


class PatternFigure(BaseModel):
    pattern: str
    passed: int
    items: int
    seconds: float  # cost over all measured items, summed over the suites: run alone where the results price it

    @property
    def rate(self) -> float:
        return self.passed / self.items if self.items else 0.0

    @property
    def per_second(self) -> float:
        """Passed problems per second: quality per second."""
        return self.passed / self.seconds if self.seconds > 0 else 0.0


class RouteChoice(BaseModel):
    profile: str
    coding: str
    source: str
    command: str = ""
    figures: list[PatternFigure]

    def table(self) -> list[dict[str, Any]]:
        return [{"pattern": f.pattern, "passed": f.passed, "items": f.items, "rate": round(f.rate, 4),
                 "seconds": round(f.seconds, 1), "passed_per_hour": round(3600 * f.per_second, 2)}
                for f in self.figures]


def _seconds(row: dict[str, Any]) -> float:
    """The system's steps run alone (``evaluation.cost``) where priced: a batched run's wall seconds hold queueing
    and answers generated once for several systems."""
    alone = row.get("modelled_s_total")
    return float(alone if alone is not None else row["seconds_total"])


def figures(results: dict[str, Any], derived: Mapping[str, str] | None = None) -> list[PatternFigure]:
    """Each coding pattern's passes, items and seconds summed over the code suites the results hold; a pattern
    missing from a suite that others have is left out (its figure would not be comparable). ``derived``: pattern ->
    the row suffix that gives it as the profile now runs it, where the results derive it (compete: ``ties-to-B``
    where its judge keeps the stronger competitor's answer; validated: ``no-primary-repair``)."""
    suites = {s: results[s] for s in SUITES if s in results}
    if not suites:
        raise ConfigError("the results hold no code suite (humaneval, mbpp): nothing to route by")
    out = []
    for pattern in CODING_PATTERNS:
        suffix = f":{derived[pattern]}" if derived and pattern in derived else ""
        rows = [suite["systems"].get(f"{SUITES[name]}-{pattern}{suffix}") for name, suite in suites.items()]
        missing = [f"{SUITES[name]}-{pattern}{suffix}" for (name, suite), r in zip(suites.items(), rows, strict=True)
                   if r is None and f"{SUITES[name]}-{pattern}" in suite["systems"]]
        if suffix and missing:  # measured, but not as the profile now runs it: routing on the old row would mislead
            raise ConfigError(f"the results lack {', '.join(missing)} (the pattern as this profile runs it): "
                              "score the run again (mageagent eval --out DIR --rescore)")
        if any(r is None or not r.get("n") for r in rows):
            continue
        out.append(PatternFigure(pattern=pattern, passed=sum(r["k"] for r in rows), items=sum(r["n"] for r in rows),
                                 seconds=sum(_seconds(r) for r in rows)))
    if not out:
        raise ConfigError(f"the results measure none of the coding patterns {', '.join(CODING_PATTERNS)}")
    return out


def choose(results: dict[str, Any], profile: str, source: str, command: str = "",
           derived: Mapping[str, str] | None = None) -> RouteChoice:
    """``derived``: the patterns the profile runs otherwise than the measured systems did, and the derived rows
    that give them (``figures``)."""
    figs = figures(results, derived)
    best = max(figs, key=lambda f: (f.per_second, f.rate))
    return RouteChoice(profile=profile, coding=best.pattern, source=source, command=command, figures=figs)


def read_routes(path: Path = ROUTES_FILE) -> dict[str, RouteChoice]:
    if not path.exists():
        return {}
    return {k: RouteChoice.model_validate(v) for k, v in json.loads(path.read_text()).items()}


def write_route(choice: RouteChoice, path: Path = ROUTES_FILE) -> None:
    routes = {k: v.model_dump() for k, v in read_routes(path).items()}
    routes[choice.profile] = choice.model_dump()
    path.write_text(json.dumps(routes, indent=1, sort_keys=True) + "\n")
