"""Set auto's coding route for a profile from a scored evaluation: the pattern with the most passed problems per
second (HumanEval and MBPP together), written to orchestration/evaluation/measured_routes.json.

    .venv/bin/python scripts/auto_routes.py --results docs/eval-qwen-28/results.json --profile qwen
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    from orchestration.evaluation.routing import choose, write_route

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="results.json of a `mageagent eval` run")
    ap.add_argument("--profile", required=True, help="the profile the run measured")
    ap.add_argument("--dry-run", action="store_true", help="print the choice, write nothing")
    a = ap.parse_args(argv)
    results = json.loads(a.results.read_text())["results"]
    command = "scripts/auto_routes.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    from orchestration.core.settings import load_settings
    from orchestration.patterns.validated import primary_revisions

    # compete and validated as the profile runs them (derived rows): compete keeps B where the tests tie when its
    # judge keeps the stronger competitor's answer; validated has no primary repair after the stronger competitor's
    # answer. The measured stronger model comes from the file this writes, so that is read first (as it stands).
    s = load_settings(env={}, profile=a.profile)
    derived = {}
    if s.judge == "stronger" and s.stronger == "competitor":
        derived["compete"] = "ties-to-B"
    if primary_revisions(s, escalated=True) == 0:
        derived["validated"] = "no-primary-repair"
    choice = choose(results, a.profile, source=str(a.results), command=command, derived=derived)
    for row in choice.table():
        print(f"{row['pattern']:<11} {row['passed']}/{row['items']} = {row['rate']:.1%}  {row['seconds']:.0f} s  "
              f"{row['passed_per_hour']} passed/hour")
    print(f"auto's coding route on profile {a.profile}: {choice.coding}")
    if not a.dry_run:
        write_route(choice)


if __name__ == "__main__":
    main()
