"""A backend for OpenAI-compatible endpoints (mlx_lm.server, vLLM, llama.cpp's server, Ollama, LM Studio).

Same seam as the MLX backend: streaming is the primitive, usage comes from the server, cancelling the
awaiting task closes the stream. Connection errors, 429 and 5xx before the first byte are retried with
exponential backoff; a stream that breaks off mid-way is an error, never a silently short answer.
``max_tokens`` is capped to what the endpoint accepts (``max_output_tokens``), and a server that streams
past it (plus a margin) is cut off: an endless stream is an error, not a hang.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

import anyio
import httpx2

from ..core.errors import BackendUnavailable, ModelNotFoundError, ModelOutputError, RequestError
from ..core.types import Chunk, Completion, GenerationRequest
from .backend import OnChunk
from .pool import ModelSpec, ModelState

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)
_RETRY_STATUS = {429, 500, 502, 503, 504}


def stream_limit(max_tokens: int) -> int:
    """The most content chunks accepted for ``max_tokens``: servers may split or merge tokens a little."""
    return max_tokens + max(32, max_tokens // 4)


class _Retryable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def _gbnf_literal(text: str) -> str:
    return '"' + "".join({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, ch)
                         for ch in text) + '"'


def options_grammar(options: list[str], continuation: dict[str, str | None] | None) -> str:
    """A GBNF grammar (llama.cpp's ``grammar`` field) for a pick among ``options``: an option with no
    continuation ends the output; one with a continuation must go on with it, then any text."""
    alts = []
    for o in options:
        cont = (continuation or {}).get(o)
        alts.append(_gbnf_literal(o) if cont is None else f"{_gbnf_literal(o + cont)} free")
    return "root ::= " + " | ".join(alts) + "\nfree ::= [\\x01-\\U0010FFFF]*\n"


def _option_probs(top: list[dict[str, Any]], options: list[str], texts: dict[str, str]) -> dict[str, float] | None:
    """Option probabilities from the first token's top logprobs (tokens consistent with each option)."""
    totals = {o: 0.0 for o in options}
    for entry in top:
        token = entry.get("token") or ""
        lp = entry.get("logprob")
        if not token or lp is None:
            continue
        for o in options:
            full = texts.get(o, o)
            if full.startswith(token) or token.startswith(full):
                totals[o] += math.exp(lp)
                break
    z = sum(totals.values())
    return {o: v / z for o, v in totals.items()} if z > 0 else None


class OpenAIBackend:
    """Generations on one OpenAI-compatible endpoint."""

    name = "openai"

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 300.0, retries: int = 2,
                 structured_output: str = "json_schema", max_output_tokens: int = 4096,
                 transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self.retries = retries
        self.structured_output = structured_output
        self.max_output_tokens = max_output_tokens
        self._transport = transport
        self._last_used: dict[str, float] = {}
        self._known: set[str] = set()

    # -- seam ------------------------------------------------------------------------------------------
    def resolve(self, model: str) -> ModelSpec:
        self._known.add(model)
        return ModelSpec(key=f"{self.base_url}#{model}", model=model, backend=self.name,
                         quantization="remote", size_bytes=0)

    def state(self) -> list[ModelState]:
        out = []
        for m in sorted(self._known):
            ts = self._last_used.get(m)
            out.append(ModelState(key=f"{self.base_url}#{m}", model=m, backend=self.name, quantization="remote",
                                  size_gb=0.0, loaded=ts is not None, pinned=False,
                                  last_used=None if ts is None else
                                  datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds"),
                                  load_seconds=None, loads=0))
        return out

    async def warmup(self, models: list[str], pin: bool = False) -> None:
        async with self._client() as client:
            for m in models:
                self.resolve(m)
                try:
                    r = await client.get(f"{self.base_url}/models")
                except httpx2.TransportError as e:
                    raise BackendUnavailable(f"{self.base_url} is unreachable: {e}") from e
                if r.status_code >= 400:
                    raise self._http_error(r.status_code, r.text, m)

    def close(self) -> None:
        pass

    # -- generation ------------------------------------------------------------------------------------
    def _client(self) -> httpx2.AsyncClient:
        # One client per call: the engine may be driven from several event loops (CLI runs, tests).
        timeout = httpx2.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
        return httpx2.AsyncClient(timeout=timeout, headers=self._headers, transport=self._transport)

    def _body(self, req: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.model,
            "messages": [m.model_dump() for m in req.messages],
            "max_tokens": min(req.max_tokens, self.max_output_tokens),
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if req.seed is not None:
            body["seed"] = req.seed
        c = req.constraint
        if c is not None and c.json_schema is not None:
            if self.structured_output == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "output", "schema": c.json_schema, "strict": True}}
            elif self.structured_output == "llama_cpp":  # llama-cpp-python's form
                body["response_format"] = {"type": "json_object", "schema": c.json_schema}
        if c is not None and c.options:
            body["logprobs"] = True
            body["top_logprobs"] = 10
            if self.structured_output == "llama_cpp":
                body["grammar"] = options_grammar(c.options, c.option_continuation)
        return body

    def _http_error(self, status: int, text: str, model: str) -> Exception:
        detail = text[:300].strip()
        if status in (401, 403):
            return BackendUnavailable(f"{self.base_url} refused the credentials (HTTP {status}): check api_key_env. "
                                      f"{detail}")
        if status == 404:
            return ModelNotFoundError(f"{self.base_url} does not know model {model!r} (HTTP 404): check the role's "
                                      f"model name and base_url. {detail}")
        if 400 <= status < 500:
            return RequestError(f"{self.base_url} rejected the request (HTTP {status}): {detail}")
        return BackendUnavailable(f"{self.base_url} failed (HTTP {status}): {detail}")

    async def stream(self, request: GenerationRequest, on_chunk: OnChunk | None = None) -> Completion:
        self.resolve(request.model)
        body = self._body(request)
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return await self._stream_once(request, body, on_chunk)
            except _Retryable as e:
                if attempt == self.retries:
                    raise BackendUnavailable(f"{e} (after {self.retries + 1} attempts)") from None
                log.warning("%s; retrying in %.1fs", e, delay)
                await anyio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _stream_once(self, req: GenerationRequest, body: dict[str, Any], on_chunk: OnChunk | None) -> Completion:
        t0 = time.perf_counter()
        parts: list[str] = []
        tokens = 0
        usage: dict[str, Any] = {}
        finish = None
        first_top: list[dict[str, Any]] | None = None
        t_first: float | None = None
        url = f"{self.base_url}/chat/completions"
        limit = stream_limit(body["max_tokens"])
        lines = 0
        async with self._client() as client:
            try:
                async with client.stream("POST", url, json=body) as resp:
                    if resp.status_code in _RETRY_STATUS:
                        text = (await resp.aread()).decode(errors="replace")
                        raise _Retryable(f"{self.base_url} answered HTTP {resp.status_code}: {text[:200]}")
                    if resp.status_code >= 400:
                        text = (await resp.aread()).decode(errors="replace")
                        raise self._http_error(resp.status_code, text, req.model)
                    async for line in resp.aiter_lines():
                        lines += 1
                        if tokens > limit or lines > 4 * limit:  # keep-alives or empty deltas count too
                            raise BackendUnavailable(
                                f"{self.base_url} kept streaming past max_tokens={body['max_tokens']}: cut off "
                                f"after {tokens} chunks ({lines} lines); no partial answer is returned")
                        if not line.startswith("data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == "[DONE]":
                            break
                        try:
                            event = json.loads(payload)
                        except ValueError as e:
                            raise ModelOutputError(f"{self.base_url} sent a malformed stream event: {payload[:200]}",
                                                   raw=payload) from e
                        if event.get("usage"):
                            usage = event["usage"]
                        for choice in event.get("choices") or []:
                            delta = (choice.get("delta") or {}).get("content") or ""
                            lp = choice.get("logprobs") or {}
                            if first_top is None and lp.get("content"):
                                first_top = lp["content"][0].get("top_logprobs") or []
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
                            if delta:
                                if t_first is None:
                                    t_first = time.perf_counter()
                                tokens += 1
                                parts.append(delta)
                                if on_chunk is not None:
                                    await on_chunk(Chunk(text=delta, tokens=tokens))
            except httpx2.TransportError as e:
                if tokens == 0:
                    raise _Retryable(f"{self.base_url} is unreachable ({type(e).__name__}: {e})") from e
                raise BackendUnavailable(f"{self.base_url} broke off mid-stream after {tokens} chunks "
                                         f"({type(e).__name__}); no partial answer is returned") from e
        if finish is None:
            raise BackendUnavailable(f"{self.base_url} broke off mid-stream: the stream ended without a finish "
                                     f"reason after {tokens} chunks; no partial answer is returned")
        self._last_used[req.model] = time.time()
        seconds = time.perf_counter() - t0
        completion_tokens = int(usage.get("completion_tokens") or tokens)
        gen_time = (time.perf_counter() - t_first) if t_first else 0.0
        option_probs = None
        c = req.constraint
        if c is not None and c.options and first_top:
            texts = {o: o + ((c.option_continuation or {}).get(o) or "") for o in c.options}
            option_probs = _option_probs(first_top, c.options, texts)
        return Completion(
            text="".join(parts), model=req.model, prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=completion_tokens, finish_reason="length" if finish == "length" else "stop",
            seconds=seconds, generation_tps=completion_tokens / gen_time if gen_time > 0 else 0.0,
            option_probs=option_probs,
            constrained=bool(c is not None and c.json_schema is not None and self.structured_output != "none"),
        )
