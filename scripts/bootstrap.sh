#!/usr/bin/env bash
# Set-up shared by the README's two commands: a virtual environment with the project installed,
# OpenBLAS where the system can provide it, the Node tools of the tests, and the local models (the default profile's and the tiny test model).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.mageagent-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing mcp-mageagent and its test tools into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[test]' >&2
  touch "$stamp"
fi

# OpenBLAS makes MLX's CPU backend read prompts several times faster (docs/bench/blas.json; Linux only; optional).
if [ "$(uname -s)" = "Linux" ] && ! ldconfig -p 2>/dev/null | grep -q 'libopenblas.so.0'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing OpenBLAS (libopenblas0-pthread)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread) >&2 \
      || echo "   OpenBLAS could not be installed; MLX falls back to its bundled BLAS (slower)" >&2
  else
    echo "   note: OpenBLAS is absent and cannot be installed here (not root or no apt-get); the" >&2
    echo "   bundled BLAS works, prompts read several times slower. Debian/Ubuntu: apt-get install libopenblas0-pthread" >&2
  fi
fi

# bubblewrap isolates model-written code (the evaluation, execution-grounded checks); without it they refuse
# to run unless the settings say sandbox = "weak".
if [ "$(uname -s)" = "Linux" ] && ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing bubblewrap" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >&2 \
      || echo "   bubblewrap could not be installed; running model-written code will be refused" >&2
  else
    echo "   note: bubblewrap (bwrap) is absent and cannot be installed here (not root or no apt-get); running" >&2
    echo "   model-written code will be refused. Debian/Ubuntu: sudo apt-get install bubblewrap" >&2
  fi
fi

# The MCP Inspector's CLI and Claude Code's CLI, third-party clients for the tests (skipped where Node is
# absent); installed again when package-lock.json is newer than the last install (npm's own record of it).
if command -v npm >/dev/null && [ -f tests/inspector/package.json ] \
   && [ tests/inspector/package-lock.json -nt tests/inspector/node_modules/.package-lock.json ]; then
  echo "== installing the MCP Inspector CLI and the Claude Code CLI (npm)" >&2
  (cd tests/inspector && npm ci --silent --no-audit --no-fund >&2) || echo "   npm install failed; that test will fail" >&2
fi

# The models: the configured profile's (the default: Qwen2.5-Coder 0.5B and 1.5B) for the main job, or
# what the tests load (SETUP_MODELS, set by scripts/test.sh: the 0.5B and the tiny model).
if [ -n "${SETUP_MODELS:-}" ]; then
  echo "== preparing the models: $SETUP_MODELS" >&2
  # shellcheck disable=SC2046
  .venv/bin/mageagent setup $(printf -- '--model %s ' $SETUP_MODELS) >&2
else
  echo "== preparing the profile's models (default: Qwen2.5-Coder 0.5B and 1.5B)" >&2
  .venv/bin/mageagent setup >&2
fi
