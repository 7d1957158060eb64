"""The nopCommerce → BNG mapping document, one golden test per rule (config/mappings/nopcommerce-to-bng.yaml)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from switchyard.errors import MappingError, PermanentError
from switchyard.pairs.nopcommerce_bng.mapping import load_bng_mapping, order_items_for, parse_mapping, postal_code

from tests.conftest import SAMPLES_DIR

MAPPING = load_bng_mapping()


def data(name: str = "nop_order_b2b") -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text(), parse_float=Decimal)["data"]


def item(item_id: int, sku: str, quantity: int, price: str, name: str = "Thing") -> dict[str, Any]:
    return {"Id": item_id, "ProductId": item_id, "Quantity": quantity, "UnitPriceInclTax": Decimal(price),
            "UnitPriceExclTax": Decimal(price), "PriceInclTax": Decimal(price) * quantity,
            "PriceExclTax": Decimal(price) * quantity, "Product": {"Id": item_id, "Name": name, "Sku": sku}}


# ----------------------------------------------------------------- statuses, both ways


def test_status_nopcommerce_to_bng() -> None:
    assert [MAPPING.bng_status_for(s) for s in (10, 20, 30, 40)] == ["New", "Released", "Shipped", "Cancelled"]


def test_status_bng_to_nopcommerce() -> None:
    assert MAPPING.nop_statuses_for("Released") == {"order_status_id": 20}
    assert MAPPING.nop_statuses_for("Shipped") == {"order_status_id": 20, "shipping_status_id": 30}
    assert MAPPING.nop_statuses_for("Shipped", partially_shipped=True) == {"order_status_id": 20,
                                                                           "shipping_status_id": 25}
    assert MAPPING.nop_statuses_for("Invoiced") == {"order_status_id": 30, "payment_status_id": 30}
    assert MAPPING.nop_statuses_for("Cancelled") == {"order_status_id": 40}
    assert MAPPING.never_from == {"order_status_id": [40]}


# ----------------------------------------------------------------- addresses


def test_address_trimmed_with_iso_country_state_and_postal_code() -> None:
    address = MAPPING.address({"FirstName": " Jane ", "LastName": "Doe", "Company": "  Acme   Corp ",
                               "Address1": " 1  Main St ", "City": "Springfield ", "ZipPostalCode": "627011234",
                               "CountryId": 1, "StateProvinceId": 1}, "BillingAddress")
    assert address == {"Name": "Jane Doe", "Company": "Acme Corp", "Line1": "1 Main St", "Line2": None,
                       "City": "Springfield", "State": "US-IL", "PostalCode": "62701-1234", "Country": "US"}


def test_address_iso_codes_sent_by_the_plugin_win_over_the_lookups() -> None:
    address = MAPPING.address({"Address1": "1 Yonge St", "City": "Toronto", "ZipPostalCode": "m5e1w7",
                               "CountryTwoLetterIsoCode": "ca", "StateProvinceAbbreviation": "on", "CountryId": 999},
                              "ShippingAddress")
    assert (address["Country"], address["State"], address["PostalCode"]) == ("CA", "CA-ON", "M5E 1W7")


@pytest.mark.parametrize(("typed", "country", "expected"), [
    ("sw1a1aa", "GB", "SW1A 1AA"), ("1012 ab", "NL", "1012 AB"), ("1000001", "JP", "100-0001"),
    (" 80331 ", "DE", "80331"), ("12-34", "US", "12-34"), ("abc 12", "ZZ", "ABC 12"), ("  ", "US", None)])
def test_postal_code_per_country(typed: str, country: str, expected: str | None) -> None:
    assert postal_code(typed, country) == expected


def test_an_unmapped_country_id_is_permanent_naming_it() -> None:
    with pytest.raises(PermanentError) as raised:
        MAPPING.address({"Address1": "x", "City": "y", "CountryId": 77}, "BillingAddress")
    assert raised.value.reason == "unmapped_value" and "country id 77" in raised.value.message


# ----------------------------------------------------------------- ids, customer, custom attributes


def test_ids_become_bng_external_references() -> None:
    order = data()
    assert MAPPING.external_id(order) == "nop-customer-77"
    assert MAPPING.external_order_id(order) == "6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10"
    body = MAPPING.sales_order(order, "C-1")
    assert body["Reference"] == "nopCommerce order 1042 (Id 1042)"
    assert body["CustomFields"]["NopOrderId"] == 1042 and body["CustomFields"]["NopOrderNumber"] == "1042"


def test_customer_name_type_and_email_rules() -> None:
    business = MAPPING.customer(data())
    assert (business["Name"], business["Type"], business["Email"]) == ("Acme Corp", "Business",
                                                                      "jane.doe@acme-corp.example")
    consumer = data("nop_order_consumer")
    body = MAPPING.customer(consumer)
    assert body["Type"] == "Consumer"
    assert body["Name"] == f"{consumer['Customer']['FirstName']} {consumer['Customer']['LastName']}"


def test_custom_attributes_become_bng_custom_fields() -> None:
    order = data("nop_order_consumer")
    order["Customer"]["CustomAttributes"] = {"Customer Type": "B2B"}
    order["Order"]["CustomAttributes"] = {"Order Source": " Phone "}
    customer = MAPPING.customer(order)
    assert customer["CustomFields"]["CustomerType"] == "B2B" and customer["Type"] == "Business"
    body = MAPPING.sales_order(order, "C-1")
    assert body["CustomFields"]["OrderSource"] == " Phone "
    assert body["GLDimensions"]["Channel"] == "phone"


# ----------------------------------------------------------------- GL dimensions by rules


@pytest.mark.parametrize(("store", "company", "expected"), [(2, "Acme", "EU-WEB"), (1, "Acme", "WEB-B2B"),
                                                             (1, None, "WEB-B2C")])
def test_cost_center_by_store_and_customer_type(store: int, company: str | None, expected: str) -> None:
    order = data()
    order["Order"]["StoreId"] = store
    order["Customer"]["Company"] = company
    dimensions = MAPPING.sales_order(order, "C-1")["GLDimensions"]
    assert dimensions == {"CostCenter": expected, "Channel": "web", "Store": f"STORE-{store}"}


def test_a_customer_typed_b2b_without_a_company_is_booked_on_the_b2b_cost_center() -> None:
    order = data("nop_order_consumer")
    assert not order["Customer"].get("Company")
    assert MAPPING.sales_order(order, "C-1")["GLDimensions"]["CostCenter"] == "WEB-B2C"
    order["Customer"]["CustomAttributes"] = {"Customer Type": "B2B"}
    assert MAPPING.sales_order(order, "C-1")["GLDimensions"]["CostCenter"] == "WEB-B2B"


# ----------------------------------------------------------------- lines and money


def test_same_product_lines_are_aggregated_and_remember_their_items() -> None:
    order = data()
    order["OrderItems"] = [item(1, "DESK-STD-01", 1, "450.00"), item(2, "ARM-MON-02", 4, "90.00"),
                           item(3, "desk-std-01", 1, "450.00"), item(4, "DESK-STD-01", 1, "400.00")]
    order["Order"]["OrderTotal"] = Decimal("1699.00")
    lines = MAPPING.sales_order(order, "C-1")["Lines"]
    assert [(line["SKU"], line["Quantity"], line["UnitPrice"], line["ExternalLineID"]) for line in lines] == [
        ("DESK-STD-01", 2, "450.00", "1;3"), ("ARM-MON-02", 4, "90.00", "2"), ("DESK-STD-01", 1, "400.00", "4")]
    assert order_items_for("1;3") == [1, 3]


def test_money_in_the_customers_currency_with_its_precision() -> None:
    order = data()
    order["Order"].update(CustomerCurrencyCode="JPY", CurrencyRate=Decimal("151.3"), OrderTotal=Decimal("1299.00"))
    body = MAPPING.sales_order(order, "C-1")
    assert body["Currency"] == "JPY"
    assert [line["UnitPrice"] for line in body["Lines"]] == ["68085", "13617"]
    assert body["Totals"]["Total"] == "196539"  # 1299 x 151.3 = 196538.7, to the yen
    total = sum(Decimal(line["UnitPrice"]) * line["Quantity"] for line in body["Lines"])
    totals = body["Totals"]
    assert total + Decimal(totals["Shipping"]) + Decimal(totals["Tax"]) - Decimal(totals["Discount"]) \
        == Decimal(totals["Total"])


def test_totals_equal_to_the_cent_after_converted_rounding() -> None:
    order = data()
    order["OrderItems"] = [item(1, "A", 3, "0.35"), item(2, "B", 1, "19.99")]
    order["Order"].update(CustomerCurrencyCode="EUR", CurrencyRate=Decimal("0.9137"), OrderShippingExclTax=0,
                           OrderShippingInclTax=0, OrderTotal=Decimal("21.04"))
    totals = MAPPING.sales_order(order, "C-1")["Totals"]
    assert totals["Total"] == "19.22"  # 21.04 x 0.9137 = 19.224
    lines = Decimal("0.32") * 3 + Decimal("18.26")
    assert lines + Decimal(totals["Shipping"]) - Decimal(totals["Discount"]) == Decimal("19.22")


def test_a_total_the_lines_cannot_explain_is_refused() -> None:
    order = data()
    order["Order"]["OrderTotal"] = Decimal("1350.00")  # a payment fee the mapping does not carry
    with pytest.raises(PermanentError) as raised:
        MAPPING.sales_order(order, "C-1")
    assert raised.value.reason == "totals_mismatch" and "1350.00" in raised.value.message


def test_an_item_without_a_sku_is_permanent() -> None:
    order = data()
    order["OrderItems"][0]["Product"]["Sku"] = " "
    with pytest.raises(PermanentError) as raised:
        MAPPING.sales_order(order, "C-1")
    assert raised.value.reason == "unmapped_product"


def test_an_invalid_document_fails_at_load() -> None:
    text = (SAMPLES_DIR.parents[2] / "shared" / "switchyard" / "config" / "mappings" / "nopcommerce-to-bng.yaml"
            ).read_text()
    with pytest.raises(MappingError):
        parse_mapping(text.replace("prices: excl_tax", "prices: gross"))
    with pytest.raises(MappingError):
        parse_mapping(text.replace("Released: {order_status_id: 20}", "Released: {order_state: 20}"))
    broken = copy.deepcopy(text).replace("- value: {const: WEB-B2C}", "- then: {const: WEB-B2C}")
    with pytest.raises(MappingError):
        parse_mapping(broken)


def test_the_nopcommerce_source_model_carries_custom_attributes_as_text_only() -> None:
    from switchyard.validators import validator

    validate = validator("nopcommerce", "order.placed")
    assert validate is not None
    document = json.loads((SAMPLES_DIR / "nop_order_b2b.json").read_text())
    document["data"]["Customer"]["CustomAttributes"] = {"Customer Type": "B2B"}
    document["data"]["Order"]["CustomAttributes"] = {"Order Source": "phone"}
    document["data"]["BillingAddress"]["CountryTwoLetterIsoCode"] = "US"
    validate(document)
    document["data"]["Order"]["CustomAttributes"] = {"Order Source": {"nested": 1}}
    with pytest.raises(Exception, match="CustomAttributes"):
        validate(document)
