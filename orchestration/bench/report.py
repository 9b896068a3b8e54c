"""The bench result as markdown and as a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot"]


def markdown(r: dict[str, Any], png: str | None = None) -> str:
    lines = ["# mageagent bench", "", f"command: `{r.get('command', 'mageagent bench')}`", "",
             f"profile {r['profile']} ({', '.join(f'{k}={v}' for k, v in r['roles'].items())}); BLAS "
             f"{r['blas'].get('library') or 'bundled'}; {r['cpu_count']} CPUs; max_tokens {r['max_tokens']}; "
             f"{r['reps']} repetitions (median, min-max)", ""]
    if "patterns" in r:
        lines += _patterns(r, png)
    lines += _overhead(r.get("overhead"))
    lines += _tools(r.get("tools"))
    lines += _mcp(r.get("mcp"))
    h = r.get("http")
    if h:
        ratio = f" ({h['warm_overhead_ratio']}x the engine directly)" if "warm_overhead_ratio" in h else ""
        lines.append(f"\nHTTP API (`mageagent serve`): warm call {h['warm_call']['median_s']} s{ratio}.")
    lines += _remote(r.get("remote"))
    lines += _memory(r.get("memory"))
    lines += _footprint(r.get("footprint"))
    lines += _peers(r.get("peers"))
    return "\n".join(lines) + "\n"


# Each section: its markdown lines (a line may start with a newline), none where the bench did not run it.
def _patterns(r: dict[str, Any], png: str | None) -> list[str]:
    lines = ["| pattern | median s | min-max s | ratio to primary | seed ratio | steps (median s) |",
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
    return lines


def _overhead(ov: dict[str, Any] | None) -> list[str]:
    if not ov:
        return []
    if "skipped" in ov:
        return ["", f"overhead: {ov['skipped']}"]
    lines = ["", "Orchestration overhead: wall time against plain mlx-lm `generate_step` for the same prompt and "
                 "completion token counts of every step.", "",
             "| pattern | wall s | plain mlx-lm s | ratio (median, min-max) |", "|---|---|---|---|"]
    for p, v in ov.items():
        ratio = (f"{v['ratio_median']} ({v['ratio_min']}-{v['ratio_max']})" if v["ratio_median"] is not None
                 else v.get("note", "-"))
        lines.append(f"| {p} | {v['wall_median_s']} | {v['raw_mlx_lm_median_s']} | {ratio} |")
    return lines


def _tools(t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []

    def med(x: dict[str, Any] | None) -> str:
        return "-" if not x else f"{x['median']} ({x['min']}-{x['max']})"

    return ["", f"Tool extraction over {t['items']} requests: valid {t['valid_rate_constrained']:.0%} "
                f"constrained vs {t['valid_rate_unconstrained']:.0%} unconstrained; expected tool "
                f"{t['expected_tool_accuracy']:.0%}; tokens/s {med(t['tps_constrained'])} constrained vs "
                f"{med(t['tps_unconstrained'])} unconstrained; grammar mask {med(t['mask_ms_per_token'])} "
                "ms per token."]


def _mcp(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return []
    lines = ["", "| MCP stdio | median s | min-max s |", "|---|---|---|"]
    for k in ("start_to_initialize", "tools_list", "first_call_with_load", "warm_call", "engine_direct"):
        lines.append(f"| {k.replace('_', ' ')} | {m[k]['median_s']} | {m[k]['min_s']}-{m[k]['max_s']} |")
    lines.append(f"\nA warm MCP call costs {m['warm_overhead_ratio']}x the same call on the engine directly "
                 f"({m['warm_overhead_ms']:+.0f} ms).")
    return lines


def _remote(rm: dict[str, Any] | None) -> list[str]:
    if not rm:
        return []
    if "skipped" in rm:
        return [f"\nremote: {rm['skipped']}"]
    lines: list[str] = []
    ms = rm.get("mlx_lm_server") or {}
    if "skipped" in ms:
        lines.append(f"\nmlx_lm.server: {ms['skipped']}")
    elif ms:
        lines.append(f"\nprimary on mlx_lm.server {ms['median_s']} s vs in-process "
                     f"{rm['in_process']['median_s']} s (ratio {rm['ratio']}).")
    lc = rm.get("llama_cpp_server") or {}
    if "skipped" in lc:
        lines.append(f"\nllama.cpp server: {lc['skipped']}")
    elif lc:
        lines += ["", f"| roles on llama.cpp's server ({lc['gguf']}, llama-cpp-python {lc['llama_cpp_python']}) "
                      "| in-process MLX median s | llama.cpp server median s | ratio | tool calls (MLX / llama.cpp) |",
                  "|---|---|---|---|---|"]
        local = {"small": rm["in_process"], "hybrid": rm["in_process_hybrid"]}
        for k in ("small", "hybrid"):
            lines.append(f"| {k} | {local[k]['median_s']} | {lc[k]['median_s']} | "
                         f"{rm['llama_over_in_process'][k]} | {', '.join(local[k]['tool_calls']) or '-'} / "
                         f"{', '.join(lc[k]['tool_calls']) or '-'} |")
    return lines


def _memory(mem: dict[str, Any] | None) -> list[str]:
    if not mem:
        return []
    lines = ["", "| memory profile | models loaded | their size GB | peak RSS GB (median, min-max) | ratio |",
             "|---|---|---|---|---|"]
    for name, v in mem.items():
        lines.append(f"| {name} | {', '.join(v['loaded_models'])} | {v['models_gb']} | {v['peak_rss_gb']} "
                     f"({v['peak_rss_gb_min']}-{v['peak_rss_gb_max']}) | {v['ratio']} |")
    return lines


def _footprint(fp: dict[str, Any] | None) -> list[str]:
    if not fp:
        return []
    lines = ["", f"Context footprint of the published tools ({len(fp['tools'])}): {fp['context_tokens']} tokens "
                 f"(budget {fp['budget_tokens']}) for names, descriptions and input schemas, as the host sends "
                 f"them; output schemas {fp['output_schema_tokens']} more. Tokenizer: `{fp['tokenizer']}`.", "",
             "| tool | context tokens | description | input schema | output schema |", "|---|---|---|---|---|"]
    for name, v in fp["tools"].items():
        lines.append(f"| {name} | {v['context_tokens']} | {v['description_tokens']} | {v['input_schema_tokens']} "
                     f"| {v['output_schema_tokens']} |")
    return lines


def _peers(pe: dict[str, Any] | None) -> list[str]:
    if not pe:
        return []
    if pe.get("skipped"):
        return [f"\npeers: {pe['skipped']}"]
    lines = ["", f"## MLX against llama.cpp (llama-cpp-python {pe['llama_cpp_python']}, same GGUF, "
                 f"{pe['prompt_tokens']}-token prompt, {pe['generation_tokens']} greedy tokens)", "",
             "| model | engine | prompt tok/s | generation tok/s |", "|---|---|---|---|"]
    for name, v in pe["models"].items():
        if "skipped" in v:
            m = v.get("mlx_dense_fp32")
            if m:
                lines.append(f"| {name} | mlx_dense_fp32 | {m['prompt_tps']} | {m['generation_tps']} |")
            lines.append(f"| {name} | llama.cpp: {v['skipped']} | | |")
            continue
        for engine, m in v.items():
            if isinstance(m, dict):
                lines.append(f"| {name} | {engine} | {m['prompt_tps']} | {m['generation_tps']} |")
        lines.append(f"| {name} | llama.cpp / MLX | {v['prompt_ratio_llama_over_mlx']}x | "
                     f"{v['generation_ratio_llama_over_mlx']}x |")
    return lines


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
