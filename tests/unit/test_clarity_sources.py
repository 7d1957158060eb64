"""Clarity eCommerce webhook envelopes: the pydantic models and the generated edge validators agree."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from switchyard.envelopes import validate_envelope
from switchyard.errors import SchemaError
from switchyard.sources import parse_event
from switchyard.systems.clarity.source import (
    ClarityOrderChange,
    CustomerCreated,
    CustomerUpdated,
    InventoryChanged,
    OrderCreated,
    OrderStatusChanged,
    ProductUpdated,
)

CLARITY_SAMPLES = {
    "clarity_order_b2b": ("order.created", OrderCreated),
    "clarity_order_consumer": ("order.created", OrderCreated),
    "clarity_status_shipped": ("order.status_changed", OrderStatusChanged),
    "clarity_customer_updated": ("customer.updated", CustomerUpdated),
    "clarity_customer_created": ("customer.created", CustomerCreated),
    "clarity_product_updated": ("product.updated", ProductUpdated),
    "clarity_inventory_changed": ("inventory.changed", InventoryChanged),
}

Load = Callable[..., dict[str, Any]]


def both_reject(document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The fields named by parse_event and by validate_envelope for an invalid document."""
    with pytest.raises(SchemaError) as parsed:
        parse_event("clarity", document)
    with pytest.raises(SchemaError) as validated:
        validate_envelope("clarity", document)
    return ([p["field"] for p in parsed.value.fields], [p["field"] for p in validated.value.fields])


@pytest.mark.parametrize("name", sorted(CLARITY_SAMPLES))
def test_parse_event_clarity_sample_valid(sample: Load, name: str) -> None:
    event_type, model = CLARITY_SAMPLES[name]

    parsed = parse_event("clarity", sample(name))

    assert parsed.type == event_type
    assert isinstance(parsed.model, model)
    assert parsed.timestamp.tzinfo is not None


@pytest.mark.parametrize("name", sorted(CLARITY_SAMPLES))
def test_validate_envelope_clarity_sample_valid(sample: Load, name: str) -> None:
    assert validate_envelope("clarity", sample(name)) == CLARITY_SAMPLES[name][0]


def test_parse_event_clarity_order_money_exact_and_extras_kept(sample: Load) -> None:
    document = sample("clarity_order_consumer", decimals=True)

    order = parse_event("clarity", document).model.data

    assert order.totalAmount == Decimal("240.50")  # given as a string in the sample
    assert order.lineItems[0].unitPrice == Decimal("240.50")
    assert order.model_extra == {"updatedAt": "2026-11-21T15:30:00Z", "version": 1}
    assert order.orderDate == datetime(2026, 11, 21, 15, 29, 41, tzinfo=UTC)


def test_parse_event_clarity_status_changed_previous_status(sample: Load) -> None:
    change = parse_event("clarity", sample("clarity_status_shipped")).model.data

    assert isinstance(change, ClarityOrderChange)
    assert (change.previousStatus, change.status) == ("pending", "shipped")


def test_parse_event_clarity_customer_nulls_allowed(sample: Load) -> None:
    document = sample("clarity_customer_updated")
    document["data"].update(phone=None, company=None, firstName="", lastName="")

    assert parse_event("clarity", document).model.data.phone is None
    assert validate_envelope("clarity", document) == "customer.updated"


@pytest.mark.parametrize("masked", ["************4242", "**** **** **** 4242", "xxxx-xxxx-xxxx-4242", "4242", None])
def test_clarity_masked_card_accepted(sample: Load, masked: str | None) -> None:
    document = sample("clarity_order_b2b")
    document["data"]["paymentInfo"]["maskedCard"] = masked

    assert parse_event("clarity", document).type == "order.created"
    assert validate_envelope("clarity", document) == "order.created"


@pytest.mark.parametrize("card", ["4242424242424242", "4242 4242 4242 4242", "************42424", "42424242****4242"])
def test_clarity_full_card_number_in_masked_card_rejected(sample: Load, card: str) -> None:
    document = sample("clarity_order_b2b")
    document["data"]["paymentInfo"]["maskedCard"] = card

    parsed, validated = both_reject(document)

    assert parsed == ["data.paymentInfo.maskedCard"]
    # the generated validator reports a failed `anyOf` (paymentInfo may be null) at the optional object
    (field,) = validated
    assert "data.paymentInfo.maskedCard".startswith(field) and field.startswith("data.paymentInfo")


@pytest.mark.parametrize("name", ["clarity_order_b2b", "clarity_status_shipped"])
@pytest.mark.parametrize("status", ["Shipped", "on_hold", "", 3, None])
def test_clarity_bad_order_status_rejected_naming_data_status(sample: Load, name: str, status: Any) -> None:
    document = sample(name)
    document["data"]["status"] = status

    parsed, validated = both_reject(document)

    assert parsed == validated == ["data.status"]


def test_clarity_bad_previous_status_rejected(sample: Load) -> None:
    document = sample("clarity_status_shipped")
    document["data"]["previousStatus"] = "lost"

    parsed, validated = both_reject(document)

    assert parsed == validated == ["data.previousStatus"]


@pytest.mark.parametrize(("path", "value", "field"), [
    (("data", "currency"), "usd", "data.currency"),
    (("data", "totalAmount"), -1, "data.totalAmount"),
    (("data", "lineItems"), [], "data.lineItems"),
    (("data", "customer", "email"), "jane-at-acme", "data.customer.email"),
    (("data", "orderDate"), "21/11/2026", "data.orderDate"),
])
def test_clarity_order_invalid_field_rejected_by_both(sample: Load, path: tuple[str, ...], value: Any,
                                                      field: str) -> None:
    document = sample("clarity_order_b2b")
    holder = document
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value

    parsed, validated = both_reject(document)

    assert parsed == validated == [field]


def test_clarity_order_missing_customer_rejected_by_both(sample: Load) -> None:
    document = sample("clarity_order_b2b")
    del document["data"]["customer"]

    parsed, validated = both_reject(document)

    assert parsed == validated == ["data.customer"]


def test_clarity_unknown_event_type_rejected_naming_type(sample: Load) -> None:
    document = sample("clarity_order_b2b")
    document["type"] = "order.deleted"

    parsed, validated = both_reject(document)

    assert parsed == validated == ["type"]


@pytest.mark.parametrize(("name", "path", "value"), [
    ("clarity_product_updated", ("price",), -1),
    ("clarity_product_updated", ("active",), "yes"),
    ("clarity_product_updated", ("sku",), ""),
    ("clarity_inventory_changed", ("quantityOnHand",), 1.5),
    ("clarity_inventory_changed", ("quantityOnHand",), 10**12),
    ("clarity_customer_created", ("email",), "no-at-sign"),
])
def test_clarity_catalog_events_invalid_field_rejected_by_both(sample: Load, name: str, path: tuple[str, ...],
                                                               value: Any) -> None:
    document = sample(name)
    document["data"][path[-1]] = value

    parsed, validated = both_reject(document)

    assert parsed == validated == [".".join(("data", *path))]


def test_clarity_oversold_stock_is_a_negative_quantity(sample: Load) -> None:
    document = sample("clarity_inventory_changed")
    document["data"]["quantityOnHand"] = -3
    assert parse_event("clarity", document).model.data.quantityOnHand == -3
    assert validate_envelope("clarity", document) == "inventory.changed"
