"""One contract for TokenStore, run against InMemoryTokenStore and SecretsManagerTokenStore (moto).

The crux: a rotated refresh token is persisted atomically with one refresher per realm, so concurrent
refreshes never lose it. The vendor here is ``RotatingVendor``: each refresh token works exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from switchyard.aws.tokens import SecretsManagerTokenStore
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError
from switchyard.tokens import (
    InMemoryTokenStore,
    LeasedTokenStore,
    TokenResponse,
)

from tests.conftest import FakeClock
from tests.contract.conftest import CONNECTION_KEYS, TABLE

REALM = "9130"
T0 = 1_795_000_000.0
SECRET_ID = "switchyard/dev/connections/quickbooks"
CONNECTION = {"client_id": "qbo-client", "client_secret": "qbo-secret", "realm_id": REALM,
              "base_url": "https://sandbox-quickbooks.api.intuit.com", "refresh_token": "R0"}


class Waits:
    """The stores' ``sleep``: counts the polls of waiting workers and yields for a millisecond."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
        time.sleep(0.001)


class RotatingVendor:
    """Intuit's token endpoint, reduced to rotation: each refresh token can be used once."""

    def __init__(self) -> None:
        self.valid = {"R0"}
        self.calls = 0
        self._lock = threading.Lock()

    def refresh(self, refresh_token: str) -> TokenResponse:
        with self._lock:
            self.calls += 1
            if refresh_token not in self.valid:
                raise PermanentError("invalid_grant", reason="target_auth_failed", target_status=400)
            self.valid.discard(refresh_token)
            self.valid.add(successor := f"R{self.calls}")
            return TokenResponse(access_token=f"A{self.calls}", refresh_token=successor, expires_in=3600)


class SerializedClient:
    """A moto client whose calls run one at a time, as DynamoDB applies a conditional write atomically
    (moto does not lock between threads); ``fail[name] = n`` makes the next n calls of ``name`` fail."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock
        self.fail: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name == "exceptions" or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self.fail.get(name):
                    self.fail[name] -= 1
                    raise ClientError({"Error": {"Code": "InternalServiceError", "Message": "injected"}}, name)
                return attribute(*args, **kwargs)

        return call


@dataclass
class Harness:
    """``make(**options)`` opens a store on the shared storage (another worker); ``document()`` is what is
    stored; ``fail_writes(n)`` makes the next n document writes fail."""

    make: Callable[..., LeasedTokenStore]
    document: Callable[[], dict[str, Any]]
    fail_writes: Callable[[int], None]
    clock: FakeClock
    waits: Waits


def _build(kind: str, request: pytest.FixtureRequest) -> Iterator[Harness]:
    clock, waits = FakeClock(), Waits()
    defaults: dict[str, Any] = {"clock": clock, "sleep": waits, "lease_seconds": 30, "poll_seconds": 0.01}
    if kind == "in_memory":
        first = InMemoryTokenStore({REALM: CONNECTION}, **defaults)
        broken = {"writes": 0}
        real_put = first._put

        def put(realm: str, document: dict[str, Any]) -> str:
            if broken["writes"]:
                broken["writes"] -= 1
                raise OSError("injected write failure")
            return real_put(realm, document)

        def make_memory(**options: Any) -> LeasedTokenStore:
            store = InMemoryTokenStore(shared_with=first, **{**defaults, **options})  # same storage
            store._put = put  # type: ignore[method-assign]
            return store

        first._put = put  # type: ignore[method-assign]
        yield Harness(make=make_memory, document=lambda: first.document(REALM),
                      fail_writes=lambda n: broken.__setitem__("writes", n), clock=clock, waits=waits)
        return
    dynamo = request.getfixturevalue("dynamo_client")  # moto is running for the whole test from here on
    lock = threading.Lock()
    secrets = SerializedClient(boto3.client("secretsmanager", region_name="us-east-1"), lock)
    secrets.create_secret(Name=SECRET_ID, SecretString=json.dumps(CONNECTION))
    table = SerializedClient(dynamo, lock)

    def make_aws(**options: Any) -> LeasedTokenStore:
        return SecretsManagerTokenStore(secrets, table, TABLE, SECRET_ID, keys=CONNECTION_KEYS,
                                        **{**defaults, **options})

    yield Harness(make=make_aws,
                  document=lambda: json.loads(secrets.get_secret_value(SecretId=SECRET_ID)["SecretString"]),
                  fail_writes=lambda n: secrets.fail.__setitem__("put_secret_value", n), clock=clock, waits=waits)


@pytest.fixture(params=["in_memory", "secrets_manager"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from _build(request.param, request)


@pytest.fixture
def aws_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from _build("secrets_manager", request)


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# --------------------------------------------------------------------------- current


def test_current_connected_realm_returns_stored_refresh_token(harness: Harness) -> None:
    state = harness.make().current(REALM)

    assert state.refresh_token == "R0"
    assert state.access_token is None
    assert not state.access_valid(harness.clock())


def test_current_other_realm_raises_connection_config_error(harness: Harness) -> None:
    with pytest.raises(ConnectionConfigError):
        harness.make().current("4620")


# --------------------------------------------------------------------------- refresh


def test_refresh_first_call_persists_access_and_rotated_refresh_token(harness: Harness) -> None:
    vendor = RotatingVendor()

    state = harness.make().refresh(REALM, vendor.refresh)

    assert (state.access_token, state.refresh_token) == ("A1", "R1")
    assert state.access_expires_at == T0 + 3600
    stored = harness.document()
    assert (stored["access_token"], stored["refresh_token"], stored["access_token_expires_at"]) == ("A1", "R1",
                                                                                                     T0 + 3600)
    # another worker reads what was stored
    other = harness.make().current(REALM)
    assert (other.access_token, other.refresh_token) == ("A1", "R1")


def test_refresh_keeps_the_other_keys_of_the_document(harness: Harness) -> None:
    harness.make().refresh(REALM, RotatingVendor().refresh)

    stored = harness.document()
    assert {key: stored[key] for key in CONNECTION if key != "refresh_token"} == {
        key: value for key, value in CONNECTION.items() if key != "refresh_token"}


def test_refresh_concurrent_callers_refresh_once_and_share_the_token(harness: Harness) -> None:
    # Given eight workers (each its own store, as in separate processes) that all find no valid access token
    vendor, workers = RotatingVendor(), 8
    stores = [harness.make() for _ in range(workers)]
    start = threading.Barrier(workers)

    def slow_refresh(refresh_token: str) -> TokenResponse:
        deadline = time.monotonic() + 5
        while harness.waits.count < workers - 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # hold the lease until every other worker is waiting on it
        return vendor.refresh(refresh_token)

    def work(store: LeasedTokenStore) -> Any:
        start.wait()
        return store.refresh(REALM, slow_refresh)

    # When they refresh at once
    running = [_in_thread(lambda store=store: work(store)) for store in stores]
    for thread, _ in running:
        thread.join(10)

    # Then the vendor was called once, every worker got its tokens and the successor is stored
    outcomes = [outcome for _, outcome in running]
    assert all("error" not in outcome for outcome in outcomes), outcomes
    assert vendor.calls == 1
    assert {outcome["value"].access_token for outcome in outcomes} == {"A1"}
    assert harness.document()["refresh_token"] == "R1"
    assert harness.waits.count >= workers - 1


def test_refresh_after_another_worker_refreshed_reuses_its_token(harness: Harness) -> None:
    vendor = RotatingVendor()
    harness.make().refresh(REALM, vendor.refresh)

    state = harness.make().refresh(REALM, vendor.refresh)

    assert vendor.calls == 1
    assert (state.access_token, state.refresh_token) == ("A1", "R1")


def test_refresh_rejected_access_token_refreshes_again(harness: Harness) -> None:
    vendor, store = RotatingVendor(), harness.make()
    store.refresh(REALM, vendor.refresh)

    state = store.refresh(REALM, vendor.refresh, stale="A1")  # QBO answered 401 to A1

    assert (state.access_token, state.refresh_token) == ("A2", "R2")
    assert harness.document()["refresh_token"] == "R2"


def test_refresh_expired_access_token_refreshes_again(harness: Harness) -> None:
    vendor, store = RotatingVendor(), harness.make()
    store.refresh(REALM, vendor.refresh)
    harness.clock.advance(3600)

    state = store.refresh(REALM, vendor.refresh)

    assert (state.access_token, state.refresh_token) == ("A2", "R2")
    assert state.access_expires_at == T0 + 7200


def test_refresh_lease_of_dead_worker_expires_and_is_taken_over(harness: Harness) -> None:
    # Given a worker that took the lease and then hangs (as good as dead) before calling the vendor
    vendor, entered, resume = RotatingVendor(), threading.Event(), threading.Event()

    def hang(refresh_token: str) -> TokenResponse:
        entered.set()
        resume.wait(10)
        raise RuntimeError("worker died")

    dead, dead_outcome = _in_thread(lambda: harness.make().refresh(REALM, hang))
    assert entered.wait(5)

    # When its lease has expired and another worker refreshes
    harness.clock.advance(31)
    state = harness.make().refresh(REALM, vendor.refresh)

    # Then the other worker refreshed and stored the successor
    assert (state.access_token, state.refresh_token) == ("A1", "R1")
    assert harness.document()["refresh_token"] == "R1"
    assert vendor.calls == 1
    # and the hung worker, coming back, neither overwrites it nor fails: it finds the stored tokens
    resume.set()
    dead.join(5)
    assert dead_outcome["value"].refresh_token == "R1"
    assert harness.document()["refresh_token"] == "R1"


def test_refresh_lease_held_by_live_worker_gives_up_as_retryable(harness: Harness) -> None:
    entered, resume = threading.Event(), threading.Event()

    def hang(refresh_token: str) -> TokenResponse:
        entered.set()
        resume.wait(10)
        raise RuntimeError("gave up")

    holder, _ = _in_thread(lambda: harness.make().refresh(REALM, hang))
    assert entered.wait(5)
    try:
        with pytest.raises(RetryableError) as caught:
            harness.make(wait_seconds=0.03).refresh(REALM, RotatingVendor().refresh)
    finally:
        resume.set()
        holder.join(5)

    assert caught.value.reason == "token_refresh_busy"
    assert caught.value.retry_after == 30


def test_refresh_vendor_failure_releases_lease_and_keeps_refresh_token(harness: Harness) -> None:
    store, vendor = harness.make(), RotatingVendor()

    def unavailable(refresh_token: str) -> TokenResponse:
        raise RetryableError("Intuit answered 503", reason="target_unavailable", target_status=503)

    with pytest.raises(RetryableError):
        store.refresh(REALM, unavailable)
    state = harness.make().refresh(REALM, vendor.refresh)

    assert harness.waits.count == 0  # the lease was free at once
    assert (state.access_token, state.refresh_token) == ("A1", "R1")


def test_refresh_write_failure_keeps_tokens_and_stores_them_on_next_call(harness: Harness) -> None:
    store, vendor = harness.make(), RotatingVendor()
    harness.fail_writes(1)

    with pytest.raises(RetryableError) as caught:
        store.refresh(REALM, vendor.refresh)
    assert caught.value.reason == "token_store_unavailable"
    assert harness.document()["refresh_token"] == "R0"

    state = store.current(REALM)

    assert (state.access_token, state.refresh_token) == ("A1", "R1")
    assert harness.document()["refresh_token"] == "R1"
    assert vendor.calls == 1
    assert harness.make().refresh(REALM, vendor.refresh).access_token == "A1"  # lease released, no refresh


def test_refresh_crash_after_vendor_rotation_is_the_unrecoverable_case(harness: Harness) -> None:
    # Given a worker that dies after Intuit rotated the refresh token but before the successor was stored
    vendor = RotatingVendor()

    def rotate_then_die(refresh_token: str) -> TokenResponse:
        vendor.refresh(refresh_token)
        raise RuntimeError("process killed")

    with pytest.raises(RuntimeError):
        harness.make().refresh(REALM, rotate_then_die)

    # Then the stored refresh token is dead: the next refresh is invalid_grant, the company must reconnect
    with pytest.raises(PermanentError) as caught:
        harness.make().refresh(REALM, vendor.refresh)
    assert caught.value.reason == "target_auth_failed"
    assert harness.document()["refresh_token"] == "R0"


# --------------------------------------------------------------------------- Secrets Manager specifics


def test_secrets_manager_refresh_keeps_previous_version_as_awsprevious(aws_harness: Harness) -> None:
    aws_harness.make().refresh(REALM, RotatingVendor().refresh)
    secrets = boto3.client("secretsmanager", region_name="us-east-1")

    previous = secrets.get_secret_value(SecretId=SECRET_ID, VersionStage="AWSPREVIOUS")

    assert json.loads(previous["SecretString"])["refresh_token"] == "R0"


def test_secrets_manager_lease_released_with_written_version(aws_harness: Harness) -> None:
    aws_harness.make().refresh(REALM, RotatingVendor().refresh)
    dynamo = boto3.client("dynamodb", region_name="us-east-1")
    current = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(SecretId=SECRET_ID)

    item = dynamo.get_item(TableName=TABLE, Key={"id": {"S": f"lease#quickbooks#{REALM}"}})["Item"]

    assert "lease_owner" not in item
    assert item["secret_version"]["S"] == current["VersionId"]
    assert item["id"]["S"] == "lease#quickbooks#9130"  # the connection's scope: what IAM grants


class LaggingSecrets:
    """Secrets Manager right after a write: a read of the current version may still answer the one before
    (reads are not promised to see a write at once); a read of a named version answers that version."""

    def __init__(self, client: Any, stale: dict[str, Any]) -> None:
        self._client = client
        self._stale = stale

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        if "VersionId" in kwargs:
            return dict(self._client.get_secret_value(**kwargs))
        return dict(self._stale)


def test_secrets_manager_refresh_after_a_lagging_read_uses_the_version_the_last_holder_wrote(
    aws_harness: Harness,
) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    before = dict(secrets.get_secret_value(SecretId=SECRET_ID))  # R0
    vendor = RotatingVendor()
    aws_harness.make().refresh(REALM, vendor.refresh)  # R0 -> R1, its version left on the lease
    # the version written before R1's, as a lagging read still answers it (created before R1's version)
    before["CreatedDate"] = secrets.get_secret_value(SecretId=SECRET_ID)["CreatedDate"] - timedelta(minutes=5)
    dynamo = boto3.client("dynamodb", region_name="us-east-1")
    lagging = SecretsManagerTokenStore(LaggingSecrets(secrets, before), dynamo, TABLE, SECRET_ID,
                                       keys=CONNECTION_KEYS, clock=aws_harness.clock, sleep=aws_harness.waits,
                                       lease_seconds=30, poll_seconds=0.01)

    state = lagging.refresh(REALM, vendor.refresh, stale="A1")  # R0 is spent: only R1 refreshes

    assert (state.access_token, state.refresh_token) == ("A2", "R2")


def test_secrets_manager_lease_hint_naming_a_pruned_version_reads_the_current_one(aws_harness: Harness) -> None:
    vendor = RotatingVendor()
    store = aws_harness.make()
    dynamo = boto3.client("dynamodb", region_name="us-east-1")
    # the last holder left a version Secrets Manager has pruned since (it keeps a secret's recent versions)
    dynamo.put_item(TableName=TABLE, Item={"id": {"S": f"lease#quickbooks#{REALM}"},
                                           "secret_version": {"S": "0b1c2d3e-0000-4000-8000-00000000dead"}})

    state = store.refresh(REALM, vendor.refresh)

    assert (state.access_token, state.refresh_token) == ("A1", "R1")


def test_store_wait_for_a_held_lease_polls_until_the_wait_is_spent_then_is_busy(harness: Harness) -> None:
    holder, waiter = harness.make(), harness.make(wait_seconds=0.05, poll_seconds=0.01)
    # a live holder: it took the lease and has not released it
    assert holder._try_acquire(REALM, "holder", harness.clock())[0]

    with pytest.raises(RetryableError) as raised:
        waiter.refresh(REALM, RotatingVendor().refresh)

    assert (raised.value.reason, raised.value.retry_after) == ("token_refresh_busy", 30)
    assert harness.waits.count == 5  # ceil(0.05 / 0.01) polls between six tries


@pytest.mark.parametrize(("lease_seconds", "poll_seconds"), [(0, 0.1), (45, 0), (-1, 0.1), (45, -0.1)])
def test_store_lease_and_poll_must_both_be_positive(lease_seconds: float, poll_seconds: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        InMemoryTokenStore({}, lease_seconds=lease_seconds, poll_seconds=poll_seconds)


@pytest.mark.parametrize("stored", ["", 12345, ["A1"]])
def test_store_access_token_that_is_not_text_is_none(stored: Any) -> None:
    store = InMemoryTokenStore({REALM: {**CONNECTION, "access_token": stored, "access_expires_at": T0 + 3600}})
    state = store.current(REALM)
    assert state.access_token is None
    assert not state.access_valid(T0)


class RecordingSecrets:
    """Secrets Manager remembering each write's arguments; ``fail_reads`` fails every read as an outage does."""

    def __init__(self, client: Any, *, fail_reads: bool = False) -> None:
        self._client = client
        self._fail_reads = fail_reads
        self.writes: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        if self._fail_reads:
            raise ClientError({"Error": {"Code": "InternalServiceError", "Message": "down"}}, "GetSecretValue")
        return dict(self._client.get_secret_value(**kwargs))

    def put_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.writes.append(kwargs)
        return dict(self._client.put_secret_value(**kwargs))


def aws_store(aws_harness: Harness, secrets: Any) -> SecretsManagerTokenStore:
    return SecretsManagerTokenStore(secrets, boto3.client("dynamodb", region_name="us-east-1"), TABLE, SECRET_ID,
                                    keys=CONNECTION_KEYS, clock=aws_harness.clock, sleep=aws_harness.waits,
                                    lease_seconds=30, poll_seconds=0.01)


def test_secrets_manager_write_is_idempotent_per_lease_owner(aws_harness: Harness) -> None:
    # the lease owner as ClientRequestToken: a write retried after a timeout is no second version
    recording = RecordingSecrets(boto3.client("secretsmanager", region_name="us-east-1"))
    aws_store(aws_harness, recording).refresh(REALM, RotatingVendor().refresh)
    [write] = recording.writes
    assert len(write["ClientRequestToken"]) == 36  # the lease owner's uuid4
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=TABLE, Key={"id": {"S": f"lease#quickbooks#{REALM}"}})["Item"]
    assert "lease_owner" not in item  # released: the token was this refresh's own owner id


def test_secrets_manager_unreadable_secret_is_retryable(aws_harness: Harness) -> None:
    failing = RecordingSecrets(boto3.client("secretsmanager", region_name="us-east-1"), fail_reads=True)
    with pytest.raises(RetryableError) as raised:
        aws_store(aws_harness, failing).current(REALM)
    assert raised.value.reason == "token_store_unavailable"


def test_refresh_write_failure_keeps_the_lease_so_no_other_worker_refreshes_with_the_spent_token(
    harness: Harness,
) -> None:
    store, vendor = harness.make(), RotatingVendor()
    harness.fail_writes(1)
    with pytest.raises(RetryableError):
        store.refresh(REALM, vendor.refresh)

    with pytest.raises(RetryableError) as caught:
        harness.make(wait_seconds=0.03).refresh(REALM, vendor.refresh)

    assert caught.value.reason == "token_refresh_busy"
    assert vendor.calls == 1


def test_refresh_after_a_write_failure_stores_the_kept_tokens_without_refreshing_again(harness: Harness) -> None:
    store, vendor = harness.make(), RotatingVendor()
    harness.fail_writes(1)
    with pytest.raises(RetryableError):
        store.refresh(REALM, vendor.refresh)

    state = store.refresh(REALM, vendor.refresh)

    assert (state.access_token, state.refresh_token) == ("A1", "R1")
    assert harness.document()["refresh_token"] == "R1"
    assert vendor.calls == 1


def test_store_lease_of_a_dead_holder_blocks_the_realm_for_45_seconds_by_default() -> None:
    defaults = InMemoryTokenStore({REALM: CONNECTION})
    assert defaults._try_acquire(REALM, "dead-holder", T0)[0]
    assert not defaults._try_acquire(REALM, "waiter", T0 + 44.999)[0]
    assert defaults._try_acquire(REALM, "waiter", T0 + 45.0)[0]


def test_store_lease_shorter_than_a_second_is_allowed() -> None:
    InMemoryTokenStore({REALM: CONNECTION}, lease_seconds=0.5, poll_seconds=0.1)
