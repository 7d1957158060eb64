"""QuickBooks Online webhook deliveries, split into entity changes (no pydantic: on the ingest cold-start path).

QBO posts thin notifications (ids only, no entity data) in one of two shapes, both signed with
``intuit-signature`` (``IntuitSignatureAuthenticator`` below):

- legacy: ``{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [{"name", "id",
  "operation", "lastUpdated", "deletedId"?}]}}]}``, several realms and entities per delivery;
- CloudEvents (the announced replacement): a JSON array of ``{"specversion", "id", "type":
  "qbo.<entity>.<verb>.v1", "time", "intuitentityid", "intuitaccountid", "data"}``.

Either becomes one ``EntityChange`` per changed entity: event type ``<entity>.<verb>``
(``item.updated``), the change time (UTC), data ``{"realm_id", "entity", "id", "operation",
"last_updated", "deleted_id"?}`` in the same form for both shapes, and an id that is stable across
QBO's redeliveries (the CloudEvents ``id``; for legacy, which has none, a hash of the change).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from switchyard.envelopes import validate_envelope
from switchyard.errors import SchemaError, SignatureError

if TYPE_CHECKING:
    from switchyard.ingest import SplitEvent
    from switchyard.registry import Delivery

# QBO operation -> the verb of the event type (CloudEvents spells them this way too)
VERBS = {"Create": "created", "Update": "updated", "Delete": "deleted", "Merge": "merged", "Void": "voided",
         "Emailed": "emailed"}
OPERATIONS = {verb: operation for operation, verb in VERBS.items()}
# CloudEvents types carry the entity in lower case; the legacy payload (and the API) capitalise it
ENTITY_NAMES = {name.lower(): name for name in (
    "Account", "Attachable", "Bill", "BillPayment", "Budget", "Class", "CompanyCurrency", "CreditMemo",
    "Currency", "Customer", "Department", "Deposit", "Employee", "Estimate", "Invoice", "Item", "JournalCode",
    "JournalEntry", "Payment", "PaymentMethod", "Preferences", "Purchase", "PurchaseOrder", "RefundReceipt",
    "SalesReceipt", "TaxAgency", "Term", "TimeActivity", "Transfer", "Vendor", "VendorCredit",
)}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_DIGITS = re.compile(r"^[0-9]+$")
_CLOUDEVENT_TYPE = re.compile(r"^qbo\.([A-Za-z][A-Za-z0-9]*)\.([a-z]+)\.v1$")


@dataclass(frozen=True)
class EntityChange:
    event_id: str
    event_type: str  # "item.updated"
    timestamp: str  # the change time, ISO 8601 UTC: "2025-01-01T10:00:00.000Z"
    data: dict[str, Any]
    # data key (or "type") -> where the sender wrote it, so a schema error names the sender's field
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def envelope(self) -> dict[str, Any]:
        """The event as Switchyard queues and validates it: ``{"type", "timestamp", "data"}``."""
        return {"type": self.event_type, "timestamp": self.timestamp, "data": self.data}

    def origin(self, envelope_field: str) -> str:
        """The sender's path of an envelope field (``data.id`` -> ``[0].intuitentityid``)."""
        if envelope_field.startswith("data."):
            key = envelope_field.removeprefix("data.").split(".", 1)[0]
        else:
            key = "last_updated" if envelope_field == "timestamp" else "type"
        return self.origins.get(key, self.origins["type"])


def parse_notification(document: Any) -> list[EntityChange]:
    """Split a decoded QBO notification of either shape into entity changes, in the order sent.

    SchemaError names the offending field as a path into the body
    (``eventNotifications[0].dataChangeEvent.entities[1].id``, ``[2].intuitaccountid``).
    """
    if isinstance(document, dict):
        return _legacy(document)
    if isinstance(document, list):
        return _cloudevents(document)
    raise _problem("$", "expected an eventNotifications object or a CloudEvents array")


def _legacy(document: dict[str, Any]) -> list[EntityChange]:
    notifications = document.get("eventNotifications")
    if not isinstance(notifications, list) or not notifications:
        raise _problem("eventNotifications", "expected a non-empty array")
    changes = []
    for n, notification in enumerate(notifications):
        at = f"eventNotifications[{n}]"
        _require_object(notification, at)
        realm_id = _string(notification, "realmId", at, _DIGITS, "a realm id (digits)")
        event = notification.get("dataChangeEvent")
        _require_object(event, f"{at}.dataChangeEvent")
        entities = event.get("entities")
        if not isinstance(entities, list):  # an empty list is a (useless) notification, not an error
            raise _problem(f"{at}.dataChangeEvent.entities", "expected an array")
        for e, entity in enumerate(entities):
            path = f"{at}.dataChangeEvent.entities[{e}]"
            _require_object(entity, path)
            name = _string(entity, "name", path, _NAME, "an entity name")
            entity_id = _string(entity, "id", path)
            operation = _string(entity, "operation", path, _NAME, "an operation (Create, Update, ...)")
            last_updated = _utc(entity, "lastUpdated", path)
            data: dict[str, Any] = {"realm_id": realm_id, "entity": name, "id": entity_id, "operation": operation,
                                    "last_updated": last_updated}
            origins = {"realm_id": f"{at}.realmId", "entity": f"{path}.name", "id": f"{path}.id",
                       "operation": f"{path}.operation", "last_updated": f"{path}.lastUpdated",
                       "type": f"{path}.name"}
            if entity.get("deletedId") is not None:  # merges: the id that was merged away
                data["deleted_id"] = _string(entity, "deletedId", path)
                origins["deleted_id"] = f"{path}.deletedId"
            # no id in the legacy shape: derive one from the change itself, so a redelivery dedupes
            seed = f"{realm_id}|{name}|{entity_id}|{operation}|{last_updated}"
            changes.append(EntityChange("qbo-" + hashlib.sha256(seed.encode()).hexdigest()[:32],
                                        _event_type(name, operation), last_updated, data, origins))
    return changes


def _cloudevents(events: list[Any]) -> list[EntityChange]:
    if not events:
        raise _problem("$", "expected a non-empty array of CloudEvents")
    changes = []
    for index, event in enumerate(events):
        at = f"[{index}]"
        _require_object(event, at)
        _string(event, "specversion", at)
        event_id = _string(event, "id", at)
        kind = _string(event, "type", at)
        match = _CLOUDEVENT_TYPE.match(kind)
        if match is None:
            raise _problem(f"{at}.type", f"expected qbo.<entity>.<verb>.v1, got {kind[:100]!r}")
        entity, verb = match.group(1).lower(), match.group(2)
        last_updated = _utc(event, "time", at)
        data = {"realm_id": _string(event, "intuitaccountid", at, _DIGITS, "a realm id (digits)"),
                "entity": ENTITY_NAMES.get(entity, entity.capitalize()),
                "id": _string(event, "intuitentityid", at),
                "operation": OPERATIONS.get(verb, verb.capitalize()),
                "last_updated": last_updated}
        origins = {"realm_id": f"{at}.intuitaccountid", "entity": f"{at}.type", "id": f"{at}.intuitentityid",
                   "operation": f"{at}.type", "last_updated": f"{at}.time", "type": f"{at}.type"}
        changes.append(EntityChange(event_id, f"{entity}.{verb}", last_updated, data, origins))
    return changes


def _event_type(name: str, operation: str) -> str:
    # an operation QBO adds later still gets a type (and is ignored unless a flow subscribes to it)
    return f"{name.lower()}.{VERBS.get(operation, operation.lower())}"


def _problem(path: str, message: str) -> SchemaError:
    return SchemaError("the notification does not match QuickBooks' webhook format",
                       fields=[{"field": path, "message": message}])


def _require_object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _problem(path, "expected an object")


def _string(container: dict[str, Any], key: str, at: str, pattern: re.Pattern[str] | None = None,
            what: str = "") -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise _problem(f"{at}.{key}", "expected a non-empty string" if key in container else "Field required")
    if pattern is not None and not pattern.match(value):
        raise _problem(f"{at}.{key}", f"expected {what}, got {value[:100]!r}")
    return value


def _utc(container: dict[str, Any], key: str, at: str) -> str:
    """An ISO 8601 date-time as UTC with milliseconds (QBO's own form); a time without offset is UTC."""
    text = _string(container, key, at)
    try:
        parsed = datetime.fromisoformat(text) if "T" in text else None
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        utc = parsed.astimezone(UTC) if parsed is not None else None
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before the first datetime in UTC
        utc = None
    if utc is None:
        raise _problem(f"{at}.{key}", f"expected an ISO 8601 date-time, got {text[:100]!r}")
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_notification(delivery: Delivery) -> tuple[list[SplitEvent], int]:
    """Format ``intuit``: the routed changes of a notification as events, and how many were not routed.

    QBO notifies every entity the app subscribed to (for every connected realm); a change of a type
    the source does not route is acknowledged and dropped, so QBO does not retry it.
    """
    from switchyard.ingest import SplitEvent, check_delivery_size

    changes = parse_notification(delivery.document)
    check_delivery_size(len(changes))
    routed = [change for change in changes if change.event_type in delivery.routes]
    events = []
    for change in routed:
        envelope = change.envelope()
        try:
            validate_envelope(delivery.source, envelope)
        except SchemaError as exc:
            for problem in exc.fields:  # name the field as QBO wrote it
                problem["field"] = change.origin(problem["field"])
            raise
        events.append(SplitEvent(change.event_id, change.timestamp, json.dumps(envelope, separators=(",", ":")),
                                 change.event_type))
    return events, len(changes) - len(routed)


INTUIT_SIGNATURE_HEADER = "intuit-signature"


def _intuit_digest(verifier_token: bytes, body: bytes) -> bytes:
    return hmac.new(verifier_token, body, hashlib.sha256).digest()


def intuit_sign(verifier_token: str, body: bytes) -> dict[str, str]:
    """Headers QuickBooks Online would send (used by the demo, tests and the CLI)."""
    return {INTUIT_SIGNATURE_HEADER: base64.b64encode(_intuit_digest(verifier_token.encode(), body)).decode()}


class IntuitSignatureAuthenticator:
    """QuickBooks Online: ``intuit-signature`` = base64(HMAC-SHA256(key=the app's verifier token,
    msg=the raw body)). No timestamp and no delivery id: replays are absorbed by the event ids the
    parser derives (``parse_notification``). Several verifier tokens may be valid at once during a rotation."""

    def __init__(self, verifier_tokens: Sequence[str]) -> None:
        self._tokens = [token.encode() for token in verifier_tokens if token]

    def authenticate(self, request: object) -> None:
        presented = (request.headers.get(INTUIT_SIGNATURE_HEADER) or "").strip()  # type: ignore[attr-defined]
        if not presented:
            raise SignatureError(f"missing {INTUIT_SIGNATURE_HEADER} header")
        if not self._tokens:
            raise SignatureError("no verifier token is configured for this source")
        try:
            offered = base64.b64decode(presented, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError(f"{INTUIT_SIGNATURE_HEADER} is not base64") from None
        body: bytes = request.body  # type: ignore[attr-defined]
        matched = False
        for token in self._tokens:  # no early exit: the time taken does not tell which token matched
            matched |= hmac.compare_digest(_intuit_digest(token, body), offered)
        if not matched:
            raise SignatureError("the signature does not match a current verifier token")
        return None
