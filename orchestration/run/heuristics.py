"""The seed's pattern-matching rules: when tools are needed, and auto's task classifier. Pure functions."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

__all__ = ["TOOL_PATTERNS", "SAVE_TO", "tool_need", "Route", "classify", "CODING", "REASONING"]

# The seed's tool-detection patterns, verbatim.
TOOL_PATTERNS = [
    r"\bread\b.*\bfile\b", r"\bwrite\b.*\bfile\b", r"\blist\b.*\bdir",
    r"\bexecute\b", r"\brun\b", r"\bcreate\b.*\bfile\b", r"\bdelete\b",
    r"\bsearch\b", r"\bfind\b", r"\bedit\b", r"\bmodify\b",
    r"\btool\b", r"\bfunction\b.*\bcall\b", r"\bapi\b.*\bcall\b",
    r"\bglob\b", r"\bgrep\b", r"\bbash\b", r"\bshell\b",
]
# "A.*B" as one regex backtracks over every A (quadratic: 3 s on a 40 KB prompt of "read "); the same
# question is answered in linear time by finding the first A, then any B after its end.
_TOOL_PARTS = [[re.compile(part, re.IGNORECASE) for part in p.split(".*")] for p in TOOL_PATTERNS]


def _search_chain(parts: list[re.Pattern[str]], text: str) -> bool:
    pos = 0
    for rx in parts:
        m = rx.search(text, pos)  # \b still sees the character before pos
        if m is None:
            return False
        pos = m.end()
    return True


# Beyond the seed: "save it to stack.py", "put the result in out/report.md" name a file to write without the
# word "file" (the seed's own README example needs this). Found file name first, then the verb before it:
# linear in the text.
SAVE_TO = r"(save|write|put|store|output|dump|export) ... (to|into|in|as) <file name>"
_FILE_NAME = re.compile(r"(?<![\w/.~-])[`'\"]?([\w./~-]*\w\.[A-Za-z]\w{0,7})\b")
_SAVE_BEFORE = re.compile(r"\b(?:save|write|put|store|output|dump|export)\b[^.\n]*\b(?:to|into|in|as)\s+[`'\"]?$",
                          re.IGNORECASE)


_SAVE_VERB = re.compile(r"\b(?:save|write|put|store|output|dump|export)\b", re.IGNORECASE)


def _saves_to_a_file(text: str) -> bool:
    for m in _FILE_NAME.finditer(text):
        start = max(0, m.start() - 80)
        verb = _SAVE_VERB.search(text, start, m.start())
        if verb is not None and _SAVE_BEFORE.search(text, verb.start(), m.start()):
            return True
    return False


def tool_need(*texts: str) -> list[str]:
    """The seed patterns (and SAVE_TO) that match any of the texts (empty: no tools needed)."""
    hits = [pattern for pattern, parts in zip(TOOL_PATTERNS, _TOOL_PARTS)
            if any(_search_chain(parts, t) for t in texts if t)]
    if any(_saves_to_a_file(t) for t in texts if t):
        hits.append(SAVE_TO)
    return hits


# The seed's keyword table, matched on whole words (with common inflections), never substrings:
# "classic" is not "class", "planet" is not "plan".
CODING: dict[str, str] = {
    "implement": r"implement(?:s|ed|ing|ation)?",
    "function": r"functions?",
    "class": r"class(?:es)?",
    "refactor": r"refactor(?:s|ed|ing)?",
    "fix bug": r"fix(?:es|ed|ing)?\s+(?:the\s+|a\s+|this\s+|that\s+)?bugs?",
}
REASONING: dict[str, str] = {
    "explain": r"explain(?:s|ed|ing)?",
    "analyze": r"analy[sz](?:e|es|ed|ing|is)",
    "plan": r"plan(?:s|ned|ning)?",
    "design": r"design(?:s|ed|ing)?",
    "architecture": r"architectures?",
    "compare": r"compar(?:e|es|ed|ing|ison)",
}
_CODE_BLOCK = re.compile(r"```")


def _matches(table: dict[str, str], text: str) -> list[str]:
    return [word for word, rx in table.items() if re.search(rf"\b{rx}\b", text, re.IGNORECASE)]


class Route(BaseModel):
    task: Literal["coding", "reasoning", "simple"]
    pattern: Literal["validated", "hybrid", "validator"]
    matched: list[str]
    reason: str


def classify(prompt: str, context: str | None = None) -> Route:
    """Auto's route: coding -> validated (auto replaces it with the profile's measured ``auto_coding``), reasoning ->
    hybrid, anything else -> validator (fast)."""
    coding = _matches(CODING, prompt)
    if _CODE_BLOCK.search(prompt) or (context and _CODE_BLOCK.search(context)):
        coding.append("code block")
    if coding:
        return Route(task="coding", pattern="validated", matched=coding,
                     reason=f"coding task (matched: {', '.join(coding)}) -> validated")
    reasoning = _matches(REASONING, prompt)
    if reasoning:
        return Route(task="reasoning", pattern="hybrid", matched=reasoning,
                     reason=f"reasoning task (matched: {', '.join(reasoning)}) -> hybrid")
    return Route(task="simple", pattern="validator", matched=[],
                 reason="no coding or reasoning keyword -> validator (fast)")
