"""Typed data at the engine's boundaries: generation requests, tool calls, pattern requests and results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from .settings import Role

__all__ = [
    "Message",
    "Constraint",
    "GenerationRequest",
    "Chunk",
    "Completion",
    "Risk",
    "ToolDefinition",
    "ToolCall",
    "ExtractionMode",
    "PatternRequest",
    "Step",
    "Verdict",
    "Judgement",
    "Round",
    "ToolCandidate",
    "ToolDecision",
    "Trace",
    "Totals",
    "PatternResult",
    "ProgressEvent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Model):
    role: Literal["system", "user", "assistant"]
    content: str


class Constraint(_Model):
    """Decoding constraint: a JSON schema, or a pick among fixed options optionally followed by free text."""

    json_schema: dict[str, Any] | None = None
    options: list[str] | None = None
    # After an option: None = nothing may follow; otherwise the text that must follow it before free text.
    option_continuation: dict[str, str | None] | None = None


class GenerationRequest(_Model):
    model: str = Field(description="model key as the backend knows it")
    messages: list[Message]
    max_tokens: int = Field(ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    constraint: Constraint | None = None
    draft_model: str | None = Field(None, description="speculative decoding: a smaller model with the same tokenizer")
    num_draft_tokens: int = Field(3, ge=1, le=16)
    continue_final: bool = Field(False, description="the last message is the assistant's own unfinished turn: "
                                 "generation continues it (a cut-off answer's continuation)")


class Chunk(_Model):
    """A piece of streamed output: the new text and the completion tokens so far."""

    text: str
    tokens: int


class Completion(_Model):
    """One finished generation with mlx-lm's own counts and timings."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: Literal["stop", "length"] = "stop"
    seconds: float = 0.0
    prompt_tps: float = 0.0
    generation_tps: float = 0.0
    peak_memory_gb: float = 0.0
    option_probs: dict[str, float] | None = Field(
        None, description="for an options constraint: each option's probability at the choice point"
    )
    constrained: bool = Field(False, description="the constraint was enforced token by token while decoding")
    cached_prompt_tokens: int = Field(0, description="prompt tokens whose KV state came from the prompt cache")
    draft_accepted: int | None = Field(None, description="speculative decoding: tokens the draft model proposed "
                                                         "that the model accepted")
    batched: bool = Field(False, description="decoded in one batch with other concurrent generations")
    reused: bool = Field(False, description="an identical deterministic generation's output, reused (evaluation)")
    note: str | None = None  # what the backend changed about the request, and why (a dropped draft model)


# Ordered: read < write < execute < destructive. "execute" runs code or constructs the classifier cannot bound.
Risk = Literal["read", "write", "execute", "destructive"]


class ToolDefinition(_Model):
    """A tool the host can run, as MCP and OpenAI define it: name, description, JSON-schema parameters."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments object (also accepted as inputSchema or input_schema)",
        validation_alias=AliasChoices("parameters", "inputSchema", "input_schema"),
    )
    annotations: dict[str, Any] | None = Field(
        None, description="MCP tool annotations (readOnlyHint, destructiveHint) used for the risk label"
    )


class ToolCall(_Model):
    """A call for the HOST to carry out; the server never runs it."""

    tool: str
    arguments: dict[str, Any]
    risk: Risk = Field(description="read: only reads; write: changes files in a known way; execute: runs code "
                                   "or shell constructs whose effect is not known; destructive: may destroy data")


ExtractionMode = Literal["auto", "always", "never"]
Verify = Literal["model", "execute", "auto"]


class PatternRequest(_Model):
    """What every pattern takes."""

    prompt: str = Field(min_length=1)
    context: str | None = None
    system: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    tools: list[ToolDefinition] | None = None
    extraction: ExtractionMode | None = None
    swap: bool | None = Field(None, description="compete: judge twice with A and B swapped")
    verify: Verify | None = Field(None, description="validated/compete: 'execute' runs tests against the code in "
                                  "a sandbox, 'model' asks the validator, 'auto' executes when the answer has "
                                  "Python code and a sandbox is available")
    tests: list[str] | None = Field(None, description="assert statements the code must pass (else the validator "
                                    "writes some from the request)")
    context_tests: bool | None = Field(None, description="validated/compete: the assert lines and >>> examples in "
                                       "the context are tests too (default: only the prompt's and the tests')")
    deadline_s: float | None = Field(None, gt=0, le=86400, description="return by then with the best result so far, "
                                     "marked partial")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt is empty")
        return v


class Step(_Model):
    role: Role
    model: str
    purpose: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str
    cached_prompt_tokens: int = Field(0, description="prompt tokens reused from the prompt cache")
    draft_accepted: int | None = Field(None, description="speculative decoding: draft tokens accepted")
    batched: bool = Field(False, description="decoded in one batch with other concurrent generations")
    reused: bool = Field(False, description="an identical deterministic generation's output, reused (evaluation)")
    note: str | None = None  # what the backend changed about the step, and why


class TestOutcome(_Model):
    __test__ = False  # not a pytest class

    test: str
    origin: Literal["host", "example", "context", "validator"]
    passed: bool
    error: str | None = None
    set_aside: bool = Field(False, description="a generated test the validator judged wrong (not counted)")
    call: str | None = Field(None, description="for `assert X == Y`: X, the input")
    expected: str | None = Field(None, description="for `assert X == Y`: Y's value")
    got: str | None = Field(None, description="for `assert X == Y`: what X returned")
    raised: str | None = Field(None, description="for `assert X == Y`: what X raised instead")


class Execution(_Model):
    """What ran: the tests, their outcomes and the sandbox that ran them."""

    sandbox: str
    tests: list[TestOutcome] = Field(default_factory=list)
    load_error: str | None = Field(None, description="the candidate itself failed to run (syntax, import, timeout)")
    seconds: float = 0.0

    @property
    def counted(self) -> list[TestOutcome]:
        return [t for t in self.tests if not t.set_aside]

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.counted) if self.load_error is None else 0

    @property
    def all_passed(self) -> bool:
        return self.load_error is None and bool(self.counted) and all(t.passed for t in self.counted)

    def failures(self) -> list[str]:
        """The feedback a revision reads: each failing test with what went wrong."""
        if self.load_error is not None:
            return [f"the code does not run: {self.load_error}"]
        return [f"`{t.test}` failed: {t.error}" for t in self.counted if not t.passed]

    def feedback(self) -> list[str]:
        """Each failing test as a small model can use it: the input, what was expected, what came back."""
        if self.load_error is not None:
            return [f"the code does not run: {self.load_error}"]
        out = []
        for t in self.counted:
            if t.passed:
                continue
            if t.call is not None and t.expected is not None:
                came = f"raised {t.raised}" if t.raised else f"returned {t.got}"
                out.append(f"{t.call} should be {t.expected}, but your code {came}")
            else:
                out.append(f"`{t.test}` failed: {t.error}")
        return out


class Verdict(_Model):
    verdict: Literal["PASS", "FAIL"]
    issues: list[str] = Field(default_factory=list)
    confidence: float | None = Field(None, ge=0, le=1, description="the validator's probability for this verdict "
                                                               "(None where the backend gives no probabilities)")
    method: Literal["model", "execute"] = Field("model", description="execute: PASS means the tests ran and passed")
    execution: Execution | None = None


class Judgement(_Model):
    pick: Literal["A", "B"]
    reason: str
    confidence: float | None = Field(None, ge=0, le=1, description="probability of the pick (averaged over both "
                                     "orders if swapped; None where the backend gives no probabilities)")
    verdicts: list[dict[str, Any]] = Field(default_factory=list, description="each judging pass: order, pick, probs")
    disagreement: bool = False
    candidates: dict[str, str] = Field(default_factory=dict, description="A and B texts")
    method: Literal["judge", "tests", "stronger"] = Field(
        "judge", description="tests: the candidate passing more tests won; stronger: the stronger model's stood")
    rule: str = Field("", description="how the pick was reached, a disagreement between orders included")
    consistent: bool | None = Field(None, description="swapped: both orders picked the same answer")
    judge_model: str | None = Field(None, description="the model that judged")
    recused: bool | None = Field(None, description="the judge wrote neither answer")
    test_scores: dict[str, int] | None = Field(None, description="tests passed by A and B")
    execution: dict[str, Execution] | None = None
    judge_kind: Literal["pointwise", "pairwise"] | None = Field(
        None, description="pointwise: each answer scored alone (order cannot matter); pairwise: A against B")
    scores: dict[str, float] | None = Field(None, description="pointwise: the judge's probability that each answer "
                                             "is correct, each scored on its own")


class Round(_Model):
    """One repair round of validated: who rewrote the code and what the tests said of it."""

    round: int
    role: Role
    model: str
    # fixed: passes the tests the answer before it failed; tie: that answer passes them too once the tests both
    # failed are set aside; no test counted: every test was set aside (nothing was measured)
    outcome: Literal["fixed", "improved", "still failing", "worse", "no change", "cut off", "no code", "tie",
                     "no test counted"]
    passed: int | None = Field(None, description="tests the repaired code passed")
    total: int | None = Field(None, description="tests counted")


class ToolCandidate(_Model):
    """A call (or group of calls) built from facts before any model runs."""

    label: str
    # In memory only: the chosen ones are the result's tool_calls, so the trace does not repeat them.
    calls: list[ToolCall] = Field(default_factory=list, exclude=True)
    source: str  # the facts it was built from
    asked: bool  # the request's own words ask for exactly this


class ToolDecision(_Model):
    """How the tool calls were chosen: by facts, by the tools model among the candidates, or none."""

    decided_by: Literal["facts", "model", "nothing to decide"]
    reason: str
    candidates: list[ToolCandidate] = Field(default_factory=list)
    chosen: list[int] = Field(default_factory=list)  # indices into candidates
    probabilities: dict[str, float] | None = None  # the chooser's probability per option
    refused: list[str] = Field(default_factory=list)  # calls never returned, and why
    evidence: list[str] = Field(default_factory=list)  # the request's words that showed each ask


class Trace(_Model):
    pattern: str
    steps: list[Step] = Field(default_factory=list)
    route: str | None = None
    route_reason: str | None = None
    matched_keywords: list[str] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    revisions: int | None = None
    rounds: list[Round] = Field(default_factory=list, description="validated: each repair round, escalation included")
    first_answer: str | None = Field(None, description="validated: the first answer, where a repair replaced it")
    judgement: Judgement | None = None
    extraction: str | None = Field(None, description="why tool extraction ran or was skipped")
    tool_decision: ToolDecision | None = Field(None, description="the candidates and who chose among them")
    verification: str | None = Field(None, description="validated/compete: how answers were checked and why")


class Totals(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class PatternResult(_Model):
    """A pattern's whole answer: text, tool calls for the host, trace, totals, models used."""

    pattern: str
    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    trace: Trace
    totals: Totals
    models: dict[str, str] = Field(default_factory=dict, description="role -> model id used")
    finish_reason: Literal["stop", "length"] = Field("stop", description="length: the answer stopped at its token "
                                                     "budget")
    partial: bool = Field(False, description="the deadline came first: the best result so far, see skipped")
    skipped: list[str] = Field(default_factory=list, description="what the deadline left undone, and why")
    cut_off: bool = Field(False, description="the answer was cut off at its token budget: incomplete, never run "
                                             "or written as if complete")


class ProgressEvent(_Model):
    step: int
    purpose: str
    role: str
    tokens: int = 0
    message: str
