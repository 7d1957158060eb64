"""QuickBooks Online webhooks at the edge: intuit-signature, both payload shapes split into entity
changes, routing (unrouted entities acknowledged, not queued), and the QBO sandbox's real deliveries."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from switchyard.catalog import SourceConfig, load_catalog
from switchyard.errors import EnqueueError, SchemaError, SignatureError
from switchyard.events import FlowEvent
from switchyard.ingest import Accepted, IngestService, WebhookRequest
from switchyard.systems.quickbooks.webhooks import (
    EntityChange,
    IntuitSignatureAuthenticator,
    intuit_sign,
    parse_notification,
)
from switchyard_local.sandboxes.quickbooks import (
    QuickBooksSandbox,
    WebhookEvent,
    cloudevents_payload,
    intuit_signature,
    legacy_payload,
)

VERIFIER = "qbo-verifier-1"
NEW_VERIFIER = "qbo-verifier-2"
REALM = "9130"
OTHER_REALM = "4620816365"
RECEIVED_AT = datetime(2026, 11, 20, 9, 15, 3, tzinfo=UTC)
STOCK_QUEUE = "https://sqs.test/q/quickbooks-stock-to-nopcommerce"
AUDIT_QUEUE = "https://sqs.test/q/quickbooks-audit"
ROUTES = {"quickbooks": {"item.created": {"quickbooks-stock-to-nopcommerce": STOCK_QUEUE},
                         "item.updated": {"quickbooks-stock-to-nopcommerce": STOCK_QUEUE},
                         "item.deleted": {}}}
PAYLOADS: dict[str, Callable[[Sequence[WebhookEvent]], Any]] = {"legacy": legacy_payload,
                                                                "cloudevents": cloudevents_payload}


def change(name: str = "Item", entity_id: str = "7", operation: str = "Update", *, realm: str = REALM,
           at: str = "2026-11-20T09:15:00.000Z", event_id: str = "5f1c0c3e-1111-4a8e-9c54-000000000001",
           ) -> WebhookEvent:
    return WebhookEvent(realm, name, entity_id, operation, at, event_id)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed(body: bytes, *, token: str = VERIFIER) -> WebhookRequest:
    """A delivery as QBO sends it, signed by the sandbox's own signing function."""
    return WebhookRequest(source="quickbooks", headers={"intuit-signature": intuit_signature(token, body)}, body=body)


def delivery(shape: str, *events: WebhookEvent, token: str = VERIFIER) -> WebhookRequest:
    return signed(encode(PAYLOADS[shape](events)), token=token)


# --- IntuitSignatureAuthenticator ---------------------------------------------------------------------

BODY = encode(legacy_payload([change()]))


def test_intuit_signature_valid_accepted_no_delivery_id() -> None:
    assert IntuitSignatureAuthenticator([VERIFIER]).authenticate(signed(BODY)) is None


def test_intuit_sign_matches_what_the_sandbox_sends() -> None:
    assert intuit_sign(VERIFIER, BODY) == {"intuit-signature": intuit_signature(VERIFIER, BODY)}


def test_intuit_signature_other_token_rejected() -> None:
    with pytest.raises(SignatureError, match="does not match") as caught:
        IntuitSignatureAuthenticator([VERIFIER]).authenticate(signed(BODY, token="someone-else"))
    assert caught.value.status_code == 401


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1], ids=["first", "middle", "last"])
def test_intuit_signature_body_altered_by_one_byte_rejected(position: int) -> None:
    request = signed(BODY)
    altered = bytearray(BODY)
    altered[position] ^= 0x01

    with pytest.raises(SignatureError, match="does not match"):
        IntuitSignatureAuthenticator([VERIFIER]).authenticate(
            WebhookRequest(source="quickbooks", headers=request.headers, body=bytes(altered)))


@pytest.mark.parametrize("headers", [{}, {"intuit-signature": ""}, {"intuit-signature": "  "},
                                     {"x-intuit-signature": intuit_signature(VERIFIER, BODY)}])
def test_intuit_signature_missing_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError, match="missing intuit-signature"):
        IntuitSignatureAuthenticator([VERIFIER]).authenticate(
            WebhookRequest(source="quickbooks", headers=headers, body=BODY))


@pytest.mark.parametrize("presented", ["not base64!", intuit_signature(VERIFIER, BODY)[:-4],
                                       intuit_signature(VERIFIER, BODY).lower()])
def test_intuit_signature_malformed_or_truncated_rejected(presented: str) -> None:
    with pytest.raises(SignatureError):
        IntuitSignatureAuthenticator([VERIFIER]).authenticate(
            WebhookRequest(source="quickbooks", headers={"intuit-signature": presented}, body=BODY))


@pytest.mark.parametrize("configured", [[], [""], ["", ""]])
def test_intuit_signature_no_token_configured_rejected(configured: list[str]) -> None:
    with pytest.raises(SignatureError, match="no verifier token is configured"):
        IntuitSignatureAuthenticator(configured).authenticate(signed(BODY))


@pytest.mark.parametrize("sender_token", [VERIFIER, NEW_VERIFIER], ids=["old", "new"])
def test_intuit_signature_rotation_either_token_accepted(sender_token: str) -> None:
    authenticator = IntuitSignatureAuthenticator([VERIFIER, NEW_VERIFIER])

    assert authenticator.authenticate(signed(BODY, token=sender_token)) is None


def test_intuit_signature_rotation_finished_old_token_rejected() -> None:
    authenticator = IntuitSignatureAuthenticator([NEW_VERIFIER])

    with pytest.raises(SignatureError):
        authenticator.authenticate(signed(BODY, token=VERIFIER))
    assert authenticator.authenticate(signed(BODY, token=NEW_VERIFIER)) is None


# --- parse_notification: both shapes ----------------------------------------------------------------


@pytest.mark.parametrize("shape", PAYLOADS)
def test_parse_item_update_event_type_timestamp_and_data(shape: str) -> None:
    (parsed,) = parse_notification(PAYLOADS[shape]([change()]))

    assert parsed.event_type == "item.updated"
    assert parsed.timestamp == "2026-11-20T09:15:00.000Z"
    assert parsed.data == {"realm_id": REALM, "entity": "Item", "id": "7", "operation": "Update",
                           "last_updated": "2026-11-20T09:15:00.000Z"}
    assert parsed.envelope() == {"type": "item.updated", "timestamp": parsed.timestamp, "data": parsed.data}


@pytest.mark.parametrize("shape", PAYLOADS)
def test_parse_several_realms_and_entities_in_order(shape: str) -> None:
    events = [change("Item", "7", "Create", event_id="e1"), change("Customer", "58", "Update", event_id="e2"),
              change("SalesReceipt", "311", "Void", realm=OTHER_REALM, event_id="e3"),
              change("Item", "8", "Delete", realm=OTHER_REALM, event_id="e4")]

    parsed = parse_notification(PAYLOADS[shape](events))

    assert [(c.event_type, c.data["realm_id"], c.data["entity"], c.data["id"], c.data["operation"])
            for c in parsed] == [("item.created", REALM, "Item", "7", "Create"),
                                 ("customer.updated", REALM, "Customer", "58", "Update"),
                                 ("salesreceipt.voided", OTHER_REALM, "SalesReceipt", "311", "Void"),
                                 ("item.deleted", OTHER_REALM, "Item", "8", "Delete")]
    assert len({c.event_id for c in parsed}) == 4


def test_parse_both_shapes_same_changes_same_events_apart_from_ids() -> None:
    events = [change("Item", "7", "Create"), change("Invoice", "145", "Update", realm=OTHER_REALM)]

    legacy = parse_notification(legacy_payload(events))
    cloud = parse_notification(cloudevents_payload(events))

    assert [c.envelope() for c in legacy] == [c.envelope() for c in cloud]


@pytest.mark.parametrize(("operation", "verb"), [("Create", "created"), ("Update", "updated"), ("Delete", "deleted"),
                                                 ("Merge", "merged"), ("Void", "voided"), ("Emailed", "emailed")])
def test_parse_legacy_operation_becomes_verb(operation: str, verb: str) -> None:
    (parsed,) = parse_notification(legacy_payload([change("Invoice", "145", operation)]))

    assert parsed.event_type == f"invoice.{verb}"
    assert parsed.data["operation"] == operation


@pytest.mark.parametrize(("kind", "event_type", "entity", "operation"), [
    ("qbo.item.updated.v1", "item.updated", "Item", "Update"),
    ("qbo.salesreceipt.created.v1", "salesreceipt.created", "SalesReceipt", "Create"),
    ("qbo.journalentry.deleted.v1", "journalentry.deleted", "JournalEntry", "Delete"),
    ("qbo.customer.merged.v1", "customer.merged", "Customer", "Merge"),
    ("qbo.invoice.emailed.v1", "invoice.emailed", "Invoice", "Emailed"),
    ("qbo.invoice.voided.v1", "invoice.voided", "Invoice", "Void"),
    ("qbo.SalesReceipt.updated.v1", "salesreceipt.updated", "SalesReceipt", "Update"),
    ("qbo.widget.updated.v1", "widget.updated", "Widget", "Update"),  # an entity QBO adds later
])
def test_parse_cloudevent_type_becomes_event_type_entity_and_operation(
    kind: str, event_type: str, entity: str, operation: str
) -> None:
    (event,) = cloudevents_payload([change()])
    event["type"] = kind

    (parsed,) = parse_notification([event])

    assert (parsed.event_type, parsed.data["entity"], parsed.data["operation"]) == (event_type, entity, operation)


def test_parse_legacy_merge_carries_deleted_id() -> None:
    payload = legacy_payload([change("Customer", "58", "Merge")])
    payload["eventNotifications"][0]["dataChangeEvent"]["entities"][0]["deletedId"] = "57"

    (parsed,) = parse_notification(payload)

    assert parsed.event_type == "customer.merged"
    assert parsed.data["deleted_id"] == "57"


def test_parse_without_deleted_id_has_no_deleted_id_key() -> None:
    (parsed,) = parse_notification(legacy_payload([change()]))

    assert "deleted_id" not in parsed.data


@pytest.mark.parametrize(("sent", "utc"), [
    ("2026-11-20T09:15:00.000Z", "2026-11-20T09:15:00.000Z"),
    ("2026-11-20T09:15:00Z", "2026-11-20T09:15:00.000Z"),
    ("2026-11-20T02:15:00-07:00", "2026-11-20T09:15:00.000Z"),
    ("2026-11-20T09:15:00.123456+00:00", "2026-11-20T09:15:00.123Z"),
    ("2026-11-20T09:15:00", "2026-11-20T09:15:00.000Z"),  # no offset: QBO's webhook times are UTC
])
@pytest.mark.parametrize("shape", PAYLOADS)
def test_parse_change_time_normalised_to_utc(shape: str, sent: str, utc: str) -> None:
    (parsed,) = parse_notification(PAYLOADS[shape]([change(at=sent)]))

    assert parsed.timestamp == parsed.data["last_updated"] == utc


def test_parse_cloudevent_id_is_the_event_id() -> None:
    (parsed,) = parse_notification(cloudevents_payload([change(event_id="ce-42")]))

    assert parsed.event_id == "ce-42"


def test_parse_legacy_redelivery_same_ids() -> None:
    payload = legacy_payload([change("Item", "7"), change("Item", "8", realm=OTHER_REALM)])

    first = [c.event_id for c in parse_notification(payload)]
    again = [c.event_id for c in parse_notification(json.loads(json.dumps(payload)))]

    assert first == again
    assert all(event_id.startswith("qbo-") for event_id in first)
    assert len(set(first)) == 2


@pytest.mark.parametrize("other", [
    change(at="2026-11-20T09:15:01.000Z"), change(operation="Create"), change(entity_id="8"),
    change(realm=OTHER_REALM), change(name="Customer"),
], ids=["later", "operation", "id", "realm", "entity"])
def test_parse_legacy_other_change_other_id(other: WebhookEvent) -> None:
    (base,) = parse_notification(legacy_payload([change()]))
    (different,) = parse_notification(legacy_payload([other]))

    assert different.event_id != base.event_id


def test_parse_legacy_same_instant_written_differently_same_id() -> None:
    (short,) = parse_notification(legacy_payload([change(at="2026-11-20T09:15:00Z")]))
    (long,) = parse_notification(legacy_payload([change(at="2026-11-20T09:15:00.000Z")]))

    assert short.event_id == long.event_id


_DELETE = object()
ENTITY = "eventNotifications[0].dataChangeEvent.entities[1]"


def _legacy(**entity_changes: Any) -> dict[str, Any]:
    payload = legacy_payload([change("Item", "7"), change("Item", "8")])
    entity = payload["eventNotifications"][0]["dataChangeEvent"]["entities"][1]
    for key, value in entity_changes.items():
        if value is _DELETE:
            del entity[key]
        else:
            entity[key] = value
    return payload


def _cloud(**event_changes: Any) -> list[dict[str, Any]]:
    events = cloudevents_payload([change("Item", "7", event_id="a"), change("Item", "8", event_id="b")])
    for key, value in event_changes.items():
        if value is _DELETE:
            del events[1][key]
        else:
            events[1][key] = value
    return events



@pytest.mark.parametrize(("document", "field"), [
    pytest.param({}, "eventNotifications", id="legacy-no-notifications"),
    pytest.param({"eventNotifications": []}, "eventNotifications", id="legacy-empty"),
    pytest.param({"eventNotifications": {"realmId": REALM}}, "eventNotifications", id="legacy-not-array"),
    pytest.param({"eventNotifications": ["x"]}, "eventNotifications[0]", id="legacy-notification-not-object"),
    pytest.param({"eventNotifications": [{"dataChangeEvent": {"entities": []}}]}, "eventNotifications[0].realmId",
                 id="legacy-realm-missing"),
    pytest.param({"eventNotifications": [{"realmId": 9130, "dataChangeEvent": {"entities": []}}]},
                 "eventNotifications[0].realmId", id="legacy-realm-number"),
    pytest.param({"eventNotifications": [{"realmId": "acme", "dataChangeEvent": {"entities": []}}]},
                 "eventNotifications[0].realmId", id="legacy-realm-not-digits"),
    pytest.param({"eventNotifications": [{"realmId": REALM}]}, "eventNotifications[0].dataChangeEvent",
                 id="legacy-no-data-change-event"),
    pytest.param({"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {}}]},
                 "eventNotifications[0].dataChangeEvent.entities", id="legacy-no-entities"),
    pytest.param({"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [None]}}]},
                 "eventNotifications[0].dataChangeEvent.entities[0]", id="legacy-entity-not-object"),
    pytest.param(_legacy(id=_DELETE), f"{ENTITY}.id", id="legacy-id-missing"),
    pytest.param(_legacy(id=8), f"{ENTITY}.id", id="legacy-id-number"),
    pytest.param(_legacy(id=""), f"{ENTITY}.id", id="legacy-id-empty"),
    pytest.param(_legacy(name=_DELETE), f"{ENTITY}.name", id="legacy-name-missing"),
    pytest.param(_legacy(name="Sales Receipt"), f"{ENTITY}.name", id="legacy-name-spaces"),
    pytest.param(_legacy(operation=None), f"{ENTITY}.operation", id="legacy-operation-null"),
    pytest.param(_legacy(lastUpdated="yesterday"), f"{ENTITY}.lastUpdated", id="legacy-time-junk"),
    pytest.param(_legacy(lastUpdated="2026-11-20"), f"{ENTITY}.lastUpdated", id="legacy-time-date-only"),
    pytest.param(_legacy(lastUpdated=_DELETE), f"{ENTITY}.lastUpdated", id="legacy-time-missing"),
    pytest.param(_legacy(deletedId=57), f"{ENTITY}.deletedId", id="legacy-deleted-id-number"),
    pytest.param([], "$", id="cloudevents-empty"),
    pytest.param("item.updated", "$", id="string"),
    pytest.param(7, "$", id="number"),
    pytest.param(None, "$", id="null"),
    pytest.param([cloudevents_payload([change()])[0], "x"], "[1]", id="cloudevents-not-object"),
    pytest.param(_cloud(id=_DELETE), "[1].id", id="cloudevents-id-missing"),
    pytest.param(_cloud(specversion=_DELETE), "[1].specversion", id="cloudevents-specversion-missing"),
    pytest.param(_cloud(type="qbo.item.updated"), "[1].type", id="cloudevents-type-no-version"),
    pytest.param(_cloud(type="qbo.item.updated.v2"), "[1].type", id="cloudevents-type-other-version"),
    pytest.param(_cloud(type="com.example.item.updated.v1"), "[1].type", id="cloudevents-type-foreign"),
    pytest.param(_cloud(type=_DELETE), "[1].type", id="cloudevents-type-missing"),
    pytest.param(_cloud(time="soon"), "[1].time", id="cloudevents-time-junk"),
    pytest.param(_cloud(time=_DELETE), "[1].time", id="cloudevents-time-missing"),
    pytest.param(_cloud(intuitentityid=_DELETE), "[1].intuitentityid", id="cloudevents-entity-id-missing"),
    pytest.param(_cloud(intuitaccountid="realm-1"), "[1].intuitaccountid", id="cloudevents-realm-not-digits"),
    pytest.param(_cloud(intuitaccountid=_DELETE), "[1].intuitaccountid", id="cloudevents-realm-missing"),
])
def test_parse_malformed_notification_schema_error_names_field(document: Any, field: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_notification(document)

    assert caught.value.status_code == 422
    assert [problem["field"] for problem in caught.value.fields] == [field]


def test_parse_legacy_notification_without_entities_no_changes() -> None:
    document = {"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": []}}]}

    assert parse_notification(document) == []


def test_parse_cloudevent_extra_attributes_and_data_ignored() -> None:
    (event,) = cloudevents_payload([change()])
    event.update(data={"Item": {"Name": "Trail shoes"}}, intuitentitytype="Item", subject="x")

    (parsed,) = parse_notification([event])

    assert parsed == EntityChange(event["id"], "item.updated", "2026-11-20T09:15:00.000Z", {
        "realm_id": REALM, "entity": "Item", "id": "7", "operation": "Update",
        "last_updated": "2026-11-20T09:15:00.000Z"})


# --- IngestService: format "intuit" ------------------------------------------------------------------


class FakePublisher:
    def __init__(self, fail_on: str | None = None) -> None:
        self.published: list[tuple[str, str, dict[str, str]]] = []
        self._fail_on = fail_on

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        if queue_url == self._fail_on:
            raise ConnectionError("SQS is unreachable")
        self.published += [(queue_url, m.body, dict(m.attributes)) for m in messages]


def ingest(publisher: Any, *, routes: Mapping[str, Any] = ROUTES,
           tokens: Sequence[str] = (VERIFIER,)) -> IngestService:
    authenticator = IntuitSignatureAuthenticator(tokens)
    return IngestService(routes=routes, authenticator_for=lambda _source: authenticator, publisher=publisher,
                         max_body_bytes=256 * 1024, formats={"quickbooks": "intuit"},
                         ack_statuses={"quickbooks": 200}, clock=lambda: RECEIVED_AT)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.mark.parametrize("shape", PAYLOADS)
def test_accept_item_update_queued_as_flow_event_answered_200(shape: str, publisher: FakePublisher) -> None:
    accepted = ingest(publisher).accept(delivery(shape, change("Item", "7", "Update", event_id="ce-1")))

    assert accepted.status == 200
    assert accepted.event_type == "item.updated"
    assert accepted.flows == ("quickbooks-stock-to-nopcommerce",)
    assert accepted.ignored == 0
    (queue, message, attributes), = publisher.published
    assert queue == STOCK_QUEUE
    event = FlowEvent.from_message(message)
    assert event.event_id == accepted.event_id == attributes["event_id"]
    if shape == "cloudevents":
        assert event.event_id == "ce-1"
    assert (event.flow, event.source, event.type) == ("quickbooks-stock-to-nopcommerce", "quickbooks",
                                                      "item.updated")
    assert event.timestamp == datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
    assert event.data == {"realm_id": REALM, "entity": "Item", "id": "7", "operation": "Update",
                          "last_updated": "2026-11-20T09:15:00.000Z"}
    assert attributes == {"event_id": event.event_id, "event_type": "item.updated", "source": "quickbooks"}
    payload = json.loads(message)
    assert datetime.fromisoformat(payload["received_at"]) == RECEIVED_AT
    assert json.loads(payload["body"]) == {"type": "item.updated", "timestamp": "2026-11-20T09:15:00.000Z",
                                           "data": event.data}


@pytest.mark.parametrize("shape", PAYLOADS)
def test_accept_unrouted_entities_acknowledged_not_queued_and_counted(shape: str, publisher: FakePublisher) -> None:
    request = delivery(shape, change("Customer", "58", "Create", event_id="c1"),
                       change("Item", "7", "Update", event_id="c2"),
                       change("Invoice", "145", "Update", realm=OTHER_REALM, event_id="c3"),
                       change("SalesReceipt", "311", "Void", event_id="c4"))

    accepted = ingest(publisher).accept(request)

    assert accepted.ignored == 3
    assert accepted.event_types == ("item.updated",)
    assert [json.loads(body)["type"] for _, body, _ in publisher.published] == ["item.updated"]
    assert accepted.body() == {"event_id": accepted.event_id, "type": "item.updated",
                               "flows": ["quickbooks-stock-to-nopcommerce"], "ignored": 3}


@pytest.mark.parametrize("shape", PAYLOADS)
def test_accept_no_routed_change_still_200_nothing_queued(shape: str, publisher: FakePublisher) -> None:
    accepted = ingest(publisher).accept(delivery(shape, change("Customer", "58", "Update"),
                                                 change("Payment", "9", "Create")))

    assert accepted.status == 200
    assert publisher.published == []
    assert accepted == Accepted(event_ids=(), event_type="", flows=(), status=200, event_types=(), ignored=2)
    assert accepted.event_id == ""
    assert accepted.body() == {"event_ids": [], "flows": [], "ignored": 2}


def test_accept_routed_but_unsubscribed_type_validated_not_queued(publisher: FakePublisher) -> None:
    accepted = ingest(publisher).accept(delivery("legacy", change("Item", "7", "Delete")))

    assert accepted.event_types == ("item.deleted",)
    assert accepted.ignored == 0
    assert accepted.flows == ()
    assert publisher.published == []


@pytest.mark.parametrize("shape", PAYLOADS)
def test_accept_several_realms_and_types_one_message_per_change_per_flow(shape: str,
                                                                         publisher: FakePublisher) -> None:
    routes = {"quickbooks": {"item.created": {"quickbooks-stock-to-nopcommerce": STOCK_QUEUE},
                             "item.updated": {"quickbooks-stock-to-nopcommerce": STOCK_QUEUE,
                                              "quickbooks-audit": AUDIT_QUEUE}}}
    request = delivery(shape, change("Item", "7", "Update", event_id="u1"),
                       change("Item", "21", "Create", realm=OTHER_REALM, event_id="c1"),
                       change("Item", "8", "Update", realm=OTHER_REALM, event_id="u2"))

    accepted = ingest(publisher, routes=routes).accept(request)

    assert accepted.event_types == ("item.updated", "item.created", "item.updated")
    assert accepted.flows == ("quickbooks-stock-to-nopcommerce", "quickbooks-audit")
    assert [(queue, FlowEvent.from_message(body).data["realm_id"], FlowEvent.from_message(body).data["id"])
            for queue, body, _ in publisher.published] == [  # one batch per queue, in the delivery's order
        (STOCK_QUEUE, REALM, "7"), (STOCK_QUEUE, OTHER_REALM, "21"), (STOCK_QUEUE, OTHER_REALM, "8"),
        (AUDIT_QUEUE, REALM, "7"), (AUDIT_QUEUE, OTHER_REALM, "8")]
    assert [json.loads(body)["event_id"] for _, body, _ in publisher.published] == [
        accepted.event_ids[0], accepted.event_ids[1], accepted.event_ids[2], accepted.event_ids[0],
        accepted.event_ids[2]]
    assert len(set(accepted.event_ids)) == 3
    body = accepted.body()
    assert body["event_ids"] == list(accepted.event_ids)
    assert body["event_types"] == ["item.updated", "item.created", "item.updated"]
    assert body["ignored"] == 0


def test_accept_legacy_redelivery_same_event_ids(publisher: FakePublisher) -> None:
    request = delivery("legacy", change("Item", "7"), change("Item", "8", realm=OTHER_REALM))

    first = ingest(publisher).accept(request)
    again = ingest(publisher).accept(request)

    assert again.event_ids == first.event_ids
    assert len(publisher.published) == 4  # queued twice: the flow's idempotency drops the copies


@pytest.mark.parametrize(("document", "field"), [
    pytest.param(_legacy(id=_DELETE), f"{ENTITY}.id", id="legacy"),
    pytest.param(_cloud(intuitaccountid="realm-1"), "[1].intuitaccountid", id="cloudevents"),
    pytest.param({"type": "item.updated", "timestamp": "2026-11-20T09:15:00Z", "data": {}}, "eventNotifications",
                 id="envelope-instead"),
])
def test_accept_malformed_notification_422_names_field_nothing_queued(
    document: Any, field: str, publisher: FakePublisher
) -> None:
    with pytest.raises(SchemaError) as caught:
        ingest(publisher).accept(signed(encode(document)))

    assert caught.value.status_code == 422
    assert caught.value.fields[0]["field"] == field
    assert publisher.published == []


def test_accept_malformed_unrouted_change_rejects_the_whole_delivery(publisher: FakePublisher) -> None:
    payload = legacy_payload([change("Item", "7"), change("Customer", "58")])
    del payload["eventNotifications"][0]["dataChangeEvent"]["entities"][1]["lastUpdated"]

    with pytest.raises(SchemaError) as caught:
        ingest(publisher).accept(signed(encode(payload)))

    assert caught.value.fields[0]["field"] == f"{ENTITY}.lastUpdated"
    assert publisher.published == []


def test_accept_routed_type_without_a_model_422_names_sender_field(publisher: FakePublisher) -> None:
    # a catalog routing an item operation that has no event model: the sender's field is named
    routes = {"quickbooks": {**ROUTES["quickbooks"], "item.merged": {"quickbooks-audit": AUDIT_QUEUE}}}

    with pytest.raises(SchemaError) as caught:
        ingest(publisher, routes=routes).accept(delivery("legacy", change("Item", "7"), change("Item", "8", "Merge")))

    assert caught.value.fields[0]["field"] == f"{ENTITY}.name"
    assert publisher.published == []  # the valid first change was not queued either


def test_accept_bad_signature_rejected_before_parsing(publisher: FakePublisher) -> None:
    request = WebhookRequest(source="quickbooks", headers={"intuit-signature": intuit_signature("wrong", b"x")},
                             body=b"not json")

    with pytest.raises(SignatureError):
        ingest(publisher).accept(request)
    assert publisher.published == []


def test_accept_rotation_old_and_new_verifier_tokens_accepted(publisher: FakePublisher) -> None:
    service = ingest(publisher, tokens=(VERIFIER, NEW_VERIFIER))

    service.accept(delivery("legacy", change(), token=VERIFIER))
    service.accept(delivery("cloudevents", change(), token=NEW_VERIFIER))

    assert len(publisher.published) == 2


def test_accept_queue_failure_enqueue_error() -> None:
    with pytest.raises(EnqueueError, match="quickbooks-stock-to-nopcommerce"):
        ingest(FakePublisher(fail_on=STOCK_QUEUE)).accept(delivery("cloudevents", change(event_id="ce-9")))


# --- the QBO sandbox's real outbound webhooks ---------------------------------------------------------


class Receiver:
    """The webhook endpoint, in process: every request the sandbox posts goes through ingest."""

    def __init__(self, service: IngestService) -> None:
        self.service = service
        self.requests: list[httpx.Request] = []
        self.accepted: list[Accepted] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self.requests.append(request)
            try:
                accepted = self.service.accept(WebhookRequest(source="quickbooks", headers=headers, body=body))
            except (SignatureError, SchemaError) as exc:
                return httpx.Response(exc.status_code, json=exc.body())
            self.accepted.append(accepted)
        return httpx.Response(accepted.status, json=accepted.body())


@pytest.mark.parametrize("webhook_format", ["legacy", "cloudevents"])
def test_sandbox_outbound_webhooks_accepted_and_queued(webhook_format: str, publisher: FakePublisher) -> None:
    receiver = Receiver(ingest(publisher))
    qbo = QuickBooksSandbox(verifier_token=VERIFIER, webhook_url="https://switchyard.test/webhooks/quickbooks",
                            webhook_format=webhook_format, webhook_transport=httpx.MockTransport(receiver),
                            webhook_retry_delays=())
    tokens = qbo.connect_realm(REALM)
    item = qbo.seed_item(REALM, "Trail shoes", "SHOE-42", qty_on_hand=12, unit_price=119.0)  # no webhook
    created = qbo.seed_item(REALM, "Rain jacket", "JKT-1", qty_on_hand=5, unit_price=89.0, notify=True)
    api = httpx.Client(transport=httpx.WSGITransport(app=qbo.wsgi_app), base_url="http://qbo.test",
                       headers={"Authorization": f"Bearer {tokens['access_token']}"})
    with api:
        response = api.post(f"/v3/company/{REALM}/customer?minorversion=75", json={"DisplayName": "Acme"})
    assert response.status_code == 200  # Customer Create: notified, not routed
    qbo.set_item_quantity(REALM, item["Id"], 3)
    assert qbo.wait_for_webhooks()

    assert [d["outcome"] for d in qbo.webhook_deliveries] == ["delivered"] * len(receiver.requests)
    assert all(r.headers["intuit-signature"] for r in receiver.requests)
    queued = [FlowEvent.from_message(body) for _, body, _ in publisher.published]
    assert [(e.type, e.data["entity"], e.data["id"], e.data["operation"], e.data["realm_id"]) for e in queued] == [
        ("item.created", "Item", created["Id"], "Create", REALM), ("item.updated", "Item", item["Id"], "Update", REALM)]
    assert sum(a.ignored or 0 for a in receiver.accepted) == 1
    assert all(a.status == 200 for a in receiver.accepted)
    sent = {e.entity_id: e for e in qbo.webhook_events if e.name == "Item"}
    for event in queued:
        assert event.data["last_updated"] == sent[event.data["id"]].last_updated
        if webhook_format == "cloudevents":
            assert event.event_id == sent[event.data["id"]].event_id
        else:
            assert event.event_id.startswith("qbo-")


@pytest.mark.parametrize("webhook_format", ["legacy", "cloudevents"])
def test_sandbox_outbound_webhook_other_verifier_token_rejected(webhook_format: str,
                                                                publisher: FakePublisher) -> None:
    receiver = Receiver(ingest(publisher, tokens=(NEW_VERIFIER,)))
    qbo = QuickBooksSandbox(verifier_token=VERIFIER, webhook_url="https://switchyard.test/webhooks/quickbooks",
                            webhook_format=webhook_format, webhook_transport=httpx.MockTransport(receiver),
                            webhook_retry_delays=())
    qbo.connect_realm(REALM)
    item = qbo.seed_item(REALM, "Trail shoes", "SHOE-42", qty_on_hand=12, unit_price=119.0)
    qbo.set_item_quantity(REALM, item["Id"], 3)
    assert qbo.wait_for_webhooks()

    (delivered,) = qbo.webhook_deliveries
    assert (delivered["outcome"], delivered["status_code"]) == ("failed", 401)
    assert publisher.published == []


# --- wiring: compose and OpenAPI ----------------------------------------------------


class FakeAws:
    """Secrets Manager and SQS as build_ingest uses them."""

    def __init__(self, verifier_tokens: list[str]) -> None:
        self.secret = {"verifier_tokens": verifier_tokens}
        self.sent: list[dict[str, Any]] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # boto3 spells it SecretId
        return {"SecretString": json.dumps(self.secret)}

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {"Successful": [{"Id": entry["Id"]} for entry in kwargs["Entries"]], "Failed": []}


def test_build_ingest_intuit_signature_from_verifier_tokens_rotation_picked_up(monkeypatch) -> None:
    from switchyard import compose
    from switchyard.aws.secrets import SecretReader
    from switchyard.settings import IngestSettings, SourceSettings

    aws = FakeAws([VERIFIER])
    monkeypatch.setattr(compose.clients, "client", lambda _service: aws)
    monkeypatch.setattr(compose, "SecretReader", lambda client: SecretReader(client, ttl_seconds=0))
    settings = IngestSettings(
        stage="test", max_body_bytes=256 * 1024, routes=ROUTES,
        sources={"quickbooks": SourceSettings(secret_arn="arn:qbo", signature="intuit-signature", format="intuit",
                                              ack_status=200)})
    service = compose.build_ingest(settings)

    assert service.accept(delivery("legacy", change(), token=VERIFIER)).status == 200
    assert [m["QueueUrl"] for m in aws.sent] == [STOCK_QUEUE]

    aws.secret = {"verifier_tokens": [NEW_VERIFIER]}  # rotated: the old token stops working
    with pytest.raises(SignatureError):
        service.accept(delivery("legacy", change(), token=VERIFIER))
    assert service.accept(delivery("cloudevents", change(), token=NEW_VERIFIER)).status == 200


def test_openapi_quickbooks_endpoint_takes_the_qbo_notification_not_the_envelope(monkeypatch) -> None:
    from openapi_spec_validator import validate
    from switchyard import catalog as catalog_module
    from switchyard_local import openapi

    catalog = load_catalog()
    quickbooks = SourceConfig(description="QuickBooks Online webhooks", signature="intuit-signature",
                              format="intuit", ack_status=200, events=("item.created", "item.updated"))
    with_qbo = catalog.model_copy(update={"sources": {**catalog.sources, "quickbooks": quickbooks}})
    monkeypatch.setattr(catalog_module, "load_catalog", lambda: with_qbo)

    document = openapi.document()

    validate(document)
    operation = document["paths"]["/webhooks/quickbooks"]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["intuit-signature"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0] == {"$ref": "#/components/schemas/QuickBooksLegacyNotification"}
    assert body["oneOf"][1]["items"] == {"$ref": "#/components/schemas/QuickBooksCloudEvent"}
    assert "200" in operation["responses"] and "202" not in operation["responses"]
    assert "QuickbooksEvent" in document["components"]["schemas"]  # the queued events, documented too


@pytest.mark.parametrize("junk", ["!", "*", "-", "_"], ids=["bang", "star", "dash", "underscore"])
def test_intuit_signature_correct_hmac_with_a_non_base64_character_rejected(junk: str) -> None:
    # a lenient decoder would drop the stray character and find the genuine HMAC
    genuine = intuit_signature(VERIFIER, BODY)
    presented = genuine[:8] + junk + genuine[8:]

    with pytest.raises(SignatureError, match="not base64"):
        IntuitSignatureAuthenticator([VERIFIER]).authenticate(
            WebhookRequest(source="quickbooks", headers={"intuit-signature": presented}, body=BODY))
