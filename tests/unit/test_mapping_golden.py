"""Golden files: what every sample webhook becomes under each flow's mapping (dry run).

Every flow is run on every sample of its source (``nop_*`` nopCommerce, ``clarity_*`` Clarity,
``streak_<event>`` Streak deliveries, ``qbo_*`` QuickBooks notifications). A variant document
(``tests/golden/variants/<flow>.<name>.yaml``) is another mapping of a flow, run on the same samples: it
shows what a user's own choices (written in YAML only) make of them. Regenerate after an intended mapping
change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_mapping_golden.py`` and review the diff like code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from decimal import Decimal
from typing import Any

import pytest
from switchyard.catalog import load_catalog
from switchyard.errors import DeliveryError
from switchyard.ingest import split_delivery
from switchyard.mapping import dry_run
from switchyard.systems.quickbooks import dry_run as quickbooks_dry_run
from switchyard.systems.quickbooks.order_mapping import parse_order_mapping
from switchyard.webhook_json import decode

from tests.conftest import REPO_ROOT, SAMPLES_DIR, sample_names

FLOW = "nopcommerce-to-streak"
GOLDEN_DIR = REPO_ROOT / "tests" / "golden" / FLOW
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
PREFIX = {"nopcommerce": "nop_", "clarity": "clarity_", "streak": "streak_", "quickbooks": "qbo_",
          "salesforce": "salesforce_", "bng": "bng_"}
VARIANTS_DIR = REPO_ROOT / "tests" / "golden" / "variants"
VARIANTS = {path.stem: path for path in sorted(VARIANTS_DIR.glob("*.yaml"))}  # "<flow>.<name>" -> document


def sample_event_type(name: str) -> str | None:
    """The sample's event type; None for a vendor's own delivery format (QuickBooks), which ingest splits."""
    document = json.loads((SAMPLES_DIR / f"{name}.json").read_text())
    if isinstance(document, list):  # a Streak delivery: the event type is in its file name
        return name.removeprefix("streak_").upper()
    return str(document["type"]) if "type" in document else None


def cases() -> list[tuple[str, str]]:
    """Every sample of a flow's source whose event type the flow subscribes to."""
    catalog = load_catalog()
    return [(flow, name) for flow, config in catalog.flows.items() if config.mapping for name in sample_names()
            if name.startswith(PREFIX[config.source]) and sample_event_type(name) in (*config.events, None)]


def variant_cases() -> list[tuple[str, str]]:
    """Every sample of a variant's flow's source whose event type the flow subscribes to (as ``cases``)."""
    catalog = load_catalog()
    flows = {variant: catalog.flows[variant.split(".")[0]] for variant in VARIANTS}
    return [(variant, name) for variant, config in flows.items() for name in sample_names()
            if name.startswith(PREFIX[config.source]) and sample_event_type(name) in (*config.events, None)]


def sample_event(flow: str, name: str) -> tuple[str, Any]:
    """(event type, data) of a sample, as the flow's worker would get it."""
    config = load_catalog().flows[flow]
    text = (SAMPLES_DIR / f"{name}.json").read_text()
    document = json.loads(text, parse_float=Decimal)
    if isinstance(document, list):  # a Streak delivery: the event type is in its file name
        return name.removeprefix("streak_").upper(), document[0]
    if "type" in document:
        return document["type"], document["data"]
    source = load_catalog().sources[config.source]  # a vendor's own delivery format (QuickBooks): as ingest splits it
    (event, *_), _ignored = split_delivery(config.source, source.format, decode(text.encode()), event_type="",
                                           routes={event_type: {flow: ""} for event_type in config.events}, body=text)
    return event.event_type, json.loads(event.body, parse_float=Decimal)["data"]


def shown(action: str, plan: Any) -> str:
    plain = dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan
    return json.dumps({"action": action, "plan": plain}, sort_keys=True, indent=2, default=str) + "\n"


def variant_plan_text(variant: str, name: str) -> str:
    flow = variant.split(".")[0]
    mapping = parse_order_mapping(VARIANTS[variant].read_text(), name=VARIANTS[variant].name)  # QuickBooks only, so far
    event_type, data = sample_event(flow, name)
    try:
        return shown(*quickbooks_dry_run.plan(mapping, event_type, data))
    except DeliveryError as exc:
        return json.dumps({"error": exc.reason}, indent=2) + "\n"


def plan_text(flow: str, name: str) -> str:
    config = load_catalog().flows[flow]
    event_type, data = sample_event(flow, name)
    try:
        action, plan = dry_run(config.target, config.mapping_document, event_type, data, source=config.source)
    except DeliveryError as exc:
        return json.dumps({"error": exc.reason}, indent=2) + "\n"
    return shown(action, plan)


def test_golden_every_case_has_a_golden_file_and_no_stale_ones() -> None:
    if UPDATE:
        pytest.skip("regenerating")
    expected = ({f"{flow}/{name}.json" for flow, name in cases()}
                | {f"variants/{variant}/{name}.json" for variant, name in variant_cases()})
    actual = {p.relative_to(REPO_ROOT / "tests" / "golden").as_posix()
              for p in (REPO_ROOT / "tests" / "golden").rglob("*.json")}
    assert actual == expected


def test_golden_every_flow_is_dry_run_on_a_sample_without_error() -> None:
    planned = {flow for flow, name in cases() if "error" not in json.loads(plan_text(flow, name))}

    # every flow with a mapping document (bng-to-nopcommerce has none: it reads BNG and ends a wait)
    assert planned == {name for name, config in load_catalog().flows.items() if config.mapping}


@pytest.mark.parametrize(("flow", "name"), cases(), ids=lambda v: v)
def test_golden_dry_run_plan_matches_golden_file(flow: str, name: str) -> None:
    actual = plan_text(flow, name)
    golden_file = REPO_ROOT / "tests" / "golden" / flow / f"{name}.json"
    if UPDATE:
        golden_file.parent.mkdir(parents=True, exist_ok=True)
        golden_file.write_text(actual)
    assert golden_file.is_file(), f"no golden file {golden_file}; run with UPDATE_GOLDEN=1"
    assert actual == golden_file.read_text()


@pytest.mark.parametrize(("variant", "name"), variant_cases(), ids=lambda v: v)
def test_golden_variant_dry_run_plan_matches_golden_file(variant: str, name: str) -> None:
    actual = variant_plan_text(variant, name)
    golden_file = VARIANTS_DIR / variant / f"{name}.json"
    if UPDATE:
        golden_file.parent.mkdir(parents=True, exist_ok=True)
        golden_file.write_text(actual)
    assert golden_file.is_file(), f"no golden file {golden_file}; run with UPDATE_GOLDEN=1"
    assert actual == golden_file.read_text()


# Spot checks of what the golden files must say (so a wrong regeneration cannot slip through).


def golden(name: str, flow: str = FLOW) -> dict[str, Any]:
    return json.loads((REPO_ROOT / "tests" / "golden" / flow / f"{name}.json").read_text())["plan"]


def test_golden_b2b_order_streak_formats() -> None:
    plan = golden("nop_order_b2b")

    assert plan["create"] is True
    assert plan["stage_key"] == "5001"
    assert plan["fields"]["1003"] == 1_795_166_100_000  # DATE: epoch ms of 2026-11-20T09:15:00Z
    assert plan["fields"]["1004"] == "9003"  # DROPDOWN: item key of "Paid", not the label
    assert plan["fields"]["1002"] == 1299
    assert plan["contact"]["email"] == "jane.doe@acme-corp.example"  # trimmed + lower-cased
    # matched on name and domain: a shared mail domain alone is not the same company
    assert plan["organization"] == {"name": "Acme Corp", "domain": "acme-corp.example",
                                    "match_on": ["name", "domain"],
                                    "addresses": ["1 Main St, Springfield, 12345, US"],  # billing, one line
                                    "fields": {}}  # no phone, no VAT number on this order
    assert plan["task"]["due_date_ms"] == 1_795_166_100_000 + 3 * 86_400_000


def test_golden_addresses_are_parsed_into_the_fields_the_mapping_names() -> None:
    fields = golden("nop_order_us_state")["fields"]

    # billing: street lines joined, the state's abbreviation, CountryId 1 looked up as US
    assert [fields[key] for key in ("1021", "1022", "1023", "1024", "1025")] == [
        "200 Hudson St Apt 5", "New York", "NY", "10013", "US"]
    # shipping: no abbreviation sent, so the province's name
    assert [fields[key] for key in ("1026", "1027", "1028", "1029", "1030")] == [
        "15 Front St W", "Toronto", "Ontario", "M5J 2N1", "CA"]
    # a part the order lacks sets no field (the b2b order's billing address has no state)
    assert "1023" not in golden("nop_order_b2b")["fields"]
    clarity = golden("clarity_order_b2b", "clarity-to-streak")
    assert clarity["addresses"]["billing"]["street"] == "1 Main St"
    assert clarity["organization"]["addresses"] == ["1 Main St, Springfield, 12345, US"]


def test_golden_contact_custom_fields_are_streak_contact_properties() -> None:
    contact = golden("nop_order_us_state")["contact"]

    # a list property gets the value as its one entry
    assert contact["fields"] == {"phoneNumbers": ["+1 212 555 0146"], "other": "nopCommerce customer 81"}
    assert golden("clarity_order_b2b", "clarity-to-streak")["organization"]["fields"] == {
        "other": "Clarity customer C-501"}


def test_golden_deals_are_assigned_by_the_mappings_rules() -> None:
    # Acme Corp: the key-account rep, for the box and its task
    b2b = golden("nop_order_b2b")
    assert b2b["assignee"] == b2b["task"]["assignee_email"] == "kim.accounts@example.com"
    # store 2 is the European team's, whatever the country; the hash of order 2046 picks Dan
    assert golden("nop_order_us_state")["assignee"] == "dan.europe@example.com"
    assert golden("nop_order_small")["assignee"] is None  # filtered: no deal, no rep
    assert golden("clarity_order_consumer", "clarity-to-streak")["assignee"] == "ben.north@example.com"


def test_golden_foreign_currency_order_total_is_in_the_currency_it_is_labelled_with() -> None:
    plan = golden("nop_order_consumer")

    # OrderTotal 240.50 is in the store currency; at CurrencyRate 0.92 the customer paid 221.26 EUR
    assert (plan["fields"]["1002"], plan["fields"]["1006"]) == (221.26, "EUR")


def test_golden_small_order_without_company_filtered() -> None:
    plan = golden("nop_order_small")

    assert plan["create"] is False
    assert plan["organization"] is None


def test_golden_consumer_order_has_no_organization() -> None:
    plan = golden("nop_order_consumer")

    assert plan["create"] is True  # 240.50 >= 100
    assert plan["organization"] is None
    assert plan["box_name"] == "Order 1043 · Sam Lee"


def test_golden_status_change_moves_to_processing() -> None:
    assert golden("nop_status_processing") == {
        "order_key": "1042", "stage_key": "5002",
        "fields": {"1004": "9003"},  # the payment status follows the order
        "timeline": "Order status: Processing · Payment: Paid · Shipping: shipped"}


def test_golden_clarity_order_becomes_a_deal_with_payment_comment_without_card_digits() -> None:
    plan = golden("clarity_order_b2b", "clarity-to-streak")

    assert plan["stage_key"] == "5001" and plan["fields"]["1001"] == "CL-10001"
    assert plan["fields"]["1002"] == 1299 and plan["fields"]["1003"] == 1_795_269_900_000
    assert plan["contact"]["email"] == "jane.doe@acme-corp.example"  # " Jane.Doe@Acme-Corp.example "
    assert plan["contact"]["customer_key"] == "C-501"
    assert plan["comment"] == "Payment: card, paid" and "4242" not in json.dumps(plan)


def test_golden_streak_box_moved_maps_back_to_a_clarity_status() -> None:
    plan = golden("streak_box_change_stage", "streak-to-clarity")

    assert plan == {"applies": True, "order_id": "CL-10001", "status": "delivered",
                    "note": "Box moved in Streak (Clarity CL-10001 · Jane Doe Acme Corp)"}


def test_golden_streak_contact_edit_writes_back_only_fields_streak_may_own() -> None:
    plan = golden("streak_contact_update", "streak-to-clarity")

    assert plan == {"firstName": "Janet", "lastName": "Doe"}  # email and phone: Clarity is master


# nopcommerce-to-quickbooks: the shipped document, and the variant that sets every choosable field in YAML

QBO = "nopcommerce-to-quickbooks"
CUSTOM = "variants/nopcommerce-to-quickbooks.custom"


def test_golden_quickbooks_addresses_carry_the_state_or_province() -> None:
    customer = golden("nop_order_us_state", QBO)["customer"]

    assert customer["BillAddr"] == {"Line1": "200 Hudson St", "Line2": "Apt 5", "City": "New York",
                                    "CountrySubDivisionCode": "NY", "PostalCode": "10013", "Country": "US"}
    # no abbreviation sent, and the shipped state_provinces table lists no id: the province's name
    assert customer["ShipAddr"]["CountrySubDivisionCode"] == "Ontario"
    assert golden("nop_order_us_state", CUSTOM)["customer"]["ShipAddr"]["CountrySubDivisionCode"] == "ON"  # the table


def test_golden_quickbooks_display_name_from_other_fields_in_yaml() -> None:
    assert golden("nop_order_us_state", QBO)["customer"]["DisplayName"] == "Maria Garcia"
    assert golden("nop_order_us_state", CUSTOM)["customer"]["DisplayName"] == "Garcia, Maria"
    assert golden("nop_order_b2b", CUSTOM)["customer"]["DisplayName"] == "Doe, Jane"  # not the company now
    assert golden("nop_order_consumer", CUSTOM)["customer"]["DisplayName"] == "Lee, Sam (EUR)"  # suffix kept


def test_golden_quickbooks_class_department_and_custom_fields_from_yaml() -> None:
    body = golden("nop_order_us_state", CUSTOM)["document"]["body"]

    assert body["ClassRef"] == {"value": "200"}  # store 2 in the class_by_store lookup
    assert body["DepartmentRef"] == {"value": "7"}
    assert body["CustomerMemo"] == {"value": "Thank you for order 2046!"}
    assert [(f["DefinitionId"], f["Name"], f["StringValue"]) for f in body["CustomField"]] == [
        ("1", "Sales channel", "Web store 2"),
        ("2", "Payment method", "Payments.PayPalCommerce.Standar"),  # QuickBooks keeps 31 characters
        ("3", "VAT number", "US-987654321")]
    assert body["ShipAddr"]["City"] == "Toronto"
    assert not {"ClassRef", "DepartmentRef", "CustomField", "CustomerMemo", "ShipAddr"} & set(
        golden("nop_order_us_state", QBO)["document"]["body"])  # the shipped document sets none of them


def test_golden_quickbooks_line_description_tax_code_and_class_from_yaml() -> None:
    lines = golden("nop_order_us_state", CUSTOM)["document"]["body"]["Line"]

    assert [line["Description"] for line in lines] == ["Standing desk (DESK-STD-01)", "Monitor arm (ARM-MON-02)",
                                                       "Delivery: Ground (UPS)"]
    details = [line["SalesItemLineDetail"] for line in lines]
    assert [d["TaxCodeRef"]["value"] for d in details] == ["TAX", "TAX", "NON"]  # products / shipping
    assert [d.get("ClassRef") for d in details] == [{"value": "200"}, {"value": "200"}, None]
    shipped = golden("nop_order_us_state", QBO)["document"]["body"]["Line"]
    assert [line["Description"] for line in shipped] == ["Standing desk", "Monitor arm", "Shipping (Ground (UPS))"]


def test_golden_quickbooks_private_note_of_a_user_rule_still_proves_the_order() -> None:
    note = golden("nop_order_consumer", CUSTOM)["document"]["body"]["PrivateNote"]

    assert note.startswith("Web order 1043, paid by")
    assert "OrderGuid a3e5d9c2-1f44-4f0e-8d2a-7e6b5c4d3e21" in note  # added: the rule left it out
    assert "CurrencyRate 0.92" in note  # the conversion is still named


def test_golden_quickbooks_variant_keeps_the_accounting() -> None:
    for name in ("nop_order_b2b", "nop_order_consumer", "nop_order_us_state"):
        shipped, custom = golden(name, QBO)["document"]["body"], golden(name, CUSTOM)["document"]["body"]
        assert [line["Amount"] for line in custom["Line"]] == [line["Amount"] for line in shipped["Line"]], name
        assert (custom["DocNumber"], custom["TxnTaxDetail"]) == (shipped["DocNumber"], shipped["TxnTaxDetail"])
        assert custom.get("ExchangeRate") == shipped.get("ExchangeRate")


def test_golden_stock_notification_plan_reads_the_item_and_writes_stock() -> None:
    plan = golden("qbo_item_updated", "quickbooks-to-nopcommerce")

    assert plan["read"] == "GET /v3/company/9130/item/21"
    assert plan["match"] == {"nopcommerce_product_sku": {"path": "Sku", "transforms": ["trim", "empty_to_null"]}}
    assert plan["write"]["stock_quantity"] == {"path": "QtyOnHand"}
