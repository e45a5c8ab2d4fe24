"""Settings come from NAMEGEN_* environment variables."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_settings_defaults(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("NAMEGEN_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert (s.model_dir, s.model_name, s.host, s.port) == (Path("models"), "names", "127.0.0.1", 8000)
    assert (s.max_count, s.max_length, s.log_format) == (1000, 64, "text")
    assert s.workers >= 1


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("NAMEGEN_MODEL_DIR", "/srv/models")
    monkeypatch.setenv("NAMEGEN_WORKERS", "3")
    monkeypatch.setenv("NAMEGEN_RELOAD_INTERVAL", "0.5")
    monkeypatch.setenv("NAMEGEN_LOG_FORMAT", "json")
    s = Settings()
    assert (s.model_dir, s.workers, s.reload_interval, s.log_format) == (Path("/srv/models"), 3, 0.5, "json")


@pytest.mark.parametrize("key,value", [("NAMEGEN_LOG_FORMAT", "xml"), ("NAMEGEN_MAX_COUNT", "0"),
                                       ("NAMEGEN_RELOAD_INTERVAL", "-1"), ("NAMEGEN_PORT", "http")])
def test_settings_reject_bad_values(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=key.removeprefix("NAMEGEN_").lower()):
        Settings()


def test_settings_for_slow_clients_and_connections(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("NAMEGEN_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert (s.keep_alive, s.header_timeout, s.body_timeout, s.max_connections) == (5.0, 10.0, 10.0, 512)
    monkeypatch.setenv("NAMEGEN_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("NAMEGEN_MAX_CONNECTIONS", "64")
    s = Settings()
    assert (s.header_timeout, s.max_connections) == (2.5, 64)
    monkeypatch.setenv("NAMEGEN_BODY_TIMEOUT", "0")
    with pytest.raises(ValidationError, match="body_timeout"):
        Settings()


@pytest.mark.parametrize("key,value,expected", [
    ("NAMEGEN_PORT", "abc", "NAMEGEN_PORT='abc' is not valid: it takes an integer >= 0 and <= 65535"),
    ("NAMEGEN_LOG_FORMAT", "xml", "NAMEGEN_LOG_FORMAT='xml' is not valid: it takes one of text, json"),
    ("NAMEGEN_RELOAD_INTERVAL", "-1", "NAMEGEN_RELOAD_INTERVAL='-1' is not valid: it takes a number >= 0"),
])
def test_a_bad_setting_is_one_line_naming_the_variable_and_what_it_takes(monkeypatch, key, value, expected):
    from service.settings import SettingsError, load_settings
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert str(e.value) == expected


def test_python_m_service_with_a_bad_setting_prints_one_line_and_exits_2():
    import os
    import subprocess
    import sys
    env = {**os.environ, "NAMEGEN_PORT": "abc"}
    done = subprocess.run([sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["namegen: NAMEGEN_PORT='abc' is not valid: it takes an integer "
                                                ">= 0 and <= 65535"]


def test_unknown_namegen_variables_are_found_from_the_settings_fields():
    from service.settings import Settings, unknown_variables
    environ = {"NAMEGEN_PORT": "1", "NAMEGEN_MAX_COUNTT": "5", "NAMEGEN_WORKERS": "2", "OTHER": "x"}
    assert unknown_variables(environ) == ["NAMEGEN_MAX_COUNTT"]
    assert unknown_variables({f"NAMEGEN_{f.upper()}": "1" for f in Settings.model_fields}) == []
