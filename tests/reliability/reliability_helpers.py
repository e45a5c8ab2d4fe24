"""Helpers for the reliability suite: a copy of the shipped registry, versions to publish (good,
corrupt, incomplete), real `python -m service` processes on 127.0.0.1 stopped by PID, and what
/proc says about a process (peak RSS, CPU time, open files)."""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
import service_helpers  # noqa: E402  (the service tests' real-server helper, shared)

from artifact.manifest import MANIFEST_FILE, Manifest, sha256_file
from artifact.registry import current_version, version_path

ROOT = Path(__file__).resolve().parents[2]
NAME = "names"
SHIPPED = ROOT / "models"  # the shipped model: what the image serves, so what the figures are for


def copy_registry(target: Path) -> Path:
    shutil.copytree(SHIPPED / NAME, target / NAME)
    return target


def new_version(registry: Path, damage: str | None = None, point: bool = True) -> str:
    """A copy of the current version under a new name (see service_helpers.make_version)."""
    return service_helpers.make_version(registry, damage, point, source=current_version(registry, NAME))


def staged_copy(registry: Path, target: Path, tag: int) -> Path:
    """A staging directory of a model that differs from every published one: the current version
    with one more corpus name (letters of its vocabulary), so a publish is never a no-op."""
    shutil.copytree(version_path(registry, NAME, current_version(registry, NAME)), target)
    names = target / "names.txt"
    extra = "zq" + "".join("abcdefghij"[int(d)] for d in str(tag))
    names.write_text(names.read_text(encoding="utf-8") + extra + "\n", encoding="utf-8")
    manifest = Manifest.read(target / MANIFEST_FILE)
    manifest.files["names.txt"] = sha256_file(names)
    manifest.write(target / MANIFEST_FILE)
    return target


class Server(service_helpers.Server):
    """`python -m service` on an ephemeral 127.0.0.1 port serving `registry`, settings as keyword
    arguments (max_in_flight=4 is NAMEGEN_MAX_IN_FLIGHT=4); JSON logs unless log_format="text"."""

    def __init__(self, registry: Path, log_path: Path, **env: str):
        values = {"NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": NAME, "NAMEGEN_LOG_FORMAT": "json",
                  "NAMEGEN_RELOAD_INTERVAL": "0.2", "PYTHONPATH": str(ROOT)}
        values.update({f"NAMEGEN_{k.upper()}": str(v) for k, v in env.items()})
        super().__init__(values, log_path)
        self.pid = self.proc.pid
        wait_until(lambda: httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200, timeout=60)

    def text(self) -> str:
        return self.log_path.read_text()

    def statuses(self) -> list[int]:
        return [x["status"] for x in self.logs() if x.get("msg") == "request"]

    def workers(self) -> list[int]:
        """The worker processes (several workers), or the server itself (one)."""
        children = [int(c) for c in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        return [c for c in children if "spawn_main" in cmdline(c)] or [self.pid]

    def healthy(self) -> bool:
        try:
            ok = httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
            return ok and httpx.get(f"{self.url}/generate?count=3&seed=1", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    """Make VmHWM (peak RSS) start again from the current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate, timeout: float = 20, interval: float = 0.05):
    """service_helpers.wait_until, where a connection error (a server restarting) counts as not yet."""
    return service_helpers.wait_until(predicate, timeout, interval, ignore=(httpx.HTTPError,))


class Load:
    """Client threads sending /generate (a new connection each, so a killed worker takes only the
    request in flight with it); records (status or exception name, version, monotonic time at the
    end) per request."""

    def __init__(self, url: str, threads: int = 3, params: str = "count=5", headers: dict | None = None):
        self.url, self.params = url, params
        self.headers = {"Connection": "close", **(headers or {})}
        self.results: list[tuple[int | str, str | None, float]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                r = httpx.get(f"{self.url}/generate?{self.params}", timeout=30, headers=self.headers)
                version = r.json()["model"]["version"] if r.status_code == 200 else None
                self.results.append((r.status_code, version, time.monotonic()))
            except httpx.HTTPError as e:
                self.results.append((type(e).__name__, None, time.monotonic()))

    def finish(self) -> list[tuple[int | str, str | None, float]]:
        self.stopping.set()
        for t in self.threads:
            t.join()
        return self.results

    def failures(self) -> list:
        return [r for r in self.results if r[0] != 200]
