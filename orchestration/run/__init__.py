"""What one pattern run stands on, shared by the patterns and the tool-call extraction: the run context (role ->
model, step recording, progress), the prompts, and the seed's heuristic rules (docs/architecture.md)."""
