"""The OpenAPI document is the contract (issue 8, item 9): an OpenAPI-driven,
property-based run of schemathesis against the real server process on 127.0.0.1,
with every check, bounded in examples per operation. 0 server errors, 0
conformance failures.

The examples are fixed (derandomized) so that a failure reproduces; for a deeper,
random exploration: ``FUZZ_RANDOM=1 FUZZ_EXAMPLES=60 pytest tests/server/test_openapi_fuzz.py``."""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .helpers import PASSWORD
from .test_sighup import start_server, stop_server, wait_until_healthy

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzzed_server(database_url, tmp_path_factory):
    server = start_server(
        database_url, tmp_path_factory.mktemp("fuzz"),
        AUTH_ADDRESS_ATTEMPTS="1000000", AUTH_ACCOUNT_FAILURES="1000000", AUTH_REFUSAL_DELAY_MS="1",
        MAX_UPLOAD_BYTES="65536",
    )  # fmt: skip
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def access_token(fuzzed_server) -> str:
    credentials = {"email": "fuzz@example.test", "password": PASSWORD}
    with httpx.Client(base_url=fuzzed_server.url) as http:
        http.post("/auth/register", json=credentials)
        return http.post("/auth/login", json=credentials).raise_for_status().json()["access_token"]


def existing_resources(url: str, headers: dict) -> dict[str, str]:
    """A project of the fuzzing user with a task and an asset: their ids by path parameter name."""
    with httpx.Client(base_url=url, headers=headers) as http:
        project = http.post("/projects", json={"name": "fuzzed"}).raise_for_status().json()["id"]
        task = http.post(f"/projects/{project}/tasks", json={"title": "fuzzed"}).raise_for_status().json()["id"]
        files = {"file": ("a.txt", b"fuzz", "text/plain")}
        asset = http.post(f"/projects/{project}/assets", files=files).raise_for_status().json()["id"]
    return {"project_id": project, "task_id": task, "asset_id": asset}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def all_checks() -> list:
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    # Every check but the response-time one: timing is for bench/, not tests.
    return [check for check in CHECKS.get_all() if getattr(check, "__name__", "") != "max_response_time"]


def run_operation(operation, mode, checks: list, path_parameters: dict | None = None) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=path_parameters, auth_storage=operation.schema.auth
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=os.environ.get("FUZZ_RANDOM") != "1",  # fixed examples (reproducible) unless FUZZ_RANDOM=1
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        database=None,
    )
    def exchange(case) -> None:
        case.call_and_validate(checks=checks)

    exchange()


def test_the_server_keeps_its_openapi_contract(fuzzed_server, access_token):
    # The pytest plugin's lazy loader does not run on pytest 9; the operations are driven here instead.
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    headers, checks = {"Authorization": f"Bearer {access_token}"}, all_checks()

    @schema.auth()
    class BearerToken:  # schemathesis' own auth hook: negative cases may still drop or spoil the header
        def get(self, case, context):
            return access_token

        def set(self, case, token, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}

    existing = existing_resources(fuzzed_server.url, headers)
    failures = []
    runs = [(result.ok(), None) for result in schema.get_all_operations()]
    # Again with the ids of real resources, so that the requests reach the database and
    # the success paths; deletes and archiving would end the other operations' resources.
    runs += [
        (operation, {name: existing[name] for name in _path_names(operation.path)})
        for operation, _ in runs[:]
        if "{" in operation.path and operation.method.upper() != "DELETE" and not operation.path.endswith("/archive")
    ]
    for operation, path_parameters in runs:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                run_operation(operation, mode, checks, path_parameters)
            except Unsatisfiable:
                pass  # no invalid request exists (e.g. GET /health has no parameters)
            except BaseException as exc:  # schemathesis raises exception groups; all failures are reported together
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                where = " (real ids)" if path_parameters else ""
                failures.append(f"{operation.label}{where} [{mode}]: {str(exc)[:3000]}")
    assert not failures, "\n\n".join(failures)
