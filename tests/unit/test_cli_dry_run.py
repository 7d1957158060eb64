"""`switchyard dry-run`: what an event becomes under a flow's mapping, calling nobody."""

from __future__ import annotations

import json
from typing import Any

import pytest
from switchyard.catalog import load_catalog
from switchyard_cli.main import main

from tests.conftest import SAMPLES_DIR


def test_dry_run_order_to_cash_shows_customer_and_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "nopcommerce-to-quickbooks", str(SAMPLES_DIR / "nop_order_b2b.json")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["action"] == "order_to_cash"
    assert shown["plan"]["customer"]["DisplayName"] == "Acme Corp"
    assert shown["plan"]["document"]["entity"] == "SalesReceipt"  # the sample order is paid
    assert shown["plan"]["document"]["body"]["DocNumber"] == "1042"


def test_dry_run_cancellation_says_void_or_flag(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    event = json.loads((SAMPLES_DIR / "nop_status_processing.json").read_text())
    event["data"]["Order"]["OrderStatusId"] = 40
    path = tmp_path / "cancel.json"
    path.write_text(json.dumps(event))
    assert main(["dry-run", "nopcommerce-to-quickbooks", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "cancel"


def test_dry_run_flow_without_mapping_document_says_so(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    catalog = load_catalog()
    flows = {**catalog.flows, "quickbooks-to-nopcommerce": catalog.flows["quickbooks-to-nopcommerce"].model_copy(
        update={"mapping": None})}
    monkeypatch.setattr("switchyard.catalog.load_catalog", lambda: catalog.model_copy(update={"flows": flows}))

    assert main(["dry-run", "quickbooks-to-nopcommerce", str(SAMPLES_DIR / "qbo_item_updated.json")]) == 2
    assert "no mapping document" in capsys.readouterr().err


# --- quickbooks-to-nopcommerce: a notification names the Item; --item shows what that Item becomes -----------

ITEM = SAMPLES_DIR / "items" / "qbo_item_inventory.json"


def test_dry_run_stock_notification_says_what_is_read_and_written(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "quickbooks-to-nopcommerce", str(SAMPLES_DIR / "qbo_item_updated.json")]) == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["action"] == "set_stock"
    assert shown["plan"]["read"] == "GET /v3/company/9130/item/21"
    assert "result" not in shown["plan"]  # nothing read: the notification carries ids only


def test_dry_run_stock_with_the_item_shows_the_sku_and_the_whole_quantity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "quickbooks-to-nopcommerce", str(SAMPLES_DIR / "qbo_item_updated.json"),
                 "--item", str(ITEM)]) == 0

    result = json.loads(capsys.readouterr().out)["plan"]["result"]
    assert result == {"sku": "DESK-STD-01", "product": {"stock_quantity": 12}}  # " DESK-STD-01 ", 12.5 on hand


@pytest.mark.parametrize(("change", "expected"), [
    ({"Type": "Service"}, {"skipped": "not carried: Item.Type 'Service'"}),
    ({"Sku": "  "}, {"skipped": "the item has no key (match.item_key)"}),
    ({"TrackQtyOnHand": False}, {"skipped": "quantity on hand not tracked", "sku": "DESK-STD-01"}),
    ({"QtyOnHand": "lots"}, {"error": "malformed_item"}),
], ids=["service", "no-sku", "untracked", "bad-quantity"])
def test_dry_run_stock_with_an_item_the_flow_skips_says_why(change: dict[str, Any], expected: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    item = {**json.loads(ITEM.read_text()), **change}

    assert main(["dry-run", "quickbooks-to-nopcommerce", str(SAMPLES_DIR / "qbo_item_updated.json"),
                 "--item", write(tmp_path, item, "item.json")]) == 0

    result = json.loads(capsys.readouterr().out)["plan"]["result"]
    assert {key: result[key] for key in expected} == expected


def test_dry_run_unknown_flow_lists_the_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "no-such-flow", str(SAMPLES_DIR / "nop_order_b2b.json")]) == 2
    assert "nopcommerce-to-quickbooks" in capsys.readouterr().err


# --- the source's schema first: the answer ingest would give, never a traceback ------------------------


def write(tmp_path, document: Any, name: str = "event.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_dry_run_event_without_order_prints_the_422_ingest_answers(capsys, tmp_path) -> None:
    event = json.loads((SAMPLES_DIR / "nop_status_processing.json").read_text())
    del event["data"]["Order"]

    assert main(["dry-run", "nopcommerce-to-quickbooks", write(tmp_path, event)]) == 1

    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == 422
    assert shown["error"] == "invalid_event"
    assert shown["fields"][0]["field"] == "data.Order"


INVALID_EVENTS = {
    "nopcommerce-to-streak": {"type": "order.placed", "timestamp": "2026-11-20T09:15:02Z", "data": {}},
    "clarity-to-streak": {"type": "order.created", "timestamp": "2026-11-20T09:15:02Z", "data": {"orderId": 7}},
    "streak-to-clarity": [{"key": "box_1", "pipelineKey": "pl", "lastUpdatedTimestamp": 1795860000000}],
    "nopcommerce-to-quickbooks": {"type": "order.paid", "timestamp": "yesterday", "data": {}},
    "nopcommerce-to-bng": {"type": "order.placed", "timestamp": "2026-11-20T09:15:02Z", "data": {"Order": {}}},
    "quickbooks-to-nopcommerce": {"eventNotifications": [{"realmId": "9130", "dataChangeEvent": {"entities": [
        {"name": "Item", "id": "21", "operation": "Update", "lastUpdated": "not a time"}]}}]},
    "clarity-to-salesforce": {"type": "inventory.changed", "timestamp": "2026-11-20T09:15:02Z",
                              "data": {"sku": "S", "quantityOnHand": "many", "version": 1}},
    "streak-to-nopcommerce": [{"key": "contact_1", "lastUpdatedTimestamp": "soon", "emailAddresses": []}],
    "nopcommerce-products-to-quickbooks": {"type": "product.updated", "timestamp": "2026-11-21T10:04:12Z",
                                           "data": {"Product": {"Id": 31, "Name": "Desk", "Price": -1}}},
    "salesforce-to-clarity": {"type": "ContactChangeEvent", "timestamp": "2026-11-20T09:15:02Z",
                              "data": {"ChangeEventHeader": {"entityName": "Contact", "recordIds": [],
                                                             "changeType": "UPDATE"}}},
}


@pytest.mark.parametrize("flow", [f.name for f in load_catalog().flows.values() if f.mapping])
def test_dry_run_of_every_flow_validates_against_the_source_schema_first(flow: str, capsys, tmp_path) -> None:
    path = write(tmp_path, INVALID_EVENTS[flow])

    assert main(["dry-run", flow, path, "--event-type", "BOX_CHANGE_STAGE"]) == 1

    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["error"]) == (422, "invalid_event")
    assert shown["fields"][0]["field"]


@pytest.mark.parametrize("body", ['{"type": "order.placed", "type": "order.paid"}', "[" * 2000, '{"a": NaN}'])
def test_dry_run_body_ingest_refuses_as_json_prints_the_400(body: str, capsys, tmp_path) -> None:
    assert main(["dry-run", "nopcommerce-to-streak", write(tmp_path, body)]) == 1

    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["error"]) == (400, "malformed_body")


def test_dry_run_clarity_order_with_unlisted_payment_status_shows_the_deal(capsys, tmp_path) -> None:
    event = json.loads((SAMPLES_DIR / "clarity_order_consumer.json").read_text())
    event["data"]["paymentInfo"]["status"] = "captured"

    assert main(["dry-run", "clarity-to-streak", write(tmp_path, event)]) == 0

    plan = json.loads(capsys.readouterr().out)["plan"]
    assert "1004" not in plan["fields"]
    assert plan["comment"] == "Payment: paypal, captured"


def test_dry_run_clarity_status_outside_the_enum_prints_the_422(capsys, tmp_path) -> None:
    event = json.loads((SAMPLES_DIR / "clarity_order_consumer.json").read_text())
    event["data"]["status"] = "captured"

    assert main(["dry-run", "clarity-to-streak", write(tmp_path, event)]) == 1

    assert json.loads(capsys.readouterr().out)["fields"][0]["field"] == "data.status"


def test_dry_run_streak_delivery_shows_every_object(capsys, tmp_path) -> None:
    (box,) = json.loads((SAMPLES_DIR / "streak_box_change_stage.json").read_text())
    other = {**box, "key": "box_other", "stageKey": "5004"}

    assert main(["dry-run", "streak-to-clarity", write(tmp_path, [box, other]), "--event-type",
                 "BOX_CHANGE_STAGE"]) == 0

    shown = json.loads(capsys.readouterr().out)
    assert [entry["plan"]["status"] for entry in shown] == ["delivered", "cancelled"]


def test_dry_run_missing_or_unreadable_file_is_one_line_and_exit_2(capsys, tmp_path) -> None:
    assert main(["dry-run", "nopcommerce-to-streak", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.json'}: no such file"
    assert main(["dry-run", "nopcommerce-to-streak", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_cli_usage_errors_exit_2_without_a_traceback(capsys) -> None:
    assert main(["dlq", "list", "--bogus"]) == 2
    said = capsys.readouterr().err
    assert "No such option: --bogus" in said and "Traceback" not in said
    assert main(["dlq", "list", "--since", "yesterday-ish", "--stack", "S"]) == 2
    assert "not a time: 'yesterday-ish'" in capsys.readouterr().err
