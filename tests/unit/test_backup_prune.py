"""Retention: which backups a policy keeps (pure logic over listed backups)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from dynoctl.backup import BackupInfo, plan_prune, write_metrics


def info(when: datetime, verified: bool = False) -> BackupInfo:
    name = f"dyno-{when:%Y%m%dT%H%M%S}000Z.tar"
    return BackupInfo(name, Path(name), when.isoformat(), 1, "0001", False, "local",
                      "2026-01-01T00:00:00Z" if verified else None)


NOW = datetime(2026, 3, 15, 12, tzinfo=timezone.utc)


def names(items) -> list[str]:
    return sorted(i["name"] for i in items)


def test_keep_last_only():
    backups = [info(NOW - timedelta(hours=h)) for h in range(10)]
    plan = plan_prune(backups, 3, 0, 0, 0)
    assert names(plan.keep) == names([{"name": b.name} for b in backups[:3]])
    assert len(plan.delete) == 7


def test_newest_and_newest_verified_never_deleted():
    backups = [info(NOW - timedelta(days=d), verified=(d == 5)) for d in range(10)]
    plan = plan_prune(backups, 0, 0, 0, 0)
    kept = {k["name"]: k["reasons"] for k in plan.keep}
    assert kept == {backups[0].name: ["newest"], backups[5].name: ["newest verified"]}
    assert len(plan.delete) == 8


def test_daily_weekly_monthly_generations():
    # Four backups a day for 90 days.
    backups = [info(NOW - timedelta(hours=6 * i)) for i in range(4 * 90)]
    plan = plan_prune(backups, 2, 7, 4, 3)
    kept = {k["name"]: k["reasons"] for k in plan.keep}
    daily = [n for n, r in kept.items() if "daily" in r]
    weekly = [n for n, r in kept.items() if "weekly" in r]
    monthly = [n for n, r in kept.items() if "monthly" in r]
    assert (len(daily), len(weekly), len(monthly)) == (7, 4, 3)
    # The newest of each day is the one kept for it.
    assert backups[0].name in daily
    assert len(kept) + len(plan.delete) == len(backups)
    assert len(kept) < 2 + 7 + 4 + 3 + 1


def test_unreadable_archives_are_never_touched():
    broken = BackupInfo("dyno-broken.tar", Path("x"), None, 1, None, None, None, None, "damaged")
    plan = plan_prune([broken, info(NOW)], 0, 0, 0, 0)
    assert "dyno-broken.tar" not in names(plan.delete) + names(plan.keep)


def test_metrics_file_keeps_the_other_jobs_gauges(tmp_path):
    path = tmp_path / "m.prom"
    write_metrics(path, "backup", True, 1.5, 1234)
    write_metrics(path, "verify", False, 0.5)
    write_metrics(path, "backup", False, 2.0)
    text = path.read_text()
    assert "dyno_backup_last_run_success 0" in text
    assert "dyno_backup_last_success_timestamp_seconds" in text  # the earlier success is kept
    assert "dyno_verify_last_run_success 0" in text
    assert path.stat().st_mode & 0o777 == 0o644
