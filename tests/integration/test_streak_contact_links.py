"""The customer <-> contact links of a deal flow are written when they change, not with every order of a
returning customer (two DynamoDB writes an order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchyard.entity_state import InMemoryEntityState
from switchyard.events import FlowEvent
from switchyard.systems.streak.client import StreakClient
from switchyard.systems.streak.deal_mapping import load_deal_mapping
from switchyard.systems.streak.deals import StreakDealTarget

CUSTOMER_TO_CONTACT = "clarity:customer>streak:contact"
CONTACT_TO_CUSTOMER = "streak:contact>clarity:customer"


class LinkWrites(InMemoryEntityState):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []

    def link(self, namespace: str, key: str, other: str) -> None:
        if "customer" in namespace:
            self.links.append((namespace, key, other))
        super().link(namespace, key, other)


def order(clarity_event: Callable[..., FlowEvent], number: str, email: str) -> FlowEvent:
    event = clarity_event("clarity_order_b2b", event_id=f"evt_{number}")
    data = dict(event.data)
    data["orderId"] = number
    data["customer"] = {**data["customer"], "email": email}
    return clarity_event("clarity_order_b2b", event_id=f"evt_{number}", data=data)


def test_a_returning_customers_links_are_written_once(streak_client: StreakClient, sandbox: Any,
                                                      clarity_event: Callable[..., FlowEvent]) -> None:
    state = LinkWrites()
    target = StreakDealTarget(load_deal_mapping("clarity-to-streak.yaml"), streak_client, state)

    # When customer C-501 orders three times
    for number in ("CL-1", "CL-2", "CL-3"):
        target.deliver(order(clarity_event, number, "jane.doe@acme-corp.example"))

    # Then both links were written with the first order only (the reverse first), and name the contact
    (contact,) = sandbox.snapshot()["contacts"]
    assert state.links == [(CONTACT_TO_CUSTOMER, contact["key"], "C-501"),
                           (CUSTOMER_TO_CONTACT, "C-501", contact["key"])]
    assert len(sandbox.snapshot()["boxes"]) == 3


def test_a_customer_whose_contact_changed_is_linked_again(streak_client: StreakClient, sandbox: Any,
                                                          clarity_event: Callable[..., FlowEvent]) -> None:
    state = LinkWrites()
    target = StreakDealTarget(load_deal_mapping("clarity-to-streak.yaml"), streak_client, state)
    target.deliver(order(clarity_event, "CL-1", "jane.doe@acme-corp.example"))

    # When the customer's next order carries another e-mail (another Streak contact)
    target.deliver(order(clarity_event, "CL-2", "jane@new-mail.example"))

    # Then the links name the new contact
    new = next(c for c in sandbox.snapshot()["contacts"] if c["emailAddresses"] == ["jane@new-mail.example"])
    assert state.links[-2:] == [(CONTACT_TO_CUSTOMER, new["key"], "C-501"), (CUSTOMER_TO_CONTACT, "C-501", new["key"])]
    assert state.linked(CUSTOMER_TO_CONTACT, "C-501") == new["key"]
