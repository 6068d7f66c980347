"""Pid files that survive crashes and reboots without lying.

Each holds ``<pid> <process start time>``: after a reboot the pid may belong to some
other process, but not with the same start time, so a stale file reads as "not running".
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

START_TIME_TOLERANCE = 1.0  # seconds; create_time is derived from boot time and jiffies


def write(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid} {psutil.Process(pid).create_time()}\n")
    os.replace(tmp, path)


def live_process(path: Path) -> psutil.Process | None:
    """The process the pid file names, if it still runs; a stale file is removed."""
    try:
        pid_text, started_text = path.read_text().split()
        process = psutil.Process(int(pid_text))
        if abs(process.create_time() - float(started_text)) <= START_TIME_TOLERANCE and \
                process.status() != psutil.STATUS_ZOMBIE:
            return process
    except FileNotFoundError:
        return None
    except (ValueError, psutil.Error):
        pass
    path.unlink(missing_ok=True)
    return None
