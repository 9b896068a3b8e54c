"""A third-party client: the MCP Inspector's CLI (npm) against the real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "inspector"
BIN = HERE / "node_modules" / ".bin" / "mcp-inspector"
pytestmark = pytest.mark.real_model


def inspector(tmp_path: Path, *args: str, timeout: float = 300) -> dict:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the Inspector CLI test needs it")
    assert BIN.exists(), "run scripts/bootstrap.sh (it installs tests/inspector with npm ci)"
    env = {**os.environ, "MCP_CATALOG_PATH": str(tmp_path / "catalog.json"), "MAGEAGENT_PROFILE": "tiny",
           "MAGEAGENT_EXTRACTION_MAX_STRING": "48", "MAGEAGENT_EXTRACTION_MAX_CALLS": "2"}  # the tiny profile
    proc = subprocess.run([str(BIN), "--cli", sys.executable, "-m", "mcp_mageagent", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_inspector_lists_tools(tmp_path: Path) -> None:
    out = inspector(tmp_path, "--method", "tools/list")
    names = {t["name"] for t in out["tools"]}
    assert names == {"mage_auto", "mage_hybrid", "mage_validated", "mage_compete", "mage_tools", "mage_primary",
                     "mage_validator", "mage_competitor"}
    assert all(t.get("outputSchema") for t in out["tools"])


def test_inspector_reads_the_models_resource(tmp_path: Path) -> None:
    out = inspector(tmp_path, "--method", "resources/read", "--uri", "mageagent://models")
    state = json.loads(out["contents"][0]["text"])
    assert set(state["roles"]) == {"primary", "competitor", "validator", "tools"}


def test_inspector_calls_mage_tools(tmp_path: Path) -> None:
    out = inspector(tmp_path, "--method", "tools/call", "--tool-name", "mage_tools",
                    "--tool-arg", "prompt=Show me the file src/main.py")
    assert not out.get("isError"), out
    data = out["structuredContent"]
    assert data["pattern"] == "tools"
    # The request names the file to read: the call is built from that fact, with no model step, and says so.
    assert data["tool_calls"] == [{"tool": "Read", "arguments": {"file_path": "src/main.py"}, "risk": "read"}]
    assert data["trace"]["tool_decision"]["decided_by"] == "facts" and data["trace"]["steps"] == []
