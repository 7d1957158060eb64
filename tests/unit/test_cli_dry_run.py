"""`switchyard dry-run`: what an event becomes under a flow's mapping, calling nobody."""

from __future__ import annotations

import json

import pytest
from switchyard_local.cli import main

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


def test_dry_run_flow_without_mapping_document_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "quickbooks-to-nopcommerce", str(SAMPLES_DIR / "nop_order_b2b.json")]) == 2
    assert "no mapping document" in capsys.readouterr().err


def test_dry_run_unknown_flow_lists_the_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "no-such-flow", str(SAMPLES_DIR / "nop_order_b2b.json")]) == 2
    assert "nopcommerce-to-quickbooks" in capsys.readouterr().err
