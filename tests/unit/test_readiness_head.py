"""The server's /ready follows the head of the migration scripts it is deployed with."""

import os
from pathlib import Path

import pytest

from dynoserver.health import MigrationScriptsError, scripts_heads

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def script(directory: Path, name: str, revision: str, down, annotated: bool = True) -> Path:
    path = directory / "versions" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if annotated:
        path.write_text(f'"""x"""\nrevision: str = {revision!r}\ndown_revision: str | None = {down!r}\n')
    else:
        path.write_text(f"revision = {revision!r}\ndown_revision = {down!r}\n")
    return path


def test_the_repository_scripts_head_is_found():
    # The same head alembic itself finds, without importing alembic in the server.
    from dynoctl.migrations import head

    assert scripts_heads(REPO_MIGRATIONS) == {head(REPO_MIGRATIONS)}


def test_a_new_revision_moves_the_head_and_branches_give_every_head(tmp_path):
    script(tmp_path, "0001_a", "0001", None)
    assert scripts_heads(tmp_path) == {"0001"}
    new = script(tmp_path, "abc_b", "abc", "0001", annotated=False)
    os.utime(new, ns=(1, 1))  # the cache is keyed by names and mtimes, not only mtimes
    assert scripts_heads(tmp_path) == {"abc"}
    script(tmp_path, "def_c", "def", "0001")
    assert scripts_heads(tmp_path) == {"abc", "def"}
    script(tmp_path, "ghi_merge", "ghi", ("abc", "def"))
    assert scripts_heads(tmp_path) == {"ghi"}


def test_missing_scripts_are_a_reason_not_a_crash(tmp_path):
    with pytest.raises(MigrationScriptsError):
        scripts_heads(tmp_path / "nowhere")


def test_migrations_dir_takes_the_first_listed_that_exists(tmp_path, monkeypatch):
    from dynoserver.health import migrations_dir

    script(tmp_path / "bundled", "0001_a", "0001", None)
    monkeypatch.setenv("MIGRATIONS_DIR", os.pathsep.join([str(tmp_path / "own"), str(tmp_path / "bundled")]))
    assert migrations_dir() == tmp_path / "bundled"
    script(tmp_path / "own", "0001_a", "0001", None)
    assert migrations_dir() == tmp_path / "own"
