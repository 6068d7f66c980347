"""A non-editable install (a wheel) carries the stack and finds it from anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_bundles_the_stack_and_installed_dynoctl_uses_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("dynoctl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("dynoctl/_bundled/stack/compose.yml", "dynoctl/_bundled/stack/env/server.local.env.example",
                     "dynoctl/_bundled/stack/server/Dockerfile", "dynoctl/_bundled/migrations/env.py",
                     "dynoserver/app.py", "dynoserver/models.py"):
        assert expected in names, expected
    assert not any(n.endswith((".env", ".pyc")) or "/.dyno/" in n for n in names)

    # A venv of its own for the wheel, whose dependencies are those of the interpreter
    # running the tests (a venv or not): a .pth line puts its site-packages after the
    # venv's own. (--system-site-packages would reach the system's, not an outer venv's,
    # and the outer editable install's own .pth files are not read from there.)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "outer-dependencies.pth").write_text("\n".join(paths) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    done = subprocess.run([venv / "bin" / "dynoctl", "--json", "version"], cwd=elsewhere,
                          capture_output=True, text=True, check=True)
    info = json.loads(done.stdout)
    assert info["stack_source"] == "installed package"
    assert info["env_dir"] == str(elsewhere / "env")
    init = subprocess.run([venv / "bin" / "dynoctl", "env", "init"], cwd=elsewhere, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    assert (elsewhere / "env" / "server.local.env").is_file()

    # migrate new writes into the project's own migrations/, never into the installed package.
    new = subprocess.run([venv / "bin" / "dynoctl", "--json", "migrate", "new", "-m", "first own"], cwd=elsewhere,
                         capture_output=True, text=True)
    assert new.returncode == 0, new.stderr
    script = Path(json.loads(new.stdout)["path"])
    assert script.parent == elsewhere / "migrations" / "versions"
    assert (elsewhere / "migrations" / "versions" / "0001_initial_schema.py").is_file()
    assert not list(venv.rglob("*_first_own.py"))
    info = json.loads(subprocess.run([venv / "bin" / "dynoctl", "--json", "version"], cwd=elsewhere,
                                     capture_output=True, text=True, check=True).stdout)
    assert info["migrations_dir"] == str(elsewhere / "migrations")
