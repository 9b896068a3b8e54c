"""The answer's code merged into a file the host showed, and the Edits that take the file there.

A small model asked to fix one function of a two-function file answers with that one function; written over the
file it deletes the other. Here the answer's definitions replace the file's definitions of the same name (a
method shown alone replaces that method of its class), new definitions and imports are added, and nothing the
file had is dropped. The Edits are derived by a line diff of the file against the merged text, each
``old_string`` taken from the file and grown by neighbouring lines until it is unique there, so applying them in
order gives exactly the merged text (checked).
"""

from __future__ import annotations

import ast
import difflib
import re

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Merge", "merge_code", "diff_edits", "apply_edits", "definitions", "dropped_definitions"]


class Merge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merged: str
    changed: list[str] = Field(default_factory=list, description="definitions replaced")
    added: list[str] = Field(default_factory=list, description="definitions or statements added")
    notes: list[str] = Field(default_factory=list)


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _norm(code: str) -> str:
    return "\n".join(ln.rstrip() for ln in code.strip("\n").splitlines() if ln.strip())


def _span(node: ast.stmt) -> tuple[int, int]:
    """0-based first line (decorators included) and end line (exclusive) of a statement."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno or node.lineno


def _name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def definitions(code: str) -> list[str]:
    """Top-level def/class names and class.method names of ``code`` (empty if it does not parse)."""
    tree = _parse(code)
    if tree is None:
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(node.name)
            if isinstance(node, ast.ClassDef):
                out += [f"{node.name}.{m.name}" for m in node.body
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return out


def dropped_definitions(before: str, after: str) -> list[str]:
    """Definitions ``before`` had that ``after`` lacks (a Python file only; empty where either does not parse)."""
    if _parse(before) is None or _parse(after) is None:
        return []
    kept = set(definitions(after))
    return [d for d in definitions(before) if d not in kept]


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(code: str, indent: str) -> list[str]:
    lines = code.strip("\n").splitlines()
    base = min((len(_indent_of(ln)) for ln in lines if ln.strip()), default=0)
    return [(indent + ln[base:]) if ln.strip() else "" for ln in lines]


def _segment(lines: list[str], node: ast.stmt) -> str:
    a, b = _span(node)
    return "\n".join(lines[a:b])


def merge_code(original: str, block: str) -> Merge | None:
    """``original`` (a Python file) with ``block``'s definitions merged in; None where either does not parse or
    the block defines nothing the merge can place."""
    file_tree, block_tree = _parse(original), _parse(block)
    if file_tree is None or block_tree is None:
        return None
    lines = original.splitlines()
    blines = block.splitlines()
    top = {(_name(n)): n for n in file_tree.body if _name(n)}
    methods = _methods(file_tree)
    # (start, end, new lines): replacements on the file's lines; inserts have start == end.
    edits: list[tuple[int, int, list[str]]] = []
    out = Merge(merged=original)
    file_imports = {_norm(ast.get_source_segment(original, n) or "") for n in file_tree.body
                    if isinstance(n, (ast.Import, ast.ImportFrom))}
    new_imports: list[str] = []
    appended: list[str] = []
    for node in block_tree.body:
        name = _name(node)
        text = _segment(blines, node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if _norm(text) not in file_imports:
                new_imports.append(text.strip())
            continue
        if name is not None and name in top:
            old = top[name]
            if isinstance(old, ast.ClassDef) and isinstance(node, ast.ClassDef):
                sub = _merge_class(lines, old, blines, node)
                edits += sub[0]
                out.changed += sub[1]
                out.added += sub[2]
                continue
            if _norm(_segment(lines, old)) != _norm(text):
                a, b = _span(old)
                edits.append((a, b, _reindent(text, _indent_of(lines[a]))))
                out.changed.append(name)
            continue
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and name in methods
                and len(methods[name]) == 1 and name not in top):
            cls, old = methods[name][0]
            if _norm(_segment(lines, old)) != _norm(text):
                a, b = _span(old)
                edits.append((a, b, _reindent(text, _indent_of(lines[a]))))
                out.changed.append(f"{cls.name}.{name}")
            continue
        if name is not None or isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.Expr)):
            if name is None and _norm(text) in _norm(original):
                continue  # a statement the file already has (a usage example repeated)
            if name is None and not _is_main_guard(node):
                out.notes.append(f"left out a top-level statement of the answer: {text.splitlines()[0][:60]!r}")
                continue
            appended.append(text.strip("\n"))
            out.added.append(name or text.splitlines()[0].strip()[:40])
    if new_imports:
        edits.append(_imports_edit(file_tree, lines, new_imports))
        out.added += [f"import: {i}" for i in new_imports]
    if appended:
        edits.append(_append_edit(file_tree, lines, appended))
    if not edits:
        out.notes.append("the answer's code changes nothing in the file")
        return out
    out.merged = _apply(original, lines, edits)
    return out


def _methods(tree: ast.Module) -> dict[str, list[tuple[ast.ClassDef, ast.stmt]]]:
    """Each method name of the file's top-level classes, with every class that defines it."""
    methods: dict[str, list[tuple[ast.ClassDef, ast.stmt]]] = {}
    for n in tree.body:
        if isinstance(n, ast.ClassDef):
            for m in n.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    methods.setdefault(m.name, []).append((n, m))
    return methods


def _imports_edit(tree: ast.Module, lines: list[str], new_imports: list[str]) -> tuple[int, int, list[str]]:
    """The new imports, inserted after the file's last import (or its docstring)."""
    last_import = max((_span(n)[1] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))),
                      default=_docstring_end(tree))
    gap = [""] if last_import < len(lines) and lines[last_import].strip() else []
    return (last_import, last_import, new_imports + gap)


def _append_edit(tree: ast.Module, lines: list[str], appended: list[str]) -> tuple[int, int, list[str]]:
    """The new definitions, inserted before the file's ``if __name__ == "__main__":`` or at its end."""
    guard = next((n for n in tree.body if _is_main_guard(n)), None)
    at = _span(guard)[0] if guard is not None else len(lines)
    body: list[str] = []
    for a in appended:
        body += (["", ""] if at > 0 or body else []) + a.splitlines()
    if guard is not None:
        body += ["", ""]
    return (at, at, body)


def _apply(original: str, lines: list[str], edits: list[tuple[int, int, list[str]]]) -> str:
    """``original`` with the edits made, bottom up so that earlier line numbers still hold."""
    merged = list(lines)
    for a, b, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        merged[a:b] = new
    text = "\n".join(merged)
    if original.endswith("\n"):
        text += "\n"
    return re.sub(r"\n{4,}", "\n\n\n", text)


def _docstring_end(tree: ast.Module) -> int:
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None),
                                                                        ast.Constant):
        return _span(tree.body[0])[1]
    return 0


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _merge_class(lines: list[str], old: ast.ClassDef, blines: list[str],
                 new: ast.ClassDef) -> tuple[list[tuple[int, int, list[str]]], list[str], list[str]]:
    """A class shown again: each shown method replaces its namesake, new methods go after the last one; what the
    answer leaves out of the class stays."""
    edits: list[tuple[int, int, list[str]]] = []
    changed: list[str] = []
    added: list[str] = []
    old_members = {_name(m): m for m in old.body if _name(m)}
    tail: list[str] = []
    for m in new.body:
        name = _name(m)
        text = _segment(blines, m)
        if name is not None and name in old_members:
            o = old_members[name]
            if _norm(_segment(lines, o)) != _norm(text):
                a, b = _span(o)
                edits.append((a, b, _reindent(text, _indent_of(lines[a]))))
                changed.append(f"{old.name}.{name}")
        elif name is not None:
            tail.append(text)
            added.append(f"{old.name}.{name}")
    if tail:
        end = _span(old)[1]
        indent = _indent_of(lines[_span(old.body[-1])[0]]) if old.body else "    "
        body: list[str] = []
        for t in tail:
            body += [""] + _reindent(t, indent)
        edits.append((end, end, body))
    return edits, changed, added


def apply_edits(text: str, edits: list[tuple[str, str]]) -> str:
    """Apply (old, new) replacements in order, each old required exactly once (as a host's Edit tool does)."""
    for old, new in edits:
        if text.count(old) != 1:
            raise ValueError(f"old_string occurs {text.count(old)} times: {old[:60]!r}")
        text = text.replace(old, new, 1)
    return text


def diff_edits(original: str, merged: str) -> list[tuple[str, str]] | None:
    """(old_string, new_string) pairs that turn ``original`` into ``merged``: one per changed region, each old
    unique in the file at the moment it applies. None where no such set exists."""
    if original == merged:
        return []
    a = original.splitlines(keepends=True)
    b = merged.splitlines(keepends=True)
    hunks = [[i1, i2, j1, j2] for tag, i1, i2, j1, j2 in
             difflib.SequenceMatcher(None, a, b, autojunk=len(a) > 1000).get_opcodes() if tag != "equal"]
    edits: list[tuple[str, str]] = []
    text = original
    k = 0
    while k < len(hunks):
        i1, i2, j1, j2 = hunks[k]
        # Grow the region by whole (equal) lines until its old text is non-blank and unique in the current text;
        # growing into the next changed region swallows it.
        while True:
            while k + 1 < len(hunks) and hunks[k + 1][0] <= i2:
                nxt = hunks.pop(k + 1)
                if nxt[1] >= i2:
                    i2, j2 = nxt[1], nxt[3]
            old = "".join(a[i1:i2])
            if old.strip() and text.count(old) == 1:
                break
            if i1 == 0 and i2 == len(a):
                return None
            if i1 > 0 and (old.strip() or i2 == len(a)):
                i1, j1 = i1 - 1, j1 - 1
            elif i2 < len(a):
                i2, j2 = i2 + 1, j2 + 1
            else:
                i1, j1 = i1 - 1, j1 - 1
        new = "".join(b[j1:j2])
        # Drop the trailing newline both share, as a person writing the Edit would, where it stays unique.
        if old.endswith("\n") and new.endswith("\n") and text.count(old[:-1]) == 1:
            old, new = old[:-1], new[:-1]
        edits.append((old, new))
        text = text.replace(old, new, 1)
        k += 1
    return edits if text == merged else None
