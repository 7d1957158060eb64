"""StreakDealTarget for clarity-to-streak, the forward half of the two-way sync, against the Streak
sandbox: deals with contact, phone and payment comment, cross-references for the reverse flow,
stage moves and contact updates recorded as echoes, e-mail normalisation. The last tests run both
halves against both sandboxes to show that no change ping-pongs between the systems."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from switchyard.catalog import mapping_path
from switchyard.echoes import EchoSuppressingTarget, InMemoryEchoLedger
from switchyard.entity_state import InMemoryEntityState
from switchyard.events import FlowEvent
from switchyard.pairs.clarity_streak import ClarityStreakPairs
from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
from switchyard.systems.clarity.target import ClarityTarget
from switchyard.systems.streak.client import StreakClient
from switchyard.systems.streak.deal_mapping import DealMapping, load_deal_mapping, parse_deal_mapping
from switchyard.systems.streak.deals import StreakDealTarget
from switchyard.targets import DeliveryResult
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.streak import StreakSandbox

CUSTOMER_TO_CONTACT = "clarity:customer>streak:contact"
CONTACT_TO_CUSTOMER = "streak:contact>clarity:customer"
ClarityEvent = Callable[..., FlowEvent]
StreakEvents = Callable[..., list[FlowEvent]]


@pytest.fixture
def sandbox(fake_clock) -> StreakSandbox:
    """Streak on the test's clock (its change times are compared with Clarity's), which starts after the
    sample webhooks' change times (2026-11-21/22): Switchyard's writes come after the changes they carry."""
    from switchyard_local.sandboxes.streak import DEMO_PIPELINE

    fake_clock.now = 1_795_910_400.0  # 2026-11-23T00:00:00Z
    return StreakSandbox(api_key="sandbox-key", team_key="team_1", pipeline=DEMO_PIPELINE, clock=fake_clock)


@pytest.fixture
def mapping() -> DealMapping:
    return load_deal_mapping("clarity-to-streak.yaml")


@pytest.fixture
def target(mapping: DealMapping, streak_client: StreakClient, state: InMemoryEntityState,
           echoes: InMemoryEchoLedger, pairs) -> StreakDealTarget:
    return StreakDealTarget(mapping, streak_client, state, echoes, pairs=pairs)


@pytest.fixture
def clarity_holds_the_sample_order(clarity_sandbox: ClaritySandbox) -> None:
    """The order the b2b sample webhook is about exists in Clarity (CL-10001 for C-501, as in the sample)."""
    order = {**DEMO_ORDERS[0], "status": "pending"}
    order["customer"] = {**order["customer"], "phone": "+1 555 0100"}
    assert clarity_sandbox.place_order(order)["orderId"] == "CL-10001"


@pytest.fixture
def created(target: StreakDealTarget, clarity_event: ClarityEvent) -> DeliveryResult:
    """The B2B sample order (CL-10001, customer C-501) delivered once."""
    return target.deliver(clarity_event("clarity_order_b2b"))


def only_box(sandbox: StreakSandbox) -> dict[str, Any]:
    (box,) = sandbox.snapshot()["boxes"]
    return box


def only_contact(sandbox: StreakSandbox) -> dict[str, Any]:
    (contact,) = sandbox.snapshot()["contacts"]
    return contact


def streak_writes(sandbox: StreakSandbox) -> list[str]:
    return [path for method, path, _ in sandbox.requests if method == "POST"]


# --- order.created ------------------------------------------------------------------------------------


def test_deliver_order_created_box_contact_phone_and_payment_comment(
    created: DeliveryResult, sandbox: StreakSandbox, streak_client: StreakClient,
) -> None:
    assert created.outcome == "created"
    box = only_box(sandbox)
    assert (box["name"], box["stageKey"]) == ("Clarity CL-10001 · Jane Doe Acme Corp", "5001")
    assert box["fields"]["Order number"] == "CL-10001"
    assert box["fields"]["Payment status"] == "9003"  # the dropdown item "Paid"
    assert box["contacts"] == ["jane.doe@acme-corp.example"]
    assert box["organizations"] == ["Acme Corp"]
    assert box["comments"] == ["Payment: card, paid"]
    assert "4242" not in " ".join(box["comments"])  # no card digits in Streak
    contact = only_contact(sandbox)
    assert (contact["givenName"], contact["familyName"]) == ("Jane", "Doe")
    assert contact["emailAddresses"] == ["jane.doe@acme-corp.example"]
    assert contact["phoneNumbers"] == ["+1 555 0100"]


def test_deliver_order_created_links_customer_and_contact_both_ways(
    created: DeliveryResult, sandbox: StreakSandbox, state: InMemoryEntityState,
) -> None:
    contact_key = only_contact(sandbox)["key"]

    assert state.linked(CUSTOMER_TO_CONTACT, "C-501") == contact_key
    assert state.linked(CONTACT_TO_CUSTOMER, contact_key) == "C-501"


def test_deliver_order_created_redelivered_comment_not_duplicated(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox,
) -> None:
    writes_before = len(streak_writes(sandbox))

    again = target.deliver(clarity_event("clarity_order_b2b"))

    assert again.outcome == "updated"
    box = only_box(sandbox)
    assert box["comments"] == ["Payment: card, paid"]
    assert len(box["tasks"]) == 1
    assert len(sandbox.snapshot()["contacts"]) == 1
    # the linked contact is read and the organization found by search: nothing is written again
    assert streak_writes(sandbox)[writes_before:] == []


def test_deliver_order_created_consumer_no_phone_no_org(
    target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox, state: InMemoryEntityState,
) -> None:
    result = target.deliver(clarity_event("clarity_order_consumer"))

    assert result.outcome == "created"
    box = only_box(sandbox)
    assert box["organizations"] == []
    assert box["comments"] == ["Payment: paypal, pending"]
    contact = only_contact(sandbox)
    assert contact["emailAddresses"] == ["sam.lee@gmail.com"]
    assert not contact.get("phoneNumbers")
    assert state.linked(CUSTOMER_TO_CONTACT, "C-502") == contact["key"]


def test_deliver_order_created_existing_contact_takes_clarity_phone_its_master(
    target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox, streak_client: StreakClient,
    clarity_holds_the_sample_order: None,
) -> None:
    # Given the contact already exists in Streak with a phone a rep entered
    contact = streak_client.find_or_create_contact("team_1", "jane.doe@acme-corp.example")
    streak_client.update_contact(contact["key"], {"phoneNumbers": ["+1 555 7777"]})

    target.deliver(clarity_event("clarity_order_b2b"))

    # Clarity owns the phone: once the pair exists, both systems hold Clarity's (it used to stay 7777 forever)
    assert only_contact(sandbox)["phoneNumbers"] == ["+1 555 0100"]


def test_deliver_two_orders_emails_differing_in_case_and_whitespace_one_contact(
    target: StreakDealTarget, clarity_event: ClarityEvent, sample: Callable[..., Any], sandbox: StreakSandbox,
) -> None:
    first = sample("clarity_order_b2b")
    second = sample("clarity_order_b2b")
    second["data"].update(orderId="CL-10003")
    second["data"]["customer"]["email"] = "\tJANE.DOE@acme-corp.EXAMPLE  "

    target.deliver(clarity_event(first, event_id="msg_first"))
    target.deliver(clarity_event(second, event_id="msg_second"))

    snapshot = sandbox.snapshot()
    assert len(snapshot["boxes"]) == 2
    (contact,) = snapshot["contacts"]
    assert contact["emailAddresses"] == ["jane.doe@acme-corp.example"]
    assert [box["contacts"] for box in snapshot["boxes"]] == [["jane.doe@acme-corp.example"]] * 2


# --- order.status_changed -----------------------------------------------------------------------------


def test_deliver_status_changed_moved_and_box_echo_consumed(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, streak_client: StreakClient,
    streak_events: StreakEvents, pairs: ClarityStreakPairs,
) -> None:
    box_key = created.detail["box_key"]

    result = target.deliver(clarity_event("clarity_status_shipped"))

    assert result == DeliveryResult("moved", {"order_key": "CL-10001", "box_key": box_key,
                                              "fields": {"status": "applied"}, "writes": {"streak": ["status"]}})
    box = streak_client.get_box(box_key)
    assert box["stageKey"] == "5002"
    # Streak reports the stage change; the reverse flow recognises Switchyard's own move
    (echo,) = streak_events("BOX_CHANGE_STAGE", [box])
    assert pairs.order_from_streak(echo).outcome == "echo"


def test_deliver_status_changed_rep_moves_box_later_not_suppressed(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox,
    streak_client: StreakClient, streak_events: StreakEvents, pairs: ClarityStreakPairs,
    clarity_sandbox: ClaritySandbox, fake_clock,
) -> None:
    clarity_sandbox.place_order(DEMO_ORDERS[0])  # CL-10001 in Clarity too, shipped as the event says
    clarity_sandbox.set_order_status("CL-10001", "shipped")
    fake_clock.advance(120)  # (its webhooks are not part of this test)
    box_key = created.detail["box_key"]
    target.deliver(clarity_event("clarity_status_shipped"))
    (echo,) = streak_events("BOX_CHANGE_STAGE", [streak_client.get_box(box_key)])
    assert pairs.order_from_streak(echo).outcome == "echo"

    moved = sandbox.move_box(box_key, "5003")  # a rep completes the deal
    (change,) = streak_events("BOX_CHANGE_STAGE", [moved])

    assert pairs.order_from_streak(change).outcome == "updated"
    assert clarity_sandbox.get_order("CL-10001")["status"] == "delivered"


def test_deliver_status_changed_same_stage_unchanged_no_echo(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sample: Callable[..., Any],
    echoes: InMemoryEchoLedger,
) -> None:
    document = sample("clarity_status_shipped")
    document["data"]["status"] = "pending"  # the box is in New Order already

    result = target.deliver(clarity_event(document))

    assert result.outcome == "unchanged"
    assert echoes.consume("streak", "box", created.detail["box_key"], {"stageKey": "5001"}) is False


# --- customer.updated ---------------------------------------------------------------------------------


def test_deliver_customer_updated_contact_updated_and_echo_consumed(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox,
    streak_client: StreakClient, streak_events: StreakEvents, pairs: ClarityStreakPairs,
) -> None:
    contact_key = only_contact(sandbox)["key"]

    result = target.deliver(clarity_event("clarity_customer_updated"))

    # clarity-to-streak may write e-mail, phone and name (Clarity is their master, or both are)
    assert (result.outcome, result.detail["contact_key"], result.detail["writes"]) == (
        "updated", contact_key, {"streak": ["email", "last_name", "phone"]})
    contact = streak_client.get_contact(contact_key)
    assert contact["emailAddresses"] == ["jane.doesmith@acme-corp.example"]
    assert contact["phoneNumbers"] == ["+1 555 0199"]
    assert (contact["givenName"], contact["familyName"]) == ("Jane", "Doe-Smith")
    # Streak reports the contact change; the reverse flow recognises Switchyard's own write
    (echo,) = streak_events("CONTACT_UPDATE", [contact])
    assert pairs.customer_from_streak(echo).outcome == "echo"


def test_deliver_customer_updated_secondary_addresses_kept(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox,
    streak_client: StreakClient, fake_clock,
) -> None:
    contact_key = only_contact(sandbox)["key"]
    streak_client.update_contact(contact_key, {"emailAddresses": ["jane.doe@acme-corp.example", "jd@home.example"]})
    fake_clock.advance(120)  # a rep's edit of a while ago (its webhook is not part of this test)

    target.deliver(clarity_event("clarity_customer_updated"))

    assert streak_client.get_contact(contact_key)["emailAddresses"] == [
        "jane.doesmith@acme-corp.example", "jd@home.example"]


def test_deliver_customer_updated_without_deal_unlinked(
    target: StreakDealTarget, clarity_event: ClarityEvent, sample: Callable[..., Any], sandbox: StreakSandbox,
) -> None:
    document = sample("clarity_customer_updated")
    document["data"]["customerId"] = "C-999"

    result = target.deliver(clarity_event(document))

    assert result == DeliveryResult("unlinked", {"customer_key": "C-999"})
    assert streak_writes(sandbox) == []


def test_deliver_customer_updated_same_values_unchanged(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sample: Callable[..., Any],
) -> None:
    document = sample("clarity_customer_updated")
    document["data"].update(firstName="Jane", lastName="Doe", email=" JANE.DOE@acme-corp.example",
                            phone="+1 555 0100")

    assert target.deliver(clarity_event(document)).outcome == "unchanged"


def test_deliver_customer_updated_older_than_applied_stale(
    created: DeliveryResult, target: StreakDealTarget, clarity_event: ClarityEvent, sandbox: StreakSandbox,
) -> None:
    target.deliver(clarity_event("clarity_customer_updated"))

    result = target.deliver(clarity_event("clarity_customer_updated", event_id="msg_older",
                                          timestamp="2026-11-22T08:59:59Z"))

    assert result.outcome == "stale"


def test_deliver_customer_updated_streak_master_of_email_only_phone_and_name_written(
    created: DeliveryResult, streak_client: StreakClient, clarity_client: Any, state: InMemoryEntityState,
    echoes: InMemoryEchoLedger, pair_store: Any, clarity_event: ClarityEvent, sandbox: StreakSandbox,
    clarity_sandbox: ClaritySandbox,
) -> None:
    from switchyard.systems.clarity.sync_mapping import parse_clarity_sync_mapping

    clarity_sandbox.place_order(DEMO_ORDERS[0])  # customer C-501 in Clarity
    masters = {"email": "streak", "phone": "clarity", "name": "both", "status": "both"}
    deals_doc = yaml.safe_load(mapping_path("clarity-to-streak.yaml").read_text())
    sync_doc = yaml.safe_load(mapping_path("streak-to-clarity.yaml").read_text())
    deals_doc["master"] = sync_doc["master"] = masters
    deals, sync = parse_deal_mapping(yaml.safe_dump(deals_doc)), parse_clarity_sync_mapping(yaml.safe_dump(sync_doc))
    pairs = ClarityStreakPairs(deals, sync, clarity_client, streak_client, state, pair_store, echoes,
                               echo_window_seconds=600)
    streak_master = StreakDealTarget(deals, streak_client, state, echoes, pairs=pairs)
    clarity_sandbox.update_customer("C-501", email="jane.doesmith@acme-corp.example", lastName="Doe-Smith",
                                    phone="+1 555 0199")  # the edit the event reports

    result = streak_master.deliver(clarity_event("clarity_customer_updated"))

    # Streak's e-mail stays, and is written back into Clarity, so both systems end equal
    assert result.detail["writes"] == {"streak": ["last_name", "phone"], "clarity": ["email"]}
    assert only_contact(sandbox)["emailAddresses"] == ["jane.doe@acme-corp.example"]
    assert clarity_sandbox.get_customer("C-501")["email"] == "jane.doe@acme-corp.example"


# --- both halves, both sandboxes: no ping-pong ------------------------------------------------------------


class TwoWay:
    """Both flows as deployed, sharing entity state and the echo ledger, each behind its echo check."""

    def __init__(self, forward: EchoSuppressingTarget, backward: EchoSuppressingTarget, clarity: ClaritySandbox,
                 clarity_emitted: Callable[..., list[FlowEvent]], streak_events: StreakEvents) -> None:
        self.forward, self.backward = forward, backward
        self._clarity, self._emitted, self._streak_events = clarity, clarity_emitted, streak_events
        self._seen = 0

    def clarity_webhooks(self) -> list[DeliveryResult]:
        """Deliver every Clarity webhook not delivered yet to the forward flow."""
        events = self._emitted()[self._seen:]
        self._seen += len(events)
        return [self.forward.deliver(event) for event in events]

    def streak_webhook(self, event_type: str, obj: dict[str, Any]) -> DeliveryResult:
        (event,) = self._streak_events(event_type, [obj])
        return self.backward.deliver(event)


@pytest.fixture
def two_way(target: StreakDealTarget, pairs, echoes: InMemoryEchoLedger,
            clarity_sandbox: ClaritySandbox, clarity_emitted, streak_events: StreakEvents) -> TwoWay:
    backward = ClarityTarget(load_clarity_sync_mapping("streak-to-clarity.yaml"), pairs)
    return TwoWay(EchoSuppressingTarget(target, echoes), EchoSuppressingTarget(backward, echoes), clarity_sandbox,
                  clarity_emitted, streak_events)


def clarity_writes(clarity_transport: Any) -> list[tuple[str, str]]:
    return clarity_transport.calls("PATCH")


def test_two_way_rep_moves_box_clarity_updated_once_no_move_back(
    two_way: TwoWay, clarity_sandbox: ClaritySandbox, sandbox: StreakSandbox, streak_client: StreakClient,
    clarity_transport, fake_clock,
) -> None:
    # Given a shopper's order synced into Streak
    order_id = clarity_sandbox.place_order(DEMO_ORDERS[0])["orderId"]
    (created,) = two_way.clarity_webhooks()
    box_key = created.detail["box_key"]
    fake_clock.advance(60)

    # When a rep moves the box to Complete, Clarity's order becomes delivered
    moved = sandbox.move_box(box_key, "5003")
    assert two_way.streak_webhook("BOX_CHANGE_STAGE", moved).outcome == "updated"
    assert clarity_sandbox.get_order(order_id)["status"] == "delivered"
    streak_posts = len(streak_writes(sandbox))

    # Then Clarity's webhook for that change is recognised and nothing is written back to Streak
    assert [r.outcome for r in two_way.clarity_webhooks()] == ["echo"]
    assert len(streak_writes(sandbox)) == streak_posts
    assert streak_client.get_box(box_key)["stageKey"] == "5003"
    assert clarity_writes(clarity_transport) == [("PATCH", f"/api/v1/orders/{order_id}/status")]


def test_two_way_status_changes_add_one_timeline_line_each_and_echoes_none(
    two_way: TwoWay, clarity_sandbox: ClaritySandbox, sandbox: StreakSandbox, streak_client: StreakClient,
    fake_clock,
) -> None:
    order_id = clarity_sandbox.place_order(DEMO_ORDERS[0])["orderId"]
    (created,) = two_way.clarity_webhooks()
    box_key = created.detail["box_key"]
    fake_clock.advance(60)

    # An admin's change in Clarity (processing → shipped, one stage): the timeline still gets the line
    clarity_sandbox.set_order_status(order_id, "shipped")
    assert [r.outcome for r in two_way.clarity_webhooks()] == ["unchanged"]  # shipped: the same stage
    fake_clock.advance(60)
    # A rep's move in Streak reaches Clarity; Clarity's webhook of it is an echo: no line for it
    moved = sandbox.move_box(box_key, "5003")
    assert two_way.streak_webhook("BOX_CHANGE_STAGE", moved).outcome == "updated"
    assert [r.outcome for r in two_way.clarity_webhooks()] == ["echo"]

    lines = [c["message"].split(" [ref ")[0] for c in streak_client.list_comments(box_key)
             if c["message"].startswith("Order status")]
    assert lines == [f"Order status: shipped · Payment: {DEMO_ORDERS[0]['paymentInfo']['status']}"]


def test_two_way_admin_refunds_box_moved_once_no_write_back(
    two_way: TwoWay, clarity_sandbox: ClaritySandbox, sandbox: StreakSandbox, streak_client: StreakClient,
    clarity_transport, fake_clock,
) -> None:
    order_id = clarity_sandbox.place_order(DEMO_ORDERS[0])["orderId"]
    (created,) = two_way.clarity_webhooks()
    box_key = created.detail["box_key"]
    fake_clock.advance(60)

    # When an admin cancels the order in Clarity, the box moves to Cancelled
    clarity_sandbox.set_order_status(order_id, "cancelled")
    assert [r.outcome for r in two_way.clarity_webhooks()] == ["moved"]

    # Then Streak's stage-change webhook is recognised and nothing is written back to Clarity
    box = streak_client.get_box(box_key)
    assert box["stageKey"] == "5004"
    assert two_way.streak_webhook("BOX_CHANGE_STAGE", box).outcome == "echo"
    assert clarity_writes(clarity_transport) == []
    assert clarity_sandbox.get_order(order_id)["statusHistory"][-1]["by"] == "admin"


def test_two_way_rep_renames_contact_customer_updated_once_no_write_back(
    two_way: TwoWay, clarity_sandbox: ClaritySandbox, sandbox: StreakSandbox, streak_client: StreakClient,
    clarity_transport, fake_clock,
) -> None:
    clarity_sandbox.place_order(DEMO_ORDERS[0])
    two_way.clarity_webhooks()
    contact_key = only_contact(sandbox)["key"]
    fake_clock.advance(60)

    # When a rep corrects the contact's given name in Streak (and types another e-mail)
    edited = sandbox.edit_contact(contact_key, givenName="Janet", emailAddresses=["janet@private.example"])
    assert two_way.streak_webhook("CONTACT_UPDATE", edited).outcome == "updated"

    # Then Clarity gets the name only, and its customer.updated is recognised as the echo
    customer = clarity_sandbox.get_customer("C-501")
    assert (customer["firstName"], customer["email"]) == ("Janet", " Jane.Doe@Acme-Corp.example ")
    streak_posts = len(streak_writes(sandbox))
    assert [r.outcome for r in two_way.clarity_webhooks()] == ["echo"]
    assert len(streak_writes(sandbox)) == streak_posts
    assert clarity_writes(clarity_transport) == [("PATCH", "/api/v1/customers/C-501")]


def test_two_way_shopper_edits_profile_contact_updated_once_no_write_back(
    two_way: TwoWay, clarity_sandbox: ClaritySandbox, sandbox: StreakSandbox, streak_client: StreakClient,
    clarity_transport, fake_clock,
) -> None:
    clarity_sandbox.place_order(DEMO_ORDERS[0])
    two_way.clarity_webhooks()
    contact_key = only_contact(sandbox)["key"]
    fake_clock.advance(60)

    # When the shopper changes their last name and phone in Clarity
    clarity_sandbox.update_customer("C-501", lastName="Doe-Smith", phone="+1 217 555 0199")
    assert [r.outcome for r in two_way.clarity_webhooks()] == ["updated"]

    # Then Streak's contact follows, and Streak's CONTACT_UPDATE is recognised as the echo
    contact = streak_client.get_contact(contact_key)
    assert (contact["familyName"], contact["phoneNumbers"]) == ("Doe-Smith", ["+1 217 555 0199"])
    assert two_way.streak_webhook("CONTACT_UPDATE", contact).outcome == "echo"
    assert clarity_writes(clarity_transport) == []
