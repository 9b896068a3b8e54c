"""The bench's llama.cpp comparison: its skip paths say why, and its table renders (the measurement itself is
`mageagent bench --sections peers`, not a test)."""

from __future__ import annotations

import sys

from orchestration.bench import peers
from orchestration.bench.report import markdown
from orchestration.settings import load_settings

HEAD = {"profile": "qwen", "roles": {"primary": "qwen2.5-coder-0.5b"}, "blas": {}, "cpu_count": 2, "max_tokens": 48,
        "reps": 1}


def test_without_llama_cpp_the_section_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails
    r = peers.run(load_settings(env={}, profile="qwen"))
    assert "pip install -e '.[llama]'" in r["skipped"]
    assert "peers: llama-cpp-python is not installed" in markdown({**HEAD, "peers": r})


def test_a_profile_without_local_qwen_models_is_skipped(monkeypatch):
    class Fake:
        __version__ = "0"

    monkeypatch.setitem(sys.modules, "llama_cpp", Fake())
    r = peers.run(load_settings(env={}, profile="tiny"))
    assert "no role runs a local Qwen2.5-Coder model" in r["skipped"]


def test_the_table_shows_both_engines_and_the_ratios():
    r = {"peers": {"llama_cpp_python": "0.3.36", "prompt_tokens": 512, "generation_tokens": 48, "models": {
        "qwen2.5-coder-0.5b": {"mlx_dense_fp32": {"prompt_tps": 88.0, "generation_tps": 6.2},
                               "llama_cpp_q4_k_m": {"prompt_tps": 176.0, "generation_tps": 31.0},
                               "prompt_ratio_llama_over_mlx": 2.0, "generation_ratio_llama_over_mlx": 5.0,
                               "greedy_tokens_agreeing_before_first_difference": "20/48"}}}}
    md = markdown({**HEAD, **r})
    assert "| qwen2.5-coder-0.5b | mlx_dense_fp32 | 88.0 | 6.2 |" in md
    assert "| qwen2.5-coder-0.5b | llama.cpp / MLX | 2.0x | 5.0x |" in md


def test_a_llama_cpp_crash_is_reported_not_fatal(tmp_path):
    from orchestration.bench.peers import _llama_isolated

    r = _llama_isolated(str(tmp_path / "missing.gguf"), [1, 2, 3])  # the child fails to open the file
    assert "llama.cpp died" in r["crashed"] and "missing.gguf" in r["crashed"]
