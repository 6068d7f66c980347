"""A uvicorn factory for test_sighup: dynoserver's app, with start-up held open.

After ``create_app`` returns it touches ``<hold>.created`` and waits while the
file named by ``DYNO_TEST_STARTUP_HOLD`` exists, so a test can send a signal
between app creation and the lifespan, deterministically.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi import FastAPI

from dynoserver.app import create_app as create_dynoserver_app


def create_app() -> FastAPI:
    app = create_dynoserver_app()
    hold = Path(os.environ["DYNO_TEST_STARTUP_HOLD"])
    hold.with_name(hold.name + ".created").touch()
    deadline = time.monotonic() + 20
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # a signal interrupts the sleep and its Python handler runs here
    return app
