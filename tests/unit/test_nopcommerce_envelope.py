"""The nopCommerce envelope: samples parse, and schema errors name the offending field paths.

Two validators must agree: the pydantic models (``parse_event``, the one definition) and the
validators generated from them that the ingest Lambda runs (``validate_envelope``).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from switchyard.envelopes import validate_envelope
from switchyard.errors import SchemaError
from switchyard.sources import envelope_json_schema, parse_event, supported_sources
from switchyard.systems.nopcommerce.source import OrderPlaced, OrderStatusChanged, ProductUpdated

from tests.conftest import sample_names

Sample = Callable[..., dict[str, Any]]


VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "models": lambda document: parse_event("nopcommerce", document),
    "generated": lambda document: validate_envelope("nopcommerce", document),
}


@pytest.fixture(params=sorted(VALIDATORS))
def validate(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    return VALIDATORS[request.param]


def fields_of(error: SchemaError) -> dict[str, str]:
    """Offending field paths (list indexes written ``.0``, whichever notation the validator uses)."""
    return {f["field"].replace("[", ".").replace("]", ""): f["message"] for f in error.fields}


@pytest.mark.parametrize("name", [n for n in sample_names() if n.startswith("nop_")])
def test_validate_envelope_sample_accepted_with_its_type(sample: Sample, name: str) -> None:
    document = sample(name)

    assert validate_envelope("nopcommerce", document) == document["type"]


@pytest.mark.parametrize("name", [n for n in sample_names() if n.startswith("nop_")])
def test_parse_event_sample_parses_into_typed_model(sample: Sample, name: str) -> None:
    document = sample(name)

    event = parse_event("nopcommerce", document)

    assert event.type == document["type"]
    assert event.timestamp.tzinfo is not None
    expected_model = {"order.placed": OrderPlaced, "product.updated": ProductUpdated}.get(document["type"],
                                                                                          OrderStatusChanged)
    assert isinstance(event.model, expected_model)


def test_parse_event_order_placed_keeps_money_exact_and_extra_fields(sample: Sample) -> None:
    event = parse_event("nopcommerce", sample("nop_order_b2b", decimals=True))

    order = event.model.data.Order
    assert order.OrderTotal == Decimal("1299.00")
    assert order.MaskedCreditCardNumber == "************4242"  # unknown nopCommerce fields are kept
    assert event.model.data.OrderItems[1].Product.Sku == "ARM-MON-02"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["data"]["Order"].__setitem__("OrderTotal", "lots"), "data.Order.OrderTotal"),
        (lambda d: d["data"]["Order"].__setitem__("OrderTotal", -1), "data.Order.OrderTotal"),
        (lambda d: d["data"]["Order"].__setitem__("OrderStatusId", 99), "data.Order.OrderStatusId"),
        (lambda d: d["data"]["Order"].__setitem__("CustomerCurrencyCode", "usd"),
         "data.Order.CustomerCurrencyCode"),
        (lambda d: d["data"]["Order"].pop("OrderGuid"), "data.Order.OrderGuid"),
        (lambda d: d["data"]["Order"].__setitem__("OrderGuid", "not-a-uuid"), "data.Order.OrderGuid"),
        (lambda d: d["data"]["Order"].__setitem__("CreatedOnUtc", "20 Nov 2026"), "data.Order.CreatedOnUtc"),
        (lambda d: d["data"]["Customer"].pop("Email"), "data.Customer.Email"),
        (lambda d: d["data"]["Customer"].__setitem__("Email", "not-an-address"), "data.Customer.Email"),
        (lambda d: d["data"]["OrderItems"][0].__setitem__("Quantity", 0), "data.OrderItems.0.Quantity"),
        (lambda d: d["data"].__setitem__("OrderItems", []), "data.OrderItems"),
        (lambda d: d["data"].pop("BillingAddress"), "data.BillingAddress"),
        (lambda d: d.__setitem__("timestamp", "yesterday"), "timestamp"),
        (lambda d: d.pop("data"), "data"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_envelope_invalid_order_placed_names_field_path(validate, sample: Sample, change, field: str) -> None:
    document = sample("nop_order_b2b")
    change(document)

    with pytest.raises(SchemaError) as raised:
        validate(document)

    assert field in fields_of(raised.value)
    assert raised.value.status_code == 422
    assert raised.value.body()["fields"] == raised.value.fields


def test_parse_event_several_problems_all_reported(sample: Sample) -> None:
    document = sample("nop_order_b2b")
    document["data"]["Order"]["OrderTotal"] = "lots"
    del document["data"]["Customer"]["Email"]

    with pytest.raises(SchemaError) as raised:
        parse_event("nopcommerce", document)

    assert set(fields_of(raised.value)) == {"data.Order.OrderTotal", "data.Customer.Email"}


def test_envelope_invalid_status_change_names_field_path(validate, sample: Sample) -> None:
    document = sample("nop_status_processing")
    document["data"]["Order"]["PaymentStatusId"] = 11

    with pytest.raises(SchemaError) as raised:
        validate(document)

    assert list(fields_of(raised.value)) == ["data.Order.PaymentStatusId"]


@pytest.mark.parametrize("event_type", ["order.deleted", "", 42])
def test_envelope_unknown_type_names_type(validate, sample: Sample, event_type: Any) -> None:
    document = {**sample("nop_order_b2b"), "type": event_type}

    with pytest.raises(SchemaError) as raised:
        validate(document)

    assert list(fields_of(raised.value)) == ["type"]


def test_envelope_missing_type_names_type(validate, sample: Sample) -> None:
    document = sample("nop_order_b2b")
    del document["type"]

    with pytest.raises(SchemaError) as raised:
        validate(document)

    assert list(fields_of(raised.value)) == ["type"]


@pytest.mark.parametrize("document", [[1, 2], "order", 42, None, True])
def test_envelope_non_object_body_raises_schema_error_at_root(validate, document: Any) -> None:
    with pytest.raises(SchemaError) as raised:
        validate(document)

    assert list(fields_of(raised.value)) == ["$"]


def test_supported_sources_lists_nopcommerce_with_a_schema() -> None:
    assert "nopcommerce" in supported_sources()
    schema = envelope_json_schema("nopcommerce")
    assert "order.placed" in str(schema) and "order.status_changed" in str(schema)
