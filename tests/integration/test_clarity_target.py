"""ClarityTarget (streak-to-clarity) against the Clarity sandbox: Streak box moves set the order's
status, contact edits update the linked customer under the master-data rules, every write is
recorded as an echo, and Clarity's webhook for that write is then recognised and not carried back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from switchyard.echoes import InMemoryEchoLedger
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import PermanentError, RetryableError
from switchyard.events import FlowEvent
from switchyard.pairs.clarity_streak import ClarityStreakPairs
from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
from switchyard.systems.clarity.target import ClarityTarget, contact_link
from switchyard.systems.streak.client import StreakClient
from switchyard.targets import DeliveryResult
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

CONTACT_LINK = "streak:contact>clarity:customer"  # written by the forward flow's StreakDealTarget
T1 = 1_795_860_000_000  # epoch ms
StreakEvents = Callable[..., list[FlowEvent]]


@pytest.fixture
def sandbox(fake_clock) -> StreakSandbox:
    """Streak on the test's clock (its change times are compared with Clarity's)."""
    return StreakSandbox(api_key="sandbox-key", team_key="team_1", pipeline=DEMO_PIPELINE, clock=fake_clock)


def edit_at(fake_clock: Any, at_ms: int, edit: Callable[[], Any]) -> None:
    """A rep's edit in Streak made at ``at_ms`` (the test's clock then goes on from where it was)."""
    saved, fake_clock.now = fake_clock.now, at_ms / 1000
    edit()
    fake_clock.now = max(saved, fake_clock.now)


@pytest.fixture
def target(pairs) -> ClarityTarget:
    return ClarityTarget(load_clarity_sync_mapping("streak-to-clarity.yaml"), pairs)


@pytest.fixture
def order_id(clarity_sandbox: ClaritySandbox, streak_client: StreakClient, fake_clock) -> str:
    order = clarity_sandbox.place_order(DEMO_ORDERS[0])
    assert (order["orderId"], order["status"], order["customerId"]) == ("CL-10001", "processing", "C-501")
    # its deal and contact in Streak (box_1, contact_1), where a change that loses is written back
    box = streak_client.create_box("pl_orders", name="Clarity CL-10001 · Jane Doe Acme Corp", stage_key="5002",
                                   notes=None)
    streak_client.set_field(box["key"], "1001", "CL-10001")
    contact = streak_client.find_or_create_contact("team_1", "jane.doe@acme-corp.example")
    streak_client.update_contact(contact["key"], {"givenName": "Jane", "familyName": "Doe",
                                                  "phoneNumbers": ["+1 217 555 0100"]})
    assert (box["key"], contact["key"]) == ("box_1", "contact_1")
    fake_clock.now = T1 / 1000 + 60  # what people do in Clarity comes after the reps' edits at T1
    return order["orderId"]


@pytest.fixture
def forward_pair(pairs: ClarityStreakPairs) -> Callable[[FlowEvent], DeliveryResult]:
    """The forward flow as deployed (clarity-to-streak): Clarity's events go through the same pairs."""
    def deliver(event: FlowEvent) -> DeliveryResult:
        if event.type == "customer.updated":
            return pairs.customer_from_clarity(event)
        return pairs.order_from_clarity(event, "box_1")

    return deliver


@pytest.fixture
def box_event(sample: Callable[..., Any], streak_events: StreakEvents, sandbox, fake_clock) -> Callable[..., FlowEvent]:
    """A rep's move of box_1 (made in the Streak sandbox too, unless ``late``: an older move delivered late)."""
    def build(stage: str, *, at: int = T1, late: bool = False, **changes: Any) -> FlowEvent:
        (box,) = sample("streak_box_change_stage")
        box.update(stageKey=stage, lastUpdatedTimestamp=at, **changes)
        if not late and box["key"] in {b["key"] for b in sandbox.snapshot()["boxes"]} and stage.startswith("500"):
            edit_at(fake_clock, at, lambda: sandbox.move_box(box["key"], stage))
        (event,) = streak_events("BOX_CHANGE_STAGE", [box])
        return event

    return build


@pytest.fixture
def contact_event(sample: Callable[..., Any], streak_events: StreakEvents, sandbox,
                  fake_clock) -> Callable[..., FlowEvent]:
    """A rep's edit of contact_1 (made in the Streak sandbox too, unless ``late``)."""
    def build(*, at: int = T1, late: bool = False, **changes: Any) -> FlowEvent:
        (contact,) = sample("streak_contact_update")  # Janet Doe, janet@private.example, +1 555 0123
        contact.update(lastUpdatedTimestamp=at, **changes)
        if not late and sandbox.snapshot()["contacts"]:
            edit_at(fake_clock, at, lambda: sandbox.edit_contact(contact["key"], **{name: contact[name] for name in (
                "givenName", "familyName", "emailAddresses", "phoneNumbers")}))
        (event,) = streak_events("CONTACT_UPDATE", [contact])
        return event

    return build


def writes(transport: Any) -> list[httpx.Request]:
    return [r for r in transport.sent if r.method == "PATCH"]


# --- box moved → order status -------------------------------------------------------------------------


def test_deliver_box_moved_status_set_once_and_echo_recorded(
    target: ClarityTarget, box_event, order_id: str, clarity_sandbox: ClaritySandbox, clarity_transport,
    clarity_emitted, forward_pair, sandbox,
) -> None:
    # When a rep moves the order's box to "Complete"
    result = target.deliver(box_event("5003"))

    # Then the Clarity order is delivered, by one write with the mapping's note
    assert result == DeliveryResult("updated", {"order_id": order_id, "box_key": "box_1",
                                                "fields": {"status": "applied"}, "writes": {"clarity": ["status"]}})
    order = clarity_sandbox.get_order(order_id)
    assert order["status"] == "delivered"
    assert order["statusHistory"][-1]["by"] == "api"
    assert order["statusHistory"][-1]["note"] == "Box moved in Streak (Clarity CL-10001 · Jane Doe Acme Corp)"
    assert [json.loads(r.content) for r in writes(clarity_transport)] == [
        {"status": "delivered", "note": "Box moved in Streak (Clarity CL-10001 · Jane Doe Acme Corp)"}]

    # And Clarity's webhook for that write comes back to the forward flow, which consumes it as the echo
    echo = clarity_emitted()[-1]
    assert (echo.type, echo.data["status"], echo.data["previousStatus"]) == (
        "order.status_changed", "delivered", "processing")
    streak_posts = len(sandbox.requests)
    assert forward_pair(echo).outcome == "echo"
    assert [m for m, _p, _c in sandbox.requests[streak_posts:] if m == "POST"] == []  # nothing written to Streak


def test_deliver_box_moved_echo_consumed_once(
    target: ClarityTarget, box_event, order_id: str, clarity_emitted, forward_pair, clarity_sandbox: ClaritySandbox,
    fake_clock,
) -> None:
    target.deliver(box_event("5003"))
    echo = clarity_emitted()[-1]
    assert forward_pair(echo).outcome == "echo"

    # once an admin has changed the order since, the echo delivered again (a webhook retry) is older: stale
    fake_clock.advance(1)
    clarity_sandbox.set_order_status(order_id, "refunded")
    assert forward_pair(clarity_emitted()[-1]).outcome == "moved"
    assert forward_pair(echo).outcome == "stale"


def test_deliver_box_moved_by_admin_in_clarity_not_suppressed(
    target: ClarityTarget, box_event, order_id: str, clarity_sandbox: ClaritySandbox, clarity_emitted,
    forward_pair, streak_client: StreakClient, fake_clock,
) -> None:
    # Given Switchyard wrote "delivered"; then an admin refunds the order in Clarity's back office
    target.deliver(box_event("5003"))
    fake_clock.advance(1)
    clarity_sandbox.set_order_status(order_id, "refunded")

    outcomes = [forward_pair(event).outcome for event in clarity_emitted()[-2:]]

    # Then only the admin's change goes on to Streak
    assert outcomes == ["echo", "moved"]
    assert streak_client.get_box("box_1")["stageKey"] == "5004"


def test_deliver_box_redelivered_unchanged_written_once(
    target: ClarityTarget, box_event, order_id: str, clarity_transport,
) -> None:
    event = box_event("5003")
    target.deliver(event)

    again = target.deliver(event)

    assert (again.outcome, again.detail["writes"]) == ("unchanged", {})
    assert len(writes(clarity_transport)) == 1


def test_deliver_box_same_stage_as_order_unchanged_no_echo(
    target: ClarityTarget, box_event, order_id: str, clarity_transport, clarity_emitted, pair_store,
) -> None:
    result = target.deliver(box_event("5002"))  # Processing: the order already is processing

    assert result.outcome == "unchanged" and result.detail["writes"] == {}
    assert writes(clarity_transport) == []
    assert [e.type for e in clarity_emitted()] == ["order.created"]  # no webhook for a no-op
    (record,) = pair_store.records("clarity+streak:order").values()
    assert record["fields"]["status"]["writes"] == {"clarity": [], "streak": []}  # no echo awaited


def test_deliver_older_box_event_after_newer_stale(
    target: ClarityTarget, box_event, order_id: str, clarity_sandbox: ClaritySandbox, clarity_transport,
) -> None:
    target.deliver(box_event("5003", at=T1 + 60_000))

    result = target.deliver(box_event("5001", at=T1, late=True))

    assert (result.outcome, result.detail["fields"]) == ("stale", {"status": "stale"})
    assert clarity_sandbox.get_order(order_id)["status"] == "delivered"
    assert len(writes(clarity_transport)) == 1


def test_deliver_invalid_transition_permanent_error(
    target: ClarityTarget, box_event, order_id: str, clarity_sandbox: ClaritySandbox,
) -> None:
    clarity_sandbox.set_order_status(order_id, "delivered")

    with pytest.raises(PermanentError) as caught:
        target.deliver(box_event("5001"))  # delivered → pending is forbidden

    assert (caught.value.reason, caught.value.target_status) == ("target_rejected", 409)
    assert caught.value.target_response["error"] == "invalid_transition"
    assert clarity_sandbox.get_order(order_id)["status"] == "delivered"


def test_deliver_non_clarity_box_filtered_nothing_sent(
    target: ClarityTarget, box_event, order_id: str, clarity_transport,
) -> None:
    result = target.deliver(box_event("5003", fields={"1001": "1042"}, key="box_nop"))

    assert result == DeliveryResult("filtered", {"key": "box_nop"})
    assert clarity_transport.sent == []


def test_deliver_box_of_unknown_order_permanent_not_found(target: ClarityTarget, box_event) -> None:
    with pytest.raises(PermanentError) as caught:
        target.deliver(box_event("5003", fields={"1001": "CL-99999"}))

    assert caught.value.reason == "target_not_found"


def test_deliver_box_in_stage_without_clarity_status_filtered(
    target: ClarityTarget, box_event, order_id: str, clarity_transport,
) -> None:
    # no Clarity status stands for the stage (the lookup's default): nothing to write, nothing failed
    result = target.deliver(box_event("5999"))

    assert result.outcome == "filtered"
    assert clarity_transport.sent == []


def test_deliver_clarity_unavailable_retryable_then_retry_succeeds(
    target: ClarityTarget, box_event, order_id: str, clarity_sandbox: ClaritySandbox, clarity_transport,
) -> None:
    # Given Clarity answers the next request with 503
    clarity_sandbox.faults.fail_next(1, 503, retry_after=3)
    event = box_event("5003")

    # When the worker delivers, the error is retryable (with Retry-After) and nothing was written
    with pytest.raises(RetryableError) as caught:
        target.deliver(event)
    assert (caught.value.reason, caught.value.retry_after) == ("target_unavailable", 3.0)
    assert clarity_sandbox.get_order(order_id)["status"] == "processing"

    # Then the caller's retry of the same event is applied (its own claim does not make it stale)
    assert target.deliver(event).outcome == "updated"
    assert clarity_sandbox.get_order(order_id)["status"] == "delivered"
    assert [(r.method, r.url.path) for r in writes(clarity_transport)] == [
        ("PATCH", f"/api/v1/orders/{order_id}/status")]


def test_deliver_unsupported_event_permanent_error(target: ClarityTarget, flow_event) -> None:
    event = flow_event("streak-to-clarity", "streak", {"type": "BOX_CREATE", "timestamp": "2026-11-22T08:00:00Z",
                                                        "data": {"key": "box_1"}})

    with pytest.raises(PermanentError) as caught:
        target.deliver(event)

    assert caught.value.reason == "unsupported_event"


# --- contact edited → customer ------------------------------------------------------------------------


def test_contact_link_namespace_matches_forward_flow() -> None:
    assert contact_link("streak") == CONTACT_LINK


def test_deliver_contact_without_link_unlinked(
    target: ClarityTarget, contact_event, order_id: str, clarity_transport,
) -> None:
    result = target.deliver(contact_event())

    assert result == DeliveryResult("unlinked", {"contact_key": "contact_1"})
    assert clarity_transport.sent == []


def test_deliver_contact_linked_only_name_fields_patched_with_if_match(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState,
    clarity_sandbox: ClaritySandbox, clarity_transport, clarity_emitted,
    forward_pair, streak_client: StreakClient,
) -> None:
    # Given the contact is linked to customer C-501 (Jane Doe, version 1)
    state.link(CONTACT_LINK, "contact_1", "C-501")
    state.link("clarity:customer>streak:contact", "C-501", "contact_1")

    # When a rep edits the contact: given name, e-mail and phone (the sample)
    result = target.deliver(contact_event())

    # Then only the name is written (e-mail and phone belong to Clarity), conditionally on the version read,
    # and Clarity's e-mail and phone are written back to Streak, so both systems end equal
    assert result == DeliveryResult("updated", {
        "customer_id": "C-501", "fields": {"email": "not_master", "phone": "not_master", "first_name": "applied",
                                           "last_name": "unchanged"},
        "writes": {"clarity": ["first_name"], "streak": ["email", "phone"]}})
    contact = streak_client.get_contact("contact_1")
    assert (contact["emailAddresses"][0], contact["phoneNumbers"][0]) == (
        "jane.doe@acme-corp.example", "+1 217 555 0100")
    (patch,) = writes(clarity_transport)
    assert patch.url.path == "/api/v1/customers/C-501"
    assert json.loads(patch.content) == {"firstName": "Janet"}
    assert patch.headers["If-Match"] == "1"
    customer = clarity_sandbox.get_customer("C-501")
    assert (customer["firstName"], customer["email"], customer["phone"]) == (
        "Janet", " Jane.Doe@Acme-Corp.example ", "+1 217 555 0100")

    # And Clarity's customer.updated for this write is consumed as the echo
    echo = clarity_emitted()[-1]
    assert (echo.type, echo.data["firstName"]) == ("customer.updated", "Janet")
    assert forward_pair(echo).outcome == "echo"


def test_deliver_contact_names_already_equal_unchanged(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState, clarity_transport,
) -> None:
    state.link(CONTACT_LINK, "contact_1", "C-501")

    result = target.deliver(contact_event(givenName="Jane", familyName="Doe"))

    # the e-mail and phone the rep typed are Clarity's to set: written back, and the edit counted as a drop
    assert (result.outcome, result.detail["writes"]) == ("not_master", {"streak": ["email", "phone"]})
    assert writes(clarity_transport) == []


def test_deliver_contact_email_and_phone_only_changed_unchanged(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState, clarity_transport,
) -> None:
    state.link(CONTACT_LINK, "contact_1", "C-501")

    result = target.deliver(contact_event(givenName="Jane", familyName="Doe",
                                          emailAddresses=["rep-typed@example.com"], phoneNumbers=["+44 1"]))

    assert result.outcome == "not_master"
    assert writes(clarity_transport) == []


def test_deliver_contact_blank_name_not_written(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState, clarity_sandbox: ClaritySandbox,
) -> None:
    state.link(CONTACT_LINK, "contact_1", "C-501")

    result = target.deliver(contact_event(givenName="  ", familyName="Doe-Smith"))

    assert result.detail["writes"]["clarity"] == ["last_name"]
    assert clarity_sandbox.get_customer("C-501")["firstName"] == "Jane"


def test_deliver_older_contact_edit_after_newer_stale(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState, clarity_sandbox: ClaritySandbox,
) -> None:
    state.link(CONTACT_LINK, "contact_1", "C-501")
    target.deliver(contact_event(at=T1 + 1, givenName="Janet"))

    result = target.deliver(contact_event(at=T1, givenName="Janine", late=True))

    assert (result.outcome, result.detail["fields"]["first_name"]) == ("stale", "stale")
    assert clarity_sandbox.get_customer("C-501")["firstName"] == "Janet"


def test_deliver_contact_customer_changed_meanwhile_retryable_stale_version_then_applied(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState,
    clarity_sandbox: ClaritySandbox, clarity_transport,
) -> None:
    # Given the shopper edits their profile between Switchyard's read and its write
    state.link(CONTACT_LINK, "contact_1", "C-501")
    raced = []

    def shopper_edits_first(request: httpx.Request) -> None:
        if request.method == "PATCH" and not raced:
            raced.append(request)
            clarity_sandbox.update_customer("C-501", phone="+1 217 555 0199")

    clarity_transport.before = shopper_edits_first
    event = contact_event()

    # When the write is sent with the version read, Clarity refuses it as stale
    with pytest.raises(RetryableError) as caught:
        target.deliver(event)
    assert (caught.value.reason, caught.value.target_status) == ("stale_version", 412)

    # Then the retry reads again and writes on top of the shopper's change
    assert target.deliver(event).outcome == "updated"
    customer = clarity_sandbox.get_customer("C-501")
    assert (customer["firstName"], customer["phone"], customer["version"]) == ("Janet", "+1 217 555 0199", 3)
    assert [r.headers["If-Match"] for r in writes(clarity_transport)] == ["1", "2"]


# --- two-way safety: older values never undo newer ones; failed writes leave no echo ------------------------


def test_deliver_contact_edit_carries_only_fields_changed_in_streak_not_older_ones(
    target: ClarityTarget, contact_event, order_id: str, state: InMemoryEntityState, clarity_sandbox: ClaritySandbox,
) -> None:
    # Given Streak's contact was synced once (Janet Doe) ...
    state.link(CONTACT_LINK, "contact_1", "C-501")
    target.deliver(contact_event(at=T1))
    # ... and the shopper then renamed themselves in Clarity (Streak still says "Doe")
    clarity_sandbox.update_customer("C-501", lastName="Doe-Smith")

    # When a rep edits only the first name in Streak
    result = target.deliver(contact_event(at=T1 + 10, givenName="Jay"))

    # Then only the first name goes across: Streak's older last name does not undo Clarity's newer one
    assert result.outcome == "updated" and result.detail["writes"]["clarity"] == ["first_name"]
    customer = clarity_sandbox.get_customer("C-501")
    assert (customer["firstName"], customer["lastName"]) == ("Jay", "Doe-Smith")


def test_deliver_failed_status_write_leaves_no_echo_to_swallow_a_later_identical_change(
    target: ClarityTarget, box_event, order_id: str, echoes: InMemoryEchoLedger, clarity_sandbox: ClaritySandbox,
    clarity_transport, forward_pair, clarity_emitted, pair_store,
) -> None:
    # Given Switchyard's write of "delivered" itself fails (the read before it succeeds)
    def write_fails(request: httpx.Request) -> None:
        if request.method == "PATCH":
            clarity_sandbox.faults.fail_next(1, status=503)

    clarity_transport.before = write_fails
    with pytest.raises(RetryableError):
        target.deliver(box_event("5003"))
    assert [r.method for r in clarity_transport.sent][-1] == "PATCH"
    # When an admin then sets "delivered" in Clarity themselves
    clarity_transport.before = None
    clarity_sandbox.set_order_status(order_id, "delivered")
    # Then Clarity's webhook for it is not mistaken for Switchyard's echo
    assert forward_pair(clarity_emitted()[-1]).outcome == "unchanged"  # the pair's value already, not an echo
    (record,) = pair_store.records("clarity+streak:order").values()
    assert record["fields"]["status"]["writes"]["clarity"] == []  # the failed write is forgotten
    assert echoes.consume("clarity", "clarity+streak:order.status", order_id, {"value": "5003"}) is False
