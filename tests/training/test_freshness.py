"""Retraining skips unchanged work: a family model whose current version has its corpus and
configuration is up to date, before anything is trained; new data, a new setting or --force-train
trains. Real tiny runs, a real registry on disk."""
import json

import pytest

from artifact.registry import current_version, list_versions
from training.cli import main

TINY_RECIPE = """preset = "lecture-a"
[model]
n_embd = 4
n_hidden = 16
[train]
steps = 120
eval_interval = 60
diag_interval = 60
checkpoint_interval = 60
update_interval = 10
"""


@pytest.fixture
def family(tmp_path, names_file):
    """A one-model family on a copy of the names file: (argv of `family`, the data file, the recipe)."""
    data = tmp_path / "names.txt"
    data.write_text(names_file.read_text())
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    (tmp_path / "family.toml").write_text(f'recipe = "tiny.toml"\n[tiny]\npath = "{data}"\n')
    argv = ["family", "--config", str(tmp_path / "family.toml"), "--registry", str(tmp_path / "models"),
            "--runs", str(tmp_path / "runs"), "--no-progress"]
    return argv, data, recipe


def run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().out


def test_a_retrain_on_unchanged_data_and_config_is_up_to_date_and_trains_nothing(family, tmp_path, capsys):
    argv, data, recipe = family
    code, out = run(argv, capsys)
    assert code == 0 and "steps/s" in out and "published" in out
    first = current_version(tmp_path / "models", "tiny")
    trained = (tmp_path / "runs" / "tiny" / "model.pt").stat().st_mtime_ns

    code, out = run(argv, capsys)
    assert code == 0 and f"up to date: {first}" in out
    assert "steps/s" not in out and "published" not in out
    assert list_versions(tmp_path / "models", "tiny") == [first]
    assert (tmp_path / "runs" / "tiny" / "model.pt").stat().st_mtime_ns == trained

    data.write_text(data.read_text() + "zebulonia\n")  # new names: the corpus's sha256 changes
    code, out = run(argv, capsys)
    assert code == 0 and "up to date" not in out and "steps/s" in out
    second = current_version(tmp_path / "models", "tiny")
    assert second != first
    assert json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())["data"]["sizes"]["names"] == \
        len(data.read_text().split())

    recipe.write_text(TINY_RECIPE.replace("steps = 120", "steps = 130"))  # a new setting: trains
    code, out = run(argv, capsys)
    assert code == 0 and "up to date" not in out and "steps/s" in out
    assert current_version(tmp_path / "models", "tiny") != second


def test_force_train_trains_a_model_that_is_up_to_date(family, tmp_path, capsys):
    argv, _, _ = family
    assert run(argv, capsys)[0] == 0
    code, out = run([*argv, "--force-train"], capsys)
    assert code == 0 and "up to date" not in out and "steps/s" in out
    assert "identical to existing version" in out  # the same recipe on the same data: the same model


def test_a_finished_run_is_published_without_training_it_again(family, tmp_path, capsys):
    argv, _, _ = family
    assert run(argv, capsys)[0] == 0
    version = current_version(tmp_path / "models", "tiny")
    (tmp_path / "models" / "tiny" / "CURRENT").unlink()  # as if publishing had not happened
    code, out = run(argv, capsys)
    assert code == 0 and "already holds this run, trained: publishing it" in out and "steps/s" not in out
    assert f"identical to existing version tiny/{version}" in out


def test_only_names_a_model_of_the_family(family, capsys):
    argv, _, _ = family
    code = main([*argv, "--only", "girls"])
    err = capsys.readouterr().err
    assert code == 2 and "--only girls: not in" in err and "its models: tiny" in err and err.count("\n") == 1


def test_the_shipped_registry_is_up_to_date_with_the_family_config(tmp_path, capsys):
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "models", tmp_path / "models", ignore=shutil.ignore_patterns(".lock"))
    shipped = {p.parent.name for p in (tmp_path / "models").glob("*/CURRENT")}
    code, out = run(["family", "--config", str(repo / "configs" / "family.toml"), "--registry",
                     str(tmp_path / "models"), "--runs", str(tmp_path / "runs"),
                     *[a for name in sorted(shipped) for a in ("--only", name)]], capsys)
    assert code == 0 and "names" in shipped
    for name in shipped:
        assert f"up to date: {current_version(tmp_path / 'models', name)}" in out
    assert not (tmp_path / "runs").exists()  # nothing trained
