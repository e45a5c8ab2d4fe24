"""`python -m artifact COMMAND`: the operator's view of a registry. Stdlib only (no torch, no onnxruntime),
but for `typicality`, which runs the model (onnxruntime).

    python -m artifact list                    # versions: created, val, corpus, teacher, size, current, forced
    python -m artifact show [VERSION]          # one version's manifest in short (default: the current one)
    python -m artifact rollback [VERSION]      # CURRENT -> VERSION (default: see below)
    python -m artifact prune --keep N          # remove old versions (never current, previous, best)
    python -m artifact verify                  # every version's files against its manifest, and CURRENT
    python -m artifact typicality [VERSION...] # add the corpus names' typicality quantiles (default: every version)

`rollback` with no VERSION picks the newest version older than the current one whose files still match
its manifest and that passed the quality gate on its own (was not published with --force).
A VERSION may be shortened to any prefix that names exactly one version (e.g. `20261125T19`).
--registry (default $NAMEGEN_MODEL_DIR or models) and --name ($NAMEGEN_MODEL_NAME or names) go before or
after the command. Exit status: 0 done; 1 `verify` found a damaged version, or `list` found CURRENT naming
a missing or damaged version; 2 a user error (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from artifact import ArtifactError
from artifact.layout import current_version, list_versions, version_path
from artifact.manifest import MANIFEST_FILE, Manifest
from artifact.registry import (best_on_corpus, current_problem, prune, resolve_version, rollback, verify_dir,
                               version_size)

PROG = "python -m artifact"


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage dump."""
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _location_options(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--registry", default=default(os.environ.get("NAMEGEN_MODEL_DIR", "models")),
                   help="registry root (default: $NAMEGEN_MODEL_DIR or models)")
    p.add_argument("--name", default=default(os.environ.get("NAMEGEN_MODEL_NAME", "names")),
                   help="model name in the registry (default: $NAMEGEN_MODEL_NAME or names)")


def build_parser() -> argparse.ArgumentParser:
    # The options are accepted on both sides of the command. A subcommand's defaults would overwrite
    # what was given before the command, so there they are SUPPRESSed: set only when given there.
    common = argparse.ArgumentParser(add_help=False)
    _location_options(common, lambda value: argparse.SUPPRESS)
    p = Parser(prog=PROG, description="List, inspect, roll back, prune and verify a model registry.")
    _location_options(p, lambda value: value)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", parents=[common], help="versions, oldest first; * marks the current one")
    show = sub.add_parser("show", parents=[common], help="one version in short (default: the current one)")
    show.add_argument("version", nargs="?")
    show.add_argument("--json", action="store_true", help="print the whole manifest")
    back = sub.add_parser("rollback", parents=[common],
                          help="point CURRENT at VERSION (default: the newest older version that verifies "
                               "and was not forced)")
    back.add_argument("version", nargs="?")
    pr = sub.add_parser("prune", parents=[common], help="remove old versions")
    pr.add_argument("--keep", type=int, required=True, metavar="N",
                    help="keep the newest N (and always the current, the rollback target and the best per corpus)")
    pr.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    sub.add_parser("verify", parents=[common], help="check every version's files against its manifest")
    ty = sub.add_parser("typicality", parents=[common],
                        help="compute the corpus names' typicality quantiles and write them into the manifest "
                             "(one rename per version; the hashed files are untouched)")
    ty.add_argument("versions", nargs="*", metavar="VERSION", help="default: every version")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    d = Path(args.registry) / args.name
    try:
        if not d.is_dir():
            raise ArtifactError(f"{d}: no such model in the registry (--registry, --name)")
        return COMMANDS[args.command](args)
    except ArtifactError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a read-only mount: rollback and prune need the registry read-write
        print(f"{PROG} {args.command}: error: {e.filename or d}: {e.strerror}"
              + (" (mount the registry read-write)" if e.errno == 30 else ""), file=sys.stderr)
        return 2


def cmd_list(args) -> int:
    current = _current(args)
    manifests = {v: _manifest(args, v) for v in list_versions(args.registry, args.name)}
    rows = [("", "VERSION", "CREATED", "VAL", "CORPUS", "TEACHER", "SIZE", "NOTE")]
    for v, m in manifests.items():
        size = f"{version_size(version_path(args.registry, args.name, v)) / 1e6:.2f} MB"
        if m is None:
            rows.append(("*" if v == current else "", v, "?", "?", "?", "?", size, "unreadable manifest"))
            continue
        notes = []
        if (m.gate or {}).get("forced"):
            notes.append("forced")
        readable = {k: x for k, x in manifests.items() if x is not None}
        if best_on_corpus(readable, m).version == v:
            notes.append("best on its corpus")
        rows.append(("*" if v == current else "", v, m.created, f"{m.metrics['val']:.4f}",
                     f"{m.corpus['source'][-24:]} {m.corpus['sha256'][:8]}", _teacher(m), size, ", ".join(notes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"{len(manifests)} version(s) in {Path(args.registry) / args.name}; current: {current or 'none'}")
    problem = current_problem(args.registry, args.name)
    if problem:
        print(f"WARNING: {problem}; the service keeps the model it has loaded and a fresh one cannot start "
              f"(`{PROG} rollback` points CURRENT at a sound version)")
        return 1
    return 0


def cmd_show(args) -> int:
    version = _existing(args, args.version or current_version(args.registry, args.name))
    path = version_path(args.registry, args.name, version)
    m = Manifest.read(path / MANIFEST_FILE)
    if args.json:
        print(json.dumps(m.to_dict(), indent=1))
        return 0
    arch = m.architecture
    lines = [
        ("version", f"{m.name}/{m.version}" + ("  (current)" if version == _current(args) else "")),
        ("created", m.created),
        ("path", str(path)),
        ("corpus", f"{m.description}; {m.corpus['source']} sha256 {m.corpus['sha256'][:12]}... split seed {m.corpus['seed']} "
                   f"sizes {m.corpus['sizes']}"),
        ("loss", "  ".join(f"{k} {m.metrics[k]:.4f}" for k in ("train", "val", "test")
                           if isinstance(m.metrics.get(k), (int, float)))),
        ("model", f"{arch.get('members', 1)} member(s), {arch.get('parameters')} parameters "
                  f"({arch.get('folded_parameters')} folded), block_size {m.block_size}, vocab {m.vocab_size}"),
        ("teacher", _teacher(m)),
        ("gate", _gate(m)),
        ("health", "ok" if m.health["ok"] else f"{len(m.health['warnings'])} warning(s):"),
        *[("", f"- {w.get('name', '?')}: {w.get('message', '')}") for w in m.health["warnings"]],
        ("files", f"{len(m.files)} hashed, {version_size(path) / 1e6:.2f} MB on disk"),
    ]
    for k, v in lines:
        print(f"{k + ':' if k else '':9} {v}")
    return 0


def cmd_rollback(args) -> int:
    version = None if args.version is None else _existing(args, args.version)
    old, new = rollback(args.registry, args.name, version)
    if old == new:
        print(f"{args.name}: CURRENT already names {new}; nothing changed")
    else:
        print(f"{args.name}: CURRENT {old or 'none'} -> {new}; running services load it at their next reload check")
    return 0


def cmd_prune(args) -> int:
    result = prune(args.registry, args.name, args.keep, dry_run=args.dry_run)
    removed = [v for v, why in result.items() if why is None]
    for v, why in result.items():
        print(f"{'keep  ' if why else ('would remove' if args.dry_run else 'removed')} {v}" + (f"  ({why})" if why else ""))
    verb = "would remove" if args.dry_run else "removed"
    print(f"{args.name}: {verb} {len(removed)} of {len(result)} version(s)")
    return 0


def cmd_verify(args) -> int:
    bad = 0
    for v in list_versions(args.registry, args.name):
        path = version_path(args.registry, args.name, v)
        problems = verify_dir(path)
        m = None if problems else Manifest.read(path / MANIFEST_FILE)
        if m is not None and (m.name, m.version) != (args.name, v):
            problems.append(f"manifest says {m.name}/{m.version}")
        if problems:
            bad += 1
            print(f"BAD {v}: " + "; ".join(problems))
        else:
            older = "" if len(m.files) > 2 else " (an older manifest: model.onnx and names.txt only)"
            print(f"ok  {v}: {len(m.files)} file(s) match the manifest{older}")
    current = _current(args)
    if current is None or current not in list_versions(args.registry, args.name):
        bad += 1
        print(f"BAD CURRENT: names {current or 'nothing'}, which is not a complete version")
    print(f"{args.name}: {'all versions verify' if not bad else f'{bad} problem(s)'}")
    return 1 if bad else 0


def cmd_typicality(args) -> int:
    from artifact.typicality import add_to_version  # onnxruntime: only this command needs it

    versions = [_existing(args, v) for v in args.versions] or list_versions(args.registry, args.name)
    paths = [version_path(args.registry, args.name, v) for v in versions]
    for v, path in zip(versions, paths):
        q = add_to_version(path).typicality["quantiles"]
        print(f"{v}: typicality quantiles written (per-character log-probability: median {q[50]:.3f}, "
              f"1st percentile {q[1]:.3f}, 99th {q[99]:.3f})")
    return 0


COMMANDS = {"typicality": cmd_typicality, "list": cmd_list, "show": cmd_show, "rollback": cmd_rollback, "prune": cmd_prune, "verify": cmd_verify}


def _current(args) -> str | None:
    try:
        return current_version(args.registry, args.name)
    except ArtifactError:
        return None


def _existing(args, version: str) -> str:
    """The version a full name or a unique prefix names."""
    return resolve_version(args.registry, args.name, version)


def _manifest(args, version: str) -> Manifest | None:
    try:
        return Manifest.read(version_path(args.registry, args.name, version) / MANIFEST_FILE)
    except ArtifactError:
        return None


def _teacher(m: Manifest) -> str:
    t = m.teacher
    return "-" if not t else f"{t.get('name', '?')}/{t['version']} (val {t['val']:.4f})"


def _gate(m: Manifest) -> str:
    g = m.gate
    if not g:
        return "- (published before the gate was recorded)"
    if g.get("forced"):
        return f"FORCED past: {g.get('overrode')}"
    if g.get("reference") is None:
        return "passed: first version on its corpus"
    return f"passed: val within {g.get('tolerance')} of the best on its corpus ({g['reference']}, {g['reference_val']:.4f})"


if __name__ == "__main__":
    sys.exit(main())
