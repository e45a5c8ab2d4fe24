"""The reliability suite (`make reliability`): real servers on 127.0.0.1 serving the shipped model,
hostile and heavy input, faults. Every test here is marked `reliability` (left out of `make test`).
Each test records its figures with `figure(case, value)`; they are printed at the end, written to
$RELIABILITY_RESULTS (JSON) when that is set, and with RELIABILITY_DOC=1 written with each case's
outcome into docs/benchmarks.md (bench/reliability.py), so no figure of the suite is typed by hand."""
from __future__ import annotations

import itertools
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from reliability_helpers import ROOT, Server, copy_registry

sys.path.insert(0, str(ROOT))
from bench import reliability  # noqa: E402

RUN = reliability.Run()  # every case's figures and outcome


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)
            RUN.collected([item.nodeid])


def pytest_runtest_logreport(report):
    if report.nodeid in RUN.cases:
        RUN.report(report.nodeid, report.when, report.outcome, report.duration)


def pytest_terminal_summary(terminalreporter, config):
    figures = {label: value for case in RUN.cases.values() for label, value in case["figures"].items()}
    if figures:
        terminalreporter.section("reliability figures")
        for case, value in figures.items():
            terminalreporter.write_line(f"{case}: {value}")
        path = os.environ.get("RELIABILITY_RESULTS")
        if path:
            Path(path).write_text(json.dumps(figures, indent=1) + "\n")
    if os.environ.get("RELIABILITY_DOC") == "1" and RUN.ran():
        reliability.write(RUN, f"RELIABILITY_DOC=1 python -m pytest {shlex.join(config.invocation_params.args)}")


@pytest.fixture
def figure(request):
    def record(case: str, value) -> None:
        RUN.figure(request.node.nodeid, case, value)
    return record


@pytest.fixture
def registry(tmp_path) -> Path:
    """A private copy of the shipped registry, free to publish into and break."""
    return copy_registry(tmp_path / "models")


@pytest.fixture
def start_server(tmp_path):
    """start_server(registry, **settings) -> Server; every server is stopped by PID at teardown."""
    servers: list[Server] = []
    numbers = itertools.count()  # each its own log, also when several start at once from threads

    def start(registry: Path, **env) -> Server:
        server = Server(registry, tmp_path / f"server{next(numbers)}.log", **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
