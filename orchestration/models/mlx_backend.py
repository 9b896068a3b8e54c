"""The in-process MLX backend: mlx-lm models behind one owner thread and a model pool."""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ContextOverflowError, MageError, ModelLoadError, ModelNotFoundError
from ..core.types import Chunk, Completion, Constraint, GenerationRequest
from .backend import OnChunk
from .batching import Batcher, sampler_for
from .catalog import LOCAL, local_dir
from .pool import GB, ModelPool, ModelSpec, ModelState
from .worker import DeviceWorker, Job

__all__ = ["MLXBackend", "LoadedModel", "load_model"]

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A loaded mlx-lm model with its tokenizer; the grammar tokenizer is built on first constrained use."""

    model: Any
    tokenizer: Any
    path: Path
    context_length: int
    vocab_size: int
    _lltokenizer: Any = field(default=None, repr=False)

    def prompt(self, req: GenerationRequest, model: str) -> tuple[list[int], int]:
        """The request's chat-templated prompt ids and its token budget; a prompt that fills the context is
        refused. A budget beyond the context (extraction sizes its budget from the schema) is capped to it;
        output cut off there reports finish_reason "length" like any other limit."""
        messages = [m.model_dump() for m in req.messages]
        if req.continue_final:  # the assistant's unfinished turn is continued, not closed and answered again
            prompt = self.tokenizer.apply_chat_template(messages, continue_final_message=True,
                                                        add_generation_prompt=False)
        else:
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        room = self.context_length - len(prompt)
        if room < 1:
            raise ContextOverflowError(
                f"the prompt is {len(prompt)} tokens but {model} holds {self.context_length}: "
                "shorten the prompt or the context"
            )
        return list(prompt), min(req.max_tokens, room)

    def grammar(self, c: Constraint, n_prompt: int) -> Any:
        """The logits processor that enforces ``c``; ``n_prompt``: the tokens before the first generated one in
        the token context mlx-lm hands it."""
        from .grammar import GrammarProcessor, grammar_for

        texts = {o: o + ((c.option_continuation or {}).get(o) or "") for o in (c.options or [])}
        return GrammarProcessor(self.lltokenizer(), grammar_for(c), n_prompt,
                                self.vocab_size or self.lltokenizer().vocab_size, options=c.options,
                                option_texts=texts)

    def lltokenizer(self) -> Any:
        if self._lltokenizer is None:
            import llguidance

            backend = self.tokenizer._tokenizer.backend_tokenizer  # the Rust tokenizer behind transformers
            eos = sorted(self.tokenizer.eos_token_ids)
            self._lltokenizer = llguidance.LLTokenizer(backend.to_str(), eos_token=eos[0] if eos else None)
        return self._lltokenizer


def check_weights(path: Path) -> None:
    """A converted model's files against its conversion stamp, fast (sizes and a sample of blocks), before every
    load: weights changed after set-up are refused, never loaded. A directory without a stamp (an mlx-lm model
    the user points at) is not ours to check; a stamp from before weights were hashed is loaded with a warning."""
    from .convert import STAMP, verify_model_dir

    if not (path / STAMP).exists():
        return
    problem = verify_model_dir(path)
    if problem is None:
        return
    if "no sha256" in problem:
        log.warning("%s; `mageagent setup --force` hashes it", problem)
        return
    raise ModelLoadError(f"{problem}: the weights changed after set-up; run `mageagent setup --force`")


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load an mlx-lm model directory (runs on the owner thread). Tests replace this to forbid real loads."""
    import mlx.core as mx
    from mlx_lm import load

    path = Path(spec.key)
    check_weights(path)
    try:
        model, tokenizer, config = load(str(path), return_config=True)
    except Exception as e:  # mlx-lm raises assorted errors for broken model directories
        raise ModelLoadError(f"could not load {spec.model} from {path}: {type(e).__name__}: {e}") from e
    mx.eval(model.parameters())
    ctx = int(config.get("max_position_embeddings") or config.get("max_seq_len") or 4096)
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, context_length=ctx,
                       vocab_size=int(config.get("vocab_size", 0)))


def _release_memory() -> None:
    """Give freed weights and caches back to the system: MLX's buffer cache, then the C heap. glibc keeps freed
    blocks in the arena of the thread that freed them; each backend's owner thread has its own, so a model
    unloaded (or a backend closed) stayed resident: 450 MB more per load and close of a 135M model."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    _trim_heap()


def _trim_heap() -> None:
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim): nothing to trim
        pass


KV_RESERVE_TOKENS = 8192  # the KV cache one call may build is counted against the budget up to this length


def _kv_reserve_bytes(path: Path) -> int:
    """Bytes of KV cache for KV_RESERVE_TOKENS tokens (float32 keys and values, every layer)."""
    try:
        c = json.loads((path / "config.json").read_text())
        heads = int(c["num_attention_heads"])
        head_dim = int(c.get("head_dim") or int(c["hidden_size"]) // heads)
        per_token = int(c["num_hidden_layers"]) * int(c.get("num_key_value_heads") or heads) * head_dim * 2 * 4
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return 0
    ctx = int(c.get("max_position_embeddings") or KV_RESERVE_TOKENS)
    return per_token * min(ctx, KV_RESERVE_TOKENS)


def _cache_tokens(cache: list[Any]) -> int:
    return int(cache[0].offset) if cache and hasattr(cache[0], "offset") else 0


def _dir_weight_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


class MLXBackend:
    """Resolves model names to directories, loads them lazily, and generates on one owner thread."""

    name = "mlx"
    continues = True  # honours GenerationRequest.continue_final

    def __init__(self, models_dir: Path, memory_budget_gb: float, *, allow_download: bool = False,
                 worker: DeviceWorker | None = None, prompt_cache_gb: float = 0.5,
                 prompt_cache_entries: int = 16, prefill_step: int = 256, batch_size: int = 8) -> None:
        self.models_dir = models_dir
        self.allow_download = allow_download
        self.worker = worker or DeviceWorker()
        # Prompt caches come out of the same memory budget as the weights: the pool gets the rest.
        self.prompt_cache_bytes = int(min(prompt_cache_gb, memory_budget_gb / 4) * GB) if prompt_cache_entries else 0
        self.prompt_cache_entries = prompt_cache_entries
        self.prefill_step = prefill_step
        self._prompt_caches: dict[str, Any] = {}  # model key -> mlx-lm LRUPromptCache (owner thread only)
        self.pool = ModelPool(lambda spec: load_model(spec), int(memory_budget_gb * GB) - self.prompt_cache_bytes,
                              release=self._release)
        self.worker.on_stop.append(self._on_stop)
        self._specs: dict[str, ModelSpec] = {}
        self.last_mask_seconds_per_token: float | None = None
        # Concurrent generations for one model decode as one batch (1: strictly one at a time).
        self.batcher = Batcher(self, batch_size) if batch_size > 1 else None

    # -- resolving -----------------------------------------------------------------------------------
    def resolve(self, model: str) -> ModelSpec:
        """The spec for a model name: a local model (``qwen2.5-coder-0.5b``...), a directory, or an mlx-lm id."""
        if model in self._specs:
            return self._specs[model]
        if model in LOCAL:
            path = local_dir(self.models_dir, model)
            if not (path / "config.json").is_file():
                raise ModelNotFoundError(
                    f"the local model '{model}' is not prepared ({path} is missing): run `mageagent setup` "
                    f"(or `mageagent setup --model {model}`)"
                )
        elif Path(model).expanduser().is_dir():
            path = Path(model).expanduser().resolve()
            if not (path / "config.json").is_file():
                raise ModelNotFoundError(f"{path} is not an mlx-lm model directory (no config.json)")
        else:
            path = self._hub_path(model)
        spec = ModelSpec(key=str(path), model=model, backend=self.name, quantization=self._quant_label(path),
                         size_bytes=_dir_weight_bytes(path), kv_reserve_bytes=_kv_reserve_bytes(path))
        self._specs[model] = spec
        self.pool.register(spec)
        return spec

    def _hub_path(self, model_id: str) -> Path:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model_id, local_files_only=not self.allow_download,
                                          allow_patterns=["*.json", "*.safetensors", "*.py", "tokenizer.model",
                                                          "*.tiktoken", "*.txt", "*.jinja"]))
        except Exception as e:  # huggingface_hub's not-found errors vary by version
            raise ModelNotFoundError(
                f"model '{model_id}' is not on this machine. Download it once with "
                f"`hf download {model_id}` (or set allow_download = true), or point the role at a local "
                f"mlx-lm directory; for the offline default run `mageagent setup`. ({type(e).__name__})"
            ) from e

    @staticmethod
    def _quant_label(path: Path) -> str:
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            return "unknown"
        q = config.get("quantization")
        if isinstance(q, dict):
            return f"{q.get('bits')}-bit (group {q.get('group_size')})"
        return str(config.get("torch_dtype") or "dense")

    # -- generation ----------------------------------------------------------------------------------
    async def stream(self, request: GenerationRequest, on_chunk: OnChunk | None = None) -> Completion:
        async def forward(event: Any) -> None:
            if on_chunk is not None and isinstance(event, Chunk):
                await on_chunk(event)

        # Resolving may touch the disk (or the hub, with allow_download): on the owner thread, never the loop.
        if self.batcher is not None:
            batcher = self.batcher
            return await self.worker.attend(lambda deliver: batcher.submit(request, deliver), forward)
        return await self.worker.run(lambda job: self._generate(job, self.resolve(request.model), request), forward)

    def _release(self) -> None:
        # A model left the pool: its prompt caches go with it (they are only valid for those weights).
        live = {k for k in self._prompt_caches if self.pool.is_loaded(k)}
        for key in list(self._prompt_caches):
            if key not in live:
                del self._prompt_caches[key]
        _release_memory()

    def _lookup(self, spec: ModelSpec, handle: LoadedModel, prompt: list[int]) -> tuple[list[Any], list[int]]:
        """A copy of the KV state of the longest cached prefix of ``prompt`` and the tokens still to read."""
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

        lru = self._prompt_caches.get(spec.key)
        if lru is None or not self.prompt_cache_entries:
            return make_prompt_cache(handle.model), prompt
        cache, rest = lru.fetch_nearest_cache(spec.key, prompt)
        if cache is None:
            return make_prompt_cache(handle.model), prompt
        if not rest:  # the whole prompt is cached: read its last token again to get the next logits
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, list(rest)

    def _remember(self, spec: ModelSpec, tokens: list[int], cache: list[Any]) -> None:
        """Keep the KV state of everything this call read and wrote (prompt + answer) for later prefixes."""
        import mlx.core as mx
        from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache

        n = _cache_tokens(cache)
        if not self.prompt_cache_entries or n == 0 or n > len(tokens) or not can_trim_prompt_cache(cache):
            return
        lru = self._prompt_caches.get(spec.key)
        if lru is None:
            lru = self._prompt_caches[spec.key] = LRUPromptCache(self.prompt_cache_entries, self.prompt_cache_bytes)
        # A batch's cache is extracted lazily (a contiguous slice of the whole batch's keys and values): kept
        # unevaluated, each entry held the batch's buffers alive, which the byte cap never saw (scripts/
        # measure_mlx_memory.py: 3.1-3.9 GB active for a 0.5 GB model under 8 concurrent calls, 1 GB evaluated).
        mx.eval([c.state for c in cache])
        lru.insert_cache(spec.key, tokens[:n], cache)

    def _prefill(self, job: Job[Any], model: Any, cache: list[Any], tokens: list[int]) -> None:
        """Read ``tokens`` into ``cache`` a chunk (``prefill_step`` tokens) at a time; a cancel is checked before
        each chunk, so it takes effect within one."""
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        with mx.stream(generation_stream):
            for i in range(0, len(tokens), self.prefill_step):
                job.check_cancelled()
                model(mx.array(tokens[i:i + self.prefill_step])[None], cache=cache)
                mx.eval([c.state for c in cache])
                mx.clear_cache()
        job.check_cancelled()

    def prompt_cache_bytes_used(self) -> int:
        return sum(lru.nbytes for lru in self._prompt_caches.values())

    def _generate(self, job: Job[Completion], spec: ModelSpec, req: GenerationRequest) -> Completion:
        job.check_cancelled()
        draft_spec, draft, draft_dropped = self._pick_draft(spec, req)
        handle: LoadedModel = self.pool.acquire(spec)
        t0 = time.perf_counter()
        prompt, max_tokens = handle.prompt(req, spec.model)
        kwargs: dict[str, Any] = {}
        cache, rest = self._lookup(spec, handle, prompt)
        draft_cache: list[Any] = []
        prefill_s = 0.0
        if draft is not None:
            assert draft_spec is not None
            # Speculative decoding (greedy output is token-identical). mlx-lm's speculative loop reads the prompt
            # in one go with no callback, so both models read theirs here, from their own prompt caches, a chunk
            # at a time with a cancel check between chunks; the loop gets the last token (its first step).
            draft_cache, draft_rest = self._lookup(draft_spec, draft, prompt)
            self._prefill(job, draft.model, draft_cache, draft_rest[:-1])
            self._prefill(job, handle.model, cache, rest[:-1])
            prefill_s = time.perf_counter() - t0
            kwargs.update(draft_model=draft.model, num_draft_tokens=req.num_draft_tokens,
                          prompt_cache=cache + draft_cache)
        else:
            # Prefill in chunks; a cancel takes effect between two chunks, not after the whole prompt.
            kwargs.update(prompt_cache=cache, prefill_step_size=self.prefill_step,
                          prompt_progress_callback=lambda done, total: job.check_cancelled())
        grammar_proc = handle.grammar(req.constraint, len(rest)) if req.constraint is not None else None
        first = rest[-1:] if draft is not None else rest
        text, generated, drafted, last = self._decode(job, spec, handle, req, first, max_tokens, grammar_proc, kwargs)
        self._remember(spec, list(prompt) + generated, cache)
        if draft_spec is not None and draft_cache:
            self._remember(draft_spec, list(prompt) + generated, draft_cache)
        if grammar_proc is not None:
            if grammar_proc.error is not None:
                raise MageError(f"constrained decoding failed: {grammar_proc.error}")
            self.last_mask_seconds_per_token = grammar_proc.mask_seconds / max(1, grammar_proc.steps)
        return Completion(
            text=text,
            model=spec.model,
            prompt_tokens=len(prompt),
            cached_prompt_tokens=len(prompt) - len(rest),
            completion_tokens=last.generation_tokens,
            draft_accepted=drafted if draft is not None else None,
            finish_reason="stop" if last.finish_reason == "stop" else "length",
            seconds=time.perf_counter() - t0,
            # drafted: mlx-lm timed only the last prompt token; the rest was read above
            prompt_tps=last.prompt_tps if draft is None else len(rest) / (prefill_s + 1 / last.prompt_tps),
            generation_tps=last.generation_tps,
            peak_memory_gb=last.peak_memory,
            option_probs=grammar_proc.option_probs if grammar_proc is not None else None,
            constrained=grammar_proc is not None,
            note=draft_dropped,
        )

    def _pick_draft(self, spec: ModelSpec, req: GenerationRequest
                    ) -> tuple[ModelSpec | None, LoadedModel | None, str | None]:
        """The draft model's spec and, where it may draft, the loaded model; else why not (a note), if asked for."""
        if not req.draft_model or req.constraint is not None:
            return None, None, None
        draft_spec = self.resolve(req.draft_model)
        # A model never drafts for itself; both must fit the budget together or the call runs plainly.
        together = draft_spec.budget_bytes + spec.budget_bytes
        if draft_spec.key == spec.key:
            return draft_spec, None, None
        if together <= self.pool.budget_bytes:
            return draft_spec, self.pool.acquire(draft_spec), None
        dropped = (f"no drafting: {spec.model} and its draft {draft_spec.model} need "
                   f"{together / 1e9:.1f} GB together, over the memory budget of "
                   f"{self.pool.budget_bytes / 1e9:.1f} GB")
        log.warning("%s", dropped)
        return draft_spec, None, dropped

    def _decode(self, job: Job[Completion], spec: ModelSpec, handle: LoadedModel, req: GenerationRequest,
                first: list[int], max_tokens: int, grammar_proc: Any, kwargs: dict[str, Any]
                ) -> tuple[str, list[int], int, Any]:
        """mlx-lm's ``stream_generate`` from ``first``, each chunk emitted: the text, the tokens, how many of them
        the draft model proposed, and mlx-lm's last response record."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        processors = [grammar_proc] if grammar_proc is not None else []
        sampler = sampler_for(req)  # a seeded sampler carries its own key
        parts: list[str] = []
        generated: list[int] = []
        drafted = 0
        last = None
        for resp in stream_generate(handle.model, handle.tokenizer, mx.array(first), max_tokens=max_tokens,
                                    sampler=sampler, logits_processors=processors or None, **kwargs):
            job.check_cancelled()
            last = resp
            generated.append(int(resp.token))
            drafted += bool(getattr(resp, "from_draft", False))
            if resp.text:
                parts.append(resp.text)
            job.emit(Chunk(text=resp.text, tokens=resp.generation_tokens))
        if last is None:  # pragma: no cover - stream_generate always yields a final record
            raise ModelLoadError(f"{spec.model} produced no output")
        return "".join(parts), generated, drafted, last

    async def raw_seconds(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Plain mlx-lm decoding for the benchmark: ``prompt_tokens`` read, then exactly ``completion_tokens``
        greedy steps of ``generate_step``, with no template, grammar, detokenizer or engine around it."""
        spec = self.resolve(model)

        def run(job: Job[float]) -> float:
            import mlx.core as mx
            from mlx_lm.generate import generate_step

            handle: LoadedModel = self.pool.acquire(spec)
            prompt = mx.array([min(1000, handle.vocab_size - 1)] * max(1, prompt_tokens))
            t0 = time.perf_counter()
            for n, _ in enumerate(generate_step(prompt, handle.model, max_tokens=max(1, completion_tokens)), 1):
                if n >= completion_tokens:
                    break
            return time.perf_counter() - t0

        return await self.worker.run(run)

    # -- management ----------------------------------------------------------------------------------
    def state(self) -> list[ModelState]:
        return self.pool.state()

    async def warmup(self, models: list[str], pin: bool = False) -> None:
        from ..core.types import Message

        for name in dict.fromkeys(models):
            if pin:
                self.pin(name)
            req = GenerationRequest(model=name, messages=[Message(role="user", content="Hi")], max_tokens=1)
            await self.stream(req)

    def pin(self, model: str) -> None:
        self.pool.pin(self.resolve(model).key)

    async def unload(self, model: str) -> bool:
        key = self.resolve(model).key
        return await self.worker.run(lambda job: self.pool.unload(key))

    def _on_stop(self) -> None:
        import mlx.core as mx

        self.pool.unload_all()
        mx.synchronize()

    def close(self) -> None:
        self.worker.shutdown()

