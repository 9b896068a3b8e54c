"""The measuring scripts' one way of keeping raw runs: a JSON file with the command and every run, a run
replacing an earlier one of the same key (so before and after sit side by side, each re-measurable)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_runs(out: str | Path, command: str, runs: Sequence[dict[str, Any]], key: Sequence[str] = ("code",)) -> None:
    """Add ``runs`` to the JSON file ``out`` (created if missing), dropping earlier runs with the same ``key``."""
    path = Path(out)
    data = json.loads(path.read_text()) if path.exists() else {"runs": []}
    new = {tuple(r[k] for k in key) for r in runs}
    data["command"] = command
    data["runs"] = [r for r in data["runs"] if tuple(r.get(k) for k in key) not in new] + list(runs)
    path.write_text(json.dumps(data, indent=1) + "\n")


def parser(doc: str, root: Path) -> argparse.ArgumentParser:
    """The arguments every before/after measurement takes: which checkout runs, its label, where runs go."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--repo", default=str(root), help="the checkout whose code runs (default: this one)")
    p.add_argument("--label", default="this checkout", help="what the run measures (e.g. before / after)")
    p.add_argument("--out", help="JSON file to add the runs to")
    return p


def report(args: argparse.Namespace, script: str, runs: Sequence[dict[str, Any]], key: Sequence[str] = ("code",),
           shown_args: str = "") -> int:
    """Each run on stderr, and into ``args.out`` with the command that made it."""
    for run in runs:
        sys.stderr.write(json.dumps(run) + "\n")
    if args.out:
        add_runs(args.out, f".venv/bin/python scripts/{script} {shown_args}--out {args.out}", runs, key)
    return 0
