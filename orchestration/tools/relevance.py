"""Does any host tool fit the request? A fact read from words, before the tools model is asked.

A small model offered one function calls it whatever the question (BFCL irrelevance: 53 of 70 calls). A tool's
name says what it is about (``determine_body_mass_index``, ``math.factorial``); when not one content word of any
tool's name shows up in the request (a shared stem of at least four letters, ``hypot`` in "hypotenuse"), the
request is about something none of the tools does, and the answer is no call. Generic verbs and namespaces
(``get``, ``calculate``, ``math``, ``api``) say nothing about the subject and are left out. Where the words
overlap the tools model decides as before.
"""

from __future__ import annotations

import re

from ..core.types import ToolDefinition

__all__ = ["name_words", "relevance_gate"]

_GENERIC = frozenset("""
get set find calc calculate calculator compute computation determine fetch retrieve search lookup look query make
create do run execute perform process handle manage update add new list show display check generate convert
evaluate estimate analyze analyse predict info information data details detail api tool tools util utils helper
service client main default the by of to and for with from in on at a an is as per math maths module function func
value values result results number numbers item items record records base simple basic advanced v1 v2 v3 request
response object entity all one two total count given using based specific
specified provided certain
""".split())
_SPLIT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_WORD = re.compile(r"[A-Za-z]+")


def name_words(name: str) -> list[str]:
    """The content words of a tool name: split on dots, underscores, dashes and case, generic words dropped."""
    words = [w.lower() for part in re.split(r"[._\-\s]+", name) for w in _SPLIT.findall(part)]
    return [w for w in words if len(w) >= 3 and w not in _GENERIC]


def _shares_stem(word: str, request_words: set[str]) -> bool:
    if len(word) < 4:
        return word in request_words
    stem = word[: max(4, min(len(word), 6))]
    return any(r.startswith(stem) or (len(r) >= 4 and word.startswith(r[: max(4, min(len(r), 6))]))
               for r in request_words)


def _acronym(word: str, ordered: list[str]) -> bool:
    """``gcd`` for "greatest common divisor": the word is the initials of consecutive request words."""
    n = len(word)
    if not 2 <= n <= 5:
        return False
    initials = "".join(w[0] for w in ordered)
    return any(initials[i:i + n] == word for i in range(len(initials) - n + 1))


def relevance_gate(prompt: str, tools: list[ToolDefinition]) -> str | None:
    """None where some tool's name shares a content word with the request (a stem, or an acronym of its words);
    else the reason for no call."""
    ordered = [w.lower() for w in _WORD.findall(prompt)]
    request_words = set(ordered)
    judged = False
    for t in tools:
        words = name_words(t.name)
        if not words:
            return None  # a name of generic words only says nothing: let the model decide
        judged = True
        if any(_shares_stem(w, request_words) or _acronym(w, ordered) for w in words):
            return None
        # The description names the subject in other words ("weather" for temperature and humidity): two of its
        # content words in the request count as a fit.
        desc = {w.lower() for w in _WORD.findall(t.description) if len(w) >= 5 and w.lower() not in _GENERIC}
        if sum(_shares_stem(w, request_words) for w in desc) >= 2:
            return None
    if not judged:
        return None
    names = ", ".join(t.name for t in tools[:6])
    return f"no offered tool fits the request: none of the words of {names} appear in it (no call)"
