"""`python -m service` (or `namegen-serve`): uvicorn with the settings from NAMEGEN_* variables."""
from __future__ import annotations

import os
import sys

import uvicorn

from service.api.auth import limits_wanted, startup_problem
from service.api.limits import create_table
from service.logs import setup_logging
from service.settings import get_settings


def main() -> None:
    settings = get_settings()
    problem = startup_problem(settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    setup_logging(settings.log_format, settings.log_level)
    options = dict(host=settings.host, port=settings.port, log_config=None, access_log=False,
                   log_level=settings.log_level, timeout_graceful_shutdown=30,
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
