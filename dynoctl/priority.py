"""Background work that must not hurt the live app (a backup): how it keeps off the CPU.

Two levels, measured on 2 cores (bench/backup.py, 1 GB, the API under a steady load):
- SCHED_IDLE, not just a higher nice value: a nice-10 process still gets its share of
  a contended core; a SCHED_IDLE one runs only on CPU nothing else wants, and an app
  thread that wakes up preempts it at once. Unprivileged processes may move their own
  (same user) processes there; children and new threads inherit it.
- That is not enough when the background work keeps every core busy: the API's p99
  was still 2.4-3.6x its p99 before a backup (two busy-looping SCHED_IDLE processes
  alone cost 1.5-1.7x; woken work lands on a busy core and pays for its caches). So
  ``Governor`` watches the CPU used by everything else on the machine and, while that
  is more than a trace, confines the governed processes to half the CPUs (at least
  one): the backup slows down only while someone else needs the machine.
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
        self.busy_ticks = 0  # how many ticks found the machine busy (for tests and reports)
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
                self.busy_ticks += 1
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
