"""The sandboxes' HTTP server keeps a connection open between requests (HTTP/1.1), as vendors' servers do:
a client's pool reuses one connection instead of opening one per call."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import httpx
from switchyard_local.sandboxes.faults import FaultPlan
from switchyard_local.sandboxes.streak import StreakSandbox

API_KEY = "sandbox-key"


def test_two_requests_share_one_connection() -> None:
    with StreakSandbox() as sandbox:
        url = urlsplit(sandbox.base_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        connection.auto_open = 0  # a closed connection must fail the second request, not reopen silently
        connection.connect()
        try:
            for _ in range(2):
                connection.request("GET", "/api/v1/pipelines", headers={"Authorization": _basic()})
                response = connection.getresponse()
                response.read()
                assert (response.status, response.version, response.will_close) == (200, 11, False)
        finally:
            connection.close()


def test_a_client_that_gave_up_gets_a_fresh_connection_next() -> None:
    # Given the sandbox answering one request after the client's timeout
    with StreakSandbox() as sandbox, httpx.Client(base_url=sandbox.base_url, auth=(API_KEY, "")) as client:
        sandbox.faults.set_plan(FaultPlan(latency_ms=400))
        try:
            client.get("/api/v1/pipelines", timeout=0.1)
            raise AssertionError("the slow answer should have timed out")
        except httpx.TimeoutException:
            pass
        sandbox.faults.clear()
        # Then the next request is answered in full on another connection
        assert client.get("/api/v1/pipelines", timeout=5).status_code == 200


def _basic() -> str:
    import base64

    return "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
