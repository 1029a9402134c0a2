"""Layered configuration: defaults <- default file <- --config <- MITO_* <- flags."""

from __future__ import annotations

import argparse

import pytest

from mitosis_sdk.config import ConfigError, add_option_flags, flag_values, load_settings
from mitosis_server.cli import main as server_main
from mitosis_server.config import CoordinatorSettings


def _load(tmp_path, *, toml: str | None = None, env=None, flags=None, default_file=None):
    config = None
    if toml is not None:
        config = tmp_path / "config.toml"
        config.write_text(toml)
    return load_settings(
        CoordinatorSettings,
        "coordinator",
        config_file=config,
        env=env or {},
        flags=flags,
        use_default_file=False,
    )


def test_defaults(tmp_path):
    settings = _load(tmp_path)
    assert settings.bind == "127.0.0.1:5000"
    assert settings.heartbeat_timeout == 120
    assert settings.token_lifetime == 7 * 86400


def test_each_layer_overrides_the_one_before(tmp_path):
    toml = '[coordinator]\nheartbeat_timeout = "1m"\ntoken_lifetime = "1d"\nbind = "127.0.0.1:1"\n'
    env = {"MITO_HEARTBEAT_TIMEOUT": "2m", "MITO_BIND": "127.0.0.1:2"}
    settings = _load(tmp_path, toml=toml, env=env, flags={"bind": "127.0.0.1:3"})
    assert settings.token_lifetime == 86400  # file
    assert settings.heartbeat_timeout == 120  # environment over file
    assert settings.bind == "127.0.0.1:3"  # flag over environment


def test_the_default_config_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "mitosis").mkdir()
    (tmp_path / "mitosis" / "config.toml").write_text('[coordinator]\nlog_level = "debug"\n')
    settings = load_settings(CoordinatorSettings, "coordinator", env={})
    assert settings.log_level == "debug"


def test_bad_duration_names_option_and_source(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, env={"MITO_HEARTBEAT_TIMEOUT": "10x"})
    message = str(error.value)
    assert "heartbeat_timeout" in message
    assert "environment" in message
    assert "30s" in message


def test_unknown_option_in_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        _load(tmp_path, toml='[coordinator]\ncolour = "red"\n')


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, toml="[coordinator\n")


def test_every_option_is_a_flag():
    parser = argparse.ArgumentParser()
    add_option_flags(parser, CoordinatorSettings, short={"bind": "-b"})
    args = parser.parse_args(["--heartbeat-timeout", "30s", "-b", "127.0.0.1:9"])
    assert flag_values(args, CoordinatorSettings)["heartbeat_timeout"] == "30s"
    assert flag_values(args, CoordinatorSettings)["bind"] == "127.0.0.1:9"


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--heartbeat-timeout", "soon"],
        ["check", "--bind", "nowhere"],
        ["check", "--default-storage-quota", "lots"],
        ["check", "--db", "mysql://x"],
        ["check", "--redis", "localhost:6379"],
        ["check", "--password-hash-rounds", "0"],
    ],
)
def test_server_exits_2_on_bad_values(argv, capsys, tmp_path):
    """Bad values exit with status 2 and a message naming the option."""
    code = server_main([*argv, "--data-dir", str(tmp_path)])
    assert code == 2
    assert argv[1].lstrip("-").replace("-", "_") in capsys.readouterr().err
