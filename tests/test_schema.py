from __future__ import annotations

import json

import jsonschema
import pytest

from orchestration.core.errors import ModelOutputError, RequestError, SchemaError
from orchestration.tools.catalogue import SEED_TOOLS, resolve_tools
from orchestration.tools.extract import extraction_schema, parse_calls
from orchestration.tools.schema import bound_schema, token_bound, validate_definition
from orchestration.core.types import ToolDefinition

NESTED = ToolDefinition(
    name="create_ticket",
    description="Open a ticket",
    parameters={
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 80},
            "priority": {"type": "string", "enum": ["low", "high"]},
            "estimate": {"type": "integer", "minimum": 1, "maximum": 10},
            "owner": {"type": "object", "properties": {"name": {"type": "string"}, "team": {"type": "string"}},
                      "required": ["name"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "urgent": {"type": "boolean"},
        },
        "required": ["title", "priority"],
    },
    annotations={"readOnlyHint": False, "destructiveHint": False},
)


def test_seed_catalogue_has_the_six_tools_with_required_fields() -> None:
    names = {t.name: t.parameters["required"] for t in SEED_TOOLS}
    assert names == {"Read": ["file_path"], "Write": ["file_path", "content"],
                     "Edit": ["file_path", "old_string", "new_string"], "Bash": ["command"],
                     "Glob": ["pattern"], "Grep": ["pattern"]}
    for t in SEED_TOOLS:
        validate_definition(t)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"type": "object", "properties": {"a": {"$ref": "#/defs/x"}}}, "'$ref'"),
        ({"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}}, "'not'"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties'"),
        ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}}, "'allOf'"),
        ({"type": "object", "properties": {"a": {"type": "date"}}}, "unknown type 'date'"),
        ({"type": "object", "properties": {"a": {}}}, "no type"),
        ({"type": "object", "properties": {"a": True}}, "any value"),
        ({"type": "array", "items": {"type": "string"}}, "type 'object'"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "additionalProperties with a schema"),
        ({"type": "object", "properties": {}, "required": ["ghost"]}, "ghost"),
    ],
)
def test_refused_schemas_name_tool_and_construct(params: dict, fragment: str) -> None:
    with pytest.raises(SchemaError) as e:
        validate_definition(ToolDefinition(name="bad_tool", parameters=params))
    assert "bad_tool" in str(e.value) and fragment in str(e.value)


def test_resolve_tools_defaults_to_seed_and_rejects_duplicates() -> None:
    assert resolve_tools(None) is SEED_TOOLS
    assert resolve_tools([NESTED]) == [NESTED]
    with pytest.raises(RequestError, match="repeated: x"):
        resolve_tools([ToolDefinition(name="x"), ToolDefinition(name="x")])


def test_bound_schema_bounds_everything_and_keeps_the_original() -> None:
    b = bound_schema(NESTED.parameters, max_string=50, max_items=3)
    assert b["properties"]["title"]["maxLength"] == 50  # min(80, 50)
    assert "maxLength" not in b["properties"]["priority"]  # enums are bounded already
    assert b["properties"]["tags"]["maxItems"] == 3 and b["properties"]["tags"]["items"]["maxLength"] == 50
    assert b["properties"]["owner"]["additionalProperties"] is False
    assert "maxLength" not in NESTED.parameters["properties"]["tags"]["items"]


def test_token_bound_covers_the_longest_valid_output() -> None:
    schema = extraction_schema(SEED_TOOLS, max_calls=2, max_string=10)
    bound = token_bound(schema)
    worst = [{"tool": "Edit", "arguments": {"file_path": "\u00e9" * 10, "old_string": '"' * 10,
                                             "new_string": "\u0001" * 10}}] * 2
    jsonschema.validate(worst, schema)
    assert len(json.dumps(worst, separators=(",", ":")).encode()) <= bound
    assert bound < 2000


def test_extraction_schema_shape() -> None:
    schema = extraction_schema(SEED_TOOLS, max_calls=4, max_string=100)
    assert schema["type"] == "array" and schema["maxItems"] == 4
    alts = schema["items"]["anyOf"]
    assert [a["properties"]["tool"]["const"] for a in alts] == ["Read", "Write", "Edit", "Bash", "Glob", "Grep"]
    assert all(a["additionalProperties"] is False for a in alts)
    jsonschema.validate([], schema)  # "no tool needed" stays possible


def test_parse_calls_valid_and_labelled() -> None:
    text = json.dumps([{"tool": "Read", "arguments": {"file_path": "src/main.py"}},
                       {"tool": "Bash", "arguments": {"command": "rm -rf /tmp/x"}}])
    calls = parse_calls(text, SEED_TOOLS)
    assert [(c.tool, c.risk) for c in calls] == [("Read", "read"), ("Bash", "destructive")]
    assert parse_calls("[]", SEED_TOOLS) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Sure! Here are the calls: []",
        '[{"tool": "Read"}]',
        '[{"tool": "Read", "arguments": {}}]',
        '[{"tool": "Launch", "arguments": {}}]',
        '[{"tool": "Read", "arguments": {"file_path": "a", "mode": "x"}}]',
        '{"tool": "Read", "arguments": {"file_path": "a"}}',
        '[{"tool": "Read", "arguments": {"file_path": "a"}, "extra": 1}]',
    ],
)
def test_parse_calls_rejects_anything_invalid(text: str) -> None:
    with pytest.raises(ModelOutputError) as e:
        parse_calls(text, SEED_TOOLS)
    assert e.value.raw == text


def test_host_tools_validate_nested_enums_and_integers() -> None:
    ok = [{"tool": "create_ticket", "arguments": {"title": "t", "priority": "high", "estimate": 3,
                                                  "owner": {"name": "ann"}, "tags": ["a"]}}]
    [call] = parse_calls(json.dumps(ok), [NESTED])
    assert call.risk == "write"
    bad = [{"tool": "create_ticket", "arguments": {"title": "t", "priority": "urgent"}}]
    with pytest.raises(ModelOutputError, match="do not match"):
        parse_calls(json.dumps(bad), [NESTED])


def _prop(schema: dict) -> dict:
    return {"type": "object", "properties": {"a": schema}}


@pytest.mark.parametrize(
    ("params", "keyword"),
    [
        (_prop({"enum": []}), "enum"),
        (_prop({"type": "string", "enum": []}), "enum"),
        (_prop({"enum": "abc"}), "enum"),
        (_prop({"anyOf": []}), "anyOf"),
        (_prop({"oneOf": {}}), "oneOf"),
        (_prop({"type": []}), "type"),
        (_prop({"type": ["string", "string"]}), "type"),
        (_prop({"type": "string", "maxLength": "x"}), "maxLength"),
        (_prop({"type": "string", "maxLength": True}), "maxLength"),
        (_prop({"type": "string", "minLength": -1}), "minLength"),
        (_prop({"type": "integer", "minimum": "a"}), "minimum"),
        (_prop({"type": "number", "maximum": float("inf")}), "maximum"),
        (_prop({"type": "number", "multipleOf": 0}), "multipleOf"),
        (_prop({"type": "string", "pattern": 5}), "pattern"),
        (_prop({"type": "string", "pattern": "(["}), "pattern"),
        (_prop({"type": "string", "description": 5}), "description"),
        (_prop({"type": "array", "items": {"type": "string"}, "maxItems": 2.5}), "maxItems"),
        (_prop({"type": "string", "minLength": 5, "maxLength": 2}), "minLength"),
        ({"type": "object", "properties": []}, "properties"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": "a"}, "required"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": [1]}, "required"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": "no"},
         "additionalProperties"),
        (_prop({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["y"]}), "required"),
    ],
)
def test_bad_keyword_values_are_refused_naming_tool_and_keyword(params: dict, keyword: str) -> None:
    # Before: several of these passed and failed later as ValueError/TypeError (max() of an empty enum,
    # int('x'), '>' between int and str) in the middle of a call, or reached the constrainer unchecked.
    with pytest.raises(SchemaError) as e:
        validate_definition(ToolDefinition(name="bad_tool", parameters=params))
    assert "'bad_tool'" in str(e.value) and keyword in str(e.value)


def test_integral_floats_and_good_values_are_accepted() -> None:
    validate_definition(ToolDefinition(name="ok", parameters=_prop(
        {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "maxItems": 3.0, "minItems": 1})))
