"""Echo suppression: fingerprints over synced attributes only, one-shot consumption."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from switchyard import registry
from switchyard.echoes import (
    ECHO_TTL_SECONDS,
    EchoSuppressingTarget,
    InMemoryEchoLedger,
    fingerprint,
)
from switchyard.events import FlowEvent
from switchyard.targets import DeliveryResult

BOX = {"key": "box_1", "pipelineKey": "pl_orders", "stageKey": "5002", "name": "Clarity CL-10001",
       "fields": {"1001": "CL-10001"}, "lastUpdatedTimestamp": 1_795_860_000_000}
CUSTOMER = {"customerId": "C-501", "firstName": "Jane", "lastName": "Doe", "email": "jane@acme.example",
            "phone": "+1 555 0100", "company": "Acme Corp", "version": 3, "updatedAt": "2026-11-22T09:00:00Z"}


class RecordingTarget:
    def __init__(self) -> None:
        self.received: list[FlowEvent] = []

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        self.received.append(event)
        return DeliveryResult("updated", {"event_id": event.event_id})


class FakeClock:
    def __init__(self, now: float = 1_795_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inner() -> RecordingTarget:
    return RecordingTarget()


@pytest.fixture
def ledger() -> InMemoryEchoLedger:
    return InMemoryEchoLedger(clock=FakeClock())


@pytest.fixture
def guarded(inner: RecordingTarget, ledger: InMemoryEchoLedger) -> EchoSuppressingTarget:
    return EchoSuppressingTarget(inner, ledger)


def event(flow_event: Callable[..., FlowEvent], source: str, event_type: str, data: dict[str, Any],
          event_id: str | None = None) -> FlowEvent:
    document = {"type": event_type, "timestamp": "2026-11-22T09:00:00Z", "data": data}
    return flow_event("two-way", source, document, event_id=event_id)


# --- fingerprint ----------------------------------------------------------------------------------


def test_fingerprint_unsynced_attribute_changed_same_fingerprint() -> None:
    renamed = {**BOX, "name": "renamed by a rep", "notes": "x", "lastUpdatedTimestamp": 1, "fields": {}}

    assert fingerprint("streak", "box", renamed) == fingerprint("streak", "box", BOX)


def test_fingerprint_synced_attribute_changed_other_fingerprint() -> None:
    assert fingerprint("streak", "box", {**BOX, "stageKey": "5003"}) != fingerprint("streak", "box", BOX)


@pytest.mark.parametrize("attribute", registry.system("clarity").echoes.synced_attributes["customer"])
def test_fingerprint_each_synced_customer_attribute_changed_other_fingerprint(attribute: str) -> None:
    changed = {**CUSTOMER, attribute: "changed"}

    assert fingerprint("clarity", "customer", changed) != fingerprint("clarity", "customer", CUSTOMER)


def test_fingerprint_customer_version_and_company_ignored_same_fingerprint() -> None:
    bumped = {**CUSTOMER, "version": 4, "updatedAt": "2026-11-23T00:00:00Z", "company": "Other"}

    assert fingerprint("clarity", "customer", bumped) == fingerprint("clarity", "customer", CUSTOMER)


def test_fingerprint_key_order_irrelevant_same_fingerprint() -> None:
    reordered = dict(reversed(list(CUSTOMER.items())))

    assert fingerprint("clarity", "customer", reordered) == fingerprint("clarity", "customer", CUSTOMER)


def test_fingerprint_order_status_changed_other_fingerprint() -> None:
    order = {"status": "shipped"}

    assert fingerprint("clarity", "order", order) != fingerprint("clarity", "order", {"status": "pending"})


def test_echo_subjects_every_echo_entity_has_synced_attributes() -> None:
    rules = {name: entry.echoes for name, entry in registry.systems().items() if entry.echoes is not None}
    assert set(rules) == {"streak", "clarity", "salesforce"}
    for echo in rules.values():
        for entity, _key in echo.subjects.values():
            assert entity in echo.synced_attributes


# --- in-memory ledger -------------------------------------------------------------------------------


def test_ledger_unsynced_change_still_matches_consumed(ledger: InMemoryEchoLedger) -> None:
    ledger.record("streak", "box", "box_1", BOX)

    assert ledger.consume("streak", "box", "box_1", {**BOX, "name": "other", "lastUpdatedTimestamp": 9}) is True


def test_ledger_synced_change_not_consumed(ledger: InMemoryEchoLedger) -> None:
    ledger.record("streak", "box", "box_1", BOX)

    assert ledger.consume("streak", "box", "box_1", {**BOX, "stageKey": "5004"}) is False
    assert ledger.consume("streak", "box", "box_1", BOX) is True  # the recorded echo is still there


def test_ledger_other_key_not_consumed(ledger: InMemoryEchoLedger) -> None:
    ledger.record("streak", "box", "box_1", BOX)

    assert ledger.consume("streak", "box", "box_2", BOX) is False


def test_ledger_expired_echo_not_consumed() -> None:
    clock = FakeClock()
    ledger = InMemoryEchoLedger(clock=clock)
    ledger.record("clarity", "order", "CL-10001", {"status": "shipped"})

    clock.now += ECHO_TTL_SECONDS

    assert ledger.consume("clarity", "order", "CL-10001", {"status": "shipped"}) is False


# --- EchoSuppressingTarget --------------------------------------------------------------------------


def test_suppressing_target_matching_echo_consumed_once(
    guarded: EchoSuppressingTarget, inner: RecordingTarget, ledger: InMemoryEchoLedger, flow_event
) -> None:
    # Given Switchyard moved box_1 to stage 5002
    ledger.record("streak", "box", "box_1", BOX)

    # When Streak reports that stage change, twice (the second is a person's identical move later)
    first = guarded.deliver(event(flow_event, "streak", "BOX_CHANGE_STAGE", BOX, "evt_echo"))
    second = guarded.deliver(event(flow_event, "streak", "BOX_CHANGE_STAGE", BOX, "evt_again"))

    # Then the first is consumed as the echo and only the second reaches the target
    assert first == DeliveryResult("echo", {"entity": "box", "key": "box_1"})
    assert second.outcome == "updated"
    assert [e.event_id for e in inner.received] == ["evt_again"]


def test_suppressing_target_synced_value_differs_delivered(
    guarded: EchoSuppressingTarget, inner: RecordingTarget, ledger: InMemoryEchoLedger, flow_event
) -> None:
    ledger.record("clarity", "customer", "C-501", CUSTOMER)

    result = guarded.deliver(event(flow_event, "clarity", "customer.updated", {**CUSTOMER, "lastName": "Smith"}))

    assert result.outcome == "updated"
    assert len(inner.received) == 1


def test_suppressing_target_unsynced_value_differs_consumed(
    guarded: EchoSuppressingTarget, inner: RecordingTarget, ledger: InMemoryEchoLedger, flow_event
) -> None:
    ledger.record("clarity", "customer", "C-501", CUSTOMER)

    result = guarded.deliver(event(flow_event, "clarity", "customer.updated",
                                   {**CUSTOMER, "company": "New Co", "version": 9}))

    assert result.outcome == "echo"
    assert inner.received == []


@pytest.mark.parametrize(("source", "event_type", "data"), [
    ("clarity", "order.created", {"orderId": "CL-10001", "status": "shipped"}),
    ("nopcommerce", "order.status_changed", {"orderId": "CL-10001", "status": "shipped"}),
    ("streak", "BOX_CREATE", {"key": "CL-10001", "status": "shipped"}),
])
def test_suppressing_target_non_echo_event_type_always_delivered(
    guarded: EchoSuppressingTarget, inner: RecordingTarget, ledger: InMemoryEchoLedger, flow_event,
    source: str, event_type: str, data: dict[str, Any],
) -> None:
    # Given an echo that would match the entity and fingerprint
    ledger.record("clarity", "order", "CL-10001", {"status": "shipped"})

    result = guarded.deliver(event(flow_event, source, event_type, data))

    # Then an event type that cannot be an echo goes to the target, and the echo is left in place
    assert result.outcome == "updated"
    assert len(inner.received) == 1
    assert ledger.consume("clarity", "order", "CL-10001", {"status": "shipped"}) is True


def test_suppressing_target_event_without_key_delivered(
    guarded: EchoSuppressingTarget, inner: RecordingTarget, ledger: InMemoryEchoLedger, flow_event
) -> None:
    ledger.record("clarity", "order", "", {"status": "shipped"})

    result = guarded.deliver(event(flow_event, "clarity", "order.status_changed", {"status": "shipped"}))

    assert result.outcome == "updated"
    assert len(inner.received) == 1


def test_suppressing_target_no_echo_recorded_delivered(
    guarded: EchoSuppressingTarget, inner: RecordingTarget, flow_event
) -> None:
    result = guarded.deliver(event(flow_event, "clarity", "order.status_changed",
                                   {"orderId": "CL-10001", "status": "shipped"}))

    assert result.outcome == "updated"
    assert len(inner.received) == 1


# --- what a person may change: every synced attribute, by the name the system uses ----------------------

STREAK_CONTACT = {"key": "contact_1", "givenName": "Jane", "familyName": "Doe",
                  "emailAddresses": ["jane@acme.example"], "phoneNumbers": ["+1 555 0100"], "title": "CEO"}
PERSON_EDITS = [  # named here, not read from SYNCED_ATTRIBUTES: a misspelt name there must fail this test
    ("streak", "box", BOX, "stageKey", "5003"),
    ("streak", "contact", STREAK_CONTACT, "givenName", "Janet"),
    ("streak", "contact", STREAK_CONTACT, "familyName", "Smith"),
    ("streak", "contact", STREAK_CONTACT, "emailAddresses", ["janet@acme.example"]),
    ("streak", "contact", STREAK_CONTACT, "phoneNumbers", ["+1 555 0199"]),
    ("clarity", "order", {"orderId": "CL-1", "status": "pending"}, "status", "shipped"),
    ("clarity", "customer", CUSTOMER, "firstName", "Janet"),
    ("clarity", "customer", CUSTOMER, "lastName", "Smith"),
    ("clarity", "customer", CUSTOMER, "email", "janet@acme.example"),
    ("clarity", "customer", CUSTOMER, "phone", "+1 555 0199"),
]


@pytest.mark.parametrize(("system", "entity", "state", "attribute", "edited"), PERSON_EDITS,
                         ids=[f"{s}-{e}-{a}" for s, e, _, a, _ in PERSON_EDITS])
def test_ledger_persons_change_to_one_synced_attribute_is_not_an_echo(
        ledger: InMemoryEchoLedger, system: str, entity: str, state: dict[str, Any], attribute: str,
        edited: Any) -> None:
    ledger.record(system, entity, "k1", state)  # Switchyard's own write

    assert ledger.consume(system, entity, "k1", {**state, attribute: edited}) is False
    assert ledger.consume(system, entity, "k1", state) is True


def test_ledger_default_echo_window_is_ten_minutes() -> None:
    clock = FakeClock()
    ledger = InMemoryEchoLedger(clock=clock)
    ledger.record("clarity", "order", "CL-1", {"status": "shipped"})
    ledger.record("clarity", "order", "CL-2", {"status": "shipped"})

    clock.now += 599
    assert ledger.consume("clarity", "order", "CL-1", {"status": "shipped"}) is True
    clock.now += 1
    assert ledger.consume("clarity", "order", "CL-2", {"status": "shipped"}) is False


def test_fingerprint_of_values_json_cannot_encode_compares_by_their_text() -> None:
    # a pair field's value may be a Decimal or a datetime: it is fingerprinted, never an error
    from datetime import UTC, datetime
    from decimal import Decimal

    amount = fingerprint("clarity", "pair-field", {"amount": Decimal("12.50")})

    assert amount == fingerprint("clarity", "pair-field", {"amount": Decimal("12.50")})
    assert amount != fingerprint("clarity", "pair-field", {"amount": Decimal("12.51")})
    assert fingerprint("clarity", "pair-field", {"at": datetime(2026, 11, 20, tzinfo=UTC)}) != \
        fingerprint("clarity", "pair-field", {"at": datetime(2026, 11, 21, tzinfo=UTC)})
