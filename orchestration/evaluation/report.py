"""The evaluation's Markdown report: rates with 95% intervals, paired comparisons, and what is noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cost import SOURCE as COST_SOURCE

__all__ = ["markdown", "plot"]

_SANDBOX = {"bwrap": "bubblewrap: no network, read-only system and interpreter, private tmpfs, own PID namespace",
            "sandbox-exec": "macOS Seatbelt, deny-default profile",
            "weak": "a plain subprocess: NOT isolated from the user's files or the network"}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _rate(r: dict[str, Any]) -> str:
    if not r or r.get("n", 0) == 0:
        return "-"
    return f"{r['k']}/{r['n']} = {_pct(r['rate'])} [{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]"


def _comparison_rows(rows: list[dict[str, Any]], metric: str = "") -> list[str]:
    out = []
    for c in rows:
        verdict = "significant" if c["significant"] else "within noise"
        out.append(f"| {c['b']} vs {c['a']}{metric} | {c['n']} | {_pct(c['rate_b'])} vs {_pct(c['rate_a'])} | "
                   f"{100 * c['diff']:+.1f} pts [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] | "
                   f"{c['b_only']} / {c['a_only']} | {c['mcnemar_p']:.3f} | {verdict} |")
    return out


_CMP_HEAD = ["| comparison | items | rates | difference [95% paired bootstrap] | only B / only A right | "
             "McNemar p | |", "|---|---|---|---|---|---|---|"]


def _code_section(he: dict[str, Any], title: str) -> list[str]:
    """One code suite: pass@1 and cost per system, how compete picked, the judge's accuracy, paired comparisons."""
    base = next((s for n, s in he["systems"].items() if n.endswith("-primary")), None)
    base_s = (base or {}).get("modelled_s_mean")
    scored = max((s.get("n") or 0 for s in he["systems"].values()), default=0)
    size = f"{he['n']} problems" if scored == he["n"] else f"{scored} of its {he['n']} problems scored"
    lines = [f"## {title} ({size}), pass@1", "",
             "| system | pass@1 [95% CI] | mean s per problem, run alone | vs primary | mean wall s in this run | "
             "mean completion tokens | cut off | errors | what |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in he["systems"].items():
        alone = s.get("modelled_s_mean")
        rel = f"{alone / base_s:.2f}x" if alone and base_s else "-"
        lines.append(f"| {name} | {_rate(s)} | {alone if alone is not None else '-'} | {rel} | "
                     f"{s.get('seconds_mean', '-')} | {s.get('completion_tokens_mean', '-')} | {s.get('cut_off', '-')} "
                     f"| {s.get('errors', '-')} | {s['description']} |")
    lines += ["", "Run alone: each step's prompt and completion tokens at its model's single-stream rates measured on "
                  f"this machine ({COST_SOURCE}; no prompt cache, batching or drafting), a shared answer counted for "
                  "every system using it. Wall seconds in this run include queueing behind the other items in flight."]
    for name, s in he["systems"].items():
        if "answer_changed" in s:  # a row derived from the records: which items it changed, which it could not
            n = len(s["answer_changed"])
            lines += ["", f"{name}: the answer differs from the run's on {n} item{'' if n == 1 else 's'} "
                          f"({', '.join(s['answer_changed']) or 'none'}); not derivable, counted as run at full cost: "
                          f"{len(s['unverified'])} ({', '.join(s['unverified']) or 'none'})."]
    judges = [(n, c) for n, c in (he.get("compete") or {}).items() if "judged" in c]
    for name, c in judges:
        lines += ["", f"{name}: {c['judged']} picks ({c.get('by_tests', 0)} by tests, {c.get('by_stronger', 0)} by "
                      f"the stronger model's answer, {c.get('by_pointwise', 0)} by the pointwise judge, the rest by "
                      f"the pairwise judge), A {c['picked_A']} and B {c['picked_B']} "
                      f"times; pairwise position consistency with the order swapped {_rate(c['position_consistency'])};"
                      f" the candidate shown first was picked in {_rate(c['first_shown_picked'])} of the pairwise "
                      f"passes; A and B identical in {c['identical_candidates']}."]
    if any("one_right" in c for _, c in judges):
        lines += ["", "Where exactly one of A and B passes the hidden tests: how often each way of choosing takes it.",
                  "", "| system | its pick | its judge alone | always A | always B (the stronger model) |",
                  "|---|---|---|---|---|"]
        for name, c in judges:
            o = c.get("one_right")
            if o:
                lines.append(f"| {name} | {_rate(o['pick'])} | {_rate(o['judge_only'])} | {_rate(o['always_A'])} | "
                             f"{_rate(o['always_B'])} |")
    if he.get("checks"):
        lines += ["", "Each validated system's first check as a detector of a wrong first answer (the primary's):",
                  "", "| system | answers | caught | missed | false alarms | precision | recall |",
                  "|---|---|---|---|---|---|---|"]
        for name, c in he["checks"].items():
            lines.append(f"| {name} | {c['n']} | {c['caught']} | {c['missed']} | {c['false_alarms']} | "
                         f"{_pct(c['precision'])} | {_pct(c['recall'])} |")
    sb = he["sandbox"]
    kind = sb.get("kind", "?")  # runs scored before the sandbox move have no kind
    lines += ["", f"Harness check: the reference solutions pass {he.get('canonical_passed', '?')}/{he['n']} in the "
                  "same harness.", "", f"Candidates ran in the shared harness in the `{kind}` sandbox "
                  f"({_SANDBOX.get(kind, 'unknown')}) with {sb['timeout_s']:.0f} s, {sb['memory_mb']} MB address "
                  f"space, {sb['file_mb']} MB files, {sb['open_files']} open files.",
              "", "### Paired comparisons", "", *_CMP_HEAD, *_comparison_rows(he["comparisons"]), ""]
    return lines


def markdown(results: dict[str, Any], config: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = ["# mageagent eval", ""]
    lines += [f"- command: `{config.get('command') or 'mageagent eval'}`",
              f"- models: {meta.get('models', '?')}",
              *([f"- scored: {meta['scope']}"] if meta.get("scope") else []),
              f"- data: {', '.join(f'{k} {v}' for k, v in config.get('packages', {}).items())} (PyPI wheels)"
              + ("; MBPP sanitized, test split (in the project, CC BY 4.0)" if results.get("mbpp") else ""),
              f"- selection: limit {config.get('limit') or 'all'} per suite/category, seed {config.get('seed')}; "
              f"greedy decoding (T=0) unless a system says otherwise; answer budget {config.get('max_tokens')} "
              "tokens",
              "- intervals: 95% Wilson for a rate, 95% paired bootstrap for a difference; McNemar's exact test on "
              "the discordant items. 'within noise' = the interval holds 0 or p >= 0.05.", ""]
    for suite, title in (("humaneval", "HumanEval"), ("mbpp", "MBPP (sanitized, test split)")):
        if results.get(suite):
            lines += _code_section(results[suite], title)
    bf = results.get("bfcl")
    if bf:
        cats = ", ".join(f"{k} {v}" for k, v in bf["categories"].items())
        lines += [f"## BFCL ({bf['n']} items: {cats})", "",
                  "Valid = a call array that parses and matches the tools' schemas (an empty array is valid). "
                  "Exact = the project's checker agrees with a possible answer (irrelevance: a valid empty array).",
                  "", "'First call only' is a diagnostic: the exact rate on the calling categories had every "
                  "output been "
                  "cut to its first call (the embedded model often repeats a call when allowed several).",
                  "", "| system | valid [95% CI] | exact [95% CI] | " +
                  " | ".join(f"exact: {k}" for k in bf["categories"]) + " | first call only | median s/item | errors "
                  "| what |",
                  "|---|---|---|" + "---|" * len(bf["categories"]) + "---|---|---|---|"]
        for name, s in bf["systems"].items():
            per = " | ".join(_rate(s["by_category"][k]["exact"]) for k in bf["categories"])
            lines.append(f"| {name} | {_rate(s['valid'])} | {_rate(s['exact'])} | {per} | "
                         f"{_rate(s['exact_first_call_only'])} | {s['seconds_median']} | "
                         f"{s['errors']} | {s['description']} |")
        lines += ["", "### Paired comparisons", "", *_CMP_HEAD,
                  *_comparison_rows(bf["comparisons"]["valid"], " (valid)"),
                  *_comparison_rows(bf["comparisons"]["exact"], " (exact)"), ""]
    return "\n".join(lines).rstrip() + "\n"


def _label(ax: Any, same: dict[tuple[float, float], list[str]], size: float = 7) -> None:
    """One label per point, right of it (left where it would leave the axes), moved down a line while it would
    overlap a label already placed, then tied to its point by a line (positions in points: an estimate of each
    label's width, no renderer needed)."""
    placed: list[tuple[float, float, float]] = []  # left, right, baseline of the labels so far
    to_pt = 72 / ax.figure.dpi
    edge = ax.get_window_extent().x1 * to_pt
    for (x, y), names in sorted(same.items(), key=lambda p: (-p[0][1], p[0][0])):
        text = " = ".join(names)
        px, py = (v * to_pt for v in ax.transData.transform((x, y)))
        width = 0.55 * size * len(text)
        flip = px + 4 + width > edge
        (left, right), dy = ((px - 4 - width, px - 4) if flip else (px + 4, px + 4 + width)), 3.0
        while any(left < r and l < right and abs(py + dy - b) < size + 2 for l, r, b in placed):
            dy -= size + 2
        placed.append((left, right, py + dy))
        ax.annotate(text, (x, y), fontsize=size, xytext=(-4 if flip else 4, dy), textcoords="offset points",
                    ha="right" if flip else "left", va="center" if dy != 3.0 else "baseline",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if dy != 3.0 else None)


def plot(results: dict[str, Any], path: Path) -> bool:
    """Quality against cost: pass@1 (with its 95% interval) against mean seconds per problem, one point per system,
    one panel per code suite; False where matplotlib is absent or there is nothing to plot."""
    suites = [(k, t) for k, t in (("humaneval", "HumanEval"), ("mbpp", "MBPP")) if results.get(k)]
    if not suites:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(suites), figsize=(6.5 * len(suites), 4.8), squeeze=False)
    labels: list[tuple[Any, dict[tuple[float, float], list[str]]]] = []
    for ax, (key, title) in zip(axes[0], suites):
        systems = results[key]["systems"]
        # Cost run alone where every system has it (the wall seconds of a batched run hold queueing), else wall.
        cost = "modelled_s_mean" if all(s.get("modelled_s_mean") for s in systems.values() if s.get("n")
                                        and "seconds_mean" in s) else "seconds_mean"
        points = [(n, s) for n, s in systems.items() if s.get(cost) and s.get("n")]
        # systems at the same point share one label ("primary = auto"), without the suite's prefix (the title)
        same: dict[tuple[float, float], list[str]] = {}
        for name, s in points:
            lo, hi = s["ci95"]
            ax.errorbar(s[cost], 100 * s["rate"], yerr=[[100 * (s["rate"] - lo)], [100 * (hi - s["rate"])]],
                        fmt="o", capsize=3)
            same.setdefault((s[cost], 100 * s["rate"]), []).append(name.split("-", 1)[1] if "-" in name else name)
        ax.set_xscale("log")
        labels.append((ax, same))
        ax.set_xlabel("mean seconds per problem, run alone (log)" if cost == "modelled_s_mean"
                      else "mean seconds per problem (log)")
        ax.set_ylabel("pass@1 % (95% Wilson interval)")
        scored = max((s.get("n") or 0 for s in systems.values()), default=0)
        size = f"{scored} problems" if scored == results[key]["n"] else f"{scored} of {results[key]['n']} problems"
        ax.set_title(f"{title}: quality against cost ({size})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    for ax, same in labels:  # placed once the layout is final (it moves the axes)
        ax.autoscale_view()
        _label(ax, same)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
