"""Carries out deal plans in a Streak pipeline so that any step can be repeated safely.

Streak has no idempotency keys, so every write is preceded by a lookup: the box is found by the
order key stored in a text field, contacts and organizations by ``getIfExisting``, tasks by text.
Redelivering an event, or retrying after a failure half-way, therefore changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from switchyard.connectors.streak import StreakClient
from switchyard.echoes import EchoLedger, recorded_echo
from switchyard.entity_state import EntityState
from switchyard.errors import OutOfOrderError, PermanentError
from switchyard.events import FlowEvent
from switchyard.mapping.streak_deals import ContactPlan, DealMapping, DealPlan, OrganizationPlan
from switchyard.targets import DeliveryResult
from switchyard.targets.clarity_streak import ClarityStreakPairs, require_pairs


class _NoEchoes:
    """For one-way flows: nothing comes back, nothing to record."""

    def record(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def consume(self, *_args: Any) -> bool:
        return False

SEARCH_HITS_CHECKED = 10


class StreakDealTarget:
    def __init__(self, mapping: DealMapping, client: StreakClient, state: EntityState,
                 echoes: EchoLedger | None = None, *, pairs: ClarityStreakPairs | None = None) -> None:
        self._mapping = mapping
        self._pairs = pairs  # two-way: status changes and contact edits go through the pair's record
        self._client = client
        self._state = state
        self._echoes: EchoLedger = echoes or _NoEchoes()
        self._pipeline = client.connection.pipeline_key
        self._team = client.connection.team_key

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        action = self._mapping.events.get(event.type)
        if action == "upsert_deal":
            return self._upsert_deal(event)
        if action == "move_stage":
            return self._move_stage(event)
        if action == "update_contact":
            return self._update_contact(event)
        raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")

    # --- order placed --------------------------------------------------------------------------

    def _upsert_deal(self, event: FlowEvent) -> DeliveryResult:
        plan = self._mapping.plan_deal(event.data)
        entity = f"{event.flow}#{plan.order_key}"
        if not plan.create:
            self._state.mark_filtered(entity)
            return DeliveryResult("filtered", {"order_key": plan.order_key})

        contact = self._ensure_contact(plan.contact, event.source) if plan.contact else None
        if self._pairs is not None and contact is not None and plan.contact and plan.contact.customer_key:
            self._pairs.seed_customer(event.data.get("customer") or {}, contact, event.timestamp)
        organization = self._ensure_organization(plan.organization) if plan.organization else None
        box = self._find_box(plan.order_key, fallback_name=plan.box_name)
        created = box is None
        if box is None:
            box = self._client.create_box(self._pipeline, name=plan.box_name, stage_key=plan.stage_key,
                                          notes=plan.notes)
        box_key = box["key"]
        self._set_fields(box, plan)
        self._link(box, contact, organization)
        if plan.task and not any(t.get("text") == plan.task.text for t in self._client.list_tasks(box_key)):
            self._client.create_task(box_key, text=plan.task.text, due_date_ms=plan.task.due_date_ms,
                                     assignee_email=plan.task.assignee_email)
        if plan.comment and not any(c.get("message") == plan.comment for c in self._client.list_comments(box_key)):
            self._client.create_comment(box_key, plan.comment)
        # Record this change time; a newer status change may already own the stage (then keep it).
        self._state.claim(entity, event.timestamp, event.event_id)
        if self._pairs is not None:
            self._pairs.seed_order(plan.order_key, box, plan.stage_key, event.timestamp)
        return DeliveryResult("created" if created else "updated", {"box_key": box_key,
                                                                    "order_key": plan.order_key})

    def _set_fields(self, box: dict[str, Any], plan: DealPlan) -> None:
        current = box.get("fields") or {}
        key_field = self._mapping.order_key_field
        # the order key first: once it is set, a retry finds this box instead of creating another
        ordered = sorted(plan.fields.items(), key=lambda item: item[0] != key_field)
        for field_key, value in ordered:
            if current.get(field_key) != value:
                self._client.set_field(box["key"], field_key, value)

    def _link(self, box: dict[str, Any], contact: dict | None, organization: dict | None) -> None:
        # Streak replaces link lists on update: send the existing entries plus the new one.
        changes: dict[str, Any] = {}
        for name, entity in (("contacts", contact), ("organizations", organization)):
            existing = list(box.get(name) or [])
            if entity and all(link.get("key") != entity["key"] for link in existing):
                changes[name] = [*({"key": link["key"]} for link in existing), {"key": entity["key"]}]
        if changes:
            self._client.update_box(box["key"], changes)

    def _ensure_contact(self, plan: ContactPlan, source: str) -> dict[str, Any]:
        linked = self._state.linked(f"{source}:customer>streak:contact", plan.customer_key) \
            if self._pairs is not None and plan.customer_key else None
        # a synced customer keeps its contact even when the e-mail on this (older) order has changed since
        contact = self._client.get_contact(linked) if linked else \
            self._client.find_or_create_contact(self._team, plan.email)
        changes: dict[str, Any] = {}
        if plan.given_name and not contact.get("givenName"):
            changes["givenName"] = plan.given_name
        if plan.family_name and not contact.get("familyName"):
            changes["familyName"] = plan.family_name
        if plan.phone and not contact.get("phoneNumbers"):
            changes["phoneNumbers"] = [plan.phone]
        if changes:
            with recorded_echo(self._echoes, "streak", "contact", contact["key"], {**contact, **changes}):
                contact = self._client.update_contact(contact["key"], changes)
        if plan.customer_key:  # so later changes on either side find their counterpart
            self._state.link(f"{source}:customer>streak:contact", plan.customer_key, contact["key"])
            self._state.link(f"streak:contact>{source}:customer", contact["key"], plan.customer_key)
        return contact

    def _ensure_organization(self, plan: OrganizationPlan) -> dict[str, Any]:
        if plan.domain:
            org = self._client.find_or_create_organization(self._team, plan.domain)
            if not org.get("name"):
                org = self._client.update_organization(org["key"], {"name": plan.name})
            return org
        for org in self._client.search_organizations(plan.name):
            if str(org.get("name", "")).casefold() == plan.name.casefold():
                return org
        return self._client.create_organization(self._team, plan.name)

    def _find_box(self, order_key: str, *, fallback_name: str | None = None) -> dict[str, Any] | None:
        key_field = self._mapping.order_key_field
        for hit in self._client.search_boxes(order_key, self._pipeline)[:SEARCH_HITS_CHECKED]:
            box = self._client.get_box(hit["boxKey"])
            stored = (box.get("fields") or {}).get(key_field)
            if stored == order_key:
                return box
            # created by an attempt that failed before storing the key: recognise it by name
            if stored is None and fallback_name is not None and box.get("name") == fallback_name:
                return box
        return None

    # --- status changed ------------------------------------------------------------------------

    def _move_stage(self, event: FlowEvent) -> DeliveryResult:
        plan = self._mapping.plan_stage_change(event.data)
        entity = f"{event.flow}#{plan.order_key}"
        if self._pairs is not None:
            box_key = self._pairs.box_key(plan.order_key)
            if box_key is not None:
                return self._pairs.order_from_clarity(event, box_key)
        box = self._find_box(plan.order_key)
        if box is None:
            if self._state.is_filtered(entity):
                return DeliveryResult("filtered", {"order_key": plan.order_key})
            raise OutOfOrderError(f"no box for order {plan.order_key} yet", reason="box_not_found")
        if self._pairs is not None:
            return self._pairs.order_from_clarity(event, box["key"])
        if not self._mapping.source_may_write("status"):
            return DeliveryResult("not_master", {"field": "status", "box_key": box["key"]})
        if not self._state.claim(entity, event.timestamp, event.event_id):
            return DeliveryResult("stale", {"order_key": plan.order_key, "box_key": box["key"]})
        if box.get("stageKey") == plan.stage_key:
            return DeliveryResult("unchanged", {"box_key": box["key"], "stage_key": plan.stage_key})
        with recorded_echo(self._echoes, "streak", "box", box["key"], {**box, "stageKey": plan.stage_key}):
            self._client.update_box(box["key"], {"stageKey": plan.stage_key})
        return DeliveryResult("moved", {"box_key": box["key"], "stage_key": plan.stage_key})

    # --- customer updated ----------------------------------------------------------------------

    def _update_contact(self, event: FlowEvent) -> DeliveryResult:
        return require_pairs(self._pairs, event.flow).customer_from_clarity(event)
