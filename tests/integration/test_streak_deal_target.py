"""StreakDealTarget against the Streak sandbox (in-process over WSGITransport, InMemoryEntityState)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
import yaml
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import OutOfOrderError, PermanentError, RetryableError
from switchyard.events import FlowEvent
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard.systems.streak.deal_mapping import DealMapping, load_deal_mapping, parse_deal_mapping
from switchyard.systems.streak.deals import DEFAULT_SETTLE_SECONDS, StreakDealTarget
from switchyard.systems.streak.schema import PipelineSchemas
from switchyard_local.sandboxes.streak import StreakSandbox

from tests.conftest import FakeClock, streak_document_in_keys

MakeEvent = Callable[..., FlowEvent]
WRITES_OF_B2B_ORDER = 6  # POSTs of a clean first delivery of nop_order_b2b (see the first test)


@pytest.fixture
def state() -> InMemoryEntityState:
    return InMemoryEntityState()


@pytest.fixture
def mapping() -> DealMapping:
    return load_deal_mapping("nopcommerce-to-streak.yaml")


@pytest.fixture
def target(mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState) -> StreakDealTarget:
    return StreakDealTarget(mapping, streak_client, state)


def raw_boxes(client: StreakClient) -> list[dict[str, Any]]:
    return client._call("GET", "/api/v1/pipelines/pl_orders/boxes")


def counts(sandbox: StreakSandbox) -> dict[str, int]:
    snap = sandbox.snapshot()
    return {"boxes": len(snap["boxes"]), "contacts": len(snap["contacts"]),
            "organizations": len(snap["organizations"]),
            "tasks": sum(len(box["tasks"]) for box in snap["boxes"])}


def posts(requests: Iterable[tuple[str, str, int]]) -> list[str]:
    return [path for method, path, _ in requests if method == "POST"]


def without_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items() if not k.endswith("Timestamp")}
    if isinstance(value, list):
        return [without_timestamps(v) for v in value]
    return value


# --- order placed ------------------------------------------------------------------------------------


def test_deliver_b2b_order_creates_box_contact_org_and_task(
    target: StreakDealTarget, make_event: MakeEvent, sandbox: StreakSandbox, streak_client: StreakClient
) -> None:
    result = target.deliver(make_event("nop_order_b2b"))

    assert result.outcome == "created"
    (box,) = raw_boxes(streak_client)
    assert result.detail == {"box_key": box["key"], "order_key": "1042"}
    assert box["stageKey"] == "5001"
    assert box["name"] == "Order 1042 · Jane Doe Acme Corp"
    # the create request itself carries the order key: a box whose fields never got written is still found
    assert box["notes"] == ("nopCommerce order 1042 (6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10)\n\n"
                            "Switchyard order key: 1042")
    assert box["fields"] == {
        "1001": "1042",
        "1002": 1299,
        "1003": 1_795_166_100_000,
        "1004": "9003",
        "1005": "2 x Standing desk [DESK-STD-01]; 4 x Monitor arm [ARM-MON-02]",
        "1006": "USD",
        # the billing and shipping addresses, part by part (the order's billing address has no state)
        "1021": "1 Main St", "1022": "Springfield", "1024": "12345", "1025": "US",
        "1026": "1 Main St", "1027": "Springfield", "1029": "12345", "1030": "US",
    }
    snap = sandbox.snapshot()
    (contact,) = snap["contacts"]
    assert contact["emailAddresses"] == ["jane.doe@acme-corp.example"]
    assert (contact["givenName"], contact["familyName"]) == ("Jane", "Doe")
    (org,) = snap["organizations"]
    assert (org["name"], org["domains"]) == ("Acme Corp", ["acme-corp.example"])
    assert org["addresses"] == ["1 Main St, Springfield, 12345, US"]  # sent with the create: no extra call
    assert box["contacts"] == [{"key": contact["key"]}]
    assert box["organizations"] == [{"key": org["key"]}]
    (task,) = snap["boxes"][0]["tasks"]
    # Acme Corp belongs to the key-account rep (a rule of the mapping): the box and its task are hers
    assert task == {"text": "Follow up on order 1042", "dueDate": 1_795_425_300_000,
                    "assignee": "kim.accounts@example.com"}
    assert snap["boxes"][0]["assignees"] == ["kim.accounts@example.com"]
    assert len(posts(sandbox.requests)) == WRITES_OF_B2B_ORDER


def test_deliver_same_event_twice_creates_nothing_new(
    target: StreakDealTarget, make_event: MakeEvent, sandbox: StreakSandbox
) -> None:
    # Given the order delivered once
    event = make_event("nop_order_b2b")
    target.deliver(event)
    before, first_requests = counts(sandbox), len(sandbox.requests)

    # When the same event is delivered again
    result = target.deliver(event)

    # Then nothing is created or written: only the contact's find-or-create lookup is a POST
    assert result.outcome == "updated"
    assert counts(sandbox) == before == {"boxes": 1, "contacts": 1, "organizations": 1, "tasks": 1}
    assert posts(sandbox.requests[first_requests:]) == ["/api/v2/teams/team_1/contacts/"]


class Sabotage:
    """WSGI middleware failing the n-th POST, either before the sandbox acts (its own ``fail_next``)
    or after it acted with the answer lost on the way back (a 504, as a dropped connection)."""

    def __init__(self, sandbox: StreakSandbox, nth_post: int, *, after_work: bool) -> None:
        self.sandbox, self.nth, self.after_work, self.seen = sandbox, nth_post, after_work, 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] == "POST":
            self.seen += 1
            if self.seen == self.nth:
                if not self.after_work:
                    self.sandbox.faults.fail_next(1, status=503)
                    return self.sandbox.wsgi_app(environ, start_response)
                b"".join(self.sandbox.wsgi_app(environ, lambda *args, **kwargs: None))
                start_response("504 Gateway Timeout", [("Content-Type", "text/plain")])
                return [b"upstream timed out"]
        return self.sandbox.wsgi_app(environ, start_response)


@pytest.mark.parametrize("after_work", [False, True], ids=["failed-before", "answer-lost"])
@pytest.mark.parametrize("nth_post", range(1, WRITES_OF_B2B_ORDER + 1))
def test_deliver_retry_after_half_done_attempt_creates_everything_once(
    mapping: DealMapping, make_event: MakeEvent, streak_connection: StreakConnection,
    nth_post: int, after_work: bool,
) -> None:
    # Given a clean run's end state, for comparison
    clean = StreakSandbox()
    clean_client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=clean.wsgi_app))
    StreakDealTarget(mapping, clean_client, InMemoryEntityState()).deliver(make_event("nop_order_b2b"))

    # And a first attempt that fails at its n-th write
    sandbox = StreakSandbox()
    client = StreakClient(streak_connection,
                          transport=httpx.WSGITransport(app=Sabotage(sandbox, nth_post, after_work=after_work)))
    clock = FakeClock(1_800_000_000.0)
    target = StreakDealTarget(mapping, client, InMemoryEntityState(), clock=clock)
    event = make_event("nop_order_b2b")
    with pytest.raises(RetryableError):
        target.deliver(event)

    # When the event is retried, later (a create without an answer is only repeated after the settle delay)
    clock.advance(DEFAULT_SETTLE_SECONDS)
    target.deliver(event)

    # Then the target holds exactly what a clean run leaves: one box, one contact, one org, one task
    assert counts(sandbox) == {"boxes": 1, "contacts": 1, "organizations": 1, "tasks": 1}
    assert without_timestamps(sandbox.snapshot()) == without_timestamps(clean.snapshot())


def test_deliver_consumer_order_with_public_email_domain_links_no_organization(
    target: StreakDealTarget, make_event: MakeEvent, sandbox: StreakSandbox, streak_client: StreakClient
) -> None:
    target.deliver(make_event("nop_order_consumer"))

    snap = sandbox.snapshot()
    assert snap["organizations"] == []
    (box,) = raw_boxes(streak_client)
    assert box["organizations"] == []
    assert box["stageKey"] == "5002"  # placed as Processing
    assert snap["contacts"][0]["emailAddresses"] == ["sam.lee@gmail.com"]
    # 240.50 in the store currency at CurrencyRate 0.92: the 221.26 EUR the customer paid, labelled EUR
    assert (box["fields"]["1002"], box["fields"]["1006"]) == (221.26, "EUR")


def test_deliver_company_with_public_email_domain_finds_organization_by_name(
    target: StreakDealTarget, make_event: MakeEvent, sample, sandbox: StreakSandbox
) -> None:
    # Given a company buyer who uses a gmail address, twice
    data = sample("nop_order_consumer")["data"]
    data["Customer"]["Company"] = "Lee Design"
    target.deliver(make_event("nop_order_consumer", data=data))
    target.deliver(make_event("nop_order_consumer", event_id="msg_again", data=data))

    # Then the organization is found by name (gmail.com is nobody's domain), once
    (org,) = sandbox.snapshot()["organizations"]
    assert org["name"] == "Lee Design"
    assert "domains" not in org or org["domains"] == []


def test_deliver_small_order_without_company_filtered(
    target: StreakDealTarget, make_event: MakeEvent, sandbox: StreakSandbox, state: InMemoryEntityState
) -> None:
    result = target.deliver(make_event("nop_order_small"))

    assert result.outcome == "filtered"
    assert counts(sandbox) == {"boxes": 0, "contacts": 0, "organizations": 0, "tasks": 0}
    assert posts(sandbox.requests) == []
    assert state.is_filtered("nopcommerce-to-streak#1044")


def test_deliver_links_are_merged_not_replaced(
    target: StreakDealTarget, make_event: MakeEvent, streak_client: StreakClient
) -> None:
    # Given a box for the order that a salesperson already linked to another contact
    box = streak_client.create_box("pl_orders", name="Order 1042 (manual)", stage_key="5001", notes=None)
    streak_client.set_field(box["key"], "1001", "1042")
    colleague = streak_client.find_or_create_contact("team_1", "buyer@acme-corp.example")
    streak_client.update_box(box["key"], {"contacts": [{"key": colleague["key"]}]})

    # When the order is delivered
    result = target.deliver(make_event("nop_order_b2b"))

    # Then the order's contact is added next to the existing one
    assert result.outcome == "updated"
    (stored,) = raw_boxes(streak_client)
    assert stored["key"] == box["key"]
    assert len(stored["contacts"]) == 2
    assert stored["contacts"][0] == {"key": colleague["key"]}
    assert len(stored["organizations"]) == 1


def test_deliver_redelivery_does_not_drop_links_added_meanwhile(
    target: StreakDealTarget, make_event: MakeEvent, streak_client: StreakClient
) -> None:
    target.deliver(make_event("nop_order_b2b"))
    (box,) = raw_boxes(streak_client)
    colleague = streak_client.find_or_create_contact("team_1", "buyer@acme-corp.example")
    streak_client.update_box(box["key"], {"contacts": [*box["contacts"], {"key": colleague["key"]}]})

    target.deliver(make_event("nop_order_b2b", event_id="msg_redelivered"))

    (stored,) = raw_boxes(streak_client)
    assert len(stored["contacts"]) == 2


# --- status changed ----------------------------------------------------------------------------------


def test_deliver_status_change_moves_stage(
    target: StreakDealTarget, make_event: MakeEvent, streak_client: StreakClient
) -> None:
    target.deliver(make_event("nop_order_b2b"))

    result = target.deliver(make_event("nop_status_processing"))

    (box,) = raw_boxes(streak_client)
    assert result.outcome == "moved"
    assert result.detail == {"box_key": box["key"], "stage_key": "5002"}
    assert box["stageKey"] == "5002"


def test_deliver_status_change_to_current_stage_unchanged(
    target: StreakDealTarget, make_event: MakeEvent, sample, sandbox: StreakSandbox
) -> None:
    target.deliver(make_event("nop_order_b2b"))
    data = sample("nop_status_processing")["data"]
    data["Order"]["OrderStatusId"] = 10  # still Pending
    writes = len(posts(sandbox.requests))

    result = target.deliver(make_event("nop_status_processing", data=data))

    # the stage and payment stay (nothing written to the box); the shipping status changed: one timeline line
    assert result.outcome == "unchanged"
    assert posts(sandbox.requests)[writes:] == ["/api/v2/boxes/box_1/comments"]
    assert sandbox.snapshot()["boxes"][0]["comments"][-1].startswith(
        "Order status: Pending · Payment: Paid · Shipping: shipped [ref ")


def status_change(sample, *, order_status: int, payment_status: int, number: str = "2046") -> dict[str, Any]:
    data = sample("nop_status_processing")["data"]
    data["Order"].update(CustomOrderNumber=number, OrderStatusId=order_status, PaymentStatusId=payment_status)
    return data


def test_deliver_payment_change_updates_the_payment_field_and_adds_one_timeline_line(
    target: StreakDealTarget, make_event: MakeEvent, sample, sandbox: StreakSandbox, streak_client: StreakClient
) -> None:
    # Given an order placed unpaid (payment Pending: item 9001)
    target.deliver(make_event("nop_order_us_state"))
    (box,) = raw_boxes(streak_client)
    assert box["fields"]["1004"] == "9001"
    before = len(sandbox.requests)

    # When its payment is captured (still Pending as an order), then refunded later
    paid = make_event("nop_status_processing", event_id="msg_paid", timestamp="2026-12-01T10:00:00Z",
                      data=status_change(sample, order_status=10, payment_status=30))
    assert target.deliver(paid).outcome == "updated"
    refunded = make_event("nop_status_processing", event_id="msg_refunded", timestamp="2026-12-02T10:00:00Z",
                          data=status_change(sample, order_status=40, payment_status=40))
    assert target.deliver(refunded).outcome == "moved"

    # Then the payment field follows, each in one update with the stage, and each change is one line
    box = streak_client.get_box(box["key"])
    assert (box["stageKey"], box["fields"]["1004"]) == ("5004", "9005")
    assert posts(sandbox.requests[before:]) == ["/api/v1/boxes/box_1", "/api/v2/boxes/box_1/comments"] * 2
    lines = sandbox.snapshot()["boxes"][0]["comments"]
    assert [line.split(" [ref ")[0] for line in lines] == [
        "Order status: Pending · Payment: Paid · Shipping: shipped",
        "Order status: Cancelled · Payment: Refunded · Shipping: shipped"]

    # And redelivering either changes nothing: no write, no second line
    before = len(sandbox.requests)
    target.deliver(paid), target.deliver(refunded)
    assert posts(sandbox.requests[before:]) == []
    assert len(sandbox.snapshot()["boxes"][0]["comments"]) == 2


@pytest.mark.parametrize("after_work", [False, True], ids=["failed-before", "answer-lost"])
def test_timeline_line_whose_post_failed_is_posted_once_on_retry(
    mapping: DealMapping, make_event: MakeEvent, sample, streak_connection: StreakConnection, after_work: bool,
) -> None:
    sandbox = StreakSandbox()
    sabotage = Sabotage(sandbox, 0, after_work=after_work)
    client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=sabotage))
    target = StreakDealTarget(mapping, client, InMemoryEntityState())
    target.deliver(make_event("nop_order_us_state"))
    event = make_event("nop_status_processing", event_id="msg_paid", timestamp="2026-12-01T10:00:00Z",
                       data=status_change(sample, order_status=20, payment_status=30))
    sabotage.seen, sabotage.nth = 0, 2  # the status change's second write: its timeline comment

    with pytest.raises(RetryableError):
        target.deliver(event)
    target.deliver(event)

    lines = sandbox.snapshot()["boxes"][0]["comments"]
    assert len(lines) == 1 and lines[0].startswith("Order status: Processing · Payment: Paid")


def test_deliver_status_change_for_unknown_order_raises_out_of_order(
    target: StreakDealTarget, make_event: MakeEvent
) -> None:
    with pytest.raises(OutOfOrderError) as raised:
        target.deliver(make_event("nop_status_processing"))

    assert raised.value.reason == "box_not_found"


def test_deliver_status_change_before_order_then_order_then_retry_moves(
    target: StreakDealTarget, make_event: MakeEvent, streak_client: StreakClient
) -> None:
    # Given a status change that arrives before its order
    status = make_event("nop_status_processing")
    with pytest.raises(OutOfOrderError):
        target.deliver(status)

    # When the order arrives and the status change is retried
    target.deliver(make_event("nop_order_b2b"))
    result = target.deliver(status)

    # Then the stage follows the newer event
    assert result.outcome == "moved"
    assert raw_boxes(streak_client)[0]["stageKey"] == "5002"


def test_deliver_status_change_for_filtered_order_filtered(
    target: StreakDealTarget, make_event: MakeEvent, sample, sandbox: StreakSandbox
) -> None:
    target.deliver(make_event("nop_order_small"))
    data = sample("nop_status_processing")["data"]
    data["Order"]["CustomOrderNumber"] = "1044"

    result = target.deliver(make_event("nop_status_processing", data=data))

    assert result.outcome == "filtered"
    assert counts(sandbox)["boxes"] == 0


def test_deliver_stale_status_change_dropped_and_stage_kept(
    target: StreakDealTarget, make_event: MakeEvent, sample, streak_client: StreakClient
) -> None:
    # Given the order, then "Complete" at 13:00
    target.deliver(make_event("nop_order_b2b"))
    complete = sample("nop_status_processing")["data"]
    complete["Order"]["OrderStatusId"] = 30
    target.deliver(make_event("nop_status_processing", event_id="msg_complete", data=complete,
                              timestamp="2026-11-20T13:00:00Z"))

    # When the older "Processing" change (12:00) arrives late
    result = target.deliver(make_event("nop_status_processing", event_id="msg_processing"))

    # Then it is stale and the stage stays Complete
    assert result.outcome == "stale"
    assert raw_boxes(streak_client)[0]["stageKey"] == "5003"


@pytest.mark.parametrize("arrival", [("processing", "complete"), ("complete", "processing")])
def test_deliver_same_second_status_changes_the_later_stage_wins_in_any_order_of_arrival(
    target: StreakDealTarget, make_event: MakeEvent, sample, streak_client: StreakClient,
    arrival: tuple[str, str],
) -> None:
    # Given the order, then "Processing" and "Complete" set in the same second (a shop's checkout and its
    # admin's script: the chaos run saw "Complete" delivered first and the box moved back to Processing)
    target.deliver(make_event("nop_order_b2b"))
    complete = sample("nop_status_processing")["data"]
    complete["Order"]["OrderStatusId"] = 30
    events = {"processing": make_event("nop_status_processing", event_id="msg_processing",
                                       timestamp="2026-11-20T13:00:00Z"),
              "complete": make_event("nop_status_processing", event_id="msg_complete", data=complete,
                                     timestamp="2026-11-20T13:00:00Z")}

    # When they arrive in either order
    outcomes = {name: target.deliver(events[name]).outcome for name in arrival}

    # Then the box ends Complete; "Processing" moved it (first) or was superseded (second), never dropped
    # as stale and never the last word
    assert raw_boxes(streak_client)[0]["stageKey"] == "5003"
    assert outcomes["complete"] == "moved"
    assert outcomes["processing"] == ("moved" if arrival[0] == "processing" else "superseded")


def test_deliver_status_change_retried_after_failed_move_still_moves(
    target: StreakDealTarget, mapping: DealMapping, make_event: MakeEvent, sandbox: StreakSandbox,
    streak_client: StreakClient, streak_connection: StreakConnection, state: InMemoryEntityState,
) -> None:
    # Given the order, and a status change whose stage move (its first POST) fails after it claimed
    target.deliver(make_event("nop_order_b2b"))
    status = make_event("nop_status_processing")
    flaky = StreakClient(streak_connection,
                         transport=httpx.WSGITransport(app=Sabotage(sandbox, 1, after_work=False)))
    with pytest.raises(RetryableError):
        StreakDealTarget(mapping, flaky, state).deliver(status)
    assert raw_boxes(streak_client)[0]["stageKey"] == "5001"

    # When it is retried (same event id: its own claim does not block it)
    result = target.deliver(status)

    # Then the stage moves
    assert result.outcome == "moved"
    assert raw_boxes(streak_client)[0]["stageKey"] == "5002"


# --- Streak rejects the request -----------------------------------------------------------------------


def mapping_with(change: Callable[[dict[str, Any]], None]) -> DealMapping:
    document = streak_document_in_keys("nopcommerce-to-streak.yaml")  # keys: values judged when delivered
    change(document)
    return parse_deal_mapping(yaml.safe_dump(document, allow_unicode=True), name="changed.yaml")


def test_deliver_bad_dropdown_key_rejected_before_any_write(
    make_event: MakeEvent, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox
) -> None:
    # Given a mapping whose payment-status lookup names a dropdown item the pipeline does not have
    mapping = mapping_with(lambda d: d["lookups"]["payment_status_item"].__setitem__(30, "Paid"))
    target = StreakDealTarget(mapping, streak_client, state)

    with pytest.raises(PermanentError) as raised:
        target.deliver(make_event("nop_order_b2b"))

    # Then the plan is judged against the pipeline's field definitions first: no half-written box
    assert raised.value.reason == "plan_rejected_by_target_schema"
    assert '1004 "Payment status" (DROPDOWN)' in raised.value.message
    assert "'Paid'" in raised.value.message
    assert posts(sandbox.requests) == []
    assert counts(sandbox) == {"boxes": 0, "contacts": 0, "organizations": 0, "tasks": 0}


def test_deliver_unknown_stage_rejected_before_any_write(
    make_event: MakeEvent, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox
) -> None:
    mapping = mapping_with(lambda d: d["lookups"]["stage_by_order_status"].__setitem__(10, "5999"))
    target = StreakDealTarget(mapping, streak_client, state)

    with pytest.raises(PermanentError) as raised:
        target.deliver(make_event("nop_order_b2b"))

    assert raised.value.reason == "plan_rejected_by_target_schema"
    assert "stage '5999'" in raised.value.message
    assert posts(sandbox.requests) == []


def test_deliver_wrong_api_key_raises_target_auth_failed(
    mapping: DealMapping, make_event: MakeEvent, sandbox: StreakSandbox, state: InMemoryEntityState
) -> None:
    connection = StreakConnection(base_url="http://streak.test", api_key="wrong", team_key="team_1",
                                  pipeline_key="pl_orders")
    client = StreakClient(connection, transport=httpx.WSGITransport(app=sandbox.wsgi_app))

    with pytest.raises(PermanentError) as raised:
        StreakDealTarget(mapping, client, state).deliver(make_event("nop_order_b2b"))

    assert (raised.value.reason, raised.value.target_status) == ("target_auth_failed", 401)


def test_deliver_unmapped_status_raises_permanent_unmapped_value(
    target: StreakDealTarget, make_event: MakeEvent, sample, sandbox: StreakSandbox
) -> None:
    data = sample("nop_order_b2b")["data"]
    data["Order"]["PaymentStatusId"] = 60  # a status nobody mapped

    with pytest.raises(PermanentError) as raised:
        target.deliver(make_event("nop_order_b2b", data=data))

    assert raised.value.reason == "unmapped_value"
    assert len(sandbox.requests) == 0  # planned before any call


def test_deliver_unsupported_event_type_raises_permanent(
    target: StreakDealTarget, make_event: MakeEvent
) -> None:
    event = make_event("nop_order_b2b")
    other = FlowEvent(flow=event.flow, event_id=event.event_id, source=event.source, type="order.deleted",
                      timestamp=event.timestamp, data=event.data)

    with pytest.raises(PermanentError) as raised:
        target.deliver(other)

    assert raised.value.reason == "unsupported_event"


# --- Streak calls per order (issue 15) ---------------------------------------------------------------


def calls(sandbox: StreakSandbox, since: int = 0) -> list[str]:
    return [f"{method} {path}" for method, path, _ in sandbox.requests[since:]]


def in_order(calls: list[str], first: str, then: str) -> bool:
    return calls.index(first) < calls.index(then)


def test_calls_per_order_fields_and_links_in_one_update_status_change_in_two(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, make_event: MakeEvent,
    sandbox: StreakSandbox,
) -> None:
    target = StreakDealTarget(mapping, streak_client, state, schemas=PipelineSchemas())  # a cold start
    # A new order of a new customer at a new company (plus the pipeline read once per cold start)
    target.deliver(make_event("nop_order_b2b"))
    new_order = calls(sandbox)
    expected = [
        "GET /api/v1/pipelines/pl_orders",                # field definitions, cached per cold start
        "POST /api/v2/teams/team_1/contacts/",            # contact getIfExisting (email only)
        "POST /api/v2/contacts/contact_1",                # its names (getIfExisting takes only the email)
        "GET /api/v1/search",                             # organization by name and domain
        "POST /api/v2/teams/team_1/organizations",        # created: none matched
        "GET /api/v1/search",                             # the order's box: none
        "POST /api/v2/pipelines/pl_orders/boxes",         # create (the order key in its notes)
        "POST /api/v1/boxes/box_1",                       # every field value and both links at once
        "POST /api/v2/boxes/box_1/tasks",                 # the follow-up task (a new box has none)
    ]
    # the contact, the organization and the box run side by side: each entity's calls keep their order
    assert sorted(new_order) == sorted(expected) and new_order[0] == expected[0]
    assert in_order(new_order, expected[1], expected[2])
    assert in_order(new_order, expected[4], expected[7]) and in_order(new_order, expected[6], expected[7])
    assert in_order(new_order, expected[6], expected[8]) and in_order(new_order, expected[2], expected[7])
    assert not any("/fields/" in call for call in new_order)

    # A status change: the box the order went to (no search), the move with the payment field, its timeline line
    before = len(sandbox.requests)
    target.deliver(make_event("nop_status_processing"))
    assert calls(sandbox, before) == ["GET /api/v1/boxes/box_1", "POST /api/v1/boxes/box_1",
                                      "POST /api/v2/boxes/box_1/comments"]

    # A returning customer's next order (her contact and company known): 6 calls
    data = make_event("nop_order_b2b").data
    data["Order"]["CustomOrderNumber"] = "1050"
    before = len(sandbox.requests)
    target.deliver(make_event("nop_order_b2b", event_id="msg_next", data=data))
    assert len(calls(sandbox, before)) == 6


class InFlight:
    """WSGI middleware holding each Streak request ``seconds`` and recording how many were in flight at once."""

    def __init__(self, sandbox: StreakSandbox, seconds: float = 0.05) -> None:
        self.sandbox, self.seconds, self.now, self.most = sandbox, seconds, 0, 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.seconds)
            return self.sandbox.wsgi_app(environ, start_response)
        finally:
            with self._lock:
                self.now -= 1


def test_new_order_looks_up_contact_organization_and_box_side_by_side(
    mapping: DealMapping, make_event: MakeEvent, streak_connection: StreakConnection,
) -> None:
    # Given a Streak whose every answer takes 50 ms
    sandbox = StreakSandbox()
    in_flight = InFlight(sandbox)
    client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=in_flight))
    target = StreakDealTarget(mapping, client, InMemoryEntityState())
    target.deliver(make_event("nop_order_b2b"))  # the pipeline read (a cold start's) out of the way
    data = make_event("nop_order_b2b").data
    data["Order"]["CustomOrderNumber"] = "1077"
    data["Customer"].update(Email="new.buyer@other-corp.example", Company="Other Corp")
    in_flight.most = 0
    # When a new customer's order at a new company arrives (8 calls)
    target.deliver(make_event("nop_order_b2b", event_id="msg_other", data=data))
    # Then the contact, the organization and the box were looked up at the same time
    assert in_flight.most >= 3
    assert counts(sandbox) == {"boxes": 2, "contacts": 2, "organizations": 2, "tasks": 2}


class CountingState(InMemoryEntityState):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def link(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return super().link(*args, **kwargs)

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return super().claim(*args, **kwargs)

    def claim_ranked(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return super().claim_ranked(*args, **kwargs)


def test_new_order_writes_five_state_items(
    mapping: DealMapping, streak_client: StreakClient, make_event: MakeEvent,
) -> None:
    # Given a target recording what it writes to its state (DynamoDB in production: each write a bill line)
    state = CountingState()
    target = StreakDealTarget(mapping, streak_client, state)
    # When a new order of a new company arrives
    target.deliver(make_event("nop_order_b2b"))
    # Then: the organization's pending mark, set and cleared; the order's box link, first as the box's
    # pending mark, then naming the box with the task's pending mark; the order's change time (was 8: every
    # mark cleared; 6: the box link and the two marks in items of their own)
    assert state.writes == 5
