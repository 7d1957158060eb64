"""Write-back mapping Streak → Clarity (streak-to-clarity.yaml), and its agreement with the forward
mapping (clarity-to-streak.yaml): the same master-data rules, stage lookups that round-trip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from switchyard.catalog import mapping_path
from switchyard.errors import MappingError
from switchyard.systems.clarity.sync_mapping import (
    ClaritySyncMapping,
    OrderStatusPlan,
    load_clarity_sync_mapping,
    parse_clarity_sync_mapping,
)
from switchyard.systems.streak.deal_mapping import load_deal_mapping, parse_deal_mapping

FORWARD = "clarity-to-streak.yaml"
REVERSE = "streak-to-clarity.yaml"
MASTER_FIELDS = ("email", "phone", "name", "status")


@pytest.fixture
def mapping() -> ClaritySyncMapping:
    return load_clarity_sync_mapping(REVERSE)


@pytest.fixture
def box(sample: Callable[..., Any]) -> dict[str, Any]:
    (streak_box,) = sample("streak_box_change_stage")
    return streak_box


@pytest.fixture
def contact(sample: Callable[..., Any]) -> dict[str, Any]:
    (streak_contact,) = sample("streak_contact_update")
    return streak_contact


def document(name: str) -> dict[str, Any]:
    return yaml.safe_load(mapping_path(name).read_text())


def reverse_with(**changes: Any) -> str:
    doc = document(REVERSE)
    doc.update(changes)
    return yaml.safe_dump(doc)


# --- order status -------------------------------------------------------------------------------------


def test_plan_order_status_clarity_box_reverse_lookup(mapping: ClaritySyncMapping, box: dict[str, Any]) -> None:
    plan = mapping.plan_order_status(box)

    assert plan == OrderStatusPlan(applies=True, order_id="CL-10001", status="delivered",
                                   note="Box moved in Streak (Clarity CL-10001 · Jane Doe Acme Corp)")


@pytest.mark.parametrize(("stage", "status"), [("5001", "pending"), ("5002", "processing"),
                                               ("5003", "delivered"), ("5004", "cancelled")])
def test_plan_order_status_each_stage_reverse_lookup(mapping: ClaritySyncMapping, box: dict[str, Any],
                                                     stage: str, status: str) -> None:
    assert mapping.plan_order_status({**box, "stageKey": stage}).status == status


@pytest.mark.parametrize("fields", [{"1001": "1042"}, {"1001": "ORD-CL-1"}, {}, {"1002": 12}, {"1001": None}])
def test_plan_order_status_non_clarity_box_filtered(mapping: ClaritySyncMapping, box: dict[str, Any],
                                                    fields: dict[str, Any]) -> None:
    plan = mapping.plan_order_status({**box, "fields": fields})

    assert plan == OrderStatusPlan(applies=False, order_id=None, status=None, note=None)


def test_plan_order_status_box_without_fields_filtered(mapping: ClaritySyncMapping, box: dict[str, Any]) -> None:
    del box["fields"]

    assert mapping.plan_order_status(box).applies is False


def test_plan_order_status_stage_without_clarity_status_leaves_the_order(mapping: ClaritySyncMapping,
                                                                          box: dict[str, Any]) -> None:
    # a stage the pipeline added, that no Clarity status stands for: the lookup's default ("*": null)
    # says so; Streak was answered 200 for it, so failing it later would lose nothing but a dead letter
    plan = mapping.plan_order_status({**box, "stageKey": "5999"})

    assert plan.applies is False
    assert plan.status is None


def test_plan_order_status_filtered_box_with_unmapped_stage_not_an_error(mapping: ClaritySyncMapping,
                                                                         box: dict[str, Any]) -> None:
    # another shop's box in an unknown stage is simply not ours: no dead letter
    assert mapping.plan_order_status({**box, "stageKey": "7777", "fields": {"1001": "1042"}}).applies is False


def test_mapping_events_actions(mapping: ClaritySyncMapping) -> None:
    assert mapping.events == {"BOX_CHANGE_STAGE": "update_order_status", "CONTACT_UPDATE": "update_customer"}
    assert mapping.source == "streak"


# --- customer -----------------------------------------------------------------------------------------


def test_plan_customer_master_rules_only_name_written(mapping: ClaritySyncMapping, contact: dict[str, Any]) -> None:
    # email and phone are Clarity's (the shop login is the truth); names may be changed from both sides
    assert mapping.plan_customer(contact) == {"firstName": "Janet", "lastName": "Doe"}


def test_plan_customer_names_trimmed_empty_to_null(mapping: ClaritySyncMapping, contact: dict[str, Any]) -> None:
    plan = mapping.plan_customer({**contact, "givenName": "  Janet ", "familyName": "   "})

    assert plan == {"firstName": "Janet", "lastName": None}


def test_plan_customer_streak_master_of_email_and_phone_written_normalised(contact: dict[str, Any]) -> None:
    mapping = parse_clarity_sync_mapping(reverse_with(master={"email": "streak", "phone": "both",
                                                              "name": "clarity", "status": "both"}))

    plan = mapping.plan_customer({**contact, "emailAddresses": [" Janet@Private.Example ", "second@x.example"],
                                  "phoneNumbers": [" +1 555 0123 "]})

    assert plan == {"email": "janet@private.example", "phone": "+1 555 0123"}
    assert mapping.source_may_write("email") and not mapping.source_may_write("name")


def test_plan_customer_no_email_address_none(contact: dict[str, Any]) -> None:
    mapping = parse_clarity_sync_mapping(reverse_with(master={"email": "both"}))

    assert mapping.plan_customer({**contact, "emailAddresses": [], "phoneNumbers": []})["email"] is None


def test_source_may_write_reverse_document(mapping: ClaritySyncMapping) -> None:
    assert {field: mapping.source_may_write(field) for field in MASTER_FIELDS} == {
        "email": False, "phone": False, "name": True, "status": True}


def test_source_may_write_field_not_in_master_defaults_to_both() -> None:
    mapping = parse_clarity_sync_mapping(reverse_with(master={"email": "clarity"}))

    assert mapping.source_may_write("phone") is True
    assert mapping.source_may_write("email") is False


@pytest.mark.parametrize("master", [{"email": "salesforce"}, {"name": "Streak"}, {"phone": ""}])
def test_parse_clarity_sync_mapping_invalid_master_value_mapping_error(master: dict[str, str]) -> None:
    with pytest.raises(MappingError, match="master"):
        parse_clarity_sync_mapping(reverse_with(master=master), name=REVERSE)


def test_parse_clarity_sync_mapping_unknown_master_field_mapping_error() -> None:
    with pytest.raises(MappingError, match="master"):
        parse_clarity_sync_mapping(reverse_with(master={"address": "clarity"}))


@pytest.mark.parametrize("master", [{"email": "nopcommerce"}, {"status": "clarity-ish"}])
def test_parse_deal_mapping_invalid_master_value_mapping_error(master: dict[str, str]) -> None:
    doc = document(FORWARD)
    doc["master"] = master

    with pytest.raises(MappingError, match="master"):
        parse_deal_mapping(yaml.safe_dump(doc), name=FORWARD)


def test_parse_clarity_sync_mapping_event_without_section_mapping_error() -> None:
    doc = document(REVERSE)
    del doc["customer"]

    with pytest.raises(MappingError, match="customer"):
        parse_clarity_sync_mapping(yaml.safe_dump(doc))


# --- the two directions agree -------------------------------------------------------------------------


def test_master_rules_forward_and_reverse_documents_equal() -> None:
    # Change one side only and a field could ping-pong between the systems: both must say the same
    forward, reverse = document(FORWARD)["master"], document(REVERSE)["master"]

    assert forward == reverse
    assert set(forward) == set(MASTER_FIELDS)  # every field explicit, no silent "both" default


def test_master_rules_compiled_mappings_equal() -> None:
    assert load_deal_mapping(FORWARD).doc.master == load_clarity_sync_mapping(REVERSE).doc.master


def test_master_rules_each_field_writable_from_at_least_one_side() -> None:
    forward, reverse = load_deal_mapping(FORWARD), load_clarity_sync_mapping(REVERSE)

    for field in MASTER_FIELDS:
        assert forward.source_may_write(field) or reverse.source_may_write(field), field


def test_stage_lookups_round_trip() -> None:
    # a status written to Clarity from a stage maps back to that same stage (no stage ping-pong)
    stage_by_status = document(FORWARD)["lookups"]["stage_by_status"]
    status_by_stage = document(REVERSE)["lookups"]["status_by_stage"]

    status_by_stage = {stage: status for stage, status in status_by_stage.items() if stage != "*"}
    for stage, status in status_by_stage.items():
        assert stage_by_status[status] == stage
    assert set(status_by_stage) == set(stage_by_status.values())
