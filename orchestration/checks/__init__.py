"""Checking model code by running it: the sandbox, the test harness inside it, and the checks taken from a
request (docs/architecture.md)."""
