"""Remote backends against a real mlx_lm.server on 127.0.0.1 (serving the embedded model), and the
seed's HTTP API as a real subprocess (`mageagent serve`) driven by the openai client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from orchestration.models.smollm2 import embedded_dir
from orchestration.patterns.engine import Engine
from orchestration.core.errors import BackendUnavailable, ModelNotFoundError
from orchestration.models.openai_backend import OpenAIBackend
from orchestration.core.settings import load_settings
from orchestration.models.testing import free_port, mlx_lm_server_command, wait_http
from orchestration.core.types import Chunk, GenerationRequest, Message, PatternRequest

pytestmark = pytest.mark.real_model


class MLXServer:
    def __init__(self, model_dir: Path, port: int) -> None:
        self.model_dir, self.port = model_dir, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> MLXServer:
        self.proc = subprocess.Popen(mlx_lm_server_command(str(self.model_dir), self.port),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_http(f"http://127.0.0.1:{self.port}/health", self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def mlx_server(real_settings) -> Iterator[MLXServer]:  # noqa: ANN001
    server = MLXServer(embedded_dir(real_settings.models_dir, "dense"), free_port()).start()
    yield server
    server.kill()


@pytest.mark.anyio
async def test_pattern_with_remote_primary_and_in_process_validator(mlx_server: MLXServer) -> None:
    # plumbing at 16 tokens: the code budget too (its default, 768, let the tiny model write 211 tokens here),
    # no continuation of the cut-off code and one generated test (see conftest.pytest_configure)
    settings = load_settings(env={}, profile="tiny", max_tokens=16, code_max_tokens=16, continuation_tokens=0,
                             generated_tests=1,
                             roles={"primary": {"model": str(mlx_server.model_dir), "backend": "openai",
                                                "base_url": mlx_server.base_url, "structured_output": "none"}})
    engine = Engine(settings)
    try:
        r = await engine.run("validated", PatternRequest(prompt="Write a Python function that adds two numbers.",
                                                         extraction="never", temperature=0))
        state = engine.models_state()
    finally:
        engine.close()
    steps = r.trace.steps
    assert steps[0].role == "primary" and steps[0].model == str(mlx_server.model_dir)
    assert steps[0].completion_tokens > 0 and steps[0].prompt_tokens > 0  # usage from the server
    assert steps[1].role == "validator" and steps[1].model == "smollm2-135m"
    assert r.text.strip() and r.trace.verdicts
    assert state["roles"]["primary"]["backend"] == "openai" and state["roles"]["primary"]["loaded"]


@pytest.mark.anyio
async def test_wrong_model_name_is_an_actionable_error(mlx_server: MLXServer) -> None:
    backend = OpenAIBackend(mlx_server.base_url, retries=0, structured_output="none")
    with pytest.raises(ModelNotFoundError) as e:  # mlx_lm.server answers 404 for a model it cannot find
        await backend.stream(GenerationRequest(model="no-such/model-xyz", max_tokens=4,
                                               messages=[Message(role="user", content="hi")]))
    assert "'no-such/model-xyz'" in str(e.value) and mlx_server.base_url in str(e.value)


@pytest.mark.anyio
async def test_remote_stream_reports_chunks_and_usage(mlx_server: MLXServer) -> None:
    backend = OpenAIBackend(mlx_server.base_url, structured_output="none")
    chunks: list[Chunk] = []

    async def on_chunk(c: Chunk) -> None:
        chunks.append(c)

    c = await backend.stream(GenerationRequest(model=str(mlx_server.model_dir), max_tokens=12,
                                               messages=[Message(role="user", content="Count to five.")]),
                             on_chunk)
    assert len(chunks) >= 2 and "".join(x.text for x in chunks) == c.text
    assert c.completion_tokens > 0 and c.prompt_tokens > 5 and not c.constrained


@pytest.mark.anyio
async def test_unreachable_then_a_crash_mid_stream_then_recovery(real_settings) -> None:  # noqa: ANN001
    port = free_port()
    model_dir = embedded_dir(real_settings.models_dir, "dense")
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", retries=1, structured_output="none")
    req = GenerationRequest(model=str(model_dir), max_tokens=400, temperature=0,
                            messages=[Message(role="user", content="Write a long story about a dragon.")])
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await backend.stream(req.model_copy(update={"max_tokens": 4}))
    server = MLXServer(model_dir, port).start()
    try:
        killed = False

        async def kill_after_first(c: Chunk) -> None:
            nonlocal killed
            if c.tokens >= 3 and not killed:
                killed = True
                server.kill()

        with pytest.raises(BackendUnavailable, match="mid-stream"):
            await backend.stream(req, kill_after_first)
        server.start()  # back on the same port
        ok = await backend.stream(req.model_copy(update={"max_tokens": 4}))
        assert ok.text and ok.completion_tokens > 0
    finally:
        server.kill()


def test_mageagent_serve_with_the_openai_client(real_settings) -> None:  # noqa: ANN001
    port = free_port()
    env = {**os.environ, "MAGEAGENT_MAX_TOKENS": "12"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.faces.cli", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="mageagent:primary", temperature=0,
                                           messages=[{"role": "user", "content": "Say hello."}])
        assert r.choices[0].message.content and r.usage.completion_tokens > 0
        text = ""
        for chunk in client.chat.completions.create(model="mageagent:tools", stream=True, messages=[
                {"role": "user", "content": "Show me the file src/main.py"}]):
            text += chunk.choices[0].delta.content or ""
        assert text
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="mageagent:bogus", messages=[{"role": "user", "content": "x"}])
    finally:
        proc.terminate()
        proc.wait(10)


