"""Service settings from environment variables (prefix NAMEGEN_), read once per process."""
from __future__ import annotations

import os
import typing
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NAMEGEN_", protected_namespaces=(), extra="ignore")

    model_dir: Path = Field(Path("models"), description="registry root holding <name>/CURRENT")
    model_name: str = Field("names", min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_count: int = Field(1000, ge=1, description="upper bound of `count` per request")
    max_length: int = Field(64, ge=2, description="upper bound of `max_length` per request")
    default_max_length: int = Field(32, ge=2)
    max_score_names: int = Field(1000, ge=1, description="upper bound of names per /score request")
    max_in_flight: int = Field(16, ge=1, description="sets the work budget per worker: max_in_flight x the "
                                                     "largest request (max(max_count, max_score_names) names); "
                                                     "work beyond it gets 503")
    max_body_bytes: int = Field(64 * 1024, ge=256, description="larger request bodies get 413")
    reload_interval: float = Field(5.0, ge=0, description="seconds between CURRENT checks; 0 = off")
    cache_rows: int = Field(8192, ge=0, description="contexts kept in the log-probability cache (each row costs about 0.4 KB per worker)")
    keep_alive: float = Field(5.0, gt=0, description="seconds a connection may stay silent (new, or after a "
                                                     "response) before it is closed")
    header_timeout: float = Field(10.0, gt=0, description="seconds from a request's first byte to the end "
                                                         "of its headers, else 408")
    body_timeout: float = Field(10.0, gt=0, description="seconds from the end of the headers to the end of "
                                                       "the body, else 408")
    max_connections: int = Field(512, ge=1, description="open connections per worker; requests on further "
                                                       "ones get 503")
    max_client_connections: int = Field(128, ge=1, description="open connections per client address per "
                                                              "worker; further ones get 503 at once")
    mmap_threshold: int = Field(128 * 1024, ge=0, description="bytes from which malloc maps a block and "
                                                             "returns it when freed (glibc; 0 = glibc's own "
                                                             "sliding threshold): heavy requests leave no "
                                                             "resident high-water mark")
    # Several models and pinned versions: which registry names are served, and how many versions other
    # than each model's CURRENT stay loaded for requests that pin one (least recently used first out).
    models: str = Field("", description="comma-separated model names to serve (empty: every name in the "
                                        "registry); the default model (model_name) is always served")
    max_pinned: int = Field(4, ge=0, description="versions other than the current ones kept loaded for "
                                                 "requests that pin a version")
    pinned_memory_mb: float = Field(128.0, ge=0, description="bound on the cache and graph bytes of those "
                                                             "pinned versions together")
    # Access: tokens with scopes and rates per client (service/tokens.py, service/api/auth.py, limits.py).
    auth: Literal["auto", "on", "off"] = Field("auto", description="auto: tokens when NAMEGEN_TOKENS_FILE is "
                                               "set, and refuse to start on a non-loopback host without it; "
                                               "on: tokens required; off: no tokens on any host")
    tokens_file: Path | None = Field(None, description="the token file (python -m service.tokens), reloaded "
                                                       "when it changes and on SIGHUP")
    rate: float = Field(0.0, ge=0, description="names per second per client (its token, else its address); "
                                               "0 = no limit; a token may set its own")
    burst: int = Field(0, ge=0, description="names a client may take at once; 0 = the largest request")
    rate_table: Path | None = Field(None, description="a rate table file every server naming it shares "
                                                      "(the replicas of one host), made if missing; unset, "
                                                      "`python -m service` makes one for its own workers")
    log_format: Literal["text", "json"] = "text"
    log_level: str = "info"


class SettingsError(ValueError):
    """A setting the environment gives that Settings cannot take; the message is one line naming the variable."""


PREFIX = Settings.model_config["env_prefix"]
KINDS = {int: "an integer", float: "a number", str: "text", Path: "a path", bool: "true or false"}
BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def variable(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def accepts(field: str) -> str:
    """What a field takes, in words, from its type and constraints (so it stays true as fields change)."""
    info = Settings.model_fields[field]
    kind = info.annotation
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(kind))
    words = KINDS.get(kind, getattr(kind, "__name__", str(kind)))
    bounds = [f"{sign} {getattr(c, attr)}" for c in info.metadata for attr, sign in BOUNDS
              if getattr(c, attr, None) is not None]
    bounds += [f"of at least {c.min_length} characters" for c in info.metadata if getattr(c, "min_length", None)]
    return words + (" " + " and ".join(bounds) if bounds else "")


def load_settings() -> Settings:
    """Settings from the environment; a bad value raises SettingsError naming the variable and what it takes."""
    try:
        return Settings()
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            if field not in Settings.model_fields:
                problems.append(err["msg"])
                continue
            given = next((v for k, v in os.environ.items() if k.upper() == variable(field)), None)
            problems.append(f"{variable(field)}={given!r} is not valid: it takes {accepts(field)}")
        raise SettingsError("; ".join(problems)) from None


def unknown_variables(environ: typing.Mapping[str, str]) -> list[str]:
    """NAMEGEN_* variables that name no setting (a typo is otherwise silently ignored)."""
    known = {variable(f) for f in Settings.model_fields}
    return sorted(k for k in environ if k.upper().startswith(PREFIX) and k.upper() not in known)


@lru_cache
def get_settings() -> Settings:
    """The process's settings from the environment (cached); SettingsError if one is bad."""
    return load_settings()
