"""The main job, end to end: start the MCP server over stdio, call a pattern, print the answer and tool calls.

Runs the configured profile (the default: Qwen2.5-Coder 0.5B, with the 1.5B as compete's competitor).
Usage: python scripts/demo.py [--pattern hybrid] [--max-tokens 320] [PROMPT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

DEFAULT_PROMPT = ("Write a Python function is_prime(n) that returns True when n is a prime number, "
                  "and save it to prime.py")


async def main(args: argparse.Namespace) -> int:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_mageagent"])
    t0 = time.perf_counter()

    async def progress(done: float, total: float | None, message: str | None) -> None:
        sys.stderr.write(f"  .. {message}\n")

    async with Client(params, mode="legacy") as client:
        t_init = time.perf_counter() - t0
        tools = await client.list_tools()
        print(f"server: {client.server_info.name if client.server_info else '?'} "
              f"(handshake {t_init:.2f}s), tools: {', '.join(t.name for t in tools.tools)}")
        print(f"calling mage_{args.pattern}: {args.prompt!r}\n")
        t1 = time.perf_counter()
        result = await client.call_tool(f"mage_{args.pattern}",
                                        {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0},
                                        progress_callback=progress)
        elapsed = time.perf_counter() - t1
    if result.is_error:
        print("ERROR:", result.content[0].text)
        return 1
    data = result.structured_content or {}
    print("Answer:\n" + data.get("text", "").strip() + "\n")
    print("Tool calls (for the host to run; the server ran none):")
    print(json.dumps(data.get("tool_calls", []), indent=2))
    steps = data.get("trace", {}).get("steps", [])
    print("\nTrace: " + ", ".join(f"{s['purpose']} [{s['role']}] {s['seconds']:.1f}s" for s in steps)
          + f" | call {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    ap.add_argument("--pattern", default="hybrid")
    ap.add_argument("--max-tokens", type=int, default=320)
    sys.exit(anyio.run(main, ap.parse_args()))
