"""Background work that must not hurt the live app (a backup): how it keeps off the CPU.

Measured on 2 cores (bench/backup.py, 1 GB, the API at 40 req/s from another process):
- Nice 19 for the backup's processes, and for the server processes reading for it.
  SCHED_IDLE measured worse than nice: the scheduler counts a core running only
  idle-class work as idle, so the app's woken threads were placed there and paid
  for its caches (p99 2.1-3.6x of its p99 before the backup).
- Priority alone is not enough while the backup keeps every core busy: two
  busy-looping idle-class processes alone cost the API 1.5-1.7x. So ``Governor``
  watches the CPU used by every other process and, while that is more than a trace,
  keeps the backup's processes on half the CPUs (at least one): the backup slows down
  only while someone else needs the machine (p99 about 1.1-1.3x; the backup took
  11 s under load instead of 6 s).
"""

from __future__ import annotations

import os
import threading
import time

# Cores used by other processes (averaged over a tick) above which the machine is busy:
# a tenth of a core, well above idle daemons and well below an app serving requests.
BUSY_CORES = 0.1
TICK_S = 0.5
# After the last busy tick, how long the confinement stays (a request burst rarely
# comes alone).
CALM_S = 1.0


def lower(pid: int = 0) -> bool:
    """Nice 19 for pid (0: the calling thread, and the threads and children it starts
    afterwards), and the lowest best-effort I/O level. False when the system refused
    (the pid is gone or not ours to change): harmless."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    except OSError:
        return False
    try:
        import psutil

        psutil.Process(pid or os.getpid()).ionice(psutil.IOPRIO_CLASS_BE, 7)
    except Exception:  # noqa: BLE001 - I/O priority is a nicety (not on every platform)
        pass
    return True


class Governor:
    """While in its ``with`` block, keeps this process, its descendants and the pids
    given to ``add`` (server processes working for us: pg_dump's backend) on half the
    CPUs whenever other processes are using the machine.

    Every TICK_S it reads each process's CPU time from /proc (psutil): what the others
    used since the last tick, kernel threads left out (they write our own pages back).
    Per process, not the machine's total less ours: that difference of coarse
    counters swung by a fifth of a core between ticks, and would trip a threshold."""

    def __init__(self) -> None:
        self.all_cpus = set(os.sched_getaffinity(0))
        ordered = sorted(self.all_cpus)
        self.half = set(ordered[len(ordered) - max(1, len(ordered) // 2):])
        self.extra: set[int] = set()
        self.confined = True  # until a first tick finds the machine calm
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="governor", daemon=True)

    def add(self, pid: int) -> None:
        self.extra.add(pid)
        self._apply(self._cpus(), {pid})

    def __enter__(self) -> Governor:
        if self.half != self.all_cpus:
            self._apply(self.half, self._ours(self._scan()))
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self._apply(self.all_cpus, self._ours(self._scan()))

    def _cpus(self) -> set[int]:
        return self.half if self.confined else self.all_cpus

    def _run(self) -> None:
        last, last_at = self._scan(), time.monotonic()
        calm_since = last_at - CALM_S  # a calm first tick releases at once
        while not self._stop.wait(TICK_S):
            now_scan, now = self._scan(), time.monotonic()
            ours = self._ours(now_scan)
            others = sum(cpu - last.get(pid, (0, 0.0))[1] for pid, (_, cpu) in now_scan.items() if pid not in ours)
            last, last_at, elapsed = now_scan, now, now - last_at
            if others / max(elapsed, 1e-3) > BUSY_CORES:
                calm_since, self.confined = now, True
            elif now - calm_since >= CALM_S:
                self.confined = False
            # Every tick, not only on a change: new threads and processes appear.
            self._apply(self._cpus(), ours)

    @staticmethod
    def _scan() -> dict[int, tuple[int, float]]:
        """pid -> (parent pid, CPU seconds) of every user-space process."""
        import psutil

        found = {}
        for process in psutil.process_iter(["ppid", "cpu_times"]):
            ppid, times = process.info["ppid"], process.info["cpu_times"]
            if times is not None and ppid != 2 and process.pid != 2:  # 2: kthreadd, the kernel threads' parent
                found[process.pid] = (ppid, times.user + times.system)
        return found

    def _ours(self, scan: dict[int, tuple[int, float]]) -> set[int]:
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in scan.items():
            children.setdefault(ppid, []).append(pid)
        ours, todo = set(), [os.getpid()]
        while todo:
            pid = todo.pop()
            ours.add(pid)
            todo.extend(children.get(pid, ()))
        return ours | self.extra

    @staticmethod
    def _apply(cpus: set[int], pids: set[int]) -> None:
        for pid in pids:
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass  # gone, or not ours to move
