"""compact_schema: smaller published schemas that accept what the full ones accept (table-driven)."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import BaseModel, Field

from mcp_mageagent.compact import compact_schema


class Inner(BaseModel):
    """Inner docs."""

    name: str = Field(min_length=1, pattern="^[a-z]+$", description="inner field")


class Outer(BaseModel):
    title: str | None = Field(None, description="a field called title")
    one: Inner | None = Field(None, description="used once")
    a: Inner
    b: list[Inner] = Field(default_factory=list)
    count: int | None = None
    must: str | None = Field(description="nullable but required")


FULL = Outer.model_json_schema()


def test_titles_go_but_a_field_named_title_stays() -> None:
    out = compact_schema(FULL)
    assert "title" in out["properties"] and "title" not in out["properties"]["title"]
    assert out["properties"]["title"] == {"type": "string", "description": "a field called title"}


def test_optional_null_default_becomes_plain_optional_but_required_nullable_stays() -> None:
    out = compact_schema(FULL)
    assert out["properties"]["count"] == {"type": "integer"}
    assert out["properties"]["must"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert out["required"] == ["a", "must"]
    kept = compact_schema(FULL, nullable=True)
    assert kept["properties"]["count"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]


def test_definitions_used_more_than_once_stay_shared() -> None:
    out = compact_schema(FULL)
    assert set(out["$defs"]) == {"Inner"} and "title" not in out["$defs"]["Inner"]
    assert out["properties"]["a"] == {"$ref": "#/$defs/Inner"}
    single = compact_schema({"type": "object", "properties": {"x": {"$ref": "#/$defs/Inner", "description": "d"}},
                             "$defs": {"Inner": Inner.model_json_schema()}})
    assert "$defs" not in single
    assert single["properties"]["x"]["properties"]["name"]["type"] == "string"
    assert single["properties"]["x"]["description"] == "d"  # the referring field's words win


def test_lean_drops_nested_descriptions_and_string_limits_only() -> None:
    out = compact_schema(FULL, lean=True)
    assert out["properties"]["title"]["description"] == "a field called title"
    assert out["$defs"]["Inner"] == {"type": "object", "properties": {"name": {"type": "string"}},
                                     "required": ["name"]}


@pytest.mark.parametrize("doc", [
    {"a": {"name": "x"}, "must": None},
    {"a": {"name": "x"}, "must": "m", "b": [{"name": "y"}], "count": 3, "title": "t", "one": {"name": "z"}},
])
def test_what_the_full_schema_accepts_the_compact_one_accepts(doc: dict) -> None:
    jsonschema.validate(doc, FULL)
    for kw in ({}, {"nullable": True}, {"lean": True}):
        jsonschema.validate(doc, compact_schema(FULL, **kw))
