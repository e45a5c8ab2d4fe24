"""Where versions live on disk and which one CURRENT names. Stdlib only; reads, never writes.

`<root>/<name>/<version>/` holds a version, `<root>/<name>/CURRENT` names the served one. Dot-prefixed
entries (`.tmp-*` left by an interrupted publish or prune, `.lock`) are never versions. Both the loader
(model layer) and the registry (which writes) read the layout through this module, so neither imports
the other.
"""
from __future__ import annotations

from pathlib import Path

from artifact import ArtifactError
from artifact.manifest import MANIFEST_FILE

POINTER = "CURRENT"
TEMP_PREFIX = ".tmp-"


def version_path(root: str | Path, name: str, version: str) -> Path:
    return Path(root) / name / version


def current_version(root: str | Path, name: str) -> str:
    """The version CURRENT names (not checked further: the loader and `verify` do that)."""
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
