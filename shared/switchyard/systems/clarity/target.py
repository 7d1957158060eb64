"""Writes CRM changes back into Clarity eCommerce: order status and customer fields.

A CRM and Clarity mirror each other's objects: every change is judged against the pair's one record
(``switchyard.sync``): the latest change to a field wins in both systems, a master field ends with the
master's value, and Switchyard's own writes coming back (echoes) are recognised, however late.
"""

from __future__ import annotations

from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.pairs.clarity_streak import ClarityStreakPairs, require_pairs
from switchyard.systems.clarity.sync_mapping import ClaritySyncMapping
from switchyard.targets import DeliveryResult


def contact_link(source: str) -> str:
    """Cross-reference namespace: a CRM contact's Clarity customer (written by the forward flow)."""
    return f"{source}:contact>clarity:customer"


class ClarityTarget:
    """The streak-to-clarity half of the Clarity ⇄ Streak pair: every change goes through the pair's
    record (``switchyard.pairs.clarity_streak``), which writes Clarity, and Streak where it must."""

    def __init__(self, mapping: ClaritySyncMapping, pairs: ClarityStreakPairs | None) -> None:
        self._mapping = mapping
        self._pairs = pairs

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        action = self._mapping.events.get(event.type)
        if action == "update_order_status":
            return require_pairs(self._pairs, event.flow).order_from_streak(event)
        if action == "update_customer":
            return require_pairs(self._pairs, event.flow).customer_from_streak(event)
        raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")
