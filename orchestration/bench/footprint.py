"""Section footprint: what a host puts in its model's context for this server's tools, in real tokens.

A host (Claude Code, Claude Desktop) sends each tool's name, description and input schema to its model with
every turn; the output schema stays with the host. Each is counted as the compact JSON a host sends, with the
embedded model's BPE tokenizer (SmolLM2's ``tokenizer.json``, read by ``tokenizers``): a real tokenizer,
not a characters-per-token guess, though not the host model's own. The tools are listed by the face
(``python -m mcp_mageagent.bench tools``, in its own process: the engine imports no MCP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.settings import Settings
from .common import mcp_probe

__all__ = ["BUDGET_TOKENS", "tokenizer_path", "count", "run"]

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


def count(tools: list[dict[str, Any]], tokenizer_file: Path) -> dict[str, Any]:
    """Tokens per tool (name + description + input schema as the host sends them; output schema apart), from the
    listed tools as plain data (``name``, ``description``, ``input_schema``, ``output_schema``)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))

    def n(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    rows = {}
    for t in tools:
        sent = {"name": t["name"], "description": t["description"] or "", "input_schema": t["input_schema"]}
        out_schema = t.get("output_schema")
        rows[t["name"]] = {"context_tokens": n(_compact(sent)), "description_tokens": n(sent["description"]),
                           "input_schema_tokens": n(_compact(t["input_schema"])),
                           "output_schema_tokens": n(_compact(out_schema)) if out_schema else 0,
                           "context_chars": len(_compact(sent))}
    total = sum(r["context_tokens"] for r in rows.values())
    return {"tokenizer": str(tokenizer_file), "tools": rows, "context_tokens": total,
            "output_schema_tokens": sum(r["output_schema_tokens"] for r in rows.values()),
            "budget_tokens": BUDGET_TOKENS, "within_budget": total <= BUDGET_TOKENS}


def run(settings: Settings, config: str | None) -> dict[str, Any]:
    """The footprint of the tools the MCP server publishes with these settings (``config`` is their file, for
    the process that lists them; building the server loads no model)."""
    tokenizer_file = tokenizer_path(settings)
    return count(mcp_probe(["tools"], config), tokenizer_file)
