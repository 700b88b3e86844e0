"""Configuration: precedence, validation and the init template."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from everos.config import Config, display_value, iter_settings, load_config, render_template, resolve_root
from everos.errors import ConfigError

from .conftest import write_config


def test_template_parses_back_to_the_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, render_template())
    loaded = load_config(tmp_path, environ={})
    assert loaded.config == Config()
    # Every key of every section is in the template, each with a comment line above it.
    data = tomllib.loads(render_template())
    assert data["knowledge"]["search"]["rrf_k"] == 60
    lines = render_template().splitlines()
    for index, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[index - 1].startswith("# ") and "Default:" in lines[index - 1]


@pytest.mark.parametrize("key, value, message", [
    ("embedding__similarity_range", "0.9,0.8", "FLOOR,CEILING"),
    ("embedding__similarity_range", "close", "FLOOR,CEILING"),
    ("knowledge.search__keyword_weight", "1.5", "a number from 0 to 1"),
    ("knowledge.search__keyword_weight", "heavy", "a number from 0 to 1"),
])
def test_search_calibration_settings_are_checked(tmp_path: Path, key: str, value: str, message: str) -> None:
    write_config(tmp_path)
    section, name = key.split("__")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ={}, overrides={(section, name): value})


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    write_config(tmp_path, "[api]\nport = 9001\nrequest_timeout_seconds = 12\n[knowledge.search]\nrecall_n = 5\n")
    environ = {"EVEROS_API__PORT": "9002", "EVEROS_KNOWLEDGE__SEARCH__RECALL_N": "6"}
    loaded = load_config(tmp_path, environ=environ, overrides={("api", "port"): 9003})
    assert loaded.config.api.port == 9003
    assert loaded.source_of("api", "port") == "command line"
    assert loaded.config.api.request_timeout_seconds == 12.0
    assert loaded.source_of("api", "request_timeout_seconds") == str(tmp_path / "everos.toml")
    assert loaded.config.knowledge_search.recall_n == 6
    assert loaded.source_of("knowledge.search", "recall_n") == "env EVEROS_KNOWLEDGE__SEARCH__RECALL_N"
    assert loaded.config.api.host == "127.0.0.1"
    assert loaded.source_of("api", "host") == "default"


def test_root_resolution_order(tmp_path: Path) -> None:
    assert resolve_root(tmp_path / "flag", {"EVEROS_ROOT": str(tmp_path / "env")}) == tmp_path / "flag"
    assert resolve_root(None, {"EVEROS_ROOT": str(tmp_path / "env")}) == tmp_path / "env"
    assert resolve_root(None, {}) == Path.home().resolve() / ".everos"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("[api]\nport = 'eighty'\n", {}, "[api] port = 'eighty' from"),
        ("[api]\nportt = 1\n", {}, "unknown key [api] portt"),
        ("[apii]\nport = 1\n", {}, "unknown section [apii]"),
        ("[llm]\ntimeout_seconds = -1\n", {}, "greater than 0"),
        ("[llm]\ntimeout_seconds = 0\n", {}, "greater than 0"),
        ("[knowledge]\ndedupe = 'sometimes'\n", {}, "one of 'content', 'none'"),
        ("[api\nport = 1\n", {}, "is not valid TOML"),
        ("port = 1\n", {}, "not inside a section"),
        ("", {"EVEROS_API__PORT": "x"}, "environment variable EVEROS_API__PORT"),
        ("", {"EVEROS_API__NOPE": "1"}, "unknown key in environment variable EVEROS_API__NOPE"),
        ("", {"EVEROS_NOPE__X": "1"}, "unknown section in environment variable EVEROS_NOPE__X"),
        ("", {"EVEROS_CASCADE__WATCH": "maybe"}, "true or false"),
        ("[api]\nport = 99999\n", {}, "a whole number from 0 to 65535"),
        ("[memory]\ntimezone = 'Mars/Olympus'\n", {}, "an IANA time zone name"),
        ("[memory]\ntimezone = '../../etc/passwd'\n", {}, "an IANA time zone name"),
        ("", {"EVEROS_MEMORY__TIMEZONE": ""}, "an IANA time zone name"),
        ("[api]\ncors_origins = ['*']\n", {}, "a list of origins"),
        ("[api]\ncors_origins = ['http://a.example/path']\n", {}, "a list of origins"),
        ("[api]\ncors_origins = 'http://a.example'\n", {}, "a list of origins"),
        ("[api]\nlog_format = 'xml'\n", {}, "one of 'text', 'json'"),
        ("[cascade]\nlag_documents = -1\n", {}, "[cascade] lag_documents = -1 from"),
        ("[cascade]\nlag_documents = 2.5\n", {}, "expected a whole number >= 0"),
        ("[cascade]\nlag_documents = '300'\n", {}, "expected a whole number >= 0"),
        ("", {"EVEROS_CASCADE__LAG_DOCUMENTS": "many"}, "environment variable EVEROS_CASCADE__LAG_DOCUMENTS"),
        # Found by fuzz/ (config target): each was accepted, or escaped as another exception.
        ("[knowledge]\nsync_wait_seconds = nan\n", {}, "[knowledge] sync_wait_seconds = nan from"),  # NaN >= 0 is False
        ("", {"EVEROS_INGEST__RETRY_BACKOFF_SECONDS": "nan"}, "expected a number >= 0"),
        ("[api]\nrequest_timeout_seconds = inf\n", {}, "expected a number greater than 0"),
        ("[knowledge]\nsync_wait_seconds = 1" + "0" * 400 + "\n", {}, "expected a number >= 0"),  # OverflowError
        ("[api]\nport = 1" + "0" * 5000 + "\n", {}, "is not valid TOML"),  # tomllib's ValueError
        ("[llm]\nextra = " + "[" * 5000 + "]" * 5000 + "\n", {}, "nested too deeply"),  # RecursionError
        ("", {"EVEROS_LLM__EXTRA": "[" * 100_000}, "expected a table"),  # RecursionError
        ("", {"EVEROS_LLM__EXTRA": '{"stop": null}'}, "expected a table (of strings"),  # config show: TypeError
        ("[llm]\nextra = {seed = 1979-05-27}\n", {}, "expected a table (of strings"),  # not JSON for a request
        ("", {"EVEROS_LLM__MODEL": "qwen\udcff"}, "[llm] model = 'qwen\\udcff' from"),  # undecodable bytes
    ],
)
def test_bad_values_stop_with_one_clear_message(tmp_path: Path, text: str, environ: dict, expected: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ=environ)
    assert expected in info.value.message


def test_template_of_any_loaded_config_loads_back_to_it(tmp_path: Path) -> None:
    """Found by fuzz/ (config target): a table key beyond the BMP was rendered as a JSON surrogate
    pair and DEL raw, neither of which TOML reads."""
    write_config(tmp_path, "[llm]\nextra = {\"😀\" = \"a\\u007fb\", nested = {list = [1, 2.5, \"x\"]}}\n")
    loaded = load_config(tmp_path, environ={})
    write_config(tmp_path / "again", render_template(loaded.config))
    assert load_config(tmp_path / "again", environ={}).config == loaded.config


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "everos.toml").write_bytes(b"\xff\xfe[api]")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, environ={})


def test_missing_file_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="everos init"):
        load_config(tmp_path, environ={})


def test_everos_1x_config_loads_with_its_memory_sections_ignored(tmp_path: Path) -> None:
    write_config(tmp_path, (
        "[memory]\ntimezone = 'Asia/Shanghai'\n"
        "[llm]\nmodel = 'gpt-4.1-mini'\napi_key = 'sk-1234567890'\nbase_url = 'https://example.invalid/v1'\n"
        "[sqlite]\nbusy_timeout_ms = 5000\npool_size = 5\n"
        "[knowledge]\nmax_upload_bytes = 52428800\n"
        "[knowledge.search]\nrecall_n = 200\nlambda = 0.1\n"
        "[memorize]\nmode = 'agent'\n[clustering]\nthreshold = 0.65\n"
    ))
    loaded = load_config(tmp_path, environ={"EVEROS_MEMORIZE__MODE": "chat"})
    assert loaded.config.memory.timezone == "Asia/Shanghai"
    assert loaded.config.llm.model == "gpt-4.1-mini"
    ignored = "\n".join(loaded.ignored)
    for name in ("[memorize]", "[clustering]", "pool_size", "lambda", "EVEROS_MEMORIZE__MODE"):
        assert name in ignored


def test_secrets_are_masked_for_display() -> None:
    config = Config()
    shown = {(s, k): display_value(v, f) for s, k, v, f in iter_settings(config)}
    assert shown[("llm", "api_key")] == '""'
    from dataclasses import replace

    secret = replace(config, llm=replace(config.llm, api_key="sk-very-secret-key"))
    for section, key, value, field in iter_settings(secret):
        if (section, key) == ("llm", "api_key"):
            assert "very-secret" not in display_value(value, field)


def test_env_values_are_typed() -> None:
    loaded = load_config(Path("/nonexistent-root"), require_file=False, environ={
        "EVEROS_CASCADE__WATCH": "false",
        "EVEROS_LLM__EXTRA": '{"temperature": 0}',
        "EVEROS_LLM__TIMEOUT_SECONDS": "2.5",
    })
    assert loaded.config.cascade.watch is False
    assert loaded.config.llm.extra == {"temperature": 0}
    assert loaded.config.llm.timeout_seconds == 2.5


def test_a_real_time_zone_is_accepted(tmp_path: Path) -> None:
    write_config(tmp_path, "[memory]\ntimezone = 'Asia/Shanghai'\n")
    assert load_config(tmp_path, environ={}).config.memory.timezone == "Asia/Shanghai"


def test_a_file_with_the_retired_max_input_tokens_still_loads(tmp_path: Path) -> None:
    """#11: ``[llm] max_input_tokens`` (written by every older ``everos init``) is retired in
    favour of ``context_tokens``: the file loads, the key is reported as ignored, nothing else."""
    (tmp_path / "everos.toml").write_text("[llm]\nmax_input_tokens = 8000\ncontext_tokens = 16384\n")
    loaded = load_config(tmp_path, environ={"EVEROS_LLM__MAX_INPUT_TOKENS": "9000"})
    assert loaded.config.llm.context_tokens == 16384
    assert not hasattr(loaded.config.llm, "max_input_tokens")
    assert sum("max_input_tokens" in line.lower() and "retired" in line for line in loaded.ignored) == 2


def test_the_index_lag_bound_defaults_to_a_few_hundred_documents_and_0_turns_it_off(tmp_path: Path) -> None:
    """Issue #17 item 4: the bound past which the index lags, in documents waiting for their index."""
    write_config(tmp_path)
    assert load_config(tmp_path, environ={}).config.cascade.lag_documents == 300
    loaded = load_config(tmp_path, environ={"EVEROS_CASCADE__LAG_DOCUMENTS": "0"})
    assert loaded.config.cascade.lag_documents == 0
    assert loaded.source_of("cascade", "lag_documents") == "env EVEROS_CASCADE__LAG_DOCUMENTS"
