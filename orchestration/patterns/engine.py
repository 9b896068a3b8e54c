"""The engine: settings + backends + the pattern table. Importable and usable with no MCP at all."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..core.errors import ConfigError, DeadlineReached, MageError, RequestError
from ..core.settings import ROLES, Settings
from ..core.types import PatternRequest, PatternResult
from ..models.backend import Backend
from ..models.pool import GB
from ..run.context import OnProgress, RunContext
from . import PATTERNS, PatternFn
from .custom import make_custom

__all__ = ["Engine"]

log = logging.getLogger(__name__)


def _default_backends(settings: Settings, env: Mapping[str, str]) -> dict[str, Backend]:
    from ..models.mlx_backend import MLXBackend

    backends: dict[str, Backend] = {
        "mlx": MLXBackend(settings.models_dir, settings.memory_budget_gb, allow_download=settings.allow_download,
                          prompt_cache_gb=settings.prompt_cache_gb, prompt_cache_entries=settings.prompt_cache_entries,
                          prefill_step=settings.prefill_step, batch_size=settings.batch_size)}
    for cfg in settings.roles.values():
        if cfg.backend == "openai" and cfg.backend_key not in backends:
            from ..models.openai_backend import OpenAIBackend

            key = env.get(cfg.api_key_env) if cfg.api_key_env else None
            if cfg.api_key_env and not key:
                raise ConfigError(f"role model {cfg.model}: environment variable {cfg.api_key_env} (api_key_env) "
                                  "is not set")
            backends[cfg.backend_key] = OpenAIBackend(
                cfg.base_url or "", api_key=key, timeout_s=cfg.timeout_s, retries=cfg.retries,
                structured_output=cfg.structured_output, max_output_tokens=cfg.max_output_tokens)
    return backends


class Engine:
    """Runs patterns by name over the configured backends."""

    def __init__(self, settings: Settings, backends: Mapping[str, Backend] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.backends: dict[str, Backend] = (dict(backends) if backends is not None
                                             else _default_backends(settings, os.environ if env is None else env))
        self.patterns: dict[str, PatternFn] = dict(PATTERNS)
        for name, spec in settings.patterns.items():
            self.patterns[name] = make_custom(name, spec)
        self.descriptions: dict[str, str] = {name: spec.description for name, spec in settings.patterns.items()}
        missing = {cfg.backend_key for cfg in settings.roles.values()} - set(self.backends)
        if missing:
            raise RequestError(f"no backend for {', '.join(sorted(missing))}")

    def pattern_names(self) -> list[str]:
        return list(self.patterns)

    async def run(self, name: str, request: PatternRequest, on_progress: OnProgress | None = None) -> PatternResult:
        """Run pattern ``name`` on ``request``."""
        fn = self.patterns.get(name)
        if fn is None:
            raise RequestError(f"unknown pattern {name!r}; choose one of: {', '.join(self.patterns)}")
        ctx = RunContext(name, request, self.settings, self.backends, on_progress)
        try:
            result = await fn(request, ctx)
        except DeadlineReached as reached:
            result = ctx.partial_result(reached)
            log.info("pattern %s: deadline reached at %s; partial result", name, reached.step)
        log.info("pattern %s done: %d steps, %.2fs, %d tool calls", name, len(result.trace.steps),
                 result.totals.seconds, len(result.tool_calls))
        return result

    def _resolve_state(self) -> dict[str, Any]:
        by_key: dict[str, Any] = {}
        for backend in self.backends.values():
            for st in backend.state():
                by_key[st.model] = st
        return by_key

    def models_state(self) -> dict[str, Any]:
        """Every role: model id, backend, quantization, size, loaded, last use; plus the memory budget."""
        roles: dict[str, Any] = {}
        states = self._resolve_state()
        for role in ROLES:
            cfg = self.settings.roles[role]
            backend = self.backends[cfg.backend_key]
            entry: dict[str, Any] = {"role": role, "model": cfg.model, "backend": cfg.backend,
                                     "quantization": cfg.quantization, "pinned": cfg.pinned}
            try:
                spec = backend.resolve(cfg.model)
                entry["available"] = True
                entry["size_gb"] = round(spec.size_bytes / GB, 3)
                entry["quantization"] = cfg.quantization or spec.quantization
            except MageError as e:  # a missing model is a state to report, not a failure here
                entry["available"] = False
                entry["problem"] = str(e)
            state = states.get(cfg.model)
            entry["loaded"] = bool(state and state.loaded)
            entry["last_used"] = state.last_used if state else None
            entry["load_seconds"] = state.load_seconds if state else None
            roles[role] = entry
        used = sum(getattr(getattr(b, "pool", None), "used_bytes", 0) for b in self.backends.values())
        return {"profile": self.settings.profile, "roles": roles,
                "memory": {"budget_gb": self.settings.memory_budget_gb, "used_gb": round(used / GB, 3)}}

    async def warmup(self) -> None:
        """Load every role's model now (pinned roles stay loaded)."""
        for role in ROLES:
            cfg = self.settings.roles[role]
            backend = self.backends[cfg.backend_key]
            await backend.warmup([cfg.model], pin=cfg.pinned)

    def close(self) -> None:
        for b in self.backends.values():
            b.close()
