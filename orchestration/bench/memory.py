"""Section memory: peak resident memory of a fresh process running compete on each memory profile."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from ..core.settings import ROLES
from .common import PROMPT, say

__all__ = ["MEMORY_PROFILES", "memory_probe", "run"]

# Memory profiles: every role's model (a single name = all roles share one loaded copy).
MEMORY_PROFILES: dict[str, dict[str, str]] = {
    "qwen (0.5B + the 1.5B competitor)": {"primary": "qwen2.5-coder-0.5b", "competitor": "qwen2.5-coder-1.5b",
                                          "validator": "qwen2.5-coder-0.5b", "tools": "qwen2.5-coder-0.5b"},
    "qwen 0.5B (shared)": {r: "qwen2.5-coder-0.5b" for r in ROLES},
    "embedded (dense, shared)": {r: "embedded" for r in ROLES},
    "embedded-q4 (4-bit, shared)": {r: "embedded-q4" for r in ROLES},
    "mixed (dense primary, 4-bit others)": {"primary": "embedded", "competitor": "embedded-q4",
                                            "validator": "embedded-q4", "tools": "embedded-q4"},
}


def memory_probe(roles: dict[str, str], max_tokens: int) -> dict[str, Any]:
    """Run compete once (A, B, judge: every distinct model of these roles loads) in a fresh process, with short
    answers (the weights dominate); its peak RSS and the sizes of the models it loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGEAGENT_ROLES__")}
    for role, model in roles.items():
        env[f"MAGEAGENT_ROLES__{role.upper()}__MODEL"] = model
    code = ("import json, sys, anyio\n"
            "from orchestration.models.blas import preload_openblas\npreload_openblas()\n"
            "from orchestration.patterns.engine import Engine\nfrom orchestration.core.settings import load_settings\n"
            "from orchestration.core.types import PatternRequest\n"
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


def run(max_tokens: int, reps: int) -> dict[str, Any]:
    out = {}
    for name, roles in MEMORY_PROFILES.items():
        runs = [memory_probe(roles, max_tokens) for _ in range(reps)]
        peaks = [r["peak_rss_gb"] for r in runs]
        out[name] = {**runs[-1], "peak_rss_gb": round(statistics.median(peaks), 3),
                     "peak_rss_gb_min": min(peaks), "peak_rss_gb_max": max(peaks), "n": len(runs),
                     "ratio": round(statistics.median(peaks) / runs[-1]["models_gb"], 2)
                     if runs[-1]["models_gb"] else None}
        say(f"  memory: {name}: peak {out[name]['peak_rss_gb']} GB")
    return out
