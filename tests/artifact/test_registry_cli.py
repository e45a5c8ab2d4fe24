"""`python -m artifact` on real registries published from tiny trained models."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artifact.__main__ import main
from artifact.layout import current_version, list_versions, version_path
from artifact.manifest import MANIFEST_FILE
from artifact.registry import publish
from registry_helpers import with_val

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(staged_models, tmp_path):
    """Three versions: a distilled student (val 2.0), a better one (1.9), then one forced past the gate (2.5)."""
    root = tmp_path / "models"
    student = with_val(staged_models[0], tmp_path, 2.0)
    m = json.loads((student / MANIFEST_FILE).read_text())
    m["teacher"] = {"name": "names", "version": "20261125T133006Z-72d274", "val": 1.9631, "members": 2,
                    "source": "registry"}
    (student / MANIFEST_FILE).write_text(json.dumps(m))
    versions = [publish(student, root, "names"),
                publish(with_val(staged_models[1], tmp_path, 1.9), root, "names"),
                publish(with_val(staged_models[2], tmp_path, 2.5), root, "names", force=True)]
    return root, versions


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_version_with_its_val_teacher_size_and_the_current_one(registry, capsys):
    root, (student, better, forced) = registry
    code, out, _ = run(capsys, "list", "--registry", str(root))
    assert code == 0
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert list(rows) == [student, better, forced]
    assert "2.0000" in rows[student] and "names/20261125T133006Z-72d274 (val 1.9631)" in rows[student]
    assert "best on its corpus" in rows[better]
    assert rows[forced].startswith("*") and "forced" in rows[forced] and " MB" in rows[forced]
    assert out.splitlines()[-1].endswith(f"current: {forced}")


def test_show_prints_a_versions_losses_corpus_and_gate_verdict(registry, capsys):
    root, (student, better, forced) = registry
    code, out, _ = run(capsys, "show", forced, "--registry", str(root))
    assert code == 0
    assert f"names/{forced}  (current)" in out and "val 2.5000" in out
    assert f"FORCED past: quality gate: val loss 2.5000 is worse than current version {better}'s 1.9000" in out
    code, out, _ = run(capsys, "show", better, "--registry", str(root), "--json")
    assert json.loads(out)["version"] == better


def test_rollback_without_a_version_goes_back_past_the_forced_one(registry, capsys):
    root, (student, better, forced) = registry
    code, out, _ = run(capsys, "rollback", "--registry", str(root))
    assert code == 0 and out.startswith(f"names: CURRENT {forced} -> {better};")
    assert current_version(root, "names") == better
    code, out, _ = run(capsys, "rollback", student, "--registry", str(root))
    assert code == 0 and current_version(root, "names") == student


def test_prune_reports_what_it_keeps_and_removes(registry, capsys):
    root, (student, better, forced) = registry
    code, out, _ = run(capsys, "prune", "--keep", "1", "--registry", str(root))
    assert code == 0
    assert f"removed {student}" in out and f"keep   {forced}  (current)" in out
    assert out.splitlines()[-1] == "names: removed 1 of 3 version(s)"
    assert list_versions(root, "names") == [better, forced]


def test_verify_exits_1_naming_the_damaged_file(registry, capsys):
    root, (student, better, forced) = registry
    code, out, _ = run(capsys, "verify", "--registry", str(root))
    assert code == 0 and out.count("ok  ") == 3
    report = sorted((version_path(root, "names", better) / "report").rglob("*.json"))[0]
    report.write_text("{}")
    code, out, _ = run(capsys, "verify", "--registry", str(root))
    assert code == 1
    assert f"BAD {better}: report/{report.name}: sha256 does not match" in out
    assert out.splitlines()[-1] == "names: 1 problem(s)"


@pytest.mark.parametrize("args, message", [
    (["show", "20990101T000000Z-abcdef"], "no version '20990101T000000Z-abcdef' of names"),
    (["rollback", "nope"], "no version 'nope' of names"),
    (["prune", "--keep", "0"], "--keep must be at least 1, got 0"),
    (["list", "--name", "other"], "other: no such model in the registry"),
])
def test_user_errors_exit_2_with_one_line(registry, capsys, args, message):
    root, _ = registry
    code, out, err = run(capsys, *args, "--registry", str(root))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("python -m artifact") and message in err


def test_bad_flags_exit_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prune", "--keep", "many"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "invalid int value: 'many'" in err


def test_module_runs_as_a_process_with_the_registry_from_the_environment(registry):
    root, (_, _, forced) = registry
    env = dict(os.environ, PYTHONPATH=str(REPO), NAMEGEN_MODEL_DIR=str(root), NAMEGEN_MODEL_NAME="names")
    out = subprocess.run([sys.executable, "-m", "artifact", "list"], capture_output=True, text=True, env=env,
                         cwd="/")
    assert out.returncode == 0 and out.stdout.splitlines()[-1].endswith(f"current: {forced}")


def test_registry_and_name_may_come_before_the_command(registry, capsys, tmp_path):
    root, (_, _, forced) = registry
    code, out, _ = run(capsys, "--registry", str(root), "--name", "names", "list")
    assert code == 0 and out.splitlines()[-1].endswith(f"current: {forced}")
    # Given on both sides, the one after the command wins (it is the closer to what it qualifies).
    code, out, _ = run(capsys, "--registry", str(tmp_path / "elsewhere"), "show", "--registry", str(root))
    assert code == 0 and f"names/{forced}  (current)" in out


def test_a_unique_version_prefix_names_that_version(registry, capsys):
    root, (student, better, forced) = registry
    prefix = better[:-1]
    assert [v for v in (student, better, forced) if v.startswith(prefix)] == [better]
    code, out, _ = run(capsys, "show", prefix, "--registry", str(root))
    assert code == 0 and out.startswith(f"version:  names/{better}\n")
    code, out, _ = run(capsys, "rollback", prefix, "--registry", str(root))
    assert code == 0 and out.startswith(f"names: CURRENT {forced} -> {better};")
    assert current_version(root, "names") == better


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(registry, capsys):
    root, versions = registry
    code, out, err = run(capsys, "rollback", "20", "--registry", str(root))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "'20' names 3 versions of names" in err and all(v in err for v in versions)
    assert current_version(root, "names") == versions[-1]


def test_list_flags_a_current_that_names_a_missing_version(registry, capsys):
    root, versions = registry
    (root / "names" / "CURRENT").write_text("20991231T000000Z-000000\n")
    code, out, _ = run(capsys, "list", "--registry", str(root))
    assert code == 1
    assert out.splitlines()[-1].startswith(
        "WARNING: CURRENT names 20991231T000000Z-000000, which is not a complete version in the registry")


def test_list_flags_a_current_whose_files_are_damaged(registry, capsys):
    root, (_, _, forced) = registry
    (version_path(root, "names", forced) / "model.onnx").write_bytes(b"not a model")
    code, out, _ = run(capsys, "list", "--registry", str(root))
    assert code == 1
    assert f"WARNING: CURRENT names {forced}, which is damaged: model.onnx: sha256 does not match" in out


def test_show_names_each_health_warning(staged_models, tmp_path, capsys):
    staged = with_val(staged_models[3], tmp_path, 2.0)
    m = json.loads((staged / MANIFEST_FILE).read_text())
    m["health"] = {"ok": False, "warnings": [
        {"name": "initial_loss_high", "message": "initial loss 9.1 vs 3.3 expected"},
        {"name": "update_ratio_out_of_range", "message": "layers.0.weight: too low"}]}
    (staged / MANIFEST_FILE).write_text(json.dumps(m))
    root = tmp_path / "models"
    publish(staged, root, "names")
    code, out, _ = run(capsys, "show", "--registry", str(root))
    assert code == 0
    assert ("health:   2 warning(s):\n"
            "          - initial_loss_high: initial loss 9.1 vs 3.3 expected\n"
            "          - update_ratio_out_of_range: layers.0.weight: too low\n") in out
