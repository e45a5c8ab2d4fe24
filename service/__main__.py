"""`python -m service` (or `namegen-serve`): uvicorn with the settings from NAMEGEN_* variables."""
from __future__ import annotations

import os
import sys

import uvicorn

from service.api.auth import limits_wanted, startup_problem
from service.api.limits import TableError, create_table, shared_table
from service.logs import get_logger, setup_logging
from service.ops import metrics_dir
from service.settings import SettingsError, get_settings, unknown_variables


def main() -> None:
    try:
        settings = get_settings()
    except SettingsError as e:
        print(f"namegen: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = startup_problem(settings)
    if problem is None and limits_wanted(settings) and settings.rate_table is not None:
        try:
            shared_table(settings.rate_table)  # the replicas of a host that name one file share its buckets
        except TableError as e:
            problem = f"NAMEGEN_RATE_TABLE: {e}"
    if problem:
        print(f"namegen: {problem}", file=sys.stderr)
        raise SystemExit(2)
    setup_logging(settings.log_format, settings.log_level)
    for name in unknown_variables(os.environ):
        get_logger("settings").warning("%s is not a setting and is ignored (a typo?)", name)
    metrics_dir.share_between_workers()  # before anything imports prometheus-client
    options = dict(host=settings.host, port=settings.port, log_config=None, access_log=False,
                   log_level=settings.log_level, timeout_graceful_shutdown=30, server_header=False,
                   # slow clients and the connection cap: see service/api/protocol.py
                   http="service.api.protocol:GuardedProtocol", timeout_keep_alive=settings.keep_alive)
    if settings.workers > 1:
        # Several processes: each worker imports the factory and reads the environment itself, so the
        # rate table they share is made here, before they start, and named in their environment.
        table = create_table() if limits_wanted(settings) and settings.rate_table is None else None
        if table is not None:
            os.environ["NAMEGEN_RATE_TABLE"] = str(table)
        try:
            uvicorn.run("service.api.app:create_app_from_env", factory=True, workers=settings.workers, **options)
        finally:
            if table is not None:
                table.unlink(missing_ok=True)
    else:
        from service.api.app import create_app
        uvicorn.run(create_app(settings), **options)


if __name__ == "__main__":
    main()
