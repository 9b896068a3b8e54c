"""The MCP side of ``mageagent bench``: a client of this server, run as its own process.

The bench (``orchestration/bench/``) is the engine's and speaks no MCP: it starts ``python -m mcp_mageagent.bench``
the way it starts ``mageagent serve`` for its http section, and reads the one JSON object this prints on stdout.

- ``stdio --reps N --call JSON``: seconds for each of N fresh ``python -m mcp_mageagent`` servers from start to
  the ``initialize`` answer, ``tools/list`` and the first ``mage_primary`` call (its model load included), and N
  warm calls in the first;
- ``tools``: the published tools as a host lists them (name, description, input and output schemas).

Settings come from the environment, as the servers it starts take them: ``$MAGEAGENT_CONFIG``, then the
``MAGEAGENT_`` variables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from orchestration.core.settings import load_settings

from .server import build_server

__all__ = ["stdio_timings", "listed_tools", "main"]


async def stdio_timings(call: dict[str, Any], reps: int) -> dict[str, list[float]]:
    """Seconds from start to ``initialize``, ``tools/list``, first and warm ``mage_primary`` calls with ``call``."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_mageagent"], env=dict(os.environ))
    out: dict[str, list[float]] = {"start_to_initialize": [], "tools_list": [], "first_call_with_load": [],
                                   "warm_call": []}
    for rep in range(reps):
        t0 = time.perf_counter()
        async with Client(params, mode="legacy") as client:
            out["start_to_initialize"].append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            await client.list_tools()
            out["tools_list"].append(time.perf_counter() - t1)
            t2 = time.perf_counter()
            await client.call_tool("mage_primary", call)
            out["first_call_with_load"].append(time.perf_counter() - t2)
            if rep == 0:
                for _ in range(reps):
                    t3 = time.perf_counter()
                    await client.call_tool("mage_primary", call)
                    out["warm_call"].append(time.perf_counter() - t3)
    return out


async def listed_tools(server: Any) -> list[dict[str, Any]]:
    """The tools an MCP server publishes, listed through the SDK's in-memory client, as plain data."""
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    return [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema,
             "output_schema": t.output_schema} for t in tools]


def main(argv: list[str] | None = None) -> int:
    """``python -m mcp_mageagent.bench stdio --reps N --call JSON | tools``: one JSON object on stdout."""
    p = argparse.ArgumentParser(prog="python -m mcp_mageagent.bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="probe", required=True)
    stdio = sub.add_parser("stdio", help="time fresh stdio servers")
    stdio.add_argument("--reps", type=int, default=1)
    stdio.add_argument("--call", default="{}", help="the mage_primary arguments, as JSON")
    sub.add_parser("tools", help="list the published tools (builds the server; loads no model)")
    args = p.parse_args(argv)
    if args.probe == "stdio":
        result: Any = anyio.run(stdio_timings, json.loads(args.call), args.reps)
    else:
        result = anyio.run(listed_tools, build_server(load_settings()))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
