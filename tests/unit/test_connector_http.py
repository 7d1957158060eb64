"""Error classification of one HTTP exchange (switchyard.connectors.http), with httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest
from switchyard.connectors import http as connector_http
from switchyard.connectors.http import jsonable, retry_after_seconds, send
from switchyard.errors import PermanentError, RetryableError

FROZEN_NOW = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)


def client_answering(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), base_url="https://target.test")


def answer(status: int, **kwargs) -> httpx.Client:
    return client_answering(lambda request: httpx.Response(status, **kwargs))


def raising(exc: Exception) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return client_answering(handler)


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connector_http, "time", FROZEN_NOW.timestamp)


def test_send_2xx_returns_response() -> None:
    response = send(answer(201, json={"key": "box_1"}), "POST", "/boxes", system="Streak")

    assert response.json() == {"key": "box_1"}


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ReadTimeout("read timed out"), "target_timeout"),
        (httpx.ConnectTimeout("connect timed out"), "target_timeout"),
        (httpx.PoolTimeout("pool"), "target_timeout"),
        (httpx.ConnectError("connection refused"), "target_unreachable"),
        (httpx.RemoteProtocolError("server hung up"), "target_unreachable"),
        (httpx.ReadError("reset by peer"), "target_unreachable"),
    ],
)
def test_send_transport_failure_raises_retryable(exc: Exception, reason: str) -> None:
    with pytest.raises(RetryableError) as raised:
        send(raising(exc), "GET", "/x", system="Streak")

    assert raised.value.reason == reason
    assert raised.value.retry_after is None
    assert raised.value.target_status is None
    assert raised.value.__cause__ is exc


def test_send_429_with_retry_after_seconds_raises_retryable_with_delay() -> None:
    client = answer(429, headers={"Retry-After": "7"}, json={"error": "slow down"})

    with pytest.raises(RetryableError) as raised:
        send(client, "POST", "/x", system="Streak")

    assert raised.value.reason == "rate_limited"
    assert raised.value.retry_after == 7.0
    assert raised.value.target_status == 429
    assert raised.value.target_response == {"error": "slow down"}


def test_send_429_with_retry_after_http_date_raises_retryable_with_delay(frozen_time) -> None:
    when = format_datetime(datetime(2026, 11, 20, 9, 17, tzinfo=UTC), usegmt=True)  # two minutes later
    client = answer(429, headers={"Retry-After": when})

    with pytest.raises(RetryableError) as raised:
        send(client, "GET", "/x", system="Streak")

    assert raised.value.retry_after == pytest.approx(120.0)


def test_send_429_without_retry_after_has_no_delay() -> None:
    with pytest.raises(RetryableError) as raised:
        send(answer(429), "GET", "/x", system="Streak")

    assert raised.value.retry_after is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("2.5", 2.5), ("-3", 0.0), ("not a date", None), ("", None)],
)
def test_retry_after_seconds_parses_header(header: str, expected: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": header})

    assert retry_after_seconds(response) == expected


def test_retry_after_seconds_date_in_the_past_is_zero(frozen_time) -> None:
    past = format_datetime(datetime(2026, 11, 20, 9, 0, tzinfo=UTC), usegmt=True)

    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": past})) == 0.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_send_5xx_raises_retryable(status: int) -> None:
    with pytest.raises(RetryableError) as raised:
        send(answer(status, text="<html>down</html>"), "GET", "/x", system="Streak")

    assert raised.value.reason == "target_unavailable"
    assert raised.value.target_status == status
    assert raised.value.target_response == "<html>down</html>"  # non-JSON bodies kept as text


def test_send_503_with_retry_after_carries_delay() -> None:
    with pytest.raises(RetryableError) as raised:
        send(answer(503, headers={"Retry-After": "30"}), "GET", "/x", system="Streak")

    assert raised.value.retry_after == 30.0


def test_send_400_raises_permanent_with_target_status_and_response() -> None:
    body = {"success": False, "error": "Invalid stage key"}

    with pytest.raises(PermanentError) as raised:
        send(answer(400, json=body), "POST", "/api/v1/boxes/b1", system="Streak")

    assert raised.value.reason == "target_rejected"
    assert raised.value.target_status == 400
    assert raised.value.target_response == body
    assert "Streak answered 400 to POST /api/v1/boxes/b1" in str(raised.value)


@pytest.mark.parametrize("status", [401, 403])
def test_send_auth_failure_raises_permanent_target_auth_failed(status: int) -> None:
    with pytest.raises(PermanentError) as raised:
        send(answer(status, json={"error": "Invalid API key"}), "GET", "/x", system="Streak")

    assert raised.value.reason == "target_auth_failed"
    assert raised.value.target_status == status


def test_send_404_raises_permanent_target_not_found() -> None:
    with pytest.raises(PermanentError) as raised:
        send(answer(404), "GET", "/x", system="Streak")

    assert raised.value.reason == "target_not_found"


@pytest.mark.parametrize("status", [409, 410, 422])
def test_send_other_4xx_raises_permanent_target_rejected(status: int) -> None:
    with pytest.raises(PermanentError) as raised:
        send(answer(status), "GET", "/x", system="Streak")

    assert raised.value.reason == "target_rejected"


def test_send_long_error_body_truncated() -> None:
    with pytest.raises(PermanentError) as raised:
        send(answer(400, text="x" * 5000), "GET", "/x", system="Streak")

    assert raised.value.target_response == "x" * 2000


def test_jsonable_decimals_become_json_numbers() -> None:
    value = {"total": Decimal("1299.00"), "items": [Decimal("24.99"), (Decimal("1"), "a")], "n": None}

    assert jsonable(value) == {"total": 1299, "items": [24.99, [1, "a"]], "n": None}
    assert type(jsonable(Decimal("1299.00"))) is int
    assert type(jsonable(Decimal("24.99"))) is float


# --- RefreshingTokenAuth: refresh and retry once on a 401, for every connector ---------------------------


def _token_server(accepted: set[str]) -> tuple[httpx.MockTransport, list[str]]:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        return httpx.Response(200 if token in accepted else 401, json={"token": token})

    return httpx.MockTransport(answer), seen


def test_refreshing_token_auth_401_new_token_once_and_retried() -> None:
    from switchyard.connectors.http import RefreshingTokenAuth

    transport, seen = _token_server({"t2"})
    asked: list[str | None] = []

    def token(rejected: str | None) -> str:
        asked.append(rejected)
        return "t2" if rejected == "t1" else "t1"

    client = httpx.Client(transport=transport, auth=RefreshingTokenAuth(token), base_url="https://api.test")
    assert client.get("/x").status_code == 200
    assert (asked, seen) == ([None, "t1"], ["t1", "t2"])


def test_refreshing_token_auth_second_401_is_the_answer_no_third_try() -> None:
    from switchyard.connectors.http import RefreshingTokenAuth

    transport, seen = _token_server(set())
    client = httpx.Client(transport=transport, auth=RefreshingTokenAuth(lambda rejected: f"after-{rejected}"),
                          base_url="https://api.test")
    assert client.get("/x").status_code == 401
    assert seen == ["after-None", "after-after-None"]


def test_refreshing_token_auth_token_error_marked_as_not_the_answer() -> None:
    from switchyard.connectors.http import RefreshingTokenAuth, raised_getting_token

    def token(_rejected: str | None) -> str:
        raise PermanentError("sign-in refused", reason="target_auth_failed", target_status=401)

    transport, seen = _token_server(set())
    client = httpx.Client(transport=transport, auth=RefreshingTokenAuth(token), base_url="https://api.test")
    with pytest.raises(PermanentError) as caught:
        client.get("/x")
    assert raised_getting_token(caught.value) and seen == []


def test_clarity_401_renews_only_its_own_token_not_every_clients() -> None:
    """Regression: a 401 used to clear httpx-auth's token cache of every client in the process."""
    import base64
    import uuid

    from switchyard.systems.clarity.client import ClarityClient, ClarityConnection

    issued: dict[str, int] = {}
    revoked = {"a-1"}  # client a's first token is revoked early

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            client_id = base64.b64decode(request.headers["Authorization"].split()[1]).decode().split(":")[0]
            issued[client_id] = issued.get(client_id, 0) + 1
            return httpx.Response(200, json={"access_token": f"{client_id}-{issued[client_id]}",
                                             "token_type": "Bearer", "expires_in": 3600})
        token = request.headers["Authorization"].removeprefix("Bearer ")
        if token in revoked:
            return httpx.Response(401, json={"error": "invalid_token"})
        return httpx.Response(200, json={"orderId": "CL-1", "token": token})

    transport = httpx.MockTransport(answer)
    base = f"https://clarity-{uuid.uuid4().hex[:8]}.test"  # httpx-auth's cache is per process: keys unique here
    a, b = (ClarityClient(ClarityConnection(base_url=base, client_id=name, client_secret="s"), transport=transport)
            for name in ("a", "b"))

    assert b.get_order("CL-1")["token"] == "b-1"
    assert a.get_order("CL-1")["token"] == "a-2"  # a-1 refused: renewed once, retried once
    assert b.get_order("CL-1")["token"] == "b-1"  # b's token survived a's renewal
    assert issued == {"a": 2, "b": 1}
