import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from artifact import ArtifactError
from artifact.loader import load_current, load_version, log_softmax
from artifact.manifest import MANIFEST_FILE, MODEL_FILE, NAMES_FILE
from artifact.registry import POINTER, publish


def test_loader_loads_and_self_tests_a_good_artifact(artifact_dir):
    m = load_version(artifact_dir)
    assert m.vocab[0] == "." and m.block_size == 3 and m.path == artifact_dir
    assert m.corpus_names == frozenset((artifact_dir / NAMES_FILE).read_text().split())
    logits = m.logits(np.zeros((5, 3), dtype=np.int64))
    assert logits.shape == (5, len(m.vocab)) and logits.dtype == np.float32
    probe = m.manifest.probe[0]
    got = log_softmax(m.logits(np.array([probe["context"]], dtype=np.int64)))[0]
    assert np.abs(got - probe["logprobs"]).max() <= 1e-4


def test_loader_refuses_flipped_byte_in_model(artifact_dir):
    f = artifact_dir / MODEL_FILE
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.onnx: sha256 .* does not match"):
        load_version(artifact_dir)


def test_loader_refuses_edited_probe(artifact_dir, edit):
    d = json.loads((artifact_dir / MANIFEST_FILE).read_text())
    d["probe"][3]["logprobs"][5] += 0.01
    edit(artifact_dir, probe=d["probe"])
    with pytest.raises(ArtifactError, match="probe log-probabilities differ"):
        load_version(artifact_dir)


def test_loader_refuses_edited_vocab_of_same_length(artifact_dir, edit):
    vocab = json.loads((artifact_dir / MANIFEST_FILE).read_text())["vocab"]
    swapped = vocab[0] + vocab[2] + vocab[1] + vocab[3:]
    edit(artifact_dir, vocab=swapped)
    with pytest.raises(ArtifactError, match="vocab .* does not match the corpus"):
        load_version(artifact_dir)


def test_loader_refuses_vocabulary_that_does_not_match_the_graph(artifact_dir, edit):
    # A consistent manifest + corpus with one more character: only the graph's output size disagrees.
    names = artifact_dir / NAMES_FILE
    names.write_text(names.read_text() + "zzz\n")
    d = json.loads((artifact_dir / MANIFEST_FILE).read_text())
    for p in d["probe"]:
        p["logprobs"].append(-30.0)
    files = dict(d["files"], **{NAMES_FILE: hashlib.sha256(names.read_bytes()).hexdigest()})
    edit(artifact_dir, vocab=d["vocab"] + "z", probe=d["probe"], files=files)
    with pytest.raises(ArtifactError, match=r"graph output .* does not match"):
        load_version(artifact_dir)


def test_loader_refuses_block_size_that_does_not_match_the_graph(artifact_dir, edit):
    d = json.loads((artifact_dir / MANIFEST_FILE).read_text())
    for p in d["probe"]:
        p["context"].append(0)
    edit(artifact_dir, block_size=4, probe=d["probe"])
    with pytest.raises(ArtifactError, match=r"graph input .* does not match"):
        load_version(artifact_dir)


@pytest.mark.parametrize("fname", [MODEL_FILE, NAMES_FILE, MANIFEST_FILE])
def test_loader_refuses_missing_file(artifact_dir, fname):
    (artifact_dir / fname).unlink()
    with pytest.raises(ArtifactError, match=f"{fname}.*(missing|not found)"):
        load_version(artifact_dir)


def test_loader_refuses_unknown_format_version(artifact_dir, edit):
    edit(artifact_dir, format_version=2)
    with pytest.raises(ArtifactError, match="unsupported format_version 2"):
        load_version(artifact_dir)


def test_loader_refuses_manifest_missing_a_field(artifact_dir):
    f = artifact_dir / MANIFEST_FILE
    d = json.loads(f.read_text())
    del d["probe"]
    f.write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match="missing field.*probe"):
        load_version(artifact_dir)


@pytest.fixture
def registry(artifact_dir, tmp_path):
    root = tmp_path / "models"
    version = publish(artifact_dir, root, "names")
    return root, version


def test_load_current_loads_the_published_version(registry):
    root, version = registry
    m = load_current(root, "names")
    assert (m.name, m.version) == ("names", version)


def test_load_current_refuses_pointer_to_missing_version(registry):
    root, _ = registry
    (root / "names" / POINTER).write_text("20990101T000000Z-abcdef\n")
    with pytest.raises(ArtifactError, match="names version '20990101T000000Z-abcdef', but .* does not exist"):
        load_current(root, "names")


def test_load_current_refuses_missing_pointer(registry):
    root, _ = registry
    (root / "names" / POINTER).unlink()
    with pytest.raises(ArtifactError, match="no CURRENT pointer"):
        load_current(root, "names")


def test_load_current_refuses_manifest_of_another_version(registry, edit):
    root, version = registry
    edit(root / "names" / version, version="20000101T000000Z-000000")
    with pytest.raises(ArtifactError, match="expected names/" + version):
        load_current(root, "names")


def test_artifact_package_imports_no_torch():
    code = "import sys, artifact.loader, artifact.registry, artifact.manifest; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
