"""A document that names stages, fields and dropdown items, delivered into pipelines whose keys differ."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import MappingError, PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard.systems.streak.deal_mapping import load_deal_mapping
from switchyard.systems.streak.deals import StreakDealTarget, audit_boxes
from switchyard.systems.streak.schema import PipelineSchemas
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, PipelineSpec, StageSpec, StreakSandbox

from tests.conftest import SANDBOX_API_KEY, SANDBOX_TEAM
from tests.unit.test_streak_pipeline_names import other_keys_pipeline

MakeEvent = Callable[..., FlowEvent]


def client_for(pipeline: PipelineSpec) -> Iterator[tuple[StreakSandbox, StreakClient]]:
    sandbox = StreakSandbox(api_key=SANDBOX_API_KEY, team_key=SANDBOX_TEAM, pipeline=pipeline)
    connection = StreakConnection(base_url="http://streak.test", api_key=SANDBOX_API_KEY, team_key=SANDBOX_TEAM,
                                  pipeline_key=pipeline.key)
    client = StreakClient(connection, transport=httpx.WSGITransport(app=sandbox.wsgi_app))
    yield sandbox, client
    client.close()


@pytest.fixture
def other_team() -> Iterator[tuple[StreakSandbox, StreakClient]]:
    """A Streak team whose pipeline has the demo's names under other keys (stage 5101, field 1104, item 9103)."""
    yield from client_for(other_keys_pipeline())


def test_a_named_document_delivers_with_the_live_pipelines_keys(
    other_team: tuple[StreakSandbox, StreakClient], make_event: MakeEvent
) -> None:
    sandbox, client = other_team
    target = StreakDealTarget(load_deal_mapping("nopcommerce-to-streak.yaml"), client, InMemoryEntityState(),
                              schemas=PipelineSchemas())

    placed = target.deliver(make_event("nop_order_b2b"))
    moved = target.deliver(make_event("nop_status_processing"))

    (box,) = client._call("GET", "/api/v1/pipelines/pl_other/boxes")
    assert (placed.outcome, moved.outcome) == ("created", "moved")
    assert box["stageKey"] == "5102"  # Processing, in this pipeline
    assert box["fields"]["1101"] == "1042"  # Order number
    assert box["fields"]["1104"] == "9103"  # Payment status: Paid
    assert box["fields"]["1102"] == 1299 and box["fields"]["1106"] == "USD"  # Order total, Currency
    # one read of the pipeline for both events (cached per cold start), none per event
    assert [path for method, path, _ in sandbox.requests if method == "GET" and path.endswith("/pl_other")] == [
        "/api/v1/pipelines/pl_other"]


def test_a_name_the_live_pipeline_lacks_dead_letters_before_any_write(make_event: MakeEvent) -> None:
    # someone renamed "Complete" to "Done" in Streak after the document was checked against its copy
    renamed = dataclasses.replace(DEMO_PIPELINE, stages=tuple(
        StageSpec(s.key, "Done") if s.name == "Complete" else s for s in DEMO_PIPELINE.stages))
    for sandbox, client in client_for(renamed):
        target = StreakDealTarget(load_deal_mapping("nopcommerce-to-streak.yaml"), client, InMemoryEntityState(),
                                  schemas=PipelineSchemas())

        with pytest.raises(PermanentError) as raised:
            target.deliver(make_event("nop_order_b2b"))

        assert raised.value.reason == "mapping_names_not_in_pipeline"
        assert "no stage 'Complete' in pipeline 'Orders' (its stages: 'New Order', 'Processing', 'Done', " \
               "'Cancelled')" in raised.value.message
        reads = [path for method, path, _ in sandbox.requests if method == "GET"]
        assert reads == ["/api/v1/pipelines/pl_orders"] * 2  # the cached copy, then a fresh one: still missing
        assert [path for method, path, _ in sandbox.requests if method == "POST"] == []


def test_a_two_way_pair_refuses_a_named_document(streak_client: StreakClient) -> None:
    pairs: Any = object()

    with pytest.raises(MappingError, match="a two-way pair's documents give keys"):
        StreakDealTarget(load_deal_mapping("nopcommerce-to-streak.yaml"), streak_client, InMemoryEntityState(),
                         pairs=pairs)


def test_the_box_audit_reads_the_order_key_from_the_live_pipelines_field(
    other_team: tuple[StreakSandbox, StreakClient], make_event: MakeEvent
) -> None:
    _sandbox, client = other_team
    mapping = load_deal_mapping("nopcommerce-to-streak.yaml")
    StreakDealTarget(mapping, client, InMemoryEntityState(), schemas=PipelineSchemas()).deliver(
        make_event("nop_order_b2b"))

    # "Order number" is field 1101 there (1001 in the copy): the box is the order's, not a ghost
    assert audit_boxes(client, mapping) == {"ghosts": [], "duplicates": {}}
