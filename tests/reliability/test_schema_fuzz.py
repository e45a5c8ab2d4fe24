"""schemathesis against the live schema with every check: at least 1,000 requests, no 5xx, every
response conforming to the document (status, content type, headers, body schema), schema-valid
requests accepted and schema-invalid ones refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

from reliability_helpers import ROOT

EXAMPLES = 300  # per operation (fuzzing); with the coverage phase this makes about 1,300 requests


def test_schemathesis_every_check_against_the_live_schema(registry, start_server, tmp_path, figure):
    server = start_server(registry)
    report = tmp_path / "schemathesis.json"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "st_hooks",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT)])}
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks", "all",
           "--max-examples", str(EXAMPLES), "--workers", "1", "--seed", "20261125", "--request-timeout", "30",
           "--phases", "examples,coverage,fuzzing", "--report", "json", "--report-json-path", str(report)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = json.loads(report.read_text())
    statuses = server.statuses()
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert out["failures"] == [] and out["errors"] == []
    assert len(statuses) >= 1000
    assert [s for s in statuses if s >= 500 and s != 503] == []
    assert server.healthy()
    by_class = {f"{s // 100}xx": sum(1 for x in statuses if x // 100 == s // 100) for s in sorted(set(statuses))}
    figure("schemathesis: requests, failures, filtered (rules against max_length, bodies over the limit), s",
           f"{len(statuses)}, {len(out['failures'])}, {out['filtered']}, {out['running_time']:.0f}")
    figure("schemathesis: responses by class", by_class)
