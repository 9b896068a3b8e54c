"""The real server as a subprocess over stdio, on the real embedded model."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from orchestration.core.settings import load_settings

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]
TINY = {"MAGEAGENT_PROFILE": "tiny"}  # SmolLM2-135M in every role: nothing slow loads
TINY_MODEL = load_settings(env=TINY).roles["primary"].model


def server_params(tmp_path: Path, tee: bool = False, **env: str) -> StdioServerParameters:
    base = {**os.environ, "MAGEAGENT_LOG_FILE": str(tmp_path / "server.log"), "MAGEAGENT_LOG_LEVEL": "DEBUG",
            "MAGEAGENT_EXTRACTION_MAX_STRING": "48", "MAGEAGENT_EXTRACTION_MAX_CALLS": "2", **TINY, **env}
    cmd = f"{shlex.quote(sys.executable)} -m mcp_mageagent"
    if tee:  # record every byte the server writes to stdout
        cmd += f" | tee {shlex.quote(str(tmp_path / 'stdout.jsonl'))}"
        return StdioServerParameters(command="/bin/sh", args=["-c", cmd], env=base)
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_mageagent"], env=base)


async def test_full_call_with_progress_and_clean_stdout(tmp_path: Path) -> None:
    progress: list[str | None] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    t0 = time.perf_counter()
    async with Client(server_params(tmp_path, tee=True), mode="legacy") as client:
        handshake = time.perf_counter() - t0
        tools = await client.list_tools()
        assert len(tools.tools) == 8
        result = await client.call_tool(
            "mage_hybrid", {"prompt": "Read the file src/app.py and explain it", "max_tokens": 24,
                            "extraction": "always"}, progress_callback=on_progress)
    assert not result.is_error, result.content
    data = result.structured_content
    assert data["pattern"] == "hybrid" and data["text"].strip()
    # The Read the request asks for is decided by facts: the answer is the only model step.
    assert [s["role"] for s in data["trace"]["steps"]] == ["primary"]
    assert data["tool_calls"] == [{"tool": "Read", "arguments": {"file_path": "src/app.py"}, "risk": "read"}]
    assert any("answer" in (m or "") for m in progress)
    lines = (tmp_path / "stdout.jsonl").read_text().splitlines()
    assert len(lines) >= 4
    for line in lines:  # nothing but JSON-RPC on stdout, even at DEBUG
        assert json.loads(line)["jsonrpc"] == "2.0", line[:200]
    log = (tmp_path / "server.log").read_text()
    assert "mage_hybrid" in log and "hybrid step 1 answer (primary)" in log
    assert handshake < 60


async def test_cancelled_call_then_a_successful_one(tmp_path: Path) -> None:
    async with Client(server_params(tmp_path), mode="legacy") as client:
        await client.call_tool("mage_primary", {"prompt": "Say hi", "max_tokens": 2})  # load the model
        with anyio.move_on_after(3):
            await client.call_tool("mage_primary", {"prompt": "Write a long essay about rivers.",
                                                    "max_tokens": 2000, "temperature": 0})
        result = await client.call_tool("mage_primary", {"prompt": "Say hello", "max_tokens": 4})
    assert not result.is_error
    assert result.structured_content["trace"]["steps"][0]["completion_tokens"] <= 4
    log = (tmp_path / "server.log").read_text()
    assert "cancelled" in log.lower()
    assert log.count("pattern primary done") == 2  # the cancelled call never finished its 2000 tokens


async def test_background_warmup_never_delays_the_handshake(tmp_path: Path) -> None:
    from datetime import datetime

    params = server_params(tmp_path, MAGEAGENT_WARMUP="true")
    async with Client(params, mode="legacy") as client:
        tools = await client.list_tools()
        listed_at = datetime.now()
        log = tmp_path / "server.log"
        with anyio.fail_after(60):  # the models load in the background after the handshake
            while f"loaded {TINY_MODEL}" not in (log.read_text() if log.exists() else ""):
                await anyio.sleep(0.2)
        result = await client.call_tool("mage_primary", {"prompt": "Say hi", "max_tokens": 4})
    assert len(tools.tools) == 8 and not result.is_error
    text = log.read_text()
    assert text.count(f"loaded {TINY_MODEL}") == 1  # the call used the warmed model: no second load
    assert text.index(f"loaded {TINY_MODEL}") < text.index("mage_primary")
    line = next(ln for ln in text.splitlines() if f"loaded {TINY_MODEL}" in ln)
    loaded_at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    assert listed_at < loaded_at  # tools/list was answered while the model was still loading
