"""The OpenAPI document is the contract (issue 8, item 9): an OpenAPI-driven,
property-based run of schemathesis against the real server process on 127.0.0.1,
with every check, bounded in examples per operation. 0 server errors, 0
conformance failures."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .helpers import PASSWORD
from .test_sighup import start_server, stop_server, wait_until_healthy

EXAMPLES_PER_OPERATION = 30


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


def all_checks() -> list:
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    # Every check but the response-time one: timing is for bench/, not tests.
    return [check for check in CHECKS.get_all() if getattr(check, "__name__", "") != "max_response_time"]


def run_operation(operation, mode, headers: dict, checks: list) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same examples on every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        database=None,
    )
    def exchange(case) -> None:
        case.call_and_validate(headers=headers, checks=checks)

    exchange()


def test_the_server_keeps_its_openapi_contract(fuzzed_server, access_token):
    # The pytest plugin's lazy loader does not run on pytest 9; the operations are driven here instead.
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    headers, checks = {"Authorization": f"Bearer {access_token}"}, all_checks()
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                run_operation(operation, mode, headers, checks)
            except Unsatisfiable:
                pass  # no invalid request exists (e.g. GET /health has no parameters)
            except BaseException as exc:  # schemathesis raises exception groups; all failures are reported together
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                failures.append(f"{operation.label} [{mode}]: {str(exc)[:3000]}")
    assert not failures, "\n\n".join(failures)
