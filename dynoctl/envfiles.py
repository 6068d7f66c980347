"""Env files: templates (stack/env/*.example) become real files; real files are
checked against their templates; the effective configuration is shown redacted.

A real file's name is its template's name without ``.example``: the template
``server.local.env.example`` becomes ``server.local.env`` in the layout's env dir.
"""

from __future__ import annotations

import re
import secrets
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import unquote, urlsplit

from dynoctl.atomicfile import write_atomic  # noqa: F401  (env files are written through it)
from dynoctl.config import StackLayout
from dynoctl.errors import ConfigError, DynoctlError

TEMPLATE_SUFFIX = ".example"
SECRET_SUFFIXES = ("_SECRET", "_PASSWORD", "_KEY")
KNOWN_WEAK_SECRETS = {"", "changeme", "change-me", "change_me", "secret", "password", "postgres",
                      "jwt-secret", "supersecret", "replace-me", "todo", "xxx"}
MIN_SECRET_LENGTH = 32
SECRET_BYTES = 48  # 384 bits of randomness per generated secret (>= 256 asked)
STATUS_VALUES = ("development", "production")
_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_.]*)(\s*=\s*)(.*)$")


def is_secret_key(key: str) -> bool:
    return key.upper().endswith(SECRET_SUFFIXES)


def redact(key: str, value: str) -> str:
    """A value safe to print: secrets hidden entirely, URL passwords masked."""
    if is_secret_key(key):
        return "********" if value else ""
    if "://" in value:
        parts = urlsplit(value)
        if parts.password:
            return value.replace(f":{parts.password}@", ":****@", 1)
    return value


# --------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class EnvFile:
    name: str  # e.g. "server.local"
    template: Path
    path: Path

    @property
    def flavour(self) -> str:  # "local" | "docker"
        return self.name.split(".")[-1]


def env_files(layout: StackLayout) -> list[EnvFile]:
    templates = sorted(layout.templates_dir.glob(f"*.env{TEMPLATE_SUFFIX}"))
    if not templates:
        raise ConfigError(
            f"no env templates (*.env{TEMPLATE_SUFFIX}) in {layout.templates_dir}",
            hint="restore stack/env from the Dyno sources, or pass the right --project-dir",
        )
    return [
        EnvFile(t.name[: -len(".env" + TEMPLATE_SUFFIX)], t, layout.env_dir / t.name[: -len(TEMPLATE_SUFFIX)])
        for t in templates
    ]


def env_file(layout: StackLayout, name: str) -> EnvFile:
    for candidate in env_files(layout):
        if candidate.name == name:
            return candidate
    raise ConfigError(f"no env template for {name}", hint=f"expected {layout.templates_dir}/{name}.env{TEMPLATE_SUFFIX}")


# -------------------------------------------------------------------------- init
@dataclass(frozen=True)
class InitResult:
    file: Path
    action: str  # "created" | "kept" | "replaced"
    backup: Path | None = None
    secrets_generated: list[str] = field(default_factory=list)  # key names, never values


def init_env_files(layout: StackLayout, force: bool = False, now: datetime | None = None) -> list[InitResult]:
    """Make each real env file from its template, with fresh secrets. An existing file
    is kept, unless ``force``: then it is first copied aside with a timestamp."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    files = env_files(layout)
    _ensure_dir(layout.env_dir)
    results = []
    for f in files:
        if f.path.exists() and not force:
            results.append(InitResult(f.path, "kept"))
            continue
        backup = _keep_copy(f.path, stamp) if f.path.exists() else None
        text, generated = fill_secrets(_read(f.template))
        kept = database_credentials(parse(_read(backup)).values) if backup else {}
        write_atomic(f.path, _with_values(text, kept))
        generated = [key for key in generated if key not in kept]
        results.append(InitResult(f.path, "replaced" if backup else "created", backup, generated))
    return results


def database_credentials(values: Mapping[str, str]) -> dict[str, str]:
    """The database passwords of an existing env file, which ``env init --force`` keeps:
    they are the cluster's, and a new random one would lock dynoctl and the server out
    of it (changing them is a rotation's job). A file from before POSTGRES_PASSWORD keeps
    it empty, so the superuser's password still comes from its DATABASE_URL until
    ``up`` moves the server off the superuser."""
    kept = {key: values[key] for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "DATABASE_URL") if key in values}
    if "DATABASE_URL" in kept and "POSTGRES_PASSWORD" not in kept and connects_as_superuser(values):
        kept["POSTGRES_PASSWORD"] = ""
    return kept


def _with_values(text: str, values: Mapping[str, str]) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        m = _ASSIGNMENT.match(line.rstrip("\n"))
        if m and m.group(2) in values:
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{values[m.group(2)]}\n"
        lines.append(line)
    return "".join(lines)


def fill_secrets(template_text: str) -> tuple[str, list[str]]:
    """The template with each placeholder secret replaced by a fresh random one, and
    each URL's placeholder password too. A DATABASE_URL naming the superuser becomes
    the server's own login (dynoctl.dbroles): the server never logs in as the owner."""
    superuser = parse(template_text).values.get("POSTGRES_USER") or "postgres"
    lines, generated = [], []
    for line in template_text.splitlines(keepends=True):
        m = _ASSIGNMENT.match(line.rstrip("\n"))
        value = _unquote(m.group(4)) if m else ""
        if m and is_secret_key(m.group(2)) and value in KNOWN_WEAK_SECRETS:
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{secrets.token_urlsafe(SECRET_BYTES)}\n"
            generated.append(m.group(2))
        elif m and _url_password(value) is not None and _url_password(value).lower() in KNOWN_WEAK_SECRETS:
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{_fresh_url(m.group(2), value, superuser)}\n"
            generated.append(m.group(2))
        lines.append(line)
    return "".join(lines), generated


def _fresh_url(key: str, url: str, superuser: str) -> str:
    from dynoctl import dbroles

    user = dbroles.active_login(url)
    if key == "DATABASE_URL" and user == superuser:
        user = dbroles.LOGINS[0]
    return dbroles.with_credentials(url, user, secrets.token_urlsafe(SECRET_BYTES))


def _url_password(value: str) -> str | None:
    """The (decoded) password of a URL value; None when it is not a URL with credentials."""
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.username is None:
        return None
    return unquote(parts.password or "")


def update_env_file(path: Path, updates: Mapping[str, str]) -> None:
    """Set keys in an env file, atomically, keeping every other line (comments, order);
    keys it lacks are appended. Values must need no quoting (generated secrets, URLs)."""
    remaining = dict(updates)
    lines = []
    for line in _read(path).splitlines(keepends=True):
        m = _ASSIGNMENT.match(line.rstrip("\n"))
        if m and m.group(2) in remaining:
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{remaining.pop(m.group(2))}\n"
        lines.append(line)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines += [f"{key}={value}\n" for key, value in remaining.items()]
    write_atomic(path, "".join(lines))


def _unquote(raw: str) -> str:
    raw = raw.split(" #", 1)[0].strip()
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw


def _keep_copy(path: Path, stamp: str) -> Path:
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    write_atomic(backup, _read(path))
    return backup


def read_text(path: Path) -> str:
    return _read(path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DynoctlError(f"cannot create {path}: {exc.strerror}", hint="check permissions or pass --project-dir") from exc


# ------------------------------------------------------------------------- parse
@dataclass(frozen=True)
class Parsed:
    values: dict[str, str]
    lines: dict[str, int]  # key -> line number
    bad_lines: list[int]


def parse(text: str) -> Parsed:
    """Parse as python-dotenv does, keeping line numbers of what it cannot parse."""
    import io

    from dotenv.parser import parse_stream

    values, lines, bad = {}, {}, []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            bad.append(binding.original.line)
        elif binding.key is not None:
            values[binding.key] = binding.value or ""
            lines[binding.key] = binding.original.line
    return Parsed(values, lines, bad)


# ------------------------------------------------------------------------- check
@dataclass(frozen=True)
class Problem:
    file: str
    severity: str  # "error" | "warning"
    message: str
    key: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class CheckReport:
    files: list[str]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def check_env_files(layout: StackLayout) -> CheckReport:
    """Every problem of every real env file, all at once."""
    files = env_files(layout)
    problems: list[Problem] = []
    for f in files:
        problems.extend(check_env_file(f))
    problems += key_file_problems(layout)
    return CheckReport([str(f.path) for f in files], problems)


def key_file_problems(layout: StackLayout) -> list[Problem]:
    """JWT key files (in .dyno/keys, and the local env file's JWT_KEYS_FILE) whose mode
    the server refuses: the same rule, from dynoserver.keys."""
    from dynoserver.keys import key_file_mode_problem

    candidates = set(layout.state_dir.joinpath("keys").glob("*.json"))
    local = layout.env_dir / "server.local.env"
    if local.exists():
        configured = parse(_read(local)).values.get("JWT_KEYS_FILE")
        if configured:
            candidates.add(layout.state_dir.parent / configured)
    problems = []
    for path in sorted(candidates):
        try:
            message = key_file_mode_problem(path.stat().st_mode)
        except OSError:
            continue  # no key file yet: the env secrets are used
        if message:
            problems.append(Problem(str(path), "error", f"JWT key file: the server refuses it: {message}"))
    return problems


def check_env_file(f: EnvFile) -> list[Problem]:
    name = str(f.path)
    if not f.path.exists():
        return [Problem(name, "error", "missing: run 'dynoctl env init' to create it from its template")]
    real, template = parse(_read(f.path)), parse(_read(f.template))
    problems = [Problem(name, "error", "python-dotenv cannot parse this line", line=n) for n in real.bad_lines]
    problems += _mode_problems(f.path)
    for key in template.values.keys() - real.values.keys():
        problems.append(Problem(name, "error", "missing key (it is in the template)", key=key))
    for key in real.values.keys() - template.values.keys():
        problems.append(Problem(name, "warning", "unknown key (not in the template)", key, real.lines[key]))
    for key, value in real.values.items():
        for message in _value_problems(key, value):
            problems.append(Problem(name, "error", message, key, real.lines[key]))
    problems += _cross_key_problems(name, real)
    return sorted(problems, key=lambda p: (p.line or 0, p.key or ""))


def _mode_problems(path: Path) -> list[Problem]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return [Problem(str(path), "error", f"mode {mode:04o} lets other users read it; run 'chmod 600 {path}'")]
    return []


def _cross_key_problems(name: str, parsed: Parsed) -> list[Problem]:
    return _token_secret_problems(name, parsed) + _superuser_url_problems(name, parsed)


def _superuser_url_problems(name: str, parsed: Parsed) -> list[Problem]:
    if not connects_as_superuser(parsed.values):
        return []
    return [Problem(name, "error", "the server would log in as the database superuser; run 'dynoctl up' or "
                    "'dynoctl migrate' to move it onto its own role (dyno_app_a)", "DATABASE_URL",
                    parsed.lines["DATABASE_URL"])]


def connects_as_superuser(values: Mapping[str, str]) -> bool:
    """Whether DATABASE_URL (the server's login) is the superuser's (a stack made before
    the server had its own role)."""
    url = values.get("DATABASE_URL", "")
    user = _url_password(url) is not None and unquote(urlsplit(url).username or "")
    return bool(user) and user == (values.get("POSTGRES_USER") or "postgres")


def _token_secret_problems(name: str, parsed: Parsed) -> list[Problem]:
    access = parsed.values.get("JWT_ACCESS_TOKEN_SECRET")
    if access and access == parsed.values.get("JWT_REFRESH_TOKEN_SECRET"):
        return [Problem(name, "error", "access and refresh token secrets are equal; each needs its own",
                        "JWT_REFRESH_TOKEN_SECRET", parsed.lines["JWT_REFRESH_TOKEN_SECRET"])]
    return []


def _value_problems(key: str, value: str) -> Iterable[str]:
    if is_secret_key(key):
        yield from _secret_problems(value)
    password = _url_password(value)
    if password is not None:
        for message in _secret_problems(password):
            yield f"the password in this URL: {message}"
    elif key == "DATABASE_URL" and "://" in value:
        yield "the password in this URL: missing; the server must log in with a password"
    check = VALUE_CHECKS.get(key)
    if check:
        message = check(value)
        if message:
            yield message


def secret_problems(value: str) -> list[str]:
    """What is wrong with a secret (empty when it is fine): a placeholder, a well-known
    value, or too short."""
    return list(_secret_problems(value))


def _secret_problems(value: str) -> Iterable[str]:
    if value.strip().lower() in KNOWN_WEAK_SECRETS:
        yield "placeholder or well-known secret; run 'dynoctl env init --force' or set a random value"
    elif len(value) < MIN_SECRET_LENGTH:
        yield f"weak secret: {len(value)} characters, at least {MIN_SECRET_LENGTH} needed"


def _check_database_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        return f"malformed DATABASE_URL: {exc}"
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or parts.path.strip("/") == "":
        return "malformed DATABASE_URL: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    return None


def _check_origin(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        return "not an http(s) origin such as https://pm.example.com"
    return None


def _check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "not an http(s) URL"
    return None


def _check_status(value: str) -> str | None:
    return None if value in STATUS_VALUES else f"must be one of {', '.join(STATUS_VALUES)}"


def _check_port(value: str) -> str | None:
    return None if value.isdigit() and 1 <= int(value) <= 65535 else "not a port number (1-65535)"


def _check_positive_int(value: str) -> str | None:
    return None if value.isdigit() and int(value) > 0 else "not a positive whole number"


VALUE_CHECKS: Mapping[str, Callable[[str], str | None]] = {
    "DATABASE_URL": _check_database_url,
    "FRONTEND_URL": _check_origin,
    "NEXT_PUBLIC_API_BASE_URL": _check_http_url,
    "NEXT_INTERNAL_API_BASE_URL": _check_http_url,
    "STATUS": _check_status,
    "PORT": _check_port,
    "ACCESS_TOKEN_TTL_SECONDS": _check_positive_int,
    "REFRESH_TOKEN_TTL_SECONDS": _check_positive_int,
    "MAX_UPLOAD_BYTES": _check_positive_int,
}


# -------------------------------------------------------------------------- show
@dataclass(frozen=True)
class ConfigValue:
    file: str
    key: str
    value: str  # redacted
    source: str  # "file" | "environment" | "default"


def effective_values(f: EnvFile, environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """key -> (value, source) as the service will see it: the env file, with the
    template supplying defaults for keys the file lacks. The env file is the ONE source
    of a service's configuration: a variable of the same name in dynoctl's environment
    (PORT=9000 dynoctl ...) is ignored on both runtimes, so up, status, env show and env
    check always agree with what runs (see ignored_environment). dynoctl's own knobs are
    DYNO_* variables, which no env file holds."""
    template = parse(_read(f.template)).values
    real = parse(_read(f.path)).values if f.path.exists() else {}
    merged = {k: (v, "default") for k, v in template.items()}
    merged.update({k: (v, "file") for k, v in real.items()})
    return merged


def ignored_environment(layout: StackLayout, environ: Mapping[str, str]) -> list[str]:
    """Names of environment variables that look like env-file settings and are ignored."""
    keys = set()
    for f in env_files(layout):
        keys |= parse(_read(f.template)).values.keys()
    return sorted(k for k in keys if k in environ)


def environment_problems(f: EnvFile, environ: Mapping[str, str]) -> list[Problem]:
    """Kept for callers: the environment overrides nothing, so it has no problems."""
    return []


REPAIRED_BY_UP = ("DATABASE_URL", "POSTGRES_USER", "POSTGRES_PASSWORD")


def checked_values(layout: StackLayout, name: str, environ: Mapping[str, str], *,
                   database_only: bool = False) -> dict[str, str]:
    """The effective values of one env file for a runtime to start a service with;
    refuses (exit 3) when the file is missing or has an error, before anything starts.
    ``database_only``: for starting the database and connecting as its superuser, a
    file whose server still logs in as the superuser passes, since that is what the
    next step (dbroles.ensure_server_role) repairs; starting the server never does."""
    f = env_file(layout, name)
    if not f.path.exists():
        raise ConfigError(f"{f.path} does not exist", hint="run 'dynoctl env init' to create it")
    errors = [p for p in check_env_file(f) if p.severity == "error"] + environment_problems(f, environ)
    if database_only and connects_as_superuser(parse(_read(f.path)).values):
        errors = [p for p in errors if p.key not in REPAIRED_BY_UP or p.message.startswith("malformed")]
    if errors:
        first = errors[0]
        where = f" ({first.key})" if first.key else ""
        source = f.path if first.file == str(f.path) else "the environment"
        raise ConfigError(f"{source} has an invalid setting{where}: {first.message}",
                          hint="run 'dynoctl env check' to see every problem")
    return {key: value for key, (value, _source) in effective_values(f, environ).items()}


def inspectable_values(layout: StackLayout, name: str, strict: Callable[[], dict[str, str]],
                       warnings: list[str]) -> dict[str, str]:
    """For stopping and inspecting, which must work whatever state the env file is in:
    ``strict()``'s values when they pass; else what can be read (``lenient_values``),
    with a warning appended to ``warnings`` saying what was wrong."""
    try:
        return strict()
    except DynoctlError as exc:
        values, used = lenient_values(layout, name)
        warnings.append(f"{exc.message} (using {used})")
        return values


def lenient_values(layout: StackLayout, name: str) -> tuple[dict[str, str], str]:
    """What can be read of an env file whatever its state (missing, unreadable, invalid),
    over its template's defaults, and a word on what was used: for stopping and
    inspecting a stack, which must never be refused over its configuration."""
    f = env_file(layout, name)
    values = parse(_read(f.template)).values
    try:
        values.update({k: v for k, v in parse(f.path.read_text()).values.items() if v})
        return values, f"what {f.path.name} holds"
    except OSError:
        return values, "the template's defaults"


def show_config(layout: StackLayout, environ: Mapping[str, str]) -> list[ConfigValue]:
    return [
        ConfigValue(str(f.path), key, redact(key, value), source)
        for f in env_files(layout)
        for key, (value, source) in effective_values(f, environ).items()
    ]
