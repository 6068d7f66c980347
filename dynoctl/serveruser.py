"""Who the local runtime's API server runs as, and the files that account owns.

As root, dynoctl runs the server as an unprivileged system account (``dynoctl-server``,
or DYNO_SERVER_USER), as it runs PostgreSQL as ``dynoctl-pg``: a flaw in the server
then reaches neither root's files nor the database cluster's. That account:

- owns the uploads (ASSETS_DIR, 0700; files 0600, see dynoserver.storage);
- reads the JWT key file through its group: ``.dyno/keys`` is root's, group the
  account's, mode 2750 (setgid, so a key file written there later gets that group too;
  it must be 0640 to be readable, and the server refuses anything others can read);
- gets its env values from dynoctl (the supervisor's environment), so the env file
  itself stays root's and 0600: it never reads the superuser's credentials.

Unlike PostgreSQL's binaries, a Python installation cannot simply be copied somewhere
readable (hundreds of MB of site-packages, editable installs, compiled extensions). So
the server runs with dynoctl's own interpreter, and when the account cannot reach it or
the server's packages (a venv or pyenv under /root, mode 0700):
- DYNO_SERVER_USER set to an account: starting is refused, with a hint;
- DYNO_SERVER_USER unset: the server runs as root as before, and ``up`` says so loudly
  with the path in the way (a default that never breaks an existing install);
- DYNO_SERVER_USER=root: root, knowingly, without the warning.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import sys
from pathlib import Path

from dynoctl import proc
from dynoctl.errors import Refused
from dynoctl.proc import RunAs

DEFAULT_SERVER_USER = "dynoctl-server"
OPT_OUT = "root"
PRIVATE_DIR = 0o700
KEYS_DIR_MODE = 0o2750  # group-readable by the server's account; setgid: new files get that group
SERVER_PACKAGES = ("dynoserver", "uvicorn", "fastapi", "sqlalchemy", "psycopg")


def server_account(name: str | None, project_dir: Path) -> tuple[RunAs | None, str | None]:
    """The account to run the server as (None: ourselves), and a warning when, as root, it
    stays root because the account could not reach the interpreter (see above)."""
    if not proc.is_root() or name == OPT_OUT:
        return None, None
    problem = unreachable(project_dir)
    if problem and name:
        raise Refused(f"the API server should run as {name!r}, but {problem}", hint=HINT)
    if problem:
        return None, (f"the API server runs as root: its account {DEFAULT_SERVER_USER!r} cannot run it, as {problem}; "
                      f"{HINT}")
    return _system_account(name or DEFAULT_SERVER_USER), None


HINT = ("install dynoctl where other users can read it (e.g. a venv under /opt) or 'chmod o+rx' that directory; "
        "DYNO_SERVER_USER=root keeps the server as root without this warning (not recommended)")


def _system_account(name: str) -> RunAs:
    try:
        pwd.getpwnam(name)
    except KeyError:
        # Its own group (--user-group): the key directory is shared through it, with nobody else.
        proc.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                  "--shell", "/usr/sbin/nologin", name])
    return RunAs(name)


def unreachable(project_dir: Path) -> str | None:
    """Why an unprivileged account could not run the server (the interpreter, its venv, the
    server's packages or the project directory out of its reach); None when it can."""
    for path, need in _needed_paths(project_dir):
        blocker = _blocker(path, need)
        if blocker is not None:
            return f"{blocker} is not accessible to other users (needed for {path})"
    return None


def _needed_paths(project_dir: Path) -> list[tuple[Path, int]]:
    read_dir, read_file, run = stat.S_IROTH | stat.S_IXOTH, stat.S_IROTH, stat.S_IXOTH
    needed = [(Path(sys.executable), run), (Path(sys.executable).resolve(), run), (project_dir, run)]
    venv_config = Path(sys.prefix) / "pyvenv.cfg"
    if venv_config.exists():
        needed.append((venv_config, read_file))
    for package in SERVER_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            location = Path(list(spec.submodule_search_locations)[0])
            needed += [(location.parent, read_dir), (location, read_dir)]
    return needed


def _blocker(path: Path, need: int) -> Path | None:
    """The first directory on the way that others cannot search, or the path itself when
    others lack ``need`` on it; None when the way is open."""
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None if os.stat(path).st_mode & need == need else path


def own_private_dir(path: Path, account: RunAs | None) -> None:
    """``path`` (created if missing) and everything in it owned by the server's account,
    directories 0700 and files 0600: uploads written before this release were 0644 in
    0755 directories, and root's when dynoctl ran the server as root."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    uid, gid = (account.uid, account.gid) if account else (os.geteuid(), os.getegid())
    top = path.stat()
    if (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (uid, gid, PRIVATE_DIR):
        return  # already done: no walk over every upload at each start
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            _own(Path(root) / name, uid, gid)
    _own(path, uid, gid)


def _own(path: Path, uid: int, gid: int) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return  # the server never makes links; never follow one out of the directory
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    os.chmod(path, PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else 0o600)


def prepare_keys_dir(keys_dir: Path, account: RunAs | None) -> None:
    """``.dyno/keys``: ours; readable by the server's group when it runs as another account.
    A key file already there gets that group and group-read, never more."""
    keys_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if account is None:
        os.chmod(keys_dir, stat.S_IMODE(keys_dir.stat().st_mode) & ~0o007)
        return
    os.chown(keys_dir, -1, account.gid)
    os.chmod(keys_dir, KEYS_DIR_MODE)
    for key_file in keys_dir.glob("*.json"):
        st = key_file.stat()
        if st.st_gid != account.gid:
            os.chown(key_file, -1, account.gid)
        if not st.st_mode & stat.S_IRGRP:
            os.chmod(key_file, stat.S_IMODE(st.st_mode) | stat.S_IRGRP)
