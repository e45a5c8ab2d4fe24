""".ci/deploy-report: a passed deployment test's results become docs/benchmarks.md's section between
.ci/deploy-test's markers, and results that are incomplete, doubled or of a failed run write nothing."""
import importlib.util
import json
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "deploy-report"
_loader = SourceFileLoader("deploy_report", str(SCRIPT))
deploy_report = importlib.util.module_from_spec(importlib.util.spec_from_loader("deploy_report", _loader))
_loader.exec_module(deploy_report)

BUILD_OUTPUT = """\
[images    0s] base python:3.11-slim: present
[images    2s] namegen-api:0.1.0-gabc built in 2 s, 197 MB over the base (580 MB in all)
[images   97s] namegen-trainer:0.1.0-gabc built in 95 s, 1379 MB over the base (1762 MB in all)
[images   98s] namegen-lb:0.1.0-gabc built in 1 s, 11 MB over the base (394 MB in all)
"""
DOC = "# Benchmarks\n\n<!-- bench/one.py:begin -->\nanother script's\n<!-- bench/one.py:end -->\n"


def summary(requests, failed=0, retried=0, upstreams=3, **by_status):
    statuses = {"200": requests - failed, **by_status}
    return {"requests": requests, "ok": requests - failed, "failed": failed, "by_status": statuses, "errors": {},
            "upstreams": {f"10.0.0.{i}:8000": 1 for i in range(upstreams)}, "retried": retried, "versions": {},
            "seconds": 20.0}


def passed_run(tmp_path, drop=(), twice=()):
    """A results file as .ci/deploy-test and .ci/swarm-test write it, through `add` (the command they use)."""
    results = tmp_path / "results.jsonl"
    (tmp_path / "images.out").write_text(BUILD_OUTPUT)
    loads = {"compose-scale": (13, summary(394, retried=93)), "compose-kill": (None, summary(160, failed=1, retried=6, **{"502": 1})),
             "swarm-update": (24, summary(466, upstreams=2)), "swarm-rollback": (25, summary(482, upstreams=2)),
             "swarm-kill": (7, summary(228, retried=8, upstreams=2)), "swarm-scale": (18, summary(462)),
             "swarm-publish": (21, summary(424))}
    records = [("stage", [f"name={name}", f"seconds={s}"]) for name, s in
               (("host packages", 0), ("images", 98), ("swarm stack (deploy/swarm/stack.yml)", 135),
                ("teardown and host check", 4))]
    records += [("images", [f"output=@{tmp_path / 'images.out'}", "base_bytes=383500000"]),
                ("api", ["healthy_seconds=7", "threads=13"])]
    for name, (seconds, s) in loads.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(s))
        records.append((name, ([f"seconds={seconds}"] if seconds else []) + [f"summary=@{tmp_path / name}.json"]))
    for name, backends, greedy_ok in (("rates-api", 0, 68), ("rates-lb", 3, 69)):
        records.append((name, ["rate=10", "seconds=6", f"greedy_ok={greedy_ok}", "greedy_429=51", "steady_ok=30",
                               "steady_429=0", "allowed=69", f"backends={backends}"]))
    records += [("revoke", ["seconds=0"]), ("swarm-deploy", ["seconds=8"]), ("end", ["passed=true", "seconds=301"])]
    for what, pairs in records:
        for _ in range((what not in drop) + (what in twice)):
            assert deploy_report.main(["add", str(results), what, *pairs]) == 0
    return results


def write(results, doc):
    return subprocess.run([sys.executable, str(SCRIPT), "write", str(results), "--doc", str(doc)],
                          capture_output=True, text=True, timeout=60)


def rows(text):
    return {cells[0]: cells[1:] for line in text.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_a_passed_runs_figures_go_between_the_deploy_tests_markers_and_the_rest_is_kept(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    done = write(passed_run(tmp_path), doc)
    assert done.returncode == 0, done.stderr
    text = doc.read_text()
    assert text.startswith(DOC.rstrip("\n"))  # the other section as it was
    section = text.split("<!-- .ci/deploy-test:begin -->\n", 1)[1].split("\n<!-- .ci/deploy-test:end -->", 1)[0]
    assert "**PASSED in 301 s.**" in section and "Command: `DEPLOY_DOC=1 .ci/deploy-test`" in section
    assert "Base `python:3.11-slim`: present (the layer cache), 383 MB." in section
    table = rows(section)
    assert table["images"] == ["98"] and table["teardown and host check"] == ["4"]
    assert table["`namegen-trainer`"] == ["95 s", "1,379 MB", "1,762 MB"]
    assert table["compose: 1 -> 3 backends (2 api-replicas added)"] == ["13 s (replicas healthy)", "394", "0", "93", "3"]
    assert table["compose: one api-replica killed (SIGKILL)"] == ["-", "160", "1 (HTTP 502: 1)", "6", "3"]
    assert table["swarm c: one api task killed (SIGKILL)"] == ["7 s (a new healthy task)", "228", "0", "8", "2"]
    assert table["on one replica (`api`, 2 workers)"] == ["68 / 51", "69", "30 / 0", "-"]
    assert table["through the lb over 3 replicas"] == ["69 / 51", "69", "30 / 0", "3"]
    assert table["swarm: `docker stack deploy` to api 2/2 healthy"] == ["8 s"]
    assert table["compose: from `make token-revoke` to its token refused 401 (no restart)"] == ["under 1 s"]


@pytest.mark.parametrize("drop, twice, why", [
    (("swarm-publish",), (), "not recorded: swarm-publish"),
    (("end",), (), "not recorded: end"),
    ((), ("compose-kill",), "compose-kill recorded twice"),
])
def test_results_missing_a_figure_or_holding_one_twice_write_nothing(tmp_path, drop, twice, why):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    done = write(passed_run(tmp_path, drop=drop, twice=twice), doc)
    assert done.returncode == 1 and why in done.stderr
    assert doc.read_text() == DOC


def test_a_failed_run_or_a_summary_that_does_not_add_up_writes_nothing(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    results = passed_run(tmp_path)
    lines = results.read_text().splitlines()
    end = json.loads(lines[-1])
    results.write_text("\n".join(lines[:-1] + [json.dumps(end | {"passed": False})]) + "\n")
    assert write(results, doc).returncode == 1 and doc.read_text() == DOC
    again = tmp_path / "again"
    again.mkdir()
    results = passed_run(again, drop=("swarm-scale",))
    (again / "bad.json").write_text(json.dumps(summary(100) | {"ok": 90}))  # 100 requests, 90 ok, 0 failed
    deploy_report.main(["add", str(results), "swarm-scale", "seconds=18", f"summary=@{again}/bad.json"])
    done = write(results, doc)
    assert done.returncode == 1 and "swarm-scale: 100 requests are not 90 ok + 0 failed" in done.stderr
    assert doc.read_text() == DOC


def test_add_keeps_numbers_and_json_as_such_and_the_rest_as_text(tmp_path):
    results = tmp_path / "results.jsonl"
    (tmp_path / "a.json").write_text('{"requests": 3}')
    deploy_report.main(["add", str(results), "stage", "name=scale-out: lb over api", "seconds=12",
                        f"summary=@{tmp_path}/a.json", "passed=true"])
    assert json.loads(results.read_text()) == {"what": "stage", "name": "scale-out: lb over api", "seconds": 12,
                                               "summary": {"requests": 3}, "passed": True}


def test_the_docs_section_is_the_deploy_tests_once():
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    begin, end = deploy_report.report.markers(deploy_report.SECTION)
    assert begin == "<!-- .ci/deploy-test:begin -->" and (ROOT / ".ci" / "deploy-test").is_file()
    assert text.count(begin) == 1 and text.count(end) == 1
