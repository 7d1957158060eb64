"""Golden files: what every sample webhook becomes under each flow's mapping (dry run).

Every flow is run on every sample of its source (``nop_*`` nopCommerce, ``clarity_*`` Clarity,
``streak_<event>`` Streak deliveries). Regenerate after an intended mapping change with
``UPDATE_GOLDEN=1 pytest tests/unit/test_mapping_golden.py`` and review the diff like code.
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
from switchyard.mapping import dry_run

from tests.conftest import REPO_ROOT, SAMPLES_DIR, sample_names

FLOW = "nopcommerce-to-streak"
GOLDEN_DIR = REPO_ROOT / "tests" / "golden" / FLOW
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
PREFIX = {"nopcommerce": "nop_", "clarity": "clarity_", "streak": "streak_", "quickbooks": "qbo_",
          "salesforce": "salesforce_"}


def sample_event_type(name: str) -> str:
    document = json.loads((SAMPLES_DIR / f"{name}.json").read_text())
    if isinstance(document, list):  # a Streak delivery: the event type is in its file name
        return name.removeprefix("streak_").upper()
    return str(document["type"])


def cases() -> list[tuple[str, str]]:
    """Every sample of a flow's source whose event type the flow subscribes to."""
    catalog = load_catalog()
    return [(flow, name) for flow, config in catalog.flows.items() for name in sample_names()
            if name.startswith(PREFIX[config.source]) and sample_event_type(name) in config.events]


def plan_text(flow: str, name: str) -> str:
    config = load_catalog().flows[flow]
    document = json.loads((SAMPLES_DIR / f"{name}.json").read_text(), parse_float=Decimal)
    if isinstance(document, list):  # a Streak delivery: the event type is in its file name
        event_type, data = name.removeprefix("streak_").upper(), document[0]
    else:
        event_type, data = document["type"], document["data"]
    try:
        action, plan = dry_run(config.target, config.mapping_document, event_type, data)
    except DeliveryError as exc:
        return json.dumps({"error": exc.reason}, indent=2) + "\n"
    shown = dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan
    return json.dumps({"action": action, "plan": shown}, sort_keys=True, indent=2, default=str) + "\n"


def test_golden_every_case_has_a_golden_file_and_no_stale_ones() -> None:
    if UPDATE:
        pytest.skip("regenerating")
    expected = {f"{flow}/{name}.json" for flow, name in cases()}
    actual = {p.relative_to(REPO_ROOT / "tests" / "golden").as_posix()
              for p in (REPO_ROOT / "tests" / "golden").rglob("*.json")}
    assert actual == expected


@pytest.mark.parametrize(("flow", "name"), cases(), ids=lambda v: v)
def test_golden_dry_run_plan_matches_golden_file(flow: str, name: str) -> None:
    actual = plan_text(flow, name)
    golden_file = REPO_ROOT / "tests" / "golden" / flow / f"{name}.json"
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
                                    "match_on": ["name", "domain"]}
    assert plan["task"]["due_date_ms"] == 1_795_166_100_000 + 3 * 86_400_000


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
    assert golden("nop_status_processing") == {"order_key": "1042", "stage_key": "5002"}


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
