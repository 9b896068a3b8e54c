"""Risk labels for tool calls: read, write, or destructive. Pure and table-tested."""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..types import Risk, ToolDefinition

__all__ = ["risk_of", "bash_risk"]

_READ_TOOLS = {"Read", "Glob", "Grep"}
_WRITE_TOOLS = {"Write", "Edit"}
_READ_COMMANDS = {
    "ls", "cat", "head", "tail", "less", "more", "wc", "pwd", "echo", "printf", "grep", "rg", "ag", "find",
    "stat", "file", "du", "df", "which", "whoami", "date", "env", "tree", "diff", "sort", "uniq", "cut",
    "true", "false", "test", "type", "uname", "ps", "id", "basename", "dirname", "realpath", "readlink",
}
_GIT_READ = {"status", "log", "diff", "show", "branch", "remote", "rev-parse", "blame", "ls-files", "grep"}
_DESTRUCTIVE_COMMANDS = {"rm", "rmdir", "dd", "shred", "truncate", "wipefs", "fdisk", "parted", "srm", "unlink"}
_SEGMENT_SPLIT = re.compile(r"\|\||&&|;|\||\n|&")
# "> file" or ">| file" overwrites; ">>", "2>&1", ">&2" and "> /dev/null" do not destroy data.
_APPEND = re.compile(r">>\s*(?!/dev/null\b)\S")
_OVERWRITE = re.compile(r"(?<![>&\d])(?:\d)?>\|?\s*(?!&|>|/dev/null\b)\S")


def _words(segment: str) -> list[str]:
    try:
        return shlex.split(segment, posix=True)
    except ValueError:
        return segment.split()


def _segment_risk(segment: str) -> Risk:
    words = _words(segment)
    while words and (words[0] in {"sudo", "doas", "env", "nohup", "time", "command", "exec"} or "=" in words[0]):
        words = words[1:]
    if not words:
        return "read"
    cmd, args = words[0].rsplit("/", 1)[-1], words[1:]
    if cmd in _DESTRUCTIVE_COMMANDS or cmd.startswith("mkfs"):
        return "destructive"
    if cmd in {"chmod", "chown", "chgrp"} and any(a in {"-R", "--recursive"} or (a.startswith("-") and "R" in a)
                                                  for a in args):
        return "destructive"
    if cmd == "git":
        sub = args[0] if args else ""
        if (sub == "reset" and "--hard" in args) or (sub == "clean" and any(a.startswith("-") and "f" in a
                                                                            for a in args)):
            return "destructive"
        if sub == "push" and any(a in {"-f", "--force", "--force-with-lease"} for a in args):
            return "destructive"
        if sub in {"checkout", "restore"} and ("--" in args or "." in args):
            return "destructive"
        if sub == "branch" and any(a in {"-D", "--delete"} for a in args):
            return "destructive"
        return "read" if sub in _GIT_READ else "write"
    if cmd == "find" and any(a in {"-delete", "-exec", "-execdir"} for a in args):
        return "destructive" if "-delete" in args or any(a in {"rm", "shred"} for a in args) else "write"
    if cmd == "xargs" and any(a in _DESTRUCTIVE_COMMANDS for a in args):
        return "destructive"
    if cmd in _READ_COMMANDS:
        return "read"
    return "write"


def bash_risk(command: str) -> Risk:
    """The worst risk over a shell command's segments; redirection over a file is destructive."""
    if _OVERWRITE.search(command):
        return "destructive"
    order = {"read": 0, "write": 1, "destructive": 2}
    worst: Risk = "write" if _APPEND.search(command) else "read"
    for seg in _SEGMENT_SPLIT.split(command):
        r = _segment_risk(seg)
        if order[r] > order[worst]:
            worst = r
    return worst


def risk_of(tool: ToolDefinition, arguments: dict[str, Any], *, seed: bool) -> Risk:
    """A call's risk: seed tools by name (Bash by its command), host tools by their MCP annotations."""
    if seed:
        if tool.name in _READ_TOOLS:
            return "read"
        if tool.name in _WRITE_TOOLS:
            return "write"
        if tool.name == "Bash":
            return bash_risk(str(arguments.get("command", "")))
    ann = tool.annotations or {}
    if ann.get("readOnlyHint") is True:
        return "read"
    # MCP's default for destructiveHint is true: an unannotated tool may destroy.
    if ann.get("destructiveHint", True) is False:
        return "write"
    return "destructive"
