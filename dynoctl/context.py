"""AppContext: what a command works with, built once per invocation (tests build their own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynoctl.config import Settings
from dynoctl.output import Output

if TYPE_CHECKING:
    from dynoctl.runtime.base import Runtime


@dataclass
class AppContext:
    settings: Settings
    out: Output
    command: str = "dynoctl"  # how locks and history name this run: 'dynoctl migrate new', no option values
    _runtime: Runtime | None = field(default=None, repr=False)

    @property
    def runtime(self) -> Runtime:
        """Chosen on first use, so commands that need none (env, version) never probe Docker."""
        if self._runtime is None:
            from dynoctl.runtime import get_runtime

            self._runtime = get_runtime(self.settings)
        return self._runtime
