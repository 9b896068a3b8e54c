"""Section remote: roles in-process versus on an OpenAI-compatible server (the ``openai`` backend).

- ``mlx_lm_server``: the primary role on mlx_lm.server, the same model directory, the short call.
- ``llama_cpp_server``: where the primary is a local Qwen2.5-Coder model and llama-cpp-python's server is
  installed (the optional ``.[llama]`` extra), the primary and tools roles on ``llama_cpp.server`` over the
  GGUF the dense model was converted from: the short call and the bench's hybrid task (answer, then the
  extraction under a JSON schema sent as ``response_format`` type ``json_object``; option picks as a GBNF
  ``grammar``), against the same calls
  in-process. This is the configuration the README shows for pointing a role at llama.cpp.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.settings import Settings, derive
from .common import PROMPT, SMALL, say, spread

__all__ = ["run", "llama_cpp_server", "llama_cpp_server_command", "llama_cpp_roles"]


def llama_cpp_server_command(gguf: str, port: int, alias: str, threads: int | None = None) -> list[str]:
    """llama-cpp-python's OpenAI server on 127.0.0.1:``port`` for ``gguf``, known as ``alias``. Its default
    ``logits_all`` stays on: the verdict and judge steps ask for ``top_logprobs``."""
    n = str(threads or os.cpu_count() or 1)
    return [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", alias, "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "8192", "--n_threads", n, "--n_threads_batch", n]


@contextmanager
def llama_cpp_server(gguf: str, alias: str, log: Path, timeout: float = 180) -> Iterator[str]:
    """llama-cpp-python's server for ``gguf`` on a free loopback port, its output in ``log`` (a file: its load
    log would fill a pipe); yields the base URL and stops the server after. One that does not come up fails
    with the log's tail."""
    from ..models.testing import free_port, wait_http

    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(llama_cpp_server_command(gguf, port, alias), stdout=sink, stderr=sink)
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; server log: {log.read_text(errors='replace')[-1500:]}") from None
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def llama_cpp_roles(base_url: str, alias: str, roles: tuple[str, ...] = ("primary", "tools")) -> dict[str, Any]:
    """Role overrides that point ``roles`` at a llama-cpp-python server (its constraint forms: ``llama_cpp``)."""
    return {r: {"model": alias, "backend": "openai", "base_url": base_url, "structured_output": "llama_cpp"}
            for r in roles}


async def _time(settings: Settings, roles: dict[str, Any], calls: dict[str, tuple[str, Any]],
                reps: int) -> dict[str, Any]:
    from ..patterns.engine import Engine

    eng = Engine(derive(settings, {"roles": roles}))
    out: dict[str, Any] = {}
    try:
        for name, (pattern, call) in calls.items():
            first = await eng.run(pattern, call)  # loads the models (in-process) or warms the server
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                last = await eng.run(pattern, call)
                ts.append(time.perf_counter() - t0)
            out[name] = spread(ts)
            out[name]["tool_calls"] = [c.tool for c in last.tool_calls]
            out[name]["steps"] = [{"purpose": s.purpose, "role": s.role, "seconds": round(s.seconds, 2),
                                   "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens}
                                  for s in last.trace.steps]
            out[name]["same_text_as_first"] = last.text == first.text
    finally:
        eng.close()
    return out


async def _mlx_lm_server(settings: Settings, reps: int, small: Any) -> dict[str, Any]:
    from ..models.catalog import LOCAL, local_dir
    from ..models.testing import free_port, mlx_lm_server_command, wait_http

    model = settings.roles["primary"].model
    if model not in LOCAL:
        return {"skipped": f"primary is {model}; this comparison serves a local model on mlx_lm.server"}
    model_dir = local_dir(settings.models_dir, model)
    port = free_port()
    proc = subprocess.Popen(mlx_lm_server_command(str(model_dir), port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        roles = {"primary": {"model": str(model_dir), "backend": "openai", "structured_output": "none",
                             "base_url": f"http://127.0.0.1:{port}/v1"}}
        return (await _time(settings, roles, {"small": ("primary", small)}, reps))["small"]
    finally:
        proc.terminate()
        proc.wait(10)


async def _llama_cpp_server(settings: Settings, reps: int, calls: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    from ..models import qwen25_coder

    model = settings.roles["primary"].model
    if settings.roles["tools"].model != model or model not in qwen25_coder.MODELS:
        return {"skipped": "needs the primary and tools roles on one local Qwen2.5-Coder model (the GGUF it serves)"}
    try:
        import llama_cpp.server  # binds llama_cpp too
    except ImportError as e:
        return {"skipped": f"llama-cpp-python's server is not installed ({e}): pip install -e '.[llama]'"}
    gguf = settings.cache_dir / "gguf" / qwen25_coder.MODELS[model].source.name
    if not gguf.is_file():
        return {"skipped": f"{gguf} is missing: run `mageagent setup --model {model}`"}
    with llama_cpp_server(str(gguf), model, settings.cache_dir / "llama_cpp_server.log") as base_url:
        res = await _time(settings, llama_cpp_roles(base_url, model), calls, reps)
    res["llama_cpp_python"] = llama_cpp.__version__
    res["gguf"] = gguf.name
    return res


async def run(settings: Settings, reps: int) -> dict[str, Any]:
    """The short call in-process, on mlx_lm.server and on llama.cpp's server; hybrid in-process and on llama.cpp."""
    from ..core.types import PatternRequest

    small = PatternRequest(**SMALL, temperature=0.0)
    hybrid = PatternRequest(prompt=PROMPT, max_tokens=128, temperature=0.0)
    res: dict[str, Any] = {}
    llama = await _llama_cpp_server(settings, reps, {"small": ("primary", small), "hybrid": ("hybrid", hybrid)})
    local = await _time(settings, {}, {"small": ("primary", small)} | (
        {"hybrid": ("hybrid", hybrid)} if "skipped" not in llama else {}), reps)
    res["in_process"] = local["small"]
    res["mlx_lm_server"] = await _mlx_lm_server(settings, reps, small)
    if "skipped" not in res["mlx_lm_server"]:
        res["ratio"] = round(res["mlx_lm_server"]["median_s"] / res["in_process"]["median_s"], 3)
    res["llama_cpp_server"] = llama
    if "skipped" not in llama:
        res["in_process_hybrid"] = local["hybrid"]
        res["llama_over_in_process"] = {k: round(llama[k]["median_s"] / local[k]["median_s"], 3)
                                        for k in ("small", "hybrid")}
    say("  remote: done")
    return res
