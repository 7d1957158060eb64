"""Golden files: what every sample webhook becomes under the nopcommerce-to-streak mapping (dry run).

Regenerate after an intended mapping change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_mapping_golden.py``
and review the diff like code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from switchyard.mapping.streak_deals import DealMapping, load_deal_mapping

from tests.conftest import REPO_ROOT, SAMPLES_DIR, sample_names

FLOW = "nopcommerce-to-streak"
GOLDEN_DIR = REPO_ROOT / "tests" / "golden" / FLOW
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def dry_run(mapping: DealMapping, sample_path: Path) -> str:
    document = json.loads(sample_path.read_text(), parse_float=Decimal)
    action = mapping.events[document["type"]]
    plan: Any = (mapping.plan_deal(document["data"]) if action == "upsert_deal"
                 else mapping.plan_stage_change(document["data"]))
    return json.dumps(dataclasses.asdict(plan), sort_keys=True, indent=2) + "\n"


@pytest.fixture(scope="module")
def mapping() -> DealMapping:
    return load_deal_mapping(f"{FLOW}.yaml")


def test_golden_every_sample_has_a_golden_file() -> None:
    if UPDATE:
        pytest.skip("regenerating")
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.json")) == sample_names()


@pytest.mark.parametrize("name", sample_names())
def test_golden_dry_run_plan_matches_golden_file(mapping: DealMapping, name: str) -> None:
    actual = dry_run(mapping, SAMPLES_DIR / f"{name}.json")
    golden = GOLDEN_DIR / f"{name}.json"

    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    assert golden.is_file(), f"no golden file {golden}; run with UPDATE_GOLDEN=1"
    assert actual == golden.read_text()


# Spot checks of what the golden files must say (so a wrong regeneration cannot slip through).


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN_DIR / f"{name}.json").read_text())


def test_golden_b2b_order_streak_formats() -> None:
    plan = golden("nop_order_b2b")

    assert plan["create"] is True
    assert plan["stage_key"] == "5001"
    assert plan["fields"]["1003"] == 1_795_166_100_000  # DATE: epoch ms of 2026-11-20T09:15:00Z
    assert plan["fields"]["1004"] == "9003"  # DROPDOWN: item key of "Paid", not the label
    assert plan["fields"]["1002"] == 1299
    assert plan["contact"]["email"] == "jane.doe@acme-corp.example"  # trimmed + lower-cased
    assert plan["organization"] == {"name": "Acme Corp", "domain": "acme-corp.example"}
    assert plan["task"]["due_date_ms"] == 1_795_166_100_000 + 3 * 86_400_000


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
