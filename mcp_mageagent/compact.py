"""Compact JSON schemas for ``tools/list``: what a host sends to its model with every turn, so every token counts.

Pydantic's schemas are written for validators and form builders: a ``title`` on every field, optional fields as
``anyOf [T, null]`` with ``default: null``, ``additionalProperties: true`` spelled out, each model in ``$defs``
even when used once. The published schema drops that; the server still validates calls with pydantic's own.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["compact_schema"]

_NULL = {"type": "null"}
_STRING_LIMITS = ("pattern", "minLength", "maxLength")


def compact_schema(schema: dict[str, Any], *, nullable: bool = False, lean: bool = False) -> dict[str, Any]:
    """The same schema, smaller: no titles, single-use definitions inlined, and (unless ``nullable``, which an
    output schema needs: results carry nulls) ``anyOf [T, null]`` with a null default as plain optional ``T``.

    ``lean`` (the input schema a model reads) also drops what only a validator needs, which the server checks
    and explains on a bad call anyway: descriptions below the top-level fields (the field's own description
    says what to give) and string limits (``pattern``, ``minLength``, ``maxLength``).
    """
    defs: dict[str, Any] = schema.get("$defs", {})
    uses = {name: json.dumps(schema).count(f'"#/$defs/{name}"') for name in defs}
    kept = {name: d for name, d in defs.items() if uses[name] > 1}

    def walk(node: Any, depth: int, *, properties: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(x, depth + 1) for x in node]
        if not isinstance(node, dict):
            return node
        if properties:  # the keys are field names (a field may be called "title"), the values are schemas
            return {k: walk(v, depth + 1) for k, v in node.items()}
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/") and ref[8:] not in kept:
            return walk({**defs[ref[8:]], **{k: v for k, v in node.items() if k != "$ref"}}, depth)
        any_of = node.get("anyOf")
        optional = "default" in node and node["default"] is None
        if not nullable and optional and isinstance(any_of, list) and _NULL in any_of:
            rest = [s for s in any_of if s != _NULL]
            base = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            node = {**rest[0], **base} if len(rest) == 1 else {**base, "anyOf": rest}
        out = {}
        for k, v in node.items():
            if k in ("title", "$defs") or (k == "additionalProperties" and v is True):
                continue
            if lean and (k in _STRING_LIMITS or (k == "description" and depth > 2)):
                continue
            out[k] = walk(v, depth + 1, properties=k in ("properties", "patternProperties"))
        return out

    # depth: the root is 0, its "properties" map 1, each top-level field's schema 2.
    out = walk(schema, 0)
    if kept:
        out["$defs"] = {name: walk(d, 3) for name, d in kept.items()}
    return out
