"""An order's box link carries its pending marks (one item per order, two writes per new order): the box
found through it before its fields are written, and marks written before the upgrade still honoured."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import RetryableError
from switchyard.events import FlowEvent
from switchyard.systems.streak.client import StreakClient
from switchyard.systems.streak.deal_mapping import load_deal_mapping
from switchyard.systems.streak.deals import StreakDealTarget, notes_with_order_key
from switchyard_local.sandboxes.streak import StreakSandbox

from tests.conftest import FakeClock

MakeEvent = Callable[..., FlowEvent]
FLOW = "nopcommerce-to-streak"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def target(streak_client: StreakClient, state: InMemoryEntityState, clock: FakeClock) -> StreakDealTarget:
    return StreakDealTarget(load_deal_mapping("nopcommerce-to-streak.yaml"), streak_client, state, clock=clock)


def box_searches(sandbox: StreakSandbox) -> int:
    return sum(1 for method, path, _ in sandbox.requests if method == "GET" and path == "/api/v1/search")


def test_a_new_order_leaves_its_box_link_naming_the_box_with_the_tasks_mark(
    target: StreakDealTarget, state: InMemoryEntityState, sandbox: StreakSandbox, make_event: MakeEvent,
    clock: FakeClock,
) -> None:
    target.deliver(make_event("nop_order_b2b"))

    (box,) = sandbox.snapshot()["boxes"]
    assert state.linked(f"{FLOW}:order>streak:box", "1042") == f"{box['key']}|task@{clock()!r}"
    # nothing in the items the marks had before
    assert state.linked(f"{FLOW}:pending_create>streak:box", "1042") is None
    assert state.linked(f"{FLOW}:pending_create>streak:task", "1042") is None


def test_a_retry_finds_the_new_box_through_its_link_before_its_fields_are_written(
    target: StreakDealTarget, state: InMemoryEntityState, sandbox: StreakSandbox, streak_client: StreakClient,
    make_event: MakeEvent,
) -> None:
    # Given a box created for order 1042 and linked, whose field update never happened (the delivery
    # stopped after the create answered)
    box = streak_client.create_box("pl_orders", name="Order 1042", stage_key="5001",
                                   notes=notes_with_order_key(None, "1042"))
    state.link(f"{FLOW}:order>streak:box", "1042", box["key"])
    searches = box_searches(sandbox)

    # When the order is delivered again
    result = target.deliver(make_event("nop_order_b2b"))

    # Then that box is the order's, found through the link (no search), and completed
    assert (result.outcome, result.detail["box_key"]) == ("updated", box["key"])
    assert len(sandbox.snapshot()["boxes"]) == 1
    assert sandbox.snapshot()["boxes"][0]["fields"]["Order number"] == "1042"
    assert box_searches(sandbox) - searches == 1  # the organization's, not the box's


@pytest.mark.parametrize("kind", ["box", "task"])
def test_a_pending_mark_written_before_the_upgrade_still_holds_a_create_back(
    kind: str, target: StreakDealTarget, state: InMemoryEntityState, sandbox: StreakSandbox,
    streak_client: StreakClient, make_event: MakeEvent, clock: FakeClock,
) -> None:
    # Given a create of the order's box (or of its box's task) started a second ago by the previous
    # release, in the item of its own the marks had then, its answer lost
    if kind == "task":
        box = streak_client.create_box("pl_orders", name="Order 1042", stage_key="5001",
                                       notes=notes_with_order_key(None, "1042"))
        state.link(f"{FLOW}:order>streak:box", "1042", box["key"])
    state.link(f"{FLOW}:pending_create>streak:{kind}", "1042", repr(clock() - 1))

    # When the order is delivered
    with pytest.raises(RetryableError) as held:
        target.deliver(make_event("nop_order_b2b"))

    # Then nothing is created until the lookups had time to see the first create's result
    assert held.value.reason == "create_unsettled"
    boxes = sandbox.snapshot()["boxes"]
    assert len(boxes) == (1 if kind == "task" else 0)
    assert all(not b["tasks"] for b in boxes)
