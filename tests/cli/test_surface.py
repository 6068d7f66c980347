"""The CLI's surface: global options anywhere, usage errors, projects, help text."""

import json
import os
import subprocess
import sys

from dynoctl.cli import hoist_global_options
from dynoctl.errors import ExitStatus


def test_global_options_are_accepted_after_the_subcommand(dynoctl, project):
    result = dynoctl("version", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["project_dir"] == str(project)
    assert hoist_global_options(["backup", "--wait", "30"]) == ["--wait", "30", "backup"]
    assert hoist_global_options(["migrate", "new", "-m", "x", "--json", "-vv"]) == \
        ["--json", "-vv", "migrate", "new", "-m", "x"]
    assert hoist_global_options(["--runtime", "local", "status", "--project-dir=/p"]) == \
        ["--runtime", "local", "--project-dir=/p", "status"]
    assert hoist_global_options(["logs", "--", "--json"]) == ["logs", "--", "--json"]


def test_usage_errors_use_error_and_hint_and_exit_2(dynoctl):
    for args in (["frobnicate"], ["logs", "--tail", "many"], ["--runtime", "bogus", "version"]):
        result = dynoctl(*args)
        assert result.exit_code == ExitStatus.USAGE, args
        assert result.stderr.startswith("error: "), result.stderr
        assert "hint: " in result.stderr and "Usage:" not in result.stderr


def test_help_shows_no_type_placeholders_on_flags(dynoctl):
    for args in (["--help"], ["up", "--help"], ["down", "--help"], ["logs", "--help"]):
        text = dynoctl(*args).stdout
        assert "<bool>" not in text and "<int>" not in text, args


def test_a_project_dir_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "nonexistent"
    done = subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(missing), "env", "init"],
                          capture_output=True, text=True)
    assert done.returncode == ExitStatus.USAGE
    assert "not a directory" in done.stderr
    assert not missing.exists()


def test_outside_any_project_commands_say_so_and_how_to_make_one(tmp_path):
    env = {**os.environ, "DYNO_PROJECT_DIR": "", "DYNO_RUNTIME": "local"}
    for args in (["status"], ["down"], ["env", "check"], ["migrate", "status"], ["logs"]):
        done = subprocess.run([sys.executable, "-m", "dynoctl", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env)
        assert done.returncode == ExitStatus.REFUSED, (args, done.stderr)
        assert "is not a Dyno project" in done.stderr and "dynoctl up" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_a_missing_docker_engine_is_a_sentence(dynoctl, tmp_path):
    result = dynoctl("--runtime", "docker", "status", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert result.exit_code == ExitStatus.UNREACHABLE
    assert result.stderr.startswith("error: no Docker engine answers")
    assert "Traceback" not in result.stderr and "DockerException" not in result.stderr
    assert "fetching server API version" not in result.stderr and "(no socket there)" in result.stderr
