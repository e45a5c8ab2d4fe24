"""docs/benchmarks.md, one section per benchmark script: each script hands its Markdown to
write_section and the rest of the file is left as it was, so no figure there is typed by hand."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEAD = "# Benchmarks\n\nEach section is written by the script it names, between its markers; none is typed by hand.\n"


def markers(name: str) -> tuple[str, str]:
    """bench/<name>.py's markers; a name with a slash is a script's own path (`.ci/deploy-test`)."""
    script = name if "/" in name else f"bench/{name}.py"
    return f"<!-- {script}:begin -->", f"<!-- {script}:end -->"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def command(argv: list[str] | None = None) -> str:
    """The command line that produced the figures, as someone would type it again from the checkout."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *args])


def machine(argv: list[str] | None = None, cmd: str | None = None) -> str:
    """One line: when, on what CPU and how many cores, at what load, by which command (`cmd` for a
    section not written by a script of bench/ run from the command line)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = datetime.datetime.now(datetime.timezone.utc)
    return (f"Measured {now:%Y-%m-%d %H:%M} UTC on {cpu_model()}, {os.cpu_count()} cores "
            f"(load average {load:.1f} at the end). Command: `{cmd or command(argv)}`")


def write_section(name: str, markdown: str, path: Path = DOC) -> Path:
    """Put `markdown` between the markers of `name` (see markers) in path, replacing what was there; a
    script without a section yet gets one at the end."""
    begin, end = markers(name)
    section = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEAD
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"  written to {path}")
    return path


def table(header: list[str] | tuple[str, ...], rows) -> str:
    """A Markdown table of strings."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in lines)


class Lines:
    """print() that also keeps what it printed, for the scripts whose table is their printed output."""

    def __init__(self):
        self.parts: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.parts.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.parts)
