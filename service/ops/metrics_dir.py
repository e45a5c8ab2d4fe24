"""Where the workers of one server meet for /metrics: a directory per run for prometheus-client's
multiprocess mode. Kept apart from service/ops/metrics.py because prometheus-client picks its value
store when it is first imported, so the directory must be in the environment before that; uvicorn's
worker processes inherit it."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def share_between_workers() -> str:
    """Make a fresh directory for this run (no counts from an earlier run can leak in), point the
    environment at it, and remove it when the server exits."""
    path = tempfile.mkdtemp(prefix="namegen-metrics-")
    os.environ[VARIABLE] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def shared_dir() -> str | None:
    return os.environ.get(VARIABLE)
