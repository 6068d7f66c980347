"""Where results and messages go.

stdout carries data only: a Rich table (or plain text) for people, or exactly one JSON
document with --json. Status, progress, warnings and errors go to stderr. Rich is
imported on first use so that `dynoctl --help` does not pay for it.
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, datetimes and enums as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


PIPE_WIDTH = 200


class Output:
    def __init__(self, json_mode: bool = False, verbosity: int = 0, color: bool = True):
        self.json_mode = json_mode
        self.verbosity = verbosity
        self.color = color
        self._stdout = None
        self._stderr = None

    # -- consoles (lazy: rich costs import time) ---------------------------
    @property
    def stdout(self):
        if self._stdout is None:
            from rich.console import Console

            # Piped output is for grep and scripts: don't wrap tables at 80 columns.
            width = None if sys.stdout.isatty() else PIPE_WIDTH
            self._stdout = Console(file=sys.stdout, no_color=not self.color, highlight=False, soft_wrap=True,
                                   width=width)
        return self._stdout

    @property
    def stderr(self):
        if self._stderr is None:
            from rich.console import Console

            self._stderr = Console(file=sys.stderr, no_color=not self.color, highlight=False, soft_wrap=True)
        return self._stderr

    # -- data -> stdout -----------------------------------------------------
    def result(self, data: Any, human: Callable[[Any], Any] | None = None) -> None:
        """The command's result: JSON with --json, else what ``human(data)`` renders."""
        if self.json_mode:
            import json  # here, not at start-up: most invocations print no JSON

            sys.stdout.write(json.dumps(to_jsonable(data), indent=2) + "\n")
            sys.stdout.flush()
        elif human is not None:
            rendered = human(data)
            if isinstance(rendered, str):  # plain text needs no Rich (and its import time)
                self.line(rendered)
            elif rendered is not None:
                self.stdout.print(rendered)

    def json_line(self, data: Any) -> None:
        """One NDJSON record (followed logs)."""
        import json

        sys.stdout.write(json.dumps(to_jsonable(data)) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """Raw text to stdout, no markup (log lines)."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    # -- messages -> stderr -------------------------------------------------
    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            self.stderr.print(message, markup=False)

    def detail(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stderr.print(message, markup=False, style="dim")

    def warn(self, message: str) -> None:
        self.stderr.print(f"warning: {message}", markup=False, style="yellow")

    def error(self, message: str, hint: str | None = None, details: Sequence[str] = ()) -> None:
        self.stderr.print(f"error: {message}", markup=False, style="bold red")
        for line in details:
            self.stderr.print(f"  | {line}", markup=False, style="dim")
        if hint:
            self.stderr.print(f"hint: {hint}", markup=False)

    @contextmanager
    def progress(self, message: str) -> Iterator[Callable[[str], None]]:
        """A spinner on a terminal, one line otherwise; yields an ``update(text)``."""
        if self.verbosity < 0:
            yield lambda text: None
            return
        if not self.stderr.is_terminal:
            self.info(message + " ...")
            yield self.detail
            return
        with self.stderr.status(message) as status:
            yield lambda text: status.update(f"{message}: {text}")

    def confirm(self, question: str) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(question, console=self.stderr, default=False)

    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty() and self.stderr.is_terminal


def table(rows: Iterable[dict], columns: Sequence[str], title: str | None = None, headers: Sequence[str] | None = None):
    """A Rich table of the given columns of each row (None shows as '-')."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for header in headers or columns:
        t.add_column(header)
    for row in rows:
        t.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    return t
