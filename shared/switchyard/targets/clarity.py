"""Writes CRM changes back into Clarity eCommerce: order status and customer fields.

Every write is recorded as an echo (``switchyard.echoes``), so the webhook Clarity sends back for
it is not carried to the CRM again. Events carry the CRM object's change time; an older one than
what was applied for the same object is dropped.
"""

from __future__ import annotations

from switchyard.connectors.clarity import ClarityClient
from switchyard.echoes import EchoLedger, recorded_echo
from switchyard.entity_state import EntityState, changed_fields
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
        if not plan.applies or plan.order_id is None or plan.status is None:
            return DeliveryResult("filtered", {"key": event.data.get("key")})
        if not self._mapping.source_may_write("status"):
            return DeliveryResult("not_master", {"field": "status", "order_id": plan.order_id})
        if not self._state.claim(f"{event.flow}#box#{event.data.get('key')}", event.timestamp, event.event_id):
            return DeliveryResult("stale", {"order_id": plan.order_id})
        order = self._client.get_order(plan.order_id)
        if order.get("status") == plan.status:
            return DeliveryResult("unchanged", {"order_id": plan.order_id, "status": plan.status})
        # recorded before writing: Clarity's webhook for the change may be processed before we return
        expected = {**order, "status": plan.status}
        with recorded_echo(self._echoes, "clarity", "order", plan.order_id, expected):
            self._client.update_order_status(plan.order_id, plan.status, note=plan.note)
        return DeliveryResult("updated", {"order_id": plan.order_id, "status": plan.status})

    def _update_customer(self, event: FlowEvent) -> DeliveryResult:
        contact_key = str(event.data.get("key"))
        customer_id = self._state.linked(contact_link(event.source), contact_key)
        if customer_id is None:
            return DeliveryResult("unlinked", {"contact_key": contact_key})
        if not self._state.claim(f"{event.flow}#contact#{contact_key}", event.timestamp, event.event_id):
            return DeliveryResult("stale", {"customer_id": customer_id})
        # only what changed in Streak since its last event: an older value in Streak must not undo a
        # newer one made in Clarity meanwhile
        namespace = f"{event.source}:contact"
        seen = self._mapping.plan_customer(event.data)
        changed = changed_fields(self._state.last_synced(namespace, contact_key), seen)
        wanted = {k: v for k, v in changed.items() if v is not None}
        customer = self._client.get_customer(customer_id)
        changes = {k: v for k, v in wanted.items() if customer.get(k) != v}
        if not changes:
            self._state.remember_synced(namespace, contact_key, seen)
            return DeliveryResult("unchanged", {"customer_id": customer_id})
        with recorded_echo(self._echoes, "clarity", "customer", customer_id, {**customer, **changes}):
            self._client.update_customer(customer_id, changes, version=customer.get("version"))
        self._state.remember_synced(namespace, contact_key, seen)  # only once written: a retry sees it all again
        return DeliveryResult("updated", {"customer_id": customer_id, "fields": sorted(changes)})


