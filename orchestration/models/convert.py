"""Convert a llama-architecture GGUF (the embedded SmolLM2) into an mlx-lm model directory.

``mx.load(gguf, return_metadata=True)`` already gives MLX-quantized triplets (weight, scales,
biases; group size 32) plus the tokenizer metadata. This module maps tensor names to mlx-lm's
llama names, un-permutes the q/k rows that llama.cpp's converter interleaved for its rotary
layout, keeps the triplets (``q4``) or dequantizes them (``dense``), keeps everything float32
(MLX's CPU backend is ~30x slower in float16), and rebuilds ``tokenizer.json`` from the GGUF
vocabulary and merges so token ids match llama.cpp's exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import ModelLoadError

__all__ = ["Variant", "ConversionReport", "convert_gguf", "build_tokenizer_json", "unpermute_rows"]

Variant = Literal["dense", "q4"]
FORMAT_VERSION = 1
GROUP_SIZE = 32
BITS = 4

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


class ConversionReport(BaseModel):
    """What a conversion did (or found already done)."""

    output_dir: str
    variant: Variant
    source: str
    source_sha256: str
    reused: bool
    seconds: float
    size_bytes: int


def _meta_int(meta: dict[str, Any], key: str) -> int:
    return int(meta[key].item())


def _meta_float(meta: dict[str, Any], key: str) -> float:
    return float(meta[key].item())


def unpermute_rows(rows: Any, n_head: int) -> Any:
    """Undo llama.cpp's q/k row permutation (interleaved rotary pairs -> halves, mlx-lm's layout)."""
    shape = rows.shape
    head_dim = shape[0] // n_head
    return rows.reshape(n_head, head_dim // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _map_name(gguf_name: str) -> str:
    stem, _, suffix = gguf_name.rpartition(".")  # suffix: weight / scales / biases
    parts = stem.split(".")
    if parts[0] == "blk":
        layer, kind = parts[1], parts[2]
        if kind not in _LAYER_NAMES:
            raise ModelLoadError(f"unexpected GGUF tensor {gguf_name!r}: not a llama layer tensor")
        return f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"
    if stem not in _TOP_NAMES:
        raise ModelLoadError(f"unexpected GGUF tensor {gguf_name!r}")
    return f"{_TOP_NAMES[stem]}.{suffix}"


def quant_bits(weight: Any, scales: Any) -> int:
    """Bits per value of an MLX-quantized triplet (the GGUF keeps the embedding at 8 bits, the rest at 4)."""
    return weight.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)


def _convert_tensors(
    weights: dict[str, Any], meta: dict[str, Any], variant: Variant
) -> tuple[dict[str, Any], dict[str, int]]:
    """Return mlx-lm tensors and, for quantized modules, their bits per value."""
    import mlx.core as mx

    n_head = _meta_int(meta, "llama.attention.head_count")
    n_kv = _meta_int(meta, "llama.attention.head_count_kv")
    out: dict[str, Any] = {}
    bits: dict[str, int] = {}
    stems = sorted({k.rpartition(".")[0] for k in weights})
    for stem in stems:
        w = weights[f"{stem}.weight"]
        quantized = f"{stem}.scales" in weights
        parts = [w] + ([weights[f"{stem}.scales"], weights[f"{stem}.biases"]] if quantized else [])
        if stem.endswith(".attn_q") or stem.endswith(".attn_k"):
            heads = n_head if stem.endswith(".attn_q") else n_kv
            parts = [unpermute_rows(p, heads) for p in parts]
        if not quantized:
            out[_map_name(f"{stem}.weight")] = parts[0].astype(mx.float32)
        elif variant == "dense":
            dense = mx.dequantize(parts[0], parts[1].astype(mx.float32), parts[2].astype(mx.float32),
                                  group_size=GROUP_SIZE, bits=quant_bits(parts[0], parts[1]))
            out[_map_name(f"{stem}.weight")] = dense.astype(mx.float32)
        else:
            bits[_map_name(f"{stem}.weight").rpartition(".")[0]] = quant_bits(parts[0], parts[1])
            out[_map_name(f"{stem}.weight")] = parts[0]
            out[_map_name(f"{stem}.scales")] = parts[1].astype(mx.float32)
            out[_map_name(f"{stem}.biases")] = parts[2].astype(mx.float32)
    mx.eval(out)
    return out, bits


def _model_config(meta: dict[str, Any], bits: dict[str, int], has_output: bool) -> dict[str, Any]:
    hidden = _meta_int(meta, "llama.embedding_length")
    n_head = _meta_int(meta, "llama.attention.head_count")
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": _meta_int(meta, "llama.block_count"),
        "intermediate_size": _meta_int(meta, "llama.feed_forward_length"),
        "num_attention_heads": n_head,
        "num_key_value_heads": _meta_int(meta, "llama.attention.head_count_kv"),
        "head_dim": hidden // n_head,
        "rms_norm_eps": _meta_float(meta, "llama.attention.layer_norm_rms_epsilon"),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "rope_theta": _meta_float(meta, "llama.rope.freq_base"),
        "rope_traditional": False,  # rows are un-permuted instead
        "max_position_embeddings": _meta_int(meta, "llama.context_length"),
        "tie_word_embeddings": not has_output,
        "bos_token_id": _meta_int(meta, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _meta_int(meta, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }
    if bits:
        quant: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": BITS}
        # mlx-lm reads per-module overrides keyed by module path (the embedding is 8-bit in this GGUF).
        quant.update({path: {"group_size": GROUP_SIZE, "bits": b} for path, b in bits.items() if b != BITS})
        config["quantization"] = quant
    return config


def build_tokenizer_json(meta: dict[str, Any]) -> str:
    """Rebuild a Hugging Face ``tokenizer.json`` from GGUF metadata (byte-level BPE, smollm pre-tokenizer)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if str(meta.get("tokenizer.ggml.model")) != "gpt2":
        raise ModelLoadError(f"GGUF tokenizer model {meta.get('tokenizer.ggml.model')!r} is not supported (only gpt2 BPE)")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    types = [int(t) for t in meta["tokenizer.ggml.token_type"].tolist()]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    tok = Tokenizer(bpe)
    # llama.cpp's "smollm" pre-tokenizer: every digit alone, then GPT-2's byte-level split.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    control = [tokens[i] for i, t in enumerate(types) if t == 3]  # llama.cpp token type 3 = control
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok.to_str()


def _tokenizer_config(meta: dict[str, Any]) -> dict[str, Any]:
    tokens = meta["tokenizer.ggml.tokens"]
    bos = tokens[_meta_int(meta, "tokenizer.ggml.bos_token_id")]
    eos = tokens[_meta_int(meta, "tokenizer.ggml.eos_token_id")]
    unk = tokens[_meta_int(meta, "tokenizer.ggml.unknown_token_id")]
    pad_id = meta.get("tokenizer.ggml.padding_token_id")
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "pad_token": tokens[int(pad_id.item())] if pad_id is not None else eos,
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": _meta_int(meta, "llama.context_length"),
        "chat_template": str(meta["tokenizer.chat_template"]),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def convert_gguf(gguf: Path, out_dir: Path, variant: Variant = "dense", *, force: bool = False) -> ConversionReport:
    """Write an mlx-lm model directory for ``gguf``; reuse an existing one made from the same file."""
    import mlx.core as mx

    t0 = time.perf_counter()
    digest = _sha256(gguf)
    stamp = out_dir / "mageagent_conversion.json"
    if not force and stamp.exists():
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("source_sha256") == digest and old.get("format") == FORMAT_VERSION and old.get("variant") == variant:
            return ConversionReport(output_dir=str(out_dir), variant=variant, source=str(gguf), source_sha256=digest,
                                    reused=True, seconds=time.perf_counter() - t0, size_bytes=_dir_size(out_dir))
    try:
        weights, meta = mx.load(str(gguf), return_metadata=True)
    except Exception as e:  # mx.load raises plain RuntimeError/ValueError on a bad file
        raise ModelLoadError(f"cannot read GGUF {gguf}: {e}") from e
    if str(meta.get("general.architecture")) != "llama":
        raise ModelLoadError(f"{gguf}: architecture {meta.get('general.architecture')!r} is not supported (llama only)")
    tensors, bits = _convert_tensors(weights, meta, variant)
    # Write into a temporary sibling, then swap, so an interrupted run never leaves half a model.
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mx.save_safetensors(str(tmp / "model.safetensors"), tensors, metadata={"format": "mlx"})
    config = _model_config(meta, bits, has_output="output.weight" in weights)
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "tokenizer.json").write_text(build_tokenizer_json(meta))
    (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(meta), indent=2))
    (tmp / "mageagent_conversion.json").write_text(
        json.dumps({"format": FORMAT_VERSION, "variant": variant, "source": str(gguf), "source_sha256": digest}, indent=2)
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return ConversionReport(output_dir=str(out_dir), variant=variant, source=str(gguf), source_sha256=digest,
                            reused=False, seconds=time.perf_counter() - t0, size_bytes=_dir_size(out_dir))
