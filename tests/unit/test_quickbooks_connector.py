"""QuickBooksClient against the in-process QBO sandbox: tokens, idempotent writes, Fault mapping, queries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from switchyard.errors import ConnectionConfigError, ConnectionDownError, PermanentError, RetryableError
from switchyard.systems.quickbooks.client import (
    DuplicateNameError,
    QuickBooksClient,
    QuickBooksConnection,
    fault_error,
    quote_value,
    requestid_for,
)
from switchyard.tokens import InMemoryTokenStore
from switchyard_local.sandboxes.quickbooks import TOKEN_PATH, QuickBooksSandbox

from tests.conftest import FakeClock

REALM = "9130"
BASE_URL = "http://qbo.test"
T0 = 1_795_000_000.0


class Recorder(httpx.BaseTransport):
    """Keeps every request and the status it got; ``before`` runs ahead of each request."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[httpx.Request, int]] = []
        self.before: Callable[[httpx.Request], None] | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if self.before is not None:
            self.before(request)
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:  # sent, but no answer came back (status 0)
            with self._lock:
                self.sent.append((request, 0))
            raise
        with self._lock:
            self.sent.append((request, response.status_code))
        return response

    def token_calls(self) -> int:
        return sum(1 for request, _ in self.sent if request.url.path == TOKEN_PATH)

    def api(self) -> list[tuple[httpx.Request, int]]:
        return [(request, status) for request, status in self.sent if request.url.path.startswith("/v3/")]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> QuickBooksSandbox:
    # the clock stands still, so the 10/s limit would bite: raised here, lowered where a test wants 429
    return QuickBooksSandbox(clock=clock, per_second=10_000, per_minute=100_000, batch_per_minute=10_000)


@pytest.fixture
def tokens(sandbox: QuickBooksSandbox) -> dict[str, Any]:
    return sandbox.connect_realm(REALM)


@pytest.fixture
def secret(tokens: dict[str, Any]) -> dict[str, Any]:
    """The connection secret as the consent flow left it (the access token valid for an hour)."""
    return {"base_url": BASE_URL, "token_url": f"{BASE_URL}{TOKEN_PATH}", "client_id": "qbo-client",
            "client_secret": "qbo-secret", "realm_id": REALM, "refresh_token": tokens["refresh_token"],
            "access_token": tokens["access_token"], "access_token_expires_at": T0 + 3600}


@pytest.fixture
def store(clock: FakeClock, secret: dict[str, Any]) -> InMemoryTokenStore:
    return InMemoryTokenStore({REALM: secret}, clock=clock, sleep=lambda _: time.sleep(0.001), poll_seconds=0.01)


@pytest.fixture
def transport(sandbox: QuickBooksSandbox) -> Recorder:
    return Recorder(httpx.WSGITransport(app=sandbox.wsgi_app))


@pytest.fixture
def make_client(secret: dict[str, Any], store: InMemoryTokenStore, transport: Recorder,
                clock: FakeClock) -> Iterator[Callable[..., QuickBooksClient]]:
    clients: list[QuickBooksClient] = []

    def build(token_store: Any = None, rate_limiter: Any = None, **overrides: Any) -> QuickBooksClient:
        client = QuickBooksClient(QuickBooksConnection.from_secret({**secret, **overrides}), token_store or store,
                                  transport=transport, clock=clock, rate_limiter=rate_limiter)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def qbo(make_client: Callable[..., QuickBooksClient]) -> QuickBooksClient:
    return make_client()


@pytest.fixture
def item(sandbox: QuickBooksSandbox, tokens: dict[str, Any]) -> dict[str, Any]:
    return sandbox.seed_item(REALM, "Trail shoes", "SHOE-42", qty_on_hand=12, unit_price=119.0)


def invoice_body(customer_id: str, item_id: str, **fields: Any) -> dict[str, Any]:
    return {"CustomerRef": {"value": customer_id}, **fields, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 119.0,
         "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": 1, "UnitPrice": 119.0}}]}


# --------------------------------------------------------------------------- connection


def test_connection_from_secret_complete_applies_defaults(secret: dict[str, Any]) -> None:
    minimal = {key: secret[key] for key in ("client_id", "client_secret", "realm_id", "refresh_token")}

    connection = QuickBooksConnection.from_secret({**minimal, "access_token": "ignored"})

    assert connection.base_url == "https://quickbooks.api.intuit.com"
    assert connection.token_url == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    assert connection.minor_version == 75
    assert secret["refresh_token"] not in repr(connection)


def test_connection_from_secret_incomplete_raises_naming_missing_keys() -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        QuickBooksConnection.from_secret({"client_id": "qbo-client", "realm_id": REALM})

    assert "client_secret" in str(caught.value)
    assert "refresh_token" in str(caught.value)


# --------------------------------------------------------------------------- tokens


def test_client_access_token_expired_refreshes_before_the_call(
    clock: FakeClock, qbo: QuickBooksClient, store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any],
) -> None:
    clock.advance(3600)  # the sandbox no longer accepts the access token

    info = qbo.read("CompanyInfo", "1")

    assert info["Id"] == "1"
    assert transport.token_calls() == 1
    assert [status for _, status in transport.api()] == [200]  # refreshed ahead, no 401 first
    stored = store.document(REALM)
    assert stored["refresh_token"] != secret["refresh_token"]
    assert stored["access_token_expires_at"] == clock() + 3600


def test_client_access_token_inside_margin_refreshes_early(
    clock: FakeClock, qbo: QuickBooksClient, transport: Recorder
) -> None:
    clock.advance(3600 - 30)  # still valid for 30 s, inside the 60 s margin

    qbo.read("CompanyInfo", "1")

    assert transport.token_calls() == 1


def test_client_401_refreshes_once_and_retries_once(
    make_client: Callable[..., QuickBooksClient], store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any],
) -> None:
    # Given a stored access token that looks valid but was revoked
    store.seed(REALM, secret["refresh_token"], access_token="revoked", access_expires_at=T0 + 3600)

    info = make_client().read("CompanyInfo", "1")

    assert info["Id"] == "1"
    assert [status for _, status in transport.api()] == [401, 200]
    assert transport.token_calls() == 1


class _CountingLimiter:
    """A limiter that grants every permit and notes, for each, how many token calls had been made by then."""

    def __init__(self, transport: Recorder) -> None:
        self._transport = transport
        self.token_calls_at_permit: list[int] = []

    def acquire(self, key: str, *, max_wait: float) -> float:
        self.token_calls_at_permit.append(self._transport.token_calls())
        return 0.0

    def time_until_available(self, key: str) -> float:
        return 0.0


def test_rate_limit_permit_per_api_request_the_retry_after_401_too_never_the_token_refresh(
    make_client: Callable[..., QuickBooksClient], store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any],
) -> None:
    # QBO counts every API request, the one repeated after a 401 too, and not the OAuth calls; a permit is
    # taken when the request leaves, after its token is at hand, so a slow refresh never sits between
    # a permit and the request it stands for
    store.seed(REALM, secret["refresh_token"], access_token="revoked", access_expires_at=T0 + 3600)
    limiter = _CountingLimiter(transport)

    make_client(rate_limiter=limiter).read("CompanyInfo", "1")

    assert [status for _, status in transport.api()] == [401, 200]
    assert limiter.token_calls_at_permit == [0, 1]  # two permits; the second after the refresh


def test_client_401_after_refresh_raises_target_auth_failed(
    sandbox: QuickBooksSandbox, clock: FakeClock, qbo: QuickBooksClient, transport: Recorder
) -> None:
    sandbox.access_token_ttl_seconds = 0  # every new access token is refused at once
    clock.advance(3600)

    with pytest.raises(PermanentError) as caught:
        qbo.read("CompanyInfo", "1")

    assert caught.value.reason == "target_auth_failed"
    assert caught.value.target_status == 401
    assert transport.token_calls() == 2  # ahead of expiry, then once after the 401: no loop


def test_client_refresh_persists_rotated_token_and_old_one_is_refused(
    clock: FakeClock, qbo: QuickBooksClient, store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any], make_client: Callable[..., QuickBooksClient],
) -> None:
    clock.advance(3600)
    qbo.read("CompanyInfo", "1")
    rotated = store.document(REALM)["refresh_token"]

    # Then the store holds the successor, and the old refresh token is invalid_grant at Intuit
    assert rotated != secret["refresh_token"]
    old = httpx.Client(transport=transport).post(f"{BASE_URL}{TOKEN_PATH}", auth=("qbo-client", "qbo-secret"), data={
        "grant_type": "refresh_token", "refresh_token": secret["refresh_token"]})
    assert (old.status_code, old.json()) == (400, {"error": "invalid_grant"})
    # and a worker still holding the old token finds the connection down: the company must be reconnected
    stale = InMemoryTokenStore({REALM: secret}, clock=clock)
    with pytest.raises(ConnectionDownError) as caught:
        make_client(stale).read("CompanyInfo", "1")
    assert caught.value.reason == "credentials_rejected"
    assert caught.value.target_response == {"error": "invalid_grant"}


# --------------------------------------------------------------------------- a lost token answer


def lossy_client(secret: dict[str, Any], store: InMemoryTokenStore, transport: Recorder,
                 clock: FakeClock) -> QuickBooksClient:
    return QuickBooksClient(QuickBooksConnection.from_secret(secret), store, transport=transport, clock=clock,
                            sleep=lambda _: None, connection_name="quickbooks")


def test_lost_refresh_answer_without_grace_marks_the_connection_down_not_the_event(
    clock: FakeClock, sandbox: QuickBooksSandbox, store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any],
) -> None:
    # Given Intuit rotates on this refresh and refuses the previous token at once, and its answer is lost
    clock.advance(3600)
    sandbox.lose_refresh_answers(1)

    with pytest.raises(ConnectionDownError) as caught:
        lossy_client(secret, store, transport, clock).read("CompanyInfo", "1")

    # Then the retry with the same token was refused, and the error names the connection (not a dead letter)
    assert (caught.value.connection, caught.value.reason) == ("quickbooks", "credentials_rejected")
    assert not isinstance(caught.value, PermanentError)
    assert transport.token_calls() == 2
    assert sandbox.refreshes_carried_out == 1


@pytest.mark.parametrize("vendor", [{"refresh_grace_seconds": 60}, {"refresh_rotation_seconds": 86_400}],
                         ids=["previous-token-grace", "inside-the-24h-rotation-window"])
def test_lost_refresh_answer_is_recovered_by_retrying_the_same_token_at_once(
    clock: FakeClock, vendor: dict[str, float],
) -> None:
    sandbox = QuickBooksSandbox(clock=clock, **vendor)
    tokens = sandbox.connect_realm(REALM)
    secret = {"base_url": BASE_URL, "token_url": f"{BASE_URL}{TOKEN_PATH}", "client_id": "qbo-client",
              "client_secret": "qbo-secret", "realm_id": REALM, "refresh_token": tokens["refresh_token"]}
    store = InMemoryTokenStore({REALM: secret}, clock=clock)
    transport = Recorder(httpx.WSGITransport(app=sandbox.wsgi_app))
    clock.advance(5)
    sandbox.lose_refresh_answers(1)

    lossy_client(secret, store, transport, clock).read("CompanyInfo", REALM)

    assert transport.token_calls() == 2
    # the stored refresh token is the live one: the next refresh works
    assert httpx.Client(transport=transport).post(f"{BASE_URL}{TOKEN_PATH}", auth=("qbo-client", "qbo-secret"),
                                                   data={"grant_type": "refresh_token",
                                                         "refresh_token": store.document(REALM)["refresh_token"]}
                                                   ).status_code == 200


def test_token_endpoint_5xx_is_retried_with_the_same_token(
    clock: FakeClock, sandbox: QuickBooksSandbox, store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any],
) -> None:
    clock.advance(3600)
    sandbox.faults.fail_next(2, status=503)

    lossy_client(secret, store, transport, clock).read("CompanyInfo", REALM)

    assert transport.token_calls() == 3


def test_refused_refresh_uses_the_refresh_token_a_reconnect_stored_meanwhile(
    clock: FakeClock, sandbox: QuickBooksSandbox, store: InMemoryTokenStore, transport: Recorder,
    secret: dict[str, Any],
) -> None:
    # Given the company was revoked and reconnected while this worker's refresh was on its way
    clock.advance(3600)
    sandbox.revoke_realm(REALM)
    fresh = sandbox.connect_realm(REALM)

    def reconnect_during_the_refresh(request: httpx.Request) -> None:
        if request.url.path == TOKEN_PATH and store.document(REALM)["refresh_token"] != fresh["refresh_token"]:
            store.seed(REALM, fresh["refresh_token"], **{k: v for k, v in secret.items()
                                                         if k not in ("refresh_token", "access_token",
                                                                      "access_token_expires_at")})

    transport.before = reconnect_during_the_refresh

    lossy_client(secret, store, transport, clock).read("CompanyInfo", REALM)

    assert transport.token_calls() == 2  # refused with the old token, then the reconnect's token worked


def test_clients_sharing_a_store_refresh_once(
    clock: FakeClock, make_client: Callable[..., QuickBooksClient], secret: dict[str, Any], transport: Recorder
) -> None:
    # Given two clients (two flows of one realm) on one store, whose access token has expired
    waiting = threading.Event()
    shared = InMemoryTokenStore({REALM: secret}, clock=clock, poll_seconds=0.01,
                                sleep=lambda _: (waiting.set(), time.sleep(0.001)))
    first, second = make_client(shared), make_client(shared)
    clock.advance(3600)
    start = threading.Barrier(2)

    def hold_token_call(request: httpx.Request) -> None:
        if request.url.path == TOKEN_PATH:
            waiting.wait(5)  # keep the lease until the other client waits for it

    transport.before = hold_token_call
    results: list[Any] = []

    def call(client: QuickBooksClient) -> None:
        start.wait()
        results.append(client.read("CompanyInfo", "1")["Id"])

    # When both call at once
    threads = [threading.Thread(target=call, args=(client,)) for client in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Then Intuit saw one refresh (a second one, with the rotated token, would have been invalid_grant)
    assert results == ["1", "1"]
    assert transport.token_calls() == 1
    assert shared.writes == 1


def test_clients_sharing_a_store_one_after_the_other_refresh_once(
    clock: FakeClock, make_client: Callable[..., QuickBooksClient], transport: Recorder
) -> None:
    first, second = make_client(), make_client()
    clock.advance(3600)

    first.read("CompanyInfo", "1")
    second.read("CompanyInfo", "1")

    assert transport.token_calls() == 1


# --------------------------------------------------------------------------- idempotency


def test_client_create_same_request_id_returns_original_and_creates_once(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient
) -> None:
    created = qbo.create("Customer", {"DisplayName": "Acme Ltd"}, request_id="order-1042:customer")

    again = qbo.create("Customer", {"DisplayName": "Acme Ltd"}, request_id="order-1042:customer")

    assert again["Id"] == created["Id"]
    assert len(sandbox.snapshot()["realms"][REALM]["customers"]) == 1
    assert sandbox.requests_per_realm(REALM)["replayed"] == 1


def test_client_create_long_request_id_sends_stable_50_character_id(qbo: QuickBooksClient, transport: Recorder) -> None:
    operation = "nopcommerce-to-quickbooks#order-000000001042#create-sales-receipt"

    qbo.create("Customer", {"DisplayName": "Long Id Ltd"}, request_id=operation)
    qbo.create("Customer", {"DisplayName": "Long Id Ltd"}, request_id=operation)

    sent = [request.url.params["requestid"] for request, _ in transport.api()]
    assert len(sent[0]) == 50
    assert sent == [requestid_for(operation)] * 2


def test_client_sparse_update_after_stale_sync_token_reread_succeeds_with_same_request_id(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient
) -> None:
    # Given a customer someone else edited after we read it (SyncToken 0 -> 1)
    customer = qbo.create("Customer", {"DisplayName": "Acme Ltd"}, request_id="create-acme")
    qbo.sparse_update("Customer", customer["Id"], "0", {"Notes": "by a bookkeeper"}, request_id="bookkeeper")

    with pytest.raises(RetryableError) as caught:
        qbo.sparse_update("Customer", customer["Id"], "0", {"CompanyName": "Acme"}, request_id="sync-7")
    assert caught.value.reason == "stale_sync_token"

    # When the caller re-reads and retries the same operation with the new SyncToken
    fresh = qbo.read("Customer", customer["Id"])
    updated = qbo.sparse_update("Customer", customer["Id"], fresh["SyncToken"], {"CompanyName": "Acme"},
                                request_id="sync-7")

    # Then it is applied, not a replay of the 5010, and the bookkeeper's note is kept
    assert (updated["CompanyName"], updated["Notes"], updated["SyncToken"]) == ("Acme", "by a bookkeeper", "2")


def test_client_batch_same_request_id_replays_and_creates_once(sandbox: QuickBooksSandbox,
                                                               qbo: QuickBooksClient) -> None:
    items = [{"operation": "create", "Customer": {"DisplayName": "Batch Co"}}]

    first = qbo.batch(items, request_id="batch-1")
    second = qbo.batch(items, request_id="batch-1")

    assert first[0].value is not None and second[0].value is not None
    assert first[0].value["Id"] == second[0].value["Id"]
    assert len(sandbox.snapshot()["realms"][REALM]["customers"]) == 1


def test_client_every_call_sends_minorversion_and_every_write_requestid(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient, transport: Recorder, item: dict[str, Any]
) -> None:
    customer = qbo.create("Customer", {"DisplayName": "Acme Ltd"}, request_id="c-1")
    qbo.read("Customer", customer["Id"])
    qbo.query("select * from Customer")
    qbo.query_one("Item", Sku="SHOE-42")
    updated = qbo.sparse_update("Customer", customer["Id"], customer["SyncToken"], {"Notes": "vip"}, request_id="u-1")
    invoice = qbo.create("Invoice", invoice_body(updated["Id"], item["Id"]), request_id="i-1")
    voided = qbo.void("Invoice", invoice["Id"], invoice["SyncToken"], request_id="v-1")
    qbo.batch([{"Query": "select * from Item"}], request_id="b-1")

    assert voided["TotalAmt"] == 0
    calls = transport.api()
    assert len(calls) == 8
    assert all(request.url.params["minorversion"] == "75" for request, _ in calls)
    assert [request.method for request, _ in calls if "requestid" in request.url.params] == ["POST"] * 5
    assert all("requestid" not in request.url.params for request, _ in calls if request.method == "GET")
    assert sandbox.minor_versions(REALM) == {"75": 8}


def test_client_minor_version_from_connection_is_sent(
    sandbox: QuickBooksSandbox, make_client: Callable[..., QuickBooksClient]
) -> None:
    make_client(minor_version=70).read("CompanyInfo", "1")

    assert sandbox.minor_versions(REALM) == {"70": 1}


# --------------------------------------------------------------------------- Faults


def test_client_duplicate_display_name_raises_duplicate_name_with_the_name(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient
) -> None:
    sandbox.seed_customer(REALM, "Acme Ltd")

    with pytest.raises(DuplicateNameError) as caught:
        qbo.create("Customer", {"DisplayName": "Acme Ltd"}, request_id="c-dup")

    assert isinstance(caught.value, PermanentError)
    assert (caught.value.reason, caught.value.name, caught.value.target_status) == ("duplicate_name", "Acme Ltd",
                                                                                     400)
    assert caught.value.target_response["Fault"]["Error"][0]["code"] == "6240"


def test_client_duplicate_doc_number_raises_duplicate_document_number(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient, item: dict[str, Any]
) -> None:
    customer = sandbox.seed_customer(REALM, "Acme Ltd")
    qbo.create("Invoice", invoice_body(customer["Id"], item["Id"], DocNumber="NOP-1042"), request_id="inv-a")

    with pytest.raises(PermanentError) as caught:
        qbo.create("Invoice", invoice_body(customer["Id"], item["Id"], DocNumber="NOP-1042"), request_id="inv-b")

    assert caught.value.reason == "duplicate_document_number"


def test_client_read_unknown_id_raises_object_not_found(qbo: QuickBooksClient) -> None:
    with pytest.raises(PermanentError) as caught:
        qbo.read("Customer", "999")

    assert (caught.value.reason, caught.value.target_status) == ("object_not_found", 400)


def test_client_other_validation_fault_raises_target_rejected(qbo: QuickBooksClient) -> None:
    with pytest.raises(PermanentError) as caught:
        qbo.create("Customer", {"Notes": "no name at all"}, request_id="c-noname")

    assert caught.value.reason == "target_rejected"
    assert caught.value.target_response["Fault"]["type"] == "ValidationFault"


def test_client_system_fault_raises_retryable(sandbox: QuickBooksSandbox, qbo: QuickBooksClient) -> None:
    sandbox.faults.fail_next(1, 503)

    with pytest.raises(RetryableError) as caught:
        qbo.query("select * from Customer")

    assert (caught.value.reason, caught.value.target_status) == ("target_unavailable", 503)
    assert caught.value.target_response["Fault"]["type"] == "SystemFault"


def test_client_throttled_raises_rate_limited_with_60_seconds(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient, transport: Recorder
) -> None:
    sandbox.per_second = 2  # the clock stands still: a third request inside the same second is refused
    qbo.query("select * from Customer")
    qbo.query("select * from Customer")

    with pytest.raises(RetryableError) as caught:
        qbo.query("select * from Customer")

    assert (caught.value.reason, caught.value.retry_after, caught.value.target_status) == ("rate_limited", 60, 429)
    assert "retry-after" not in transport.sent[-1][0].headers  # QBO sends no header: the 60 s come from us


def test_client_other_realm_token_raises_target_auth_failed(
    make_client: Callable[..., QuickBooksClient], sandbox: QuickBooksSandbox, secret: dict[str, Any],
    clock: FakeClock,
) -> None:
    sandbox.connect_realm("4620")
    store = InMemoryTokenStore({"4620": {**secret, "realm_id": "4620"}}, clock=clock)  # 9130's tokens

    with pytest.raises(PermanentError) as caught:
        make_client(store, realm_id="4620").read("CompanyInfo", "1")

    assert (caught.value.reason, caught.value.target_status) == ("target_auth_failed", 403)


def test_client_batch_fault_inside_200_is_that_item_error(sandbox: QuickBooksSandbox, qbo: QuickBooksClient) -> None:
    sandbox.seed_customer(REALM, "Acme Ltd")

    results = qbo.batch([
        {"operation": "create", "Customer": {"DisplayName": "New Co"}},
        {"operation": "create", "Customer": {"DisplayName": "Acme Ltd"}},
        {"Query": "select * from Customer where DisplayName = 'New Co'"},
    ], request_id="batch-faults")

    assert [result.bid for result in results] == ["1", "2", "3"]
    assert results[0].ok and results[0].value is not None and results[0].value["DisplayName"] == "New Co"
    error = results[1].error
    assert isinstance(error, DuplicateNameError)
    assert (error.name, error.target_status) == ("Acme Ltd", 200)
    assert results[2].ok and results[2].value == {}  # batch items don't see what the batch created


def test_client_fault_inside_plain_200_is_raised(secret: dict[str, Any], store: InMemoryTokenStore,
                                                 clock: FakeClock) -> None:
    fault = {"Fault": {"Error": [{"Message": "Stale Object Error", "code": "5010", "element": "SyncToken"}],
                       "type": "ValidationFault"}, "time": "2026-11-20T01:00:00.000-07:00"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=fault))
    client = QuickBooksClient(QuickBooksConnection.from_secret(secret), store, transport=transport, clock=clock)

    with pytest.raises(RetryableError) as caught:
        client.sparse_update("Customer", "1", "0", {"Notes": "x"}, request_id="u-200")

    assert (caught.value.reason, caught.value.target_status) == ("stale_sync_token", 200)


@pytest.mark.parametrize(("code", "reason", "error_class"), [
    ("5010", "stale_sync_token", RetryableError),
    ("6240", "duplicate_name", DuplicateNameError),
    ("6140", "duplicate_document_number", PermanentError),
    ("6210", "duplicate_document_number", PermanentError),
    ("610", "object_not_found", PermanentError),
    ("2020", "target_rejected", PermanentError),
])
def test_fault_error_validation_codes_map_to_switchyard_errors(code: str, reason: str, error_class: type) -> None:
    body = {"Fault": {"Error": [{"Message": "m", "Detail": "d", "code": code}], "type": "ValidationFault"}}

    error = fault_error(body, status=400, where="QuickBooks POST /customer")

    assert type(error) is error_class
    assert error.reason == reason


def test_fault_error_throttled_with_retry_after_keeps_it() -> None:
    error = fault_error({"Fault": {"type": "ThrottlingFault", "Error": [{"code": "3001"}]}}, status=429,
                        where="QuickBooks GET /query", retry_after=5)

    assert isinstance(error, RetryableError)
    assert (error.reason, error.retry_after) == ("rate_limited", 5)


def test_client_timeout_raises_target_timeout(secret: dict[str, Any], store: InMemoryTokenStore,
                                              clock: FakeClock) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = QuickBooksClient(QuickBooksConnection.from_secret(secret), store, transport=httpx.MockTransport(time_out),
                              clock=clock)

    with pytest.raises(RetryableError) as caught:
        client.query("select * from Customer")

    assert caught.value.reason == "target_timeout"


# --------------------------------------------------------------------------- queries


def test_client_query_one_name_with_quote_is_escaped_and_found(
    sandbox: QuickBooksSandbox, qbo: QuickBooksClient, transport: Recorder
) -> None:
    sandbox.seed_customer(REALM, "O'Brien's Bakery")
    wanted = sandbox.seed_customer(REALM, "O'Brien's Bakery & Cafe")

    found = qbo.query_one("Customer", DisplayName="O'Brien's Bakery & Cafe")

    assert found is not None and found["Id"] == wanted["Id"]
    sent = transport.api()[-1][0].url.params["query"]
    assert sent == "select * from Customer where DisplayName = 'O\\'Brien\\'s Bakery & Cafe' maxresults 1"


def test_client_query_one_nothing_matches_returns_none(qbo: QuickBooksClient) -> None:
    assert qbo.query_one("Customer", DisplayName="Nobody", Active=True) is None


def test_client_query_returns_rows(sandbox: QuickBooksSandbox, qbo: QuickBooksClient) -> None:
    sandbox.seed_customer(REALM, "Acme Ltd")
    sandbox.seed_customer(REALM, "Beta Ltd")

    rows = qbo.query("select * from Customer orderby DisplayName")

    assert [row["DisplayName"] for row in rows] == ["Acme Ltd", "Beta Ltd"]


def test_client_query_one_bad_field_name_raises_value_error(qbo: QuickBooksClient) -> None:
    with pytest.raises(ValueError):
        qbo.query_one("Customer", **{"DisplayName = 'x' or Id": "1"})


def test_quote_value_escapes_backslash_and_quote_and_formats_literals() -> None:
    assert quote_value("a\\'b") == "'a\\\\\\'b'"
    assert (quote_value(True), quote_value(12), quote_value(1.5)) == ("true", "12", "1.5")


def test_client_token_endpoint_gets_basic_auth_and_refresh_grant(
    clock: FakeClock, qbo: QuickBooksClient, transport: Recorder, secret: dict[str, Any]
) -> None:
    clock.advance(3600)

    qbo.read("CompanyInfo", "1")

    request = next(request for request, _ in transport.sent if request.url.path == TOKEN_PATH)
    assert request.headers["authorization"].startswith("Basic ")
    form = dict(parse_qsl(request.content.decode()))
    assert form == {"grant_type": "refresh_token", "refresh_token": secret["refresh_token"]}


def test_revoked_consent_mid_hour_takes_the_connection_down(
    sandbox: QuickBooksSandbox, store: InMemoryTokenStore, transport: Recorder, secret: dict[str, Any],
    clock: FakeClock,
) -> None:
    # Given a valid access token, and the company disconnects the app (Intuit revokes every token)
    sandbox.revoke_realm(REALM)

    with pytest.raises(ConnectionDownError) as caught:
        lossy_client(secret, store, transport, clock).read("CompanyInfo", REALM)

    # Then the 401 led to one refresh, refused: the connection needs the consent again
    assert [status for _, status in transport.api()] == [401]
    assert (caught.value.reason, caught.value.target_response) == ("credentials_rejected", {"error": "invalid_grant"})
