"""Runtimes: where the stack's services (db, server) actually run.

``get_runtime`` is the only place that chooses one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Named as in stack/compose.yml, in start order. Here rather than in base.py so that
# commands can name services without importing the protocol's dataclasses at start-up.
SERVICES = ("db", "server")


def check_service(service: str) -> str:
    if service not in SERVICES:
        from dynoctl.errors import UsageError

        raise UsageError(f"unknown service {service!r}", hint=f"choose one of: {', '.join(SERVICES)}")
    return service

if TYPE_CHECKING:
    from dynoctl.config import Settings
    from dynoctl.runtime.base import Runtime


def get_runtime(settings: Settings) -> Runtime:
    """The runtime named by --runtime. ``auto``: local when this project's local stack
    is running (installing Docker later must not orphan it), else docker when an
    engine answers, else local."""
    name = settings.runtime
    if name == "auto":
        return _auto(settings)
    if name == "docker":
        from dynoctl.runtime.compose import ComposeRuntime

        return ComposeRuntime(settings)
    from dynoctl.runtime.local import LocalRuntime

    return LocalRuntime(settings)


def _auto(settings: Settings) -> Runtime:
    from dynoctl.runtime.local import LocalRuntime

    local = LocalRuntime(settings)
    if local.has_live_process():
        return local
    from dynoctl.runtime.compose import ComposeRuntime, docker_engine_answers

    return ComposeRuntime(settings) if docker_engine_answers(settings.environ) else local
