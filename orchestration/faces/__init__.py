"""The faces other than MCP (the CLI and the OpenAI-compatible HTTP API) and what every face shares: access
checks and plain-text renderings of a result (docs/architecture.md)."""
