"""JSON-schema handling for constrained extraction: what the constrainer accepts, bounding, token budgets."""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema

from ..core.errors import SchemaError
from ..core.types import ToolDefinition

__all__ = ["validate_definition", "bound_schema", "token_bound", "SUPPORTED_KEYWORDS", "PatternMatcher",
           "pattern_matcher", "LinearValidator"]

# Keywords the constrainer handles; anything else in a host's tool schema is refused up front.
SUPPORTED_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "pattern", "anyOf", "oneOf", "description", "title", "default", "examples",
    "$schema", "format", "multipleOf",
    "x-mageagent",  # grounding: see grounding.py (path, directory, content, old-text, new-text)
}
_GROUNDED_KINDS = ("path", "directory", "content", "old-text", "new-text")
_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
# JSON numbers are unbounded in a grammar (a small model can emit "0.999..." for ever): bound_schema gives each
# number a range of +-1e15 and six decimal places, so a number takes at most 16 + 1 + 6 + 1 bytes.
NUMBER_LIMIT = 10**15
NUMBER_STEP = 1e-6
_NUMBER_BYTES = 24
_STRING_ESCAPE = 6  # a string character costs at most 6 bytes of JSON (\uXXXX), and a token is >= 1 byte


def _is_int(v: Any) -> bool:
    # JSON Schema counts 5.0 as an integer
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_regex(v: Any) -> bool:
    """A regular expression the constrainer's linear engine reads (no look-arounds, no back-references)."""
    try:
        re.compile(v)
    except (re.error, TypeError):
        return False
    return pattern_matcher(v).supported


# What each keyword's value must be (checked before anything reads it, so a bad value is an error
# naming the tool and the keyword, never a TypeError or a max() of nothing deep in the constrainer).
_KEYWORD_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (lambda v: (isinstance(v, str) or (isinstance(v, list) and v and len(set(map(str, v))) == len(v)
                                                  and all(isinstance(t, str) for t in v))),
             "a type name or a non-empty list of distinct type names"),
    "properties": (lambda v: isinstance(v, dict), "an object mapping property names to schemas"),
    "required": (lambda v: isinstance(v, list) and all(isinstance(r, str) for r in v) and len(set(v)) == len(v),
                 "a list of distinct property names"),
    "additionalProperties": (lambda v: isinstance(v, (bool, dict)), "true, false or a schema"),
    "enum": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list"),
    "anyOf": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of schemas"),
    "oneOf": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of schemas"),
    "minItems": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "maxItems": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "minLength": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "maxLength": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "minimum": (_is_number, "a finite number"),
    "maximum": (_is_number, "a finite number"),
    "exclusiveMinimum": (_is_number, "a finite number"),
    "exclusiveMaximum": (_is_number, "a finite number"),
    "multipleOf": (lambda v: _is_number(v) and v > 0, "a number greater than 0"),
    "pattern": (_is_regex, "a string holding a valid regular expression without look-arounds or "
                           "back-references (the constrainer's linear regex engine has neither)"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "title": (lambda v: isinstance(v, str), "a string"),
    "format": (lambda v: isinstance(v, str), "a string"),
    "$schema": (lambda v: isinstance(v, str), "a string"),
    "examples": (lambda v: isinstance(v, list), "a list"),
}


def _walk(tool: str, schema: Any, path: str) -> None:
    if isinstance(schema, bool):
        if schema is False:
            return
        raise SchemaError(f"tool '{tool}': schema at {path} is `true` (any value); give it a type")
    if not isinstance(schema, dict):
        raise SchemaError(f"tool '{tool}': schema at {path} is not an object")
    for key, value in schema.items():
        if key not in SUPPORTED_KEYWORDS:
            raise SchemaError(
                f"tool '{tool}': JSON-schema construct '{key}' at {path} is not supported by the constrainer "
                f"(supported: {', '.join(sorted(SUPPORTED_KEYWORDS))})"
            )
        check = _KEYWORD_VALUES.get(key)
        if check is not None and not check[0](value):
            raise SchemaError(f"tool '{tool}': keyword '{key}' at {path} must be {check[1]} "
                              f"(got {json.dumps(value, default=repr)[:80]})")
    for lo, hi in (("minItems", "maxItems"), ("minLength", "maxLength"), ("minimum", "maximum")):
        if lo in schema and hi in schema and schema[lo] > schema[hi]:
            raise SchemaError(f"tool '{tool}': keyword '{lo}' at {path} is greater than '{hi}': no value fits")
    types = schema.get("type")
    for t in types if isinstance(types, list) else [types] if types else []:
        if t not in _TYPES:
            raise SchemaError(f"tool '{tool}': unknown type '{t}' at {path}")
    if "x-mageagent" in schema:
        kind = schema["x-mageagent"]
        if kind not in _GROUNDED_KINDS:
            raise SchemaError(f"tool '{tool}': x-mageagent at {path} is {kind!r}; choose one of "
                              f"{', '.join(_GROUNDED_KINDS)}")
        if types != "string" or path.count(".properties.") != 1:
            raise SchemaError(f"tool '{tool}': x-mageagent marks a top-level string property; {path} is not one")
    if types is None and not any(k in schema for k in ("anyOf", "oneOf", "enum", "const")):
        raise SchemaError(f"tool '{tool}': schema at {path} has no type, enum, const or anyOf")
    missing = [r for r in schema.get("required") or [] if r not in (schema.get("properties") or {})]
    if missing:
        raise SchemaError(f"tool '{tool}': required at {path} names unknown properties: {', '.join(missing)}")
    for name, sub in (schema.get("properties") or {}).items():
        _walk(tool, sub, f"{path}.properties.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        raise SchemaError(f"tool '{tool}': additionalProperties with a schema at {path} is not supported; "
                          "list the properties instead")
    if "items" in schema:
        if isinstance(schema["items"], list):
            raise SchemaError(f"tool '{tool}': tuple-form 'items' (a list) at {path} is not supported")
        _walk(tool, schema["items"], f"{path}.items")
    for key in ("anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or []):
            _walk(tool, sub, f"{path}.{key}[{i}]")


def validate_definition(tool: ToolDefinition) -> None:
    """Refuse a host tool definition the constrainer cannot handle, naming the tool and the construct."""
    params = tool.parameters
    if params.get("type") != "object":
        raise SchemaError(f"tool '{tool.name}': parameters must be a JSON schema of type 'object'")
    _walk(tool.name, params, "parameters")


def bound_schema(schema: dict[str, Any], max_string: int, max_items: int) -> dict[str, Any]:
    """A copy where every string, number, array and object is bounded, so generation must end."""
    s = copy.deepcopy(schema)

    def fix(node: Any) -> None:
        if not isinstance(node, dict):
            return
        types = node.get("type")
        tl = types if isinstance(types, list) else [types]
        if "string" in tl and "enum" not in node and "const" not in node:
            node["maxLength"] = min(int(node.get("maxLength", max_string)), max_string)
        if ("number" in tl or "integer" in tl) and "enum" not in node and "const" not in node:
            node["minimum"] = max(node.get("minimum", -NUMBER_LIMIT), -NUMBER_LIMIT)
            node["maximum"] = min(node.get("maximum", NUMBER_LIMIT), NUMBER_LIMIT)
            if "number" in tl:
                node.setdefault("multipleOf", NUMBER_STEP)
        if "array" in tl:
            node["maxItems"] = min(int(node.get("maxItems", max_items)), max_items)
        if "object" in tl:
            node.setdefault("additionalProperties", False)
        for sub in (node.get("properties") or {}).values():
            fix(sub)
        fix(node.get("items"))
        for key in ("anyOf", "oneOf"):
            for sub in node.get(key) or []:
                fix(sub)
        node.pop("x-mageagent", None)  # grounding is applied before bounding (grounding.decoding_parameters)
        node.pop("format", None)  # formats are not enforced token by token; validated after parsing

    fix(s)
    return s


def token_bound(schema: Any) -> int:
    """An upper bound on the tokens a JSON value valid against a bounded schema can take."""
    if not isinstance(schema, dict):
        return 8
    # A token is at least one byte, and the constrainer emits a literal in one JSON spelling (UTF-8, short
    # escapes): its byte length bounds its tokens.
    if "const" in schema:
        return len(json.dumps(schema["const"], ensure_ascii=False).encode()) + 2
    if "enum" in schema:
        return max(len(json.dumps(v, ensure_ascii=False).encode()) for v in schema["enum"]) + 2
    alts = (schema.get("anyOf") or []) + (schema.get("oneOf") or [])
    if alts:
        return max(token_bound(a) for a in alts)
    types = schema.get("type")
    tl = types if isinstance(types, list) else [types]
    best = 0
    for t in tl:
        if t == "string":
            best = max(best, int(schema.get("maxLength", 0)) * _STRING_ESCAPE + 2)
        elif t in ("integer", "number"):
            best = max(best, _NUMBER_BYTES)
        elif t in ("boolean", "null"):
            best = max(best, 5)
        elif t == "array":
            best = max(best, 2 + int(schema.get("maxItems", 0)) * (token_bound(schema.get("items", {})) + 1))
        elif t == "object":
            props = schema.get("properties") or {}
            best = max(best, 2 + sum(len(k.encode()) * _STRING_ESCAPE + 4 + token_bound(v) for k, v in props.items()))
    return best


# -- host patterns in linear time --------------------------------------------------------------------------
# Python's re (and so jsonschema's "pattern") backtracks: a host's ``^(\w+\w?)+$`` against a 26-character file
# name runs for seconds on the event loop, longer by x4 per two characters. llguidance's regex engine (derivatives
# and a lazy DFA, the one that constrains decoding) reads each byte once, with a bounded cost per step.
class _ByteVocabulary:
    """One token per byte, so matching a string is feeding it its UTF-8 bytes."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([b]) for b in range(256)] + [b"<eos>"]
    special_token_ids = [256]

    def __call__(self, s: str | bytes) -> list[int]:
        return list(s if isinstance(s, bytes) else s.encode())


@functools.lru_cache(maxsize=1)
def _byte_tokenizer() -> Any:
    import llguidance

    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteVocabulary()))


def _whole_string_regex(pattern: str) -> str | None:
    """``pattern`` (an unanchored ECMA search) as a regex the whole string must match, where its only anchors are a
    leading ``^`` and a trailing ``$``; None otherwise (the JSON-schema route then handles the anchors)."""
    anchors: list[int] = []
    depth, in_class, alternation, i = 0, False, False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            alternation = True
        elif c in "^$":
            anchors.append(i)
        i += 1
    start = 0 in anchors and pattern[0] == "^"
    end = len(pattern) - 1 in anchors and pattern[-1] == "$" and len(pattern) > (1 if start else 0)
    inner = [a for a in anchors if not (start and a == 0) and not (end and a == len(pattern) - 1)]
    if inner or (alternation and (start or end)):
        return None
    body = pattern[1 if start else 0:len(pattern) - 1 if end else len(pattern)]
    return ("" if start else "(?s:.)*") + "(?:" + body + ")" + ("" if end else "(?s:.)*")


class PatternMatcher:
    """A JSON-schema ``pattern`` matched by llguidance's regex engine: linear in the text, never backtracking.
    ``supported`` is False for what that engine lacks (look-arounds, back-references): nothing then matches."""

    def __init__(self, pattern: str) -> None:
        import llguidance

        self.pattern = pattern
        self._lock = threading.Lock()  # one matcher, reset for each text
        self._json = False
        whole = _whole_string_regex(pattern)
        matcher = None
        try:
            if whole is not None:
                matcher = llguidance.LLMatcher(_byte_tokenizer(), llguidance.LLMatcher.grammar_from_regex(whole),
                                               log_level=0)
            if matcher is None or matcher.is_error():
                self._json = True  # llguidance's JSON-schema compiler handles anchors anywhere, on the quoted string
                grammar = llguidance.LLMatcher.grammar_from_json_schema({"type": "string", "pattern": pattern},
                                                                        overrides={"whitespace_flexible": False})
                matcher = llguidance.LLMatcher(_byte_tokenizer(), grammar, log_level=0)
        except (ValueError, TypeError, RuntimeError):  # a grammar llguidance refuses to build: unsupported
            matcher = None
        self._matcher = matcher
        self.supported = matcher is not None and not matcher.is_error()

    def __call__(self, text: str) -> bool:
        """Whether ``pattern`` matches somewhere in ``text`` (JSON Schema's unanchored search)."""
        if not self.supported or self._matcher is None:
            return False
        try:
            data = (json.dumps(text, ensure_ascii=False) if self._json else text).encode()
        except UnicodeEncodeError:  # a lone surrogate: no pattern of a JSON schema can be checked against it
            return False
        tokens = list(data)
        with self._lock:
            self._matcher.reset()
            # try_consume stops at the first byte refused without putting the matcher in an error state
            taken = self._matcher.try_consume_tokens(tokens)
            return taken == len(tokens) and self._matcher.is_accepting()


@functools.lru_cache(maxsize=256)
def pattern_matcher(pattern: str) -> PatternMatcher:
    """The linear matcher for ``pattern`` (built once: a host sends the same tools with every call)."""
    return PatternMatcher(pattern)


def _linear_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not pattern_matcher(pattern)(instance):
        yield jsonschema.ValidationError(f"{instance[:80]!r} does not match {pattern!r}")


# jsonschema's Draft 2020-12 validator with "pattern" (at any depth) checked in linear time. Use it wherever a host's
# schema meets text the request or a model supplied.
LinearValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _linear_pattern})
