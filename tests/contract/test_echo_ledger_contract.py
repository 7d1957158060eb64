"""One contract for EchoLedger, run against the in-memory fake and the DynamoDB ledger (on moto).

Every target test that records echoes in InMemoryEchoLedger relies on it behaving like
DynamoEchoLedger does in AWS: an echo is consumed once, only with its own fingerprint, only
before it expires.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from switchyard.echoes import ECHO_TTL_SECONDS, DynamoEchoLedger, EchoLedger, InMemoryEchoLedger, fingerprint

from tests.contract.conftest import KEYS, TABLE

T0 = 1_795_000_000
SHIPPED = {"orderId": "CL-10001", "status": "shipped", "version": 2}
CONTACT = {"key": "contact_1", "givenName": "Jane", "familyName": "Doe",
           "emailAddresses": ["jane@acme.example"], "phoneNumbers": ["+1 555 0100"]}


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["in_memory", "dynamodb"])
def ledger_factory(request: pytest.FixtureRequest, clock: FakeClock) -> Callable[[], EchoLedger]:
    """Builds ledgers sharing one store (two workers of one deployment), all on ``clock``."""
    if request.param == "in_memory":
        shared = InMemoryEchoLedger(clock=clock)
        return lambda: shared
    client = request.getfixturevalue("dynamo_client")
    return lambda: DynamoEchoLedger(client, TABLE, keys=KEYS, clock=clock)


@pytest.fixture
def ledger(ledger_factory: Callable[[], EchoLedger]) -> EchoLedger:
    return ledger_factory()


def test_consume_recorded_echo_true_once(ledger: EchoLedger) -> None:
    ledger.record("clarity", "order", "CL-10001", SHIPPED)

    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is True
    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is False


def test_consume_nothing_recorded_false(ledger: EchoLedger) -> None:
    assert ledger.consume("streak", "contact", "contact_1", CONTACT) is False


def test_consume_unsynced_attributes_differ_true(ledger: EchoLedger) -> None:
    ledger.record("clarity", "order", "CL-10001", SHIPPED)

    assert ledger.consume("clarity", "order", "CL-10001", {**SHIPPED, "version": 7, "note": "x"}) is True


def test_consume_wrong_fingerprint_false_and_echo_kept(ledger: EchoLedger) -> None:
    ledger.record("streak", "contact", "contact_1", CONTACT)

    assert ledger.consume("streak", "contact", "contact_1", {**CONTACT, "phoneNumbers": ["+1 555 0199"]}) is False
    assert ledger.consume("streak", "contact", "contact_1", CONTACT) is True


def test_consume_other_key_or_entity_false(ledger: EchoLedger) -> None:
    ledger.record("clarity", "order", "CL-10001", SHIPPED)

    assert ledger.consume("clarity", "order", "CL-10002", SHIPPED) is False
    assert ledger.consume("streak", "box", "CL-10001", {"stageKey": "shipped"}) is False
    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is True


def test_consume_before_expiry_true(ledger: EchoLedger, clock: FakeClock) -> None:
    ledger.record("clarity", "order", "CL-10001", SHIPPED)
    clock.now += ECHO_TTL_SECONDS - 1

    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is True


def test_consume_expired_false(ledger: EchoLedger, clock: FakeClock) -> None:
    ledger.record("clarity", "order", "CL-10001", SHIPPED)
    clock.now += ECHO_TTL_SECONDS

    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is False


def test_record_again_after_expiry_consumable(ledger: EchoLedger, clock: FakeClock) -> None:
    ledger.record("clarity", "order", "CL-10001", SHIPPED)
    clock.now += ECHO_TTL_SECONDS + 5
    ledger.consume("clarity", "order", "CL-10001", SHIPPED)

    ledger.record("clarity", "order", "CL-10001", SHIPPED)

    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is True


def test_consume_two_consumers_only_one_wins(ledger_factory: Callable[[], EchoLedger]) -> None:
    # Given one echo, and two workers that each received a delivery of it
    writer, first, second = ledger_factory(), ledger_factory(), ledger_factory()
    writer.record("streak", "contact", "contact_1", CONTACT)

    outcomes = [first.consume("streak", "contact", "contact_1", CONTACT),
                second.consume("streak", "contact", "contact_1", CONTACT)]

    assert sorted(outcomes) == [False, True]


def test_in_memory_consume_concurrent_consumers_only_one_wins() -> None:
    # (moto's DynamoDB has no locking, so the threaded race runs on the in-memory ledger only;
    #  DynamoDB's conditional delete gives the same guarantee in AWS)
    ledger = InMemoryEchoLedger(clock=FakeClock())
    ledger.record("clarity", "order", "CL-10001", SHIPPED)
    start = threading.Barrier(8)

    def consume() -> bool:
        start.wait()
        return ledger.consume("clarity", "order", "CL-10001", SHIPPED)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _i: consume(), range(8)))

    assert outcomes.count(True) == 1


def test_dynamo_ledger_item_key_and_ttl(dynamo_client) -> None:
    DynamoEchoLedger(dynamo_client, TABLE, keys=KEYS, clock=lambda: T0).record("clarity", "order", "CL-10001", SHIPPED)

    key = f"echo#clarity+streak#clarity#order#CL-10001#{fingerprint('clarity', 'order', SHIPPED)}"
    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": key}})["Item"]
    assert item["expiration"] == {"N": str(T0 + ECHO_TTL_SECONDS)}


def test_dynamo_ledger_consume_deletes_item(dynamo_client) -> None:
    ledger = DynamoEchoLedger(dynamo_client, TABLE, keys=KEYS, clock=lambda: T0)
    ledger.record("clarity", "order", "CL-10001", SHIPPED)

    ledger.consume("clarity", "order", "CL-10001", SHIPPED)

    assert dynamo_client.scan(TableName=TABLE)["Count"] == 0


def test_record_with_flow_echo_window_expires_then(ledger: EchoLedger, clock: FakeClock) -> None:
    # the echo window is a flow's setting (flows.yaml two_way.echo_window_seconds), not a module constant
    ledger.record("clarity", "order", "CL-10001", SHIPPED, ttl_seconds=3600)
    ledger.record("clarity", "order", "CL-10002", SHIPPED, ttl_seconds=3600)
    clock.now += ECHO_TTL_SECONDS + 1
    assert ledger.consume("clarity", "order", "CL-10001", SHIPPED) is True

    clock.now += 3600
    assert ledger.consume("clarity", "order", "CL-10002", SHIPPED) is False


def test_fingerprint_of_an_unlisted_entity_covers_the_whole_state(ledger: EchoLedger) -> None:
    ledger.record("streak", "clarity+streak:order.status", "CL-10001", {"value": "5003"})

    assert ledger.consume("streak", "clarity+streak:order.status", "CL-10001", {"value": "5002"}) is False
    assert ledger.consume("streak", "clarity+streak:order.status", "CL-10001", {"value": "5003"}) is True
