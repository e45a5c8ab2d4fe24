"""Service settings from environment variables (prefix NAMEGEN_), read once per process."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
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
    log_format: Literal["text", "json"] = "text"
    log_level: str = "info"


@lru_cache
def get_settings() -> Settings:
    """The process's settings from the environment (cached)."""
    return Settings()
