from __future__ import annotations

import pytest

from orchestration.run.heuristics import classify, tool_need


@pytest.mark.parametrize(
    ("prompt", "route", "matched"),
    [
        ("Implement a binary search", "validated", ["implement"]),
        ("Write a function that adds two numbers", "validated", ["function"]),
        ("Create a class for users", "validated", ["class"]),
        ("Refactor this module", "validated", ["refactor"]),
        ("Please fix the bug in parser.py", "validated", ["fix bug"]),
        ("fix bugs in the loader", "validated", ["fix bug"]),
        ("What does this do?\n```python\nx = 1\n```", "validated", ["code block"]),
        ("Explain how TCP works", "hybrid", ["explain"]),
        ("Analyze the logs", "hybrid", ["analyze"]),
        ("Analyse the logs", "hybrid", ["analyze"]),
        ("Plan the migration", "hybrid", ["plan"]),
        ("Design a schema", "hybrid", ["design"]),
        ("Review the architecture", "hybrid", ["architecture"]),
        ("Compare Rust and Go", "hybrid", ["compare"]),
        ("Explain and implement a class", "validated", ["implement", "class"]),  # coding wins
        ("What is the capital of France?", "validator", []),
        # words that must NOT match
        ("Tell me about classic cars", "validator", []),
        ("Name a planet", "validator", []),
        ("The designer was functional", "validator", []),
        ("a prefix fixture bugle", "validator", []),
        ("supplementation", "validator", []),
    ],
)
def test_auto_routing_table(prompt: str, route: str, matched: list[str]) -> None:
    r = classify(prompt)
    assert r.pattern == route
    assert r.matched == matched
    assert route in r.reason


def test_code_block_in_context_counts() -> None:
    assert classify("What is wrong here?", "```\nx=1\n```").pattern == "validated"


@pytest.mark.parametrize(
    ("text", "needed"),
    [
        ("Read the file src/main.py", True),
        ("write the results to a file", True),
        ("list the directory", True),
        ("run the tests", True),
        ("delete old logs", True),
        ("search for TODOs", True),
        ("grep for errors", True),
        ("open a bash shell", True),
        ("What is 2+2?", False),
        ("Explain recursion", False),
        ("a running gag", False),  # 'run' as a word only
        ("the bread is fresh", False),
        # beyond the seed: a file named as the place to save something
        ("Implement a stack class and save it to stack.py", True),
        ("put the result in out/report.md", True),
        ("store it as `a.json`", True),
        ("Explain config.py to me", False),  # a file named, nothing to save
        ("Save me some time: use version 2.5", False),  # a version is no file name
        ("save the world in 2.5 days", False),
    ],
)
def test_tool_need_table(text: str, needed: bool) -> None:
    assert bool(tool_need(text)) is needed


def test_tool_need_looks_at_every_text() -> None:
    assert tool_need("Explain this", "I will run pytest") == [r"\brun\b"]


@pytest.mark.parametrize(("text", "pattern", "hit"), [
    ("read the file", r"\bread\b.*\bfile\b", True),
    ("file then read", r"\bread\b.*\bfile\b", False),  # order matters, as in the seed's regex
    ("read\nsome\nfile", r"\bread\b.*\bfile\b", True),  # across lines (DOTALL)
    ("readfile", r"\bread\b.*\bfile\b", False),
    ("list dirs", r"\blist\b.*\bdir", True),
    ("function call", r"\bfunction\b.*\bcall\b", True),
    ("API CALL", r"\bapi\b.*\bcall\b", True),
])
def test_tool_need_chains_agree_with_the_seed_regex(text: str, pattern: str, hit: bool) -> None:
    import re

    assert bool(re.search(pattern, text, re.IGNORECASE | re.DOTALL)) is hit  # the seed's meaning
    assert (pattern in tool_need(text)) is hit


@pytest.mark.parametrize("prompt", ["read " * 8000, "read a " * 6000, "list " * 8000, "function " * 4500])
def test_tool_need_is_linear_on_a_40kb_prompt(prompt: str) -> None:
    import time

    t0 = time.perf_counter()
    tool_need(prompt)
    assert time.perf_counter() - t0 < 0.1  # the one-regex version took 1.8-3.1 s on these
