"""The execution-grounded steps validated and compete share: decide, gather tests, run them."""

from __future__ import annotations

import anyio

from ..checks.verify import (Origin, host_tests, parse_tests, python_code, run_tests, sandbox_problem, signatures,
                             syntax_problem)
from ..core.errors import ModelOutputError, PatternError, RequestError
from ..core.types import Completion, Constraint, Execution
from ..run import prompts
from ..run.context import RunContext

__all__ = ["plan", "gather_tests", "execute", "judge_model"]

# The reply starts as a test must: a small model otherwise tends to write the function again.
TESTS_CONSTRAINT = Constraint(options=["assert "], option_continuation={"assert ": ""})
TESTS_MAX_TOKENS = 200  # about 24 tokens per assert line; small models go on writing more


def plan(ctx: RunContext, *texts: str) -> tuple[bool, str]:
    """Whether to execute, and why (written to the trace): the request's ``verify``, else the setting."""
    mode = ctx.request.verify or ctx.settings.verify
    if mode == "model":
        return False, "model: verify = model"
    if not any(python_code(t) or syntax_problem(t) for t in texts):
        if mode == "execute":
            return False, "model: verify = execute, but the answer has no Python code to run"
        return False, "model: the answer has no Python code"
    problem = sandbox_problem(ctx.settings.sandbox)
    if problem is not None:
        if mode == "execute":  # asked for by name: a quiet downgrade to an opinion would be a lie
            raise RequestError(f"verify = execute, but no sandbox can run code here: {problem}")
        return False, f"model: no sandbox to run the code in ({problem})"
    return True, "execute"


def _context_tests(ctx: RunContext) -> bool:
    req = ctx.request
    return req.context_tests if req.context_tests is not None else ctx.settings.context_tests


async def gather_tests(ctx: RunContext, code: str) -> list[tuple[str, Origin]]:
    """The host's tests (argument, ``assert`` lines, ``>>>`` examples); else the validator writes some."""
    req = ctx.request
    tests = host_tests(req.prompt, req.context, req.tests, context_tests=_context_tests(ctx))
    if tests:
        return tests
    n = ctx.settings.generated_tests
    messages = prompts.tests_request(req, signatures(code), n)

    def parse(c: Completion) -> list[str]:
        found = parse_tests(c.text)
        if not found:
            raise ModelOutputError(f"the validator wrote no assert statement: {c.text[:160]!r}", raw=c.text)
        return found[:n]

    try:
        _, written = await ctx.generate_parsed("validator", messages, parse, purpose="write tests",
                                               max_tokens=min(TESTS_MAX_TOKENS, 24 * n), temperature=0.0,
                                               constraint=TESTS_CONSTRAINT)
    except PatternError as e:  # a validator that cannot write tests leaves the model verdict: say so
        ctx.trace.verification = f"model: the validator wrote no usable tests ({e})"
        return []
    return [(t, "validator") for t in written]


async def execute(ctx: RunContext, code: str, tests: list[tuple[str, Origin]], label: str) -> Execution:
    """Run the tests in the sandbox (a blocking subprocess: off the event loop, never on the MLX thread)."""
    await ctx.progress(label, "sandbox", 0, f"{label}: running {len(tests)} tests in the sandbox")
    return await anyio.to_thread.run_sync(lambda: run_tests(code, tests, mode=ctx.settings.sandbox))


def judge_model(ctx: RunContext) -> tuple[str, bool]:
    """The judge: a model of the profile that wrote neither answer if there is one (self-recusal)."""
    roles = ctx.settings.roles
    writers = {roles["primary"].model, roles["competitor"].model}
    for role in ("validator", "tools"):
        if roles[role].model not in writers and roles[role].backend_key == roles["validator"].backend_key:
            return roles[role].model, True
    return roles["validator"].model, False
