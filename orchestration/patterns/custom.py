"""Custom patterns from the config file: run a :class:`~orchestration.core.custom.CustomPattern`'s steps in order."""

from __future__ import annotations

from ..core.custom import CustomPattern
from ..core.types import PatternRequest, PatternResult, ToolCall
from ..run import prompts
from ..run.context import RunContext
from ..tools.extract import extract_tool_calls
from ._common import judge, validate

__all__ = ["make_custom"]


def make_custom(name: str, spec: CustomPattern):  # noqa: ANN201 - returns a PatternFn
    """The pattern function for ``spec`` (checked at start-up, so every reference resolves)."""
    index = {s.name: i for i, s in enumerate(spec.steps)}

    async def run(request: PatternRequest, ctx: RunContext) -> PatternResult:
        outputs: dict[str, str] = {}
        rounds: dict[str, int] = {}
        feedback = ""
        calls: list[ToolCall] = []
        i = 0
        while i < len(spec.steps):
            step = spec.steps[i]
            role = step.role or "primary"
            values = {"prompt": request.prompt, "context": request.context or "", "feedback": feedback, **outputs}
            text = (step.prompt or "").format_map(values)
            if step.kind == "generate":
                messages = prompts.step(text, request.system or ctx.role_system(role))
                c = await ctx.generate(role, messages, purpose=step.name, max_tokens=step.max_tokens,
                                       model=step.model)
                outputs[step.name] = c.text
            elif step.kind == "validate":
                verdict = await validate(ctx, text, step.name, model=step.model)
                ctx.trace.verdicts.append(verdict)
                outputs[step.name] = "PASS" if verdict.verdict == "PASS" else (
                    "\n".join(f"- {issue}" for issue in verdict.issues) or "FAIL (no details given)")
                used = rounds.get(step.name, 0)
                if verdict.verdict == "FAIL" and step.on_fail is not None and used < step.max_rounds:
                    rounds[step.name] = used + 1
                    feedback = outputs[step.name]
                    i = index[step.on_fail]
                    continue
            elif step.kind == "judge":
                a, b = (outputs[c] for c in step.candidates or [])
                swap = request.swap if request.swap is not None else step.swap
                judgement = await judge(ctx, a, b, swap, model=step.model, label=step.name)
                ctx.trace.judgement = judgement
                outputs[step.name] = a if judgement.pick == "A" else b
            else:  # extract_tools
                if (request.extraction or "auto") == "never":
                    ctx.trace.extraction = f"skipped: extraction = never ({step.name})"
                else:
                    ctx.trace.extraction = f"step {step.name} from {step.source}"
                    calls = await extract_tool_calls(ctx, outputs[step.source or ""], model=step.model)
            i += 1
        ctx.trace.revisions = sum(rounds.values())
        return ctx.result(outputs[spec.answer_step], calls)

    run.__name__ = f"custom_{name}"
    run.__doc__ = spec.description
    return run
