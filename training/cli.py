"""`python -m training train ...` (console script `namegen-train`): configure, train, report, publish.

Exit codes: 0 done; 1 publishing refused; 2 a user error (bad corpus, config value, flag, preset);
130 interrupted (Ctrl-C saves a checkpoint; continue with --resume).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from training import config
from training.config import ConfigError
from training.data import CorpusError, load_corpus, make_splits


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage dump: the flag and the problem."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="namegen-train", description="Train makemore's BatchNorm MLP on a names corpus.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = commands.add_parser(
        "train", help="train a model into a run directory",
        description="Train a model into a run directory. Settings come from a preset, then --config, "
                    "then the flags below.")
    train.add_argument("--preset", help=f"model and recipe: {', '.join(config.RECIPES)} "
                                        f"(default {config.DEFAULT_PRESET}, or the config file's)")
    train.add_argument("--config", metavar="FILE.toml", help="TOML file with preset, [model], [train], [data]")
    train.add_argument("--data", metavar="PATH", dest="data_path", help=config.help_text("data", "path"))
    train.add_argument("--year", type=int, metavar="N", dest="data_year", help=config.help_text("data", "year"))
    train.add_argument("--split-seed", type=int, metavar="N", dest="data_seed", help=config.help_text("data", "seed"))
    train.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<preset>)")
    for section in ("model", "train"):
        group = train.add_argument_group(f"{section} settings (override the preset and config file)")
        for f in config.fields(section):
            kind = config.field_type(f)
            flag = "--" + f.name.replace("_", "-")
            if kind is bool:
                group.add_argument(flag, dest=f"{section}_{f.name}", action=argparse.BooleanOptionalAction,
                                   help=f.metadata["help"])
            else:
                group.add_argument(flag, dest=f"{section}_{f.name}", type=kind, metavar=kind.__name__.upper(),
                                   help=f.metadata["help"])
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint with its saved configuration")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction,
                       help="progress bar (default: when stderr is a terminal)")
    train.add_argument("--publish", metavar="REGISTRY", help="after training, publish the run to this registry")
    train.add_argument("--name", default="names", help="model name in the registry")
    train.add_argument("--force", action="store_true", help="publish even if not better than the current version")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CorpusError, ConfigError) as e:
        print(f"namegen-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("namegen-train: interrupted", file=sys.stderr)
        return 130


def overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The flags given on the command line, as {"model": {...}, "train": {...}, "data": {...}}."""
    given: dict[str, dict] = {"model": {}, "train": {}, "data": {}}
    for key, value in vars(args).items():
        section, _, name = key.partition("_")
        if section in given and value is not None:
            given[section][name] = value
    return given


def cmd_train(args: argparse.Namespace) -> int:
    from training import recipe, rundir  # torch: only when training
    from training.train import TrainingInterrupted

    given = overrides(args)
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
        if args.preset or args.config or any(given.values()):
            raise ConfigError("--resume continues with the run's saved configuration; drop the other settings")
        cfg, saved = config.from_run_dir(args.out)
        if not recipe.has_checkpoint(Path(args.out)):
            raise ConfigError(f"{args.out}: no checkpoint to resume from")
    else:
        cfg = config.resolve(args.preset, args.config, given)
    out = Path(args.out or f"runs/{cfg.preset}")

    corpus = load_corpus(cfg.data.path, cfg.data.year)
    if args.resume and corpus.sha256 != saved["data"]["sha256"]:
        raise CorpusError(f"{corpus.source}: the corpus changed since the run started (sha256 differs)")
    splits = make_splits(corpus, cfg.model.block_size, cfg.data.seed)
    model_config = replace(cfg.model, vocab_size=splits.vocab.size)
    data_info = {"source": corpus.source, "path": corpus.path, "year": corpus.year, "sha256": corpus.sha256,
                 "seed": cfg.data.seed, "sizes": splits.sizes()}
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    print(f"run {out} (preset {cfg.preset}), corpus {corpus.source}"
          f"{f' {corpus.year}' if corpus.year else ''}: {len(corpus.names):,} names")
    try:
        metrics = recipe.train(out, model_config, cfg.train, splits, data_info, resume=args.resume,
                               progress=progress, preset=cfg.preset)
    except TrainingInterrupted as e:
        print(f"namegen-train: {e}; continue with: namegen-train train --out {out} --resume", file=sys.stderr)
        return 130
    from training.plots import write_run_plots  # matplotlib: only once a run is done

    for d in (out, out / rundir.TEACHER):  # the teacher too: it ships when the student falls short
        if (d / rundir.DIAGNOSTICS).is_file():
            write_run_plots(d)
    print("\n".join(recipe.summary(metrics)))
    print(f"wrote {out}/{rundir.MODEL}, {rundir.METRICS}, {rundir.DIAGNOSTICS}, {rundir.PLOTS}/")
    if args.publish:
        shipped = recipe.shipped_run(out)
        if shipped != out:
            print(f"the student is not within {recipe.STUDENT_TOLERANCE} of its teacher on val: "
                  f"publishing the teacher ({shipped})")
        return publish(shipped, args.publish, args.name, args.force)
    return 0


def publish(run_dir: Path, registry: str, name: str, force: bool) -> int:
    from artifact import ArtifactError
    from artifact.registry import AlreadyPublished
    from training.publish import publish_run

    try:
        version = publish_run(run_dir, registry, name, force=force)
    except AlreadyPublished as e:  # the same model again: nothing to do, not a failure
        print(f"namegen-train: {e}")
        return 0
    except (ArtifactError, OSError) as e:  # OSError: e.g. a registry this user cannot write to
        print(f"namegen-train: not published: {e}", file=sys.stderr)
        return 1
    print(f"published {registry}/{name}/{version}")
    return 0
