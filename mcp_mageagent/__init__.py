"""mcp-mageagent: the MCP face of the orchestration engine (one tool per pattern)."""

from .server import build_server, main

__all__ = ["build_server", "main"]
