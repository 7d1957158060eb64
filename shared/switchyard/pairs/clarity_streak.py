"""Clarity eCommerce ⇄ Streak as synced pairs (``switchyard.sync``): an order and its deal's stage, a
customer and its contact. Both flows (clarity-to-streak, streak-to-clarity) hand their events here,
so one record per pair decides, field by field, what both systems end with.

The pair's common values are Streak's stage keys for the status (Clarity's statuses map onto them
through the mapping documents: ``shipped`` and ``processing`` are both "Processing") and the
normalised customer fields (e-mail trimmed and lower-cased, empty values as none).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from switchyard.echoes import EchoLedger
from switchyard.entity_state import EntityState
from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.registry import FlowContext, Pair, Secrets, Target
from switchyard.sync import PairSpec, PairStore, PairSync, SyncField
from switchyard.systems.clarity.client import ClarityClient
from switchyard.systems.clarity.sync_mapping import ClaritySyncMapping
from switchyard.systems.streak.client import StreakClient
from switchyard.systems.streak.deal_mapping import DealMapping
from switchyard.targets import DeliveryResult

CLARITY = "clarity"
STREAK = "streak"
# pair field -> (master-data field, Clarity attribute, Streak attribute; a list there: the first is primary)
CUSTOMER_FIELDS: dict[str, tuple[str, str, str]] = {
    "email": ("email", "email", "emailAddresses"),
    "phone": ("phone", "phone", "phoneNumbers"),
    "first_name": ("name", "firstName", "givenName"),
    "last_name": ("name", "lastName", "familyName"),
}
STATUS_CHANGED = frozenset({"status"})  # both systems' status webhooks fire only when it changed
CUSTOMER_TO_CONTACT = "clarity:customer>streak:contact"  # written when a deal links its contact
CONTACT_TO_CUSTOMER = "streak:contact>clarity:customer"


def pair_specs(sync: ClaritySyncMapping, *, echo_window_seconds: int) -> tuple[PairSpec, PairSpec]:
    sides = (CLARITY, sync.source)
    order = PairSpec(
        name=f"{CLARITY}+{sync.source}:order", sides=sides, tie_winner=sync.doc.sync.tie_winner,
        fields=(SyncField("status", master=sync.master_of("status"),
                          lifecycle=tuple(sync.doc.sync.lifecycle.get("status", ()))),),
        echo_window_seconds=echo_window_seconds)
    customer = PairSpec(
        name=f"{CLARITY}+{sync.source}:customer", sides=sides, tie_winner=sync.doc.sync.tie_winner,
        fields=tuple(SyncField(name, master=sync.master_of(master))
                     for name, (master, _, _) in CUSTOMER_FIELDS.items()),
        echo_window_seconds=echo_window_seconds)
    return order, customer


def _from_millis(millis: Any) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, tz=UTC) if isinstance(millis, int) else None


def _from_rfc3339(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


# --- each system's object of a pair ---------------------------------------------------------------------


class ClarityOrderStatus:
    system = CLARITY

    def __init__(self, client: ClarityClient, deals: DealMapping, sync: ClaritySyncMapping, order_id: str,
                 note: str | None) -> None:
        self._client, self._deals, self._sync = client, deals, sync
        self._order_id, self._note = order_id, note
        self.exact: dict[str, Any] = {}  # Clarity's own status: several map onto one stage
        self.changed_at: datetime | None = None

    def read(self) -> dict[str, Any]:
        order = self._client.get_order(self._order_id)
        self.exact, self.changed_at = {"status": order.get("status")}, _from_rfc3339(order.get("updatedAt"))
        return {"status": self._deals.plan_stage_change(order).stage_key}

    def write(self, values: dict[str, Any]) -> datetime | None:
        status = self._sync.status_for_stage(values["status"])
        updated = self._client.update_order_status(self._order_id, status, note=self._note)
        self.exact = {"status": updated.get("status", status)}
        return _from_rfc3339(updated.get("updatedAt"))


class StreakBoxStage:
    system = STREAK

    def __init__(self, client: StreakClient, box_key: str) -> None:
        self._client, self._box_key = client, box_key
        self.changed_at: datetime | None = None

    def read(self) -> dict[str, Any]:
        box = self._client.get_box(self._box_key)
        self.changed_at = _from_millis(box.get("lastUpdatedTimestamp"))
        return {"status": str(box.get("stageKey"))}

    def write(self, values: dict[str, Any]) -> datetime | None:
        box = self._client.update_box(self._box_key, {"stageKey": values["status"]})
        return _from_millis(box.get("lastUpdatedTimestamp"))


def clarity_customer_values(deals: DealMapping, customer: Mapping[str, Any]) -> dict[str, Any]:
    plan = deals.plan_contact_update(customer)
    return {"email": plan.email, "phone": plan.phone, "first_name": plan.given_name, "last_name": plan.family_name}


def clarity_field_times(customer: Mapping[str, Any]) -> dict[str, datetime]:
    """Pair field -> when Clarity says that field last changed (``fieldUpdatedAt``; absent from older
    Clarity versions: then every field is dated by the customer's ``updatedAt``)."""
    times = customer.get("fieldUpdatedAt")
    if not isinstance(times, Mapping):
        return {}
    found = {name: _from_rfc3339(times.get(attribute)) for name, (_, attribute, _) in CUSTOMER_FIELDS.items()
             if isinstance(times.get(attribute), str)}
    return {name: moment for name, moment in found.items() if moment is not None}


class ClarityCustomer:
    system = CLARITY

    def __init__(self, client: ClarityClient, deals: DealMapping, customer_id: str) -> None:
        self._client, self._deals, self._customer_id = client, deals, customer_id
        self.changed_at: datetime | None = None

    def read(self) -> dict[str, Any]:
        customer = self._client.get_customer(self._customer_id)
        self.changed_at = _from_rfc3339(customer.get("updatedAt"))
        return clarity_customer_values(self._deals, customer)

    def write(self, values: dict[str, Any]) -> datetime | None:
        customer = self._client.get_customer(self._customer_id)
        changes = {CUSTOMER_FIELDS[name][1]: value for name, value in values.items()}
        updated = self._client.update_customer(self._customer_id, changes, version=customer.get("version"))
        return _from_rfc3339((updated or {}).get("updatedAt"))


class StreakContact:
    system = STREAK

    def __init__(self, client: StreakClient, sync: ClaritySyncMapping, contact_key: str) -> None:
        self._client, self._sync, self._contact_key = client, sync, contact_key
        self.changed_at: datetime | None = None

    def read(self) -> dict[str, Any]:
        contact = self._client.get_contact(self._contact_key)
        self.changed_at = _from_millis(contact.get("lastUpdatedTimestamp"))
        return self._sync.customer_values(contact)

    def write(self, values: dict[str, Any]) -> datetime | None:
        contact = self._client.get_contact(self._contact_key)
        changes: dict[str, Any] = {}
        for name, value in values.items():
            attribute = CUSTOMER_FIELDS[name][2]
            if isinstance(contact.get(attribute), list) or attribute in ("emailAddresses", "phoneNumbers"):
                rest = [v for v in (contact.get(attribute) or [])[1:] if v != value]
                changes[attribute] = [value, *rest]  # replaces the primary, keeps the others
            else:
                changes[attribute] = value
        return _from_millis(self._client.update_contact(self._contact_key, changes).get("lastUpdatedTimestamp"))


# --- the pairs ----------------------------------------------------------------------------------------


class ClarityStreakPairs:
    def __init__(self, deals: DealMapping, sync: ClaritySyncMapping, clarity: ClarityClient, streak: StreakClient,
                 state: EntityState, store: PairStore, echoes: EchoLedger, *, echo_window_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._deals, self._sync = deals, sync
        self._clarity, self._streak, self._state = clarity, streak, state
        order, customer = pair_specs(sync, echo_window_seconds=echo_window_seconds)
        self.orders = PairSync(order, store, echoes, clock=clock)
        self.customers = PairSync(customer, store, echoes, clock=clock)

    # --- orders ⇄ deals

    def seed_order(self, order_key: str, box: Mapping[str, Any], stage_key: str, changed_at: datetime) -> None:
        """A deal was made for the order (its stage from the order's status at ``changed_at``); the order's
        status now (changes made before the deal existed) is then carried across like any change."""
        if self.orders.keys(order_key).get(STREAK) != box["key"]:
            self.orders.link(order_key, STREAK, str(box["key"]))
        box = self._streak.get_box(str(box["key"]))  # as Switchyard's own writes left it
        self.orders.seed(order_key, CLARITY, {"status": stage_key}, changed_at,
                         {STREAK: {"status": str(box.get("stageKey", stage_key))}},
                         {CLARITY: changed_at, STREAK: _from_millis(box.get("lastUpdatedTimestamp"))})
        sides = self._order_sides(order_key, str(box["key"]), note=None)
        order = _unless_gone(lambda: self._clarity.get_order(order_key))
        if order is None:
            return
        self.orders.receive(order_key, CLARITY, {"status": self._deals.plan_stage_change(order).stage_key},
                            _from_rfc3339(order.get("updatedAt")) or changed_at, sides,
                            exact={"status": order.get("status")})

    def box_key(self, order_key: str) -> str | None:
        return self.orders.keys(order_key).get(STREAK)

    def order_from_clarity(self, event: FlowEvent, box_key: str) -> DeliveryResult:
        plan = self._deals.plan_stage_change(event.data)
        sides = self._order_sides(plan.order_key, box_key, note=None)
        result = self.orders.receive(plan.order_key, CLARITY, {"status": plan.stage_key}, event.timestamp, sides,
                                     exact={"status": event.data.get("status")}, changed=STATUS_CHANGED)
        outcome = "moved" if result.outcome == "updated" else result.outcome  # as one-way flows say it
        return DeliveryResult(outcome, {"order_key": plan.order_key, "box_key": box_key, **result.detail()})

    def order_from_streak(self, event: FlowEvent) -> DeliveryResult:
        plan = self._sync.plan_order_status(event.data)  # also checks the stage has a Clarity status
        if not plan.applies or plan.order_id is None:
            return DeliveryResult("filtered", {"key": event.data.get("key")})
        box_key = str(event.data.get("key"))
        sides = self._order_sides(plan.order_id, box_key, note=plan.note)
        result = self.orders.receive(plan.order_id, STREAK, {"status": str(event.data.get("stageKey"))},
                                     event.timestamp, sides, changed=STATUS_CHANGED)
        return DeliveryResult(result.outcome, {"order_id": plan.order_id, "box_key": box_key, **result.detail()})

    def _order_sides(self, order_id: str, box_key: str, *, note: str | None) -> dict[str, Any]:
        return {CLARITY: ClarityOrderStatus(self._clarity, self._deals, self._sync, order_id, note),
                STREAK: StreakBoxStage(self._streak, box_key)}

    # --- customers ⇄ contacts

    def seed_customer(self, customer: Mapping[str, Any], contact: Mapping[str, Any], changed_at: datetime) -> None:
        """A deal linked the order's customer to its contact: the pair starts from the order's customer
        data and from what the contact holds (values it had already are older than the order); the
        customer as it is now (edits made before the deal existed) is then carried across like any change."""
        values = clarity_customer_values(self._deals, customer)
        customer_id = str(customer.get("customerId"))
        self.customers.link(customer_id, STREAK, str(contact["key"]))
        self.customers.seed(customer_id, CLARITY, values, changed_at,
                            {STREAK: self._sync.customer_values(contact)},
                            {CLARITY: changed_at, STREAK: _from_millis(contact.get("lastUpdatedTimestamp"))})
        now = _unless_gone(lambda: self._clarity.get_customer(customer_id))
        if now is None:
            return
        self.customers.receive(customer_id, CLARITY, clarity_customer_values(self._deals, now),
                               _from_rfc3339(now.get("updatedAt")) or changed_at,
                               self._customer_sides(customer_id, str(contact["key"])),
                               field_times=clarity_field_times(now))

    def customer_from_clarity(self, event: FlowEvent) -> DeliveryResult:
        plan = self._deals.plan_contact_update(event.data)
        contact_key = self._state.linked(CUSTOMER_TO_CONTACT, plan.customer_key)
        if contact_key is None:  # a customer with no deal yet: nothing in Streak to update
            return DeliveryResult("unlinked", {"customer_key": plan.customer_key})
        values = clarity_customer_values(self._deals, event.data)
        result = self.customers.receive(plan.customer_key, CLARITY, values, event.timestamp,
                                        self._customer_sides(plan.customer_key, contact_key),
                                        field_times=clarity_field_times(event.data))
        return DeliveryResult(result.outcome, {"contact_key": contact_key, **result.detail()})

    def customer_from_streak(self, event: FlowEvent) -> DeliveryResult:
        contact_key = str(event.data.get("key"))
        customer_id = self._state.linked(CONTACT_TO_CUSTOMER, contact_key)
        if customer_id is None:
            return DeliveryResult("unlinked", {"contact_key": contact_key})
        result = self.customers.receive(customer_id, STREAK, self._sync.customer_values(event.data),
                                        event.timestamp, self._customer_sides(customer_id, contact_key))
        return DeliveryResult(result.outcome, {"customer_id": customer_id, **result.detail()})

    def _customer_sides(self, customer_id: str, contact_key: str) -> dict[str, Any]:
        return {CLARITY: ClarityCustomer(self._clarity, self._deals, customer_id),
                STREAK: StreakContact(self._streak, self._sync, contact_key)}


def _unless_gone(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return read()
    except PermanentError as exc:
        if exc.reason == "target_not_found":  # deleted in Clarity meanwhile: nothing to catch up with
            return None
        raise


def _target(context: FlowContext) -> Any:
    """Either direction's target: both flows' mapping documents describe the pair (loaded once, here)."""
    from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
    from switchyard.systems.clarity.target import ClarityTarget
    from switchyard.systems.streak.deal_mapping import load_deal_mapping
    from switchyard.systems.streak.deals import StreakDealTarget

    flow, two_way = context.flow, context.flow.two_way
    if two_way is None:
        raise ValueError(f"flow {flow.name}: a pair's target needs two_way settings")
    reverse = context.catalog.flows[two_way.reverse]
    documents = {f.target: f.mapping_document for f in (flow, reverse)}
    deals, sync = load_deal_mapping(documents[STREAK]), load_clarity_sync_mapping(documents[CLARITY])
    adapters = context.adapters
    state, echoes, pair_store = adapters.entity_state(), adapters.echo_ledger(), adapters.pair_store()
    clarity, streak = context.connection_to(CLARITY), context.connection_to(STREAK)

    def build(secrets: Secrets) -> Target:
        pairs = ClarityStreakPairs(deals, sync, context.client(clarity, secrets), context.client(streak, secrets),
                                   state, pair_store, echoes, echo_window_seconds=two_way.echo_window_seconds)
        if flow.target == STREAK:
            return StreakDealTarget(deals, context.client(streak, secrets), state, echoes, pairs=pairs)
        return ClarityTarget(sync, pairs)

    return build


PAIR = Pair(systems=frozenset({CLARITY, STREAK}), target=_target)
