"""dynoctl purge on the docker runtime: the asset files live in the server container's
volume, reached through Runtime.exec. Skips without an engine, fails under
DYNO_REQUIRE_DOCKER=1."""

from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest

from dynoctl import purge
from dynoctl.config import Settings
from dynoctl.runtime import get_runtime
from tests.integration.test_docker_runtime import new_docker_project, remove_docker_project

pytestmark = pytest.mark.docker

WRITE_FILES = """
import os, sys, time
root = sys.argv[1]
for rel, age_h in (a.split("=") for a in sys.argv[2:]):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"abc")
    when = time.time() - float(age_h) * 3600
    os.utime(path, (when, when))
"""

LIST_FILES = "import os,sys\nfor d,_,fs in os.walk(sys.argv[1]):\n    [print(os.path.relpath(os.path.join(d,f),sys.argv[1])) for f in fs]"


@pytest.fixture(scope="module")
def docker_stack():
    run = new_docker_project("purge")
    result = run("up", "--build", "--timeout", "600", env=run.env)
    assert result.exit_code == 0, result.stderr
    run.runtime = get_runtime(Settings(project_dir=run.project, runtime="docker", environ={**os.environ, **run.env}))
    yield run
    remove_docker_project(run)


def in_server(runtime, code: str, *args: str) -> str:
    import tempfile

    with tempfile.TemporaryFile() as out:
        assert runtime.exec("server", ["python", "-c", code, *args], stdout=out) == 0
        out.seek(0)
        return out.read().decode()


def test_docker_assets_purge_quarantines_in_the_volume(docker_stack):
    run, runtime = docker_stack, docker_stack.runtime
    root = runtime.server_env.get("ASSETS_DIR", "/data/assets")
    url = runtime.database_url()
    uid, pid, kept_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    kept = f"{kept_id.hex[:2]}/{kept_id}"
    orphan_id, fresh_id = uuid.uuid4(), uuid.uuid4()
    orphan, fresh = f"{orphan_id.hex[:2]}/{orphan_id}", f"{fresh_id.hex[:2]}/{fresh_id}"
    with psycopg.connect(purge.libpq_url(url), autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, email, password_hash) VALUES (%s, %s, 'x')", (uid, f"{uid}@e.test"))
        conn.execute("INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, 'p')", (pid, uid))
        conn.execute("INSERT INTO assets (id, project_id, original_name, content_type, size, sha256, storage_path) "
                     "VALUES (%s, %s, 'f', 'text/plain', 3, '0', %s)", (kept_id, pid, kept))
    in_server(runtime, WRITE_FILES, root, f"{kept}=48", f"{orphan}=25", f"{fresh}=0", "notes.txt=100")

    plan = run("--json", "purge", "assets", env=run.env)
    assert plan.exit_code == 0, plan.stderr
    kind = json.loads(plan.stdout)["kinds"][0]
    assert kind["candidates"] == 1 and kind["skipped"]["unknown path (never touched)"] == 1

    done = run("--json", "purge", "assets", "--apply", env=run.env)
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["kinds"][0]["quarantined"] == 1
    files = set(in_server(runtime, LIST_FILES, root).split())
    assert {kept, fresh, "notes.txt"} <= files and orphan not in files
    assert any(f.startswith(".quarantine/") and f.endswith(orphan) for f in files)
