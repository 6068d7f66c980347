"""envfiles core: secret filling, redaction, atomic writes."""

import os
import stat

import pytest

from dynoctl import envfiles


def test_fill_secrets_keeps_everything_but_placeholder_secrets():
    template = "# comment\nPORT=8000\nJWT_ACCESS_TOKEN_SECRET=changeme  # inline\nAPI_KEY='secret'\nOTHER_SECRET=" \
               "already-a-long-enough-secret-value-0123456789\n"
    text, generated = envfiles.fill_secrets(template)
    assert generated == ["JWT_ACCESS_TOKEN_SECRET", "API_KEY"]
    values = envfiles.parse(text).values
    assert values["PORT"] == "8000"
    assert values["OTHER_SECRET"] == "already-a-long-enough-secret-value-0123456789"
    assert len(values["JWT_ACCESS_TOKEN_SECRET"]) == 64 and values["API_KEY"] != values["JWT_ACCESS_TOKEN_SECRET"]
    assert text.startswith("# comment\nPORT=8000\n")


@pytest.mark.parametrize("key,value,shown", [
    ("JWT_ACCESS_TOKEN_SECRET", "abc", "********"),
    ("DATABASE_URL", "postgresql://u:p%40ss@h:1/db", "postgresql://u:****@h:1/db"),
    ("DATABASE_URL", "postgresql://u@h/db", "postgresql://u@h/db"),
    ("PORT", "8000", "8000"),
])
def test_redact(key, value, shown):
    assert envfiles.redact(key, value) == shown


def test_write_atomic_is_private_and_keeps_owner(tmp_path):
    target = tmp_path / "x.env"
    target.write_text("old")
    os.chmod(target, 0o644)
    envfiles.write_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [target]  # no temp file left


def test_write_atomic_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.env"
    target.write_text("old")

    with pytest.raises(TypeError):
        envfiles.write_atomic(target, 12345)  # not text: fails mid-write
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_parse_reports_line_numbers_of_bad_lines():
    parsed = envfiles.parse("A=1\nnot valid\nB='unterminated\nC=3\n")
    assert parsed.values["A"] == "1" and parsed.values["C"] == "3"
    assert 2 in parsed.bad_lines
