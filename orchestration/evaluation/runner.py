"""Run the evaluation: every selected item through every selected system, each output recorded as it comes.

A *system* is a pattern with its settings (weights, constraint, sampling). Records go to
``OUT/records.jsonl`` one line per (suite, item, system, sample) the moment each finishes, so an interrupted
run resumes where it stopped and a finished one can be re-scored (``score.py``) without generating again.

Nothing is lost: a record counts once its newline is on disk (each line is flushed and fsynced); a torn last
line, what a kill mid-write leaves, is dropped with a warning and generated again. ``run.json`` is replaced
atomically (a temp file renamed over it).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from ..checks.sandbox import resolve
from ..core.errors import ConfigError, MageError
from ..core.settings import ROLES, Settings, derive
from ..core.types import PatternRequest
from ..models.backend import Backend
from . import bfcl, humaneval, mbpp
from .data import BFCL_CATEGORIES, PACKAGES, BfclItem, HumanEvalProblem, load_bfcl, load_humaneval
from .mbpp import MbppProblem, load_mbpp
from .memo import MemoBackend

__all__ = ["CODE_SUITES", "System", "SYSTEMS", "DEFAULT_SYSTEMS", "EvalConfig", "Dataset", "select_items", "run_eval",
           "read_records", "selected_records"]

log = logging.getLogger(__name__)

Suite = Literal["humaneval", "mbpp", "bfcl"]
CODE_SUITES = ("humaneval", "mbpp")
_Q4 = {"roles": {r: {"model": "embedded-q4"} for r in ROLES}}


class System(BaseModel):
    name: str
    suite: Suite
    pattern: str
    description: str
    overrides: dict[str, Any] = Field(default_factory=dict, description="settings overrides")
    samples: int = 1
    temperature: float | None = None
    swap: bool | None = None



def _code_systems(prefix: str, suite: Suite, k3: bool) -> list[System]:
    """The code suites' systems, one set per suite (he-*, mbpp-*)."""
    tests = "the prompt's examples, else the validator's" if suite == "humaneval" else "written by the validator"
    out = [
        System(name=f"{prefix}-primary", suite=suite, pattern="primary", description="primary alone, greedy"),
        # The primary's repair rounds are named (1, as recorded): left out they are now none after the competitor's
        # own answer, which these records give exactly (the ``:no-primary-repair`` rows).
        System(name=f"{prefix}-validated", suite=suite, pattern="validated",
               overrides={"verify": "execute", "max_revisions": 1},
               description=f"primary, tests run in the harness ({tests}); where it fails, the competitor's own "
                           "answer, then one repair by the primary; the candidate passing most tests"),
        System(name=f"{prefix}-validated-model", suite=suite, pattern="validated", overrides={"verify": "model"},
               description="primary, validator PASS/FAIL opinion, one revision on FAIL"),
        # The judge is named: the default profile's default is now 'stronger', which these records give exactly
        # (the ``:ties-to-B`` rows: the same candidates and tests, B where the tests tie).
        System(name=f"{prefix}-compete", suite=suite, pattern="compete",
               overrides={"verify": "execute", "judge": "pointwise"},
               description="A (primary) and B (competitor): more tests passed wins, else each scored alone by "
                           "the judge (pointwise)"),
        System(name=f"{prefix}-compete-judge", suite=suite, pattern="compete",
               overrides={"verify": "model", "judge": "pointwise"},
               description="A (primary) and B (competitor), the pointwise judge alone (each answer scored alone)"),
        System(name=f"{prefix}-compete-pairwise", suite=suite, pattern="compete", swap=True,
               overrides={"verify": "model", "judge": "pairwise"},
               description="A and B, the pairwise judge alone (reason, then pick; both orders)"),
        System(name=f"{prefix}-competitor", suite=suite, pattern="competitor",
               description="the competitor model alone (the 1.5B in the default profile)"),
        System(name=f"{prefix}-hybrid", suite=suite, pattern="hybrid", description="primary then extraction"),
        System(name=f"{prefix}-auto", suite=suite, pattern="auto", description="routed by task class"),
        System(name=f"{prefix}-primary-q4", suite=suite, pattern="primary", overrides=_Q4,
               description="primary alone on the 4-bit weights"),
    ]
    if k3:  # MBPP's prompt has no examples to group samples by (and its hidden asserts' inputs are not ours)
        out.append(System(name=f"{prefix}-primary-k3", suite=suite, pattern="primary", samples=3, temperature=0.7,
                          description="matched compute: primary sampled 3 times (T=0.7), grouped by their outputs "
                                      "on the prompt's examples, the largest group's first (MBR-exec)"))
    return out


SYSTEMS: dict[str, System] = {s.name: s for s in [
    *_code_systems("he", "humaneval", k3=True),
    *_code_systems("mbpp", "mbpp", k3=False),
    System(name="bfcl-tools", suite="bfcl", pattern="tools",
           description="tools model, grammar-constrained extraction, dense weights"),
    System(name="bfcl-tools-free", suite="bfcl", pattern="tools", overrides={"extraction_constraint": "none"},
           description="tools model, unconstrained (first JSON value in free text), dense weights"),
    System(name="bfcl-tools-q4", suite="bfcl", pattern="tools", overrides=_Q4,
           description="tools model, grammar-constrained, 4-bit weights"),
    System(name="bfcl-tools-q4-free", suite="bfcl", pattern="tools",
           overrides={**_Q4, "extraction_constraint": "none"},
           description="tools model, unconstrained, 4-bit weights"),
    System(name="bfcl-hybrid", suite="bfcl", pattern="hybrid",
           description="primary answers, then constrained extraction (dense)"),
]}
DEFAULT_SYSTEMS = ["he-primary", "he-validated", "he-validated-model", "he-compete", "he-primary-k3",
                   "bfcl-tools", "bfcl-tools-free", "bfcl-tools-q4", "bfcl-tools-q4-free"]


class EvalConfig(BaseModel):
    """What a run was asked for; stored as run.json beside the records so a re-score uses the same items."""

    systems: list[str] = Field(default_factory=lambda: list(DEFAULT_SYSTEMS))
    limit: int | None = Field(None, ge=1, description="items per suite (per category for BFCL); None = all")
    seed: int = 0
    bfcl_categories: list[str] = Field(default_factory=lambda: list(BFCL_CATEGORIES))
    max_tokens: int = Field(768, ge=8, description="answer budget (a whole function: settings.code_max_tokens); "
                            "also caps unconstrained extraction")
    extraction_max_string: int = 100
    sample_seed: int = 1000
    command: str = ""
    packages: dict[str, str] = Field(default_factory=lambda: dict(PACKAGES))

    def check(self) -> None:
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown:
            raise ConfigError(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
        bad = [c for c in self.bfcl_categories if c not in BFCL_CATEGORIES]
        if bad:
            raise ConfigError(f"unknown BFCL category {', '.join(bad)}; choose from {', '.join(BFCL_CATEGORIES)}")

    def suites(self) -> list[Suite]:
        return [s for s in ("humaneval", "mbpp", "bfcl") if any(SYSTEMS[n].suite == s for n in self.systems)]


class Dataset(BaseModel):
    """The selected items of each suite, in run order."""

    humaneval: list[HumanEvalProblem] = Field(default_factory=list)
    mbpp: list[MbppProblem] = Field(default_factory=list)
    bfcl: list[BfclItem] = Field(default_factory=list)

    def items(self, suite: Suite) -> list[Any]:
        return {"humaneval": self.humaneval, "mbpp": self.mbpp, "bfcl": self.bfcl}[suite]

    def ids(self, suite: Suite) -> list[str]:
        if suite == "humaneval":
            return [p.task_id for p in self.humaneval]
        return [p.id for p in self.mbpp] if suite == "mbpp" else [i.id for i in self.bfcl]


def _pick(items: list[Any], limit: int | None, seed: int) -> list[Any]:
    """``limit`` items (all when None) in a seeded random order: a stopped run's finished items are a random
    sample of the suite, not its first problems."""
    n = len(items) if limit is None else min(limit, len(items))
    return random.Random(seed).sample(items, n)


def select_items(config: EvalConfig, cache_dir: Path, *, download: bool = True) -> Dataset:
    """A seeded random subset (``limit`` per suite, per category for BFCL), or everything."""
    suites = config.suites()
    data = Dataset()
    if "humaneval" in suites:
        data.humaneval = _pick(load_humaneval(cache_dir, download=download), config.limit, config.seed)
    if "mbpp" in suites:
        data.mbpp = _pick(list(load_mbpp()), config.limit, config.seed)
    if "bfcl" in suites:
        for cat in config.bfcl_categories:
            data.bfcl += _pick(load_bfcl(cache_dir, cat, download=download), config.limit, config.seed)
    return data


def _split(path: Path) -> tuple[list[dict[str, Any]], int, bytes]:
    """The complete records, the length they end at, and what follows the last newline (a torn write)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:  # a complete line that is not JSON: not ours to guess at
            raise ConfigError(f"{path} line {n} is not a JSON record ({e}); fix or remove that line") from e
    return records, end, data[end:]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records in ``path``; a torn last line (no newline: an interrupted write) is left out with a warning."""
    if not path.exists():
        return []
    records, _, torn = _split(path)
    if torn:
        log.warning("%s: ignoring a torn last line (%d bytes, an interrupted write)", path, len(torn))
    return records


def _repair(path: Path) -> list[dict[str, Any]]:
    """Before appending: cut a torn last line off ``path`` so the next record starts on a line of its own."""
    if not path.exists():
        return []
    records, end, torn = _split(path)
    if torn:
        log.warning("%s: dropping a torn last line (%d bytes, an interrupted write); that output is generated "
                    "again", path, len(torn))
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return records


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temp file in the same directory, fsynced, renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the directory is synced (POSIX; skipped elsewhere)
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def selected_records(path: Path, config: EvalConfig, data: Dataset) -> list[dict[str, Any]]:
    """The records in ``path`` of the selection's items and the config's systems."""
    wanted = {(s, i) for s in config.suites() for i in data.ids(s)}
    return [r for r in read_records(path) if (r["suite"], r["item"]) in wanted and r["system"] in config.systems]


def finished_only(records: list[dict[str, Any]], config: EvalConfig) -> list[dict[str, Any]]:
    """The records of the items that every system of their suite has finished, every sample: a stopped run
    scored on the same items for every system (paired, not each system on what it happened to reach)."""
    need: dict[str, dict[str, int]] = {}
    for name in config.systems:
        need.setdefault(SYSTEMS[name].suite, {})[name] = SYSTEMS[name].samples
    have: dict[tuple[str, str], set[tuple[str, int]]] = {}
    for r in records:
        have.setdefault((r["suite"], r["item"]), set()).add((r["system"], r["sample"]))
    done = {key for key, got in have.items()
            if all((name, k) in got for name, n in need.get(key[0], {}).items() for k in range(n))}
    return [r for r in records if (r["suite"], r["item"]) in done]


def _key(r: dict[str, Any]) -> tuple[str, str, str, int]:
    return r["suite"], r["item"], r["system"], r["sample"]


def _request(system: System, config: EvalConfig, item: Any) -> PatternRequest:
    if system.suite in CODE_SUITES:
        text = humaneval.task_prompt(item) if system.suite == "humaneval" else mbpp.task_prompt(item)
        return PatternRequest(prompt=text, extraction="never", max_tokens=config.max_tokens,
                              temperature=system.temperature, swap=system.swap)
    prompt, system_text = bfcl.task_prompt(item)
    return PatternRequest(prompt=prompt, system=system_text, tools=bfcl.tool_definitions(item),
                          extraction="always", max_tokens=config.max_tokens, temperature=system.temperature)


def _cut_off(system: System, result: Any) -> bool:
    """The answer stopped at its token budget: the result says so, or (a one-step pattern whose result does not
    carry the mark) its last step did."""
    if result.cut_off:
        return True
    steps = result.trace.steps
    return system.pattern in ("primary", "competitor") and bool(steps) and steps[-1].finish_reason == "length"


def _record(system: System, suite: str, item_id: str, sample: int, result: Any, error: Exception | None,
            seconds: float) -> dict[str, Any]:
    rec: dict[str, Any] = {"suite": suite, "item": item_id, "system": system.name, "sample": sample,
                           "pattern": system.pattern, "seconds": round(seconds, 3)}
    if error is not None:
        cause = error.__cause__
        rec.update(text=None, tool_calls=None, error=str(error), raw=getattr(cause, "raw", None),
                   error_type=type(cause or error).__name__)
        return rec
    t = result.trace
    rec.update(text=result.text, tool_calls=[c.model_dump() for c in result.tool_calls], error=None, raw=None,
               route=t.route, verdicts=[v.model_dump() for v in t.verdicts], revisions=t.revisions,
               rounds=[x.model_dump() for x in t.rounds], cut_off=_cut_off(system, result),
               finish_reason=result.finish_reason, verification=t.verification, first_answer=t.first_answer,
               judgement=t.judgement.model_dump() if t.judgement else None,
               steps=[{"purpose": s.purpose, "role": s.role, "prompt_tokens": s.prompt_tokens,
                       "completion_tokens": s.completion_tokens, "seconds": s.seconds,
                       "finish_reason": s.finish_reason, "batched": s.batched, "reused": s.reused}
                      for s in t.steps],
               prompt_tokens=result.totals.prompt_tokens, completion_tokens=result.totals.completion_tokens)
    return rec


_Job = tuple[str, int, int, str, Any, System, int]  # suite, position, suite size, item id, item, system, sample


async def run_eval(config: EvalConfig, base: Settings, out_dir: Path, data: Dataset,
                   say: Callable[[str], None] = lambda m: sys.stderr.write(m + "\n"),
                   backends: Mapping[str, Backend] | None = None, concurrency: int = 1,
                   reuse: bool = False) -> list[dict[str, Any]]:
    """Generate every missing record into ``out_dir/records.jsonl``; returns all records of the selection.
    ``backends`` replaces the settings' own (tests pass a scripted fake); ``concurrency`` items run at once,
    each with all its systems and samples (their same-model generations share one batch on the MLX backend;
    1 runs one job at a time); ``reuse`` generates a deterministic
    request that several systems make (the same greedy answer) once in this run (``evaluation.memo``)."""
    from ..patterns.engine import Engine

    config.check()
    if any(s in CODE_SUITES for s in config.suites()):
        resolve(base.sandbox)  # scoring will run the candidates: refuse now, not after hours of generation
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _join_run_file(config, out_dir / "run.json")
    records_path = out_dir / "records.jsonl"
    done = {_key(r) for r in _repair(records_path)}
    common = {"temperature": 0.0, "max_tokens": config.max_tokens,
              "extraction_max_string": config.extraction_max_string}
    root = Engine(derive(base, common), backends=backends)
    shared: dict[str, Backend] = ({k: MemoBackend(b) for k, b in root.backends.items()} if reuse
                                  else dict(root.backends))
    engines: dict[str, Engine] = {}

    def engine_for(system: System, sample: int) -> Engine:
        overrides = _sample_overrides(system, sample, config.sample_seed)
        key = json.dumps(overrides, sort_keys=True)
        if key not in engines:
            engines[key] = Engine(derive(base, {**common, **overrides}), backends=shared)
        return engines[key]

    # Up to ``concurrency`` items at once, each with all its systems and samples: the distinct generations in
    # flight (the systems of one item share their greedy answers) are what the backend can batch. 1: one job
    # at a time, in order.
    limiter = anyio.CapacityLimiter(max(1, concurrency))
    try:
        with records_path.open("a") as sink:
            async def one(job: _Job) -> None:
                suite, i, n, item_id, item, system, sample = job
                rec = await _generate_record(job, config, engine_for)
                # One whole line per record, flushed and synced: a stop loses at most the items in flight.
                sink.write(json.dumps(rec) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                status = "error" if rec["error"] is not None else "ok"
                say(f"[{suite} {i}/{n}] {item_id} {system.name}#{sample}: {status} {rec['seconds']:.1f}s")

            async def item_jobs(group: list[_Job]) -> None:
                async with limiter:
                    if concurrency <= 1:  # one by one, in order
                        for job in group:
                            await one(job)
                        return
                    async with anyio.create_task_group() as tg:
                        for job in group:
                            tg.start_soon(one, job)

            async with anyio.create_task_group() as tg:
                for group in _by_item(_jobs(config, data, done)):
                    tg.start_soon(item_jobs, group)
    finally:
        root.close()
    return selected_records(records_path, config, data)


def _join_run_file(config: EvalConfig, run_file: Path) -> EvalConfig:
    """The run's config, written to ``run_file``: joined with the one already there (its systems and categories
    plus these), which must agree on every option that changes a record."""
    if run_file.exists():
        before = EvalConfig.model_validate_json(run_file.read_text())
        mismatched = [k for k in ("limit", "seed", "max_tokens", "extraction_max_string", "sample_seed")
                      if getattr(before, k) != getattr(config, k)]
        if mismatched:
            raise ConfigError(f"{run_file.parent} holds a run with different {', '.join(mismatched)}; use another "
                              "--out directory or the same options")
        config = config.model_copy(update={
            "systems": list(dict.fromkeys(before.systems + config.systems)),
            "bfcl_categories": list(dict.fromkeys(before.bfcl_categories + config.bfcl_categories))})
    _write_atomic(run_file, config.model_dump_json(indent=2))
    return config


def _sample_overrides(system: System, sample: int, sample_seed: int) -> dict[str, Any]:
    """The system's settings overrides for one of its samples."""
    overrides = copy.deepcopy(system.overrides)
    if system.samples > 1:  # each sample its own seed, on every role
        overrides.setdefault("roles", {})
        for r in ROLES:
            role = overrides["roles"].setdefault(r, {})
            role["seed"] = sample_seed + sample
            if system.temperature is not None:  # a role's own temperature (the Qwen roles fix 0) yields
                role["temperature"] = system.temperature
    return overrides


def _jobs(config: EvalConfig, data: Dataset, done: set[tuple[str, str, str, int]]) -> list[_Job]:
    """Every (item, system, sample) not yet recorded, the suites interleaved item by item, so that a stopped
    run has finished items of every suite."""
    systems = [SYSTEMS[n] for n in config.systems]
    jobs: list[_Job] = []
    per_suite = {suite: list(zip(data.ids(suite), data.items(suite))) for suite in config.suites()}
    for i in range(1, max((len(v) for v in per_suite.values()), default=0) + 1):
        for suite, pairs in per_suite.items():
            if i > len(pairs):
                continue
            item_id, item = pairs[i - 1]
            for system in (s for s in systems if s.suite == suite):
                for sample in range(system.samples):
                    if (suite, item_id, system.name, sample) not in done:
                        jobs.append((suite, i, len(pairs), item_id, item, system, sample))
    return jobs


def _by_item(jobs: list[_Job]) -> list[list[_Job]]:
    """The jobs grouped by item, in the order the items first appear."""
    groups: dict[tuple[str, str], list[_Job]] = {}
    for job in jobs:
        groups.setdefault((job[0], job[3]), []).append(job)
    return list(groups.values())


async def _generate_record(job: _Job, config: EvalConfig, engine_for: Callable[[System, int], Any]
                           ) -> dict[str, Any]:
    """One job's record; a failed step is a result to score, not a crash."""
    suite, _, _, item_id, item, system, sample = job
    request = _request(system, config, item)
    t0 = time.perf_counter()
    result, error = None, None
    try:
        result = await engine_for(system, sample).run(system.pattern, request)
    except MageError as e:
        error = e
    return _record(system, suite, item_id, sample, result, error, time.perf_counter() - t0)
