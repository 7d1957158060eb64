"""StreakDealTarget when Streak behaves like Streak on a bad day: creates carried out after the client
gave up, a search index that lags, relevance-ranked search pages, shared e-mail domains, a write
refused half-way. Each test failed on the code before issue 8's fixes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import PermanentError, RetryableError
from switchyard.events import FlowEvent
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard.systems.streak.deal_mapping import DealMapping, load_deal_mapping
from switchyard.systems.streak.deals import (
    DEFAULT_SETTLE_SECONDS,
    StreakDealTarget,
    audit_boxes,
    notes_with_order_key,
)
from switchyard_local.sandboxes.streak import StreakSandbox

from tests.conftest import FakeClock

MakeEvent = Callable[..., FlowEvent]
CLIENT_TIMEOUT = 1.0  # a loaded 2-core CI machine answered an ordinary lookup in more than 0.3 s
LATE_BY = 1.5  # Streak carries the write out this long after the request arrived


@pytest.fixture
def mapping() -> DealMapping:
    return load_deal_mapping("nopcommerce-to-streak.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def served() -> Iterator[StreakSandbox]:
    """A sandbox on a socket whose search index lags half a second behind creates."""
    sandbox = StreakSandbox(search_lag_seconds=0.5)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def impatient_target(served: StreakSandbox, mapping: DealMapping, state: InMemoryEntityState,
                     clock: FakeClock) -> Iterator[StreakDealTarget]:
    """A target whose client gives up after CLIENT_TIMEOUT, as the worker's does after 10 s."""
    assert served.base_url is not None
    connection = StreakConnection(base_url=served.base_url, api_key="sandbox-key", team_key="team_1",
                                  pipeline_key="pl_orders")
    client = StreakClient(connection, timeout=httpx.Timeout(CLIENT_TIMEOUT))
    yield StreakDealTarget(mapping, client, state, clock=clock)
    client.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def boxes(sandbox: StreakSandbox) -> list[dict[str, Any]]:
    return sandbox.snapshot()["boxes"]


# --- item 3: a slow create, then a retry ---------------------------------------------------------------


def test_create_answered_after_client_timeout_retry_waits_then_adopts_the_box_instead_of_creating(
    served: StreakSandbox, impatient_target: StreakDealTarget, make_event: MakeEvent, clock: FakeClock,
) -> None:
    # Given Streak carries out the create-box request only after the client has given up
    served.carry_out_late("create_box", LATE_BY)
    event = make_event("nop_order_b2b")
    with pytest.raises(RetryableError) as first:
        impatient_target.deliver(event)
    assert first.value.reason == "target_timeout"

    # When the event is retried at once: the lookup cannot see the box yet
    with pytest.raises(RetryableError) as early:
        impatient_target.deliver(event)

    # Then nothing is created: the retry waits for a lookup made after the settle delay
    assert early.value.reason == "create_unsettled"
    assert 0 < (early.value.retry_after or 0) <= DEFAULT_SETTLE_SECONDS
    wait_until(lambda: len(boxes(served)) == 1)  # the first request is carried out, late
    time.sleep(0.6)  # and the search index catches up (lag 0.5 s)

    # When it is retried after the settle delay
    clock.advance(DEFAULT_SETTLE_SECONDS)
    result = impatient_target.deliver(event)

    # Then the box the first request created is the order's, completed: one box, one task
    (box,) = boxes(served)
    assert result.outcome == "updated"
    assert result.detail["box_key"] == box["key"]
    assert box["fields"]["Order number"] == "1042"
    assert len(box["tasks"]) == 1


def test_task_create_answered_after_client_timeout_gives_the_box_one_task(
    served: StreakSandbox, impatient_target: StreakDealTarget, make_event: MakeEvent, clock: FakeClock,
) -> None:
    # Given the follow-up task's create is carried out only after the client gave up
    served.carry_out_late("create_task", LATE_BY)
    event = make_event("nop_order_b2b")
    with pytest.raises(RetryableError):
        impatient_target.deliver(event)

    # When the event is retried at once, and again after the settle delay
    with pytest.raises(RetryableError) as early:
        impatient_target.deliver(event)
    assert early.value.reason == "create_unsettled"
    wait_until(lambda: len(boxes(served)[0]["tasks"]) == 1)
    clock.advance(DEFAULT_SETTLE_SECONDS)
    impatient_target.deliver(event)

    # Then the box has exactly one follow-up task
    assert [task["text"] for task in boxes(served)[0]["tasks"]] == ["Follow up on order 1042"]


def test_organization_create_answered_after_client_timeout_gives_one_organization(
    served: StreakSandbox, impatient_target: StreakDealTarget, make_event: MakeEvent, clock: FakeClock,
) -> None:
    served.carry_out_late("create_organization", LATE_BY)
    event = make_event("nop_order_b2b")
    with pytest.raises(RetryableError):
        impatient_target.deliver(event)

    with pytest.raises(RetryableError) as early:
        impatient_target.deliver(event)
    assert early.value.reason == "create_unsettled"
    wait_until(lambda: len(served.snapshot()["organizations"]) == 1)
    clock.advance(DEFAULT_SETTLE_SECONDS)
    impatient_target.deliver(event)

    (org,) = served.snapshot()["organizations"]
    assert boxes(served)[0]["organizations"] == ["Acme Corp"]
    assert org["name"] == "Acme Corp"


def test_two_boxes_for_one_order_the_second_is_flagged_as_a_duplicate(
    mapping: DealMapping, streak_client: StreakClient, sandbox: StreakSandbox, state: InMemoryEntityState,
    make_event: MakeEvent,
) -> None:
    # Given two boxes holding order 1042's key (one created by a retry that could not see the first)
    first = streak_client.create_box("pl_orders", name="Order 1042", stage_key="5001", notes=None)
    streak_client.update_box(first["key"], {"fields": {"1001": "1042"}})
    second = streak_client.create_box("pl_orders", name="Order 1042", stage_key="5001", notes=None)
    streak_client.update_box(second["key"], {"fields": {"1001": "1042"}})

    # When the order is delivered (twice: the flag is left once)
    target = StreakDealTarget(mapping, streak_client, state)
    result = target.deliver(make_event("nop_order_b2b"))
    target.deliver(make_event("nop_order_b2b", event_id="msg_again"))

    # Then the older box is the order's and the other carries a flag an operator can search for
    assert result.detail["box_key"] == first["key"]
    assert result.detail["duplicates_flagged"] == [second["key"]]
    by_key = {box["key"]: box for box in boxes(sandbox)}
    assert by_key[second["key"]]["comments"] == [f"Switchyard: duplicate of box {first['key']} for order 1042"]
    assert by_key[first["key"]]["comments"] == []


# --- item 4: relevance-ranked, paged search --------------------------------------------------------------


def pipeline_with_order_7_among_look_alikes(client: StreakClient) -> str:
    """Order 7's box, then (newer, so ranked before it on equal relevance) 17, 27 ... 67 and 70-74."""
    keys = ["7", *(str(n) for n in range(17, 68, 10)), *(str(n) for n in range(70, 75))]
    created = {}
    for order_key in keys:
        box = client.create_box("pl_orders", name=f"Order {order_key}", stage_key="5001", notes=None)
        client.update_box(box["key"], {"fields": {"1001": order_key}})
        created[order_key] = box["key"]
    return created["7"]


def test_status_change_finds_its_box_beyond_the_first_search_page(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sample,
    make_event: MakeEvent,
) -> None:
    box_of_7 = pipeline_with_order_7_among_look_alikes(streak_client)
    data = sample("nop_status_processing")["data"]
    data["Order"]["CustomOrderNumber"] = "7"

    result = StreakDealTarget(mapping, streak_client, state).deliver(make_event("nop_status_processing", data=data))

    assert (result.outcome, result.detail["box_key"]) == ("moved", box_of_7)


def test_redelivered_order_finds_its_box_beyond_the_first_page_and_creates_none(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sample,
    make_event: MakeEvent, sandbox: StreakSandbox,
) -> None:
    box_of_7 = pipeline_with_order_7_among_look_alikes(streak_client)
    data = sample("nop_order_b2b")["data"]
    data["Order"]["CustomOrderNumber"] = "7"

    result = StreakDealTarget(mapping, streak_client, state).deliver(make_event("nop_order_b2b", data=data))

    assert (result.outcome, result.detail["box_key"]) == ("updated", box_of_7)
    assert len(boxes(sandbox)) == 12


class FailingSearchPage:
    """WSGI middleware answering 503 to search page ``page`` (the rest reaches the sandbox)."""

    def __init__(self, sandbox: StreakSandbox, page: str) -> None:
        self.sandbox, self.page = sandbox, page

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = environ.get("QUERY_STRING", "")
        if environ["PATH_INFO"] == "/api/v1/search" and f"page={self.page}" in query.split("&"):
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"success": false, "error": "Backend error"}']
        return self.sandbox.wsgi_app(environ, start_response)


def test_lookup_with_a_failed_page_is_retried_and_nothing_is_created(
    mapping: DealMapping, streak_client: StreakClient, streak_connection: StreakConnection,
    state: InMemoryEntityState, sample, make_event: MakeEvent, sandbox: StreakSandbox,
) -> None:
    pipeline_with_order_7_among_look_alikes(streak_client)
    flaky = StreakClient(streak_connection, transport=httpx.WSGITransport(app=FailingSearchPage(sandbox, "2")))
    data = sample("nop_order_b2b")["data"]
    data["Order"]["CustomOrderNumber"] = "7"

    with pytest.raises(RetryableError):
        StreakDealTarget(mapping, flaky, state).deliver(make_event("nop_order_b2b", data=data))

    assert len(boxes(sandbox)) == 12


# --- item 5: the organization the order names ------------------------------------------------------------


def test_order_of_a_company_sharing_another_companys_mail_domain_gets_its_own_organization(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox,
    make_event: MakeEvent,
) -> None:
    # Given another company (a reseller on the same mail host) already owns the domain
    other = streak_client.create_organization("team_1", "Reseller GmbH", domains=["acme-corp.example"])

    # When Acme Corp's order arrives from jane.doe@acme-corp.example
    StreakDealTarget(mapping, streak_client, state).deliver(make_event("nop_order_b2b"))

    # Then Acme Corp gets its own organization and the box is linked to it, not to the reseller
    (box,) = boxes(sandbox)
    assert box["organizations"] == ["Acme Corp"]
    acme = next(o for o in sandbox.snapshot()["organizations"] if o["key"] != other["key"])
    assert (acme["name"], acme["domains"]) == ("Acme Corp", ["acme-corp.example"])


def test_order_of_a_known_company_reuses_its_organization(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox,
    make_event: MakeEvent,
) -> None:
    streak_client.create_organization("team_1", "Reseller GmbH", domains=["acme-corp.example"])
    acme = streak_client.create_organization("team_1", "ACME CORP", domains=["acme-corp.example"])

    StreakDealTarget(mapping, streak_client, state).deliver(make_event("nop_order_b2b"))

    assert len(sandbox.snapshot()["organizations"]) == 2
    assert streak_client.get_box(boxes(sandbox)[0]["key"])["organizations"] == [{"key": acme["key"]}]


def test_known_company_gets_the_orders_billing_address_once(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox,
    make_event: MakeEvent,
) -> None:
    # Given Acme Corp is known with another address of its own
    acme = streak_client.create_organization("team_1", "Acme Corp", domains=["acme-corp.example"])
    streak_client.update_organization(acme["key"], {"addresses": ["9 Dock Rd, Springfield"]})
    target = StreakDealTarget(mapping, streak_client, state)

    # When its order arrives, and is delivered again
    event = make_event("nop_order_b2b")
    target.deliver(event)
    writes_before = len(sandbox.requests)
    target.deliver(event)

    # Then the billing address is added beside the existing one (Streak replaces the list), and the
    # redelivery does not write the organization again
    (org,) = sandbox.snapshot()["organizations"]
    assert org["addresses"] == ["9 Dock Rd, Springfield", "1 Main St, Springfield, 12345, US"]
    assert not [path for method, path, _ in sandbox.requests[writes_before:]
                if method == "POST" and path.startswith("/api/v2/organizations/")]


def test_contact_and_organization_fields_fill_what_is_empty_and_keep_a_reps_edit(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox,
    make_event: MakeEvent, sample,
) -> None:
    data = sample("nop_order_b2b")["data"]
    data["BillingAddress"]["PhoneNumber"] = "+1 555 0100"
    data["Customer"]["VatNumber"] = "US-1"
    target = StreakDealTarget(mapping, streak_client, state)

    # a new contact and organization get the mapping's fields (the organization in its create request)
    target.deliver(make_event("nop_order_b2b", data=data))
    (contact,), (org,) = sandbox.snapshot()["contacts"], sandbox.snapshot()["organizations"]
    assert (contact["phoneNumbers"], contact["other"]) == (["+1 555 0100"], "nopCommerce customer 77")
    assert (org["phoneNumbers"], org["other"]) == (["+1 555 0100"], "VAT number US-1")

    # a rep edits the contact's note; the customer's next order keeps it and writes nothing to either
    streak_client.update_contact(contact["key"], {"other": "prefers phone calls"})
    data["Order"]["CustomOrderNumber"] = "1099"
    before = len(sandbox.requests)
    target.deliver(make_event("nop_order_b2b", event_id="msg_next", data=data))
    assert sandbox.snapshot()["contacts"][0]["other"] == "prefers phone calls"
    assert not [path for method, path, _ in sandbox.requests[before:]
                if method == "POST" and path.startswith(("/api/v2/contacts/", "/api/v2/organizations/"))]


def test_box_someone_already_assigned_keeps_its_rep_on_redelivery(
    mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState, sandbox: StreakSandbox,
    make_event: MakeEvent,
) -> None:
    # Given the order's box, assigned by the mapping's rules, then handed to another rep in Streak
    target = StreakDealTarget(mapping, streak_client, state)
    event = make_event("nop_order_b2b")
    target.deliver(event)
    (box,) = boxes(sandbox)
    assert box["assignees"] == ["kim.accounts@example.com"]
    streak_client.update_box(box["key"], {"assignedToSharingEntries": [{"email": "dan.europe@example.com"}]})
    writes_before = len(sandbox.requests)

    # When the order is delivered again
    target.deliver(event)

    # Then the rep's choice stands and the box is not written
    assert boxes(sandbox)[0]["assignees"] == ["dan.europe@example.com"]
    assert not [path for method, path, _ in sandbox.requests[writes_before:]
                if method == "POST" and path.startswith("/api/v1/boxes/")]


# --- item 6: a write refused half-way -------------------------------------------------------------------


class RefuseTasks:
    """WSGI middleware answering ``status`` (Streak's 400 by default) to every create-task request."""

    def __init__(self, sandbox: StreakSandbox, status: int = 400) -> None:
        self.sandbox, self.status = sandbox, status

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/tasks"):
            start_response(f"{self.status} Refused", [("Content-Type", "application/json")])
            return [b'{"success": false, "error": "Invalid dueDate"}']
        return self.sandbox.wsgi_app(environ, start_response)


def test_delivery_refused_after_the_box_exists_marks_the_box_and_names_it_in_the_error(
    mapping: DealMapping, streak_connection: StreakConnection, state: InMemoryEntityState,
    sandbox: StreakSandbox, make_event: MakeEvent,
) -> None:
    client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=RefuseTasks(sandbox)))

    with pytest.raises(PermanentError) as raised:
        StreakDealTarget(mapping, client, state).deliver(make_event("nop_order_b2b"))

    (box,) = boxes(sandbox)
    assert box["key"] in raised.value.message  # the dead letter names the box to look at
    assert raised.value.target_status == 400
    assert box["comments"] == ["Switchyard: delivery of event msg_nop_order_b2b stopped part-way "
                               "(target_rejected); this box may be incomplete"]


# --- ghosts an operator can find ------------------------------------------------------------------------


def test_audit_lists_ghost_and_duplicate_boxes_and_flags_them_once(
    mapping: DealMapping, streak_client: StreakClient, sandbox: StreakSandbox,
) -> None:
    # Given a box whose create finished but whose fields never got written, and two boxes of order 9
    ghost = streak_client.create_box("pl_orders", name="Order 8", stage_key="5001",
                                     notes=notes_with_order_key("nopCommerce order 8", "8"))
    first = streak_client.create_box("pl_orders", name="Order 9", stage_key="5001", notes=None)
    second = streak_client.create_box("pl_orders", name="Order 9", stage_key="5001", notes=None)
    for box in (first, second):
        streak_client.update_box(box["key"], {"fields": {"1001": "9"}})

    report = audit_boxes(streak_client, mapping, flag=True)
    audit_boxes(streak_client, mapping, flag=True)

    assert report == {"ghosts": [{"box_key": ghost["key"], "name": "Order 8", "order_key_in_notes": "8"}],
                      "duplicates": {"9": [first["key"], second["key"]]}}
    comments = {box["key"]: box["comments"] for box in boxes(sandbox)}
    assert comments[ghost["key"]] == [
        "Switchyard: this box has no order key (8); it was created by a request that did not finish"]
    assert comments[second["key"]] == [f"Switchyard: duplicate of box {first['key']} for order 9"]
    assert comments[first["key"]] == []


class GoneBox:
    """WSGI middleware answering Streak's 404 for one box (deleted between the search and the read)."""

    def __init__(self, sandbox: StreakSandbox, box_key: str) -> None:
        self.sandbox, self.path = sandbox, f"/api/v1/boxes/{box_key}"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] == self.path:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"success": false, "error": "Box not found"}']
        return self.sandbox.wsgi_app(environ, start_response)


def test_a_search_hit_deleted_before_it_is_read_is_skipped(
    mapping: DealMapping, streak_client: StreakClient, streak_connection: StreakConnection,
    state: InMemoryEntityState, sample, make_event: MakeEvent, sandbox: StreakSandbox,
) -> None:
    box_of_7 = streak_client.create_box("pl_orders", name="Order 7", stage_key="5001", notes=None)
    streak_client.update_box(box_of_7["key"], {"fields": {"1001": "7"}})
    gone = streak_client.create_box("pl_orders", name="Order 17", stage_key="5001", notes=None)
    client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=GoneBox(sandbox, gone["key"])))
    data = sample("nop_status_processing")["data"]
    data["Order"]["CustomOrderNumber"] = "7"

    result = StreakDealTarget(mapping, client, state).deliver(make_event("nop_status_processing", data=data))

    assert (result.outcome, result.detail["box_key"]) == ("moved", box_of_7["key"])


def test_delivery_failing_retryably_after_the_box_exists_names_the_box_in_the_error(
    mapping: DealMapping, streak_connection: StreakConnection, state: InMemoryEntityState,
    sandbox: StreakSandbox, make_event: MakeEvent,
) -> None:
    client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=RefuseTasks(sandbox, status=503)))

    with pytest.raises(RetryableError) as raised:
        StreakDealTarget(mapping, client, state).deliver(make_event("nop_order_b2b"))

    (box,) = boxes(sandbox)
    assert f"box {box['key']} of order 1042 is not complete yet" in str(raised.value)
    assert box["comments"] == []  # a retry completes it: no mark
