"""Stages, fields and dropdown items named in a Streak mapping document as the pipeline names them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from switchyard.catalog import load_catalog, mapping_path
from switchyard.errors import MappingError
from switchyard.mapping import mapping_problems
from switchyard.systems.streak import deal_mapping
from switchyard.systems.streak.deal_mapping import (
    DealMapping,
    compile_deal_mapping,
    load_deal_mapping,
    parse_deal_mapping,
    pipeline_copy,
)
from switchyard.systems.streak.schema import PipelineSchema
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, FieldSpec, PipelineSpec, StageSpec

from tests.conftest import SAMPLES_DIR, sample_names, streak_document_in_keys

SHIPPED = "nopcommerce-to-streak.yaml"


def named_document() -> dict[str, Any]:
    return yaml.safe_load(mapping_path(SHIPPED).read_text())


def compiled(document: dict[str, Any], pipeline: PipelineSchema | None = None) -> DealMapping:
    return compile_deal_mapping(document, name="test.yaml", pipeline=pipeline)


def failure(change: Callable[[dict[str, Any]], None]) -> str:
    document = named_document()
    change(document)
    with pytest.raises(MappingError) as raised:
        compiled(document)
    return str(raised.value)


def other_keys_pipeline() -> PipelineSpec:
    """The demo pipeline's stages, fields and items under other keys: another team's copy of it."""
    return PipelineSpec(
        key="pl_other", name="Orders (EU team)",
        stages=tuple(StageSpec(str(int(s.key) + 100), s.name) for s in DEMO_PIPELINE.stages),
        fields=tuple(FieldSpec(str(int(f.key) + 100), f.name, f.type,
                               tuple((str(int(k) + 100), n) for k, n in f.items)) for f in DEMO_PIPELINE.fields))


# --- the shipped document -----------------------------------------------------------------------------------


def test_pipeline_copy_is_what_the_sandbox_pipeline_answers() -> None:
    # the copy dry-run and synth check names against is the demo pipeline's GET /api/v1/pipelines/{key}
    assert json.loads(mapping_path("streak-pipeline.json").read_text()) == DEMO_PIPELINE.to_api()


def test_shipped_document_names_resolve_to_the_pipelines_keys() -> None:
    mapping = load_deal_mapping(SHIPPED)
    doc = mapping.doc

    assert mapping.names_used
    assert doc.order_key_field == "1001"
    assert set(doc.box.fields) == {"1001", "1003", "1004", "1005"}
    assert (doc.box.amount.field, doc.box.amount.currency_field) == ("1002", "1006")  # type: ignore[union-attr]
    assert doc.addresses["billing"].fields == {"street": "1021", "city": "1022", "state": "1023",
                                               "postal_code": "1024", "country": "1025"}
    assert doc.addresses["shipping"].fields["country"] == "1030"
    assert doc.lookups["stage_by_order_status"] == {10: "5001", 20: "5002", 30: "5003", 40: "5004"}
    assert doc.lookups["payment_status_item"] == {10: "9001", 20: "9002", 30: "9003", 35: "9004", 40: "9005",
                                                  50: "9006"}
    assert set(doc.stage_change.fields) == {"1004"}
    assert doc.stage_change.lifecycle == ["5001", "5002", "5003", "5004"]
    assert doc.lookups["order_status_line"][10] == "Order status: Pending"  # a table that yields text: untouched


@pytest.mark.parametrize("name", [n for n in sample_names() if n.startswith("nop_order")])
def test_named_and_keyed_documents_make_the_same_plans(name: str) -> None:
    data = json.loads((SAMPLES_DIR / f"{name}.json").read_text())["data"]
    named, keyed = load_deal_mapping(SHIPPED), compiled(streak_document_in_keys(SHIPPED))

    assert not keyed.names_used
    assert named.plan_deal(data) == keyed.plan_deal(data)
    assert named.plan_stage_change(data) == keyed.plan_stage_change(data)


# --- a name the pipeline lacks ------------------------------------------------------------------------------


def test_unknown_stage_name_fails_naming_it_and_the_stages_there_are() -> None:
    message = failure(lambda d: d["lookups"]["stage_by_order_status"].__setitem__(10, "New Ordr"))

    assert message == ("test.yaml: the document does not fit the Streak pipeline: lookups.stage_by_order_status.10: "
                       "no stage 'New Ordr' in pipeline 'Orders' (its stages: 'New Order', 'Processing', "
                       "'Complete', 'Cancelled')")


def test_unknown_field_name_fails_naming_it_and_the_fields_there_are() -> None:
    def rename(document: dict[str, Any]) -> None:
        document["box"]["fields"]["Line itemz"] = document["box"]["fields"].pop("Line items")

    message = failure(rename)

    assert "box.fields.Line itemz: no field 'Line itemz' in pipeline 'Orders' (its fields: 'Order number'" in message
    assert "'Line items'" in message


def test_unknown_dropdown_item_fails_naming_the_field_and_its_items() -> None:
    message = failure(lambda d: d["lookups"]["payment_status_item"].__setitem__(30, "Payed"))

    assert ("lookups.payment_status_item.30: no item 'Payed' in dropdown field 1004 \"Payment status\" (its items: "
            "'Pending', 'Authorized', 'Paid', 'Partially refunded', 'Refunded', 'Voided')") in message


def test_every_missing_name_is_reported_at_once() -> None:
    def break_three(document: dict[str, Any]) -> None:
        document["order_key_field"] = "Order no."
        document["stage_change"]["lifecycle"][3] = "Canceled"
        document["addresses"]["billing"]["fields"]["city"] = "Town"

    message = failure(break_three)

    for part in ("order_key_field: no field 'Order no.'", "stage_change.lifecycle[3]: no stage 'Canceled'",
                 "addresses.billing.fields.city: no field 'Town'"):
        assert part in message


def test_a_table_of_stage_names_used_elsewhere_too_is_refused() -> None:
    # its values become keys: a timeline line reading it would say "5001" where it meant "New Order"
    message = failure(lambda d: d["stage_change"]["timeline"].append(
        {"path": "Order.OrderStatusId", "transforms": [{"lookup": "stage_by_order_status"}]}))

    assert ("lookups.stage_by_order_status: yields stages and is also used at stage_change.timeline[3]; give each "
            "its own table") in message


def test_names_without_a_pipeline_copy_are_refused_when_the_document_loads() -> None:
    document = named_document()
    del document["pipeline"]

    with pytest.raises(MappingError, match=r"order_key_field \('Order number'\).*pipeline: a copy of GET"):
        compiled(document)


def test_a_missing_pipeline_copy_is_named() -> None:
    message = failure(lambda d: d.__setitem__("pipeline", "no-such-pipeline.json"))

    assert "pipeline: 'no-such-pipeline.json' not found" in message


# --- keys, spellings and stated values ----------------------------------------------------------------------


def test_keys_and_names_mix_and_a_key_wins() -> None:
    document = named_document()
    document["lookups"]["stage_by_order_status"][20] = "5002"
    document["box"]["fields"]["1005"] = document["box"]["fields"].pop("Line items")

    mapping = compiled(document)

    assert mapping.doc.lookups["stage_by_order_status"] == {10: "5001", 20: "5002", 30: "5003", 40: "5004"}
    assert "1005" in mapping.doc.box.fields


def test_a_name_spelled_in_other_case_or_spacing_is_the_same_name() -> None:
    document = named_document()
    document["lookups"]["payment_status_item"][35] = " partially REFUNDED "

    assert compiled(document).doc.lookups["payment_status_item"][35] == "9004"


def test_a_stated_stage_and_default_are_resolved_and_event_values_are_not() -> None:
    document = named_document()
    document["box"]["stage"] = {"const": "Processing"}
    document["stage_change"]["stage"] = {"path": "Order.Stage", "default": "Complete"}

    mapping = compiled(document)

    assert mapping.doc.box.stage == {"const": "5002"}
    assert mapping.doc.stage_change.stage == {"path": "Order.Stage", "default": "5003"}
    assert mapping.plan_stage_change({"Order": {"CustomOrderNumber": "7", "Stage": "5004"}}).stage_key == "5004"


def test_a_document_in_keys_alone_needs_no_pipeline() -> None:
    mapping = parse_deal_mapping(mapping_path("clarity-to-streak.yaml").read_text(), name="clarity-to-streak.yaml")

    assert not mapping.names_used
    assert mapping.for_pipeline(pipeline_copy("streak-pipeline.json")) is mapping


# --- resolved again from the connection's pipeline ----------------------------------------------------------


def test_same_names_in_a_pipeline_with_other_keys_plan_with_its_keys() -> None:
    mapping = load_deal_mapping(SHIPPED)
    other = PipelineSchema.from_api(other_keys_pipeline().to_api())
    data = json.loads((SAMPLES_DIR / "nop_order_b2b.json").read_text())["data"]

    live = mapping.for_pipeline(other)
    plan = live.plan_deal(data)

    assert plan.stage_key == "5101"
    assert plan.fields["1101"] == data["Order"]["CustomOrderNumber"]
    assert plan.fields["1104"] == "9103"  # Paid
    assert live.order_key_field == "1101"
    assert mapping.for_pipeline(other) is live  # compiled once per pipeline read
    assert mapping.plan_deal(data).stage_key == "5001"  # the copy's keys are untouched


def test_pipeline_schema_reads_stage_and_item_names_in_the_pipelines_order() -> None:
    schema = PipelineSchema.from_api(DEMO_PIPELINE.to_api())

    assert schema.name == "Orders"
    assert schema.stages == (("5001", "New Order"), ("5002", "Processing"), ("5003", "Complete"),
                             ("5004", "Cancelled"))
    assert schema.fields["1004"].items[2] == ("9003", "Paid")


# --- dry-run and the deployment check -----------------------------------------------------------------------


@pytest.fixture
def mistyped_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The shipped nopCommerce → Streak document with a stage name the pipeline lacks, where documents are read."""
    document = named_document()
    document["lookups"]["stage_by_order_status"][30] = "Completed"
    (tmp_path / "streak-pipeline.json").write_text(mapping_path("streak-pipeline.json").read_text())
    (tmp_path / SHIPPED).write_text(yaml.safe_dump(document, allow_unicode=True))
    shipped = deal_mapping.mapping_path
    monkeypatch.setattr(deal_mapping, "mapping_path",
                        lambda name: tmp_path / name if (tmp_path / name).is_file() else shipped(name))
    load_deal_mapping.cache_clear()
    yield
    load_deal_mapping.cache_clear()


@pytest.mark.usefixtures("mistyped_stage")
def test_dry_run_fails_on_a_name_the_pipeline_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    from switchyard_cli.main import main

    assert main(["dry-run", "nopcommerce-to-streak", str(SAMPLES_DIR / "nop_order_b2b.json")]) == 1

    shown = json.loads(capsys.readouterr().out)
    assert shown["error"] == "mapping_error"
    assert ("lookups.stage_by_order_status.30: no stage 'Completed' in pipeline 'Orders' (its stages: 'New Order', "
            "'Processing', 'Complete', 'Cancelled')") in shown["message"]


@pytest.mark.usefixtures("mistyped_stage")
def test_deployment_check_names_the_flow_and_the_missing_name() -> None:
    problems = mapping_problems(load_catalog())

    assert len(problems) == 1
    assert problems[0].startswith("flow nopcommerce-to-streak: nopcommerce-to-streak.yaml: ")
    assert "no stage 'Completed'" in problems[0]


@pytest.mark.usefixtures("mistyped_stage")
def test_synth_refuses_a_document_that_would_fail_in_its_worker() -> None:
    from infra.application import build_app

    with pytest.raises(MappingError, match=r"flow nopcommerce-to-streak: .*no stage 'Completed'"):
        build_app(stages=["dev"])


def test_every_shipped_mapping_document_passes_the_deployment_check() -> None:
    assert mapping_problems(load_catalog()) == []
