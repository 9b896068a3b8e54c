"""One typed settings object: defaults < config file (TOML) < environment (MAGEAGENT_*) < explicit overrides.

Built once at the edge (CLI, server) by :func:`load_settings` and passed down; nothing deeper reads
``os.environ``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .custom import CustomPattern
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ROLES",
    "Role",
    "RoleConfig",
    "HttpSettings",
    "PromptOverrides",
    "Settings",
    "PROFILES",
    "load_settings",
    "derive",
    "default_cache_dir",
    "default_memory_budget_gb",
]

Role = Literal["primary", "competitor", "validator", "tools"]
ROLES: tuple[Role, ...] = ("primary", "competitor", "validator", "tools")
ENV_PREFIX = "MAGEAGENT_"
EMBEDDED_DENSE = "smollm2-135m"
EMBEDDED_Q4 = "smollm2-135m-q4"
QWEN_05 = "qwen2.5-coder-0.5b"
QWEN_15 = "qwen2.5-coder-1.5b"
DEFAULT_PROFILE = "qwen"


class _Strict(BaseModel):
    # No inf or nan anywhere: a budget of inf GB or a timeout of nan seconds means nothing.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _list_form(v: Any) -> Any:
    """A list given as one string (an environment variable): JSON ('["a", "b"]') or comma-separated ('a,b')."""
    if not isinstance(v, str):
        return v
    text = v.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"not a JSON list ({e}); or write the items comma-separated") from None
    return [item.strip() for item in text.split(",") if item.strip()]


def expand_home(path: Path) -> Path:
    """``~`` and ``~user`` expanded; ValueError (one line) for a user this machine does not know."""
    try:
        return path.expanduser()
    except RuntimeError:  # pathlib's answer to ~nosuchuser or a missing HOME
        raise ValueError(f"{str(path).split('/')[0]!r} in {str(path)!r} names no user's home directory on this "
                         "machine") from None


_MLX_ONLY = ("draft_model", "num_draft_tokens")


class RoleConfig(_Strict):
    """Which model plays a role, and that role's own sampling and system prompt."""

    model: str = Field(description="a local model ('qwen2.5-coder-0.5b', 'qwen2.5-coder-1.5b', 'smollm2-135m', "
                                   "'smollm2-135m-q4'), an mlx-lm model id, or a local mlx-lm directory; "
                                   "for backend 'openai' the model name the server knows")
    backend: Literal["mlx", "openai"] = "mlx"
    base_url: str | None = Field(None, description="openai: the endpoint, e.g. http://127.0.0.1:8080/v1")
    api_key_env: str | None = Field(None, description="openai: the environment variable holding the API key")
    timeout_s: float = Field(300.0, gt=0, description="openai: seconds without data before giving up")
    retries: int = Field(2, ge=0, le=10, description="openai: retries on connection errors, 429 and 5xx")
    max_output_tokens: int = Field(4096, ge=1, le=1_000_000, description=(
        "openai: the largest max_tokens the endpoint accepts; larger budgets (extraction sizes its budget from "
        "the schema) are capped to it"))
    structured_output: Literal["json_schema", "llama_cpp", "none"] = Field(
        "json_schema", description="openai: send JSON schemas as response_format type json_schema (vLLM, "
                                   "llama.cpp's llama-server, Ollama); 'llama_cpp' (llama-cpp-python's server): "
                                   "schemas as type json_object with the schema, option picks (PASS/FAIL, "
                                   "'assert ') as a GBNF grammar; 'none' validates and retries instead")
    quantization: str | None = Field(None, description="informational label for reports (e.g. '8-bit')")
    temperature: float | None = Field(None, ge=0, le=2, description="overrides the request's temperature")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    system: str | None = Field(None, description="role system prompt, used when the request gives none")
    draft_model: str | None = Field(None, description="mlx: speculative decoding with this smaller model of the same "
                                                      "tokenizer (greedy output stays token-identical)")
    num_draft_tokens: int = Field(3, ge=1, le=16, description="tokens the draft proposes per step")
    pinned: bool = False

    @model_validator(mode="after")
    def _remote_needs_url(self) -> RoleConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8080/v1)")
        if self.backend == "mlx" and (self.base_url or self.api_key_env):
            raise ValueError("base_url and api_key_env apply to backend 'openai' only")
        if self.backend == "openai" and self.draft_model:
            raise ValueError("draft_model applies to backend 'mlx' only (a server drafts with its own options)")
        return self

    @property
    def backend_key(self) -> str:
        """Which backend instance serves this role: 'mlx', or one per OpenAI-compatible endpoint."""
        return "mlx" if self.backend == "mlx" else f"openai:{self.base_url}"


def _embedded_roles() -> dict[str, RoleConfig]:
    # One dense float32 copy serves every role (it loads once). The competitor gets its own system
    # prompt and sampling so compete's A and B differ even at temperature 0, as the seed's
    # reasoning-vs-coding models do; the 4-bit copy ('embedded-q4') can stand in any role.
    return {
        "primary": RoleConfig(model=EMBEDDED_DENSE, quantization="fp32 (from Q4_1)", pinned=True),
        "competitor": RoleConfig(
            model=EMBEDDED_DENSE,
            quantization="fp32 (from Q4_1)",
            temperature=0.8,
            seed=7,
            system="You are an expert programmer. Answer with concise, working code and a short explanation.",
        ),
        "validator": RoleConfig(model=EMBEDDED_DENSE, quantization="fp32 (from Q4_1)", temperature=0.0),
        "tools": RoleConfig(model=EMBEDDED_DENSE, quantization="fp32 (from Q4_1)", temperature=0.0),
    }


_QWEN_FORM = "fp32 (from Q4_K_M)"
DRAFT_TOKENS = 6


def _qwen_roles(primary: str = QWEN_05, competitor: str = QWEN_15) -> dict[str, RoleConfig]:
    # Measured on 2 cores (README): the 0.5B writes ~8 tok/s, the 1.5B ~3, so the 0.5B carries the
    # steps a user waits for (answer, verdicts, tool calls) and compete pits it against the 1.5B.
    # Greedy everywhere: small coder models write their best code at temperature 0.
    # The 1.5B drafted by the 0.5B (docs/forms.json, 64 greedy tokens): 2.09 tok/s plain, 3.16 / 3.39 / 3.32 /
    # 3.90 with 2 / 3 / 4 / 6 draft tokens (acceptance 0.67-0.84), output identical: 6 it is.
    return {
        "primary": RoleConfig(model=primary, quantization=_QWEN_FORM, temperature=0.0, pinned=True,
                              draft_model=QWEN_05 if primary == QWEN_15 else None, num_draft_tokens=DRAFT_TOKENS),
        "competitor": RoleConfig(model=competitor, quantization=_QWEN_FORM, temperature=0.0,
                                 draft_model=QWEN_05 if competitor == QWEN_15 else None,
                                 num_draft_tokens=DRAFT_TOKENS),
        "validator": RoleConfig(model=QWEN_05, quantization=_QWEN_FORM, temperature=0.0),
        "tools": RoleConfig(model=QWEN_05, quantization=_QWEN_FORM, temperature=0.0),
    }


def _qwen15_roles() -> dict[str, RoleConfig]:
    return _qwen_roles(primary=QWEN_15, competitor=QWEN_05)


def _reference_roles() -> dict[str, RoleConfig]:
    return {
        "primary": RoleConfig(model="mlx-community/Qwen2.5-72B-Instruct-8bit", quantization="8-bit", pinned=True),
        "competitor": RoleConfig(model="mlx-community/Qwen2.5-Coder-32B-Instruct-4bit", quantization="4-bit"),
        "validator": RoleConfig(model="mlx-community/Qwen2.5-Coder-7B-Instruct-4bit", quantization="4-bit",
                                temperature=0.0),
        "tools": RoleConfig(model="mlx-community/Hermes-3-Llama-3.1-8B-8bit", quantization="8-bit", temperature=0.0),
    }


PROFILES = {"qwen": _qwen_roles, "qwen-1.5b": _qwen15_roles, "tiny": _embedded_roles,
            "embedded": _embedded_roles,  # the tiny profile's old name
            "reference": _reference_roles}


class PromptOverrides(_Strict):
    """Replacement prompt texts; each is optional and keeps its placeholders ({tools} etc.)."""

    validation: str | None = None
    revision: str | None = None
    judge: str | None = None
    extraction: str | None = None


def default_memory_budget_gb() -> float:
    """Half of this machine's RAM: room for the models and for everything else."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        total = 16 * 1024**3
    return round(total / 1024**3 / 2, 1)


class HttpSettings(_Strict):
    """The HTTP faces (``mageagent serve`` and the MCP streamable-HTTP transport): who may call, and how much."""

    api_key_env: str | None = Field(None, description="the environment variable holding the API key clients send "
                                                      "as 'Authorization: Bearer KEY'; required off loopback")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values allowed besides "
                                     "loopback ('name:port' or 'name:*'), against DNS rebinding")
    allowed_origins: list[str] = Field(default_factory=list, description="browser Origin values allowed besides "
                                       "loopback ('http://name:port' or 'http://name:*')")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="the largest request body")
    max_prompt_chars: int = Field(400_000, ge=1, description="the most characters of system, context and prompt "
                                  "together (tokens are checked against each model's context when it runs)")
    queue_depth: int = Field(8, ge=1, le=1024, description="requests admitted at once (running or waiting); "
                             "beyond it the answer is 429 with Retry-After")
    retry_after_s: int = Field(5, ge=1, le=3600, description="the Retry-After of a 429")
    header_timeout_s: float = Field(10.0, gt=0, le=600, description="seconds a connection has to send a request's "
                                    "headers (from connecting, or from the previous response); then it is closed")
    body_timeout_s: float = Field(60.0, gt=0, le=3600, description="seconds a request has to send its body after "
                                  "its headers; then the connection is closed")
    max_connections: int = Field(64, ge=1, le=10000, description="connections open at once; beyond it a new one "
                                 "is closed at once")

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _list_form(v)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mageagent"


class TaskSettings(_Strict):
    """MCP tasks (io.modelcontextprotocol/tasks) for hosts that declare the extension: a long call answers at once
    with a task the host polls."""

    patterns: list[str] = Field(default_factory=lambda: ["validated", "compete"], description="the patterns whose "
                                "calls become tasks (the slow ones: minutes on the default profile); [] = none")
    ttl_s: float = Field(900.0, gt=0, description="seconds a finished task's result is kept for the host to fetch; "
                         "then it is dropped (a running task is never dropped)")
    poll_ms: int = Field(1000, ge=50, le=60_000, description="the polling interval the server suggests")
    max_running: int = Field(8, ge=1, le=256, description="tasks working at once; past it a call runs as a plain "
                             "call (held by the connection's own bound on requests in flight)")

    @field_validator("patterns", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:  # MAGEAGENT_TASKS__PATTERNS=validated,compete
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v


class Settings(_Strict):
    """Everything the engine, the CLI and the server need; see the README for each key."""

    profile: Literal["qwen", "qwen-1.5b", "tiny", "embedded", "reference"] = DEFAULT_PROFILE
    roles: dict[Role, RoleConfig] = Field(default_factory=dict)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, le=32768)
    deadline_s: float | None = Field(None, gt=0, description="every call returns by then with its best result so far "
                                     "(partial); a call's own deadline_s wins. Claude Desktop ends calls at ~60 s: 55")
    context_tests: bool = Field(False, description="assert lines and >>> examples in a request's context count as "
                                                   "tests (a context is material; off unless the host says so)")
    trace_detail: Literal["compact", "full"] = Field("compact", description="what an MCP result's trace carries: "
                                                     "compact leaves out the judged candidates' full texts and the "
                                                     "first answer a repair replaced (the host's model reads it all)")
    continuation_tokens: int = Field(384, ge=0, le=32768, description="an answer cut off inside a code block is "
                                     "continued once by up to this many tokens (0: never); still open, it is "
                                     "reported cut off and its code is never run or written as complete")
    memory_budget_gb: float = Field(default_factory=default_memory_budget_gb, gt=0)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    blas: Literal["auto", "openblas", "bundled"] = "auto"
    allow_download: bool = Field(False, description="let mlx-lm fetch a missing model id from the hub")
    warmup: bool = Field(False, description="load the models in the background when the server starts")
    max_revisions: int | None = Field(
        None, ge=0, le=5, description="validated: the primary's repair rounds. Left out: 1, except after the "
        "stronger model's own answer (`stronger` = competitor) failed the tests too: then none, as the default "
        "profile's 0.5B fixed 0 of 39 there (docs/eval-qwen-28-full/validated_breakdown.json)")
    judge_swap: bool = Field(True, description="compete: judge in both orders (LLM judges flip about a third of "
                                               "their verdicts when the answers swap places)")
    judge: Literal["pointwise", "pairwise", "stronger"] = Field(
        "pointwise", description="compete, where tests tie or cannot run: 'stronger' keeps the answer of the model "
                                 "that passes more problems on this profile (`stronger`; no judge runs), "
                                 "'pointwise' scores each answer on its own (the judge's probability that it is "
                                 "correct), 'pairwise' asks which of A and B is better (in both orders with "
                                 "judge_swap); the order cannot change the pick of the first two. Left out: "
                                 "'stronger' where the profile has measured pass rates (on the default profile "
                                 "every model-scored judge fell short of it where one answer is right: "
                                 "docs/eval-qwen-28-full/judge_study.json), else 'pointwise'")
    stronger: Literal["primary", "competitor"] | None = Field(
        None, description="the role whose model passes more coding problems (compete's judge = 'stronger'; "
                          "validated's ties and repairs); left out: from "
                          "the profile's measured pass rates (orchestration/evaluation/measured_routes.json) unless "
                          "the primary's or the competitor's model is changed")
    escalations: int = Field(1, ge=0, le=5, description="validated: rounds by the competitor role (the "
                             "profile's stronger model) when the first answer fails: first its own answer (neither the failing "
                             "code nor the tests shown; tests both answers fail are set aside), then, after the primary's "
                             "repairs, its repairs")
    code_max_tokens: int = Field(768, ge=1, le=32768, description="answer budget of validated and compete (where "
                                 "max_tokens is smaller and the request sets none): a whole function re-typed with "
                                 "its docstring is 367 tokens at the 95th percentile of HumanEval, 560 at most "
                                 "(Qwen tokenizer), plus a short explanation; the default profile's own code "
                                 "answers on HumanEval and MBPP: 385 at the 95th percentile, 526 at the 99th, 2 "
                                 "of 1,110 past 768 (loops; scripts/answer_lengths.py, "
                                 "docs/eval-qwen-28-full/answer_lengths.json)")
    auto_coding: Literal["validated", "compete", "competitor", "primary"] = Field(
        "validated", description="auto's pattern for a coding request; left out: the one with the most passed "
                                 "problems per second measured on this profile (orchestration/evaluation/"
                                 "measured_routes.json, written by scripts/auto_routes.py; docs/eval.md), else "
                                 "validated")
    speculative: bool = Field(True, description="roles with a draft_model decode speculatively (off: plain decoding)")
    prompt_cache_gb: float = Field(0.5, ge=0, description="memory for KV states of earlier prompts (reused when a "
                                                          "prompt starts the same way); taken from the budget")
    prompt_cache_entries: int = Field(16, ge=0, le=1024, description="prompt-cache entries per model (0 = off)")
    batch_size: int = Field(8, ge=1, le=64, description="mlx: up to this many concurrent generations for one "
                            "model decode as one batch (continuous batching); 1 = one at a time")
    prefill_step: int = Field(256, ge=16, le=8192, description="prompt tokens read per step; a cancel takes effect "
                                                               "between two steps")
    verify: Literal["model", "execute", "auto"] = Field(
        "auto", description="validated/compete: 'execute' runs tests against the answer's code in the sandbox, "
                            "'model' asks the validator for PASS/FAIL, 'auto' executes when the answer has Python "
                            "code and a sandbox is available")
    generated_tests: int = Field(5, ge=1, le=8, description="assert lines the validator writes when the host gave "
                                                            "no tests")
    extraction: Literal["auto", "always", "never"] = "auto"
    extraction_max_calls: int = Field(4, ge=1, le=32)
    extraction_max_string: int = Field(400, ge=16, le=20000, description="max characters of a free string argument")
    extraction_constraint: Literal["candidates", "grounded", "grammar", "none"] = Field(
        "candidates", description="'candidates': the seed tools' calls are built from facts (the request, the context "
                                "and the answer) and the tools model only chooses among them, host tools decode "
                                "grounded; 'grounded': calls are valid and grounded by construction (paths, contents and "
                                "edited text from the request and the answer); 'grammar': valid only (the tools' "
                                "plain schemas); 'none': free generation parsed leniently, one attempt (the "
                                "evaluation's unconstrained baseline)")
    prompts: PromptOverrides = Field(default_factory=PromptOverrides)
    patterns: dict[str, CustomPattern] = Field(default_factory=dict, description="custom patterns by name")
    publish: list[str] | None = Field(
        None, description="the patterns the MCP server publishes as tools (built-in or custom); default all")
    log_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sandbox: Literal["auto", "bwrap", "sandbox-exec", "weak"] = Field(
        "auto", description="how model-written code runs (the evaluation's HumanEval): 'auto' = bubblewrap on "
                            "Linux, sandbox-exec on macOS, refused where neither works; 'weak' = a plain "
                            "subprocess with limits only (it can read your files), for machines without "
                            "user namespaces")
    http: HttpSettings = Field(default_factory=HttpSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    config_file: Path | None = None

    @field_validator("cache_dir", "log_file")
    @classmethod
    def _expand_user(cls, v: Path | None) -> Path | None:
        return expand_home(v) if v is not None else None

    @field_validator("log_file")
    @classmethod
    def _not_a_directory(cls, v: Path | None) -> Path | None:
        if v is not None and v.is_dir():
            raise ValueError(f"{v} is a directory; name a file in it, e.g. {v / 'mageagent.log'}")
        return v

    @field_validator("publish", mode="before")
    @classmethod
    def _publish_list(cls, v: Any) -> Any:
        return _list_form(v)

    @model_validator(mode="before")
    @classmethod
    def _measured_route(cls, data: Any) -> Any:
        if isinstance(data, dict) and "auto_coding" not in data:
            profile = data.get("profile", DEFAULT_PROFILE)
            route = _MEASURED_ROUTES.get(profile) if isinstance(profile, str) else None
            if route is not None:
                return {**data, "auto_coding": route}
        return data

    @model_validator(mode="before")
    @classmethod
    def _measured_stronger(cls, data: Any) -> Any:
        """The stronger of the primary and the competitor from the profile's measured pass rates, and the judge
        that rests on it, unless set, or unless either model was changed (the measurement is of the profile's)."""
        if not isinstance(data, dict):
            return data
        if data.get("stronger") is not None:  # stated: the judge that rests on it, unless one is named
            return {**data, "judge": data.get("judge", "stronger")}
        if "stronger" in data:
            return data
        profile = data.get("profile", DEFAULT_PROFILE)
        if not isinstance(profile, str) or profile not in _MEASURED_STRONGER or profile not in PROFILES:
            return data
        roles = data.get("roles") if isinstance(data.get("roles"), dict) else {}
        base = PROFILES[profile]()

        def model(role: str) -> Any:
            given = roles.get(role)
            if isinstance(given, RoleConfig):
                return given.model
            return given.get("model", base[role].model) if isinstance(given, dict) else given or base[role].model

        changed = any(model(r) != base[r].model for r in ("primary", "competitor"))
        stronger = None if changed else _MEASURED_STRONGER[profile]
        if stronger is None:
            return data
        return {**data, "stronger": stronger, "judge": data.get("judge", "stronger")}

    @field_validator("stronger")
    @classmethod
    def _stronger_known(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("judge") == "stronger":
            raise ValueError("judge = 'stronger' needs it (primary or competitor): nothing is measured for this "
                             "profile's primary and competitor models; set it, or judge = 'pointwise'")
        return v

    @model_validator(mode="before")
    @classmethod
    def _fill_roles(cls, data: Any) -> Any:
        # Roles not given come from the profile; a role given in part is merged over the profile's.
        if not isinstance(data, dict):
            return data
        profile = data.get("profile", DEFAULT_PROFILE)
        # An unknown profile (or a list, a table) is reported by field validation; fill roles from the default.
        base = PROFILES.get(profile if isinstance(profile, str) else DEFAULT_PROFILE, PROFILES[DEFAULT_PROFILE])
        given = data.get("roles") or {}
        if not isinstance(given, dict):
            return data
        merged: dict[str, Any] = {}
        for role, cfg in base().items():
            override = given.get(role, {})
            if isinstance(override, RoleConfig):
                merged[role] = override
            elif isinstance(override, dict):
                inherited = cfg.model_dump(exclude_unset=False)
                if override.get("backend", inherited["backend"]) != inherited["backend"]:
                    # A role moved to another backend keeps the profile's sampling and prompt, not its model
                    # loading: a drafting model means nothing to a server.
                    inherited = {k: v for k, v in inherited.items() if k not in _MLX_ONLY}
                merged[role] = {**inherited, **override}
            else:
                merged[role] = override
        for role, cfg in given.items():
            merged.setdefault(role, cfg)
        return {**data, "roles": merged}

    @field_validator("patterns")
    @classmethod
    def _check_patterns(cls, v: dict[str, CustomPattern]) -> dict[str, CustomPattern]:
        for name, pattern in v.items():
            pattern.check(name)  # reported at start-up, never mid-call
        return v

    @field_validator("publish")
    @classmethod
    def _check_publish(cls, v: list[str] | None) -> list[str] | None:
        # The names are checked against the pattern table where it lives (the MCP server's build), which keeps
        # this module below the patterns.
        if v is not None and not v:
            raise ValueError("empty: name at least one pattern, or leave publish out to publish all")
        return v

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"


def _measured_routes(path: Path) -> dict[str, str]:
    """profile -> auto's measured coding pattern (a data file the evaluation writes; read, not imported)."""
    try:
        return {k: v["coding"] for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def _measured_stronger(path: Path) -> dict[str, str]:
    """profile -> the role (primary or competitor) whose model passed more problems in its measured figures."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    out = {}
    for profile, v in doc.items():
        rate = {f["pattern"]: f["passed"] / f["items"] for f in v.get("figures", [])
                if f["pattern"] in ("primary", "competitor") and f.get("items")}
        if len(rate) == 2 and rate["primary"] != rate["competitor"]:
            out[profile] = max(rate, key=rate.__getitem__)
    return out


_MEASURED = Path(__file__).parents[1] / "evaluation" / "measured_routes.json"
_MEASURED_ROUTES = _measured_routes(_MEASURED)
_MEASURED_STRONGER = _measured_stronger(_MEASURED)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot be read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:  # TOML is UTF-8 by definition
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); "
                          "save it as UTF-8") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from e


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """MAGEAGENT_MAX_TOKENS=8 -> {'max_tokens': '8'}; MAGEAGENT_ROLES__TOOLS__MODEL=x -> nested."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def derive(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """A copy of ``settings`` with nested ``overrides`` merged in (e.g. {"roles": {"tools": {"model": ...}}}),
    validated like any settings."""
    base = settings.model_dump()
    roles = overrides.get("roles") if isinstance(overrides.get("roles"), Mapping) else {}
    if any(isinstance(roles.get(r), Mapping) and roles[r].get("model", settings.roles[r].model)
           != settings.roles[r].model for r in ("primary", "competitor")):
        # which model is stronger was measured for the models being replaced: measure it again (or not at all)
        base.pop("stronger")
        if base["judge"] == "stronger":
            base.pop("judge")
    try:
        return Settings.model_validate(_merge(base, overrides))
    except ValidationError as e:
        raise ConfigError(f"invalid settings overrides {dict(overrides)}: "
                          f"{_explain(e, {}, {}, None).removeprefix('invalid settings:').strip()}") from e


def _has_path(data: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    if not loc:
        return False
    node: Any = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return False
    return True


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed beside the unknown key at ``loc``."""
    model: type[BaseModel] = Settings
    parents = list(loc[:-1])
    while parents:
        part = str(parents.pop(0))
        if model is Settings and part == "roles":
            if not parents:
                return list(ROLES)
            parents.pop(0)  # the role name
            model = RoleConfig
            continue
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields)


def _explain(e: ValidationError, file_data: dict[str, Any], env_data: dict[str, Any], path: Path | None) -> str:
    lines = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]")))
        key = ".".join(str(p) for p in loc)
        if _has_path(env_data, loc):
            where = "environment variable " + ENV_PREFIX + "__".join(str(p).upper() for p in loc)
        elif path is not None and _has_path(file_data, loc):
            where = f"config file {path}"
        else:
            where = "settings"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            msg = "unknown key" + (f"; allowed keys here: {', '.join(allowed)}" if allowed else "")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], dict):
                msg += f" (got {err['input']!r})"
        lines.append(f"{where}: key '{key}': {msg}")
    return "invalid settings: " + lines[0] if len(lines) == 1 else "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: defaults, then the TOML file, then MAGEAGENT_* variables, then ``overrides``."""
    env = os.environ if env is None else env
    raw_path = config_file if config_file is not None else env.get(ENV_PREFIX + "CONFIG")
    try:
        path = expand_home(Path(raw_path)) if raw_path else None
    except ValueError as e:
        where = "--config" if config_file is not None else f"environment variable {ENV_PREFIX}CONFIG"
        raise ConfigError(f"{where}: {e}") from None
    file_data = _read_toml(path) if path is not None else {}
    env_data = _env_values(env)
    data = _merge(_merge(file_data, env_data), {k: v for k, v in overrides.items() if v is not None})
    if path is not None:
        data["config_file"] = path
        # Relative paths in a config file are relative to the file, not to the working directory.
        for key in ("cache_dir", "log_file"):
            if isinstance(file_data.get(key), str) and key not in env_data and key not in overrides:
                try:
                    p = expand_home(Path(file_data[key]))
                except ValueError as e:
                    raise ConfigError(f"config file {path}: key '{key}': {e}") from None
                data[key] = p if p.is_absolute() else path.parent / p
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e, file_data, env_data, path)) from e
