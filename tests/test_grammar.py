"""Constrained decoding pieces: grammars from constraints, and the MLX bitmask unpacking."""

from __future__ import annotations

import numpy as np
import pytest

from orchestration.models.grammar import GrammarProcessor, grammar_for
from orchestration.patterns._common import PICK_CONSTRAINT, VERDICT_CONSTRAINT
from orchestration.tools.catalogue import SEED_TOOLS
from orchestration.tools.extract import extraction_schema
from orchestration.tools.schema import token_bound
from orchestration.core.types import Constraint, ToolDefinition

pytestmark = pytest.mark.real_model  # needs the prepared tokenizer.json


@pytest.fixture(scope="module")
def lltok(real_settings):  # noqa: ANN001, ANN201
    import llguidance

    from orchestration.models.smollm2 import embedded_dir

    text = (embedded_dir(real_settings.models_dir, "dense") / "tokenizer.json").read_text()
    return llguidance.LLTokenizer(text, eos_token=2)


def accepts(lltok, grammar: str, text: str) -> bool:  # noqa: ANN001
    import llguidance

    m = llguidance.LLMatcher(lltok, grammar, log_level=0)
    ids = lltok.tokenize_str(text)
    return all(m.consume_token(t) for t in ids) and m.is_accepting()


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        (VERDICT_CONSTRAINT, ["PASS", "FAIL: no tests\n- slow"], ["MAYBE", "PASS with notes", "FAIL"]),
        (PICK_CONSTRAINT, ["A: shorter", "B: handles errors."], ["C: x", "Both", "a: lower"]),
        (Constraint(json_schema=extraction_schema(SEED_TOOLS, 2, 32)),
         ['[]', '[{"tool":"Read","arguments":{"file_path":"a.py"}}]'],
         ['[{"tool":"Launch","arguments":{}}]', '[{"tool":"Read","arguments":{}}]', "Sure: []",
          '[{"tool":"Read","arguments":{"file_path":"' + "x" * 40 + '"}}]']),
    ],
)
def test_grammars_accept_exactly_the_valid_outputs(lltok, constraint: Constraint, good: list[str],  # noqa: ANN001
                                                   bad: list[str]) -> None:
    grammar = grammar_for(constraint)
    for text in good:
        assert accepts(lltok, grammar, text), text
    for text in bad:
        assert not accepts(lltok, grammar, text), text


_NUM_TOOL = [ToolDefinition(name="convert", parameters={
    "type": "object", "properties": {"amount": {"type": "number"}, "count": {"type": "integer"},
                                      "any": {"type": ["string", "number", "boolean", "null"]}}})]


def test_numbers_are_bounded_so_extraction_always_ends(lltok) -> None:  # noqa: ANN001
    """A runaway number ("10.9999...", seen from the embedded model) is cut by the grammar, not the budget."""
    schema = extraction_schema(_NUM_TOOL, 1, 16)
    grammar = grammar_for(Constraint(json_schema=schema))

    def call(args: str) -> str:
        return '[{"tool":"convert","arguments":{' + args + "}}]"

    for ok in ['"amount":10.5', '"amount":-3.125', '"amount":46.603354', '"count":123456789012345',
               '"any":2.5', '"any":"x"', '"amount":12']:
        assert accepts(lltok, grammar, call(ok)), ok
    for bad in ['"amount":10.9999999', '"count":1' + "0" * 16, '"amount":1' + "0" * 16, '"any":0.12345678',
                '"count":1.5']:
        assert not accepts(lltok, grammar, call(bad)), bad
    # and the token budget is a true bound again
    assert token_bound(schema) < 400


def test_bitmask_unpacking_matches_a_reference(lltok) -> None:  # noqa: ANN001
    proc = GrammarProcessor(lltok, grammar_for(VERDICT_CONSTRAINT), n_prompt=0, vocab_size=lltok.vocab_size + 5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        proc.bitmask[:] = rng.integers(-2**31, 2**31 - 1, size=proc.bitmask.shape, dtype=np.int64).astype(np.int32)
        got = np.array(proc._allowed())
        ref = np.unpackbits(proc.bitmask.view(np.uint8), bitorder="little")[: lltok.vocab_size].astype(bool)
        assert got.shape == (lltok.vocab_size + 5,)
        assert (got[: lltok.vocab_size] == ref).all() and not got[lltok.vocab_size:].any()
