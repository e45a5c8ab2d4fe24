"""Helpers for the service tests (a module of its own: every test folder has a conftest.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from artifact.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from artifact.registry import list_versions, set_current, version_path

ROOT = Path(__file__).resolve().parents[2]
NAME = "names"


def make_version(registry: Path, damage: str | None = None, point: bool = True, source: str | None = None) -> str:
    """Copy a version (default the oldest, the trained one) to a new version name, manifest
    restamped; damage="corrupt" flips a byte of the copy's model.onnx so the loader refuses it,
    damage="missing" leaves model.onnx out (a version whose files have not all arrived). Moves
    CURRENT to it when point=True."""
    versions = list_versions(registry, NAME)
    source = source or versions[0]
    version = f"{source}-copy{len(versions)}{'-' + damage if damage else ''}"
    target = version_path(registry, NAME, version)
    source = version_path(registry, NAME, source)
    shutil.copytree(source, target)
    manifest = Manifest.read(target / MANIFEST_FILE)
    manifest.version = version
    manifest.write(target / MANIFEST_FILE)
    if damage == "corrupt":
        data = bytearray((target / MODEL_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (target / MODEL_FILE).write_bytes(bytes(data))
    elif damage == "missing":
        (target / MODEL_FILE).unlink()
    if point:
        set_current(registry, NAME, version)  # checks the manifest only, so it points at a corrupt model too
    return version


class Server:
    """A real `python -m service` process on an ephemeral 127.0.0.1 port; logs in a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        full_env = {**os.environ, "NAMEGEN_HOST": "127.0.0.1", "NAMEGEN_PORT": "0", "NAMEGEN_WORKERS": "1",
                    "PYTHONUNBUFFERED": "1", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.log_path.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def logs(self) -> list[dict]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_until(predicate, timeout: float = 20, interval: float = 0.05, ignore: tuple = ()):
    """The predicate's first truthy value; exceptions of the `ignore` types count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def metric(text: str, name: str, /, **labels: str) -> float:
    """A sample's value from Prometheus text, 0.0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, rest = key.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()) or not want:
            return float(value)
    return 0.0


# Requests httptools refuses to parse (the server answers each with a JSON 400 of its own).
MALFORMED = {
    "content-length with transfer-encoding": b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "a bad chunk size": b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "content-length -1": b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "an unknown method": b"FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
}


SHIPPED = ROOT / "models" / "names"  # the repository's published model: two versions with their own weights


def add_model(registry: Path, name: str, source: Path = SHIPPED, current: str | None = None) -> list[str]:
    """Copy every version of the model directory `source` into the registry as model `name` (each
    manifest restamped with that name), CURRENT at `current` (default the source's). The versions."""
    versions = sorted(p.name for p in source.iterdir() if (p / MANIFEST_FILE).is_file())
    for version in versions:
        target = version_path(registry, name, version)
        shutil.copytree(source / version, target)
        manifest = Manifest.read(target / MANIFEST_FILE)
        manifest.name = name
        manifest.write(target / MANIFEST_FILE)
    set_current(registry, name, current or (source / "CURRENT").read_text().strip())
    return versions
