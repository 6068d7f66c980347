"""Probes and log reading shared by both runtimes."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.error import HTTPError, URLError
from urllib.request import urlopen


@dataclass(frozen=True)
class ServerProbe:
    health: str  # "healthy" | "unhealthy" | "starting"
    reason: str | None = None


def probe_server(api_url: str, timeout: float = 2) -> ServerProbe:
    """Ask the server's /ready: 200 healthy; 503 unhealthy with the server's reason
    (e.g. schema behind); no answer yet: starting. Loopback only."""
    try:
        with urlopen(f"{api_url}/ready", timeout=timeout) as response:  # noqa: S310 (http on 127.0.0.1)
            return ServerProbe("healthy") if response.status == 200 else ServerProbe("unhealthy", f"HTTP {response.status}")
    except HTTPError as exc:
        return ServerProbe("unhealthy", _reason(exc) or f"HTTP {exc.code}")
    except (URLError, OSError) as exc:
        return ServerProbe("starting", str(getattr(exc, "reason", exc)))


def _reason(exc: HTTPError) -> str | None:
    try:
        return str(json.loads(exc.read() or b"{}").get("reason") or "") or None
    except (ValueError, AttributeError):
        return None


def follow_file(path: Path, *, tail: int | None = None, follow: bool = False, poll: float = 0.25) -> Iterator[str]:
    """The last ``tail`` lines of a log file (all when None), then, with ``follow``,
    new lines as they are written (until interrupted)."""
    try:
        handle = open(path, "r", errors="replace")
    except FileNotFoundError:
        if not follow:
            return
        while not path.exists():
            time.sleep(poll)
        handle = open(path, "r", errors="replace")
    with handle:
        lines = deque(handle, maxlen=tail) if tail is not None else list(handle)
        for line in lines:
            yield line.rstrip("\n")
        while follow:
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
            else:
                time.sleep(poll)
