"""The real embedded model: converter fidelity, a coherent greedy answer, memory, every pattern once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.models.convert import build_tokenizer_json, unpermute_rows
from orchestration.patterns.engine import Engine
from orchestration.patterns import PATTERNS
from orchestration.tools.catalogue import SEED_TOOLS
from orchestration.core.types import Message, PatternRequest

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]
DATA = Path(__file__).parent / "data" / "smollm2-token-ids.json"


def _gguf(settings) -> Path:  # noqa: ANN001
    from orchestration.models.smollm2 import find_gguf

    found = find_gguf(settings.cache_dir)
    assert found is not None, "run `mageagent setup`"
    return found[0]


def test_tokenizer_matches_llama_cpp_ids(real_settings) -> None:  # noqa: ANN001
    import mlx.core as mx
    from tokenizers import Tokenizer

    _, meta = mx.load(str(_gguf(real_settings)), return_metadata=True)
    tok = Tokenizer.from_str(build_tokenizer_json(meta))
    cases = json.loads(DATA.read_text())
    assert len(cases) == 9
    for text, ids in cases:
        assert tok.encode(text, add_special_tokens=False).ids == ids, text[:40]
        assert tok.decode(ids, skip_special_tokens=False) == text


def test_converted_tokenizer_in_model_dir_matches_too(real_settings) -> None:  # noqa: ANN001
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    from orchestration.models.smollm2 import embedded_dir

    tok = load_tokenizer(embedded_dir(real_settings.models_dir, "dense"))
    for text, ids in json.loads(DATA.read_text()):
        assert tok.encode(text, add_special_tokens=False) == ids
    assert tok.eos_token == "<|im_end|>"
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")


def test_unpermute_is_equivalent_to_traditional_rope(real_settings, real_engine: Engine) -> None:  # noqa: ANN001
    """Our un-permuted rows with split-half RoPE give the same logits as GGUF rows with traditional RoPE."""
    from orchestration.models.smollm2 import embedded_dir

    path = embedded_dir(real_settings.models_dir, "dense")

    def compare(job) -> tuple[bool, float]:  # noqa: ANN001
        # On the MLX owner thread: a forward pass on the main thread leaves MLX's thread-local compile
        # cache there, whose destructor crashes the interpreter at exit.
        import mlx.core as mx
        from mlx_lm.models import llama

        config = json.loads((path / "config.json").read_text())
        weights = mx.load(str(path / "model.safetensors"))

        def permute(rows, n_head):  # llama.cpp's converter permutation  # noqa: ANN001, ANN202
            shape = rows.shape
            return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)

        q0 = weights["model.layers.0.self_attn.q_proj.weight"]
        roundtrip = bool(mx.array_equal(unpermute_rows(permute(q0, 9), 9), q0))
        gguf_layout = dict(weights)
        for k, v in weights.items():
            if k.endswith("q_proj.weight"):
                gguf_layout[k] = permute(v, config["num_attention_heads"])
            elif k.endswith("k_proj.weight"):
                gguf_layout[k] = permute(v, config["num_key_value_heads"])
        ours = llama.Model(llama.ModelArgs.from_dict(config))
        ours.load_weights(list(weights.items()))
        trad = llama.Model(llama.ModelArgs.from_dict({**config, "rope_traditional": True}))
        trad.load_weights(list(gguf_layout.items()))
        x = mx.array([[19556, 905, 17, 1604, 275, 24, 104, 727, 472]])
        return roundtrip, mx.abs(ours(x) - trad(x)).max().item()

    roundtrip, diff = real_engine.backends["mlx"].worker.submit(compare).future.result(120)
    assert roundtrip
    assert diff < 1e-3


async def test_greedy_coding_answer_is_coherent(real_engine: Engine) -> None:
    from orchestration.core.types import GenerationRequest

    backend = real_engine.backends["mlx"]
    c = await backend.stream(GenerationRequest(
        model="embedded", max_tokens=60, temperature=0.0,
        messages=[Message(role="user", content="Write a Python function that reverses a string.")]))
    assert "def " in c.text and "return" in c.text
    assert c.completion_tokens > 5 and c.generation_tps > 0 and c.prompt_tokens > 10


async def test_shared_model_loads_once_and_unload_frees_memory(real_engine: Engine) -> None:
    import mlx.core as mx

    backend = real_engine.backends["mlx"]
    key = backend.resolve("smollm2-135m").key  # the old name "embedded" is the same directory, the same copy
    await backend.warmup(["smollm2-135m"])
    states = [s for s in backend.state() if s.key == key]
    assert len(states) == 1 and states[0].loaded and states[0].loads >= 1
    loads = states[0].loads
    await backend.warmup(["smollm2-135m", "embedded"])  # every role, and the old name, share one copy
    assert [s for s in backend.state() if s.key == key][0].loads == loads
    before = await backend.worker.run(lambda job: mx.get_active_memory())
    assert await backend.unload("smollm2-135m")
    after = await backend.worker.run(lambda job: mx.get_active_memory())
    assert before - after > 400e6  # the 540 MB dense copy is really given back
    assert not [s for s in backend.state() if s.key == key][0].loaded


async def test_the_real_model_only_chooses_among_candidates(real_engine: Engine) -> None:
    """Where the request does not ask for the answer's command, the tiny model picks a candidate by number (or
    none) under the options constraint: what comes back is the answer's own command or nothing, never new text."""
    from orchestration.run.context import RunContext
    from orchestration.tools.extract import decide_calls

    request = PatternRequest(prompt="I want to fetch web pages in my script")
    ctx = RunContext("hybrid", request, real_engine.settings, real_engine.backends)
    calls = await decide_calls(ctx, "Use requests.\n\n```bash\npip install requests\n```\n")
    d = ctx.trace.tool_decision
    assert d.decided_by == "model" and set(d.probabilities) <= {"1", "none"}
    assert abs(sum(d.probabilities.values()) - 1) < 0.05
    assert [c.arguments for c in calls] in ([], [{"command": "pip install requests"}])
    assert (calls == []) == (d.chosen == [])


async def test_constrained_extraction_on_the_real_model_is_valid(real_engine: Engine) -> None:
    """The model-written path (host tools, or extraction_constraint = grounded) stays valid on a real model."""
    import jsonschema

    from orchestration.run.context import RunContext
    from orchestration.tools.extract import extract_tool_calls

    settings = real_engine.settings.model_copy(update={"extraction_constraint": "grounded"})
    ctx = RunContext("tools", PatternRequest(prompt="Show me the contents of the file src/main.py"), settings,
                     real_engine.backends)
    calls = await extract_tool_calls(ctx, None)
    schema_by_tool = {t.name: t.parameters for t in SEED_TOOLS}
    assert calls, "the model was asked for a call and gave none"
    for call in calls:
        jsonschema.validate(call.arguments, schema_by_tool[call.tool])
    assert ctx.trace.steps[0].finish_reason == "stop"


@pytest.mark.parametrize("name", list(PATTERNS))
async def test_every_pattern_once(real_engine: Engine, name: str) -> None:
    request = PatternRequest(prompt="Write a Python function that adds two numbers and save it to the file add.py",
                             max_tokens=16, swap=True)
    r = await real_engine.run(name, request)
    # the tools pattern is decided by facts here (a named file, no code to write): no model step, and it says so
    assert r.pattern == name and (r.trace.steps or (name == "tools" and r.trace.tool_decision.decided_by != "model"))
    assert all(s.model == "smollm2-135m" and s.completion_tokens > 0 and s.seconds > 0 for s in r.trace.steps)
    assert r.totals.completion_tokens == sum(s.completion_tokens for s in r.trace.steps)
    if name != "tools":
        assert r.text.strip()
    if name in ("validated", "auto"):
        v = r.trace.verdicts[0]
        # an opinion carries the validator's probability; an executed check carries what ran instead
        assert (0 < v.confidence <= 1) if v.method == "model" else (v.execution is not None or v.issues)
    if name == "compete":
        j = r.trace.judgement
        assert j is not None and len(j.verdicts) == 2 and j.candidates["A"] != j.candidates["B"]
        assert 0 < j.confidence <= 1
    if name == "auto":
        assert r.trace.route == "validated" and "function" in r.trace.matched_keywords


TOOL_TABLE = [
    ("Show me the contents of the file src/main.py", "Read"),
    ("Run the test suite with pytest", "Bash"),
    ("Search the code for the word TODO", "Grep"),
    ("Create a file hello.txt containing the word hi", "Write"),
    ("In config.py replace DEBUG = True with DEBUG = False", "Edit"),
]


async def test_tool_table_on_the_real_model_is_all_valid(real_engine: Engine) -> None:
    """Every call is schema-valid; how many pick the expected tool is reported (scripts/bench.py tracks it)."""
    import jsonschema

    schemas = {t.name: t.parameters for t in SEED_TOOLS}
    hits = 0
    # the model-written path (the default decides these by facts): its grammar must keep every call valid
    engine = Engine(real_engine.settings.model_copy(update={"extraction_constraint": "grounded"}),
                    real_engine.backends)
    for prompt, expected in TOOL_TABLE:
        r = await engine.run("tools", PatternRequest(prompt=prompt))
        assert r.trace.steps[0].finish_reason == "stop"
        for call in r.tool_calls:
            jsonschema.validate(call.arguments, schemas[call.tool])
        hits += bool(r.tool_calls) and r.tool_calls[0].tool == expected
    print(f"expected tool picked first: {hits}/{len(TOOL_TABLE)}")
