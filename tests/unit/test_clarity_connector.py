"""ClarityClient against the Clarity sandbox (in-process over WSGITransport): auth schemes, token
renewal, and the classification of every answer into retryable / permanent errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError
from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox

API_KEY = "clarity-key"
OAUTH = {"client_id": "switchyard", "client_secret": "clarity-secret"}
TOKEN = ("POST", "/oauth/token")

ClientFor = Callable[..., ClarityClient]


@pytest.fixture
def order_id(clarity_sandbox: ClaritySandbox) -> str:
    return clarity_sandbox.place_order(DEMO_ORDERS[0])["orderId"]  # CL-10001, processing, customer C-501


@pytest.fixture
def oauth_client(clarity_client_for: ClientFor) -> ClarityClient:
    return clarity_client_for(**OAUTH)


def token_requests(sandbox: ClaritySandbox) -> list[tuple[str, str, int]]:
    return [entry for entry in sandbox.requests if entry[1] == "/oauth/token"]


# --- API key ---------------------------------------------------------------------------------------


def test_client_api_key_sent_no_token_requested(clarity_client: ClarityClient, clarity_sandbox: ClaritySandbox,
                                                clarity_transport, order_id: str) -> None:
    order = clarity_client.get_order(order_id)

    assert order["orderId"] == order_id
    (sent,) = clarity_transport.sent
    assert sent.headers["X-Api-Key"] == API_KEY
    assert "Authorization" not in sent.headers
    assert token_requests(clarity_sandbox) == []


def test_client_wrong_api_key_permanent_auth_failed_not_retried(
    clarity_client_for: ClientFor, clarity_sandbox: ClaritySandbox, order_id: str
) -> None:
    client = clarity_client_for(api_key="stolen-key")

    with pytest.raises(PermanentError) as caught:
        client.get_order(order_id)

    assert (caught.value.reason, caught.value.target_status) == ("target_auth_failed", 401)
    assert caught.value.target_response["error"] == "unauthorized"
    assert len(clarity_sandbox.requests) == 1


# --- OAuth2 client credentials -----------------------------------------------------------------------


def test_client_oauth2_token_fetched_once_and_reused(
    oauth_client: ClarityClient, clarity_sandbox: ClaritySandbox, clarity_transport, order_id: str
) -> None:
    oauth_client.get_order(order_id)
    oauth_client.get_customer("C-501")
    oauth_client.update_order_status(order_id, "shipped")

    assert clarity_transport.calls() == [TOKEN, ("GET", f"/api/v1/orders/{order_id}"),
                                         ("GET", "/api/v1/customers/C-501"),
                                         ("PATCH", f"/api/v1/orders/{order_id}/status")]
    bearers = {r.headers["Authorization"] for r in clarity_transport.sent if r.url.path.startswith("/api/")}
    assert len(bearers) == 1 and bearers.pop().startswith("Bearer ")
    assert all("X-Api-Key" not in r.headers for r in clarity_transport.sent)


def test_client_oauth2_token_request_uses_client_credentials(
    oauth_client: ClarityClient, clarity_transport, order_id: str
) -> None:
    oauth_client.get_order(order_id)

    token_request = clarity_transport.sent[0]
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert b"grant_type=client_credentials" in token_request.content
    assert token_request.headers["Authorization"].startswith("Basic ")


def test_client_oauth2_token_expired_at_clarity_renewed_once_and_succeeds(
    oauth_client: ClarityClient, clarity_sandbox: ClaritySandbox, fake_clock, order_id: str
) -> None:
    # Given a token in use, which Clarity's clock then sees expire (httpx-auth's cache still trusts it)
    oauth_client.get_order(order_id)
    fake_clock.advance(clarity_sandbox.token_ttl_seconds)

    # When the next call is made
    order = oauth_client.get_order(order_id)

    # Then the 401 made the client drop the token, fetch a new one and repeat the call once
    assert order["orderId"] == order_id
    path = f"/api/v1/orders/{order_id}"
    assert list(clarity_sandbox.requests) == [("POST", "/oauth/token", 200), ("GET", path, 200),
                                              ("GET", path, 401), ("POST", "/oauth/token", 200),
                                              ("GET", path, 200)]


def test_client_oauth2_renewed_token_reused_afterwards(
    oauth_client: ClarityClient, clarity_sandbox: ClaritySandbox, fake_clock, order_id: str
) -> None:
    oauth_client.get_order(order_id)
    fake_clock.advance(clarity_sandbox.token_ttl_seconds + 1)
    oauth_client.get_order(order_id)

    oauth_client.get_customer("C-501")

    assert len(token_requests(clarity_sandbox)) == 2


def test_client_oauth2_token_rejected_twice_permanent_auth_failed(
    oauth_client: ClarityClient, clarity_sandbox: ClaritySandbox, fake_clock, order_id: str
) -> None:
    # Given a Clarity whose clock jumps past every token's lifetime before the token is used
    clarity_sandbox.token_ttl_seconds = 60

    def ticking() -> float:
        fake_clock.advance(100)
        return fake_clock.now

    clarity_sandbox.clock = ticking

    # When a call is made, it is retried once with a new token, then given up
    with pytest.raises(PermanentError) as caught:
        oauth_client.get_order(order_id)

    assert (caught.value.reason, caught.value.target_status) == ("target_auth_failed", 401)
    assert caught.value.target_response["error"] == "invalid_token"
    assert [status for _m, _p, status in clarity_sandbox.requests] == [200, 401, 200, 401]


def test_client_oauth2_bad_client_secret_permanent_auth_failed(
    clarity_client_for: ClientFor, clarity_sandbox: ClaritySandbox, order_id: str
) -> None:
    client = clarity_client_for(client_id="switchyard", client_secret="wrong")

    with pytest.raises(PermanentError) as caught:
        client.get_order(order_id)

    assert caught.value.reason == "target_auth_failed"
    assert "invalid_client" in caught.value.message
    assert [path for _m, path, _s in clarity_sandbox.requests] == ["/oauth/token"]  # Clarity's API never called


@pytest.mark.parametrize(("status", "reason"), [(503, "target_unavailable"), (500, "target_unavailable"),
                                                (429, "rate_limited")])
def test_client_oauth2_token_endpoint_transient_failure_retryable(
    oauth_client: ClarityClient, clarity_sandbox: ClaritySandbox, order_id: str, status: int, reason: str
) -> None:
    # A token endpoint that is briefly down is not an authentication failure (no dead letter)
    clarity_sandbox.faults.fail_next(1, status, retry_after=4)

    with pytest.raises(RetryableError) as caught:
        oauth_client.get_order(order_id)

    assert (caught.value.reason, caught.value.target_status, caught.value.retry_after) == (reason, status, 4.0)
    assert oauth_client.get_order(order_id)["orderId"] == order_id  # the caller's retry succeeds


# --- classification of API answers -------------------------------------------------------------------


def test_client_invalid_transition_permanent_rejected_409(
    clarity_client: ClarityClient, clarity_sandbox: ClaritySandbox, order_id: str
) -> None:
    clarity_sandbox.set_order_status(order_id, "delivered")

    with pytest.raises(PermanentError) as caught:
        clarity_client.update_order_status(order_id, "pending")

    assert (caught.value.reason, caught.value.target_status) == ("target_rejected", 409)
    assert caught.value.target_response["error"] == "invalid_transition"
    assert clarity_sandbox.get_order(order_id)["status"] == "delivered"


def test_client_stale_version_412_retryable_stale_version(
    clarity_client: ClarityClient, clarity_sandbox: ClaritySandbox, clarity_transport, order_id: str
) -> None:
    # Given the customer read at version 1, then changed by the shopper (version 2)
    version = clarity_client.get_customer("C-501")["version"]
    clarity_sandbox.update_customer("C-501", firstName="Janet")

    # When Switchyard writes with the version it read
    with pytest.raises(RetryableError) as caught:
        clarity_client.update_customer("C-501", {"lastName": "Smith"}, version=version)

    # Then the write is refused as stale (read again and retry), and nothing changed
    assert (caught.value.reason, caught.value.target_status) == ("stale_version", 412)
    assert caught.value.target_response["error"] == "precondition_failed"
    assert clarity_transport.sent[-1].headers["If-Match"] == "1"
    assert clarity_sandbox.get_customer("C-501")["lastName"] == "Doe"


def test_client_update_customer_current_version_applied(
    clarity_client: ClarityClient, clarity_sandbox: ClaritySandbox, clarity_transport, order_id: str
) -> None:
    updated = clarity_client.update_customer("C-501", {"firstName": "Janet"}, version=1)

    assert (updated["firstName"], updated["version"]) == ("Janet", 2)
    assert json.loads(clarity_transport.sent[-1].content) == {"firstName": "Janet"}
    assert clarity_transport.sent[-1].headers["If-Match"] == "1"


def test_client_update_customer_without_version_no_if_match(
    clarity_client: ClarityClient, clarity_transport, order_id: str
) -> None:
    clarity_client.update_customer("C-501", {"firstName": "Janet"})

    assert "If-Match" not in clarity_transport.sent[-1].headers


@pytest.mark.parametrize(("note", "body"), [(None, {"status": "shipped"}),
                                            ("moved in Streak", {"status": "shipped", "note": "moved in Streak"})])
def test_client_update_order_status_note_only_when_given(
    clarity_client: ClarityClient, clarity_sandbox: ClaritySandbox, clarity_transport, order_id: str,
    note: str | None, body: dict[str, Any],
) -> None:
    updated = clarity_client.update_order_status(order_id, "shipped", note=note)

    assert json.loads(clarity_transport.sent[-1].content) == body
    assert updated["status"] == "shipped"
    assert updated["statusHistory"][-1] == {**updated["statusHistory"][-1], "note": note, "by": "api"}


@pytest.mark.parametrize(("status", "reason", "retry_after", "expected_after"), [
    (503, "target_unavailable", 7, 7.0),
    (503, "target_unavailable", None, None),
    (502, "target_unavailable", None, None),
    (429, "rate_limited", 5, 5.0),
    (429, "rate_limited", None, 1.0),  # the sandbox, like Clarity, always sends Retry-After on 429
])
def test_client_transient_answer_retryable_with_retry_after(
    clarity_client: ClarityClient, clarity_sandbox: ClaritySandbox, order_id: str,
    status: int, reason: str, retry_after: int | None, expected_after: float | None,
) -> None:
    clarity_sandbox.faults.fail_next(1, status, retry_after=retry_after)

    with pytest.raises(RetryableError) as caught:
        clarity_client.update_order_status(order_id, "shipped")

    assert (caught.value.reason, caught.value.target_status, caught.value.retry_after) == (
        reason, status, expected_after)
    assert clarity_sandbox.get_order(order_id)["status"] == "processing"


def test_client_oauth2_api_unavailable_retryable_not_a_token_problem(
    oauth_client: ClarityClient, clarity_sandbox: ClaritySandbox, order_id: str
) -> None:
    oauth_client.get_order(order_id)  # token in hand
    clarity_sandbox.faults.fail_next(1, 503, retry_after=2)

    with pytest.raises(RetryableError) as caught:
        oauth_client.update_order_status(order_id, "shipped")

    assert (caught.value.reason, caught.value.retry_after) == ("target_unavailable", 2.0)
    assert len(token_requests(clarity_sandbox)) == 1


def test_client_unknown_order_permanent_not_found(clarity_client: ClarityClient) -> None:
    with pytest.raises(PermanentError) as caught:
        clarity_client.get_order("CL-99999")

    assert (caught.value.reason, caught.value.target_status) == ("target_not_found", 404)


def test_client_invalid_customer_change_permanent_rejected_422(
    clarity_client: ClarityClient, order_id: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        clarity_client.update_customer("C-501", {"email": "no-at-sign"})

    assert (caught.value.reason, caught.value.target_status) == ("target_rejected", 422)
    assert caught.value.target_response["fields"][0]["field"] == "email"


# --- the connection secret ----------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [
    {"base_url": "https://shop.example.com", "api_key": "k"},
    {"base_url": "https://shop.example.com", "client_id": "id", "client_secret": "s"},
    {"base_url": "https://shop.example.com", "client_id": "id", "client_secret": "s",
     "token_url": "https://login.example.com/token", "unrelated": "ignored"},
])
def test_connection_from_secret_complete_accepted(secret: dict[str, str]) -> None:
    connection = ClarityConnection.from_secret(secret)

    assert connection.base_url == "https://shop.example.com"


@pytest.mark.parametrize("secret", [
    {"base_url": "https://shop.example.com"},
    {"base_url": "https://shop.example.com", "client_id": "id"},
    {"base_url": "https://shop.example.com", "client_secret": "s"},
    {"base_url": "https://shop.example.com", "api_key": "", "client_id": "", "client_secret": ""},
    {"api_key": "k"},
    {"base_url": "", "api_key": "k"},
    {},
])
def test_connection_from_secret_incomplete_config_error(secret: dict[str, str]) -> None:
    with pytest.raises(ConnectionConfigError, match="Clarity connection is incomplete"):
        ClarityConnection.from_secret(secret)


def test_connection_from_secret_error_names_no_secret_value() -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        ClarityConnection.from_secret({"base_url": "https://shop.example.com", "client_id": "id-123"})

    assert "id-123" not in str(caught.value)


def test_client_default_token_url_under_base_url(
    clarity_client_for: ClientFor, clarity_transport, order_id: str
) -> None:
    client = clarity_client_for(**OAUTH, base_url="http://clarity.test/")

    client.get_order(order_id)

    assert str(clarity_transport.sent[0].url) == "http://clarity.test/oauth/token"
