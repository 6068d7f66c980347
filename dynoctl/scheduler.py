"""The ONE job table (what runs when) and its three consumers: crontab lines, systemd
service+timer pairs, and the in-process scheduler (the ``schedule`` package).

The table is ``DEFAULT_JOBS``, overridden per project by ``.dyno/schedule.toml``::

    [jobs.purge]                 # replaces the default job of that name
    command = "purge all --apply --max-delete 2000000"
    when = "daily 03:17"
    [jobs.backup]
    enabled = false              # drops a default job
    [jobs.vacuum-report]         # a job of your own: any dynoctl command
    command = "history --limit 5"
    when = "weekly sun 05:00"

``when`` is one small grammar every consumer can express: ``daily HH:MM``,
``hourly :MM``, ``weekly DAY HH:MM`` and ``every N{m,h}`` (N dividing 60 or 24), plus
``every Ns`` for the in-process scheduler only. Jobs always run as a child
``dynoctl --project-dir P <command>``: its own lock, exit code and history entry, and a
crash of one job cannot take the scheduler down.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from dynoctl.errors import ConfigError, DynoctlError, Refused

SCHEDULE_FILENAME = "schedule.toml"
LOG_RELPATH = Path("logs") / "schedule.log"  # under the state dir
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SCHEDULE_METHODS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Job:
    name: str
    command: str  # dynoctl arguments, e.g. "purge all --apply"
    when: str

    @property
    def args(self) -> list[str]:
        return shlex.split(self.command)


# The commands of other groups (backup, rotate-secrets) are referenced by command line:
# this table only names them; each command owns its flags.
DEFAULT_JOBS = (
    Job("backup", "backup", "daily 02:05"),
    Job("backup-prune", "backup prune --apply", "daily 02:35"),
    Job("purge", "purge all --apply", "daily 03:17"),
    Job("purge-quarantine", "purge quarantine --apply", "daily 03:47"),
    Job("rotate-secrets-prune", "rotate-secrets --prune --yes", "hourly :23"),
)


@dataclass(frozen=True)
class When:
    kind: str  # "daily" | "hourly" | "weekly" | "every"
    minute: int = 0
    hour: int = 0
    day: str | None = None
    every: int = 0
    unit: str = ""  # for "every": "s" | "m" | "h"


def parse_when(text: str) -> When:
    t = text.strip().lower()
    if m := re.fullmatch(r"daily (\d{1,2}):(\d{2})", t):
        return _checked(When("daily", minute=int(m[2]), hour=int(m[1])), text)
    if m := re.fullmatch(r"hourly :(\d{2})", t):
        return _checked(When("hourly", minute=int(m[1])), text)
    if m := re.fullmatch(r"weekly (mon|tue|wed|thu|fri|sat|sun) (\d{1,2}):(\d{2})", t):
        return _checked(When("weekly", minute=int(m[3]), hour=int(m[2]), day=m[1]), text)
    if m := re.fullmatch(r"every (\d+)([smh])", t):
        if int(m[1]) < 1:
            raise ConfigError(f"bad schedule {text!r}: the interval must be at least 1")
        return When("every", every=int(m[1]), unit=m[2])
    raise ConfigError(f"bad schedule {text!r}",
                      hint="use 'daily HH:MM', 'hourly :MM', 'weekly sun HH:MM' or 'every N(m|h)'")


def _checked(when: When, text: str) -> When:
    if not (0 <= when.hour < 24 and 0 <= when.minute < 60):
        raise ConfigError(f"bad time in schedule {text!r}")
    return when


def load_jobs(state_dir: Path) -> list[Job]:
    """The defaults, with .dyno/schedule.toml applied on top."""
    import tomllib

    jobs = {job.name: job for job in DEFAULT_JOBS}
    path = state_dir / SCHEDULE_FILENAME
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix the file, or remove it to use the defaults")
    for name, spec in (data.get("jobs") or {}).items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or not isinstance(spec, dict):
            raise ConfigError(f"{path}: bad job [{name}]", hint="job names: lowercase letters, digits and '-'")
        if spec.get("enabled", True) is False:
            jobs.pop(name, None)
            continue
        base = jobs.get(name)
        command, when = spec.get("command", base and base.command), spec.get("when", base and base.when)
        if not command or not when:
            raise ConfigError(f"{path}: job [{name}] needs a command and a when")
        parse_when(when)
        jobs[name] = Job(name, command, when)
    return list(jobs.values())


def dynoctl_argv(project_dir: Path) -> list[str]:
    """This dynoctl, by absolute path (cron and systemd have a bare PATH): the console
    script beside this interpreter, else the interpreter with -m dynoctl. The venv's
    python is not resolved: resolving a venv's symlink would lose the venv."""
    script = Path(sys.executable).parent / "dynoctl"
    base = [str(script)] if script.is_file() else [sys.executable, "-m", "dynoctl"]
    return [*base, "--project-dir", str(project_dir)]


# -- cron --------------------------------------------------------------------------


def cron_spec(when: When) -> str:
    if when.kind == "daily":
        return f"{when.minute} {when.hour} * * *"
    if when.kind == "hourly":
        return f"{when.minute} * * * *"
    if when.kind == "weekly":
        return f"{when.minute} {when.hour} * * {DAYS.index(when.day) + 1}"
    if when.unit == "m" and 60 % when.every == 0:
        return f"*/{when.every} * * * *" if when.every > 1 else "* * * * *"
    if when.unit == "h" and 24 % when.every == 0:
        return f"0 */{when.every} * * *"
    raise ConfigError(f"'every {when.every}{when.unit}' has no cron or systemd form",
                      hint="use minutes dividing 60 or hours dividing 24 (seconds: 'dynoctl scheduler run' only)")


def cron_lines(jobs: list[Job], project_dir: Path, state_dir: Path) -> list[str]:
    """One crontab line per job: flock(1) -n skips a run while the previous one of the
    same job still runs (dynoctl's own locks would also exit 75, but noisily), output
    is appended to the schedule log, every path is absolute."""
    log = state_dir / LOG_RELPATH
    lines = []
    for job in jobs:
        lock = state_dir / f"schedule-{job.name}.lock"
        argv = [_flock(), "-n", str(lock), *dynoctl_argv(project_dir), *job.args]
        command = " ".join(shlex.quote(a) for a in argv) + f" >> {shlex.quote(str(log))} 2>&1"
        # '%' is a newline to cron: escape it.
        lines.append(f"{cron_spec(parse_when(job.when))} {command.replace('%', chr(92) + '%')}")
    return lines


def _flock() -> str:
    import shutil

    return shutil.which("flock") or "/usr/bin/flock"  # util-linux; cron's PATH may not find it


def block_marker(project_dir: Path) -> tuple[str, str]:
    return (f"# BEGIN dynoctl schedule for {project_dir} (managed: 'dynoctl schedule uninstall' removes it)",
            f"# END dynoctl schedule for {project_dir}")


def with_block(crontab: str, block_lines: list[str], project_dir: Path) -> str:
    """The crontab with this project's block replaced (or appended); the rest untouched."""
    begin, end = block_marker(project_dir)
    kept = without_block(crontab, project_dir)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return kept + "\n".join([begin, *block_lines, end]) + "\n"


def without_block(crontab: str, project_dir: Path) -> str:
    begin, end = block_marker(project_dir)
    out, inside = [], False
    for line in crontab.splitlines(keepends=True):
        if line.rstrip("\n") == begin:
            inside = True
        elif inside and line.rstrip("\n") == end:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise Refused("the crontab has a dynoctl block without its END line: not touching it",
                      hint="fix it with 'crontab -e'")
    return "".join(out)


def read_crontab() -> str:
    from dynoctl import proc

    done = proc.run(["crontab", "-l"], check=False)
    if done.returncode != 0:
        if "no crontab" in (done.stderr or "").lower():
            return ""
        raise DynoctlError(f"crontab -l failed: {(done.stderr or '').strip()}",
                           hint="is cron installed? (Debian: apt-get install cron)")
    return done.stdout


def write_crontab(text: str) -> None:
    from dynoctl import proc

    proc.run(["crontab", "-"], input=text.encode())


@dataclass
class CronChange:
    installed: bool
    changed: bool
    lines: list[str]


def install_cron(jobs: list[Job], project_dir: Path, state_dir: Path) -> CronChange:
    (state_dir / LOG_RELPATH).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = cron_lines(jobs, project_dir, state_dir)
    current = read_crontab()
    new = with_block(current, lines, project_dir)
    if new != current:
        write_crontab(new)
    return CronChange(True, new != current, lines)


def uninstall_cron(project_dir: Path) -> CronChange:
    current = read_crontab()
    new = without_block(current, project_dir)
    if new != current:
        write_crontab(new)
    return CronChange(False, new != current, [])


# -- systemd -----------------------------------------------------------------------


def on_calendar(when: When) -> str:
    if when.kind == "daily":
        return f"*-*-* {when.hour:02d}:{when.minute:02d}:00"
    if when.kind == "hourly":
        return f"*-*-* *:{when.minute:02d}:00"
    if when.kind == "weekly":
        return f"{when.day.capitalize()} *-*-* {when.hour:02d}:{when.minute:02d}:00"
    cron_spec(when)  # the same limits as cron
    return f"*-*-* *:00/{when.every}:00" if when.unit == "m" else f"*-*-* 00/{when.every}:00:00"


def unit_prefix(project_dir: Path) -> str:
    import hashlib

    return "dyno-" + hashlib.sha256(str(project_dir).encode()).hexdigest()[:8]


def systemd_units(jobs: list[Job], project_dir: Path, state_dir: Path) -> dict[str, str]:
    """name -> text of a oneshot service and its timer per job. systemd never starts a
    second instance of a service that is still running: no overlap by construction."""
    log = state_dir / LOG_RELPATH
    units = {}
    for job in jobs:
        name = f"{unit_prefix(project_dir)}-{job.name}"
        exec_start = " ".join(_systemd_quote(a) for a in [*dynoctl_argv(project_dir), *job.args])
        units[f"{name}.service"] = (
            f"[Unit]\nDescription=dynoctl {job.command} ({project_dir})\n\n"
            f"[Service]\nType=oneshot\nWorkingDirectory={project_dir}\nExecStart={exec_start}\n"
            f"StandardOutput=append:{log}\nStandardError=append:{log}\n")
        units[f"{name}.timer"] = (
            f"[Unit]\nDescription=dynoctl {job.name} ({project_dir})\n\n"
            f"[Timer]\nOnCalendar={on_calendar(parse_when(job.when))}\nPersistent=true\n"
            f"RandomizedDelaySec=60\n\n[Install]\nWantedBy=timers.target\n")
    return units


def _systemd_quote(arg: str) -> str:
    # systemd's ExecStart quoting: double quotes, backslash escapes; '%' is a specifier.
    arg = arg.replace("%", "%%")
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()  # what sd_booted(3) checks


def systemd_dir() -> tuple[Path, list[str]]:
    """Where units go, and the systemctl flags for it: the system for root, else the user."""
    if os.geteuid() == 0:
        return Path("/etc/systemd/system"), []
    return Path.home() / ".config" / "systemd" / "user", ["--user"]


def install_systemd(jobs: list[Job], project_dir: Path, state_dir: Path) -> list[str]:
    from dynoctl import proc
    from dynoctl.atomicfile import write_atomic

    if not systemd_running():
        raise Refused("systemd is not running on this host", hint="use 'dynoctl schedule install --cron', "
                      "or 'dynoctl scheduler run' in a container")
    directory, flags = systemd_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (state_dir / LOG_RELPATH).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    units = systemd_units(jobs, project_dir, state_dir)
    for name, text in units.items():
        write_atomic(directory / name, text)
    proc.run(["systemctl", *flags, "daemon-reload"])
    timers = [n for n in units if n.endswith(".timer")]
    proc.run(["systemctl", *flags, "enable", "--now", *timers])
    return [str(directory / n) for n in units]


def uninstall_systemd(project_dir: Path) -> list[str]:
    from dynoctl import proc

    directory, flags = systemd_dir()
    ours = sorted(directory.glob(unit_prefix(project_dir) + "-*"))
    timers = [p.name for p in ours if p.suffix == ".timer"]
    if timers and systemd_running():
        proc.run(["systemctl", *flags, "disable", "--now", *timers], check=False)
    for path in ours:
        path.unlink()
    if ours and systemd_running():
        proc.run(["systemctl", *flags, "daemon-reload"], check=False)
    return [str(p) for p in ours]


# -- the in-process scheduler ------------------------------------------------------


@dataclass
class JobRun:
    """One run, as the scheduler logs it (one JSON line)."""

    job: str
    command: str
    started_at: str
    duration_s: float
    exit_code: int
    status: str  # "ok" | "failed" | "busy" | "error"
    error: str | None = None


def _status(code: int) -> str:
    return {0: "ok", 75: "busy"}.get(code, "failed")


class InProcessScheduler:
    """Runs the job table with the ``schedule`` package until SIGTERM/SIGINT. One job
    at a time (a job due while another runs starts after it); each run is a child
    dynoctl whose failure is logged and forgotten. SIGTERM stops scheduling, passes the
    signal to a running child and waits for it, then returns."""

    def __init__(self, jobs: list[Job], project_dir: Path, log: Callable[[JobRun], None], run_now: bool = False):
        import schedule

        self.sched = schedule.Scheduler()
        self.project_dir, self.log = project_dir, log
        self.stopping = False
        self.child = None
        for job in jobs:
            self._every(parse_when(job.when)).do(self.run_job, job)
        self.run_now = run_now

    def _every(self, when: When):
        s = self.sched
        if when.kind == "daily":
            return s.every().day.at(f"{when.hour:02d}:{when.minute:02d}")
        if when.kind == "hourly":
            return s.every().hour.at(f":{when.minute:02d}")
        if when.kind == "weekly":
            day = _SCHEDULE_METHODS[DAYS.index(when.day)]
            return getattr(s.every(), day).at(f"{when.hour:02d}:{when.minute:02d}")
        unit = {"s": "seconds", "m": "minutes", "h": "hours"}[when.unit]
        return getattr(s.every(when.every), unit)

    def run_job(self, job: Job) -> None:
        if self.stopping:
            return
        import subprocess

        started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.monotonic()
        error = None
        try:
            self.child = subprocess.Popen([*dynoctl_argv(self.project_dir), *job.args], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, stderr = self.child.communicate()
            code = self.child.returncode
            if code:
                error = next((l for l in reversed(stderr.splitlines()) if l.startswith("error:")), None)
        except OSError as exc:
            code, error = 127, f"cannot start: {exc.strerror}"
        finally:
            self.child = None
        self.log(JobRun(job.name, job.command, started, round(time.monotonic() - t0, 3), code,
                        _status(code) if code != 127 else "error", error))

    def stop(self, *_):
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def run_forever(self, tick: float = 1.0) -> None:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self.run_now:
                self.sched.run_all()  # every job once, now (a fresh container, a test)
            while not self.stopping:
                self.sched.run_pending()
                idle = self.sched.idle_seconds
                deadline = time.monotonic() + min(tick, max(0.0, idle if idle is not None else tick))
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def log_line(run: JobRun) -> str:
    return json.dumps(vars(run), separators=(",", ":"))
