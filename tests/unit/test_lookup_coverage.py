"""One value must not kill a deal: per lookup, a declared default, or ingest rejects the value (422)
before it is accepted. Never accepted-then-failed for a value the edge could have judged."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter
from switchyard.catalog import load_catalog, mapping_path
from switchyard.envelopes import validate_envelope
from switchyard.errors import SchemaError
from switchyard.mapping.lookup_coverage import uncovered_lookups
from switchyard.mapping.rules import compile_rules
from switchyard.sources import event_models
from switchyard.systems.streak.deal_mapping import load_deal_mapping

from tests.conftest import SAMPLES_DIR

MAPPED_FLOWS = [flow for flow in load_catalog().flows.values() if flow.mapping]


def schemas_for(source: str, document: dict[str, Any]) -> dict[str, Any]:
    return {event_type: TypeAdapter(event_models()[source][event_type]).json_schema()
            for event_type in document.get("events", {}) if event_type in event_models()[source]}


@pytest.mark.parametrize("flow", MAPPED_FLOWS, ids=lambda flow: flow.name)
def test_every_lookup_of_every_flow_has_a_default_or_is_judged_at_the_edge(flow) -> None:
    document = yaml.safe_load(mapping_path(flow.mapping_document).read_text())

    assert uncovered_lookups(document, schemas_for(flow.source, document)) == []


def test_coverage_finds_an_enum_value_the_table_does_not_list() -> None:
    document = yaml.safe_load(mapping_path("nopcommerce-to-streak.yaml").read_text())
    del document["lookups"]["payment_status_item"][35]  # PartiallyRefunded: nopCommerce sends it

    problems = uncovered_lookups(document, schemas_for("nopcommerce", document))

    # both rules reading it: the placed order's payment field, and a later change's (the deal keeps up)
    assert problems == [f"{where}.Payment status: lookup 'payment_status_item' lists no entry for [35] (values the "
                        "source model allows for Order.PaymentStatusId) and has no default ('*')"
                        for where in ("box.fields", "stage_change.fields")]


def test_coverage_finds_a_free_text_field_without_default() -> None:
    document = yaml.safe_load(mapping_path("clarity-to-streak.yaml").read_text())
    del document["lookups"]["payment_status_item"]["*"]

    problems = uncovered_lookups(document, schemas_for("clarity", document))

    assert [problem.split(": lookup 'payment_status_item' has no default")[0] for problem in problems] == [
        "box.fields.1004", "stage_change.fields.1004"]


def test_coverage_applies_the_transforms_before_the_lookup() -> None:
    # Clarity's order status is an enum; upper-casing it before the lookup misses every entry
    document = yaml.safe_load(mapping_path("clarity-to-streak.yaml").read_text())
    document["stage_change"]["stage"]["transforms"].insert(0, "upper")

    (problem,) = uncovered_lookups(document, schemas_for("clarity", document))

    assert problem.startswith("stage_change.stage: lookup 'stage_by_status' lists no entry for ['cancelled'")


def clarity_order(payment_status: str) -> dict[str, Any]:
    document = json.loads((SAMPLES_DIR / "clarity_order_consumer.json").read_text())
    document["data"]["paymentInfo"]["status"] = payment_status
    return document


def test_clarity_order_with_unlisted_payment_status_becomes_a_deal_without_the_dropdown() -> None:
    # Given a Clarity order whose payment status the dropdown lookup does not list
    document = clarity_order("captured")
    assert validate_envelope("clarity", document) == "order.created"  # ingest accepts it...

    # ...so the mapping must not fail it: the deal is planned, the dropdown left empty
    plan = load_deal_mapping("clarity-to-streak.yaml").plan_deal(document["data"])

    assert "1004" not in plan.fields
    assert plan.fields["1001"] == "CL-10002"
    assert plan.comment == "Payment: paypal, captured"
    assert load_deal_mapping("clarity-to-streak.yaml").plan_deal(clarity_order("Paid")["data"]).fields["1004"] == "9003"


def test_clarity_order_status_outside_the_source_enum_is_rejected_at_the_edge() -> None:
    # the stage lookup has no default: the source model's enum is what ingest judges
    document = clarity_order("paid")
    document["data"]["status"] = "captured"

    with pytest.raises(SchemaError) as raised:
        validate_envelope("clarity", document)

    assert raised.value.status_code == 422
    assert raised.value.fields[0]["field"] == "data.status"


@pytest.mark.parametrize("value", ["a", "b", "zzz", 7, None])
def test_lookup_default_maps_every_unlisted_value(value: Any) -> None:
    lookups = {"t": {"a": "A", "b": None, "*": "OTHER"}}
    rules = [("x", {"path": "v", "transforms": [{"lookup": "t"}]}),
             ("y", {"path": "v", "transforms": ["string", {"lookup": "t"}], "default": "D"})]
    evaluate = compile_rules(copy.deepcopy(rules), lookups)

    data = {"v": value}
    expected = {"a": "A", "b": None, None: None}.get(value, "OTHER")  # type: ignore[call-overload]
    assert evaluate(data)[0] == expected
