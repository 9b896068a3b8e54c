"""Grounded tool calls: every path, content and edited span a call may carry, drawn from the request and the answer.

A property of a tool's JSON schema marked ``"x-mageagent": KIND`` is grounded; the seed tools mark theirs, and a
host marks its own in the MCP ``tools`` argument. The kinds:

- ``path``: a file named in the prompt, the context or the answer (``stack.py`` in "save it to stack.py");
- ``directory``: a directory named there, or the parent of a named file;
- ``content``: one of the answer's fenced code blocks verbatim, or the whole answer where it has none. The model
  writes ``"<name>_block": N`` (the block's number) and the call is expanded after decoding, so code is never
  re-typed;
- ``old-text``: a span of the context (a line, a few lines, a code block, a phrase of the prompt found in it);
  with no context, only text the prompt quotes (in backticks or quotes);
- ``new-text``: a code block of the answer, a line of it, or a phrase of it.

Each becomes an ``enum`` (or an integer ``enum`` of block numbers) in the decoding schema, so the grammar that
constrains the tools model does the grounding: a path that appears nowhere cannot be produced. Where no answer
exists (the ``tools`` pattern), content comes from the prompt's own code blocks or quoted text, and stays a free
bounded string where the prompt has neither. A required grounded property with no candidate takes its tool out
of the choice.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.types import PatternRequest, ToolDefinition
from .schema import LinearValidator

__all__ = ["ANNOTATION", "KINDS", "Grounding", "code_blocks", "file_names", "ground", "decoding_parameters",
           "expand", "labelled_answer"]

ANNOTATION = "x-mageagent"
KINDS = ("path", "directory", "content", "old-text", "new-text")
BLOCK_SUFFIX = "_block"
MAX_WORDS = 8  # a phrase is at most this many words
MAX_LINES = 4  # a span of the context is at most this many lines (or one whole code block)
FULL_LINES = 3  # a longer block is shown to the tools model as a stub (labelled_answer)
MAX_CANDIDATES = 3000  # per kind; an enum of a few thousand strings compiles in tens of milliseconds

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_TOKEN = re.compile(r"[\w.~/\\+@-]+")
_QUOTED = re.compile(r"`([^`\n]+)`|\"([^\"\n]+)\"|(?<![\w'])'([^'\n]+)'(?![\w'])")
_WORD = re.compile(r"\S+")
# Extensions and bare names that make a token a file name; a list, so code words such as ``os.path`` are not.
EXTENSIONS = frozenset("""
py pyi pyx ipynb js mjs cjs jsx ts tsx json jsonl md markdown rst txt text toml yaml yml ini cfg conf env sh bash
zsh fish ps1 bat cmd rs go c h cc cpp cxx hpp hh java kt kts scala swift m mm rb php pl lua r jl dart ex exs erl hs
ml clj sql csv tsv xml html htm css scss sass less vue svelte lock log gradle proto graphql tf nix tex bib svg png
jpg jpeg gif webp pdf zip gz tgz tar whl so dylib dll exe wasm properties dockerfile mk cmake patch diff
""".split())
BARE_NAMES = frozenset({"Makefile", "Dockerfile", "README", "LICENSE", "CHANGELOG", "Procfile", "Gemfile",
                        "Rakefile", "Justfile", ".gitignore", ".dockerignore", ".env", ".bashrc", ".zshrc",
                        ".editorconfig", ".gitattributes", ".npmrc", ".pylintrc"})


class Grounding(BaseModel):
    """The values grounded properties may take for one extraction."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(default_factory=list)
    directories: list[str] = Field(default_factory=list)
    blocks: list[str] = Field(default_factory=list, description="content by number: blocks[N-1] is block N")
    old_spans: list[str] = Field(default_factory=list)
    new_spans: list[str] = Field(default_factory=list)

    def values(self, kind: str) -> list[str]:
        return {"path": self.paths, "directory": self.directories, "old-text": self.old_spans,
                "new-text": self.new_spans}[kind]


def _unique(items: Any, limit: int = MAX_CANDIDATES) -> list[str]:
    seen: dict[str, None] = {}
    for it in items:
        if it and it not in seen:
            seen[it] = None
            if len(seen) >= limit:
                break
    return list(seen)


def _fences(text: str) -> list[tuple[int, int, str]]:
    """(start of the opening fence line, end of the closing fence line, body) for each fenced block."""
    out = []
    lines = text.splitlines(keepends=True)
    pos, i = 0, 0
    offsets = []
    for ln in lines:
        offsets.append(pos)
        pos += len(ln)
    while i < len(lines):
        m = _FENCE.match(lines[i].rstrip("\r\n"))
        if m is None or (m.group(1)[0] == "`" and "`" in m.group(2)):
            i += 1
            continue
        fence = m.group(1)
        j = i + 1
        while j < len(lines):
            c = _FENCE.match(lines[j].rstrip("\r\n"))
            if c and c.group(1)[0] == fence[0] and len(c.group(1)) >= len(fence) and not c.group(2).strip():
                break
            j += 1
        body = "".join(lines[i + 1:j])  # an unclosed fence (a cut-off answer) runs to the end
        end = offsets[j] + len(lines[j]) if j < len(lines) else len(text)
        out.append((offsets[i], end, body))
        i = j + 1
    return out


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks in ``text``, verbatim (the text between the fence lines)."""
    return [body for _, _, body in _fences(text)]


def _prose(text: str) -> str:
    """``text`` without its fenced blocks."""
    parts, last = [], 0
    for start, end, _ in _fences(text):
        parts.append(text[last:start])
        last = end
    parts.append(text[last:])
    return "\n".join(parts)


def _is_file(token: str) -> bool:
    name = token.rstrip("/").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if name in BARE_NAMES:
        return True
    stem, dot, ext = name.rpartition(".")
    return bool(dot and stem.strip(".") and ext.lower() in EXTENSIONS)


_URL = re.compile(r"[A-Za-z][\w+.-]*://\S+")


def _tokens(text: str) -> list[str]:
    text = _URL.sub(" ", text)
    out = []
    for m in _QUOTED.finditer(text):
        q = next(g for g in m.groups() if g is not None).strip()
        if q and not any(c.isspace() for c in q) and "://" not in q:  # a path with spaces is not recognised
            out.append(q)
    for m in _TOKEN.finditer(text):
        tok = m.group(0).rstrip(".,;:!?")
        if tok and not tok.startswith("-"):
            out.append(tok)
    return out


def file_names(text: str) -> list[str]:
    """Tokens of ``text`` that name files: a known extension or bare name, with or without directories."""
    return _unique(t for t in _tokens(text) if _is_file(t))


def _directories(text: str, files: list[str]) -> list[str]:
    named = [t for t in _tokens(text) if "/" in t.strip("/") or t.endswith("/")]
    named = [t for t in named if not _is_file(t) and re.search(r"\w", t)]
    parents = [f.rsplit("/", 1)[0] for f in files if "/" in f.strip("/")]
    return _unique(named + parents)


def _phrases(text: str) -> list[str]:
    """Runs of up to MAX_WORDS whitespace-separated words of ``text``, as they appear in it."""
    out = []
    for line in text.splitlines():
        words = list(_WORD.finditer(line))
        for i in range(len(words)):
            for j in range(i, min(i + MAX_WORDS, len(words))):
                out.append(line[words[i].start():words[j].end()])
    return out


def _quoted(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text)]


def _line_spans(text: str) -> list[str]:
    lines = text.splitlines()
    out = []
    for n in range(1, MAX_LINES + 1):
        for i in range(len(lines) - n + 1):
            window = lines[i:i + n]
            if not window[0].strip() or not window[-1].strip():
                continue
            span = "\n".join(window)
            out.append(span)
            if n == 1 and span.strip() != span:
                out.append(span.strip())
    return out


def ground(request: PatternRequest, answer: str | None) -> Grounding:
    """The candidates for every grounded kind, from the prompt, the context and the answer."""
    prompt, context = request.prompt, request.context or ""
    texts = [prompt, context, answer or ""]
    paths = _unique(p for t in texts for p in file_names(t))
    directories = _directories("\n".join(texts), paths)
    if answer is not None and answer.strip():
        blocks = code_blocks(answer) or [answer]
        new = list(blocks)
        for b in code_blocks(answer):
            new += _line_spans(b)[: len(b.splitlines()) * 2]
        new += _quoted(_prose(answer)) + _line_spans(_prose(answer)) + _phrases(_prose(answer))
    else:
        blocks = code_blocks(prompt) or _quoted(_prose(prompt))
        new = blocks + _quoted(prompt) + _phrases(_prose(prompt))
    if context:
        old = code_blocks(context) + [context] + _line_spans(context)
        old += [p for p in _quoted(prompt) + _phrases(prompt) if p in context]
    else:  # no text to edit was given: only text the prompt quotes (replace `X` with `Y`)
        old = _quoted(prompt)
    return Grounding(paths=paths, directories=directories, blocks=_unique(blocks), old_spans=_unique(old),
                     new_spans=_unique(new))


def labelled_answer(answer: str, full_lines: int = FULL_LINES) -> str:
    """The answer as the tools model reads it: ``(block N)`` above each fenced code block (above the whole answer
    where it has none). A block longer than ``full_lines`` lines shows as a one-line stub: the model picks it by
    number and never needs its text (a small model shown long code tends to answer ``[]``)."""
    fences = _fences(answer)
    if not fences:
        return f"(block 1)\n{answer}"
    parts, last = [], 0
    for n, (start, end, body) in enumerate(fences, 1):
        lines = body.splitlines()
        if len(lines) > full_lines:
            shown = f"(block {n}: {len(lines)} lines of code, starting `{lines[0].strip()[:80]}`)\n"
        else:
            shown = f"(block {n})\n" + answer[start:end]
        parts.append(answer[last:start] + shown)
        last = end
    return "".join(parts) + answer[last:]


_NO_CHECK = {"type", "description", "title", "examples", "default", ANNOTATION}


def _fitting(values: list[str], schema: dict[str, Any]) -> list[str]:
    """The candidates the property's own schema accepts (a host may bound length or give a pattern). A pattern is
    matched in linear time (schema.LinearValidator): grounding runs on the event loop, and a host's backtracking
    pattern must not stall it."""
    if set(schema) <= _NO_CHECK:
        return list(values)
    check = LinearValidator({k: v for k, v in schema.items() if k != ANNOTATION})
    return [v for v in values if check.is_valid(v)]


def decoding_parameters(tool: ToolDefinition, g: Grounding) -> dict[str, Any] | None:
    """The arguments schema the tools model decodes under: grounded properties as enums, content as block
    numbers. None where a required grounded property has no candidate (the tool cannot be called now)."""
    params = copy.deepcopy(tool.parameters)
    props: dict[str, Any] = params.get("properties") or {}
    required: list[str] = list(params.get("required") or [])
    out_props: dict[str, Any] = {}
    out_required: list[str] = []
    for name, spec in props.items():
        kind = spec.get(ANNOTATION) if isinstance(spec, dict) else None
        need = name in required
        if kind is None:
            out_props[name] = spec
            if need:
                out_required.append(name)
            continue
        if kind == "content":
            blocks = _fitting(g.blocks, spec)
            if not blocks:  # nothing to ground against: the plain, bounded string
                out_props[name] = {k: v for k, v in spec.items() if k != ANNOTATION}
                if need:
                    out_required.append(name)
                continue
            key = name + BLOCK_SUFFIX
            numbers = [i for i, b in enumerate(g.blocks, 1) if b in blocks]
            out_props[key] = {"type": "integer", "enum": numbers, "examples": [numbers[0]],
                              "description": "the number of a code block of the response"}
            if need:
                out_required.append(key)
            continue
        values = _fitting(g.values(kind), spec)
        if not values:
            if need:
                return None
            continue
        out_props[name] = {**{k: v for k, v in spec.items() if k in ("type", "description", "examples")},
                           "enum": values}
        if need:
            out_required.append(name)
    params["properties"] = out_props
    params["required"] = out_required
    return params


def expand(tool: ToolDefinition, arguments: dict[str, Any], g: Grounding) -> dict[str, Any]:
    """The call's arguments with each ``<name>_block`` number replaced by that block's text under ``<name>``."""
    props = tool.parameters.get("properties") or {}
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        base = key[: -len(BLOCK_SUFFIX)] if key.endswith(BLOCK_SUFFIX) else None
        if (base is not None and base not in arguments and isinstance(props.get(base), dict)
                and props[base].get(ANNOTATION) == "content" and isinstance(value, int)
                and 1 <= value <= len(g.blocks)):
            out[base] = g.blocks[value - 1]
        else:
            out[key] = value
    return out
