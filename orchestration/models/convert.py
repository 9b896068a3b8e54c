"""GGUF -> mlx-lm model directories: shared reading, tokenizer rebuilding and atomic writing; the llama path.

Shared by the model families: ``read_gguf_dense`` (ggml-org's ``gguf`` reader, for the K-quants),
``build_tokenizer_json`` and ``write_model_dir``/``stamped``. The llama path (the tiny SmolLM2):
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
import logging
import math
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from ..core.errors import ModelLoadError
from .sources import check_room, remove_stale, sha256_file, storage_error

log = logging.getLogger(__name__)

__all__ = ["Variant", "ConversionReport", "convert_gguf", "build_tokenizer_json", "unpermute_rows", "read_gguf_dense",
           "gguf_dense_plans", "gguf_metadata", "map_name", "TensorPlan", "write_safetensors", "write_model_dir",
           "stamped", "verify_model_dir", "sample_sha256", "QWEN2_SPLIT"]

Variant = Literal["dense", "q4"]
FORMAT_VERSION = 2  # 2: the stamp lists the files (since issue 26 each with its size, sha256 and sample hash)
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


def map_name(gguf_name: str) -> str:
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


def _stem_outputs(weights: dict[str, Any], meta: dict[str, Any], variant: Variant, stem: str) -> dict[str, Any]:
    """One module's mlx-lm tensors, as lazy MLX arrays (nothing is computed until one is read)."""
    import mlx.core as mx

    w = weights[f"{stem}.weight"]
    quantized = f"{stem}.scales" in weights
    parts = [w] + ([weights[f"{stem}.scales"], weights[f"{stem}.biases"]] if quantized else [])
    if stem.endswith(".attn_q") or stem.endswith(".attn_k"):
        key = "llama.attention.head_count" if stem.endswith(".attn_q") else "llama.attention.head_count_kv"
        parts = [unpermute_rows(p, _meta_int(meta, key)) for p in parts]
    name = map_name(f"{stem}.weight")
    if not quantized:
        return {name: parts[0].astype(mx.float32)}
    if variant == "dense":
        dense = mx.dequantize(parts[0], parts[1].astype(mx.float32), parts[2].astype(mx.float32),
                              group_size=GROUP_SIZE, bits=quant_bits(parts[0], parts[1]))
        return {name: dense.astype(mx.float32)}
    base = name.rpartition(".")[0]
    return {name: parts[0], f"{base}.scales": parts[1].astype(mx.float32),
            f"{base}.biases": parts[2].astype(mx.float32)}


def _convert_tensors(
    weights: dict[str, Any], meta: dict[str, Any], variant: Variant
) -> tuple[list[TensorPlan], dict[str, int]]:
    """Plans for the mlx-lm tensors and, for quantized modules, their bits per value. Each plan computes its
    tensor afresh when written (a lazy MLX array kept in a plan would keep its values once computed)."""
    import numpy as np

    plans: list[TensorPlan] = []
    bits: dict[str, int] = {}
    for stem in sorted({k.rpartition(".")[0] for k in weights}):
        if variant == "q4" and f"{stem}.scales" in weights:
            bits[map_name(f"{stem}.weight").rpartition(".")[0]] = quant_bits(weights[f"{stem}.weight"],
                                                                              weights[f"{stem}.scales"])
        for name, lazy in _stem_outputs(weights, meta, variant, stem).items():
            dtype: Literal["F32", "U32"] = "U32" if "uint32" in str(lazy.dtype) else "F32"
            plans.append(TensorPlan(name, tuple(lazy.shape), dtype, lambda stem=stem, name=name: np.asarray(
                _stem_outputs(weights, meta, variant, stem)[name])))
    return plans, bits


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


# Qwen2's split regex (llama.cpp's "qwen2" pre-tokenizer; the same as the Hugging Face tokenizer.json).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
PreTokenizer = Literal["smollm", "qwen2"]


def _as_list(v: Any) -> list[Any]:
    return v.tolist() if hasattr(v, "tolist") else list(v)


def build_tokenizer_json(meta: dict[str, Any], pre: PreTokenizer = "smollm") -> str:
    """Rebuild a Hugging Face ``tokenizer.json`` from GGUF metadata (byte-level BPE, llama.cpp's pre-tokenizer)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    if str(meta.get("tokenizer.ggml.model")) != "gpt2":
        raise ModelLoadError(f"GGUF tokenizer model {meta.get('tokenizer.ggml.model')!r} is not supported (only gpt2 BPE)")
    tokens: list[str] = [str(t) for t in meta["tokenizer.ggml.tokens"]]
    merges = [tuple(str(m).split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    types = [int(t) for t in _as_list(meta["tokenizer.ggml.token_type"])]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    tok = Tokenizer(bpe)
    if pre == "smollm":
        # llama.cpp's "smollm" pre-tokenizer: every digit alone, then GPT-2's byte-level split.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
             pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    # llama.cpp token types: 3 = control (<|im_start|>), 4 = user-defined (<tool_call>); both are one id each.
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == 4])
    return tok.to_str()


def _reader(gguf: Path) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(str(gguf))
    except Exception as e:  # the reader raises ValueError/struct.error/OSError on a bad file
        raise ModelLoadError(f"cannot read GGUF {gguf}: {type(e).__name__}: {e}") from e


def _metadata(reader: Any, gguf: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = field.contents()
        except Exception as e:  # an unreadable metadata value is a broken file
            raise ModelLoadError(f"{gguf}: metadata {key!r} cannot be read ({e})") from e
    return meta


def gguf_metadata(gguf: Path) -> dict[str, Any]:
    """A GGUF's metadata as Python values (no tensor is read)."""
    return _metadata(_reader(gguf), gguf)


class TensorPlan(NamedTuple):
    """One tensor of the output: its name, shape, safetensors dtype, and how to make its values (a numpy array,
    or an iterator of row blocks in order), called once, when the tensor is written: only one tensor, or one block
    of one, is ever held dequantized."""

    name: str
    shape: tuple[int, ...]
    dtype: Literal["F32", "U32"]
    make: Callable[[], Any]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * 4


BLOCK_BYTES = 32 * 1024 * 1024  # float32 bytes dequantized at once: rows of a large tensor go in blocks


def gguf_dense_plans(gguf: Path, rename: Callable[[str], str] = lambda n: n) -> tuple[list[TensorPlan], dict[str, Any]]:
    """A plan per tensor of ``gguf`` (dequantized to float32 when written, PyTorch layout), and its metadata.

    ggml-org's ``gguf`` reader maps the file; each plan dequantizes its tensor from it (the K-quants too) in
    blocks of whole rows (a quantized row is whole blocks of its type), so the peak is a block, not the tensor.
    """
    import numpy as np
    from gguf.quants import dequantize

    reader = _reader(gguf)
    meta = _metadata(reader, gguf)

    def plan(t: Any) -> TensorPlan:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        rows = shape[0] if len(shape) > 1 and t.data.shape[0] == shape[0] else None
        step = max(1, BLOCK_BYTES // (4 * math.prod(shape[1:]))) if rows else 0

        def values(data: Any, block_shape: tuple[int, ...]) -> Any:
            try:
                return np.ascontiguousarray(dequantize(data, t.tensor_type).reshape(block_shape), dtype=np.float32)
            except NotImplementedError as e:
                raise ModelLoadError(f"{gguf}: tensor {t.name} has type {t.tensor_type.name}, which gguf cannot "
                                     f"dequantize") from e

        def make() -> Any:
            if not rows:
                return values(t.data, shape)
            return (values(t.data[i:i + step], (min(step, rows - i), *shape[1:])) for i in range(0, rows, step))

        return TensorPlan(rename(t.name), shape, "F32", make)

    return [plan(t) for t in reader.tensors], meta


def read_gguf_dense(gguf: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every tensor of ``gguf`` dequantized to float32 numpy (PyTorch layout), and its metadata as Python values.

    Uses ggml-org's ``gguf`` package, which reads the K-quants (Q4_K, Q5_0, Q6_K, ...) that ``mx.load`` refuses.
    """
    import numpy as np

    plans, meta = gguf_dense_plans(gguf)
    return {p.name: np.concatenate(list(m)) if not isinstance(m := p.make(), np.ndarray) else m for p in plans}, meta


STAMP = "mageagent_conversion.json"
SAMPLE_BLOCKS, SAMPLE_BYTES = 64, 1 << 16  # the fast check reads 4 MB per file at most, spread evenly


def sample_sha256(path: Path) -> str:
    """The sha256 of ``SAMPLE_BLOCKS`` blocks spread evenly over ``path``, first and last included (the whole
    file when it is small): a same-size overwrite of 1/64 of a file or more cannot miss every block."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        if size <= SAMPLE_BLOCKS * SAMPLE_BYTES:
            h.update(f.read())
        else:
            for i in range(SAMPLE_BLOCKS):
                f.seek(i * (size - SAMPLE_BYTES) // (SAMPLE_BLOCKS - 1))
                h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """What the stamp records of one output file: its size, sha256 and sample hash."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path), "sample_sha256": sample_sha256(path)}


def verify_model_dir(out_dir: Path, *, full: bool = False) -> str | None:
    """Why ``out_dir``'s files do not match its conversion stamp (None when they do). Fast (every start-up):
    each file's size and a sample of its blocks; ``full`` (``setup``, ``doctor --full``): each whole sha256."""
    try:
        files = json.loads((out_dir / STAMP).read_text()).get("files") or {}
    except (OSError, ValueError):
        return f"{out_dir.name}: no readable conversion stamp ({STAMP})"
    if not files:
        return f"{out_dir.name}: its stamp lists no files"
    for name, entry in files.items():
        path = out_dir / name
        if not isinstance(entry, dict) or "sha256" not in entry:
            return f"{out_dir.name}: its stamp holds no sha256 (written before weights were hashed)"
        if not path.is_file():
            return f"{out_dir.name}/{name} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{out_dir.name}/{name}: {path.stat().st_size} bytes, the stamp says {entry['size']}"
        if sample_sha256(path) != entry.get("sample_sha256"):
            return f"{out_dir.name}/{name} was changed after conversion (sampled blocks differ from the stamp)"
        if full and (got := sha256_file(path)) != entry["sha256"]:
            return f"{out_dir.name}/{name} was changed after conversion: sha256 {got}, the stamp says {entry['sha256']}"
    return None


def stamped(out_dir: Path, stamp: dict[str, Any], *, full: bool = False) -> bool:
    """True when ``out_dir`` holds a finished conversion with this stamp and its files verify against it
    (``verify_model_dir``: fast, or ``full``)."""
    try:
        old = json.loads((out_dir / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if any(old.get(k) != v for k, v in stamp.items()):
        return False
    problem = verify_model_dir(out_dir, full=full)
    if problem is not None:
        log.warning("%s: converting again", problem)
    return problem is None


def _safetensors_header(plans: list[TensorPlan], metadata: Mapping[str, str]) -> bytes:
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for p in plans:
        header[p.name] = {"dtype": p.dtype, "shape": list(p.shape), "data_offsets": [offset, offset + p.nbytes]}
        offset += p.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(path: Path, plans: list[TensorPlan], metadata: Mapping[str, str]) -> int:
    """Write a safetensors file one tensor at a time (the header first: every size is known from the plans);
    returns its size. No library writes safetensors from a stream, hence these few lines of the format."""
    import numpy as np

    dtypes = {"F32": np.float32, "U32": np.uint32}
    with path.open("wb") as f:
        f.write(_safetensors_header(plans, metadata))
        for p in plans:
            made = p.make()
            written = 0
            for block in [made] if isinstance(made, np.ndarray) else made:
                values = np.ascontiguousarray(block, dtype=dtypes[p.dtype])
                written += f.write(memoryview(values).cast("B"))
                del values, block  # before the next block is made
            del made
            if written != p.nbytes:
                raise ModelLoadError(f"tensor {p.name}: {written} bytes made, {p.nbytes} planned {p.shape}")
        return f.tell()


def _as_plans(tensors: Mapping[str, Any] | Iterable[TensorPlan]) -> list[TensorPlan]:
    """Plans as given, or plans over arrays already in memory (MLX or numpy: float32, or uint32 packed weights)."""
    if not isinstance(tensors, Mapping):
        return list(tensors)
    import numpy as np

    plans = []
    for name, array in tensors.items():
        dtype = "U32" if "uint32" in str(array.dtype) else "F32"
        plans.append(TensorPlan(name, tuple(array.shape), dtype,
                                lambda a=array, d=dtype: np.asarray(a, dtype=np.uint32 if d == "U32" else np.float32)))
    return plans


def write_model_dir(out_dir: Path, tensors: Mapping[str, Any] | Iterable[TensorPlan], config: dict[str, Any],
                    tokenizer_json: str, tokenizer_config: dict[str, Any], stamp: dict[str, Any]) -> None:
    """Write an mlx-lm directory into a temporary sibling, then swap it in: never half a model in place.

    The weights are written one tensor at a time. On any failure (a full disk included) the temporary folder is
    removed; one left by a killed run is removed by the next (``remove_stale``).
    """
    plans = _as_plans(tensors)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)
    check_room(out_dir.parent, sum(p.nbytes for p in plans) + len(tokenizer_json.encode()) + (1 << 20),
                out_dir.name)
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_safetensors(tmp / "model.safetensors", plans, {"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "tokenizer.json").write_text(tokenizer_json)
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
        files = {p.name: file_entry(p) for p in tmp.iterdir()}
        (tmp / STAMP).write_text(json.dumps({**stamp, "files": files}, indent=2))
        for p in tmp.iterdir():
            with p.open("rb") as f:
                os.fsync(f.fileno())
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise storage_error(e, f"writing {out_dir.name}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def convert_gguf(gguf: Path, out_dir: Path, variant: Variant = "dense", *, force: bool = False) -> ConversionReport:
    """Write an mlx-lm model directory for ``gguf``; reuse an existing one made from the same file."""
    import mlx.core as mx

    t0 = time.perf_counter()
    remove_stale(out_dir)
    digest = sha256_file(gguf)
    stamp = {"format": FORMAT_VERSION, "variant": variant, "source_sha256": digest}
    if not force and stamped(out_dir, stamp, full=True):
        return ConversionReport(output_dir=str(out_dir), variant=variant, source=str(gguf), source_sha256=digest,
                                reused=True, seconds=time.perf_counter() - t0, size_bytes=_dir_size(out_dir))
    try:
        weights, meta = mx.load(str(gguf), return_metadata=True)
    except Exception as e:  # mx.load raises plain RuntimeError/ValueError on a bad file
        raise ModelLoadError(f"cannot read GGUF {gguf}: {e}") from e
    if str(meta.get("general.architecture")) != "llama":
        raise ModelLoadError(f"{gguf}: architecture {meta.get('general.architecture')!r} is not supported (llama only)")
    plans, bits = _convert_tensors(weights, meta, variant)
    config = _model_config(meta, bits, has_output="output.weight" in weights)
    write_model_dir(out_dir, plans, config, build_tokenizer_json(meta), _tokenizer_config(meta),
                    {**stamp, "source": str(gguf)})
    return ConversionReport(output_dir=str(out_dir), variant=variant, source=str(gguf), source_sha256=digest,
                            reused=False, seconds=time.perf_counter() - t0, size_bytes=_dir_size(out_dir))
