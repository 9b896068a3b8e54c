"""Tool calls from facts: the calls a host could want, built from the request, the context and the answer before
any model runs, and the rule that decides among them.

- a file the request names as where to put code + the answer's code block -> ``Write(file, block)``;
- a file the host passed as context + the answer's new version of some of its definitions -> ``Edit``s derived
  by diff (merge.py), never a Write that drops what the file had;
- "run it", "run the tests", a quoted command, a named linter -> ``Bash`` from a grounded path or a fixed
  template; a command in the answer's own shell blocks verbatim. No command text is ever written by a model;
- read / find / search / delete / install / list / git asks -> Read, Glob, Grep or a templated Bash.

Where the request's words ask for exactly the candidates found, they are the answer (no model step). A question
gets no call. Otherwise the tools model chooses one candidate or none (extract.py), constrained to the list.
"""

from __future__ import annotations

import ast
import difflib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.types import PatternRequest, ToolCall, ToolCandidate
from .grounding import file_names
from .intent import Intent, read_intent
from .merge import definitions, diff_edits, dropped_definitions, merge_code
from .risk import bash_risk

__all__ = ["Block", "answer_blocks", "context_files", "Candidates", "build_candidates", "guard_calls",
           "outside_folder"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+.#-]*)[^\n]*$")
_LANGS = {"py": {"python", "py", "python3", "ipython", ""}, "pyi": {"python", "py", ""},
          "sh": {"bash", "sh", "shell", "zsh", ""}, "bash": {"bash", "sh", "shell", ""},
          "js": {"javascript", "js", "node", ""}, "mjs": {"javascript", "js", ""}, "ts": {"typescript", "ts", ""},
          "md": {"markdown", "md", ""}, "json": {"json", ""}, "yaml": {"yaml", "yml", ""},
          "yml": {"yaml", "yml", ""}, "toml": {"toml", ""}, "html": {"html", ""}, "css": {"css", ""},
          "txt": {"text", "txt", "plaintext", ""}, "rs": {"rust", "rs", ""}, "go": {"go", "golang", ""},
          "c": {"c", ""}, "cpp": {"cpp", "c++", ""}, "java": {"java", ""}, "rb": {"ruby", "rb", ""},
          "sql": {"sql", ""}, "ini": {"ini", ""}, "cfg": {"ini", "cfg", ""}, "csv": {"csv", ""}}
_SHELL = {"bash", "sh", "shell", "console", "zsh", "terminal", "cmd"}
_PROSE_EXT = {"txt", "md", "rst", "markdown", "text"}
_HEADER = re.compile(r"^(?:==>\s*(?P<a>\S+)\s*<==|(?:#{1,3}|//|--)\s*(?:[Ff]ile:?\s*)?(?P<b>[\w./-]+\.\w+)\s*:?|"
                     r"[Ff]ile:\s*(?P<c>\S+)|---\s*(?P<d>[\w./-]+\.\w+)\s*---)\s*$")
_RUNNERS = {"py": "python", "sh": "bash", "bash": "bash", "js": "node", "mjs": "node", "ts": "npx ts-node",
            "rb": "ruby", "pl": "perl"}
# A named tool with no command given: its canonical invocation (fixed text, never a model's).
_NAMED_TOOLS = [
    (re.compile(r"\bruff\b", re.I), "ruff check ."), (re.compile(r"\bmypy\b", re.I), "mypy ."),
    (re.compile(r"\bblack\b", re.I), "black ."), (re.compile(r"\bflake8\b", re.I), "flake8"),
    (re.compile(r"\bpylint\b", re.I), "pylint ."), (re.compile(r"\beslint\b", re.I), "npx eslint ."),
    (re.compile(r"\bprettier\b", re.I), "npx prettier --check ."), (re.compile(r"\bnpm\s+test\b", re.I), "npm test"),
    (re.compile(r"\bcargo\s+test\b", re.I), "cargo test"), (re.compile(r"\bgo\s+test\b", re.I), "go test ./..."),
    (re.compile(r"\bmake\s+test\b", re.I), "make test"),
]
_RUN_NAMED = re.compile(r"\b(?:run|execute|lint|format|check|type-?check)\b", re.I)


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str
    lang: str
    closed: bool
    start: int = Field(description="character offset of the opening fence")


def answer_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, with their language and whether the fence was closed."""
    out: list[Block] = []
    lines = text.splitlines(keepends=True)
    pos, i = [0], 0
    for ln in lines:
        pos.append(pos[-1] + len(ln))
    while i < len(lines):
        m = _FENCE.match(lines[i].rstrip("\r\n"))
        if m is None:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines):
            c = _FENCE.match(lines[j].rstrip("\r\n"))
            if c and c.group(1)[0] == fence[0] and len(c.group(1)) >= len(fence) and not c.group(2):
                break
            j += 1
        out.append(Block(body="".join(lines[i + 1:j]), lang=lang, closed=j < len(lines), start=pos[i]))
        i = j + 1
    return out


def _prose(text: str) -> str:
    return _FENCE_BLOCK.sub("\n", text)


_FENCE_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?(?:^ {0,3}\1\s*$|\Z)", re.M | re.S)


def _ext(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def _strip_fence(text: str) -> str:
    blocks = answer_blocks(text)
    if len(blocks) == 1 and blocks[0].closed and not _prose(text).strip():
        return blocks[0].body
    return text


def _blank_insensitive(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()]


def _similar(old: str, new: str) -> bool:
    """``new`` is a version of ``old`` (most of it kept), not a fragment or another text. By lines, so a large
    file costs little (the matcher is quadratic in what it compares)."""
    if len(old) + len(new) < 20000:  # small: by characters, so a changed line still counts as kept
        return difflib.SequenceMatcher(None, old, new).ratio() >= 0.5
    a, b = old.splitlines(), new.splitlines()
    m = difflib.SequenceMatcher(None, a, b)
    if len(a) + len(b) > 4000:
        return m.quick_ratio() >= 0.5
    return m.ratio() >= 0.5


def context_files(request: PatternRequest, intent: Intent) -> dict[str, str]:
    """The files the host passed as context, by path: sections under header lines (``# File: a.py``,
    ``==> a.py <==``), or the whole context as the one file the request names."""
    context = request.context
    if not context or not context.strip():
        return {}
    lines = context.splitlines(keepends=True)
    sections: list[tuple[str, list[str]]] = []
    for ln in lines:
        m = _HEADER.match(ln.strip())
        name = next((g for g in m.groups() if g), None) if m else None
        if name and file_names(name):
            sections.append((name, []))
        elif sections:
            sections[-1][1].append(ln)
        elif ln.strip():
            sections.append(("", [ln]))
        else:
            continue
    named = [(n, _strip_fence("".join(body)).strip("\n") + "\n") for n, body in sections if n]
    if named and all(n for n, _ in sections):
        return dict(named)
    # One file: the name the request gives it (not a new file it asks to write), else a header line's.
    text = _strip_fence(context)
    candidates = [f for f in file_names(request.prompt) if f not in intent.destinations]
    candidates += [f for f in file_names(request.prompt) if f in intent.destinations]
    header = sections[0][0] if sections and sections[0][0] else None
    name = header or (candidates[0] if candidates else None)
    return {name: text} if name else {"": text}


def outside_folder(path: str) -> bool:
    """An absolute path, a home path or one that climbs out with ``..``: outside the host's folder."""
    p = path.replace("\\", "/")
    return p.startswith(("/", "~")) or bool(re.match(r"^[A-Za-z]:/", p)) or ".." in p.split("/")


class Candidates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    intent: Intent
    items: list[ToolCandidate] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    positions: list[int] = Field(default_factory=list, description="where each item's ask stands in the prompt")


def _call(tool: str, arguments: dict[str, Any], risk: str | None = None) -> ToolCall:
    if risk is None:
        risk = {"Read": "read", "Glob": "read", "Grep": "read", "Write": "write", "Edit": "write"}.get(tool) or \
            bash_risk(arguments.get("command", ""))
    return ToolCall(tool=tool, arguments=arguments, risk=risk)


def _write_risk(path: str) -> str:
    return "destructive" if outside_folder(path) else "write"


def _block_score(block: Block, dest: str) -> tuple[int, int, int]:
    """How well a block fits a destination: the language, the definitions it carries, its length."""
    ext = _ext(dest)
    lang_ok = block.lang in _LANGS.get(ext, {block.lang})
    defs = len(definitions(block.body)) if ext in ("py", "pyi") else 0
    is_test = bool(re.search(r"^\s*def test_|^\s*import pytest|^\s*assert ", block.body, re.M))
    test_fit = 1 if is_test == bool(re.search(r"(^|/)test_|_test\.", dest)) else 0
    return (int(lang_ok) * 2 + test_fit, defs, len(block.body))


def _pick_blocks(dests: list[str], blocks: list[Block]) -> dict[str, Block | None]:
    """One block per destination, the best fitting; a block serves two destinations only if it must."""
    out: dict[str, Block | None] = {}
    used: set[int] = set()
    for d in dests:
        ext = _ext(d)
        fit = [b for b in blocks if b.lang in _LANGS.get(ext, {b.lang}) and b.lang not in _SHELL - {"bash", "sh"}
               or (ext in ("sh", "bash") and b.lang in _SHELL)]
        if ext in ("py", "pyi"):
            fit = [b for b in fit if not b.closed or _parses(b.body)]
            # A usage example ("print(f(3))") is not the code to save where a block defines something.
            if any(definitions(b.body) for b in fit):
                fit = [b for b in fit if definitions(b.body) or not b.closed]
        if not fit and len(blocks) == 1:
            fit = blocks
        ranked = sorted(range(len(fit)), key=lambda k: (id(fit[k]) not in used, _block_score(fit[k], d)),
                        reverse=True)
        out[d] = fit[ranked[0]] if ranked else None
        if out[d] is not None:
            used.add(id(out[d]))
    return out


def _answer_file_names(answer: str, ext_like: list[Block]) -> list[str]:
    names = file_names(_prose(answer))
    langs = {b.lang for b in ext_like}
    return [n for n in names if not langs or langs & _LANGS.get(_ext(n), set())]


class _Build:
    """What every kind of candidate is built from, and the list they go into."""

    def __init__(self, request: PatternRequest, answer: str | None, cut_off: bool) -> None:
        self.request, self.answer, self.cut_off = request, answer, cut_off
        self.prompt = request.prompt
        self.intent = read_intent(self.prompt)
        self.out = Candidates(intent=self.intent)
        self.files = context_files(request, self.intent)
        blocks = answer_blocks(answer) if answer else []
        if not blocks and answer is None:
            blocks = [b for b in answer_blocks(self.prompt) if b.closed]
        self.blocks = blocks
        self.written: list[str] = []

    def add(self, label: str, calls: list[ToolCall], source: str, asked: bool, at: int = 10**6) -> None:
        if self.intent.how_to and calls[0].tool not in ("Read", "Glob", "Grep"):
            asked = False  # "how do I install numpy?" asks to be told how, not for the install
        self.out.items.append(ToolCandidate(label=label, calls=calls, source=source, asked=asked))
        self.out.positions.append(at)

    def where(self, word: str) -> int:
        i = self.prompt.find(word)
        return i if i >= 0 else 10**6


def build_candidates(request: PatternRequest, answer: str | None, *, cut_off: bool = False) -> Candidates:
    """Every candidate the facts support, each marked ``asked`` where the request's words ask for it."""
    b = _Build(request, answer, cut_off)
    for part in (_writes, _edits, _lookups, _commands):
        part(b)
    _order(b.out, b.written)
    return b.out


def _writes(bld: _Build) -> None:
    """A file the request names to write to + the answer's code: Write."""
    answer, cut_off, prompt, intent = bld.answer, bld.cut_off, bld.prompt, bld.intent
    out, files, blocks, written, add, where = bld.out, bld.files, bld.blocks, bld.written, bld.add, bld.where
    dests = [d for d in intent.destinations if d not in files]
    if intent.unnamed_destination and answer:
        code = [b for b in blocks if b.closed]
        named = [n for n in _answer_file_names(answer, code) if n not in files]
        if named:
            dests.append(named[0])
            out.notes.append(f"the request asks for a file without a name; the answer names {named[0]}")
        else:
            out.notes.append("the request asks for a file but neither it nor the answer names one: no Write")
    picked = _pick_blocks(dests, blocks)
    for d in dests:
        b = picked.get(d)
        content: str | None = None
        if b is not None:
            if not b.closed:
                out.refused.append(f"Write {d}: the answer was cut off inside its code block; incomplete code is "
                                   "never written")
                continue
            if _ext(d) in ("py", "pyi") and not _parses(b.body):
                out.refused.append(f"Write {d}: the answer's code block does not parse as Python")
                continue
            content = b.body
        elif answer and not blocks and _ext(d) in _PROSE_EXT | {"py"}:
            if cut_off:
                out.refused.append(f"Write {d}: the answer was cut off at its token budget; not written")
                continue
            if _ext(d) != "py" or (_parses(answer) and definitions(answer)):
                content = answer.strip("\n") + "\n"
        elif answer is None:
            quoted = re.search(r"\b(?:containing|contains|with\s+(?:the\s+)?(?:text|content|contents|word|line))\s+"
                               r"(?:the\s+(?:word|text|line)\s+)?[`'\"]?([^`'\"\n]+?)[`'\"]?\s*$|"
                               r"\bwrite\s+[`'\"]([^`'\"\n]+)[`'\"]\s+(?:to|into|in)\b", prompt, re.I)
            if quoted:
                content = (quoted.group(1) or quoted.group(2)).strip() + "\n"
        if content is None:
            out.notes.append(f"Write {d}: no code or text for it in the answer")
            continue
        written.append(d)
        add(f"Write {d} ({len(content.splitlines())} lines: the answer's "
            f"{'code block' if b is not None else 'text'})",
            [_call("Write", {"file_path": d, "content": content}, _write_risk(d))],
            "a file the request names to write to + the answer's code", True, where(d))


def _edits(bld: _Build) -> None:
    """A file the host showed + the answer's new version of its definitions: Edits (or a refusal)."""
    answer, intent, out = bld.answer, bld.intent, bld.out
    files, blocks, add, where = bld.files, bld.blocks, bld.add, bld.where
    for path, text in files.items():
        closed = [b for b in blocks if b.closed]
        open_ = [b for b in blocks if not b.closed]
        label_path = path or "(unnamed context)"
        merged, changed = text, []
        if _ext(path) in ("py", "pyi") or (not path and _parses(text)):
            for b in closed:
                if b.lang in _SHELL:
                    continue
                m = merge_code(merged, b.body)
                if m is not None and m.merged != merged:
                    merged, changed = m.merged, changed + m.changed + m.added
                elif not definitions(text) and _parses(b.body) and _similar(text, b.body):
                    # A script of statements shown again whole: the block is the new version (nothing dropped
                    # is checked below).
                    merged, changed = (b.body if b.body.endswith("\n") else b.body + "\n"), ["the file"]
        else:
            same = [b for b in closed if b.lang in _LANGS.get(_ext(path), {b.lang})]
            best = max(same, key=lambda b: difflib.SequenceMatcher(None, text.splitlines(),
                                                                   b.body.splitlines()).quick_ratio(), default=None)
            if best is not None and _similar(text, best.body):
                merged, changed = best.body if best.body.endswith("\n") else best.body + "\n", ["the file"]
        if not text.endswith("\n"):
            merged = merged.rstrip("\n")  # keep the file's own ending
        if _blank_insensitive(merged) == _blank_insensitive(text):
            merged = text  # blank lines and trailing spaces only: nothing the answer meant to change
        if merged == text:
            if open_ and answer:
                out.refused.append(f"Edit {label_path}: the answer was cut off inside its code block")
            continue
        if not path:
            out.notes.append("the answer changes the context, but nothing names the file: no Edit")
            continue
        lost = dropped_definitions(text, merged)
        if lost:
            out.refused.append(f"Edit {path}: would drop {', '.join(lost)}")
            continue
        edits = diff_edits(text, merged)
        risk = _write_risk(path)
        if edits is None:
            calls = [_call("Write", {"file_path": path, "content": merged}, "destructive")]
        else:
            calls = [_call("Edit", {"file_path": path, "old_string": o, "new_string": n}, risk) for o, n in edits]
        asked = path in intent.destinations or (bool(intent.edit_verbs) and not intent.question)
        add(f"Edit {path}: {', '.join(dict.fromkeys(changed)) or 'changes'} ({len(calls)} edit"
            f"{'s' if len(calls) != 1 else ''})", calls,
            "a file the host showed + the answer's new version of its definitions", asked, where(path))


def _lookups(bld: _Build) -> None:
    """Read / Glob / Grep from the names and patterns the request gives."""
    intent, out, files, add, where = bld.intent, bld.out, bld.files, bld.add, bld.where
    for f in intent.reads:
        if f not in files:
            add(f"Read {f}", [_call("Read", {"file_path": f})], "a file the request asks to read", True, where(f))
    for f in intent.append_targets:
        if f not in files:
            add(f"Read {f} (the request adds to it; it was not shown, so it is read before any change)",
                [_call("Read", {"file_path": f})], "a file the request adds to, not shown", True, where(f))
            out.notes.append(f"{f} was not passed as context: it is read, never overwritten")
    for pattern, directory in intent.globs:
        args = {"pattern": pattern, **({"path": directory} if directory else {})}
        add(f"Glob {pattern}" + (f" in {directory}" if directory else ""), [_call("Glob", args)],
            "files the request asks to find", True, where(pattern.split("/")[-1].lstrip("*.")))
    for pattern, directory in intent.greps:
        args = {"pattern": pattern, **({"path": directory} if directory else {})}
        add(f"Grep {pattern}" + (f" in {directory}" if directory else ""), [_call("Grep", args)],
            "text the request asks to search for", True, where(pattern))


def _commands(bld: _Build) -> None:
    """Bash from grounded paths and fixed templates, or the answer's own shell lines; never a model's text."""
    answer, prompt, intent, out = bld.answer, bld.prompt, bld.intent, bld.out
    files, blocks, written, add, where = bld.files, bld.blocks, bld.written, bld.add, bld.where
    runnable = [f for f in written + list(files) + file_names(prompt) if f and _ext(f) in _RUNNERS]
    run_targets = list(dict.fromkeys(intent.run_files + (runnable[:1] if intent.run_it else [])))
    for f in run_targets:
        if intent.run_tests and re.search(r"(^|/)test_|_test\.py$", f):
            continue
        cmd = f"{_RUNNERS[_ext(f)]} {f}" if _ext(f) in _RUNNERS else None
        if cmd:
            add(f"Bash: {cmd}", [_call("Bash", {"command": cmd})], "run a file the request names or writes", True,
                where("run"))
    if intent.run_tests:
        tests = intent.test_files or [f for f in written if re.search(r"(^|/)test_|_test\.py$", f)]
        cmd = "pytest " + " ".join(tests) if tests else "pytest"
        if not intent.commands:  # a quoted command ("run `npm test`") is the test command
            add(f"Bash: {cmd}", [_call("Bash", {"command": cmd})], "the request asks to run the tests", True,
                where("test"))
    asked_run = bool(_RUN_NAMED.search(prompt)) or bool(intent.commands and re.search(r"\buse\b", prompt, re.I))
    for cmd in intent.commands:
        add(f"Bash: {cmd}", [_call("Bash", {"command": cmd})], "a command quoted in the request", asked_run,
            where(cmd))
    if not intent.commands and _RUN_NAMED.search(prompt) and not intent.run_tests:
        for rx, cmd in _NAMED_TOOLS:
            if rx.search(prompt):
                add(f"Bash: {cmd}", [_call("Bash", {"command": cmd})], "a tool the request names, its usual "
                    "command", True, rx.search(prompt).start())
                break
    for name, is_dir in intent.deletes:
        cmd = f"rm -r {name}" if is_dir or not _ext(name) else f"rm {name}"
        add(f"Bash: {cmd}", [_call("Bash", {"command": cmd})], "a file or directory the request names to delete",
            True, where(name))
    if intent.install_deps:
        req = next((f for f in file_names(prompt) if f.endswith(".txt")), "requirements.txt")
        add(f"Bash: pip install -r {req}", [_call("Bash", {"command": f"pip install -r {req}"})],
            "the request asks to install the dependencies", True, where("install"))
    for pkg in intent.installs:
        add(f"Bash: pip install {pkg}", [_call("Bash", {"command": f"pip install {pkg}"})],
            "a package the request names to install", True, where(pkg))
    for d in intent.list_dirs:
        if not intent.globs:
            add(f"Bash: ls {d}", [_call("Bash", {"command": f"ls {d}"})], "a directory the request asks to list",
                True, where(d))
    for sub in intent.git:
        add(f"Bash: git {sub}", [_call("Bash", {"command": f"git {sub}"})], "the git command the request names",
            True, where(sub))
    for b in blocks:
        if b.lang in _SHELL and b.closed and answer is not None:
            for line in b.body.splitlines():
                cmd = line.strip().removeprefix("$ ").strip()
                if cmd and not cmd.startswith("#") and not any(c.calls[0].arguments.get("command") == cmd
                                                               for c in out.items if c.calls[0].tool == "Bash"):
                    add(f"Bash: {cmd}", [_call("Bash", {"command": cmd})], "a command in the answer's shell block",
                        False)


def _order(out: Candidates, written: list[str]) -> None:
    """Candidates in the order the request asks for them; a run of a written file after its Write."""
    def key(k: int) -> tuple[int, int, int]:
        item = out.items[k]
        runs_written = item.calls[0].tool == "Bash" and any(w in item.calls[0].arguments.get("command", "")
                                                            for w in written)
        tests = item.calls[0].tool == "Bash" and item.calls[0].arguments.get("command", "").startswith("pytest")
        late = (runs_written or (tests and bool(written)))
        return (0 if item.asked else 1, 1 if late else 0, out.positions[k])

    order = sorted(range(len(out.items)), key=key)
    out.items = [out.items[k] for k in order]
    out.positions = [out.positions[k] for k in order]


def guard_calls(calls: list[ToolCall], request: PatternRequest) -> tuple[list[ToolCall], list[str]]:
    """The calls that lose nothing the host showed, and why each other one is refused: a Write over a context
    file that drops a definition, an Edit whose old text is not exactly once in the file, an Edit that removes a
    definition, a Write or Edit outside the host's folder that the request does not name."""
    files = context_files(request, read_intent(request.prompt))
    named = set(file_names(request.prompt))
    kept: list[ToolCall] = []
    refused: list[str] = []
    for c in calls:
        path = c.arguments.get("file_path")
        if c.tool in ("Write", "Edit") and isinstance(path, str):
            if outside_folder(path):
                if path not in named and path not in request.prompt:
                    refused.append(f"{c.tool} {path}: outside the host's folder and not named by the request")
                    continue
                c = c.model_copy(update={"risk": "destructive"})
            text = files.get(path)
            if text is not None and c.tool == "Write":
                lost = dropped_definitions(text, str(c.arguments.get("content", "")))
                if lost:
                    refused.append(f"Write {path}: would drop {', '.join(lost)} from the file the host showed")
                    continue
                c = c.model_copy(update={"risk": "destructive"})
            if text is not None and c.tool == "Edit":
                old = str(c.arguments.get("old_string", ""))
                if text.count(old) != 1:
                    refused.append(f"Edit {path}: old_string occurs {text.count(old)} times in the file, not once")
                    continue
                after = text.replace(old, str(c.arguments.get("new_string", "")), 1)
                lost = dropped_definitions(text, after)
                if lost:
                    refused.append(f"Edit {path}: would drop {', '.join(lost)}")
                    continue
        kept.append(c)
    return kept, refused
