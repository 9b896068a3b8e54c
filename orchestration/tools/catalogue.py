"""The seed's six tools as JSON-schema definitions."""

from __future__ import annotations

from ..core.types import ToolDefinition
from .schema import validate_definition

__all__ = ["SEED_TOOLS", "resolve_tools"]


def _obj(props: dict[str, dict[str, str]], required: list[str]) -> dict:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


# "examples" carry the seed prompt's placeholders, so the rendered tool list is the seed's text; "x-mageagent"
# marks the grounded properties (grounding.py): the same convention a host uses for its own tools.
_PATH = {"type": "string", "description": "absolute or project-relative file path", "examples": ["path"],
         "x-mageagent": "path"}
_DIR = {"type": "string", "description": "directory", "examples": ["dir"], "x-mageagent": "directory"}
_READ = {"readOnlyHint": True, "destructiveHint": False}
_WRITE = {"readOnlyHint": False, "destructiveHint": False}

SEED_TOOLS: list[ToolDefinition] = [
    ToolDefinition(name="Read", description="Read file contents",
                   parameters=_obj({"file_path": _PATH}, ["file_path"]), annotations=_READ),
    ToolDefinition(name="Write", description="Write to file",
                   parameters=_obj({"file_path": _PATH, "content": {"type": "string", "examples": ["content"],
                                                         "x-mageagent": "content"}},
                                   ["file_path", "content"]),
                   annotations=_WRITE),
    ToolDefinition(name="Edit", description="Edit file",
                   parameters=_obj({"file_path": _PATH,
                                    "old_string": {"type": "string", "examples": ["text"], "x-mageagent": "old-text"},
                                    "new_string": {"type": "string", "examples": ["text"], "x-mageagent": "new-text"}},
                                   ["file_path", "old_string", "new_string"]),
                   annotations=_WRITE),
    ToolDefinition(name="Bash", description="Execute shell command",
                   parameters=_obj({"command": {"type": "string", "examples": ["shell_command"]}}, ["command"]),
                   annotations={"readOnlyHint": False, "destructiveHint": True}),
    ToolDefinition(name="Glob", description="Find files by pattern",
                   parameters=_obj({"pattern": {"type": "string", "description": "glob", "examples": ["**/*.py"]},
                                    "path": _DIR},
                                   ["pattern"]),
                   annotations=_READ),
    ToolDefinition(name="Grep", description="Search file contents",
                   parameters=_obj({"pattern": {"type": "string", "description": "regular expression",
                                                "examples": ["regex"]},
                                    "path": _DIR},
                                   ["pattern"]),
                   annotations=_READ),
]


def resolve_tools(tools: list[ToolDefinition] | None) -> list[ToolDefinition]:
    """The host's definitions (validated), or the seed catalogue when none are given."""
    if not tools:
        return SEED_TOOLS
    names = [t.name for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        from ..core.errors import RequestError

        raise RequestError(f"tool names must be unique; repeated: {', '.join(dupes)}")
    for t in tools:
        validate_definition(t)
    return tools
