from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.core.errors import ConfigError
from orchestration.core.settings import ROLES, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mageagent.toml"
    p.write_text(text)
    return p


def test_defaults_are_the_qwen_profile() -> None:
    s = load_settings(env={})
    assert s.profile == "qwen" and set(s.roles) == set(ROLES)
    models = {r: c.model for r, c in s.roles.items()}
    assert models == {"primary": "qwen2.5-coder-0.5b", "competitor": "qwen2.5-coder-1.5b",
                      "validator": "qwen2.5-coder-0.5b", "tools": "qwen2.5-coder-0.5b"}
    assert models["primary"] != models["competitor"]  # compete pits two different models
    assert s.roles["competitor"].draft_model == "qwen2.5-coder-0.5b"  # the 1.5B drafts with the loaded 0.5B
    assert all(c.temperature == 0.0 for c in s.roles.values())


def test_tiny_profile_is_the_old_embedded_one() -> None:
    s = load_settings(env={"MAGEAGENT_PROFILE": "tiny"})
    assert all(s.roles[r].model == "smollm2-135m" for r in ROLES)
    assert load_settings(env={}, profile="embedded").roles == s.roles  # the old name still works
    # compete's A and B must differ even at temperature 0: the competitor has its own prompt and sampling
    assert s.roles["competitor"].system and s.roles["competitor"].temperature
    assert s.memory_budget_gb > 0


def test_reference_profile_maps_the_seed_models() -> None:
    s = load_settings(env={"MAGEAGENT_PROFILE": "reference"})
    assert s.roles["primary"].model == "mlx-community/Qwen2.5-72B-Instruct-8bit"
    assert s.roles["tools"].model == "mlx-community/Hermes-3-Llama-3.1-8B-8bit"
    assert s.roles["validator"].quantization == "4-bit"


@pytest.mark.parametrize(
    ("file_text", "env", "overrides", "expected"),
    [
        ("max_tokens = 100", {}, {}, 100),
        ("max_tokens = 100", {"MAGEAGENT_MAX_TOKENS": "200"}, {}, 200),
        ("max_tokens = 100", {"MAGEAGENT_MAX_TOKENS": "200"}, {"max_tokens": 300}, 300),
        ("", {}, {}, 512),
    ],
)
def test_precedence_file_env_overrides(tmp_path: Path, file_text: str, env: dict, overrides: dict,
                                       expected: int) -> None:
    s = load_settings(write(tmp_path, file_text), env=env, **overrides)
    assert s.max_tokens == expected


def test_config_path_from_env_and_nested_role_keys(tmp_path: Path) -> None:
    p = write(tmp_path, '[roles.tools]\nmodel = "/models/hermes"\ntemperature = 0.1\n')
    s = load_settings(env={"MAGEAGENT_CONFIG": str(p), "MAGEAGENT_ROLES__TOOLS__TEMPERATURE": "0.3"})
    assert s.roles["tools"].model == "/models/hermes"
    assert s.roles["tools"].temperature == 0.3
    assert s.roles["primary"].model == "qwen2.5-coder-0.5b"  # untouched roles keep the profile's
    assert s.config_file == p


def test_relative_cache_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, 'cache_dir = "cache"'), env={})
    assert s.cache_dir == tmp_path / "cache"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('profile = "huge"', ["mageagent.toml", "'profile'", "'tiny', 'embedded' or 'reference'", "'huge'"]),
        ("max_tokenz = 3", ["'max_tokenz'", "unknown key", "max_tokens"]),
        ("[roles.primary]\nmodle = 'x'", ["'roles.primary.modle'", "unknown key", "model"]),
        ("[roles.critic]\nmodel = 'x'", ["roles.critic", "'primary', 'competitor', 'validator' or 'tools'"]),
        ("temperature = 9", ["'temperature'", "less than or equal to 2"]),
        ("max_tokens = [", ["not valid TOML"]),
    ],
)
def test_bad_files_name_file_key_and_allowed(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env={})
    for f in fragments:
        assert f in str(e.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable MAGEAGENT_MAX_TOKENS"):
        load_settings(env={"MAGEAGENT_MAX_TOKENS": "lots"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "nope.toml", env={})


def test_the_llama_cpp_example_points_every_role_at_its_servers() -> None:
    s = load_settings(Path(__file__).parents[1] / "examples" / "llama_cpp.toml", env={})
    assert s.profile == "qwen"
    assert {r: (c.backend, c.base_url, c.model, c.structured_output) for r, c in s.roles.items()} == {
        "primary": ("openai", "http://127.0.0.1:8080/v1", "qwen2.5-coder-0.5b", "llama_cpp"),
        "validator": ("openai", "http://127.0.0.1:8080/v1", "qwen2.5-coder-0.5b", "llama_cpp"),
        "tools": ("openai", "http://127.0.0.1:8080/v1", "qwen2.5-coder-0.5b", "llama_cpp"),
        "competitor": ("openai", "http://127.0.0.1:8081/v1", "qwen2.5-coder-1.5b", "llama_cpp")}
    assert s.roles["competitor"].draft_model is None  # the profile's MLX draft does not follow it to a server
    assert s.roles["competitor"].temperature == 0.0  # its sampling does


def test_a_draft_model_on_a_remote_role_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, '[roles.primary]\nbackend = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\n'
                        'draft_model = "qwen2.5-coder-0.5b"\n')
    with pytest.raises(ConfigError, match="draft_model applies to backend 'mlx' only"):
        load_settings(p, env={})


@pytest.mark.parametrize(("text", "env", "fragments"), [
    ('profile = ["tiny"]\n', {}, ["key 'profile'", "(got ['tiny'])"]),
    ("[profile]\nname = 'tiny'\n", {}, ["key 'profile'", "'tiny', 'embedded' or 'reference'"]),
    ("memory_budget_gb = inf\n", {}, ["key 'memory_budget_gb'", "finite"]),
    ("memory_budget_gb = nan\n", {}, ["key 'memory_budget_gb'", "finite"]),
    ('cache_dir = "~nosuchuser/cache"\n', {}, ["key 'cache_dir'", "'~nosuchuser'", "no user's home"]),
    ('log_file = "~nosuchuser/m.log"\n', {}, ["key 'log_file'", "'~nosuchuser'"]),
    ("", {"MAGEAGENT_CACHE_DIR": "~nosuchuser/c"}, ["MAGEAGENT_CACHE_DIR", "no user's home"]),
    ("", {"MAGEAGENT_MEMORY_BUDGET_GB": "inf"}, ["MAGEAGENT_MEMORY_BUDGET_GB", "finite"]),
    ("", {"MAGEAGENT_LOG_FILE": "{tmp}"}, ["MAGEAGENT_LOG_FILE", "is a directory"]),
])
def test_bad_values_are_one_line_naming_the_key(tmp_path: Path, text: str, env: dict[str, str],
                                                fragments: list[str]) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env={k: v.format(tmp=tmp_path) for k, v in env.items()})
    message = str(e.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_a_config_path_naming_no_users_home_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable MAGEAGENT_CONFIG: '~nosuchuser' in "):
        load_settings(env={"MAGEAGENT_CONFIG": "~nosuchuser/m.toml"})
    with pytest.raises(ConfigError, match=r"^--config: '~nosuchuser'"):
        load_settings("~nosuchuser/m.toml", env={})


@pytest.mark.parametrize("value", ['["mage.lan:*", "10.0.0.2:3457"]', "mage.lan:*, 10.0.0.2:3457"])
def test_lists_can_be_set_from_the_environment(value: str) -> None:
    publish = value.replace("mage.lan:*", "hybrid").replace("10.0.0.2:3457", "tools")
    s = load_settings(env={"MAGEAGENT_HTTP__ALLOWED_HOSTS": value, "MAGEAGENT_HTTP__ALLOWED_ORIGINS": value,
                           "MAGEAGENT_PUBLISH": publish})
    assert s.http.allowed_hosts == s.http.allowed_origins == ["mage.lan:*", "10.0.0.2:3457"]
    assert s.publish == ["hybrid", "tools"]
    with pytest.raises(ConfigError, match="MAGEAGENT_PUBLISH.*not a JSON list"):
        load_settings(env={"MAGEAGENT_PUBLISH": '["hybrid"'})


def test_settings_and_types_import_nothing_above_them() -> None:
    """The ground floor knows no pattern: every import in settings.py and types.py, lazy ones included, stays on
    the ground floor (the pattern-name check used to import the pattern table and close a 23-module circle)."""
    import ast

    ground = {"errors", "custom", "settings", "types"}
    root = Path(__file__).parents[1] / "orchestration" / "core"
    for name in ("settings.py", "types.py"):
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (node.module or "").split(".")[0] in ground, (name, ast.unparse(node))


@pytest.mark.parametrize(("overrides", "judge", "stronger"), [
    ({}, "stronger", "competitor"),  # measured: the 1.5B passes more (orchestration/evaluation/measured_routes.json)
    ({"judge": "pointwise"}, "pointwise", "competitor"),  # asked for: kept
    ({"roles": {"competitor": {"temperature": 0.2}}}, "stronger", "competitor"),  # same models: still measured
    ({"roles": {"competitor": {"model": "smollm2-135m"}}}, "pointwise", None),  # another model: nothing measured
    ({"profile": "tiny"}, "pointwise", None),
    ({"profile": "tiny", "judge": "stronger", "stronger": "primary"}, "stronger", "primary"),  # stated
    ({"profile": "tiny", "stronger": "primary"}, "stronger", "primary"),  # stated: its judge follows
    ({"stronger": "primary", "judge": "pairwise"}, "pairwise", "primary"),
])
def test_compete_settles_ties_by_the_measured_stronger_model_where_there_is_a_measurement(
        overrides: dict, judge: str, stronger: str | None) -> None:
    s = load_settings(env={}, **overrides)
    assert (s.judge, s.stronger) == (judge, stronger)


def test_judge_stronger_with_nothing_measured_is_one_line() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, profile="tiny", judge="stronger")
    assert "\n" not in str(e.value) and "key 'stronger': judge = 'stronger' needs it" in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="key 'stronger'"):  # the measurement was of other models
        load_settings(env={}, judge="stronger", roles={"primary": {"model": "qwen2.5-coder-1.5b"}})


def test_derived_settings_with_other_models_measure_the_stronger_one_again() -> None:
    """The eval and the remote bench derive settings: the measurement was of the models being replaced."""
    from orchestration.core.settings import derive

    s = load_settings(env={})
    swapped = derive(s, {"roles": {"primary": {"model": "qwen2.5-coder-1.5b"},
                                   "competitor": {"model": "qwen2.5-coder-0.5b"}}})
    assert (swapped.judge, swapped.stronger) == ("pointwise", None)
    assert (derive(s, {"verify": "execute"}).judge, derive(s, {"verify": "execute"}).stronger) == ("stronger",
                                                                                                  "competitor")
    kept = derive(load_settings(env={}, judge="pairwise"), {"roles": {"competitor": {"model": "smollm2-135m"}}})
    assert (kept.judge, kept.stronger) == ("pairwise", None)  # a judge that was asked for stays
