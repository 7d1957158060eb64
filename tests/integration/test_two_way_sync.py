"""Clarity ⇄ Streak converges: the seven sequences of issue 16, both flows as deployed (sharing the
pair records, the echo ledger and the cross-references) against both sandboxes on one clock.

Every webhook either system fires is captured and delivered when the test says, in the order it says:
that is how a test makes a webhook late, reordered or duplicated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from switchyard.errors import OutOfOrderError, RetryableError
from switchyard.events import FlowEvent
from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
from switchyard.systems.clarity.target import ClarityTarget
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard.systems.streak.deal_mapping import load_deal_mapping
from switchyard.systems.streak.deals import StreakDealTarget
from switchyard.targets import DeliveryResult
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

from tests.conftest import SANDBOX_API_KEY, SANDBOX_TEAM

SYNCED_STREAK_EVENTS = ("BOX_CHANGE_STAGE", "CONTACT_UPDATE")


@pytest.fixture
def sandbox(fake_clock) -> StreakSandbox:
    """Streak on the same clock as Clarity (their change times are compared)."""
    return StreakSandbox(api_key=SANDBOX_API_KEY, team_key=SANDBOX_TEAM, pipeline=DEMO_PIPELINE, clock=fake_clock)


@pytest.fixture
def echoes(fake_clock):
    """The echo ledger on the test's clock too (so its window passes when the test says)."""
    from switchyard.echoes import InMemoryEchoLedger

    return InMemoryEchoLedger(clock=fake_clock)


class ApplyThenTimeOut(httpx.BaseTransport):
    """Streak carries out the request, but the client has given up waiting when ``armed`` (for POSTs)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.armed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.armed and request.method == "POST":
            self.armed -= 1
            response.read()
            raise httpx.ReadTimeout("timed out", request=request)
        return response


@pytest.fixture
def streak_transport(sandbox: StreakSandbox) -> ApplyThenTimeOut:
    return ApplyThenTimeOut(httpx.WSGITransport(app=sandbox.wsgi_app))


@pytest.fixture
def streak_client(streak_transport: ApplyThenTimeOut, streak_connection: StreakConnection):
    client = StreakClient(streak_connection, transport=streak_transport)
    yield client
    client.close()


class Pair:
    """Both flows, and every webhook both systems fired, waiting to be delivered."""

    def __init__(self, forward: StreakDealTarget, backward: ClarityTarget, clarity: ClaritySandbox,
                 streak: StreakSandbox, clarity_emitted: Callable[..., list[FlowEvent]],
                 streak_events: Callable[..., list[FlowEvent]], clock: Any) -> None:
        self.forward, self.backward, self.clarity, self.streak = forward, backward, clarity, streak
        self._clarity_emitted, self._streak_events, self.clock = clarity_emitted, streak_events, clock
        self._clarity_taken = 0
        self._fired: list[tuple[str, dict[str, Any]]] = []
        streak.on_fire = lambda event, obj: self._fired.append((event, obj)) if event in SYNCED_STREAK_EVENTS else None

    def clarity_webhooks(self) -> list[FlowEvent]:
        """Clarity's webhooks fired since the last call (taken: deliver them, or keep them for later)."""
        events = self._clarity_emitted()[self._clarity_taken:]
        self._clarity_taken += len(events)
        return events

    def streak_webhooks(self) -> list[FlowEvent]:
        fired, self._fired = self._fired, []
        return [event for name, obj in fired for event in self._streak_events(name, [obj])]

    def deliver(self, *events: FlowEvent) -> list[str]:
        """Each event's outcome, in the order given. As the worker does, an event that must wait (out of order:
        a side changed by a change not heard of yet) goes back on the queue and is tried again later."""
        outcomes: dict[int, str] = {}
        waiting = list(enumerate(events))
        for _attempt in range(5):
            retry = []
            for index, event in waiting:
                try:
                    outcomes[index] = self.result(event).outcome
                except OutOfOrderError:
                    retry.append((index, event))
            if not retry:
                break
            if len(retry) == len(waiting):
                self.later(61)  # nothing else came: the worker's retries wait out the settle time
            waiting = retry
        return [outcomes[index] for index in range(len(events))]

    def result(self, event: FlowEvent) -> DeliveryResult:
        return (self.forward if event.source == "clarity" else self.backward).deliver(event)

    def drain(self) -> list[str]:
        """Deliver everything waiting, in the order fired, until nothing more comes back."""
        outcomes: list[str] = []
        for _round in range(10):
            events = self.clarity_webhooks() + self.streak_webhooks()
            if not events:
                return outcomes
            outcomes += self.deliver(*events)
        raise AssertionError(f"still echoing after 10 rounds: {outcomes}")

    def later(self, seconds: float = 1) -> None:
        self.clock.advance(seconds)

    # --- what each system holds

    def box(self) -> dict[str, Any]:
        (box,) = self.streak.snapshot()["boxes"]
        return box

    def contact(self) -> dict[str, Any]:
        (contact,) = self.streak.snapshot()["contacts"]
        return contact

    def order(self) -> dict[str, Any]:
        return self.clarity.get_order("CL-10001")

    def customer(self) -> dict[str, Any]:
        return self.clarity.get_customer("C-501")


@pytest.fixture
def pair(streak_client, state, echoes, pairs, clarity_sandbox, sandbox, clarity_emitted, streak_events,
         fake_clock) -> Pair:
    forward = StreakDealTarget(load_deal_mapping("clarity-to-streak.yaml"), streak_client, state, echoes, pairs=pairs)
    backward = ClarityTarget(load_clarity_sync_mapping("streak-to-clarity.yaml"), pairs)
    return Pair(forward, backward, clarity_sandbox, sandbox, clarity_emitted, streak_events, fake_clock)


@pytest.fixture
def order(pair: Pair) -> Pair:
    """A shopper's pending order (Jane Doe, C-501) synced into Streak: box in New Order, contact linked."""
    pair.clarity.place_order({**DEMO_ORDERS[0], "status": "pending"})
    pair.drain()
    assert (pair.box()["stage"], pair.order()["status"]) == ("New Order", "pending")
    pair.later(60)
    return pair


STAGE_OF = {"pending": "5001", "processing": "5002", "shipped": "5002", "delivered": "5003"}


def assert_converged(pair: Pair) -> None:
    box, contact, order, customer = pair.streak._state.boxes["box_1"], pair.contact(), pair.order(), pair.customer()
    assert box["stageKey"] == STAGE_OF[order["status"]]
    assert (contact["givenName"], contact["familyName"]) == (customer["firstName"], customer["lastName"])
    assert contact["emailAddresses"][0] == customer["email"].strip().lower()
    assert contact["phoneNumbers"][0] == customer["phone"]


# 1 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arrival", ["rep first", "shop first"])
def test_two_way_rep_moves_box_after_an_older_shop_change_rep_wins_on_both_sides(order: Pair, arrival: str) -> None:
    # Given the admin sets processing, and before Switchyard writes it to Streak, a rep completes the box
    order.clarity.set_order_status("CL-10001", "processing")
    order.later()
    order.streak.move_box("box_1", "5003")
    shop, rep = order.clarity_webhooks(), order.streak_webhooks()

    # When both webhooks arrive, in either order
    outcomes = order.deliver(*(rep + shop if arrival == "rep first" else shop + rep))
    order.drain()

    # Then the rep's later change wins in both systems: the older shop change never moves the box back
    assert (order.order()["status"], order.box()["stage"]) == ("delivered", "Complete")
    # (first come, the shop's change is the latest known: applied, then overtaken by the rep's)
    assert outcomes == (["updated", "stale"] if arrival == "rep first" else ["moved", "updated"])
    assert_converged(order)


# 2 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arrival", ["in order", "reversed"])
def test_two_way_two_shop_changes_in_one_millisecond_the_later_one_reaches_streak(order: Pair, arrival: str) -> None:
    # Given two status changes of the order in the same millisecond (pending → processing → delivered)
    order.clarity.set_order_status("CL-10001", "processing")
    order.clarity.set_order_status("CL-10001", "delivered")
    first, second = order.clarity_webhooks()
    assert first.timestamp == second.timestamp

    # When they arrive in either order, none is dropped as stale and the box ends where the order is
    outcomes = order.deliver(*((first, second) if arrival == "in order" else (second, first)))
    order.drain()

    assert "stale" not in outcomes
    assert order.box()["stage"] == "Complete"
    assert_converged(order)


@pytest.mark.parametrize("arrival", ["in order", "reversed"])
def test_two_way_two_customer_edits_in_one_millisecond_the_one_clarity_holds_wins(order: Pair, arrival: str) -> None:
    order.clarity.update_customer("C-501", lastName="Doe-Smith")
    order.clarity.update_customer("C-501", lastName="Smith")
    first, second = order.clarity_webhooks()
    assert first.timestamp == second.timestamp

    order.deliver(*((first, second) if arrival == "in order" else (second, first)))
    order.drain()

    assert order.contact()["familyName"] == "Smith"
    assert_converged(order)


# 3 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arrival", ["shop first", "rep first"])
def test_two_way_concurrent_edits_of_different_fields_both_survive_on_both_sides(order: Pair, arrival: str) -> None:
    # Given the customer changes the first name in Clarity while a rep changes the last name in Streak
    order.clarity.update_customer("C-501", firstName="Janet")
    order.later()
    order.streak.edit_contact("contact_1", familyName="Doe-Smith")
    shop, rep = order.clarity_webhooks(), order.streak_webhooks()

    order.deliver(*(shop + rep if arrival == "shop first" else rep + shop))
    order.drain()

    assert (order.customer()["firstName"], order.customer()["lastName"]) == ("Janet", "Doe-Smith")
    assert (order.contact()["givenName"], order.contact()["familyName"]) == ("Janet", "Doe-Smith")
    assert_converged(order)


# 4 and 7 ----------------------------------------------------------------------------------------------------


def test_two_way_late_echo_after_a_newer_change_is_recognised_and_reverts_nothing(order: Pair) -> None:
    # Given Switchyard moved the box for the admin's change ...
    order.clarity.set_order_status("CL-10001", "processing")
    assert order.deliver(*order.clarity_webhooks()) == ["moved"]
    echo = order.streak_webhooks()
    # ... and a rep then completed the box; the rep's webhook arrives, Switchyard's own comes back late
    order.later(30)
    order.streak.move_box("box_1", "5003")
    assert order.deliver(*order.streak_webhooks()) == ["updated"]
    order.drain()
    order.later(11 * 60)  # after the echo window: the ledger has forgotten the write

    # When the echo of Switchyard's move arrives, it is recognised by the pair record, not applied
    assert order.deliver(*echo) == ["echo"]

    # Then the rep's change stands in both systems
    assert (order.order()["status"], order.box()["stage"]) == ("delivered", "Complete")
    assert order.drain() == []
    assert_converged(order)


def test_two_way_consumed_echo_makes_anything_older_from_that_side_stale(order: Pair) -> None:
    # Given a rep's move to Processing that is delivered late, after Switchyard's later move and its echo
    order.streak.move_box("box_1", "5002")
    late_rep = order.streak_webhooks()
    order.later()
    order.clarity.set_order_status("CL-10001", "delivered")
    order.drain()  # Switchyard moves the box to Complete; its echo is consumed

    assert order.deliver(*late_rep) == ["stale"]
    assert (order.order()["status"], order.box()["stage"]) == ("delivered", "Complete")


def test_two_way_late_echo_with_nothing_newer_is_an_echo_not_a_change(order: Pair) -> None:
    order.clarity.set_order_status("CL-10001", "processing")
    order.deliver(*order.clarity_webhooks())
    order.later(11 * 60)

    assert order.deliver(*order.streak_webhooks()) == ["echo"]
    assert [h["by"] for h in order.order()["statusHistory"]] == ["shopper", "admin"]  # nothing written back


# 5 --------------------------------------------------------------------------------------------------------


def test_two_way_write_carried_out_after_the_client_timed_out_its_webhook_is_still_ours(
    order: Pair, streak_transport: ApplyThenTimeOut,
) -> None:
    # Given Switchyard's move of the box is carried out by Streak, but the answer never reaches Switchyard
    order.clarity.set_order_status("CL-10001", "processing")
    admin = order.clarity_webhooks()
    streak_transport.armed = 1
    with pytest.raises(RetryableError) as caught:
        order.deliver(*admin)
    assert caught.value.reason == "target_timeout"
    assert order.box()["stage"] == "Processing"

    # When Streak's webhook for that move arrives (before or after the worker's retry), it is Switchyard's echo
    late = order.streak_webhooks()
    order.later(5 * 60)
    assert order.deliver(*late) == ["echo"]
    assert order.deliver(*admin) == ["unchanged"]  # the retry: nothing left to write

    # Then nothing went back to Clarity as if a person had made it
    assert [h["by"] for h in order.order()["statusHistory"]] == ["shopper", "admin"]
    assert order.drain() == []
    assert_converged(order)


# 6 --------------------------------------------------------------------------------------------------------


def test_two_way_rep_edits_a_master_field_clarity_value_is_written_back_so_both_end_equal(
    order: Pair, drops_worker,
) -> None:
    # Given Clarity owns the phone; a rep types another phone (and a nickname) into the Streak contact
    order.streak.edit_contact("contact_1", phoneNumbers=["+1 555 0999"], givenName="Jay")

    # When the contact's webhook arrives
    (event,) = order.streak_webhooks()
    result = order.result(event)

    # Then the name goes to Clarity, the phone does not, and Clarity's phone is written back into Streak
    assert result.detail["fields"]["phone"] == "not_master"
    assert result.detail["writes"] == {"clarity": ["first_name"], "streak": ["phone"]}
    assert order.customer()["phone"] == "+1 217 555 0100" and order.customer()["firstName"] == "Jay"
    assert order.contact()["phoneNumbers"] == ["+1 217 555 0100"]
    assert order.drain() == ["echo", "echo"]
    assert_converged(order)


def test_two_way_rep_edits_only_a_master_field_the_event_is_a_visible_drop(order: Pair, drops_worker) -> None:
    order.streak.edit_contact("contact_1", phoneNumbers=["+1 555 0999"])
    (event,) = order.streak_webhooks()

    worker, drops = drops_worker(order.backward, "streak-to-clarity")
    worker.handle(event.message, receive_count=1, receipt_handle="rh-1")

    (drop,) = drops.list("streak-to-clarity")
    assert (drop.reason, drop.detail["fields"]["phone"]) == ("not_master", "not_master")
    assert order.contact()["phoneNumbers"] == ["+1 217 555 0100"]
    order.drain()
    assert_converged(order)


@pytest.fixture
def drops_worker() -> Callable[..., Any]:
    from switchyard.catalog import load_catalog
    from switchyard.drops import InMemoryDropLog
    from switchyard.worker import FlowWorker

    def build(target: Any, flow: str) -> tuple[FlowWorker, InMemoryDropLog]:
        drops = InMemoryDropLog()
        worker = FlowWorker(flow=load_catalog().flows[flow], target=target, dead_letters=None,  # type: ignore[arg-type]
                            delay=lambda *_: None, max_receive_count=5, drops=drops)
        return worker, drops

    return build


def test_two_way_rep_undoes_a_move_whose_webhook_is_late_the_undo_still_wins_over_an_older_shop_change(
    order: Pair,
) -> None:
    # Given a rep moves the box to Processing (its webhook is held up) ...
    order.streak.move_box("box_1", "5002")
    held_up = order.streak_webhooks()
    order.later(60)
    # ... an admin then sets the order to processing too, and the rep moves the box back to New Order
    order.clarity.set_order_status("CL-10001", "processing")
    order.drain()
    order.later(60)
    order.streak.move_box("box_1", "5001")

    # When the rep's last move arrives (the box looks as it did when Switchyard last heard of it), then the late one
    order.drain()
    assert order.deliver(*held_up) == ["stale"]

    # Then the rep's move back is the latest change, in both systems
    assert (order.box()["stage"], order.order()["status"]) == ("New Order", "pending")
    assert_converged(order)


def test_two_way_rep_edit_whose_webhook_is_held_back_is_dated_no_later_than_when_switchyard_saw_it(
    order: Pair,
) -> None:
    # Given a rep renames the contact's last name (its webhook is held back for minutes) ...
    order.streak.edit_contact("contact_1", familyName="Rep-Older")
    held_back = order.streak_webhooks()
    order.later(80)
    # ... then the customer changes the last name in Clarity: the later change, delivered at once
    order.clarity.update_customer("C-501", lastName="Shop-Newer")
    order.deliver(*order.clarity_webhooks())
    order.later(60)
    # ... and the e-mail: Switchyard writes it into the contact, whose webhook then shows the rep's old edit
    order.clarity.update_customer("C-501", email="jane.new@example.com")

    # When everything arrives, the held-back webhook last
    order.drain()
    assert order.deliver(*held_back) == ["stale"]

    # Then the customer's later change wins in both systems: the rep's edit is older although the first
    # webhook showing it was sent after the customer's change
    assert (order.customer()["lastName"], order.contact()["familyName"]) == ("Shop-Newer", "Shop-Newer")
    assert_converged(order)


def test_two_way_customer_edit_shown_first_by_a_later_webhook_is_dated_by_its_own_field_change_time(
    order: Pair,
) -> None:
    # Given the customer changes the last name in Clarity (its webhook is held back) ...
    order.clarity.update_customer("C-501", lastName="Shop-Older")
    held_back = order.clarity_webhooks()
    order.later(30)
    # ... a rep then renames it in Streak (held back too), and the customer then changes the phone
    order.streak.edit_contact("contact_1", familyName="Rep-Newer")
    rep = order.streak_webhooks()
    order.later(30)
    order.clarity.update_customer("C-501", phone="+1 217 555 0199")
    phone = order.clarity_webhooks()
    (event,) = phone
    changed = event.data.get("fieldUpdatedAt") or {}
    assert changed.get("lastName", "") < changed.get("phone", "")  # each field's own last change time

    # When the phone's webhook (it shows the older last name) arrives first, then the rep's, then the held-back one
    order.deliver(*phone)
    order.deliver(*rep)
    order.drain()
    assert order.deliver(*held_back) == ["stale"]

    # Then the rep's later change wins in both systems: the phone's webhook did not date the last name
    assert (order.customer()["lastName"], order.contact()["familyName"]) == ("Rep-Newer", "Rep-Newer")
    assert order.customer()["phone"] == "+1 217 555 0199"
    assert_converged(order)
