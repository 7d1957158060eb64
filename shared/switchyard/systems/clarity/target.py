"""Writes CRM changes back into Clarity eCommerce: order status and customer fields.

A CRM and Clarity mirror each other's objects: every change is judged against the pair's one record
(``switchyard.sync``): the latest change to a field wins in both systems, a master field ends with the
master's value, and Switchyard's own writes coming back (echoes) are recognised, however late.
"""

from __future__ import annotations

from typing import Protocol

from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.clarity.sync_mapping import ClaritySyncMapping
from switchyard.targets import DeliveryResult


class CrmPairs(Protocol):
    """The two-way pair whose one record decides what a CRM change does to Clarity (``switchyard.pairs``)."""

    def order_from_streak(self, event: FlowEvent) -> DeliveryResult: ...
    def customer_from_streak(self, event: FlowEvent) -> DeliveryResult: ...


def contact_link(source: str) -> str:
    """Cross-reference namespace: a CRM contact's Clarity customer (written by the forward flow)."""
    return f"{source}:contact>clarity:customer"


class ClarityTarget:
    """The CRM-to-Clarity half of a two-way pair: every change goes through the pair's record
    (``switchyard.pairs``), which writes Clarity, and the CRM where it must."""

    def __init__(self, mapping: ClaritySyncMapping, pairs: CrmPairs | None) -> None:
        self._mapping = mapping
        self._pairs = pairs

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        action = self._mapping.events.get(event.type)
        if action not in ("update_order_status", "update_customer"):
            raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")
        if self._pairs is None:
            raise PermanentError(f"flow {event.flow} syncs both ways but has no two_way settings in flows.yaml",
                                 reason="not_two_way")
        if action == "update_order_status":
            return self._pairs.order_from_streak(event)
        return self._pairs.customer_from_streak(event)
