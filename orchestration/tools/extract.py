"""Constrained tool-call extraction: the tools model's output is a valid, grounded call array by construction.

``extraction_constraint``: ``grounded`` (default) decodes under a schema built per call from the request and the
answer (grounding.py: paths, contents and edited spans are enums) and expands block numbers afterwards; ``grammar``
decodes under the tools' plain schemas (valid, not grounded: the behaviour before grounding); ``none`` is free text
parsed leniently (the evaluation's unconstrained baseline).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import jsonschema
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import ModelOutputError
from ..core.types import Completion, Constraint, ToolCall, ToolDecision, ToolDefinition
from ..run import prompts
from ..run.context import RunContext
from ..run.heuristics import tool_need
from .candidates import build_candidates, guard_calls
from .catalogue import SEED_TOOLS, resolve_tools
from .grounding import ANNOTATION, BLOCK_SUFFIX, Grounding, decoding_parameters, expand, ground, labelled_answer
from .relevance import relevance_gate
from .risk import risk_of
from .schema import LinearValidator, bound_schema, token_bound

__all__ = ["extraction_schema", "grounded_tools", "extract_tool_calls", "decide_calls", "parse_calls",
           "parse_grounded", "lenient_json", "maybe_extract"]

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
            LinearValidator(tool.parameters).validate(c.arguments)  # host patterns in linear time
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
            LinearValidator(view.parameters).validate(c.arguments)
        except jsonschema.ValidationError as e:
            raise ModelOutputError(f"arguments for {c.tool} are not grounded in the request or the answer: "
                                   f"{e.message[:300]}", raw=text) from e
        arguments = expand(tool, c.arguments, g)
        try:
            LinearValidator(tool.parameters).validate(arguments)
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


async def extract_tool_calls(ctx: RunContext, response: str | None, model: str | None = None,
                             force: bool = False) -> list[ToolCall]:
    """The calls for the host: from facts among candidates (the seed tools, by default), or the tools model under
    the call-array constraint (host tools, or the older modes); every path ends in the data-loss guard."""
    tools = resolve_tools(ctx.request.tools)
    s = ctx.settings
    if s.extraction_constraint == "candidates" and tools is SEED_TOOLS:
        return await decide_calls(ctx, response, model=model, force=force)
    if s.extraction_constraint in ("grounded", "candidates"):
        if tools is not SEED_TOOLS:
            gate = relevance_gate(ctx.request.prompt, tools)
            if gate is not None:
                ctx.trace.tool_decision = ToolDecision(decided_by="facts", reason=gate)
                return []
        return _guarded(ctx, await _extract_grounded(ctx, tools, response, model))
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
    return _guarded(ctx, calls)


def _guarded(ctx: RunContext, calls: list[ToolCall]) -> list[ToolCall]:
    """The data-loss guard over a model's calls; what it refuses is said in the trace."""
    kept, refused = guard_calls(calls, ctx.request)
    if refused:
        decision = ctx.trace.tool_decision or ToolDecision(decided_by="model", reason="the tools model wrote the calls")
        decision.refused += refused
        ctx.trace.tool_decision = decision
    return kept


async def decide_calls(ctx: RunContext, answer: str | None, model: str | None = None,
                       force: bool = False) -> list[ToolCall]:
    """Candidates from facts (candidates.py); the request's own asks decide, a question gets none, and otherwise
    the tools model picks one candidate or none, constrained to the list, its probabilities in the trace."""
    cut = answer is not None and ctx.is_cut_off(answer)
    # Pure Python over text (parsing and diffing a large context takes a moment): off the event loop, so other
    # requests keep being answered meanwhile. No MLX work happens here.
    cands = await anyio.to_thread.run_sync(lambda: build_candidates(ctx.request, answer, cut_off=cut))
    items, intent = cands.items, cands.intent
    asked = [i for i, c in enumerate(items) if c.asked]
    decision = ToolDecision(decided_by="facts", reason="", candidates=items, refused=list(cands.refused),
                            evidence=intent.evidence)
    ctx.trace.tool_decision = decision
    notes = ("; " + "; ".join(cands.notes)) if cands.notes else ""
    if asked:
        decision.chosen = asked
        decision.reason = ("the request asks for " + ", ".join(items[i].label.split(" (")[0] for i in asked)
                           + ": no model step" + notes)
    elif not items:
        decision.decided_by = "nothing to decide"
        decision.reason = "no call is grounded in the request, the context or the answer" + notes
    elif intent.question and not force:
        decision.reason = "the request asks a question; the candidates are not what it asks for" + notes
    else:
        labels = [c.label for c in items]
        options = [str(n) for n in range(1, len(items) + 1)] + ["none"]
        messages = prompts.choose_calls(ctx.request, answer, labels)

        def parse(c: Completion) -> str:
            pick = c.text.strip().split()[0].rstrip(".") if c.text.strip() else ""
            if pick not in options:
                raise ModelOutputError(f"the chooser answered {c.text[:40]!r}, not one of {options}", raw=c.text)
            return pick

        c, pick = await ctx.generate_parsed("tools", messages, parse, purpose="choose tool calls", max_tokens=4,
                                            constraint=Constraint(options=options), model=model)
        decision.decided_by = "model"
        decision.probabilities = {k: round(v, 4) for k, v in (c.option_probs or {}).items()}
        decision.chosen = [] if pick == "none" else [int(pick) - 1]
        decision.reason = ("the tools model chose " + ("no action" if pick == "none" else labels[int(pick) - 1])
                           + " among the candidates" + notes)
    calls = [call for i in decision.chosen for call in items[i].calls]
    kept, refused = guard_calls(calls, ctx.request)
    decision.refused += refused
    return kept


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
    if ctx.settings.extraction_constraint == "candidates" and not ctx.request.tools:
        # Building candidates costs no model step: the facts, not a keyword list, say whether a call is needed.
        ctx.trace.extraction = f"{mode}: candidates from the request, the context and the answer"
        return await extract_tool_calls(ctx, answer, force=mode == "always")
    if mode == "auto":
        hits = tool_need(ctx.request.prompt, answer)
        if not hits:
            ctx.trace.extraction = "skipped: no tool-need pattern matched the request or the answer"
            return []
        ctx.trace.extraction = f"auto: matched {', '.join(hits[:4])}"
    else:
        ctx.trace.extraction = "always"
    return await extract_tool_calls(ctx, answer, force=mode == "always")
