#!/usr/bin/env bash
# The README's main-job command: set everything up, then run a pattern on the embedded model end to end
# through the real MCP stdio server and print the answer and the tool calls. Extra args go to demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
