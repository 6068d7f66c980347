"""A steady authenticated load against a Dyno server, run as its own process:
``python -m tests.integration.rotation_load URL STOP_FILE OUT_FILE [MAX_REQUESTS] [MAX_SECONDS]``.

One user logs in, then loops over a mix of API calls (list projects, me, create a
project now and then) and refreshes (one in ten), each on a keep-alive connection,
until STOP_FILE exists, MAX_REQUESTS were sent or MAX_SECONDS passed (bounded in
count and time). It writes OUT_FILE as JSON: counts, failures (status and path,
never a token) and each request's start time and latency, so the benchmark can cut
them into before/during windows. Loopback only.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

import httpx

PASSWORD = "correct horse battery staple"


def main(url: str, stop_file: Path, out_file: Path, max_requests: int = 20000, max_seconds: float = 300) -> None:
    assert url.startswith("http://127.0.0.1:"), "loopback only"
    samples, failures = [], []
    with httpx.Client(base_url=url, timeout=10) as client:
        email = f"load-{secrets.token_hex(4)}@example.com"
        client.post("/auth/register", json={"email": email, "password": PASSWORD}).raise_for_status()
        tokens = client.post("/auth/login", json={"email": email, "password": PASSWORD}).json()
        ready = out_file.with_suffix(".ready")
        ready.write_text("1")
        deadline = time.monotonic() + max_seconds
        i = 0
        while i < max_requests and time.monotonic() < deadline and not stop_file.exists():
            i += 1
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            if i % 10 == 0:
                method, path, body, headers = "POST", "/auth/refresh", {"refresh_token": tokens["refresh_token"]}, {}
            elif i % 7 == 0:
                method, path, body = "POST", "/projects", {"name": f"p{i}"}
            else:
                method, path, body = "GET", ("/projects" if i % 2 else "/auth/me"), None
            started = time.time()
            t0 = time.perf_counter()
            try:
                response = client.request(method, path, json=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            samples.append((started, time.perf_counter() - t0))
            if status not in (200, 201):
                failures.append({"status": status, "path": path, "at": started})
            elif path == "/auth/refresh":
                tokens = response.json()
    out_file.write_text(json.dumps({"requests": len(samples), "failures": failures, "samples": samples}))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], Path(args[1]), Path(args[2]), *(int(a) for a in args[3:4]), *(float(a) for a in args[4:5]))
