"""The application factory: ``uvicorn dynoserver.app:create_app --factory``.

Nothing happens at import time; ``create_app`` reads the settings, loads the
keys and builds the engine (which connects lazily).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dynoserver import assets, auth, health, openapi, projects, tasks, workers
from dynoserver.db import Database, credential_file
from dynoserver.errors import InternalErrorMiddleware, install_error_handlers
from dynoserver.keys import KeyConfigError, KeyStore
from dynoserver.limits import JSON_BODY_LIMIT, BodyLimitMiddleware
from dynoserver.logs import AccessLogMiddleware, configure_logging
from dynoserver.passwords import Passwords
from dynoserver.settings import Settings
from dynoserver.throttle import Throttle
from dynoserver.uploads import MULTIPART_OVERHEAD

log = logging.getLogger("dynoserver")


def create_app(settings: Settings | None = None) -> FastAPI:
    early_sighup = _note_sighup_until_started()  # first: the rest of start-up takes time
    settings = settings or Settings.from_env()
    configure_logging(settings.development)
    app = FastAPI(title="Dyno API", version="1.0.0", lifespan=_lifespan)
    app.state.early_sighup = early_sighup
    app.state.settings = settings
    app.state.keys = KeyStore(settings.jwt_keys_file, settings.access_token_secret, settings.refresh_token_secret)
    app.state.passwords = Passwords(settings)
    app.state.throttle = Throttle(settings.auth_window_seconds)
    app.state.database = Database(settings.database_url, credential_file(settings.jwt_keys_file))
    app.state.database_reload_lock = asyncio.Lock()
    app.state.reload_tasks = set()
    _publish_database(app)
    install_error_handlers(app)
    for module in (health, auth, projects, tasks, assets):
        app.include_router(module.router)
    openapi.install(app)
    # Each add_middleware wraps the previous ones. CORS sits right inside the access
    # log, so every answer a browser may read carries its headers: the body limit's
    # 413 and the JSON 500 are produced inside it.
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=JSON_BODY_LIMIT,
        upload_limit=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        upload_routes=assets.upload_routes(),
    )
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.frontend_url],
        allow_credentials=True,  # the refresh cookie
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(AccessLogMiddleware)  # added last: outermost, so it times everything
    return app


def _note_sighup_until_started() -> threading.Event:
    """Until the lifespan takes over SIGHUP, only note its arrival.

    SIGHUP's default action ends the process, and a rotation tool may send it
    while the server is still starting. Only the main thread may set handlers;
    elsewhere (an app built in a worker thread) the signal is not ours to take.
    """
    received = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, lambda signum, frame: received.set())
    return received


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    stop_reloading = _reload_on_sighup(app)
    if app.state.early_sighup.is_set():
        # Checked after the loop's handler is in place, so no SIGHUP falls in between.
        _reload(app)
    _report(app)
    log.info("dynoserver started (key set %s)", app.state.keys.current.version)
    try:
        yield
    finally:
        stop_reloading()
        app.state.passwords.close()
        app.state.engine.dispose()


def _reload_on_sighup(app: FastAPI) -> Callable[[], None]:
    """Install the SIGHUP handler on the running loop; returns its remover.

    The handler runs on the event loop between requests' steps and only swaps
    an immutable KeySet, so requests in flight are undisturbed.
    """
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, _reload, app)
    except (ValueError, RuntimeError, NotImplementedError):
        # Not the main thread (e.g. the test client's portal) or no signals here.
        log.info("SIGHUP key reload not available in this process")
        return lambda: None

    def stop() -> None:
        loop.remove_signal_handler(signal.SIGHUP)  # this restores the default: ending the process
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a late SIGHUP must not cut the shutdown short

    return stop


def _publish_database(app: FastAPI) -> None:
    # Routes read these two attributes; a reload rebinds them (the factory last).
    app.state.engine = app.state.database.engine
    app.state.session_factory = app.state.database.session_factory


def _reload(app: FastAPI) -> None:
    """SIGHUP (on the event loop): re-read the key file at once; the database credential
    in a task, since logging in with it blocks (see Database.prepare). Each step is
    reported for the other workers' /health when done."""
    _reload_keys(app.state.keys)
    _report(app)
    task = asyncio.get_running_loop().create_task(_reload_database(app))
    app.state.reload_tasks.add(task)  # a reference, so the task is not collected mid-way
    task.add_done_callback(app.state.reload_tasks.discard)


async def _reload_database(app: FastAPI) -> None:
    database = app.state.database
    async with app.state.database_reload_lock:  # SIGHUPs in a row: one log-in at a time
        try:
            prepared = await asyncio.to_thread(database.prepare)
        except Exception as exc:  # noqa: BLE001  a bad credential must not end the worker
            # Only the type: a URL parse error could quote the password.
            log.error("SIGHUP: new database credential not usable, keeping the current one (%s)",
                      type(exc).__name__)
            return
        if prepared is None:
            return
        database.swap(*prepared)
        _publish_database(app)
        log.info("SIGHUP: database login is now %s", database.login)
        _report(app)


def _report(app: FastAPI) -> None:
    try:
        workers.report(app.state.keys.current.version, app.state.database.login)
    except OSError as exc:  # reporting must never take the server down
        log.warning("cannot write this worker's report: %s", exc.strerror)


def _reload_keys(keys: KeyStore) -> None:
    previous = keys.current.version
    try:
        current = keys.reload().version
    except KeyConfigError as exc:
        log.error("SIGHUP: key reload failed, keeping key set %s: %s", previous, exc)
        return
    log.info("SIGHUP: key set reloaded %s -> %s", previous, current)
