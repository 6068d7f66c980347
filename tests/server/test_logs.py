"""Logged fields cannot forge log lines or drive a terminal (issue 8, item 7)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from dynoserver.app import create_app
from dynoserver.logs import escape_controls

from .helpers import make_settings

FORGED = "2026-11-30 12:00:00,000 INFO dynoserver.access: POST /admin 200"


@pytest.mark.parametrize("status", ["development", "production"])
def test_a_path_with_a_newline_writes_one_line(database_url, tmp_path, capsys, status):
    settings = make_settings(database_url, tmp_path, status=status)
    with TestClient(create_app(settings)) as client:
        capsys.readouterr()
        client.get("/health%0A" + FORGED.replace(" ", "%20") + "%1b[2J%E2%80%A8")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    assert "\x1b" not in lines[0] and "\u2028" not in lines[0]
    if status == "production":
        assert json.loads(lines[0])["path"].startswith("/health\\n2026")
    else:
        assert "/health\\n2026" in lines[0]


def test_escape_controls_is_reversible_and_leaves_plain_text_alone():
    assert escape_controls("/projects/ü") == "/projects/ü"
    assert escape_controls("a\\b\nc\x1b\x85") == "a\\\\b\\nc\\x1b\\x85"
    assert escape_controls(42) == 42


def test_a_traceback_cannot_forge_a_line(capsys):
    import logging

    from dynoserver.logs import configure_logging

    configure_logging(development=True)
    try:
        raise ValueError("bad path /x\n" + FORGED)
    except ValueError:
        logging.getLogger("dynoserver.test").exception("unexpected")

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("dynoserver.test: unexpected")
    assert all(line.startswith("  | ") for line in lines[1:]) and len(lines) > 2
