"""dynoctl schedule / scheduler: the job table, crontab block round trip against the
real crontab, a real cron daemon running an installed line, and the in-process
scheduler under SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dynoctl import scheduler
from dynoctl.errors import ConfigError
from tests.conftest import Dynoctl, make_project


def test_when_grammar_renders_for_cron_and_systemd():
    cases = {"daily 03:17": ("17 3 * * *", "*-*-* 03:17:00"), "hourly :05": ("5 * * * *", "*-*-* *:05:00"),
             "weekly sun 04:30": ("30 4 * * 7", "Sun *-*-* 04:30:00"),
             "every 15m": ("*/15 * * * *", "*-*-* *:00/15:00"), "every 1m": ("* * * * *", "*-*-* *:00/1:00")}
    for text, (cron, calendar) in cases.items():
        when = scheduler.parse_when(text)
        assert (scheduler.cron_spec(when), scheduler.on_calendar(when)) == (cron, calendar)
    for bad in ("daily 25:00", "sometimes", "every 0m"):
        with pytest.raises(ConfigError):
            scheduler.parse_when(bad)
    with pytest.raises(ConfigError):  # seconds: the in-process scheduler only
        scheduler.cron_spec(scheduler.parse_when("every 10s"))


def test_job_table_defaults_and_overrides(tmp_path):
    names = [j.name for j in scheduler.load_jobs(tmp_path)]
    assert names == ["backup", "backup-prune", "purge", "purge-quarantine", "rotate-secrets-prune"]
    (tmp_path / "schedule.toml").write_text(
        '[jobs.backup]\nenabled = false\n[jobs.purge]\nwhen = "daily 01:00"\n'
        '[jobs.mine]\ncommand = "history --limit 5"\nwhen = "weekly mon 06:00"\n')
    jobs = {j.name: j for j in scheduler.load_jobs(tmp_path)}
    assert "backup" not in jobs and jobs["purge"].when == "daily 01:00"
    assert jobs["purge"].command == "purge all --apply" and jobs["mine"].args == ["history", "--limit", "5"]
    (tmp_path / "schedule.toml").write_text('[jobs.x]\nwhen = "daily 01:00"\n')
    with pytest.raises(ConfigError):
        scheduler.load_jobs(tmp_path)


def test_block_replaces_only_itself():
    project = Path("/srv/dyno")
    other = "MAILTO=me\n0 1 * * * /bin/true # mine\n"
    once = scheduler.with_block(other, ["1 2 * * * a"], project)
    assert once.startswith(other) and "1 2 * * * a" in once
    assert scheduler.with_block(once, ["1 2 * * * a"], project) == once  # idempotent
    twice = scheduler.with_block(once, ["3 4 * * * b"], project)
    assert "a" not in twice.split(other)[1].split("\n")[1] and "3 4 * * * b" in twice
    second = scheduler.with_block(twice, ["5 5 * * * c"], Path("/srv/other"))
    assert scheduler.without_block(scheduler.without_block(second, project), Path("/srv/other")) == other


def test_systemd_units_pair_per_job(tmp_path):
    jobs = scheduler.load_jobs(tmp_path)
    units = scheduler.systemd_units(jobs, Path("/srv/dyno 1"), Path("/srv/dyno 1/.dyno"))
    assert len(units) == 2 * len(jobs)
    service = next(t for n, t in units.items() if n.endswith("-purge.service"))
    assert 'ExecStart=' in service and '"/srv/dyno 1"' in service and "purge all --apply" in service
    assert "Type=oneshot" in service


def _crontab_available() -> bool:
    return shutil.which("crontab") is not None


def _cron_running() -> bool:
    return any(p.info["name"] == "cron" for p in psutil.process_iter(["name"]))


def _need_cron():
    if not (_crontab_available() and _cron_running()):
        if os.environ.get("DYNO_REQUIRE_CRON"):
            pytest.fail("DYNO_REQUIRE_CRON is set but no cron daemon runs (.ci/cron-setup starts one)")
        pytest.skip("no cron daemon here (CI starts one with .ci/cron-setup)")


@pytest.fixture
def crontab_guard():
    """Keeps the user's crontab as it was, whatever the test does."""
    if not _crontab_available():
        if os.environ.get("DYNO_REQUIRE_CRON"):
            pytest.fail("DYNO_REQUIRE_CRON is set but crontab(1) is missing")
        pytest.skip("no crontab(1) here")
    before = scheduler.read_crontab()
    yield before
    scheduler.write_crontab(before) if before else subprocess.run(["crontab", "-r"], capture_output=True)


@pytest.fixture
def sched_project():
    path = make_project("dyno-sched-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_crontab_install_is_idempotent_and_uninstall_removes_exactly_the_block(crontab_guard, sched_project):
    run = Dynoctl(sched_project)
    scheduler.write_crontab(crontab_guard + "# a line of the user's\n")
    original = scheduler.read_crontab()
    assert run("schedule", "install", "--cron").exit_code == 0
    installed = scheduler.read_crontab()
    assert installed.startswith(original) and f"--project-dir {sched_project} purge all --apply" in installed
    assert run("schedule", "install", "--cron").exit_code == 0
    assert scheduler.read_crontab() == installed
    result = run("--json", "schedule", "uninstall", "--cron")
    assert result.exit_code == 0 and json.loads(result.stdout)["crontab_block"] is True
    assert scheduler.read_crontab() == original


def test_a_real_cron_daemon_runs_an_installed_line(crontab_guard, sched_project):
    _need_cron()
    state = sched_project / ".dyno"
    state.mkdir()
    for job in scheduler.DEFAULT_JOBS:  # only our harmless job, every minute
        (state / "schedule.toml").open("a").write(f"[jobs.{job.name}]\nenabled = false\n")
    (state / "schedule.toml").open("a").write('[jobs.probe]\ncommand = "history"\nwhen = "every 1m"\n')
    run = Dynoctl(sched_project)
    assert run("schedule", "install", "--cron").exit_code == 0
    log = state / scheduler.LOG_RELPATH
    deadline = time.monotonic() + 150  # cron starts jobs on minute boundaries
    while time.monotonic() < deadline and not (log.exists() and log.read_text().strip()):
        time.sleep(1)
    assert run("schedule", "uninstall", "--cron").exit_code == 0
    assert log.exists(), "cron never ran the installed line"
    assert "no runs recorded yet" in log.read_text()


def test_in_process_scheduler_survives_a_failing_job_and_stops_on_sigterm(sched_project):
    state = sched_project / ".dyno"
    state.mkdir()
    table = "".join(f"[jobs.{job.name}]\nenabled = false\n" for job in scheduler.DEFAULT_JOBS)
    table += ('[jobs.good]\ncommand = "version"\nwhen = "every 1s"\n'
              '[jobs.bad]\ncommand = "purge --older-than 3d"\nwhen = "every 1s"\n')
    (state / "schedule.toml").write_text(table)
    child = subprocess.Popen([sys.executable, "-m", "dynoctl", "--project-dir", str(sched_project),
                              "scheduler", "run", "--now"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = []
    try:
        while len([r for r in runs if r["job"] == "good"]) < 3 and len(runs) < 20:
            line = child.stdout.readline()
            if not line:
                break
            runs.append(json.loads(line))
    finally:
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    runs += [json.loads(line) for line in out.splitlines()]
    good = [r for r in runs if r["job"] == "good"]
    bad = [r for r in runs if r["job"] == "bad"]
    assert len(good) >= 3 and len(bad) >= 2  # the failing job did not stop the others
    assert {r["status"] for r in good} == {"ok"} and {r["exit_code"] for r in bad} == {2}
    assert set(good[0]) == {"job", "command", "started_at", "duration_s", "exit_code", "status", "error"}
    assert "stopped" in err


def test_systemd_install_refuses_where_systemd_does_not_run(sched_project):
    if scheduler.systemd_running():
        pytest.skip("systemd runs here: installing real units is not for a test")
    result = Dynoctl(sched_project)("schedule", "install", "--systemd")
    assert result.exit_code == 3 and "systemd is not running" in result.stderr
