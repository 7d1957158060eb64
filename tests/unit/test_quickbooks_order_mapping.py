"""The nopCommerce -> QuickBooks order mapping (pure): document, lines, money, names, the mapping document."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
import yaml
from switchyard.catalog import mapping_path
from switchyard.connectors.http import jsonable
from switchyard.errors import MappingError, PermanentError
from switchyard.systems.quickbooks.order_mapping import (
    OrderMappingDoc,
    QuickBooksOrderMapping,
    customer_changes,
    customer_fields,
    customer_key,
    display_name,
    doc_number,
    document_number,
    exchange_rate,
    is_paid,
    item_skus,
    load_order_mapping,
    money,
    order_skus,
    owns,
    parse_order_mapping,
    placed_data,
    sales_document,
)
from switchyard.systems.quickbooks.order_rules import CustomerRulesDoc

GUID = "6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10"
REFS = {"DESK": "11", "ARM": "12", "SHIPPING": "90"}
D = Decimal


@pytest.fixture(scope="module")
def mapping() -> QuickBooksOrderMapping:
    return load_order_mapping("nopcommerce-to-quickbooks.yaml")


def item(item_id: int, sku: str | None, qty: int, unit: str, *, name: str = "Product", incl: str | None = None,
         ) -> dict[str, Any]:
    return {"Id": item_id, "ProductId": item_id, "Quantity": qty, "UnitPriceExclTax": D(unit),
            "UnitPriceInclTax": D(incl or unit), "PriceExclTax": D(unit) * qty, "PriceInclTax": D(incl or unit) * qty,
            "Product": {"Id": item_id, "Name": name, "Sku": sku}}


def order_data(*, items: list[dict[str, Any]] | None = None, customer: dict[str, Any] | None = None,
               billing: dict[str, Any] | None = None, shipping_address: dict[str, Any] | None = None,
               **order: Any) -> dict[str, Any]:
    """``order.placed`` data as the worker parses it (numbers as Decimal). OrderTotal defaults to the sum."""
    lines = items if items is not None else [item(1, "DESK", 2, "450.00", name="Standing desk"),
                                             item(2, "ARM", 4, "90.00", name="Monitor arm")]
    fields: dict[str, Any] = {
        "Id": 1042, "OrderGuid": GUID, "CustomOrderNumber": "1042", "OrderStatusId": 10, "PaymentStatusId": 30,
        "ShippingStatusId": 20, "CustomerCurrencyCode": "USD", "CreatedOnUtc": "2026-11-20T09:15:00Z",
        "OrderShippingExclTax": D("0"), "OrderTax": D("0"), "OrderDiscount": D("0"), **order}
    if "OrderTotal" not in fields:
        subtotal = sum((money(D(line["Quantity"]) * line["UnitPriceExclTax"]) for line in lines), D(0))
        fields["OrderTotal"] = (subtotal + fields["OrderShippingExclTax"] + fields["OrderTax"]
                                - fields["OrderDiscount"] - fields.get("OrderSubTotalDiscountExclTax", D(0)))
    return {
        "Order": fields,
        "OrderItems": lines,
        "Customer": customer if customer is not None else {
            "Id": 77, "Email": " Jane.Doe@Acme.example ", "FirstName": "Jane", "LastName": "Doe"},
        "BillingAddress": billing if billing is not None else {
            "FirstName": "Jane", "LastName": "Doe", "Address1": "1 Main St", "City": "Springfield",
            "ZipPostalCode": "12345", "CountryId": 1, "PhoneNumber": "555-0100"},
        **({"ShippingAddress": shipping_address} if shipping_address is not None else {}),
    }


def sales_lines(body: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(ItemRef, Qty, UnitPrice, Amount) of every SalesItemLineDetail line."""
    return [(line["SalesItemLineDetail"]["ItemRef"]["value"], line["SalesItemLineDetail"]["Qty"],
             line["SalesItemLineDetail"]["UnitPrice"], line["Amount"])
            for line in body["Line"] if line["DetailType"] == "SalesItemLineDetail"]


# --------------------------------------------------------------------------- the mapping document


def test_load_order_mapping_reads_the_flows_settings(mapping: QuickBooksOrderMapping) -> None:
    assert mapping.flow == "nopcommerce-to-quickbooks"
    assert (mapping.home_currency, mapping.paid_status_ids) == ("USD", frozenset({30}))
    assert (mapping.item_match_field, mapping.shipping_sku, mapping.item_cache_ttl_seconds) == ("Sku", "SHIPPING", 300)
    assert mapping.rounding_sku == "ROUNDING"
    assert (mapping.doc_number_max_length, mapping.doc_number_overflow) == (21, "keep_last")
    assert mapping.sent_note == "Sent to QuickBooks: {doc_type} {doc_number}"
    assert (mapping.set_status_id, mapping.set_status_only_from) == (20, frozenset({10}))
    assert load_order_mapping("nopcommerce-to-quickbooks") is mapping  # loaded once per process


def test_parse_order_mapping_minimal_document_applies_defaults() -> None:
    mapping = parse_order_mapping("flow: f\ntarget: quickbooks\n")
    assert (mapping.home_currency, mapping.display_name_max_length, mapping.duplicate_name_suffix) == (
        "USD", 100, " [nop {customer_id}]")


@pytest.mark.parametrize(("text", "message"), [
    ("flow: f\ntarget: streak\n", "target"),
    ("flow: f\ntarget: quickbooks\nitems: {shipping_item: X}\n", "items.shipping_item"),
    ("flow: f\ntarget: quickbooks\ncurrency: {home: usd}\n", "currency.home"),
    ("flow: f\ntarget: quickbooks\ndoc_number: {max_length: 30}\n", "doc_number.max_length"),
    ("flow: f\ntarget: quickbooks\ndoc_number: {overflow: keep_first}\n", "doc_number.overflow"),
    ("flow: f\ntarget: quickbooks\nwrite_back: {sent_note: 'Sent {doc_typ}'}\n", "doc_typ"),
    ("flow: f\ntarget: quickbooks\ncustomer: {duplicate_name_suffix: ' nop:{customer_id}'}\n", "':'"),
    ("flow: f\ntarget: quickbooks\ntxn_date: {timezone: Mars/Olympus}\n", "Mars/Olympus"),
    ("flow: f\ntarget: quickbooks\ncustomer: {countries: {1: usa}}\n", "countries"),
    ("- just a list\n", "mapping of settings"),
    ("flow: [unclosed\n", "not valid YAML"),
])
def test_parse_order_mapping_bad_document_raises_mapping_error_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_order_mapping(text, name="broken.yaml")
    assert "broken.yaml" in str(caught.value)
    assert message in str(caught.value)


def test_load_order_mapping_missing_file_raises_mapping_error() -> None:
    with pytest.raises(MappingError, match=r"no mapping document nope\.yaml"):
        load_order_mapping("nope")


# --------------------------------------------------------------------------- which document


@pytest.mark.parametrize(("payment_status", "entity"), [(30, "SalesReceipt"), (10, "Invoice"), (20, "Invoice"),
                                                        (35, "Invoice")])
def test_sales_document_entity_follows_payment_status(mapping: QuickBooksOrderMapping, payment_status: int,
                                                      entity: str) -> None:
    data = order_data(PaymentStatusId=payment_status)
    assert is_paid(mapping, data["Order"]) is (entity == "SalesReceipt")
    assert sales_document(mapping, data, customer_id="5", item_refs=REFS).entity == entity


def test_sales_document_lines_refs_qty_price_amount_and_header(mapping: QuickBooksOrderMapping) -> None:
    document = sales_document(mapping, order_data(), customer_id="5", item_refs=REFS)
    body = document.body
    assert sales_lines(body) == [("11", 2, D("450"), D("900.00")), ("12", 4, D("90"), D("360.00"))]
    assert [line.get("Description") for line in body["Line"]] == ["Standing desk", "Monitor arm"]
    assert body["CustomerRef"] == {"value": "5"}
    assert (body["DocNumber"], body["TxnDate"], body["TxnTaxDetail"]) == ("1042", "2026-11-20", {"TotalTax": D(0)})
    assert body["PrivateNote"] == f"nopCommerce order 1042 (Id 1042, OrderGuid {GUID})"
    assert "CurrencyRef" not in body and "ExchangeRate" not in body
    assert (document.total, document.currency, document.exchange_rate) == (D("1260.00"), "USD", None)
    assert document.summary() == {"entity": "SalesReceipt", "doc_number": "1042", "total": 1260.0,
                                  "currency": "USD", "exchange_rate": None}
    json.dumps(jsonable(body))  # what the connector sends


@pytest.mark.parametrize(("qty", "unit", "amount"), [
    (1, "0.125", "0.13"),     # half-up, not banker's rounding (0.12)
    (3, "3.335", "10.01"),    # 10.005
    (2, "0.0049", "0.01"),    # 0.0098
    (7, "19.9950", "139.97"),  # 139.965
])
def test_sales_document_amount_is_qty_times_unit_price_rounded_half_up(
    mapping: QuickBooksOrderMapping, qty: int, unit: str, amount: str
) -> None:
    data = order_data(items=[item(1, "DESK", qty, unit)])
    (line,) = sales_lines(sales_document(mapping, data, customer_id="5", item_refs=REFS).body)
    assert line[3] == D(amount)
    assert line[3] == (D(qty) * D(unit)).quantize(D("0.01"), rounding="ROUND_HALF_UP")


def test_sales_document_shipping_line_uses_the_shipping_item(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(OrderShippingExclTax=D("39.00"), ShippingMethod="Ground")
    assert item_skus(mapping, data) == ["DESK", "ARM", "SHIPPING"]
    document = sales_document(mapping, data, customer_id="5", item_refs=REFS)
    assert sales_lines(document.body)[-1] == ("90", 1, D("39.00"), D("39.00"))
    assert document.body["Line"][-1]["Description"] == "Shipping (Ground)"
    assert document.total == D("1299.00")


def test_sales_document_without_shipping_needs_no_shipping_item(mapping: QuickBooksOrderMapping) -> None:
    data = order_data()
    assert item_skus(mapping, data) == ["DESK", "ARM"]
    document = sales_document(mapping, data, customer_id="5", item_refs={"DESK": "11", "ARM": "12"})
    assert [ref for ref, *_ in sales_lines(document.body)] == ["11", "12"]


def test_sales_document_old_payload_falls_back_to_incl_tax_shipping(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(OrderShippingInclTax=D("39.00"), OrderTotal=D("1299.00"))
    del data["Order"]["OrderShippingExclTax"]
    for line in data["OrderItems"]:
        del line["UnitPriceExclTax"]
    document = sales_document(mapping, data, customer_id="5", item_refs=REFS)
    assert sales_lines(document.body)[-1][3] == D("39.00") and document.total == D("1299.00")


def test_sales_document_discount_line_sums_subtotal_and_order_discount(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(OrderSubTotalDiscountExclTax=D("60.00"), OrderDiscount=D("10.50"))
    document = sales_document(mapping, data, customer_id="5", item_refs=REFS)
    discount = document.body["Line"][-1]
    assert discount == {"DetailType": "DiscountLineDetail", "Amount": D("70.50"), "Description": "Discount",
                        "DiscountLineDetail": {"PercentBased": False}}
    assert document.total == D("1189.50")
    with_account = dataclasses.replace(mapping, discount_account_id="86")
    assert sales_document(with_account, data, customer_id="5", item_refs=REFS).body["Line"][-1][
        "DiscountLineDetail"] == {"PercentBased": False, "DiscountAccountRef": {"value": "86"}}


def test_sales_document_prices_excl_tax_and_order_tax_as_total_tax(mapping: QuickBooksOrderMapping) -> None:
    lines = [item(1, "DESK", 2, "100.00", incl="119.00")]
    data = order_data(items=lines, OrderTax=D("38.00"))
    document = sales_document(mapping, data, customer_id="5", item_refs=REFS)
    assert sales_lines(document.body) == [("11", 2, D("100"), D("200.00"))]
    assert document.body["TxnTaxDetail"] == {"TotalTax": D("38.00")}
    assert document.total == D("238.00")
    taxed = dataclasses.replace(mapping, line_tax_code="TAX")
    detail = sales_document(taxed, data, customer_id="5", item_refs=REFS).body["Line"][0]["SalesItemLineDetail"]
    assert detail["TaxCodeRef"] == {"value": "TAX"}


def test_sales_document_totals_mismatch_raises_permanent_error(mapping: QuickBooksOrderMapping) -> None:
    # a store whose payload has only incl.-tax prices and a tax: priced incl. tax, plus the tax again
    lines = [item(1, "DESK", 2, "119.00")]
    data = order_data(items=lines, OrderTax=D("38.00"), OrderTotal=D("238.00"))
    with pytest.raises(PermanentError) as caught:
        sales_document(mapping, data, customer_id="5", item_refs=REFS)
    assert caught.value.reason == "totals_mismatch"
    assert "276.00" in caught.value.message and "238.00" in caught.value.message


def test_sales_document_rounding_difference_is_booked_on_the_rounding_item_and_named(
    mapping: QuickBooksOrderMapping,
) -> None:
    # two amounts: rounding explains up to 2 cents; the document still equals the order total exactly
    data = order_data(OrderTotal=D("1260.02"))
    assert item_skus(mapping, data) == ["DESK", "ARM", "ROUNDING"]
    document = sales_document(mapping, data, customer_id="5", item_refs={**REFS, "ROUNDING": "95"})
    assert document.total == D("1260.02")
    assert sales_lines(document.body)[-1] == ("95", 1, D("0.02"), D("0.02"))
    assert document.body["Line"][-1]["Description"] == "Rounding adjustment"
    assert document.body["PrivateNote"].endswith(
        "; rounding adjustment +0.02 USD on item ROUNDING: the rounded amounts add up to 1260.00, "
        "OrderTotal is 1260.02")
    below = sales_document(mapping, order_data(OrderTotal=D("1259.98")), customer_id="5",
                           item_refs={**REFS, "ROUNDING": "95"})
    assert (below.total, sales_lines(below.body)[-1][3]) == (D("1259.98"), D("-0.02"))


def test_sales_document_difference_beyond_rounding_is_a_totals_mismatch(mapping: QuickBooksOrderMapping) -> None:
    with pytest.raises(PermanentError) as caught:
        sales_document(mapping, order_data(OrderTotal=D("1260.03")), customer_id="5",
                       item_refs={**REFS, "ROUNDING": "95"})
    assert caught.value.reason == "totals_mismatch" and "1260.03" in caught.value.message


def test_sales_document_rounding_difference_without_a_rounding_item_is_a_totals_mismatch(
    mapping: QuickBooksOrderMapping,
) -> None:
    without = dataclasses.replace(mapping, rounding_sku=None)
    with pytest.raises(PermanentError) as caught:
        sales_document(without, order_data(OrderTotal=D("1260.01")), customer_id="5", item_refs=REFS)
    assert caught.value.reason == "totals_mismatch" and "rounding.item_sku" in caught.value.message


# --------------------------------------------------------------------------- SKUs


def test_order_skus_unique_in_order_and_trimmed() -> None:
    data = order_data(items=[item(1, " DESK ", 1, "1"), item(2, "ARM", 1, "1"), item(3, "DESK", 2, "1")])
    assert order_skus(data) == ["DESK", "ARM"]


@pytest.mark.parametrize("product", [None, {"Id": 2, "Name": "Gift card"}, {"Id": 2, "Name": "Gift", "Sku": "  "}])
def test_order_skus_line_without_sku_raises_missing_sku(product: dict[str, Any] | None) -> None:
    line = item(2, "X", 1, "5")
    line["Product"] = product
    with pytest.raises(PermanentError) as caught:
        order_skus(order_data(items=[item(1, "DESK", 1, "1"), line]))
    assert caught.value.reason == "missing_sku"
    assert "order item 2" in caught.value.message


def test_sales_document_unmapped_skus_listed_in_one_permanent_error(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(OrderShippingExclTax=D("5.00"))
    with pytest.raises(PermanentError) as caught:
        sales_document(mapping, data, customer_id="5", item_refs={"ARM": "12"})
    assert (caught.value.reason, caught.value.message) == ("unmapped_product", "unmapped product DESK, SHIPPING")


# --------------------------------------------------------------------------- DocNumber and PrivateNote


@pytest.mark.parametrize(("number", "expected"), [
    ("1042", "1042"),
    ("STORE-2026-000000001", "STORE-2026-000000001"),             # 20
    ("STORE-2026-0000000001", "STORE-2026-0000000001"),           # 21: fits exactly
    ("EUSTORE-2026-0000000001", "STORE-2026-0000000001"),         # 23: the last 21 characters
    ("  7  ", "7"),
])
def test_doc_number_keeps_numbers_that_fit_and_the_last_21_characters_otherwise(
    mapping: QuickBooksOrderMapping, number: str, expected: str
) -> None:
    assert doc_number(mapping, number) == expected
    assert len(doc_number(mapping, number)) <= 21


def test_doc_number_overflow_keeps_full_number_in_private_note(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(CustomOrderNumber="WEBSHOP-EU-2026-11-000123")
    body = sales_document(mapping, data, customer_id="5", item_refs=REFS).body
    assert body["DocNumber"] == "HOP-EU-2026-11-000123"  # the last 21 of 25: the sequence survives
    assert "nopCommerce order WEBSHOP-EU-2026-11-000123 (Id 1042" in body["PrivateNote"]
    assert owns(body, GUID) and owns(body, GUID.upper()) and not owns(body, "0" * 8 + GUID[8:])


def test_doc_number_overflow_reject_raises_permanent_error(mapping: QuickBooksOrderMapping) -> None:
    rejecting = dataclasses.replace(mapping, doc_number_overflow="reject")
    with pytest.raises(PermanentError) as caught:
        doc_number(rejecting, "WEBSHOP-EU-2026-11-000123")
    assert caught.value.reason == "doc_number_too_long"


def test_sales_document_txn_date_in_the_mapping_time_zone(mapping: QuickBooksOrderMapping) -> None:
    pytest.importorskip("zoneinfo").ZoneInfo("America/New_York")
    data = order_data(CreatedOnUtc="2026-11-20T03:00:00Z")
    assert sales_document(mapping, data, customer_id="5", item_refs=REFS).body["TxnDate"] == "2026-11-20"
    eastern = dataclasses.replace(mapping, txn_timezone="America/New_York")
    assert sales_document(eastern, data, customer_id="5", item_refs=REFS).body["TxnDate"] == "2026-11-19"


# --------------------------------------------------------------------------- currency


def test_sales_document_foreign_currency_converts_every_amount(mapping: QuickBooksOrderMapping) -> None:
    lines = [item(1, "DESK", 2, "450.00"), item(2, "ARM", 3, "9.99")]
    data = order_data(items=lines, CustomerCurrencyCode="EUR", CurrencyRate=D("0.92"),
                      OrderShippingExclTax=D("39.00"), OrderTax=D("10.00"), OrderDiscount=D("5.00"))
    document = sales_document(mapping, data, customer_id="5", item_refs=REFS)
    body = document.body
    # 450 x 0.92 = 414; 9.99 x 0.92 = 9.1908 -> 9.19, x 3 = 27.57; shipping 35.88; tax 9.20; discount 4.60
    assert sales_lines(body) == [("11", 2, D("414"), D("828.00")), ("12", 3, D("9.19"), D("27.57")),
                                 ("90", 1, D("35.88"), D("35.88"))]
    assert body["Line"][-1]["Amount"] == D("4.60")
    assert body["TxnTaxDetail"] == {"TotalTax": D("9.20")}
    assert (body["CurrencyRef"], body["ExchangeRate"]) == ({"value": "EUR"}, D("1.086957"))
    assert document.total == D("896.05")  # 828 + 27.57 + 35.88 - 4.60 + 9.20
    assert (document.currency, document.exchange_rate) == ("EUR", D("1.086957"))
    assert "CurrencyRate 0.92 (1 USD = 0.92 EUR; ExchangeRate 1.086957)" in body["PrivateNote"]


def test_sales_document_home_currency_ignores_the_rate(mapping: QuickBooksOrderMapping) -> None:
    document = sales_document(mapping, order_data(CurrencyRate=D("1.3")), customer_id="5", item_refs=REFS)
    assert document.total == D("1260.00") and "CurrencyRef" not in document.body


@pytest.mark.parametrize(("rate", "expected"), [("0.92", "1.086957"), ("1", "1.000000"), ("150.5", "0.006645"),
                                                ("3", "0.333333")])
def test_exchange_rate_is_the_inverse_rounded_to_six_places(rate: str, expected: str) -> None:
    assert exchange_rate(D(rate)) == D(expected)


# --------------------------------------------------------------------------- the customer


@pytest.mark.parametrize(("customer", "billing", "currency", "expected"), [
    ({"Company": "Acme Corp", "FirstName": "Jane"}, {}, "USD", "Acme Corp"),
    ({}, {"Company": "Billing Co"}, "USD", "Billing Co"),
    ({"FirstName": " Jane ", "LastName": "Doe"}, {"Company": ""}, "USD", "Jane Doe"),
    ({}, {"FirstName": "Guest", "LastName": "Buyer"}, "USD", "Guest Buyer"),
    ({}, {}, "USD", "jane@example.com"),
    ({"Company": "Acme: Widgets\tDivision"}, {}, "USD", "Acme- Widgets Division"),
    ({"Company": "Acme Corp"}, {}, "EUR", "Acme Corp (EUR)"),
])
def test_display_name_company_else_person_else_email_colon_replaced_currency_suffix(
    mapping: QuickBooksOrderMapping, customer: dict[str, Any], billing: dict[str, Any], currency: str, expected: str
) -> None:
    data = order_data(customer={"Id": 77, "Email": "jane@example.com", **customer}, billing=billing,
                      CustomerCurrencyCode=currency, CurrencyRate=D("0.9"))
    assert display_name(mapping, data) == expected


def test_display_name_disambiguated_and_long_names_keep_their_suffixes(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(customer={"Id": 77, "Email": "j@x.example", "Company": "Acme Corp"})
    assert display_name(mapping, data, disambiguate=True) == "Acme Corp [nop 77]"
    long = order_data(customer={"Id": 77, "Email": "j@x.example", "Company": "A" * 150},
                      CustomerCurrencyCode="EUR", CurrencyRate=D("0.9"))
    name = display_name(mapping, long, disambiguate=True)
    assert len(name) == 100 and name.endswith("A (EUR) [nop 77]")
    assert len(display_name(mapping, long)) == 100


def test_customer_fields_body_for_quickbooks(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(customer={"Id": 77, "Email": " Jane.Doe@Acme.example ", "FirstName": "Jane", "LastName": "Doe",
                                "Company": "Acme Corp"},
                      shipping_address={"Address1": "9 Dock Rd", "City": "Portland", "CountryId": 2})
    assert customer_fields(mapping, data) == {
        "DisplayName": "Acme Corp", "GivenName": "Jane", "FamilyName": "Doe", "CompanyName": "Acme Corp",
        "PrimaryEmailAddr": {"Address": "jane.doe@acme.example"}, "PrimaryPhone": {"FreeFormNumber": "555-0100"},
        "BillAddr": {"Line1": "1 Main St", "City": "Springfield", "PostalCode": "12345", "Country": "US"},
        "ShipAddr": {"Line1": "9 Dock Rd", "City": "Portland", "Country": "CA"},
    }
    assert customer_key(mapping, data) == "77"


def test_customer_fields_foreign_currency_sets_currency_ref_and_own_key(mapping: QuickBooksOrderMapping) -> None:
    data = order_data(CustomerCurrencyCode="EUR", CurrencyRate=D("0.92"), billing={"CountryId": 999})
    fields = customer_fields(mapping, data)
    assert (fields["DisplayName"], fields["CurrencyRef"]) == ("Jane Doe (EUR)", {"value": "EUR"})
    assert "BillAddr" not in fields  # an unknown country alone is no address
    assert customer_key(mapping, data) == "77:EUR"


def test_customer_changes_only_differing_fields_never_name_or_currency() -> None:
    desired = {"DisplayName": "Jane Doe", "GivenName": "Jane", "PrimaryEmailAddr": {"Address": "jane@x.example"},
               "PrimaryPhone": {"FreeFormNumber": "555-0100"}, "BillAddr": {"Line1": "1 Main St", "City": "Town"},
               "CurrencyRef": {"value": "EUR"}}
    existing = {"Id": "5", "DisplayName": "Jane Doe (renamed by the bookkeeper)", "GivenName": "Jane",
                "PrimaryEmailAddr": {"Address": "Jane@X.example"}, "PrimaryPhone": {"FreeFormNumber": "555-0199"},
                "BillAddr": {"Id": "31", "Line1": "1 Main St", "City": "Town"}, "CurrencyRef": {"value": "USD"}}
    assert customer_changes(desired, existing) == {"PrimaryPhone": {"FreeFormNumber": "555-0100"}}
    moved = {**existing, "BillAddr": {"Id": "31", "Line1": "2 Side St", "City": "Town"}}
    assert customer_changes(desired, moved) == {"PrimaryPhone": {"FreeFormNumber": "555-0100"},
                                                "BillAddr": {"Id": "31", "Line1": "1 Main St", "City": "Town"}}
    assert customer_changes(desired, {**existing, "PrimaryPhone": {"FreeFormNumber": "555-0100"}}) == {}


def test_invalid_order_data_raises_permanent_invalid_event(mapping: QuickBooksOrderMapping) -> None:
    data = order_data()
    del data["Order"]["OrderGuid"]
    with pytest.raises(PermanentError) as caught:
        sales_document(mapping, data, customer_id="5", item_refs=REFS)
    assert caught.value.reason == "invalid_event" and "Order.OrderGuid" in caught.value.message


# --------------------------------------------------------------------------- to the cent


def issue_example() -> dict[str, Any]:
    """UnitPriceInclTax 12.50 at 8 % tax, quantity 2, shipping 5.00 (untaxed): 30.00 received. nopCommerce
    prices the line 25.00 incl. and 23.15 excl. (25.00 / 1.08 = 23.148); the unit price excl. is 11.57."""
    line = {"Id": 1, "ProductId": 1, "Quantity": 2, "UnitPriceInclTax": D("12.50"), "UnitPriceExclTax": D("11.57"),
            "PriceInclTax": D("25.00"), "PriceExclTax": D("23.15"),
            "Product": {"Id": 1, "Name": "Cable organiser", "Sku": "DESK"}}
    return order_data(items=[line], OrderSubtotalExclTax=D("23.15"), OrderShippingExclTax=D("5.00"),
                      OrderTax=D("1.85"), OrderTotal=D("30.00"))


def test_sales_document_books_nopcommerces_line_price_not_qty_times_rounded_unit_price(
    mapping: QuickBooksOrderMapping,
) -> None:
    document = sales_document(mapping, issue_example(), customer_id="5", item_refs=REFS)
    (line, shipping) = sales_lines(document.body)
    assert line == ("11", 2, D("11.575"), D("23.15"))  # Qty x UnitPrice = Amount exactly
    assert shipping == ("90", 1, D("5.00"), D("5.00"))
    assert document.total == D("30.00")
    assert "ounding" not in document.body["PrivateNote"]  # nothing to adjust: nopCommerce's lines add up


def test_sales_document_incl_tax_books_line_prices_incl_tax_and_says_so(mapping: QuickBooksOrderMapping) -> None:
    data = issue_example()
    data["Order"]["OrderShippingInclTax"] = D("5.00")
    gross = dataclasses.replace(mapping, tax_amounts="incl_tax")
    document = sales_document(gross, data, customer_id="5", item_refs=REFS)
    assert sales_lines(document.body) == [("11", 2, D("12.5"), D("25.00")), ("90", 1, D("5.00"), D("5.00"))]
    assert (document.body["GlobalTaxCalculation"], document.body["TxnTaxDetail"]) == ("TaxInclusive",
                                                                                     {"TotalTax": D("1.85")})
    assert document.total == D("30.00")
    assert "GlobalTaxCalculation" not in sales_document(mapping, data, customer_id="5", item_refs=REFS).body


@pytest.mark.parametrize("value", ["NaN", "-5", "Infinity"])
def test_sales_document_extra_amount_that_is_not_an_amount_is_an_invalid_event(
    mapping: QuickBooksOrderMapping, value: str
) -> None:
    data = order_data(OrderShippingInclTax=value)
    del data["Order"]["OrderShippingExclTax"]
    with pytest.raises(PermanentError) as caught:
        sales_document(mapping, data, customer_id="5", item_refs=REFS)
    assert caught.value.reason == "invalid_event" and "OrderShippingInclTax" in caught.value.message


# --------------------------------------------------------------------------- the rules (YAML), issue 9


def variant(text: str) -> QuickBooksOrderMapping:
    return parse_order_mapping("flow: nopcommerce-to-quickbooks\ntarget: quickbooks\n" + text, name="variant.yaml")


def test_shipped_document_spells_out_the_default_rules() -> None:
    shipped = OrderMappingDoc.model_validate(yaml.safe_load(mapping_path("nopcommerce-to-quickbooks.yaml").read_text()))
    defaults = OrderMappingDoc(flow="f", target="quickbooks")

    customer_rules = set(CustomerRulesDoc.model_fields) | {"display_name"}
    assert shipped.customer.model_dump(include=customer_rules) == defaults.customer.model_dump(include=customer_rules)
    assert (shipped.document, shipped.lines) == (defaults.document, defaults.lines)


def test_rule_set_to_null_leaves_the_quickbooks_field_out(mapping: QuickBooksOrderMapping) -> None:
    quiet = variant("customer: {phone: null, ship_address: null}\nlines: {description: null}\n")
    data = order_data(shipping_address={"Address1": "9 Dock Rd", "City": "Portland", "CountryId": 2})

    assert {"PrimaryPhone", "ShipAddr"} <= set(customer_fields(mapping, data))
    assert not {"PrimaryPhone", "ShipAddr"} & set(customer_fields(quiet, data))
    body = sales_document(quiet, data, customer_id="5", item_refs=REFS).body
    assert all("Description" not in line for line in body["Line"])


def test_display_name_rule_reads_another_field_and_keeps_quickbooks_naming_rules() -> None:
    by_attribute = variant('customer: {display_name: {value: {path: Customer.Nickname}}}\n')
    data = order_data(customer={"Id": 77, "Email": "j@x.example", "Nickname": "  JD:  Trading  "},
                      CustomerCurrencyCode="EUR", CurrencyRate=D("0.9"))

    assert display_name(by_attribute, data) == "JD- Trading (EUR)"  # ':' replaced, spaces collapsed, suffix
    assert display_name(by_attribute, data, disambiguate=True) == "JD- Trading (EUR) [nop 77]"
    with pytest.raises(PermanentError) as missing:
        display_name(by_attribute, order_data())
    assert missing.value.reason == "missing_required_field"


def test_item_key_rule_finds_items_by_another_product_field() -> None:
    by_gtin = variant("lines: {item_key: {path: Item.Product.Gtin}}\n")
    lines = [item(1, "DESK", 1, "10"), item(2, "ARM", 1, "5")]
    lines[0]["Product"]["Gtin"], lines[1]["Product"]["Gtin"] = "0001", "0002"
    data = order_data(items=lines)

    assert item_skus(by_gtin, data) == ["0001", "0002"]
    body = sales_document(by_gtin, data, customer_id="5", item_refs={"0001": "11", "0002": "12"}).body
    assert [ref for ref, *_ in sales_lines(body)] == ["11", "12"]
    del lines[1]["Product"]["Gtin"]
    with pytest.raises(PermanentError) as missing:
        item_skus(by_gtin, order_data(items=lines))
    assert missing.value.reason == "missing_sku"


def test_private_note_rule_cannot_drop_the_order_number_or_the_order_guid() -> None:
    terse = variant('document: {private_note: {const: "Web shop"}, doc_number: {path: Order.CustomOrderNumber}}\n')
    body = sales_document(terse, order_data(CustomOrderNumber="WEBSHOP-EU-2026-11-000123"), customer_id="5",
                          item_refs=REFS).body

    assert body["PrivateNote"] == f"Web shop; nopCommerce order WEBSHOP-EU-2026-11-000123; OrderGuid {GUID}"
    assert owns(body, GUID)


def test_private_note_longer_than_quickbooks_allows_is_cut_in_the_rules_text_only() -> None:
    wordy = variant('document: {private_note: {template: "{Order.Remark}"}}\n')
    data = order_data(Remark="x" * 5000, CustomerCurrencyCode="EUR", CurrencyRate=D("0.9"))

    note = sales_document(wordy, data, customer_id="5", item_refs=REFS).body["PrivateNote"]

    assert len(note) == 4000 and note.startswith("xxx")
    assert note.endswith("ExchangeRate 1.111111)") and f"OrderGuid {GUID}" in note


def test_doc_number_rule_reads_another_field_for_every_event() -> None:
    prefixed = variant('document: {doc_number: {template: "W-{Order.CustomOrderNumber}"}}\n')
    data = order_data()

    assert sales_document(prefixed, data, customer_id="5", item_refs=REFS).body["DocNumber"] == "W-1042"
    assert document_number(prefixed, {"Order": data["Order"]}) == "W-1042"  # order.paid, cancellations
    assert document_number(prefixed, data["Order"]) == "W-1042"  # a bare order


@pytest.mark.parametrize(("text", "message"), [
    ("document: {custom_fields: [{definition_id: '1', value: {const: a}}, {definition_id: '1', value: {const: b}}]}\n",
     "definition_id twice"),
    ("document: {custom_fields: [" + ", ".join(f"{{definition_id: '{n}', value: {{const: a}}}}" for n in range(4))
     + "]}\n", "document.custom_fields"),
    ("lookups: {countries: {1: US}}\ncustomer: {countries: {1: US}}\n", "countries are given twice"),
    ("document: {class_id: {path: Order.StoreId, transforms: [{lookup: nope}]}}\n", "document.class_id"),
    ("lines: {description: {pth: Item.Product.Name}}\n", "lines.description"),
    ("customer: {bill_address: {street: {path: x}}}\n", "customer.bill_address.street"),
    ("document: {doc_number: {template: '{Customer.Id}-{Order.Id}'}}\n", "Order.* only"),
    ("document: {doc_number: {first_of: [{path: Order.X}, {path: Customer.Id}]}}\n", "Customer.Id"),
])
def test_parse_order_mapping_bad_rule_names_the_document_and_the_rule(text: str, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        variant(text)
    assert "variant.yaml" in str(caught.value) and message in str(caught.value)


def test_legacy_customer_countries_still_fill_the_country() -> None:
    legacy = variant("customer: {countries: {1: US}}\n")

    assert customer_fields(legacy, order_data())["BillAddr"]["Country"] == "US"
    assert "Country" not in customer_fields(legacy, order_data(billing={"City": "X", "CountryId": 2}))["BillAddr"]


def test_state_province_from_abbreviation_then_id_table_then_name() -> None:
    states = variant('lookups: {state_provinces: {40: NY, "*": null}}\n')
    address = {"City": "Albany", "CountryId": 1}

    def state(extra: dict[str, Any]) -> str | None:
        billing = customer_fields(states, order_data(billing={**address, **extra}))["BillAddr"]
        return billing.get("CountrySubDivisionCode")

    assert state({"StateProvinceId": 40, "StateProvince": {"Name": "New York", "Abbreviation": " ny "}}) == "ny"
    assert state({"StateProvinceId": 40, "StateProvince": {"Name": "New York"}}) == "NY"
    assert state({"StateProvinceId": 41, "StateProvince": {"Name": "New  Jersey"}}) == "New Jersey"
    assert state({"StateProvinceId": 41}) is None


def test_typed_and_raw_order_data_map_alike() -> None:
    data = order_data(billing={"City": "Albany", "CountryId": 1, "StateProvince": {"Abbreviation": "NY"}})
    shipped = load_order_mapping("nopcommerce-to-quickbooks.yaml")

    assert customer_fields(shipped, placed_data(data)) == customer_fields(shipped, data)
    assert (sales_document(shipped, placed_data(data), customer_id="5", item_refs=REFS).body
            == sales_document(shipped, data, customer_id="5", item_refs=REFS).body)


# --------------------------------------------------------------------------- payment details


@pytest.fixture
def with_methods(mapping: QuickBooksOrderMapping) -> QuickBooksOrderMapping:
    doc = yaml.safe_load(mapping_path("nopcommerce-to-quickbooks.yaml").read_text())
    doc["lookups"]["payment_methods"] = {"Payments.Manual": "1", "Payments.PayPalCommerce.Standard": "2", "*": None}
    return parse_order_mapping(yaml.safe_dump(doc))


def test_the_shipped_mapping_names_no_payment_method_ids(mapping: QuickBooksOrderMapping) -> None:
    body = sales_document(mapping, order_data(PaymentMethodSystemName="Payments.Manual", CaptureTransactionId="X1"),
                          customer_id="7", item_refs=REFS).body  # ids are each company's own

    assert "PaymentMethodRef" not in body and body["PaymentRefNum"] == "X1"


def test_sales_receipt_carries_the_payment_method_and_the_capture_id(with_methods: QuickBooksOrderMapping) -> None:
    mapping = with_methods
    data = order_data(PaymentMethodSystemName="Payments.PayPalCommerce.Standard",
                      CaptureTransactionId="8AB12345CD6789012", AuthorizationTransactionId="AUTH-1")

    body = sales_document(mapping, data, customer_id="7", item_refs=REFS).body

    assert (body["PaymentMethodRef"], body["PaymentRefNum"]) == ({"value": "2"}, "8AB12345CD6789012")
    assert "payment reference" not in body["PrivateNote"]  # it fits: nothing to add


def test_payment_reference_falls_back_to_the_authorization_and_unknown_methods_are_left_out(
    mapping: QuickBooksOrderMapping,
) -> None:
    body = sales_document(mapping, order_data(PaymentMethodSystemName="Payments.CheckMoneyOrder",
                                              AuthorizationTransactionId=" AUTH-77 "),
                          customer_id="7", item_refs=REFS).body

    assert body["PaymentRefNum"] == "AUTH-77"
    assert "PaymentMethodRef" not in body


def test_a_long_transaction_id_keeps_its_last_21_characters_and_is_whole_in_the_private_note(
    mapping: QuickBooksOrderMapping,
) -> None:
    long_id = "ch_3QxR8dLkdIwHu7ix0snN0B15"

    body = sales_document(mapping, order_data(CaptureTransactionId=long_id), customer_id="7", item_refs=REFS).body

    assert body["PaymentRefNum"] == long_id[-21:] and len(body["PaymentRefNum"]) == 21
    assert body["PrivateNote"].endswith(f"; payment reference {long_id}")
    assert owns(body, GUID)


def test_an_invoice_has_no_payment_fields(mapping: QuickBooksOrderMapping) -> None:
    body = sales_document(mapping, order_data(PaymentStatusId=10, PaymentMethodSystemName="Payments.Manual",
                                              CaptureTransactionId="X1"), customer_id="7", item_refs=REFS).body

    assert "PaymentMethodRef" not in body and "PaymentRefNum" not in body


def test_payment_rules_read_the_order_only() -> None:
    text = ("flow: f\ntarget: quickbooks\npayment:\n  reference: {path: Customer.Email}\n")

    with pytest.raises(MappingError, match=r"payment.method and payment.reference may read Order.\* only"):
        parse_order_mapping(text)


def test_payment_rules_can_be_switched_off() -> None:
    mapping = parse_order_mapping("flow: f\ntarget: quickbooks\npayment:\n  method: null\n  reference: null\n"
                                  "lookups:\n  payment_methods: {Payments.Manual: '1'}\n")

    body = sales_document(mapping, order_data(PaymentMethodSystemName="Payments.Manual", CaptureTransactionId="X1"),
                          customer_id="7", item_refs=REFS).body

    assert "PaymentMethodRef" not in body and "PaymentRefNum" not in body


def test_failure_notes_name_known_reasons_and_placeholders_only() -> None:
    base = "flow: f\ntarget: quickbooks\nwrite_back:\n  failure_notes:\n"

    with pytest.raises(MappingError, match="'unmaped_product' is not a reason"):
        parse_order_mapping(base + "    unmaped_product: 'x'\n")
    with pytest.raises(MappingError, match=r"failure_note uses unknown placeholders \['sku'\]"):
        parse_order_mapping(base + "    unmapped_product: 'missing {sku}'\n")
    assert dict(parse_order_mapping(base + "    totals_mismatch: '{order_number}: {detail}'\n").failure_notes) == {
        "totals_mismatch": "{order_number}: {detail}"}


def test_new_item_rules_read_the_line_and_the_order_only() -> None:
    text = ("flow: f\ntarget: quickbooks\nitems:\n  unknown: create\n  create:\n    income_account_id: '79'\n"
            "    name: {path: Customer.Email}\n")

    with pytest.raises(MappingError, match=r"items.create rules may read Item.\* and Order.\* only"):
        parse_order_mapping(text)
    with pytest.raises(MappingError, match=r"items\.create needs income_account_id"):
        parse_order_mapping("flow: f\ntarget: quickbooks\nitems:\n  unknown: create\n")


def test_new_items_come_from_the_first_line_of_each_unknown_key_only() -> None:
    from switchyard.systems.quickbooks.order_mapping import new_item_name, new_items

    mapping = parse_order_mapping("flow: f\ntarget: quickbooks\nitems:\n  unknown: create\n  create:\n"
                                  "    income_account_id: '79'\n    type: Service\n")
    data = order_data(items=[item(1, "DESK", 1, "450.00", name="Desk"), item(2, "DESK", 3, "440.00", name="Desk"),
                             item(3, "ARM", 1, "90.00", name=" Arm :  long " + "x" * 120)])

    bodies = new_items(mapping, data, ["DESK", "ARM", "SHIPPING"])

    assert list(bodies) == ["DESK", "ARM"]  # SHIPPING is on no product line
    assert (bodies["DESK"]["Name"], bodies["DESK"]["UnitPrice"], bodies["DESK"]["Type"]) == ("Desk", D("450"),
                                                                                              "Service")
    assert bodies["ARM"]["Name"].startswith("Arm - long xx") and len(bodies["ARM"]["Name"]) == 100
    suffixed = new_item_name(mapping, bodies["ARM"]["Name"], sku="ARM")
    assert suffixed.endswith("x (ARM)") and len(suffixed) == 100
    assert new_items(parse_order_mapping("flow: f\ntarget: quickbooks\n"), data, ["DESK"]) == {}


def test_dry_run_of_a_refund_names_the_running_total_at_the_orders_rate(mapping: QuickBooksOrderMapping) -> None:
    from switchyard.systems.quickbooks.dry_run import plan

    refunded = {"Order": {**order_data()["Order"], "PaymentStatusId": 35, "RefundedAmount": D("100.00"),
                          "CustomerCurrencyCode": "EUR", "CurrencyRate": D("0.9")}}
    action, planned = plan(mapping, "order.refunded", refunded)

    assert (action, planned["refunded_total"], planned["line_item"]) == ("refund", "90.00 EUR", "REFUND")
    assert plan(mapping, "order.refunded", {"Order": order_data()["Order"]})[0] == "none"
    with pytest.raises(MappingError, match="refund_description uses unknown placeholders"):
        parse_order_mapping("flow: f\ntarget: quickbooks\nrefunds:\n  description: 'Refund {sku}'\n")
