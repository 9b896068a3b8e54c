"""Speed and tool-call figures on the embedded profile, as ratios measured in one run on this machine.

Usage: .venv/bin/python scripts/bench.py [--reps 3] [--max-tokens 48] [--json OUT]
Reports: each pattern's wall time (median, spread) and its ratio to primary; constrained versus
unconstrained tokens/s and the mask cost per token; valid-call rate with and without the constraint and
expected-tool accuracy over a fixed table; model load time and resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.blas import blas_status, preload_openblas  # noqa: E402

preload_openblas()

import anyio  # noqa: E402

from orchestration import prompts  # noqa: E402
from orchestration.engine import Engine  # noqa: E402
from orchestration.errors import ModelOutputError  # noqa: E402
from orchestration.settings import load_settings  # noqa: E402
from orchestration.testing import free_port, mlx_lm_server_command, wait_http  # noqa: E402
from orchestration.tools.catalogue import SEED_TOOLS  # noqa: E402
from orchestration.tools.extract import extraction_schema, parse_calls  # noqa: E402
from orchestration.tools.schema import token_bound  # noqa: E402
from orchestration.types import Constraint, GenerationRequest, PatternRequest  # noqa: E402

PROMPT = "Write a Python function that checks whether a number is prime, and save it to the file prime.py"
PATTERNS = ["primary", "tools", "hybrid", "validated", "compete", "auto"]
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


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(args: argparse.Namespace) -> dict:
    settings = load_settings(max_tokens=args.max_tokens, temperature=0.0, extraction_max_string=64,
                             extraction_max_calls=2)
    engine = Engine(settings)
    backend = engine.backends["mlx"]
    out: dict = {"blas": blas_status(), "max_tokens": args.max_tokens, "reps": args.reps}
    rss0 = rss_mb()
    await backend.warmup(["embedded"])
    state = [s for s in backend.state() if s.model == "embedded"][0]
    out["model"] = {"load_seconds": state.load_seconds, "size_gb": state.size_gb, "rss_mb_before": round(rss0),
                    "rss_mb_loaded": round(rss_mb())}

    # -- pattern latency -------------------------------------------------------------------------------
    times: dict[str, list[float]] = {p: [] for p in PATTERNS}
    steps: dict[str, list] = {}
    for _ in range(args.reps):
        for p in PATTERNS:
            t0 = time.perf_counter()
            r = await engine.run(p, PatternRequest(prompt=PROMPT, extraction="always"))
            times[p].append(time.perf_counter() - t0)
            steps[p] = [(s.purpose, s.role, s.prompt_tokens, s.completion_tokens, round(s.seconds, 2))
                        for s in r.trace.steps]
            if p == "auto":
                out["auto_route"] = r.trace.route
    base = statistics.median(times["primary"])
    out["patterns"] = {p: {"median_s": round(statistics.median(v), 2), "min_s": round(min(v), 2),
                           "max_s": round(max(v), 2), "ratio_to_primary": round(statistics.median(v) / base, 2),
                           "steps": steps[p]} for p, v in times.items()}

    # -- constrained vs unconstrained decoding ---------------------------------------------------------
    schema = extraction_schema(SEED_TOOLS, 2, 64)
    valid = {"constrained": 0, "unconstrained": 0}
    expected_hits = 0
    tps = {"constrained": [], "unconstrained": []}
    masks = []
    rows = []
    for text, expected in TOOL_TABLE:
        msgs = prompts.extraction(PatternRequest(prompt=text), None, SEED_TOOLS)
        for kind in ("constrained", "unconstrained"):
            req = GenerationRequest(model="embedded", messages=msgs, temperature=0.0,
                                    max_tokens=token_bound(schema) if kind == "constrained" else 160,
                                    constraint=Constraint(json_schema=schema) if kind == "constrained" else None)
            c = await backend.stream(req)
            if c.completion_tokens > 3:
                tps[kind].append(c.generation_tps)
            if kind == "constrained":
                masks.append(backend.last_mask_seconds_per_token)
            try:
                calls = parse_calls(c.text, SEED_TOOLS)
                valid[kind] += 1
            except ModelOutputError:
                calls = None
            if kind == "constrained":
                picked = [x.tool for x in calls or []]
                expected_hits += int(bool(picked) and picked[0] == expected)
                rows.append({"request": text, "expected": expected, "picked": picked,
                             "arguments": [x.arguments for x in calls or []]})
    n = len(TOOL_TABLE)
    out["tools"] = {
        "valid_rate_constrained": valid["constrained"] / n,
        "valid_rate_unconstrained": valid["unconstrained"] / n,
        "expected_tool_accuracy": expected_hits / n,
        "tps_constrained_median": round(statistics.median(tps["constrained"]), 2) if tps["constrained"] else None,
        "tps_unconstrained_median": round(statistics.median(tps["unconstrained"]), 2),
        "mask_ms_per_token_median": round(1000 * statistics.median(m for m in masks if m is not None), 3),
        "table": rows,
    }
    out["model"]["rss_mb_end"] = round(rss_mb())

    # -- the same call three ways: engine direct, through the MCP stdio server, through the HTTP API -----
    call = PatternRequest(prompt="Say hello in one short sentence.", max_tokens=16, temperature=0.0)
    direct = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        await engine.run("primary", call)
        direct.append(time.perf_counter() - t0)
    out["direct_primary_s"] = round(statistics.median(direct), 3)
    engine.close()
    out["mcp"] = await mcp_timings(args.reps, call)
    out["http"] = await http_timings(args.reps, call)
    out["remote"] = await remote_timings(args.reps, call)
    return out


async def mcp_timings(reps: int, call: PatternRequest) -> dict:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_mageagent"])
    t0 = time.perf_counter()
    async with Client(params, mode="legacy") as client:
        handshake = time.perf_counter() - t0
        t1 = time.perf_counter()
        await client.list_tools()
        list_s = time.perf_counter() - t1
        args = {"prompt": call.prompt, "max_tokens": call.max_tokens, "temperature": 0}
        t2 = time.perf_counter()
        await client.call_tool("mage_primary", args)
        first = time.perf_counter() - t2
        warm = []
        for _ in range(reps):
            t3 = time.perf_counter()
            await client.call_tool("mage_primary", args)
            warm.append(time.perf_counter() - t3)
    return {"handshake_s": round(handshake, 3), "tools_list_s": round(list_s, 4), "first_call_s": round(first, 3),
            "warm_call_s": round(statistics.median(warm), 3)}


async def http_timings(reps: int, call: PatternRequest) -> dict:
    import subprocess

    import httpx2

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        body = {"model": "mageagent:primary", "messages": [{"role": "user", "content": call.prompt}],
                "max_tokens": call.max_tokens, "temperature": 0}
        times = []
        async with httpx2.AsyncClient(timeout=300) as client:
            await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)  # load
            for _ in range(reps):
                t0 = time.perf_counter()
                r = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
                times.append(time.perf_counter() - t0)
                r.raise_for_status()
        return {"warm_call_s": round(statistics.median(times), 3)}
    finally:
        proc.terminate()
        proc.wait(10)


async def remote_timings(reps: int, call: PatternRequest) -> dict:
    """The primary role in-process versus on mlx_lm.server (same model, same request)."""
    import subprocess

    from orchestration.embedded import embedded_dir

    settings = load_settings()
    model_dir = embedded_dir(settings.models_dir, "dense")
    port = free_port()
    proc = subprocess.Popen(mlx_lm_server_command(str(model_dir), port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        remote = Engine(load_settings(roles={"primary": {"model": str(model_dir), "backend": "openai",
                                                         "base_url": f"http://127.0.0.1:{port}/v1",
                                                         "structured_output": "none"}}))
        local = Engine(load_settings())
        res: dict = {}
        for name, eng in (("in_process", local), ("mlx_lm_server", remote)):
            await eng.run("primary", call)  # load
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                await eng.run("primary", call)
                ts.append(time.perf_counter() - t0)
            res[f"{name}_s"] = round(statistics.median(ts), 3)
            eng.close()
        res["ratio"] = round(res["mlx_lm_server_s"] / res["in_process_s"], 3)
        return res
    finally:
        proc.terminate()
        proc.wait(10)


def markdown(r: dict) -> str:
    lines = [f"BLAS: {r['blas']['library'] or 'bundled'}; max_tokens {r['max_tokens']}; {r['reps']} repetitions",
             f"model: load {r['model']['load_seconds']}s, {r['model']['size_gb']} GB on disk, RSS "
             f"{r['model']['rss_mb_before']} -> {r['model']['rss_mb_loaded']} MB loaded, {r['model']['rss_mb_end']} MB "
             "at the end", "", "| pattern | median s | min-max s | ratio to primary | seed ratio |",
             "|---|---|---|---|---|"]
    seed = {"tools": 0.13, "primary": 1.0, "hybrid": 1.5, "validated": 2.0, "compete": 3.0}
    for p, v in r["patterns"].items():
        lines.append(f"| {p} | {v['median_s']} | {v['min_s']}-{v['max_s']} | {v['ratio_to_primary']} | "
                     f"{seed.get(p, '-')} |")
    t = r["tools"]
    lines += ["", f"tool calls: valid {t['valid_rate_constrained']:.0%} constrained vs "
              f"{t['valid_rate_unconstrained']:.0%} unconstrained; expected tool {t['expected_tool_accuracy']:.0%}; "
              f"{t['tps_constrained_median']} vs {t['tps_unconstrained_median']} tok/s; mask "
              f"{t['mask_ms_per_token_median']} ms/token"]
    m, h, rm = r["mcp"], r["http"], r["remote"]
    lines += [f"MCP stdio: handshake {m['handshake_s']}s, tools/list {m['tools_list_s']}s, first call "
              f"{m['first_call_s']}s, warm call {m['warm_call_s']}s vs engine direct {r['direct_primary_s']}s "
              f"(ratio {m['warm_call_s'] / r['direct_primary_s']:.3f})",
              f"HTTP API warm call {h['warm_call_s']}s (ratio to direct {h['warm_call_s'] / r['direct_primary_s']:.3f})",
              f"primary on mlx_lm.server {rm['mlx_lm_server_s']}s vs in-process {rm['in_process_s']}s "
              f"(ratio {rm['ratio']})"]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--json", help="write the full results here")
    a = ap.parse_args()
    result = anyio.run(main, a)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    print(markdown(result))
