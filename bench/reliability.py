"""The reliability suite's section of docs/benchmarks.md: every case of one run of `make reliability`,
the figures it recorded and whether it passed. tests/reliability/conftest.py feeds a Run while the
suite runs and, with RELIABILITY_DOC=1, writes the section at its end; nothing here measures."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench import report

NAME = "reliability"  # the section's markers: <!-- bench/reliability.py:begin/end -->
TITLE = "The reliability suite, case by case"
OUTCOMES = ("passed", "failed", "skipped", "not run")


class Run:
    """What one session of the suite did, case by case: a case is a test item, named by its node id."""

    def __init__(self):
        self.cases: dict[str, dict] = {}  # node id -> {"outcome", "seconds", "figures": {label: value}}

    def case(self, nodeid: str) -> dict:
        return self.cases.setdefault(nodeid, {"outcome": "not run", "seconds": 0.0, "figures": {}})

    def collected(self, nodeids) -> None:
        """Every case the session found, before any is deselected: one never reported stays 'not run'."""
        for nodeid in nodeids:
            self.case(nodeid)

    def figure(self, nodeid: str, label: str, value) -> None:
        self.case(nodeid)["figures"][label] = value

    def report(self, nodeid: str, when: str, outcome: str, seconds: float) -> None:
        """One phase of a case (setup, call, teardown): a failure in any phase fails the case."""
        case = self.case(nodeid)
        case["seconds"] += seconds
        if outcome == "failed":
            case["outcome"] = "failed"
        elif case["outcome"] != "failed" and (when == "call" or outcome == "skipped"):
            case["outcome"] = outcome

    def ran(self) -> bool:
        return any(case["outcome"] != "not run" for case in self.cases.values())


def value_text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items())
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def cell(text: str) -> str:
    """Text that stays inside one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def result_text(cases: list[tuple[str, dict]]) -> str:
    """A case's outcome; for a parametrized test, the count of each and the ids of those that failed."""
    if len(cases) == 1:
        return cases[0][1]["outcome"]
    counts = Counter(case["outcome"] for _, case in cases)
    text = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
    failed = [nodeid.partition("[")[2].rstrip("]") for nodeid, case in cases if case["outcome"] == "failed"]
    return text + (f" ({', '.join(failed)})" if failed else "")


def section(run: Run, cmd: str) -> str:
    """Markdown: one row per test of tests/reliability (a parametrized test's cases together), in the
    order they were collected, with the figures they recorded in this run and no other."""
    tests: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for nodeid, case in run.cases.items():
        path, _, name = nodeid.partition("::")
        tests.setdefault((Path(path).name, name.partition("[")[0]), []).append((nodeid, case))
    rows = []
    for (file, test), cases in tests.items():
        figures = [f"{label}: {value_text(value)}" for _, case in cases for label, value in case["figures"].items()]
        name = f"`{test}`" + (f" ({len(cases)} cases)" if len(cases) > 1 else "")
        rows.append((f"`{file}`", name, "<br>".join(cell(f) for f in figures), cell(result_text(cases))))
    counts = Counter(case["outcome"] for case in run.cases.values())
    summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
    seconds = sum(case["seconds"] for case in run.cases.values())
    return "\n\n".join([
        f"## {TITLE}",
        "Each case of `tests/reliability/` with the figures it recorded in this run, written by the suite at "
        "its end (`RELIABILITY_DOC=1 make reliability`); what each case does and what it asserts: "
        f"[reliability.md](reliability.md). {summary}, {seconds:.0f} s of test time. {report.machine(cmd=cmd)}",
        report.table(["file", "case", "figures recorded", "result"], rows)])


def write(run: Run, cmd: str, path: Path = report.DOC) -> Path:
    return report.write_section(NAME, section(run, cmd), path)
