"""Runtimes: where the stack's services (db, server) actually run.

``get_runtime`` is the only place that chooses one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynoctl.config import Settings
    from dynoctl.runtime.base import Runtime


def get_runtime(settings: Settings) -> Runtime:
    """The runtime named by --runtime; ``auto`` picks docker when an engine answers."""
    name = settings.runtime
    if name == "auto":
        from dynoctl.runtime.compose import docker_engine_answers

        name = "docker" if docker_engine_answers() else "local"
    if name == "docker":
        from dynoctl.runtime.compose import ComposeRuntime

        return ComposeRuntime(settings)
    from dynoctl.runtime.local import LocalRuntime

    return LocalRuntime(settings)
