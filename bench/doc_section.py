"""A benchmark's own section of docs/benchmarks.md, between markers naming its script, so several
benchmarks write one file without touching each other's figures."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
PREAMBLE = ("# Benchmarks\n\nEach section below is written by the benchmark script it names; rerun the script "
            "to refresh its section.\n")


def markers(script: str) -> tuple[str, str]:
    return f"<!-- {script}: begin -->", f"<!-- {script}: end -->"


def machine_line(command: str) -> str:
    """When, where and how a section was measured."""
    return (f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_model()}, {os.cpu_count()} cores, "
            f"by `{command}` (this section is rewritten by it).")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(script: str, body: str, doc: Path = DOC) -> str:
    """Replace `script`'s section of `doc` with `body` (or append it); returns the section."""
    begin, end = markers(script)
    section = f"{begin}\n{body.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else PREAMBLE
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")
    return section
