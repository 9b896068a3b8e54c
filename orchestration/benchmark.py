"""``mageagent bench``: speed and memory of the configured profile, as medians and ratios measured in one run.

Sections (all by default):
- patterns: each pattern's wall time on a fixed prompt with fixed max_tokens, median/min/max over reps, ratio to
  primary, and the median seconds of each step (the plot's bars);
- overhead: each pattern's wall time against the sum of plain mlx-lm ``generate_step`` runs for the same prompt
  and completion token counts of its steps (what the engine adds: templates, grammar, detokenizing, trace);
- tools: constrained versus unconstrained extraction (tokens/s, valid-call rate, expected tool) and the grammar
  mask's cost per token over a fixed table;
- mcp: the stdio server's start to ``initialize`` answer, ``tools/list``, first and warm ``tools/call`` against
  the same call on the engine directly;
- http: a warm call through ``mageagent serve`` (the OpenAI-compatible API) against the engine directly;
- remote: primary on ``mlx_lm.server`` (an OpenAI-compatible backend) against in-process, same model;
- memory: peak resident memory of a fresh process running compete (short answers) on each memory profile
  against the sum of the sizes of the models it loaded.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .settings import ROLES, Settings, derive

__all__ = ["SECTIONS", "MEMORY_PROFILES", "run_bench", "markdown", "plot", "memory_probe"]

SECTIONS = ("patterns", "overhead", "tools", "mcp", "http", "remote", "memory")
PROMPT = "Write a Python function that checks whether a number is prime, and save it to the file prime.py"
PATTERNS = ["primary", "tools", "hybrid", "validated", "compete", "auto"]
SEED_RATIOS = {"primary": 1.0, "tools": 0.13, "hybrid": 1.5, "validated": 2.0, "compete": 3.0}
TOOL_TABLE = [
    ("Show me the contents of src/main.py", "Read"),
    ("Read the file README.md", "Read"),
    ("Run the test suite with pytest", "Bash"),
    ("Delete the build directory", "Bash"),
    ("Find all Python files in the project", "Glob"),
    ("Search the code for the word TODO", "Grep"),
    ("Create a file hello.txt containing the word hi", "Write"),
    ("Write 'print(1)' to the file a.py", "Write"),
    ("In config.py replace DEBUG = True with DEBUG = False", "Edit"),
    ("Install the dependencies with pip", "Bash"),
]
# Memory profiles: every role's model (a single name = all roles share one loaded copy).
MEMORY_PROFILES: dict[str, dict[str, str]] = {
    "embedded (dense, shared)": {r: "embedded" for r in ROLES},
    "embedded-q4 (4-bit, shared)": {r: "embedded-q4" for r in ROLES},
    "mixed (dense primary, 4-bit others)": {"primary": "embedded", "competitor": "embedded-q4",
                                            "validator": "embedded-q4", "tools": "embedded-q4"},
}


# The short call of the mcp, http and remote sections.
_SMALL = {"prompt": "Say hello in one short sentence.", "max_tokens": 16}


def _spread(values: list[float], suffix: str = "_s") -> dict[str, Any] | None:
    """Median, min, max and count (keys end in ``suffix``; seconds by default); None for no values."""
    if not values:
        return None
    return {f"median{suffix}": round(statistics.median(values), 3), f"min{suffix}": round(min(values), 3),
            f"max{suffix}": round(max(values), 3), "n": len(values)}


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")


# -- patterns and overhead -------------------------------------------------------------------------------
async def _patterns(engine: Any, reps: int, max_tokens: int, overhead: bool) -> dict[str, Any]:
    from .types import PatternRequest

    request = PatternRequest(prompt=PROMPT, extraction="always", max_tokens=max_tokens, temperature=0.0)
    await engine.run("primary", request)  # load and warm up outside the measurement
    times: dict[str, list[float]] = {p: [] for p in PATTERNS}
    steps: dict[str, list[list[dict[str, Any]]]] = {p: [] for p in PATTERNS}
    route = None
    for rep in range(reps):
        for p in PATTERNS:
            t0 = time.perf_counter()
            r = await engine.run(p, request)
            times[p].append(time.perf_counter() - t0)
            steps[p].append([{"purpose": s.purpose, "role": s.role, "model": s.model, "prompt_tokens": s.prompt_tokens,
                              "completion_tokens": s.completion_tokens, "seconds": s.seconds} for s in r.trace.steps])
            route = r.trace.route or route
        _say(f"  patterns: repetition {rep + 1}/{reps} done")
    base = statistics.median(times["primary"])
    out: dict[str, Any] = {"auto_route": route, "patterns": {}}
    for p in PATTERNS:
        last = steps[p][-1]
        step_medians = [{"purpose": s["purpose"], "role": s["role"], "prompt_tokens": s["prompt_tokens"],
                         "completion_tokens": s["completion_tokens"],
                         "median_s": round(statistics.median(run[i]["seconds"] for run in steps[p]
                                                             if len(run) == len(last)), 3)}
                        for i, s in enumerate(last)]
        out["patterns"][p] = {**_spread(times[p]), "ratio_to_primary": round(statistics.median(times[p]) / base, 3),
                              "seed_ratio": SEED_RATIOS.get(p), "steps": step_medians}
    if overhead:
        out["overhead"] = await _overhead(engine, times, steps)
    return out


async def _overhead(engine: Any, times: dict[str, list[float]],
                    steps: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    """Wall time of each pattern run against plain mlx-lm for the same token counts, per run, then medians."""
    res = {}
    for p in PATTERNS:
        ratios, raws = [], []
        for wall, run in zip(times[p], steps[p]):
            raw = 0.0
            for s in run:
                backend = engine.backends[engine.settings.roles[s["role"]].backend_key]
                if not hasattr(backend, "raw_seconds"):
                    return {"skipped": "a role is on a remote backend; raw mlx-lm timing needs in-process models"}
                raw += await backend.raw_seconds(s["model"], s["prompt_tokens"], s["completion_tokens"])
            raws.append(raw)
            ratios.append(wall / raw)
        res[p] = {"wall_median_s": round(statistics.median(times[p]), 3), "raw_mlx_lm_median_s":
                  round(statistics.median(raws), 3), "ratio_median": round(statistics.median(ratios), 3),
                  "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)}
    _say("  overhead: done")
    return res


# -- tools -----------------------------------------------------------------------------------------------
async def _tools(engine: Any, items: int) -> dict[str, Any]:
    from . import prompts
    from .errors import ModelOutputError
    from .tools.catalogue import SEED_TOOLS
    from .tools.extract import extraction_schema, lenient_json, parse_calls
    from .tools.schema import token_bound
    from .types import Constraint, GenerationRequest, PatternRequest

    cfg = engine.settings.roles["tools"]
    backend = engine.backends[cfg.backend_key]
    schema = extraction_schema(SEED_TOOLS, 2, 64)
    budget = token_bound(schema) + 1
    valid = {"constrained": 0, "unconstrained": 0}
    tps: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
    masks: list[float] = []
    rows = []
    table = TOOL_TABLE[:items]
    for text, expected in table:
        messages = prompts.extraction(PatternRequest(prompt=text), None, SEED_TOOLS, engine.settings.prompts)
        row: dict[str, Any] = {"request": text, "expected": expected}
        for kind in ("constrained", "unconstrained"):
            req = GenerationRequest(model=cfg.model, messages=messages, temperature=0.0,
                                    max_tokens=budget if kind == "constrained" else min(budget, 160),
                                    constraint=Constraint(json_schema=schema) if kind == "constrained" else None)
            c = await backend.stream(req)
            if c.completion_tokens > 3:
                tps[kind].append(c.generation_tps)
            if kind == "constrained" and getattr(backend, "last_mask_seconds_per_token", None) is not None:
                masks.append(backend.last_mask_seconds_per_token)
            try:
                calls = parse_calls(c.text if kind == "constrained" else lenient_json(c.text), SEED_TOOLS)
                valid[kind] += 1
            except ModelOutputError:
                calls = None
            row[kind] = [x.tool for x in calls] if calls is not None else None
        rows.append(row)
    n = len(table)
    hits = sum(1 for r in rows if r["constrained"] and r["constrained"][0] == r["expected"])
    _say("  tools: done")
    return {"items": n, "valid_rate_constrained": round(valid["constrained"] / n, 3),
            "valid_rate_unconstrained": round(valid["unconstrained"] / n, 3),
            "expected_tool_accuracy": round(hits / n, 3),
            "tps_constrained": _spread(tps["constrained"], ""), "tps_unconstrained": _spread(tps["unconstrained"], ""),
            "mask_ms_per_token": _spread([1000 * m for m in masks], ""), "table": rows}


# -- MCP -------------------------------------------------------------------------------------------------
async def _mcp(engine: Any, reps: int, config: str | None) -> dict[str, Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from .types import PatternRequest

    call = PatternRequest(**_SMALL, temperature=0.0)
    direct = []
    await engine.run("primary", call)
    for _ in range(reps):
        t0 = time.perf_counter()
        await engine.run("primary", call)
        direct.append(time.perf_counter() - t0)
    env = {**os.environ, **({"MAGEAGENT_CONFIG": config} if config else {})}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_mageagent"], env=env)
    handshakes, lists, firsts, warm = [], [], [], []
    args = {"prompt": call.prompt, "max_tokens": call.max_tokens, "temperature": 0}
    for rep in range(reps):
        t0 = time.perf_counter()
        async with Client(params, mode="legacy") as client:
            handshakes.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            await client.list_tools()
            lists.append(time.perf_counter() - t1)
            t2 = time.perf_counter()
            await client.call_tool("mage_primary", args)
            firsts.append(time.perf_counter() - t2)
            if rep == 0:
                for _ in range(reps):
                    t3 = time.perf_counter()
                    await client.call_tool("mage_primary", args)
                    warm.append(time.perf_counter() - t3)
    _say("  mcp: done")
    d = statistics.median(direct)
    return {"start_to_initialize": _spread(handshakes), "tools_list": _spread(lists),
            "first_call_with_load": _spread(firsts), "warm_call": _spread(warm), "engine_direct": _spread(direct),
            "warm_overhead_ratio": round(statistics.median(warm) / d, 3),
            "warm_overhead_ms": round(1000 * (statistics.median(warm) - d), 1)}


# -- HTTP API and a remote backend ----------------------------------------------------------------------
async def _http(reps: int, config: str | None) -> dict[str, Any]:
    import httpx2

    from .testing import free_port, wait_http

    port = free_port()
    env = {**os.environ, **({"MAGEAGENT_CONFIG": config} if config else {})}
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        body = {"model": "mageagent:primary", "messages": [{"role": "user", "content": _SMALL["prompt"]}],
                "max_tokens": _SMALL["max_tokens"], "temperature": 0}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        times = []
        async with httpx2.AsyncClient(timeout=300) as client:
            (await client.post(url, json=body)).raise_for_status()  # load
            for _ in range(reps):
                t0 = time.perf_counter()
                (await client.post(url, json=body)).raise_for_status()
                times.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(10)
    _say("  http: done")
    return {"warm_call": _spread(times)}


async def _remote(settings: Settings, reps: int) -> dict[str, Any]:
    """The primary role in-process versus on mlx_lm.server (same model directory, same request)."""
    from .models.smollm2 import VARIANTS, embedded_dir
    from .engine import Engine
    from .testing import free_port, mlx_lm_server_command, wait_http
    from .types import PatternRequest

    model = settings.roles["primary"].model
    if model not in VARIANTS:
        return {"skipped": f"primary is {model}; this comparison serves the embedded model on mlx_lm.server"}
    model_dir = embedded_dir(settings.models_dir, VARIANTS[model])
    port = free_port()
    proc = subprocess.Popen(mlx_lm_server_command(str(model_dir), port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    call = PatternRequest(**_SMALL, temperature=0.0)
    res: dict[str, Any] = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        remote_roles = {"primary": {"model": str(model_dir), "backend": "openai", "structured_output": "none",
                                    "base_url": f"http://127.0.0.1:{port}/v1"}}
        for name, roles in (("in_process", {}), ("mlx_lm_server", remote_roles)):
            eng = Engine(derive(settings, {"roles": roles}))
            try:
                await eng.run("primary", call)  # load
                ts = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    await eng.run("primary", call)
                    ts.append(time.perf_counter() - t0)
            finally:
                eng.close()
            res[name] = _spread(ts)
    finally:
        proc.terminate()
        proc.wait(10)
    res["ratio"] = round(res["mlx_lm_server"]["median_s"] / res["in_process"]["median_s"], 3)
    _say("  remote: done")
    return res


# -- memory ----------------------------------------------------------------------------------------------
def memory_probe(roles: dict[str, str], max_tokens: int) -> dict[str, Any]:
    """Run compete once (A, B, judge: every distinct model of these roles loads) in a fresh process, with short
    answers (the weights dominate); its peak RSS and the sizes of the models it loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGEAGENT_ROLES__")}
    for role, model in roles.items():
        env[f"MAGEAGENT_ROLES__{role.upper()}__MODEL"] = model
    code = ("import json, sys, anyio\n"
            "from orchestration.models.blas import preload_openblas\npreload_openblas()\n"
            "from orchestration.engine import Engine\nfrom orchestration.settings import load_settings\n"
            "from orchestration.types import PatternRequest\n"
            "e = Engine(load_settings())\n"
            f"anyio.run(e.run, 'compete', PatternRequest(prompt={PROMPT!r}, max_tokens={min(16, max_tokens)}, "
            "extraction='never', temperature=0.0))\n"
            "loaded = dict((x.model, x.size_gb) for b in e.backends.values() for x in b.state() if x.loaded)\n"
            "try:\n"
            "    hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "except OSError:\n"
            "    import resource\n"
            "    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
            "sys.stderr.write('MEMORY ' + json.dumps({'loaded': loaded, 'hwm_kib': hwm}) + '\\n')\n"
            "e.close()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    err = proc.communicate()[1] or ""
    status = proc.returncode
    line = next((ln for ln in err.splitlines() if ln.startswith("MEMORY ")), None)
    if status != 0 or line is None:
        raise RuntimeError(f"memory probe failed: {err[-600:]}")
    doc = json.loads(line[7:])
    loaded = doc["loaded"]
    # The child's own high-water mark (VmHWM), read by the child: a parent's ru_maxrss for a child counts the
    # parent's resident memory at fork time (Linux keeps it across exec), which hid every difference here.
    peak_gb = doc["hwm_kib"] * 1024 / 1e9
    models_gb = sum(v or 0.0 for v in loaded.values())
    return {"roles": roles, "loaded_models": loaded, "models_gb": round(models_gb, 3), "peak_rss_gb": round(peak_gb, 3),
            "ratio": round(peak_gb / models_gb, 2) if models_gb else None}


def _memory(max_tokens: int, reps: int) -> dict[str, Any]:
    out = {}
    for name, roles in MEMORY_PROFILES.items():
        runs = [memory_probe(roles, max_tokens) for _ in range(reps)]
        peaks = [r["peak_rss_gb"] for r in runs]
        out[name] = {**runs[-1], "peak_rss_gb": round(statistics.median(peaks), 3),
                     "peak_rss_gb_min": min(peaks), "peak_rss_gb_max": max(peaks), "n": len(runs),
                     "ratio": round(statistics.median(peaks) / runs[-1]["models_gb"], 2)
                     if runs[-1]["models_gb"] else None}
        _say(f"  memory: {name}: peak {out[name]['peak_rss_gb']} GB")
    return out


# -- driver ----------------------------------------------------------------------------------------------
async def run_bench(settings: Settings, *, reps: int = 3, max_tokens: int = 48, sections: list[str] | None = None,
                    tool_items: int = len(TOOL_TABLE)) -> dict[str, Any]:
    from .models.blas import blas_status
    from .engine import Engine

    if reps < 1:
        raise ValueError("reps must be at least 1")
    chosen = list(sections or SECTIONS)
    bad = [s for s in chosen if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    config = str(settings.config_file) if settings.config_file else None  # for the server subprocesses
    run_settings = settings.model_copy(update={"extraction_max_string": 64, "extraction_max_calls": 2})
    engine = Engine(run_settings)
    out: dict[str, Any] = {"profile": settings.profile, "roles": {r: c.model for r, c in settings.roles.items()},
                           "blas": blas_status(), "reps": reps, "max_tokens": max_tokens, "prompt": PROMPT,
                           "sections": chosen, "cpu_count": os.cpu_count()}
    try:
        if "patterns" in chosen or "overhead" in chosen:
            out.update(await _patterns(engine, reps, max_tokens, "overhead" in chosen))
        if "tools" in chosen:
            out["tools"] = await _tools(engine, tool_items)
        if "mcp" in chosen:
            out["mcp"] = await _mcp(engine, reps, config)
        out["models"] = [s.model_dump(mode="json") for b in engine.backends.values() for s in b.state()]
    finally:
        engine.close()
    if "http" in chosen:
        out["http"] = await _http(reps, config)
        if "mcp" in out:
            out["http"]["warm_overhead_ratio"] = round(out["http"]["warm_call"]["median_s"] /
                                                       out["mcp"]["engine_direct"]["median_s"], 3)
    if "remote" in chosen:
        out["remote"] = await _remote(settings, reps)
    if "memory" in chosen:
        out["memory"] = _memory(max_tokens, reps)
    return out


def markdown(r: dict[str, Any], png: str | None = None) -> str:
    lines = ["# mageagent bench", "", f"command: `{r.get('command', 'mageagent bench')}`", "",
             f"profile {r['profile']} ({', '.join(f'{k}={v}' for k, v in r['roles'].items())}); BLAS "
             f"{r['blas'].get('library') or 'bundled'}; {r['cpu_count']} CPUs; max_tokens {r['max_tokens']}; "
             f"{r['reps']} repetitions (median, min-max)", ""]
    if "patterns" in r:
        lines += ["| pattern | median s | min-max s | ratio to primary | seed ratio | steps (median s) |",
                  "|---|---|---|---|---|---|"]
        for p, v in r["patterns"].items():
            steps = "; ".join(f"{s['purpose']} {s['median_s']}" for s in v["steps"])
            seed = v["seed_ratio"] if v["seed_ratio"] is not None else "-"
            lines.append(f"| {p} | {v['median_s']} | {v['min_s']}-{v['max_s']} | {v['ratio_to_primary']} | {seed} | "
                         f"{steps} |")
        if r.get("auto_route"):
            lines.append(f"\nauto routed this prompt to `{r['auto_route']}`.")
        if png:
            lines += ["", f"![pattern latency by step]({png})"]
    ov = r.get("overhead")
    if ov and "skipped" not in ov:
        lines += ["", "Orchestration overhead: wall time against plain mlx-lm `generate_step` for the same prompt and "
                      "completion token counts of every step.", "",
                  "| pattern | wall s | plain mlx-lm s | ratio (median, min-max) |", "|---|---|---|---|"]
        for p, v in ov.items():
            lines.append(f"| {p} | {v['wall_median_s']} | {v['raw_mlx_lm_median_s']} | {v['ratio_median']} "
                         f"({v['ratio_min']}-{v['ratio_max']}) |")
    elif ov:
        lines += ["", f"overhead: {ov['skipped']}"]
    t = r.get("tools")
    if t:
        def med(x: dict[str, Any] | None) -> str:
            return "-" if not x else f"{x['median']} ({x['min']}-{x['max']})"

        lines += ["", f"Tool extraction over {t['items']} requests: valid {t['valid_rate_constrained']:.0%} "
                      f"constrained vs {t['valid_rate_unconstrained']:.0%} unconstrained; expected tool "
                      f"{t['expected_tool_accuracy']:.0%}; tokens/s {med(t['tps_constrained'])} constrained vs "
                      f"{med(t['tps_unconstrained'])} unconstrained; grammar mask {med(t['mask_ms_per_token'])} "
                      "ms per token."]
    m = r.get("mcp")
    if m:
        lines += ["", "| MCP stdio | median s | min-max s |", "|---|---|---|"]
        for k in ("start_to_initialize", "tools_list", "first_call_with_load", "warm_call", "engine_direct"):
            lines.append(f"| {k.replace('_', ' ')} | {m[k]['median_s']} | {m[k]['min_s']}-{m[k]['max_s']} |")
        lines.append(f"\nA warm MCP call costs {m['warm_overhead_ratio']}x the same call on the engine directly "
                     f"({m['warm_overhead_ms']:+.0f} ms).")
    h = r.get("http")
    if h:
        ratio = f" ({h['warm_overhead_ratio']}x the engine directly)" if "warm_overhead_ratio" in h else ""
        lines.append(f"\nHTTP API (`mageagent serve`): warm call {h['warm_call']['median_s']} s{ratio}.")
    rm = r.get("remote")
    if rm and "skipped" not in rm:
        lines.append(f"\nprimary on mlx_lm.server {rm['mlx_lm_server']['median_s']} s vs in-process "
                     f"{rm['in_process']['median_s']} s (ratio {rm['ratio']}).")
    elif rm:
        lines.append(f"\nremote: {rm['skipped']}")
    mem = r.get("memory")
    if mem:
        lines += ["", "| memory profile | models loaded | their size GB | peak RSS GB (median, min-max) | ratio |",
                  "|---|---|---|---|---|"]
        for name, v in mem.items():
            lines.append(f"| {name} | {', '.join(v['loaded_models'])} | {v['models_gb']} | {v['peak_rss_gb']} "
                         f"({v['peak_rss_gb_min']}-{v['peak_rss_gb_max']}) | {v['ratio']} |")
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> bool:
    """A stacked bar per pattern, one segment per step (median seconds); False where matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pats = list(r["patterns"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours: dict[str, Any] = {}
    cmap = plt.get_cmap("tab10")
    for i, p in enumerate(pats):
        bottom = 0.0
        for s in r["patterns"][p]["steps"]:
            kind = s["purpose"].split(" (")[0]
            if kind not in colours:
                colours[kind] = cmap(len(colours) % 10)
                label = kind
            else:
                label = None
            ax.bar(i, s["median_s"], bottom=bottom, color=colours[kind], label=label, edgecolor="white")
            bottom += s["median_s"]
        ax.text(i, bottom, f"{r['patterns'][p]['median_s']:.1f}s", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(pats)), pats)
    ax.set_ylabel("seconds (median of steps)")
    ax.set_title(f"Pattern latency by step ({r['profile']}, max_tokens {r['max_tokens']}, {r['reps']} reps)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
