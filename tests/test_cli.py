"""The `mageagent` command line as a user runs it: one JSON document on stdout with --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.patterns import PATTERNS


def mageagent(*args: str, env: dict[str, str | None] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestration.faces.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})


def test_models_json_lists_four_roles() -> None:
    p = mageagent("models", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert set(data["roles"]) == {"primary", "competitor", "validator", "tools"}
    assert all(r["available"] for r in data["roles"].values())
    assert data["memory"]["budget_gb"] > 0


def test_doctor_is_green() -> None:
    p = mageagent("doctor", "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 0 and data["ok"], [c for c in data["checks"] if not c["ok"]]
    names = {c["name"] for c in data["checks"]}
    assert {"python", "mlx", "role primary", "role competitor", "memory"} <= names


def test_setup_is_idempotent_and_says_what_it_did() -> None:
    # the profile's models (the test set-up prepares the 0.5B; the 1.5B is the main job's)
    p = mageagent("setup", "--no-download", "--json", env={"MAGEAGENT_PROFILE": "qwen",
                                                           "MAGEAGENT_ROLES__COMPETITOR__MODEL": "qwen2.5-coder-0.5b"})
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["models"] == ["qwen2.5-coder-0.5b"]
    assert [Path(c["output_dir"]).name for c in data["conversions"]] == ["qwen2.5-coder-0.5b-instruct-dense"]
    assert all(c["reused"] for c in data["conversions"])
    assert "verified earlier" in p.stderr  # a progress line per step
    p = mageagent("setup", "--no-download", "--json", "--model", "smollm2-135m", "--model", "smollm2-135m-q4")
    assert [c["variant"] for c in json.loads(p.stdout)["conversions"]] == ["dense", "q4"]
    assert mageagent("setup", "--model", "nope").returncode == 2


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('profile = "giant"\n')
    p = mageagent("--config", str(cfg), "models", env={"MAGEAGENT_PROFILE": None})  # the file's profile counts
    assert p.returncode == 2 and p.stdout == ""
    assert "bad.toml" in p.stderr and "'profile'" in p.stderr and "'tiny', 'embedded' or 'reference'" in p.stderr


def test_unknown_pattern_names_the_valid_ones() -> None:
    p = mageagent("run", "nope", "hello", "--json")
    assert p.returncode == 2 and p.stdout == ""
    assert "hybrid" in p.stderr


# The CLI's path is the same for every pattern; each pattern runs on the real model in-process in
# tests/test_real_model.py::test_every_pattern_once. Here: one step, no model step, the most steps.
CLI_PATTERNS = ["primary", "tools", "compete"]


def test_the_cli_patterns_are_real_patterns() -> None:
    assert set(CLI_PATTERNS) <= set(PATTERNS)


@pytest.mark.real_model
@pytest.mark.parametrize("name", CLI_PATTERNS)
def test_run_json_prints_one_pattern_result(name: str) -> None:
    p = mageagent("run", name, "Write a Python function that adds two numbers and save it to add.py",
                  "--max-tokens", "8", "--temperature", "0", "--json", "-q",
                  env={"MAGEAGENT_EXTRACTION_MAX_STRING": "32", "MAGEAGENT_EXTRACTION_MAX_CALLS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads(p.stdout)  # exactly one document: anything else on stdout breaks this
    assert data["pattern"] == name
    assert {"text", "tool_calls", "trace", "totals", "models"} <= set(data)
    assert all(s["model"] == "smollm2-135m" for s in data["trace"]["steps"])
    # every pattern runs a model, but for the tools pattern facts decide: it says so, with no model step
    assert data["trace"]["steps"] or (name == "tools" and data["trace"]["tool_decision"]["decided_by"] != "model")


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda d: d, "cannot be read (Is a directory)"),
    (lambda d: (d / "latin1.txt").write_bytes(b"caf\xe9\n") and d / "latin1.txt", "not UTF-8 text (byte 3 is 0xe9)"),
    (lambda d: d / "missing.txt", "cannot be read (No such file or directory)"),
])
def test_run_context_that_is_not_text_is_one_line(tmp_path: Path, make, fragment: str) -> None:  # noqa: ANN001
    path = make(tmp_path)
    p = mageagent("run", "primary", "hi", "--context", str(path))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == f"mageagent: error: --context {path}: {fragment}" + (
        "; give a text file\n" if "UTF-8" in fragment else "\n"), p.stderr


def test_run_refuses_what_the_other_faces_refuse(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * 400_001)
    p = mageagent("run", "primary", "hi", "--context", str(big))
    assert p.returncode == 2 and "400003 characters" in p.stderr and "at most 400000" in p.stderr
    p = mageagent("run", "primary", "hi", "--temperature", "9")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "temperature:" in p.stderr, p.stderr


def test_setup_refuses_early_when_the_disk_cannot_hold_the_profile(tmp_path: Path) -> None:
    from orchestration.models.qwen25_coder import MODELS, disk_needed

    empty = disk_needed("qwen2.5-coder-1.5b", tmp_path / "c", tmp_path / "c" / "models")
    size = MODELS["qwen2.5-coder-1.5b"].source.size
    assert empty == {"wheels": size, "gguf": size, "converted": 7_113_766_799}
    code = ("import shutil, sys, types; from orchestration.faces import cli; "
            "shutil.disk_usage = lambda p: types.SimpleNamespace(free=3_000_000_000); "
            "sys.exit(cli.main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "setup", "--model", "qwen2.5-coder-1.5b"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "MAGEAGENT_CACHE_DIR": str(tmp_path / "c")})
    assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("mageagent: error: setup needs 9.35 GB on ")
    assert "qwen2.5-coder-1.5b: wheels 1.12, gguf 1.12, converted 7.11 GB), 3.00 GB is free" in p.stderr
    assert not (tmp_path / "c" / "wheels").exists()  # nothing was fetched
