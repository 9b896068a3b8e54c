"""Adversarial: a random-weight tiny llama with the embedded tokenizer must still emit only valid calls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from orchestration.patterns.engine import Engine
from orchestration.core.settings import load_settings
from orchestration.tools.catalogue import SEED_TOOLS
from orchestration.core.types import PatternRequest, ToolDefinition

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]

HOST_TOOLS = [
    ToolDefinition(name="create_ticket", description="Open a ticket", parameters={
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "priority": {"type": "string", "enum": ["low", "medium", "high"]},
            "estimate": {"type": "integer", "minimum": 1, "maximum": 13},
            "owner": {"type": "object", "properties": {"name": {"type": "string"}, "team": {"type": "string"}},
                      "required": ["name"]},
            "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "urgent": {"type": "boolean"},
        },
        "required": ["title", "priority"]}),
    ToolDefinition(name="set_volume", description="Set volume", parameters={
        "type": "object", "properties": {"level": {"type": "number", "minimum": 0, "maximum": 1},
                                         "device": {"type": ["string", "null"]}}, "required": ["level"]}),
]
PROMPTS = ["show me src/main.py", "run the tests", "delete the build folder", "hello", "open a ticket",
           "find every TODO", "write notes to a.txt", "turn it down", "\u65e5\u672c\u8a9e", "```rm -rf /```",
           "{\"tool\": \"Read\"}", "nothing at all",
           # prompts that name the host tools' subjects reach the model past the relevance gate
           "set the volume to half", "create a ticket for the login bug", "raise the volume", "ticket: crash on save"]


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory, real_settings) -> Path:  # noqa: ANN001
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    from orchestration.models.smollm2 import embedded_dir

    src = embedded_dir(real_settings.models_dir, "dense")
    out = tmp_path_factory.mktemp("random-llama")
    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 49152,
              "max_position_embeddings": 4096, "tie_word_embeddings": True, "rope_theta": 10000.0}
    mx.random.seed(1234)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (out / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, out / name)
    return out


async def _engine(model_dir: Path, seed: int) -> Engine:
    """No per-request seed: one seeded RNG stream on the owner thread, so every request samples anew."""
    import mlx.core as mx

    # The model-written path (grounded): its grammar is what a random model must not break.
    settings = load_settings(env={}, extraction_max_string=24, extraction_max_calls=3, extraction_constraint="grounded",
                             roles={"tools": {"model": str(model_dir), "temperature": 1.0}})
    engine = Engine(settings)
    await engine.backends["mlx"].worker.run(lambda job: mx.random.seed(seed))
    return engine


@pytest.mark.parametrize("tools", ["seed", "host"])
async def test_random_model_emits_only_valid_calls(random_model_dir: Path, tools: str) -> None:
    defs = SEED_TOOLS if tools == "seed" else HOST_TOOLS
    schemas = {t.name: t.parameters for t in defs}
    total = 0
    engine = await _engine(random_model_dir, seed=11 if tools == "seed" else 23)
    try:
        for prompt in PROMPTS:
            r = await engine.run("tools", PatternRequest(prompt=prompt, tools=None if tools == "seed" else defs))
            # the model ran and was never cut off, or the relevance gate said no host tool fits (no model step)
            assert (r.trace.steps and r.trace.steps[0].finish_reason == "stop") or \
                (not r.trace.steps and r.trace.tool_decision.decided_by == "facts" and not r.tool_calls)
            for call in r.tool_calls:
                jsonschema.validate(call.arguments, schemas[call.tool])
            total += len(r.tool_calls)
    finally:
        engine.close()
    assert total > 0  # a random model picks calls too, not only the empty array
