"""Section footprint: what a host puts in its model's context for this server's tools, in real tokens.

A host (Claude Code, Claude Desktop) sends each tool's name, description and input schema to its model with
every turn; the output schema stays with the host. Each is counted as the compact JSON a host sends, with the
embedded model's BPE tokenizer (SmolLM2's ``tokenizer.json``, read by ``tokenizers``): a real tokenizer,
not a characters-per-token guess, though not the host model's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.settings import Settings

__all__ = ["BUDGET_TOKENS", "tokenizer_path", "count", "measure", "run"]

# All published tools' names + descriptions + input schemas together (the issue's target).
BUDGET_TOKENS = 2000


def tokenizer_path(settings: Settings) -> Path:
    from ..models.smollm2 import embedded_dir

    path = embedded_dir(settings.models_dir, "dense") / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: the footprint counts with the embedded model's tokenizer; "
                          "run `mageagent setup`")
    return path


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def count(tools: list[Any], tokenizer_file: Path) -> dict[str, Any]:
    """Tokens per tool (name + description + input schema as the host sends them; output schema apart)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))

    def n(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    rows = {}
    for t in tools:
        sent = {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
        rows[t.name] = {"context_tokens": n(_compact(sent)), "description_tokens": n(t.description or ""),
                        "input_schema_tokens": n(_compact(t.input_schema)),
                        "output_schema_tokens": n(_compact(t.output_schema)) if t.output_schema else 0,
                        "context_chars": len(_compact(sent))}
    total = sum(r["context_tokens"] for r in rows.values())
    return {"tokenizer": str(tokenizer_file), "tools": rows, "context_tokens": total,
            "output_schema_tokens": sum(r["output_schema_tokens"] for r in rows.values()),
            "budget_tokens": BUDGET_TOKENS, "within_budget": total <= BUDGET_TOKENS}


async def measure(server: Any, tokenizer_file: Path) -> dict[str, Any]:
    """List the tools of an MCP server through the SDK's in-memory client and count them."""
    from mcp import Client

    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    return count(tools, tokenizer_file)


async def run(settings: Settings) -> dict[str, Any]:
    """The footprint of the server these settings build (building it loads no model)."""
    from mcp_mageagent.server import build_server

    return await measure(build_server(settings), tokenizer_path(settings))
