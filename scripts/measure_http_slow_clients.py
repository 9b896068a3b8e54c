"""Slow clients against ``mageagent serve``: N connections each sending a request's headers one byte every few
seconds. Records how many the server still holds after ``--hold`` seconds and its resident memory.

    .venv/bin/python scripts/measure_http_slow_clients.py --out docs/bench/http_slow_clients.json \
        [--repo /path/to/old/checkout --label before]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runs import parser, report  # noqa: E402
HEADERS = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" * 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(repo: str, clients: int, hold_s: float, every_s: float) -> dict:
    port = free_port()
    env = {**os.environ, "MAGEAGENT_PROFILE": "tiny", "PYTHONPATH": repo}
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.faces.cli", "serve", "--port", str(port)], cwd=repo,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rss() -> float:
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        return int(next(ln.split()[1] for ln in status if ln.startswith("VmRSS"))) / 1024

    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "the server did not start"
                time.sleep(0.2)
        time.sleep(1)
        before = rss()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(clients)]
        alive = [True] * clients
        t0, sent = time.monotonic(), 0
        while time.monotonic() - t0 < hold_s:
            for i, s in enumerate(socks):
                if alive[i]:
                    try:
                        s.sendall(HEADERS[sent:sent + 1])
                    except OSError:
                        alive[i] = False
            sent += 1
            time.sleep(every_s)
        for i, s in enumerate(socks):  # a closed connection reads as EOF (or a reset)
            if alive[i]:
                s.setblocking(False)
                try:
                    alive[i] = s.recv(1) != b""
                except BlockingIOError:
                    pass
                except OSError:
                    alive[i] = False
        held = rss()
        for s in socks:
            s.close()
        return {"clients": clients, "byte_every_s": every_s, "after_s": hold_s, "still_held": sum(alive),
                "rss_before_mb": round(before), "rss_after_mb": round(held)}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    p = parser(__doc__, ROOT)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--hold", type=float, default=30.0)
    p.add_argument("--every", type=float, default=2.0, help="seconds between a client's bytes")
    args = p.parse_args()
    run = {"code": args.label, **measure(args.repo, args.clients, args.hold, args.every)}
    return report(args, "measure_http_slow_clients.py", [run])


if __name__ == "__main__":
    sys.exit(main())
