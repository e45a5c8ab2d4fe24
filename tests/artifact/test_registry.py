import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from artifact import ArtifactError
from artifact.loader import load_current
from artifact.manifest import MANIFEST_FILE, MODEL_FILE
from artifact.registry import (PAUSE_ENV, POINTER, STAGES, current_version, list_versions, publish,
                               set_current, version_path)

REPO = Path(__file__).resolve().parents[2]


def with_val(staged, tmp_path, val, **corpus):
    """A copy of the staged artifact claiming another val loss (and optionally another corpus)."""
    out = shutil.copytree(staged, tmp_path / f"staged-{val}-{len(corpus)}")
    f = out / MANIFEST_FILE
    d = json.loads(f.read_text())
    d["metrics"]["val"] = val
    d["corpus"].update(corpus)
    f.write_text(json.dumps(d))
    return out


def test_publish_creates_a_complete_version_and_moves_the_pointer(artifact_dir, tmp_path):
    root = tmp_path / "models"
    for p in (artifact_dir, *artifact_dir.rglob("*")):  # a private staging dir, as mkdtemp under umask 077 makes
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
    version = publish(artifact_dir, root, "names")
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", version)
    assert current_version(root, "names") == version == list_versions(root, "names")[0]
    d = version_path(root, "names", version)
    assert {p.name for p in d.iterdir()} >= {"model.onnx", "manifest.json", "names.txt", "report"}
    for p in (d, *d.rglob("*")):  # readable by a service running as another user
        assert p.stat().st_mode & 0o444 == 0o444, p
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    assert (manifest["name"], manifest["version"]) == ("names", version)
    assert manifest["created"].endswith("Z")
    assert [p.name for p in (root / "names").iterdir() if p.name.startswith(".tmp")] == []


def test_quality_gate_refuses_worse_val_loss_on_the_same_corpus(staged_artifact, tmp_path):
    root = tmp_path / "models"
    good = publish(with_val(staged_artifact, tmp_path, 2.00), root, "names")
    with pytest.raises(ArtifactError, match=r"val loss 2\.0200 is worse than current version .*'s 2\.0000 "
                                            r"by 0\.0200 \(tolerance 0\.01\).*force"):
        publish(with_val(staged_artifact, tmp_path, 2.02), root, "names")
    assert current_version(root, "names") == good


def test_quality_gate_passes_within_tolerance_and_when_forced(staged_artifact, tmp_path):
    root = tmp_path / "models"
    publish(with_val(staged_artifact, tmp_path, 2.00), root, "names")
    v2 = publish(with_val(staged_artifact, tmp_path, 2.009), root, "names")
    assert current_version(root, "names") == v2
    v3 = publish(with_val(staged_artifact, tmp_path, 2.5), root, "names", force=True)
    assert current_version(root, "names") == v3


def test_quality_gate_is_skipped_for_a_different_corpus(staged_artifact, tmp_path, caplog):
    root = tmp_path / "models"
    publish(with_val(staged_artifact, tmp_path, 2.00), root, "names")
    with caplog.at_level(logging.INFO, logger="artifact.registry"):
        v2 = publish(with_val(staged_artifact, tmp_path, 2.5, sha256="0" * 64), root, "names")
    assert current_version(root, "names") == v2
    assert "quality gate skipped: the corpus differs" in caplog.text


def test_publish_refuses_a_broken_staged_artifact_and_keeps_the_pointer(artifact_dir, tmp_path):
    root = tmp_path / "models"
    v1 = publish(artifact_dir, root, "names")
    (artifact_dir / MODEL_FILE).write_bytes(b"not onnx")
    with pytest.raises(ArtifactError, match="sha256"):
        publish(artifact_dir, root, "names")
    assert current_version(root, "names") == v1 and list_versions(root, "names") == [v1]


def test_set_current_rolls_back_and_refuses_a_missing_version(staged_artifact, tmp_path):
    root = tmp_path / "models"
    v1 = publish(with_val(staged_artifact, tmp_path, 2.0), root, "names")
    publish(with_val(staged_artifact, tmp_path, 1.9), root, "names")
    set_current(root, "names", v1)
    assert load_current(root, "names").version == v1
    with pytest.raises(ArtifactError, match="manifest not found"):
        set_current(root, "names", "20990101T000000Z-abcdef")
    assert current_version(root, "names") == v1


def run_publisher(staged, root, stage):
    """A real publisher process paused at `stage`; returns it once it says so."""
    code = "import sys; from artifact.registry import publish; publish(sys.argv[1], sys.argv[2], 'names')"
    env = dict(os.environ, **{PAUSE_ENV: stage}, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(staged), str(root)], env=env,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == f"paused at {stage}", f"publisher exited early ({proc.wait()})"
    return proc


@pytest.mark.parametrize("stage", STAGES)
def test_publisher_killed_at_any_stage_leaves_the_registry_valid(staged_artifact, tmp_path, stage):
    root = tmp_path / "models"
    v1 = publish(with_val(staged_artifact, tmp_path, 2.0), root, "names")
    proc = run_publisher(with_val(staged_artifact, tmp_path, 1.9), root, stage)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    served = load_current(root, "names")  # loads and self-tests, or raises
    assert served.version in list_versions(root, "names")
    # Before the pointer moves, the old version is served; once it has moved, the new one.
    expect_new = STAGES.index(stage) >= STAGES.index("published")
    assert (served.version != v1) == expect_new

    # The next publish cleans up whatever the killed one left and succeeds.
    v3 = publish(with_val(staged_artifact, tmp_path, 1.8), root, "names")
    assert load_current(root, "names").version == v3
    assert [p.name for p in (root / "names").iterdir() if p.name.startswith(".tmp")] == []
