"""Custom patterns: user-defined pipelines from the config file (the seed's "Custom Patterns (Future)").

This module holds the typed specification and its start-up checks; the runner is
``orchestration/patterns/custom.py``. A pattern is an ordered list of steps:

- ``generate``: a free answer from a role (or a named model) to a prompt template;
- ``validate``: PASS/FAIL with issues on the template's text (constrained like the built-in), with an
  optional ``on_fail`` that jumps back to a named earlier step with the issues as ``{feedback}``, at most
  ``max_rounds`` times;
- ``judge``: pick between two named earlier outputs (constrained A/B pick, optional swap);
- ``extract_tools``: constrained tool-call extraction from a named earlier output.

Templates may use ``{prompt}``, ``{context}``, ``{feedback}`` and the names of earlier steps.
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CustomStep", "CustomPattern", "RESERVED", "BUILTIN_NAMES", "template_refs"]

RESERVED = {"prompt", "context", "feedback"}
BUILTIN_NAMES = {"auto", "hybrid", "validated", "compete", "tools", "primary", "validator", "competitor"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def template_refs(template: str) -> list[str]:
    """The ``{names}`` a template refers to; raises ValueError on a malformed template."""
    refs = []
    for _, field, spec, conv in string.Formatter().parse(template):
        if field is None:
            continue
        if not field or not field.isidentifier() or spec or conv:
            raise ValueError(f"malformed placeholder {{{field}}} (use plain {{name}})")
        refs.append(field)
    return refs


def _why(ref: str, seen: list[str]) -> str:
    if ref in seen:
        return " (an extract_tools step gives tool calls, not text)"
    if ref in RESERVED:
        return f" ('{ref}' is the request's text: use it in a prompt template)"
    return ""


class CustomStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="how later templates refer to this step's output")
    kind: Literal["generate", "validate", "judge", "extract_tools"]
    role: Literal["primary", "competitor", "validator", "tools"] | None = None
    model: str | None = Field(None, description="a model to use instead of the role's (backend of the role)")
    prompt: str | None = Field(None, description="template: {prompt}, {context}, {feedback}, earlier step names")
    on_fail: str | None = Field(None, description="validate: the earlier step to run again on FAIL")
    max_rounds: int = Field(1, ge=0, le=5, description="validate: most jumps back on FAIL")
    candidates: list[str] | None = Field(None, description="judge: the two earlier outputs to choose from")
    swap: bool = False
    source: str | None = Field(None, description="extract_tools: the earlier output to extract from")
    max_tokens: int | None = Field(None, ge=1, le=32768)

    @model_validator(mode="after")
    def _shape(self) -> CustomStep:
        if not _NAME.match(self.name) or self.name in RESERVED:
            raise ValueError(f"step name {self.name!r} must be lower_snake_case and not one of {sorted(RESERVED)}")
        role_default = {"validate": "validator", "judge": "validator", "extract_tools": "tools"}
        if self.role is None:
            if self.kind not in role_default:
                raise ValueError(f"step {self.name!r}: a generate step needs a role")
            self.role = role_default[self.kind]  # type: ignore[assignment]
        if self.kind in ("generate", "validate") and not self.prompt:
            raise ValueError(f"step {self.name!r}: a {self.kind} step needs a prompt template")
        if self.kind == "judge" and (not self.candidates or len(self.candidates) != 2):
            raise ValueError(f"step {self.name!r}: a judge step needs candidates = [two earlier step names]")
        if self.kind == "extract_tools" and not self.source:
            raise ValueError(f"step {self.name!r}: an extract_tools step needs source = an earlier step name")
        if self.on_fail is not None and self.kind != "validate":
            raise ValueError(f"step {self.name!r}: on_fail applies to validate steps only")
        return self


class CustomPattern(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, description="becomes the MCP tool's description")
    steps: list[CustomStep] = Field(min_length=1)
    result: str | None = Field(None, description="the step whose output is the answer (default: the last "
                                                 "generate or judge step)")

    def check(self, name: str) -> None:
        """Every reference resolves to an earlier step (or a reserved name); raise ValueError naming it."""
        if not _NAME.match(name):
            raise ValueError(f"pattern name {name!r} must be lower_snake_case")
        if name in BUILTIN_NAMES:
            raise ValueError(f"pattern name {name!r} is a built-in pattern")
        answers = [s.name for s in self.steps if s.kind in ("generate", "judge")]
        if self.result is None and not answers:
            raise ValueError(f"pattern '{name}': no generate or judge step gives an answer; set result")
        seen: list[str] = []
        texts: list[str] = []  # earlier steps with a text output (an extract_tools step has calls, not text)
        for step in self.steps:
            where = f"pattern '{name}', step '{step.name}'"
            if step.name in seen:
                raise ValueError(f"{where}: the step name is used twice")
            try:
                refs = template_refs(step.prompt or "")
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            for ref in refs:  # a template may also use the request's {prompt}, {context} and {feedback}
                if ref not in RESERVED and ref not in texts:
                    raise ValueError(f"{where}: unknown reference '{ref}'{_why(ref, seen)} "
                                     f"(known here: {', '.join(sorted(RESERVED | set(texts)))})")
            inputs = [("candidates", c) for c in step.candidates or []] + ([("source", step.source)]
                                                                           if step.source else [])
            for key, ref in inputs:  # judge and extract_tools read earlier steps' outputs only
                if ref not in texts:
                    raise ValueError(f"{where}: {key} '{ref}' is not an earlier generate, validate or judge "
                                     f"step{_why(ref, seen)} (known here: {', '.join(texts) or 'none'})")
            if step.on_fail is not None and step.on_fail not in seen:
                raise ValueError(f"{where}: on_fail '{step.on_fail}' is not an earlier step")
            seen.append(step.name)
            if step.kind != "extract_tools":
                texts.append(step.name)
        if self.result is not None and self.result not in texts:
            raise ValueError(f"pattern '{name}': result '{self.result}' is not a generate, validate or judge "
                             f"step{_why(self.result, seen)}")

    @property
    def answer_step(self) -> str:
        return self.result or [s.name for s in self.steps if s.kind in ("generate", "judge")][-1]
