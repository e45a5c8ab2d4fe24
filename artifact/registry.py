"""The registry on disk: `<root>/<name>/<version>/` directories and a `CURRENT` pointer. Stdlib only.

Publishing is crash-safe: a version is built in a dot-prefixed temp directory inside `<root>/<name>/`
(same filesystem, never mistaken for a version), fsynced, renamed into place, and only then is the
pointer replaced (temp file, fsync, os.replace, fsync the directory). A publisher killed at any moment
leaves CURRENT naming a complete version; its leftovers are dot-prefixed and removed by the next
publish. Publishers of one name are serialised by an flock on `<root>/<name>/.lock` (released by the
kernel when a process dies), so the next publisher knows any temp directory it finds is stale.

The quality gate: a model whose val loss on the same corpus fingerprint (sha256 + split seed) is
worse than the current version's by more than `tolerance` is refused unless force=True.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from artifact import ArtifactError
from artifact.manifest import MANIFEST_FILE, Manifest

POINTER = "CURRENT"
TEMP_PREFIX = ".tmp-"
# Test hook: the publisher pauses (sleeps) at the named stage, so a test can kill it exactly there.
PAUSE_ENV = "ARTIFACT_PUBLISH_PAUSE_AT"
STAGES = ("locked", "copied", "synced", "renamed", "pointer-written", "published")

log = logging.getLogger(__name__)


def version_path(root: str | Path, name: str, version: str) -> Path:
    return Path(root) / name / version


def current_version(root: str | Path, name: str) -> str:
    """The version CURRENT names (not checked further: the loader does that)."""
    pointer = Path(root) / name / POINTER
    try:
        version = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ArtifactError(f"{pointer}: no CURRENT pointer (nothing published as {name!r} in {root})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{pointer}: cannot read the pointer ({e})") from None
    if not version or "/" in version or version.startswith("."):
        raise ArtifactError(f"{pointer}: {version!r} is not a version name")
    return version


def list_versions(root: str | Path, name: str) -> list[str]:
    """Complete versions, oldest first (names sort by time); temp directories are skipped."""
    d = Path(root) / name
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if not p.name.startswith(".") and (p / MANIFEST_FILE).is_file())


def set_current(root: str | Path, name: str, version: str) -> None:
    """Point CURRENT at an existing version (e.g. a rollback), atomically."""
    path = version_path(root, name, version)
    Manifest.read(path / MANIFEST_FILE)  # refuse a pointer to something that is not a version
    with _lock(Path(root) / name):
        _write_pointer(Path(root) / name, version)


def publish(staging_dir: str | Path, root: str | Path, name: str, force: bool = False,
            tolerance: float = 0.01) -> str:
    """Copy a staged artifact into the registry as a new version, move CURRENT to it, return the version.

    The staged directory is self-tested first (the loader's full check) and left untouched."""
    from artifact.loader import load_version  # here, not at the top: the loader imports this module

    staged = load_version(staging_dir).manifest
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    with _lock(d):
        _pause("locked")
        _quality_gate(staged, root, name, force, tolerance)
        _remove_stale_temps(d)

        now, version = _new_version(d, staged)
        final = d / version
        tmp = d / f"{TEMP_PREFIX}{version}"
        shutil.copytree(staging_dir, tmp)
        for p in (tmp, *tmp.rglob("*")):  # staging may be private (mkdtemp, umask 077); the service may run as another user
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        staged.name, staged.version = name, version
        staged.created = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        staged.write(tmp / MANIFEST_FILE)
        _pause("copied")

        _fsync_tree(tmp)
        _pause("synced")
        os.rename(tmp, final)
        _fsync_dir(d)
        _pause("renamed")

        _write_pointer(d, version)
        _pause("published")
    log.info("published %s/%s (val loss %.4f)", name, version, staged.metrics["val"])
    return version


def _new_version(d: Path, staged: Manifest) -> tuple[datetime, str]:
    """UTC time to the second + a short hash of the staged manifest (which holds the files' sha256,
    the metrics and the corpus fingerprint): names sort by time, and the hash names the content."""
    digest = hashlib.sha256(json.dumps(staged.to_dict(), sort_keys=True).encode()).hexdigest()[:6]
    while True:
        now = datetime.now(timezone.utc)
        version = f"{now:%Y%m%dT%H%M%SZ}-{digest}"
        if not (d / version).exists():
            return now, version
        time.sleep(1 - now.microsecond / 1e6)  # the same model again within a second: take the next one


def _quality_gate(new: Manifest, root, name: str, force: bool, tolerance: float) -> None:
    try:
        cur = Manifest.read(version_path(root, name, current_version(root, name)) / MANIFEST_FILE)
    except ArtifactError as e:
        # Nothing (readable) is served: any complete model is an improvement.
        log.info("quality gate: no current version to compare with (%s)", e)
        return
    same_corpus = (new.corpus["sha256"], new.corpus["seed"]) == (cur.corpus["sha256"], cur.corpus["seed"])
    if not same_corpus:
        log.warning("quality gate skipped: the corpus differs from current version %s's "
                    "(sha256 %s... seed %s vs %s... seed %s), so val losses are not comparable",
                    cur.version, new.corpus["sha256"][:12], new.corpus["seed"],
                    cur.corpus["sha256"][:12], cur.corpus["seed"])
        return
    worse = new.metrics["val"] - cur.metrics["val"]
    if worse > tolerance:
        msg = (f"quality gate: val loss {new.metrics['val']:.4f} is worse than current version "
               f"{cur.version}'s {cur.metrics['val']:.4f} by {worse:.4f} (tolerance {tolerance}) "
               f"on the same corpus")
        if not force:
            raise ArtifactError(msg + "; refusing to publish (force to override)")
        log.warning("%s; publishing anyway (forced)", msg)


def _write_pointer(d: Path, version: str) -> None:
    tmp = d / f"{TEMP_PREFIX}{POINTER}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    _pause("pointer-written")
    os.replace(tmp, d / POINTER)
    _fsync_dir(d)


def _remove_stale_temps(d: Path) -> None:
    for p in d.iterdir():
        if p.name.startswith(TEMP_PREFIX):
            log.info("removing %s, left by an interrupted publish", p)
            shutil.rmtree(p) if p.is_dir() else p.unlink()


@contextmanager
def _lock(d: Path):
    with open(d / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # blocks while another publisher of this name runs
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fsync_tree(top: Path) -> None:
    for dirpath, _, filenames in os.walk(top):
        for fn in filenames:
            with open(os.path.join(dirpath, fn), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"paused at {stage}", flush=True)
        time.sleep(3600)
