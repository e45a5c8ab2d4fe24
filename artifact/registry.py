"""The registry's writes and checks: publish (through the quality gate), rollback, prune, verify. Stdlib only.

It imports the manifest and the layout, never the loader: whoever publishes hands it the self-test a
staged version must pass (`check=artifact.loader.load_version`), as MLServer's registry is handed its
model runtimes. So the operator's CLI (`python -m artifact`) needs neither torch nor onnxruntime.

Publishing is crash-safe: a version is built in a dot-prefixed temp directory inside `<root>/<name>/`
(same filesystem, never mistaken for a version), fsynced, renamed into place, and only then is the
pointer replaced (temp file, fsync, os.replace, fsync the directory). A publisher killed at any moment
leaves CURRENT naming a complete version; its leftovers are dot-prefixed and removed by the next
publish. Every writer of one name (publish, rollback, prune) holds an flock on `<root>/<name>/.lock`
(released by the kernel when a process dies), so the next one knows any temp directory it finds is stale.

The quality gate compares a new version with the BEST version published on the same corpus (the same
names, by sha256, and split seed: so a girls' model is never measured against an all-names one), not
only the current one, so a series of retrains cannot drift down by the tolerance each time. A model
whose files hash the same as an existing version's is not republished. A name serves one corpus
selection and one vocabulary: a model of another corpus (girls' names under the all-names model's
name) or vocabulary (a capitalised file's) is refused unless new_corpus, since it would silently
replace what every client of that name asks for. New data of the same selection (a retrain) is not
another corpus, and neither is a file holding exactly the served corpus's names.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from artifact import ArtifactError
from artifact.layout import POINTER, TEMP_PREFIX, current_version, list_versions, version_path
from artifact.manifest import HASHED_FILES, MANIFEST_FILE, Manifest, sha256_file

__all__ = ["POINTER", "TEMP_PREFIX", "current_version", "list_versions", "version_path", "AlreadyPublished",
           "publish", "set_current", "rollback", "previous_good", "prune", "verify_dir", "best_on_corpus",
           "version_size", "resolve_version", "current_problem"]

# Test hook: the publisher pauses (sleeps) at the named stage, so a test can kill it exactly there.
PAUSE_ENV = "ARTIFACT_PUBLISH_PAUSE_AT"
STAGES = ("locked", "copied", "synced", "renamed", "pointer-written", "published")

log = logging.getLogger(__name__)


class AlreadyPublished(ArtifactError):
    """The staged model is byte-identical (model.onnx, names.txt) to an existing version: nothing to do."""

    def __init__(self, message: str, version: str):
        super().__init__(message)
        self.version = version


def verify_dir(path: str | Path, manifest: Manifest | None = None) -> list[str]:
    """Problems of a version directory against its manifest (empty when sound): every file the manifest
    lists exists and hashes the same; a manifest that covers the report (this format) must also cover
    every file present. Older manifests list only model.onnx and names.txt."""
    path = Path(path)
    try:
        m = manifest or Manifest.read(path / MANIFEST_FILE)
    except ArtifactError as e:
        return [str(e)]
    problems = []
    for rel, digest in m.files.items():
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(f) != digest:
            problems.append(f"{rel}: sha256 does not match the manifest (file corrupted or replaced)")
    if set(m.files) - set(HASHED_FILES):  # the manifest claims the whole version
        for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
            if f.relative_to(path).as_posix() not in m.files:
                problems.append(f"{f.relative_to(path).as_posix()}: not in the manifest")
    return problems


def set_current(root: str | Path, name: str, version: str) -> None:
    """Point CURRENT at an existing version, atomically (refuses a directory without a readable manifest;
    the service's loader still self-tests what it points at)."""
    path = version_path(root, name, version)
    Manifest.read(path / MANIFEST_FILE)
    with _lock(Path(root) / name):
        _write_pointer(Path(root) / name, version)


def publish(staging_dir: str | Path, root: str | Path, name: str, force: bool = False,
            tolerance: float = 0.01, *, check: Callable[[Path], object] | None = None,
            new_corpus: bool = False) -> str:
    """Copy a staged artifact into the registry as a new version, move CURRENT to it, return the version.

    check: the self-test the staged directory must pass first (raises ArtifactError), e.g.
    artifact.loader.load_version; without it only the manifest and the files' hashes are checked.
    Raises AlreadyPublished (naming the version) for a model identical to an existing one, and
    ArtifactError when the quality gate refuses (unless force) or when the name serves another corpus
    selection or vocabulary (unless new_corpus). The staged directory is left untouched."""
    staging_dir = Path(staging_dir)
    staged = Manifest.read(staging_dir / MANIFEST_FILE)
    problems = verify_dir(staging_dir, staged)
    if problems:
        raise ArtifactError(f"{staging_dir}: {problems[0]}")
    if check is not None:
        check(staging_dir)
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    with _lock(d):
        _pause("locked")
        manifests, current = _manifests(d), _current_or_none(root, name)
        same = _identical(staged, manifests)
        if same is not None:
            raise AlreadyPublished(_identical_message(name, same, current), same)
        if current in manifests and not new_corpus:
            _same_corpus_kind(staged, manifests[current], name)
        staged.gate = _quality_gate(staged, manifests, current, force, tolerance)
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


def best_on_corpus(manifests: dict[str, Manifest], like: Manifest) -> Manifest | None:
    """The version with the lowest val loss among those trained on the corpus of `like`."""
    same = [m for m in manifests.values() if _corpus_key(m) == _corpus_key(like)]
    return min(same, key=lambda m: m.metrics["val"], default=None)


def previous_good(root: str | Path, name: str) -> str | None:
    """What `rollback` goes back to: the newest version older than the current one that verifies and
    did not need --force to get past the quality gate."""
    current = _current_or_none(root, name)
    for version in reversed(list_versions(root, name)):
        if current is not None and version >= current:
            continue
        path = version_path(root, name, version)
        try:
            m = Manifest.read(path / MANIFEST_FILE)
        except ArtifactError:
            continue
        if not (m.gate or {}).get("forced") and not verify_dir(path, m):
            return version
    return None


def resolve_version(root: str | Path, name: str, text: str) -> str:
    """The version `text` names: itself, or the one version it is a prefix of (what an operator types
    after reading `list`). Raises naming the candidates when the prefix is ambiguous."""
    versions = list_versions(root, name)
    if text in versions:
        return text
    matches = [v for v in versions if v.startswith(text)] if text else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ArtifactError(f"{text!r} names {len(matches)} versions of {name} ({', '.join(matches)}): give more of it")
    raise ArtifactError(f"no version {text!r} of {name} in {root} (see `python -m artifact list`)")


def current_problem(root: str | Path, name: str) -> str | None:
    """Why CURRENT cannot be served (missing pointer, a version not in the registry, files that do not
    match the manifest), or None when it can."""
    try:
        current = current_version(root, name)
    except ArtifactError as e:
        return str(e)
    if current not in list_versions(root, name):
        return f"CURRENT names {current}, which is not a complete version in the registry"
    problems = verify_dir(version_path(root, name, current))
    if problems:
        return f"CURRENT names {current}, which is damaged: {'; '.join(problems)}"
    return None


def rollback(root: str | Path, name: str, version: str | None = None) -> tuple[str | None, str]:
    """Move CURRENT to `version` (default: previous_good) after checking its files; returns (old, new)."""
    d = Path(root) / name
    if not d.is_dir():
        raise ArtifactError(f"{d}: no such model in the registry")
    if version is None:
        version = previous_good(root, name)
        if version is None:
            raise ArtifactError(f"{d}: no earlier version that verifies and was not forced: nothing to roll back to")
    if version not in list_versions(root, name):
        raise ArtifactError(f"{d}: no version {version!r} (see `python -m artifact list`)")
    path = version_path(root, name, version)
    m = Manifest.read(path / MANIFEST_FILE)
    problems = verify_dir(path, m)
    if problems or (m.name, m.version) != (name, version):
        raise ArtifactError(f"{path}: {problems[0] if problems else 'manifest names another version'}; "
                            f"refusing to serve it")
    with _lock(d):
        old = _current_or_none(root, name)
        _write_pointer(d, version)
    log.info("rolled %s back from %s to %s", name, old, version)
    return old, version


def prune(root: str | Path, name: str, keep: int, dry_run: bool = False) -> dict[str, str | None]:
    """Remove all but the newest `keep` versions, never the current one, the one `rollback` would go back
    to, nor the best on each corpus (the quality gate's reference). Returns {version: why kept, or None
    if removed}, oldest first. A removed version is renamed to a dot-prefixed name first, so no reader
    ever lists half of it."""
    if keep < 1:
        raise ArtifactError(f"--keep must be at least 1, got {keep}")
    d = Path(root) / name
    if not d.is_dir():
        raise ArtifactError(f"{d}: no such model in the registry")
    with _lock(d):
        versions = list_versions(root, name)
        manifests = _manifests(d)
        why: dict[str, str] = {}
        for v in versions[-keep:]:
            why[v] = f"among the newest {keep}"
        for m in manifests.values():
            best = best_on_corpus(manifests, m)
            why.setdefault(best.version, f"best val on corpus {m.corpus['sha256'][:12]}...")
        previous = previous_good(root, name)
        if previous is not None:
            why[previous] = "the rollback target"
        current = _current_or_none(root, name)
        if current is not None:
            why[current] = "current"
        result: dict[str, str | None] = {}
        for v in versions:
            result[v] = why.get(v)
            if v not in why and not dry_run:
                doomed = d / f"{TEMP_PREFIX}prune-{v}"
                os.rename(d / v, doomed)
                shutil.rmtree(doomed)
        _fsync_dir(d)
    return result


def version_size(path: str | Path) -> int:
    """Bytes of all files of a version directory."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _current_or_none(root: str | Path, name: str) -> str | None:
    try:
        return current_version(root, name)
    except ArtifactError:
        return None


def _manifests(d: Path) -> dict[str, Manifest]:
    """The readable manifests of every version of one name, by version."""
    out = {}
    for v in list_versions(d.parent, d.name):
        try:
            out[v] = Manifest.read(d / v / MANIFEST_FILE)
        except ArtifactError as e:
            log.warning("skipping %s: %s", v, e)
    return out


def _identical(staged: Manifest, manifests: dict[str, Manifest]) -> str | None:
    """An existing version whose model and corpus hash the same (the report, with its timings, differs
    between two runs of one recipe and does not change a single answer the service gives)."""
    key = tuple(staged.files[f] for f in HASHED_FILES)
    for v, m in manifests.items():
        if tuple(m.files.get(f) for f in HASHED_FILES) == key:
            return v
    return None


def _identical_message(name: str, version: str, current: str | None) -> str:
    where = ("the current version" if version == current else
             f"not the current one ({current}); `python -m artifact rollback {version}` serves it")
    return (f"identical to existing version {name}/{version} (model.onnx and names.txt hash the same), "
            f"{where}: not republished")


def _corpus_key(m: Manifest) -> tuple:
    return m.corpus["sha256"], m.corpus["seed"]


def _same_corpus_kind(new: Manifest, served: Manifest, name: str) -> None:
    """Refuse a model of another corpus or vocabulary under a name that already serves one."""
    same_corpus = new.selection == served.selection or new.corpus["sha256"] == served.corpus["sha256"]
    if same_corpus and new.vocab == served.vocab:
        return
    what = (f"corpus, {new.description!r} (it serves {served.description!r})" if not same_corpus
            else f"vocabulary, {new.vocab!r} (it serves {served.vocab!r})")
    raise ArtifactError(f"{name} serves version {served.version}; this model has another {what}: publish it "
                        f"under another --name, or pass --new-corpus to replace what {name} serves")


def _quality_gate(new: Manifest, manifests: dict[str, Manifest], current: str | None, force: bool,
                  tolerance: float) -> dict:
    """Refuse (ArtifactError) a model worse than the best on its corpus by more than the tolerance, unless
    forced; returns the verdict the manifest records."""
    best = best_on_corpus(manifests, new)
    verdict = {"reference": None, "reference_val": None, "tolerance": tolerance, "forced": False, "overrode": None}
    if best is None:
        log.info("quality gate: no version on this corpus (%s, sha256 %s... seed %s) to compare with",
                 new.description, new.corpus["sha256"][:12], new.corpus["seed"])
        return verdict
    verdict.update(reference=best.version, reference_val=best.metrics["val"])
    worse = new.metrics["val"] - best.metrics["val"]
    if worse <= tolerance:
        return verdict
    which = f"current version {best.version}'s" if best.version == current else f"version {best.version}'s"
    msg = (f"quality gate: val loss {new.metrics['val']:.4f} is worse than {which} {best.metrics['val']:.4f} "
           f"(the best on this corpus) by {worse:.4f} (tolerance {tolerance})")
    if not force:
        raise ArtifactError(msg + "; refusing to publish (--force to override)")
    log.warning("%s; FORCED: publishing anyway, recorded in the manifest (gate.forced)", msg)
    verdict.update(forced=True, overrode=msg)
    return verdict


def _new_version(d: Path, staged: Manifest) -> tuple[datetime, str]:
    """UTC time to the second + a short hash of the staged manifest (which holds the files' sha256,
    the metrics and the corpus fingerprint): the hash names the content, and names sort by time, so the
    time is taken one second past the newest existing version's when the clock has not moved on
    (two publishes within a second, or a clock set back): "previous" and "newest" stay true."""
    digest = hashlib.sha256(json.dumps(staged.to_dict(), sort_keys=True).encode()).hexdigest()[:6]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    existing = list_versions(d.parent, d.name)
    if existing:
        try:
            newest = datetime.strptime(existing[-1][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            now = max(now, newest + timedelta(seconds=1))
        except ValueError:  # not a name this registry made: nothing to order after
            pass
    return now, f"{now:%Y%m%dT%H%M%SZ}-{digest}"


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
            log.info("removing %s, left by an interrupted publish or prune", p)
            shutil.rmtree(p) if p.is_dir() else p.unlink()


@contextmanager
def _lock(d: Path):
    with open(d / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # blocks while another writer of this name runs
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
