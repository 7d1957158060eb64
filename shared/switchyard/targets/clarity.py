"""Writes CRM changes back into Clarity eCommerce: order status and customer fields.

Every write is recorded as an echo (``switchyard.echoes``), so the webhook Clarity sends back for
it is not carried to the CRM again. Events carry the CRM object's change time; an older one than
what was applied for the same object is dropped.
"""

from __future__ import annotations

from switchyard.connectors.clarity import ClarityClient
from switchyard.echoes import EchoLedger
from switchyard.entity_state import EntityState
from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.mapping.clarity_sync import ClaritySyncMapping
from switchyard.targets import DeliveryResult


def contact_link(source: str) -> str:
    """Cross-reference namespace: a CRM contact's Clarity customer (written by the forward flow)."""
    return f"{source}:contact>clarity:customer"


class ClarityTarget:
    def __init__(self, mapping: ClaritySyncMapping, client: ClarityClient, state: EntityState,
                 echoes: EchoLedger) -> None:
        self._mapping = mapping
        self._client = client
        self._state = state
        self._echoes = echoes

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        action = self._mapping.events.get(event.type)
        if action == "update_order_status":
            return self._update_order_status(event)
        if action == "update_customer":
            return self._update_customer(event)
        raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")

    def _update_order_status(self, event: FlowEvent) -> DeliveryResult:
        plan = self._mapping.plan_order_status(event.data)
        if not plan.applies:
            return DeliveryResult("filtered", {"key": event.data.get("key")})
        if not self._mapping.source_may_write("status"):
            return DeliveryResult("not_master", {"field": "status", "order_id": plan.order_id})
        if not self._state.claim(f"{event.flow}#box#{event.data.get('key')}", event.timestamp, event.event_id):
            return DeliveryResult("stale", {"order_id": plan.order_id})
        order = self._client.get_order(plan.order_id)
        if order.get("status") == plan.status:
            return DeliveryResult("unchanged", {"order_id": plan.order_id, "status": plan.status})
        # recorded before writing: Clarity's webhook for the change may be processed before we return
        self._echoes.record("clarity", "order", plan.order_id, {**order, "status": plan.status})
        self._client.update_order_status(plan.order_id, plan.status, note=plan.note)
        return DeliveryResult("updated", {"order_id": plan.order_id, "status": plan.status})

    def _update_customer(self, event: FlowEvent) -> DeliveryResult:
        contact_key = str(event.data.get("key"))
        customer_id = self._state.linked(contact_link(event.source), contact_key)
        if customer_id is None:
            return DeliveryResult("unlinked", {"contact_key": contact_key})
        if not self._state.claim(f"{event.flow}#contact#{contact_key}", event.timestamp, event.event_id):
            return DeliveryResult("stale", {"customer_id": customer_id})
        wanted = {k: v for k, v in self._mapping.plan_customer(event.data).items() if v is not None}
        customer = self._client.get_customer(customer_id)
        changes = {k: v for k, v in wanted.items() if customer.get(k) != v}
        if not changes:
            return DeliveryResult("unchanged", {"customer_id": customer_id})
        self._echoes.record("clarity", "customer", customer_id, {**customer, **changes})  # before writing
        self._client.update_customer(customer_id, changes, version=customer.get("version"))
        return DeliveryResult("updated", {"customer_id": customer_id, "fields": sorted(changes)})


