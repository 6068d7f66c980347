"""Global options, exit codes, stdout/stderr discipline, start-up imports."""

import json
import os
import signal
import subprocess
import sys
import time

from dynoctl import __version__
from dynoctl.errors import ExitStatus

HEAVY = ("sqlalchemy", "alembic", "docker", "psycopg", "cryptography", "dynoserver", "fastapi", "uvicorn")


def test_importing_the_cli_imports_no_heavy_module():
    code = "import sys, dynoctl.cli; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_help_runs_without_heavy_imports():
    code = "import sys\nfrom dynoctl.cli import app\nfrom typer.testing import CliRunner\n" \
           "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n" \
           "print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_version_text_and_json(dynoctl, project):
    result = dynoctl("version")
    assert result.exit_code == 0
    assert __version__ in result.stdout and str(project) in result.stdout
    result, data = dynoctl.json("version")
    assert data["dynoctl"] == __version__
    assert data["stack_source"] == "project directory"
    assert data["stack_dir"] == str(project / "stack")
    assert result.stderr == ""


def test_python_dash_m_works(project):
    done = subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "--json", "version"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert json.loads(done.stdout)["project_dir"] == str(project)


def test_project_dir_is_found_from_a_subdirectory(project):
    sub = project / "stack" / "env"
    done = subprocess.run([sys.executable, "-m", "dynoctl", "--json", "version"], cwd=sub,
                          capture_output=True, text=True, env={**os.environ, "DYNO_PROJECT_DIR": ""})
    assert json.loads(done.stdout)["project_dir"] == str(project)


def test_global_options_read_dyno_environment_variables(dynoctl):
    result = dynoctl("version", env={"DYNO_JSON": "1"})
    assert json.loads(result.stdout)["dynoctl"] == __version__


def test_bad_runtime_is_a_usage_error(dynoctl):
    result = dynoctl("--runtime", "bogus", "version")
    assert result.exit_code == ExitStatus.USAGE
    assert result.stdout == ""
    assert "bogus" in result.stderr


def test_unknown_command_is_a_usage_error(dynoctl):
    result = dynoctl("frobnicate")
    assert result.exit_code == ExitStatus.USAGE


def test_error_has_message_hint_and_exit_code_and_no_traceback(tmp_path):
    # A directory with no stack anywhere: env init cannot find templates.
    done = subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(tmp_path), "env", "init"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode in (ExitStatus.REFUSED, ExitStatus.OK)  # an installed bundle may provide the stack
    if done.returncode == ExitStatus.REFUSED:
        assert done.stdout == ""
        assert done.stderr.startswith("error: ")
        assert "hint: " in done.stderr
        assert "Traceback" not in done.stderr


def test_ctrl_c_exits_130_without_traceback(project):
    log = project / ".dyno" / "logs" / "server.log"
    log.parent.mkdir(parents=True)
    log.write_text("one\n")
    child = subprocess.Popen([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "--runtime", "local",
                              "logs", "server", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    assert child.stdout.readline() == "one\n" and time.monotonic() < deadline
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=20)
    assert child.returncode == ExitStatus.INTERRUPTED
    assert "Traceback" not in err
