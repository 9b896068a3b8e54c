"""Constrained tool-call extraction: the tools model's output is a valid, grounded call array by construction.

``extraction_constraint``: ``grounded`` (default) decodes under a schema built per call from the request and the
answer (grounding.py: paths, contents and edited spans are enums) and expands block numbers afterwards; ``grammar``
decodes under the tools' plain schemas (valid, not grounded: the behaviour before grounding); ``none`` is free text
parsed leniently (the evaluation's unconstrained baseline).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, ValidationError

from .. import prompts
from ..context import RunContext
from ..errors import ModelOutputError
from ..heuristics import tool_need
from ..types import Completion, Constraint, ToolCall, ToolDefinition
from .catalogue import SEED_TOOLS, resolve_tools
from .grounding import ANNOTATION, BLOCK_SUFFIX, Grounding, decoding_parameters, expand, ground, labelled_answer
from .risk import risk_of
from .schema import bound_schema, token_bound

__all__ = ["extraction_schema", "grounded_tools", "extract_tool_calls", "parse_calls", "parse_grounded",
           "lenient_json", "maybe_extract"]

PURPOSE = "extract tool calls"


class _RawCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str
    arguments: dict[str, Any]


def extraction_schema(tools: list[ToolDefinition], max_calls: int, max_string: int) -> dict[str, Any]:
    """A JSON array of at most ``max_calls`` ``{"tool", "arguments"}`` objects, one alternative per tool."""
    alternatives = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": bound_schema(t.parameters, max_string, 8)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return {"type": "array", "items": {"anyOf": alternatives}, "maxItems": max_calls}


def grounded_tools(tools: list[ToolDefinition], g: Grounding) -> list[tuple[ToolDefinition, ToolDefinition]]:
    """(tool, its decoding view) for each tool callable now; the view's parameters are the grounded schema."""
    out = []
    for t in tools:
        params = decoding_parameters(t, g)
        if params is not None:
            out.append((t, t.model_copy(update={"parameters": params})))
    return out


def _raw_calls(text: str) -> list[_RawCall]:
    try:
        raw = [_RawCall.model_validate(c) for c in json.loads(text)] if text.strip() else None
    except (ValueError, ValidationError, TypeError) as e:
        raise ModelOutputError(f"the tools model's output is not a tool-call array: {e}", raw=text) from e
    if raw is None:
        raise ModelOutputError("the tools model produced no output", raw=text)
    return raw


def parse_calls(text: str, tools: list[ToolDefinition]) -> list[ToolCall]:
    """Parse the constrained output with pydantic, validate each call against its tool's schema, label risk."""
    raw = _raw_calls(text)
    by_name = {t.name: t for t in tools}
    seed = tools is SEED_TOOLS
    calls = []
    for c in raw:
        tool = by_name.get(c.tool)
        if tool is None:
            raise ModelOutputError(f"the tools model named an unknown tool {c.tool!r}", raw=text)
        try:
            jsonschema.validate(c.arguments, tool.parameters)
        except jsonschema.ValidationError as e:
            raise ModelOutputError(f"arguments for {c.tool} do not match its schema: {e.message}", raw=text) from e
        calls.append(ToolCall(tool=c.tool, arguments=c.arguments, risk=risk_of(tool, c.arguments, seed=seed)))
    return calls


def parse_grounded(text: str, tools: list[ToolDefinition], g: Grounding) -> list[ToolCall]:
    """Parse output decoded under the grounded schema: check each call against its decoding view (where the
    backend could not enforce it), expand block numbers, then validate against the tool's own schema."""
    raw = _raw_calls(text)
    views = {t.name: (t, view) for t, view in grounded_tools(tools, g)}
    seed = tools is SEED_TOOLS
    calls = []
    for c in raw:
        if c.tool not in views:
            raise ModelOutputError(f"the tools model named {c.tool!r}, which is unknown or has nothing to ground "
                                   "its arguments in", raw=text)
        tool, view = views[c.tool]
        try:
            jsonschema.validate(c.arguments, view.parameters)
        except jsonschema.ValidationError as e:
            raise ModelOutputError(f"arguments for {c.tool} are not grounded in the request or the answer: "
                                   f"{e.message[:300]}", raw=text) from e
        arguments = expand(tool, c.arguments, g)
        try:
            jsonschema.validate(arguments, tool.parameters)
        except jsonschema.ValidationError as e:
            raise ModelOutputError(f"expanded arguments for {c.tool} do not match its schema: {e.message[:300]}",
                                   raw=text) from e
        calls.append(ToolCall(tool=c.tool, arguments=arguments, risk=risk_of(tool, arguments, seed=seed)))
    return calls


def lenient_json(text: str) -> str:
    """The first JSON array or object in free text (code fences and prose around it ignored), as JSON text;
    a lone object becomes a one-call array. The text unchanged where none parses."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch not in "[{":
            continue
        try:
            value, _ = decoder.raw_decode(text, i)
        except ValueError:
            continue
        return json.dumps([value] if isinstance(value, dict) else value)
    return text


async def extract_tool_calls(ctx: RunContext, response: str | None, model: str | None = None) -> list[ToolCall]:
    """Run the tools model under the call-array constraint on the task (and the reasoning model's answer)."""
    tools = resolve_tools(ctx.request.tools)
    s = ctx.settings
    if s.extraction_constraint == "grounded":
        return await _extract_grounded(ctx, tools, response, model)
    schema = extraction_schema(tools, s.extraction_max_calls, s.extraction_max_string)
    budget = token_bound(schema) + 1  # +1 for the end-of-sequence token
    messages = prompts.extraction(ctx.request, response, tools, s.prompts)
    if s.extraction_constraint == "none":
        # The unconstrained baseline: free text, the first JSON value in it, one attempt, the same
        # budget capped at the answer budget (a free generation has no closing bracket to stop it).
        def parse_free(c: Completion) -> list[ToolCall]:
            return parse_calls(lenient_json(c.text), tools)

        _, calls = await ctx.generate_parsed("tools", messages, parse_free, purpose=PURPOSE + " (unconstrained)",
                                             retries=0, max_tokens=min(budget, ctx.answer_max_tokens), model=model)
        return calls

    def parse(c: Completion) -> list[ToolCall]:
        if c.finish_reason == "length":
            raise ModelOutputError(f"output cut off after {c.completion_tokens} tokens; no partial call is "
                                   f"returned (raw: {c.text[:200]!r})", raw=c.text)
        return parse_calls(c.text, tools)

    _, calls = await ctx.generate_parsed("tools", messages, parse, purpose=PURPOSE, max_tokens=budget,
                                         constraint=Constraint(json_schema=schema), model=model)
    return calls


async def _extract_grounded(ctx: RunContext, tools: list[ToolDefinition], response: str | None,
                            model: str | None) -> list[ToolCall]:
    s = ctx.settings
    g = ground(ctx.request, response)
    views = [view for _, view in grounded_tools(tools, g)]
    # With no tool callable (every one needs a grounded value the request lacks) the grammar admits only "[]";
    # the tools model is still asked, so the trace shows the step and its cost.
    schema = extraction_schema(views, s.extraction_max_calls, s.extraction_max_string) if views else \
        {"type": "array", "maxItems": 0}
    budget = token_bound(schema) + 1
    # Block labels and the file list only where a tool has such a property: a host's plain tools (BFCL's, say)
    # get the seed prompt unchanged.
    kinds = {spec.get(ANNOTATION) for t in tools for spec in (t.parameters.get("properties") or {}).values()
             if isinstance(spec, dict)}
    by_number = any(k.endswith(BLOCK_SUFFIX) for v in views for k in v.parameters.get("properties", {}))
    shown = labelled_answer(response) if by_number and response is not None else response
    messages = prompts.extraction(ctx.request, shown, views, s.prompts,
                                  files=g.paths if kinds & {"path", "directory"} else None,
                                  blocks=g.blocks if by_number and response is None else None)

    def parse(c: Completion) -> list[ToolCall]:
        if c.finish_reason == "length":
            raise ModelOutputError(f"output cut off after {c.completion_tokens} tokens; no partial call is "
                                   f"returned (raw: {c.text[:200]!r})", raw=c.text)
        return parse_grounded(c.text, tools, g)

    _, calls = await ctx.generate_parsed("tools", messages, parse, purpose=PURPOSE, max_tokens=budget,
                                         constraint=Constraint(json_schema=schema), model=model)
    return calls


async def maybe_extract(ctx: RunContext, answer: str) -> list[ToolCall]:
    """Extraction by the switch: always, never, or (auto) when the seed's heuristics match task or answer."""
    mode = ctx.request.extraction or ctx.settings.extraction
    if mode == "never":
        ctx.trace.extraction = "skipped: extraction = never"
        return []
    if mode == "auto":
        hits = tool_need(ctx.request.prompt, answer)
        if not hits:
            ctx.trace.extraction = "skipped: no tool-need pattern matched the request or the answer"
            return []
        ctx.trace.extraction = f"auto: matched {', '.join(hits[:4])}"
    else:
        ctx.trace.extraction = "always"
    return await extract_tool_calls(ctx, answer)
