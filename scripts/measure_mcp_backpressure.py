"""A host that stops reading: N ``tools/list`` requests written to the stdio server while nothing reads its
answers. Records the server's resident memory before, after 15 s unread and after everything was read, how many
requests the server had taken by then, and how many were answered.

    .venv/bin/python scripts/measure_mcp_backpressure.py --out docs/bench/mcp_backpressure.json \
        [--repo /path/to/old/checkout --label before]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runs import parser, report  # noqa: E402


def measure(repo: str, n: int, hold_s: float) -> dict:
    env = {**os.environ, "MAGEAGENT_PROFILE": "tiny", "PYTHONPATH": repo}
    proc = subprocess.Popen([sys.executable, "-m", "mcp_mageagent"], cwd=repo, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None

    def rss() -> float:
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        return int(next(ln.split()[1] for ln in status if ln.startswith("VmRSS"))) / 1024

    def send(message: dict) -> None:
        proc.stdin.write((json.dumps(message) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    try:
        send({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "m", "version": "0"}}})
        proc.stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        time.sleep(1)
        before, sent = rss(), [0]

        def write() -> None:
            for i in range(n):
                send({"jsonrpc": "2.0", "id": i, "method": "tools/list"})
                sent[0] += 1

        threading.Thread(target=write, daemon=True).start()
        peak, t0 = before, time.monotonic()
        while time.monotonic() - t0 < hold_s:
            time.sleep(0.1)
            peak = max(peak, rss())
        held, taken = rss(), sent[0]
        answered = 0
        while answered < n and proc.stdout.readline():
            answered += 1
        time.sleep(2)
        return {"requests": n, "rss_before_mb": round(before), f"rss_after_{hold_s:.0f}s_unread_mb": round(held),
                "peak_unread_mb": round(peak), "requests_written_by_then": taken, "answered": answered,
                "rss_after_reading_mb": round(rss())}
    finally:
        proc.kill()


def main() -> int:
    p = parser(__doc__, ROOT)
    p.add_argument("-n", type=int, default=3000)
    p.add_argument("--hold", type=float, default=15.0, help="seconds nothing is read")
    args = p.parse_args()
    run = {"code": args.label, **measure(args.repo, args.n, args.hold)}
    return report(args, "measure_mcp_backpressure.py", [run])


if __name__ == "__main__":
    sys.exit(main())
