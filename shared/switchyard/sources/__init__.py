"""Typed webhook envelopes per source (pydantic models: the one definition of each event).

``parse_event`` validates into those models. The ingest Lambda uses ``switchyard.envelopes``
instead: validators generated from these models, without pydantic's cold-start cost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from switchyard.errors import SchemaError
from switchyard.systems.clarity import source as clarity
from switchyard.systems.nopcommerce import source as nopcommerce
from switchyard.systems.quickbooks import source as quickbooks
from switchyard.systems.salesforce import source as salesforce
from switchyard.systems.streak import source as streak

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "nopcommerce": TypeAdapter(nopcommerce.NopCommerceEvent),
    "clarity": TypeAdapter(clarity.ClarityEvent),
    "streak": TypeAdapter(streak.StreakEvent),
    "quickbooks": TypeAdapter(quickbooks.QuickBooksEvent),
    "salesforce": TypeAdapter(salesforce.SalesforceEvent),
}
# source -> event type -> model: what `make generate` compiles into switchyard.validators
EVENT_MODELS: dict[str, dict[str, type]] = {
    "nopcommerce": {"order.placed": nopcommerce.OrderPlaced, "order.status_changed": nopcommerce.OrderStatusChanged,
                    "order.paid": nopcommerce.OrderPaid},
    "clarity": {"order.created": clarity.OrderCreated, "order.status_changed": clarity.OrderStatusChanged,
                "customer.updated": clarity.CustomerUpdated, "customer.created": clarity.CustomerCreated,
                "product.created": clarity.ProductCreated, "product.updated": clarity.ProductUpdated,
                "inventory.changed": clarity.InventoryChanged},
    "streak": {"BOX_CHANGE_STAGE": streak.BoxChangeStage, "CONTACT_UPDATE": streak.ContactUpdate},
    "quickbooks": {"item.created": quickbooks.ItemCreated, "item.updated": quickbooks.ItemUpdated,
                   "item.deleted": quickbooks.ItemDeleted},
    "salesforce": {"ContactChangeEvent": salesforce.ContactChangeEvent,
                   "AccountChangeEvent": salesforce.AccountChangeEvent},
}


class ParsedEvent(NamedTuple):
    type: str
    timestamp: datetime
    model: Any


def supported_sources() -> frozenset[str]:
    return frozenset(_ADAPTERS)


def envelope_json_schema(source: str, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    return _ADAPTERS[source].json_schema(ref_template=ref_template)


def _field_error(error: Any) -> dict[str, str]:
    loc = list(error["loc"])
    if error["type"].startswith("union_tag"):
        loc = ["type"]
    elif loc and isinstance(loc[0], str) and "." in loc[0]:
        loc = loc[1:]  # pydantic puts the matched event type first; the client wants the field path
    return {"field": ".".join(str(part) for part in loc) or "$", "message": error["msg"]}


def parse_event(source: str, document: Any) -> ParsedEvent:
    """Validate a decoded webhook body; SchemaError names every offending field."""
    try:
        event = _ADAPTERS[source].validate_python(document)
    except ValidationError as exc:
        fields = [_field_error(error) for error in exc.errors(include_url=False)]
        raise SchemaError("the event does not match the source's schema", fields=fields) from None
    return ParsedEvent(type=event.type, timestamp=event.timestamp, model=event)
