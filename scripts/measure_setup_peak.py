"""Peak memory of converting one local model (GGUF -> mlx-lm directory), in a child process per run.

Each run converts the cached GGUF into a scratch directory (the user's converted models are not touched) with
the code of ``--repo`` (a checkout of any commit: the before/after of a change), sampling the child's resident
memory every 20 ms: anonymous (the arrays) and file-backed (the mapped GGUF, which the kernel can drop).

    .venv/bin/python scripts/measure_setup_peak.py --model qwen2.5-coder-0.5b smollm2-135m \
        --out docs/bench/setup_peak.json [--repo /path/to/old/checkout --label before]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runs import parser, report  # noqa: E402

CHILD = r"""
import json, sys, threading, time
from pathlib import Path

def rss():
    d = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            d[k] = int(v.split()[0]) / 1024
    return d

name, cache, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from orchestration.models import convert, qwen25_coder  # noqa: E402
base = rss()
peak = dict(base)

def sample():
    while True:
        for k, v in rss().items():
            peak[k] = max(peak[k], v)
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
if name in qwen25_coder.MODELS:
    model = qwen25_coder.MODELS[name]
    report = qwen25_coder.convert(model, cache / "gguf" / model.source.name, out, force=True)
else:
    report = convert.convert_gguf(cache / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf", out, "dense", force=True)
seconds = time.perf_counter() - t0
time.sleep(0.1)
print(json.dumps({"seconds": round(seconds, 1), "output_bytes": report.size_bytes,
                  "baseline_mb": round(base["VmRSS"]), "peak_rss_mb": round(peak["VmRSS"]),
                  "peak_anon_mb": round(peak["RssAnon"]), "peak_file_mb": round(peak["RssFile"])}))
"""


def largest_tensor_mb(name: str, cache: Path) -> float:
    """The largest tensor of the model in float32: what a one-tensor-at-a-time writer may have to hold."""
    from gguf import GGUFReader

    from orchestration.models import qwen25_coder

    file = (qwen25_coder.MODELS[name].source.name if name in qwen25_coder.MODELS
            else "SmolLM2-135M-Instruct.Q4_1.gguf")
    reader = GGUFReader(str(cache / "gguf" / file))
    return round(max(int(t.n_elements) for t in reader.tensors) * 4 / 2**20)


def main() -> int:
    p = parser(__doc__, ROOT)
    p.add_argument("--model", nargs="+", default=["qwen2.5-coder-0.5b", "smollm2-135m"])
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "mageagent"))
    args = p.parse_args()
    cache = Path(args.cache)
    commit = subprocess.run(["git", "-C", args.repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "(not a git checkout)"
    runs = []
    for name in args.model:
        with tempfile.TemporaryDirectory(prefix="setup-peak-") as scratch:
            proc = subprocess.run([sys.executable, "-c", CHILD, name, str(cache), str(Path(scratch) / "out")],
                                  capture_output=True, text=True, cwd=args.repo,
                                  env={**os.environ, "PYTHONPATH": args.repo})
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-2000:])
            return 1
        run = {"model": name, "code": args.label, "commit": commit, "largest_tensor_f32_mb":
               largest_tensor_mb(name, cache), **json.loads(proc.stdout.strip().splitlines()[-1])}
        runs.append(run)
    return report(args, "measure_setup_peak.py", runs, key=("model", "code"), shown_args="--model ... ")

if __name__ == "__main__":
    sys.exit(main())
