#!/usr/bin/env bash
# The README's test command: set everything up, then run the whole suite. Extra args go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
# The tests load the tiny model and Qwen2.5-Coder-0.5B (the 1.5B layer is opt-in: -m large_model).
SETUP_MODELS=${SETUP_MODELS:-"qwen2.5-coder-0.5b smollm2-135m smollm2-135m-q4"} \
  bash scripts/bootstrap.sh || { echo "set-up failed" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
