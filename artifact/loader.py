"""Load a version directory and prove it works before anyone serves it. numpy + onnxruntime only.

Load = read the manifest, check each hashed file's sha256, check the vocabulary against the corpus,
open an onnxruntime session, check the graph's input/output against the manifest, run the probe set
and compare with the log-probabilities the training side recorded. Any mismatch raises ArtifactError:
a service never starts (or reloads) on an artifact that does not reproduce its own training numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifact import ArtifactError
from artifact.manifest import HASHED_FILES, MANIFEST_FILE, MODEL_FILE, NAMES_FILE, Manifest, sha256_file
from artifact.layout import current_version, version_path

PROBE_TOLERANCE = 1e-4  # max abs difference of log-probabilities, onnxruntime vs the torch model


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    session: ort.InferenceSession
    path: Path
    corpus_names: frozenset[str]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def vocab(self) -> str:
        return self.manifest.vocab

    @property
    def block_size(self) -> int:
        return self.manifest.block_size

    @property
    def input_name(self) -> str:
        return self.manifest.io["input"]

    @property
    def output_name(self) -> str:
        return self.manifest.io["output"]

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """(B, block_size) int64 -> (B, vocab) float32 logits."""
        return self.session.run([self.output_name], {self.input_name: contexts})[0]


def load_version(path: str | Path, threads: int = 1, expect: tuple[str, str] | None = None) -> LoadedModel:
    """Load and self-test the version directory at `path`. threads: onnxruntime's intra-op threads
    (1 suits per-request latency with one worker per core). expect: the (name, version) the caller
    took the directory for (the manifest must say the same)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: version directory not found")
    manifest = Manifest.read(path / MANIFEST_FILE)
    if expect is not None and (manifest.name, manifest.version) != tuple(expect):
        raise ArtifactError(f"{path}: manifest says {manifest.name}/{manifest.version}, "
                            f"expected {expect[0]}/{expect[1]}")
    for fname in HASHED_FILES:
        f = path / fname
        if not f.is_file():
            raise ArtifactError(f"{f}: file missing")
        actual = sha256_file(f)
        if actual != manifest.files[fname]:
            raise ArtifactError(f"{f}: sha256 {actual[:12]}... does not match the manifest's "
                                f"{manifest.files[fname][:12]}... (file corrupted or replaced)")
    # One name per line; split on "\n" only (splitlines would also split on other separators).
    names = [n for n in (path / NAMES_FILE).read_text(encoding="utf-8").split("\n") if n]
    # The vocabulary is derived from the corpus ('.' then its sorted characters), so an edited
    # vocabulary (even one of the same length) shows here.
    expected_vocab = "." + "".join(sorted(set("".join(names))))
    if manifest.vocab != expected_vocab:
        raise ArtifactError(f"{path}: manifest vocab {manifest.vocab!r} does not match the corpus's "
                            f"characters {expected_vocab!r}")
    session = _open_session(path / MODEL_FILE, threads)
    _check_io(session, manifest, path)
    model = LoadedModel(manifest, session, path, frozenset(names))
    _run_probe(model)
    return model


def load_current(root: str | Path, name: str, threads: int = 1) -> LoadedModel:
    """Load the version `<root>/<name>/CURRENT` names."""
    version = current_version(root, name)
    path = version_path(root, name, version)
    if not path.is_dir():
        raise ArtifactError(f"{Path(root) / name / 'CURRENT'} names version {version!r}, "
                            f"but {path} does not exist")
    return load_version(path, threads, expect=(name, version))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _open_session(model_file: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
    try:
        return ort.InferenceSession(str(model_file), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for malformed graphs
        raise ArtifactError(f"{model_file}: onnxruntime cannot load the graph ({e})") from None


def _check_io(session: ort.InferenceSession, m: Manifest, path: Path) -> None:
    ins, outs = session.get_inputs(), session.get_outputs()
    if len(ins) != 1 or len(outs) != 1:
        raise ArtifactError(f"{path}: graph must have one input and one output, "
                            f"has {len(ins)} and {len(outs)}")
    i, o = ins[0], outs[0]
    if (i.name, o.name) != (m.io["input"], m.io["output"]):
        raise ArtifactError(f"{path}: graph io ({i.name!r}, {o.name!r}) does not match the manifest's "
                            f"({m.io['input']!r}, {m.io['output']!r})")
    # The batch axis must be dynamic (a name or None); the other axis must match the manifest.
    if i.type != "tensor(int64)" or len(i.shape) != 2 or isinstance(i.shape[0], int) \
            or i.shape[1] != m.block_size:
        raise ArtifactError(f"{path}: graph input {i.type} {i.shape} does not match "
                            f"int64 [batch, {m.block_size}] (block_size in the manifest)")
    if o.type != "tensor(float)" or len(o.shape) != 2 or isinstance(o.shape[0], int) \
            or o.shape[1] != m.vocab_size:
        raise ArtifactError(f"{path}: graph output {o.type} {o.shape} does not match "
                            f"float [batch, {m.vocab_size}] (the manifest's vocabulary of {m.vocab_size})")


def _run_probe(model: LoadedModel) -> None:
    contexts = np.array([p["context"] for p in model.manifest.probe], dtype=np.int64)
    expected = np.array([p["logprobs"] for p in model.manifest.probe], dtype=np.float64)
    try:
        got = log_softmax(model.logits(contexts))
    except Exception as e:
        raise ArtifactError(f"{model.path}: the graph failed on the probe set ({e})") from None
    diff = float(np.abs(got - expected).max())
    if not diff <= PROBE_TOLERANCE:  # also catches NaN
        raise ArtifactError(f"{model.path}: probe log-probabilities differ from the manifest's by {diff:.3g} "
                            f"(tolerance {PROBE_TOLERANCE:g}): the graph does not reproduce its training model")
