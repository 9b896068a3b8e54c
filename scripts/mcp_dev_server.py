"""Entry for `mcp dev scripts/mcp_dev_server.py:server` (the MCP Inspector's web UI via the SDK's CLI).

`mcp dev` imports a server object from a file, so this file builds one at import; the package itself
never does (use `mcp-mageagent` or `python -m mcp_mageagent` everywhere else).
"""

from orchestration.models.blas import preload_openblas
from orchestration.core.settings import load_settings

settings = load_settings()
preload_openblas(settings.blas)

from mcp_mageagent.server import build_server  # noqa: E402  (after OpenBLAS, before MLX)

server = build_server(settings)
