"""A small supervisor for the local runtime's API server.

Run as ``python -m dynoctl.supervisor CHILD_PIDFILE [--user NAME] -- ARGV...`` in its own session,
with stdout/stderr already pointing at the log file. It restarts the server when it
exits unexpectedly (with back-off) and gives up after repeated quick crashes, so a
server that cannot start does not loop forever. SIGTERM/SIGINT stop it and the
server; SIGHUP is forwarded (the server re-reads its key file). The environment,
secrets included, is inherited: never argv.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from dynoctl import pidfiles

QUICK_CRASH_SECONDS = 10  # a run shorter than this counts as a failed start
MAX_QUICK_CRASHES = 3


def say(message: str) -> None:
    print(f"[supervisor {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] {message}", flush=True)


class Supervisor:
    def __init__(self, argv: list[str], child_pidfile: Path, user: str | None = None):
        self.argv = argv
        self.user = user
        self.child_pidfile = child_pidfile
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def on_stop(self, signum, frame) -> None:
        self.stopping = True
        if self.child and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def on_hup(self, signum, frame) -> None:
        if self.child and self.child.poll() is None:
            self.child.send_signal(signal.SIGHUP)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        signal.signal(signal.SIGHUP, self.on_hup)
        quick_crashes = 0
        while not self.stopping:
            started = time.monotonic()
            self.child = subprocess.Popen(self.argv, **self._account())
            pidfiles.write(self.child_pidfile, self.child.pid)
            code = self.child.wait()
            if self.stopping:
                break
            ran = time.monotonic() - started
            quick_crashes = quick_crashes + 1 if ran < QUICK_CRASH_SECONDS else 0
            if quick_crashes >= MAX_QUICK_CRASHES:
                say(f"server exited with status {code} {quick_crashes} times in a row right after start; giving up")
                write_gave_up(self.child_pidfile, quick_crashes, code)
                self.child_pidfile.unlink(missing_ok=True)
                return 1
            delay = 2 ** quick_crashes
            say(f"server exited with status {code} after {ran:.1f}s; restarting in {delay}s")
            time.sleep(delay)
        self.child_pidfile.unlink(missing_ok=True)
        say("stopped")
        return 0

    def _account(self) -> dict:
        # The server drops to its own account; the supervisor stays root, to write the pid
        # file in dynoctl's private run dir and to restart the server.
        if self.user is None:
            return {}
        import pwd

        from dynoctl.config import process_environment

        entry = pwd.getpwnam(self.user)
        env = {**process_environment(), "HOME": entry.pw_dir, "USER": self.user, "LOGNAME": self.user}
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "env": env}


def state_file(child_pidfile: Path) -> Path:
    """Where a supervisor that gave up says so, for 'dynoctl status' (run/server.state)."""
    return child_pidfile.with_suffix(".state")


def write_gave_up(child_pidfile: Path, crashes: int, last_exit: int) -> None:
    record = {"crashes": crashes, "last_exit": last_exit, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = state_file(child_pidfile).with_name(".server.state.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(state_file(child_pidfile))


def read_gave_up(child_pidfile: Path) -> dict | None:
    try:
        return json.loads(state_file(child_pidfile).read_text())
    except (OSError, ValueError):
        return None


def main(args: list[str]) -> int:
    user = None
    if len(args) > 2 and args[1] == "--user":
        user, args = args[2], [args[0], *args[3:]]
    pidfile, sep, *argv = args
    if sep != "--" or not argv:
        print("usage: python -m dynoctl.supervisor CHILD_PIDFILE [--user NAME] -- ARGV...", file=sys.stderr)
        return 2
    return Supervisor(argv, Path(pidfile), user).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
