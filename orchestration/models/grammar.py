"""Constrained decoding: llguidance grammars applied as an mlx-lm logits processor with plain MLX ops.

llguidance's own ``llguidance.mlx`` uses a Metal-only kernel, so the token bitmask is unpacked here
with plain MLX ops: each 32-bit word shifted by 0..31 and masked (well under 1 ms for a 49,152-token
vocabulary).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..core.errors import SchemaError
from ..core.types import Constraint

__all__ = ["grammar_for", "GrammarProcessor"]

_JSON_OPTIONS = {"whitespace_flexible": False}


def _lark_string(s: str) -> str:
    return json.dumps(s)


def grammar_for(constraint: Constraint) -> str:
    """The llguidance grammar for a constraint."""
    import llguidance

    if constraint.json_schema is not None:
        return llguidance.LLMatcher.grammar_from_json_schema(constraint.json_schema, overrides=_JSON_OPTIONS)
    if constraint.options:
        cont = constraint.option_continuation or {}
        alts = []
        for opt in constraint.options:
            follow = cont.get(opt)
            if follow is None:
                alts.append(_lark_string(opt))
            else:
                alts.append(f"{_lark_string(opt + follow)} REST")
        lark = "start: " + " | ".join(alts) + "\n"
        if any(cont.get(o) is not None for o in constraint.options):
            lark += "REST: /(.|\\n)*/\n"
        return llguidance.LLMatcher.grammar_from_lark(lark)
    raise ValueError("empty constraint")


class GrammarProcessor:
    """An mlx-lm logits processor: masks every token the grammar does not allow next.

    mlx-lm calls it with all tokens so far (prompt first); it feeds each new token to the matcher,
    computes the next mask, and at the first step records each option's probability.
    """

    def __init__(self, lltokenizer: Any, grammar: str, n_prompt: int, vocab_size: int,
                 options: list[str] | None = None, option_texts: dict[str, str] | None = None) -> None:
        import llguidance
        import llguidance.numpy as llnp
        import mlx.core as mx

        self._mx = mx
        self._fill = llnp.fill_next_token_bitmask
        self.tok = lltokenizer
        self.matcher = llguidance.LLMatcher(lltokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise SchemaError(f"the constrainer cannot handle this schema: {self.matcher.get_error()}")
        n_tok = lltokenizer.vocab_size
        self.bitmask = llnp.allocate_token_bitmask(1, n_tok)
        self._n = min(n_tok, vocab_size)
        self._shift = mx.arange(32, dtype=mx.uint32)
        self._pad = max(0, vocab_size - n_tok)  # model logits beyond the tokenizer: never allowed
        self.n_seen = n_prompt
        self.steps = 0
        self.error: str | None = None
        self.options = options
        self.option_texts = option_texts or {}
        self.option_probs: dict[str, float] | None = None
        self.mask_seconds = 0.0

    def _allowed(self) -> Any:
        mx = self._mx
        # Broadcast each 32-bit word against the 32 shifts: no gather, ~0.15 ms for 49,152 tokens
        # (an index gather took ~1 ms on the CPU backend).
        words = mx.array(self.bitmask.view(np.uint32)[0])
        allowed = ((words[:, None] >> self._shift) & 1).reshape(-1)[: self._n].astype(mx.bool_)
        if self._pad:
            allowed = mx.concatenate([allowed, mx.zeros((self._pad,), dtype=mx.bool_)])
        return allowed

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import time

        mx = self._mx
        n = tokens.shape[0]
        if n > self.n_seen:
            # .tolist() waits for the previous step's forward pass: that is generation, not mask cost.
            for t in tokens[self.n_seen:].tolist():
                if not self.matcher.is_stopped() and not self.matcher.consume_token(int(t)):
                    self.error = self.matcher.get_error() or f"token {t} rejected"
            self.n_seen = n
        t0 = time.perf_counter()
        self._fill(self.matcher, self.bitmask)
        allowed = self._allowed()
        masked = mx.where(allowed, logits, -math.inf)
        mx.eval(allowed)  # count the unpacking here rather than inside the next forward pass
        if self.steps == 0 and self.options:
            self._record_option_probs(allowed, masked)
        self.steps += 1
        self.mask_seconds += time.perf_counter() - t0
        return masked

    def _record_option_probs(self, allowed: Any, masked: Any) -> None:
        mx = self._mx
        probs = mx.softmax(masked.astype(mx.float32), axis=-1).reshape(-1)
        ids = np.nonzero(np.array(allowed))[0]
        p = np.array(probs)[ids]
        totals = {o: 0.0 for o in self.options or []}
        for token_id, prob in zip(ids.tolist(), p.tolist()):
            text = self.tok.decode_str([token_id])
            for opt in totals:
                full = self.option_texts.get(opt, opt)
                if text and (full.startswith(text) or text.startswith(full)):
                    totals[opt] += prob
                    break
        z = sum(totals.values()) or 1.0
        self.option_probs = {o: v / z for o, v in totals.items()}
