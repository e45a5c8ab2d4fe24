"""The files of a served version that the web pages may show: its report's plots and JSON.

A request names a file by its relative path; that name is only ever looked up in a catalog built
once per version, never joined to a directory, so no path from a request reaches the filesystem.
The catalog is the manifest's `files` map restricted to `report/` (each file's bytes read once and
checked against its sha256). A version from before the manifest hashed its report lists only
model.onnx and names.txt: for it the catalog is the PNGs found under report/plots/ when it is first
shown (regular files inside the version directory, no symlinks).
"""
from __future__ import annotations

import hashlib
import struct
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from artifact.manifest import REPORT_DIR, Manifest, is_safe_relative
from service.logs import get_logger

log = get_logger("web")

MEDIA_TYPES = {".png": "image/png", ".json": "application/json"}
KEEP = 4  # versions whose catalog stays in memory (the served one and a few before a reload)


@dataclass(frozen=True)
class ReportFile:
    path: str  # relative posix path inside the version, e.g. report/plots/member-0/loss.png
    data: bytes
    media_type: str
    size: tuple[int, int] | None  # (width, height) of a PNG, for the <img> attributes

    @property
    def is_plot(self) -> bool:
        return self.media_type == "image/png"


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (bytes 16..24), None if it is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def build_catalog(manifest: Manifest, root: Path) -> dict[str, ReportFile]:
    """{relative path: file} for the report files of the version at `root`."""
    listed = {p: h for p, h in manifest.files.items() if p.startswith(REPORT_DIR + "/")}
    if listed:
        candidates = sorted(listed)
    else:  # an older manifest: discover the plots once, now
        plots = root / REPORT_DIR / "plots"
        candidates = sorted(p.relative_to(root).as_posix() for p in plots.rglob("*.png")) if plots.is_dir() else []
    catalog = {}
    for rel in candidates:
        media_type = MEDIA_TYPES.get(PurePosixPath(rel).suffix.lower())
        file = root / rel
        if media_type is None or not is_safe_relative(rel) or file.is_symlink() or not file.is_file():
            continue
        data = file.read_bytes()
        if rel in listed and hashlib.sha256(data).hexdigest() != listed[rel]:
            log.warning("%s: sha256 differs from the manifest's; not shown", file)
            continue
        catalog[rel] = ReportFile(rel, data, media_type, png_size(data) if media_type == "image/png" else None)
    return catalog


class Catalogs:
    """The catalogs of the last few versions shown, keyed by (directory, version): a version's
    files never change once published, so a catalog is built once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_version: dict[tuple[str, str], dict[str, ReportFile]] = {}

    def get(self, manifest: Manifest, root: Path) -> dict[str, ReportFile]:
        key = (str(root), manifest.version)
        with self._lock:
            catalog = self._by_version.get(key)
        if catalog is None:
            catalog = build_catalog(manifest, root)
            with self._lock:
                self._by_version[key] = catalog
                while len(self._by_version) > KEEP:
                    self._by_version.pop(next(iter(self._by_version)))
        return catalog
