"""BFCL: its function documents as the engine's tool definitions, and the project's own call checker.

BFCL writes Python-flavoured schemas (``dict``, ``float``, ``tuple``, ``any``, ``optional``); ``to_json_schema``
maps them to the JSON Schema subset the constrainer takes. ``check_calls`` scores calls the way BFCL's AST
checker does: the right function, every required argument, no unknown argument, every value among the
allowed ones (strings compared case-, space- and punctuation-insensitively; an argument may be left out
only where the allowed values include ``""``), and for the irrelevance category no call at all.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from ..core.types import ToolCall, ToolDefinition
from .data import BfclItem

__all__ = ["to_json_schema", "tool_definitions", "task_prompt", "CallCheck", "check_calls"]

_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array", "int": "integer",
          "str": "string", "bool": "boolean", "integer": "integer", "number": "number", "string": "string",
          "boolean": "boolean", "array": "array", "object": "object", "null": "null"}
_ANY = ["string", "number", "boolean", "null"]
# 'format' and 'pattern' are left out: BFCL's regexes and formats are informal, not the constrainer's dialect.
_KEEP = {"description", "enum", "default", "minimum", "maximum", "title"}


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A BFCL parameter schema as JSON Schema: types mapped, 'optional' dropped, nested parts mapped too."""
    t = node.get("type", "any")
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEEP}
    if t == "any":
        out["type"] = list(_ANY)
    elif t in _TYPES:
        out["type"] = _TYPES[t]
    else:
        raise ValueError(f"unknown BFCL type {t!r}")
    if out["type"] == "object":
        props = node.get("properties") or {}
        out["properties"] = {k: to_json_schema(v) for k, v in props.items()}
        required = [r for r in node.get("required") or [] if r in props]
        if required:
            out["required"] = required
        out["additionalProperties"] = False if props else out.get("additionalProperties", True)
        if not props:
            out.pop("additionalProperties")
    if out["type"] == "array":
        items = node.get("items")
        out["items"] = to_json_schema(items) if isinstance(items, dict) else {"type": list(_ANY)}
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def tool_definitions(item: BfclItem) -> list[ToolDefinition]:
    return [ToolDefinition(name=f["name"], description=f.get("description", ""),
                           parameters=to_json_schema(f["parameters"])) for f in item.functions]


def task_prompt(item: BfclItem) -> tuple[str, str | None]:
    """(prompt, system) from the item's single turn."""
    system = "\n".join(m["content"] for m in item.messages if m["role"] == "system") or None
    prompt = "\n".join(m["content"] for m in item.messages if m["role"] != "system")
    return prompt, system


class CallCheck(BaseModel):
    correct: bool
    reason: str


def _std(s: str) -> str:
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def _equal(value: Any, allowed: Any) -> bool:
    if isinstance(allowed, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(allowed, bool) and value == allowed
    if isinstance(allowed, (int, float)):
        return isinstance(value, (int, float)) and float(value) == float(allowed)
    if isinstance(allowed, str):
        return isinstance(value, str) and _std(value) == _std(allowed)
    if isinstance(allowed, (list, tuple)):
        return (isinstance(value, (list, tuple)) and len(value) == len(allowed)
                and all(_equal(v, a) for v, a in zip(value, allowed)))
    if isinstance(allowed, dict):  # a nested object: each key has its own list of allowed values
        return isinstance(value, dict) and _arguments_ok(value, allowed, None) is None
    return value == allowed


def _value_ok(value: Any, allowed: list[Any]) -> bool:
    return any(_equal(value, a) for a in allowed if not (isinstance(a, str) and a == ""))


def _arguments_ok(args: dict[str, Any], expected: dict[str, list[Any]], schema: dict[str, Any] | None) -> str | None:
    """None when the arguments match; otherwise the reason."""
    known = set((schema or {}).get("properties") or expected)
    for name in args:
        if name not in known:
            return f"unexpected argument {name!r}"
    for name in (schema or {}).get("required") or []:
        if name not in args:
            return f"missing required argument {name!r}"
    for name, allowed in expected.items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if name not in args:
            if "" not in allowed:
                return f"missing argument {name!r}"
            continue
        if not _value_ok(args[name], allowed):
            return f"argument {name!r}={args[name]!r} not among {allowed!r}"
    return None


def check_calls(item: BfclItem, calls: list[ToolCall] | None) -> CallCheck:
    """Score the calls (None = no valid call array was produced) against the item's possible answers."""
    if item.category == "irrelevance":
        ok = not calls
        return CallCheck(correct=ok, reason="no call, as it should be" if ok else
                         f"called {calls[0].tool} on an irrelevant request")
    if calls is None:
        return CallCheck(correct=False, reason="no valid call array")
    if len(calls) != len(item.ground_truth):
        return CallCheck(correct=False, reason=f"{len(calls)} calls, expected {len(item.ground_truth)}")
    schemas = {f["name"]: f["parameters"] for f in item.functions}
    for call, truth in zip(calls, item.ground_truth):
        (name, expected), = truth.items()
        if call.tool != name:
            return CallCheck(correct=False, reason=f"called {call.tool}, expected {name}")
        problem = _arguments_ok(call.arguments, expected, schemas.get(name))
        if problem:
            return CallCheck(correct=False, reason=problem)
    return CallCheck(correct=True, reason="matches a possible answer")
