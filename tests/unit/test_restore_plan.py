"""How a restore loads the dump: the choice between two jobs on an unpacked file and a stream."""

from __future__ import annotations

from dynoctl.restore import _parallel_pays


def test_restore_unpacks_for_two_jobs_only_when_no_table_holds_most_of_the_data():
    def manifest(**sizes):
        return {"database": {"table_bytes": sizes}}

    assert _parallel_pays(manifest(tasks=600, sessions=400))
    assert _parallel_pays(manifest(tasks=75, users=25))
    assert not _parallel_pays(manifest(tasks=960, users=30, sessions=10))
    assert _parallel_pays({"database": {"tables": {"tasks": 5}}})  # an archive from before table sizes
    assert _parallel_pays(manifest(tasks=0, users=0))  # nothing to split either way
