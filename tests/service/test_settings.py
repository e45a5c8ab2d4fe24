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
