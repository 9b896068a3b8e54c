"""The speed benchmark: a thin entry to `mageagent bench` (see orchestration/bench/).

Usage: .venv/bin/python scripts/bench.py [--reps 3] [--max-tokens 48] [--out docs/bench] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.faces.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
