"""The bench's llama.cpp comparison: its skip paths say why, and its table renders (the measurement itself is
`mageagent bench --sections peers`, not a test)."""

from __future__ import annotations

import sys

from orchestration.bench import peers
from orchestration.bench.report import markdown
from orchestration.core.settings import load_settings

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


# -- the remote section's llama.cpp server leg ---------------------------------------------------------------

def test_the_llama_cpp_server_leg_needs_one_local_qwen_model_for_primary_and_tools():
    import anyio

    from orchestration.bench import remote

    tiny = load_settings(env={}, profile="tiny")
    r = anyio.run(remote._llama_cpp_server, tiny, 1, {})
    assert "one local Qwen2.5-Coder model" in r["skipped"]


def test_the_llama_cpp_server_leg_says_how_to_get_the_server(monkeypatch):
    import anyio

    from orchestration.bench import remote

    monkeypatch.setitem(sys.modules, "llama_cpp.server", None)  # import fails
    r = anyio.run(remote._llama_cpp_server, load_settings(env={}, profile="qwen"), 1, {})
    assert "pip install -e '.[llama]'" in r["skipped"]


def test_roles_pointed_at_llama_cpp_use_its_constraint_forms():
    from orchestration.bench.remote import llama_cpp_roles, llama_cpp_server_command
    from orchestration.core.settings import derive

    s = derive(load_settings(env={}, profile="qwen"),
               {"roles": llama_cpp_roles("http://127.0.0.1:8080/v1", "qwen2.5-coder-0.5b")})
    assert s.roles["tools"].backend == "openai" and s.roles["tools"].structured_output == "llama_cpp"
    assert s.roles["primary"].backend_key == "openai:http://127.0.0.1:8080/v1"
    assert s.roles["validator"].backend == "mlx"  # only the roles named move
    cmd = llama_cpp_server_command("/m.gguf", 8080, "qwen2.5-coder-0.5b", threads=2)
    assert cmd[1:3] == ["-m", "llama_cpp.server"] and cmd[cmd.index("--n_threads") + 1] == "2"


def test_the_remote_table_shows_the_llama_cpp_server_beside_in_process():
    leg = {"median_s": 2.0, "min_s": 2.0, "max_s": 2.0, "n": 1, "tool_calls": ["Write"], "steps": []}
    r = {"remote": {"in_process": {**leg, "median_s": 4.0, "tool_calls": []},
                    "in_process_hybrid": {**leg, "median_s": 30.0},
                    "mlx_lm_server": {"skipped": "primary is x"},
                    "llama_cpp_server": {"small": leg, "hybrid": {**leg, "median_s": 10.0}, "gguf": "q.gguf",
                                         "llama_cpp_python": "0.3.36"},
                    "llama_over_in_process": {"small": 0.5, "hybrid": 0.333}}}
    md = markdown({**HEAD, **r})
    assert "mlx_lm.server: primary is x" in md
    assert "| hybrid | 30.0 | 10.0 | 0.333 | Write / Write |" in md
    assert "| small | 4.0 | 2.0 | 0.5 | - / Write |" in md
