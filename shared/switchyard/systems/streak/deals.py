"""Carries out deal plans in a Streak pipeline so that any step can be repeated safely.

Streak has no idempotency keys, so every write is preceded by a lookup: the box is found by the
order key stored in a text field (every page of the search read, matched exactly), contacts by
``getIfExisting``, organizations by name and domain, tasks by text. Redelivering an event, or
retrying after a failure half-way, therefore changes nothing twice.

A create whose answer never came (a timeout, a 5xx) may still be carried out by Streak, and search
shows a new box only after a while. So such a create leaves a "pending" mark, and nothing is
created again for that order until a lookup made at least ``settle_seconds`` after it has found
nothing. The create request carries the order key in the box's notes, so a box whose fields were
never written is still recognised as the order's; two boxes for one order are flagged on the box.
An order's marks live in its box link, one item: ``pending@<time>`` while its box create has no
answer, then the box key, with ``|task@<time>`` once its task create started (two writes per new
order, not three).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from hashlib import sha256
from typing import Any, NamedTuple, Protocol, TypeVar

from switchyard.concurrency import settle_all
from switchyard.echoes import EchoLedger, recorded_echo
from switchyard.entity_state import EntityState
from switchyard.errors import MappingError, OutOfOrderError, PermanentError, RetryableError
from switchyard.events import FlowEvent
from switchyard.systems.streak.client import StreakClient
from switchyard.systems.streak.deal_mapping import (
    DEFAULT_SETTLE_SECONDS,
    ContactPlan,
    DealMapping,
    DealPlan,
    OrganizationPlan,
    StageChangePlan,
    TaskPlan,
)
from switchyard.systems.streak.schema import PIPELINE_SCHEMAS, PipelineSchemas
from switchyard.targets import DeliveryResult


class DealPairs(Protocol):
    """A two-way pair whose one record decides deals' stages and contacts (``switchyard.pairs``): a source
    order's status and customer edits go through it, so the latest change of a field wins on both sides."""

    def seed_customer(self, customer: Mapping[str, Any], contact: Mapping[str, Any], changed_at: datetime) -> None: ...
    def seed_order(self, order_key: str, box: Mapping[str, Any], stage_key: str, changed_at: datetime) -> None: ...
    def box_key(self, order_key: str) -> str | None: ...
    def order_from_clarity(self, event: FlowEvent, box_key: str) -> DeliveryResult: ...
    def customer_from_clarity(self, event: FlowEvent) -> DeliveryResult: ...

__all__ = ["DEFAULT_SETTLE_SECONDS", "StreakDealTarget", "audit_boxes", "notes_with_order_key", "order_key_in_notes"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ORDER_KEY_LINE = "Switchyard order key: {}"
_ORDER_KEY_LINE = re.compile(r"^Switchyard order key: (.+)$", re.MULTILINE)
DUPLICATE_NOTE = "Switchyard: duplicate of box {canonical} for order {order_key}"
GHOST_NOTE = "Switchyard: this box has no order key ({order}); it was created by a request that did not finish"
INCOMPLETE_NOTE = "Switchyard: delivery of event {event_id} stopped part-way ({reason}); this box may be incomplete"
# a pair's outcomes for a status change that is no new change: dropped (README: drops), or its own write back
_DROPPED = frozenset({"stale", "superseded", "not_master", "echo"})
# a create that failed with one of these was certainly not carried out
_NOT_CARRIED_OUT = frozenset({"rate_limited"})
_BOX_PENDING = "pending@"  # an order's box link while its box create has no answer
_TASK_PENDING = "|task@"  # after the box key once the order's task create started


class _OrderLink(NamedTuple):
    """What an order's box link says: its box, and since when a box or task create may be unanswered."""

    box_key: str | None = None
    box_pending: float | None = None
    task_pending: float | None = None

    @classmethod
    def parse(cls, value: str | None) -> _OrderLink:
        if not value:
            return cls()
        if value.startswith(_BOX_PENDING):
            return cls(box_pending=float(value[len(_BOX_PENDING):]))
        box_key, _, task = value.partition(_TASK_PENDING)
        return cls(box_key=box_key, task_pending=float(task) if task else None)


class _NoEchoes:
    """For one-way flows: nothing comes back, nothing to record."""

    def record(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def consume(self, *_args: Any) -> bool:
        return False


def notes_with_order_key(notes: str | None, order_key: str) -> str:
    """The box's notes plus a line naming its order: the create request itself carries the key."""
    line = ORDER_KEY_LINE.format(order_key)
    return f"{notes}\n\n{line}" if notes else line


def order_key_in_notes(notes: Any) -> str | None:
    match = _ORDER_KEY_LINE.search(notes) if isinstance(notes, str) else None
    return match.group(1).strip() if match else None


def audit_boxes(client: StreakClient, mapping: DealMapping, *, flag: bool = False) -> dict[str, Any]:
    """What an operator should look at in the pipeline: ghost boxes (no order key in the order-key
    field) and orders with more than one box. With ``flag``, each gets a comment saying so (once)."""
    if mapping.names_used:  # the order key field's key in this pipeline
        mapping = mapping.for_pipeline(PIPELINE_SCHEMAS.get(client, client.connection.pipeline_key))
    key_field = mapping.order_key_field
    by_order: dict[str, list[dict[str, Any]]] = {}
    ghosts = []
    for box in client.list_boxes(client.connection.pipeline_key):
        order_key = (box.get("fields") or {}).get(key_field)
        if order_key:
            by_order.setdefault(str(order_key), []).append(box)
        else:
            ghosts.append({"box_key": box["key"], "name": box.get("name"),
                           "order_key_in_notes": order_key_in_notes(box.get("notes"))})
    duplicates = {}
    for order_key, boxes in by_order.items():
        if len(boxes) > 1:
            boxes.sort(key=lambda b: (b.get("creationTimestamp", 0), b["key"]))
            duplicates[order_key] = [b["key"] for b in boxes]
    if flag:
        notes = [(g["box_key"], GHOST_NOTE.format(order=g["order_key_in_notes"] or "unknown order"))
                 for g in ghosts]
        notes += [(key, DUPLICATE_NOTE.format(canonical=keys[0], order_key=order_key))
                  for order_key, keys in duplicates.items() for key in keys[1:]]
        for box_key, note in notes:
            if not any(c.get("message") == note for c in client.list_comments(box_key)):
                client.create_comment(box_key, note)
    return {"ghosts": ghosts, "duplicates": duplicates}


class StreakDealTarget:
    def __init__(self, mapping: DealMapping, client: StreakClient, state: EntityState,
                 echoes: EchoLedger | None = None, *, pairs: DealPairs | None = None,
                 settle_seconds: float | None = None, clock: Callable[[], float] = time.time,
                 schemas: PipelineSchemas = PIPELINE_SCHEMAS) -> None:
        if pairs is not None and mapping.names_used:
            raise MappingError(f"{mapping.name}: a two-way pair's documents give keys (its reverse document maps "
                               f"stage keys back), not names of stages, fields or items")
        self._document = mapping
        self._pairs = pairs  # two-way: status changes and contact edits go through the pair's record
        self._client = client
        self._state = state
        self._echoes: EchoLedger = echoes or _NoEchoes()
        self._pipeline = client.connection.pipeline_key
        self._team = client.connection.team_key
        self._settle_seconds = mapping.settle_seconds if settle_seconds is None else settle_seconds
        self._box_links = f"{mapping.doc.flow}:order>streak:box"
        self._clock = clock
        self._schemas = schemas

    @property
    def _mapping(self) -> DealMapping:
        """The document with its names resolved from the connection's pipeline (read once per cold start and
        ``SCHEMA_TTL_SECONDS``, shared with the plan checks); a name it lacks is looked up once more in a
        fresh copy, then dead-letters the event (someone renamed a stage: fix the document or the pipeline)."""
        if not self._document.names_used:
            return self._document
        try:
            return self._document.for_pipeline(self._schemas.get(self._client, self._pipeline))
        except MappingError:
            try:
                return self._document.for_pipeline(self._schemas.get(self._client, self._pipeline, fresh=True))
            except MappingError as exc:
                raise PermanentError(str(exc), reason="mapping_names_not_in_pipeline") from None

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
        # the whole plan is judged before the first write: nothing half-written for a value Streak refuses
        self._schemas.check(self._client, self._pipeline, plan.stage_key, plan.fields)

        # The contact, the organization and the order's box are independent lookups: side by side, each
        # in its own order. Only when all three succeeded is a box created (a refused contact creates none).
        looked_at = self._clock()
        outcomes = settle_all(
            lambda: self._ensure_contact(plan.contact, event.source) if plan.contact else None,
            lambda: self._ensure_organization(plan.organization) if plan.organization else None,
            lambda: self._find_boxes(plan.order_key, fallback_name=plan.box_name),
        )
        contact, organization, (box, duplicates, link) = (outcome.get() for outcome in outcomes)
        if self._pairs is not None and contact is not None and plan.contact and plan.contact.customer_key:
            self._pairs.seed_customer(event.data.get("customer") or {}, contact, event.timestamp)
        created = box is None
        task = plan.task
        if box is None:
            box = self._create_box_once(plan, looked_at)
            # later lookups need no search; the task's pending mark rides along (its create follows)
            self._state.link(self._box_links, plan.order_key,
                             f"{box['key']}{_TASK_PENDING}{self._clock()!r}" if task else box["key"])
        elif link.box_key != box["key"]:  # found by search: linked for later lookups
            self._state.link(self._box_links, plan.order_key, box["key"])
        box_key = box["key"]
        try:
            # the fields and links, and the follow-up task: two requests on the box, side by side
            for outcome in settle_all(
                lambda: self._write_box(box, plan, contact, organization),
                lambda: self._ensure_task(plan.order_key, box_key, task, box_is_new=created) if task else None,
            ):
                outcome.get()
            if plan.comment and not any(c.get("message") == plan.comment
                                        for c in self._client.list_comments(box_key)):
                self._client.create_comment(box_key, plan.comment)
            for duplicate in duplicates:
                self._flag_duplicate(duplicate, box_key, plan.order_key)
        except PermanentError as exc:  # to the DLQ: leave a mark on the box an operator can find
            raise self._marked_incomplete(box_key, plan.order_key, event, exc) from exc
        except RetryableError as exc:  # retried; should the retries run out, the letter names the box
            exc.message = f"{exc.message}; box {box_key} of order {plan.order_key} is not complete yet"
            exc.args = (exc.message,)
            raise
        # Record this change time; a newer status change may already own the stage (then keep it).
        self._claim(entity, event, plan.stage_key)
        if self._pairs is not None:
            self._pairs.seed_order(plan.order_key, box, plan.stage_key, event.timestamp)
        detail: dict[str, Any] = {"box_key": box_key, "order_key": plan.order_key}
        if duplicates:
            detail["duplicates_flagged"] = [d["key"] for d in duplicates]
        return DeliveryResult("created" if created else "updated", detail)

    def _write_box(self, box: dict[str, Any], plan: DealPlan, contact: dict | None,
                   organization: dict | None) -> None:
        """Every field value and link in one "update a box" call: it is applied whole or not at all."""
        current = box.get("fields") or {}
        changes: dict[str, Any] = {}
        fields = {key: value for key, value in plan.fields.items() if current.get(key) != value}
        if fields:
            changes["fields"] = fields
        # Streak replaces link lists on update: send the existing entries plus the new one.
        for name, entity in (("contacts", contact), ("organizations", organization)):
            existing = list(box.get(name) or [])
            if entity and all(link.get("key") != entity["key"] for link in existing):
                changes[name] = [*({"key": link["key"]} for link in existing), {"key": entity["key"]}]
        # the rep the mapping's rules chose, in the same call; a box someone already assigned keeps its rep
        if plan.assignee and not box.get("assignedToSharingEntries"):
            changes["assignedToSharingEntries"] = [{"email": plan.assignee}]
        if changes:
            self._client.update_box(box["key"], changes)

    def _create_box_once(self, plan: DealPlan, looked_at: float) -> dict[str, Any]:
        """Create the order's box after a lookup found none, unless an earlier create of it has no known
        outcome and that lookup may have been too early to see it (the mark is read again now: another
        delivery of the order may have started one since)."""
        pending = _OrderLink.parse(self._state.linked(self._box_links, plan.order_key)).box_pending
        self._hold_back_create("box", plan.order_key, looked_at, pending)
        self._hold_back_create("box", plan.order_key, looked_at, self._legacy_pending("box", plan.order_key))
        self._state.link(self._box_links, plan.order_key, f"{_BOX_PENDING}{self._clock()!r}")
        try:
            return self._client.create_box(self._pipeline, name=plan.box_name, stage_key=plan.stage_key,
                                           notes=notes_with_order_key(plan.notes, plan.order_key))
        except RetryableError as exc:
            if exc.reason in _NOT_CARRIED_OUT:
                self._state.link(self._box_links, plan.order_key, "")
            raise
        except PermanentError:
            self._state.link(self._box_links, plan.order_key, "")  # refused: nothing was created
            raise

    def _ensure_task(self, order_key: str, box_key: str, task: TaskPlan, *, box_is_new: bool) -> None:
        """The order's task on its box. A new box's task is created at once (its pending mark went with the
        box link); otherwise after the box's tasks show none, unless an earlier create may be unanswered."""
        looked_at = self._clock()
        if not box_is_new:
            if any(t.get("text") == task.text for t in self._client.list_tasks(box_key)):
                return
            link = _OrderLink.parse(self._state.linked(self._box_links, order_key))
            self._hold_back_create("task", order_key, looked_at, link.task_pending if link.box_key == box_key else None)
            self._hold_back_create("task", order_key, looked_at, self._legacy_pending("task", order_key))
            self._state.link(self._box_links, order_key, f"{box_key}{_TASK_PENDING}{self._clock()!r}")
        try:
            self._client.create_task(box_key, text=task.text, due_date_ms=task.due_date_ms,
                                     assignee_email=task.assignee_email)
        except RetryableError as exc:
            if exc.reason in _NOT_CARRIED_OUT:
                self._state.link(self._box_links, order_key, box_key)
            raise
        except PermanentError:
            self._state.link(self._box_links, order_key, box_key)  # refused: nothing was created
            raise

    def _hold_back_create(self, kind: str, key: str, looked_at: float, pending: float | None) -> None:
        """Raise when a create of ``kind`` started at ``pending`` may still show up: the lookup at
        ``looked_at`` came less than ``settle_seconds`` after it."""
        if pending is None:
            return
        waited = looked_at - pending
        if waited < self._settle_seconds:
            raise RetryableError(
                f"an earlier {kind} create for {key} got no answer and may still show up in Streak; "
                f"looking again {self._settle_seconds - waited:.0f} s from now before creating",
                reason="create_unsettled", retry_after=self._settle_seconds - waited)

    def _legacy_pending(self, kind: str, order_key: str) -> float | None:
        """A box's or task's pending mark in its own item, as written before the marks moved into the box
        link: a create left unanswered just before an upgrade is still waited for."""
        mark = self._state.linked(f"{self._mapping.doc.flow}:pending_create>streak:{kind}", order_key)
        return float(mark) if mark else None

    def _create_once(self, kind: str, key: str, looked_at: float, create: Callable[[], T], *,
                     shared: bool = False) -> T:
        """Create after a lookup found nothing, unless an earlier create of the same thing has no
        known outcome and that lookup may have been too early to see it."""
        namespace = f"{self._mapping.doc.flow}:pending_create>streak:{kind}"
        pending = self._state.linked(namespace, key)
        self._hold_back_create(kind, key, looked_at, float(pending) if pending else None)
        self._state.link(namespace, key, repr(self._clock()))
        try:
            created = create()
        except RetryableError as exc:
            if exc.reason in _NOT_CARRIED_OUT:
                self._state.link(namespace, key, "")
            raise
        except PermanentError:
            self._state.link(namespace, key, "")  # refused: nothing was created
            raise
        if shared:  # another order may need to create it again (deleted meanwhile): not held back
            self._state.link(namespace, key, "")
        return created

    def _flag_duplicate(self, duplicate: dict[str, Any], canonical_key: str, order_key: str) -> None:
        note = DUPLICATE_NOTE.format(canonical=canonical_key, order_key=order_key)
        if not any(c.get("message") == note for c in self._client.list_comments(duplicate["key"])):
            self._client.create_comment(duplicate["key"], note)
        log.warning("duplicate Streak box flagged", extra={"box_key": duplicate["key"],
                                                            "canonical_box_key": canonical_key,
                                                            "order_key": order_key})

    def _marked_incomplete(self, box_key: str, order_key: str, event: FlowEvent,
                           exc: PermanentError) -> PermanentError:
        note = INCOMPLETE_NOTE.format(event_id=event.event_id, reason=exc.reason)
        try:
            self._client.create_comment(box_key, note)
            marked = "marked with a comment"
        except Exception:  # the mark is best effort; the letter still names the box
            marked = "not marked (Streak refused the comment)"
        return PermanentError(f"{exc.message}; box {box_key} of order {order_key} may be incomplete, {marked}",
                              reason=exc.reason, target_status=exc.target_status,
                              target_response=exc.target_response)

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
        # the mapping's contact fields, like the names: filled when empty, never over a rep's value
        changes.update({name: value for name, value in plan.fields.items() if not contact.get(name)})
        if changes:
            with recorded_echo(self._echoes, "streak", "contact", contact["key"], {**contact, **changes}):
                contact = self._client.update_contact(contact["key"], changes)
        forward = f"{source}:customer>streak:contact"
        # so later changes on either side find their counterpart; a returning customer's links are read, not
        # written again (two writes an order) unless they changed or are getting old
        if plan.customer_key and not self._state.link_is_current(forward, plan.customer_key, contact["key"]):
            # the reverse first: a current forward link then means both were written
            self._state.link(f"streak:contact>{source}:customer", contact["key"], plan.customer_key)
            self._state.link(forward, plan.customer_key, contact["key"])
        return contact

    def _ensure_organization(self, plan: OrganizationPlan) -> dict[str, Any]:
        """The organization the order names: matched on the mapping's ``match_on`` (name, domain or
        both), so a shared e-mail domain alone does not link another company; created when none matches."""
        if plan.domain and plan.match_on == ("domain",):
            org = self._client.find_or_create_organization(self._team, plan.domain)
            return self._complete_organization(org, plan, {} if org.get("name") else {"name": plan.name})
        use_domain = plan.domain is not None and "domain" in plan.match_on
        by_name = "name" in plan.match_on or not use_domain
        looked_at = self._clock()
        for org in self._client.search_organizations(plan.name if by_name else str(plan.domain)):
            if by_name and str(org.get("name", "")).casefold() != plan.name.casefold():
                continue
            domains = [str(d).lower() for d in org.get("domains") or []]
            if use_domain and plan.domain not in domains:
                if domains:
                    continue  # the same name, but another company's domain
                return self._complete_organization(org, plan, {"domains": [str(plan.domain)]})
            return self._complete_organization(org, plan, {})
        new_domains = [plan.domain] if use_domain and plan.domain else None
        return self._create_once("organization", f"{plan.name.casefold()}|{plan.domain or ''}", looked_at,
                                 lambda: self._client.create_organization(
                                     self._team, plan.name, domains=new_domains,
                                     addresses=list(plan.addresses) or None, properties=plan.fields), shared=True)

    def _complete_organization(self, org: dict[str, Any], plan: OrganizationPlan,
                               changes: dict[str, Any]) -> dict[str, Any]:
        """An existing organization plus what it lacks (its name, domain, the order's addresses), in one
        update and only when something is missing: a redelivery writes nothing."""
        have = list(org.get("addresses") or [])
        known = {str(line).casefold() for line in have}
        missing = [line for line in plan.addresses if line.casefold() not in known]
        if missing:  # Streak replaces the list: send the existing lines plus the new ones
            changes = {**changes, "addresses": [*have, *missing]}
        # the mapping's organization fields: filled when empty, never over a rep's value
        changes = {**changes, **{name: value for name, value in plan.fields.items() if not org.get(name)}}
        return self._client.update_organization(org["key"], changes) if changes else org

    def _find_box(self, order_key: str, *, fallback_name: str | None = None) -> dict[str, Any] | None:
        return self._find_boxes(order_key, fallback_name=fallback_name)[0]

    def _find_boxes(self, order_key: str, *, fallback_name: str | None = None
                    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], _OrderLink]:
        """The order's box and any duplicates, from every page of the search, matched exactly.

        A box is the order's when its order-key field holds the key, or, when that field was never
        written, when its notes carry the key (the create request sends them) or, for boxes created
        before notes did, its name is the one the plan gives. A failed page raises: an incomplete
        lookup never leads to a create. Also what the order's box link said.
        """
        link = _OrderLink.parse(self._state.linked(self._box_links, order_key))
        linked = self._linked_box(order_key, link.box_key)
        if linked is not None:
            return linked, [], link
        key_field = self._mapping.order_key_field
        matches: list[dict[str, Any]] = []
        for hit in self._client.search_boxes(order_key, self._pipeline):
            try:
                box = self._client.get_box(hit["boxKey"])
            except PermanentError as exc:
                if exc.reason == "target_not_found":
                    continue  # deleted since the search: not the order's box any more
                raise
            stored = (box.get("fields") or {}).get(key_field)
            recognised = stored is None and (order_key_in_notes(box.get("notes")) == order_key or (
                fallback_name is not None and box.get("name") == fallback_name))
            if stored == order_key or recognised:
                matches.append(box)
        if not matches:
            return None, [], link
        # the box that already holds the key, else the oldest, is the order's; the rest are duplicates
        matches.sort(key=lambda b: ((b.get("fields") or {}).get(key_field) != order_key,
                                    b.get("creationTimestamp", 0), b["key"]))
        return matches[0], matches[1:], link

    def _linked_box(self, order_key: str, box_key: str | None) -> dict[str, Any] | None:
        """The box this target stored the order in before, if it still holds the order's key (in its field,
        or, before the fields are written, in the notes its create carried)."""
        if not box_key:
            return None
        try:
            box = self._client.get_box(box_key)
        except PermanentError as exc:
            if exc.reason == "target_not_found":  # deleted in Streak: search again
                return None
            raise
        stored = (box.get("fields") or {}).get(self._mapping.order_key_field)
        mine = stored == order_key or (stored is None and order_key_in_notes(box.get("notes")) == order_key)
        return box if mine else None

    # --- status changed ------------------------------------------------------------------------

    def _move_stage(self, event: FlowEvent) -> DeliveryResult:
        plan = self._mapping.plan_stage_change(event.data)
        entity = f"{event.flow}#{plan.order_key}"
        if plan.fields:  # judged before the first write, like a new deal's (cached: no call)
            self._schemas.check(self._client, self._pipeline, plan.stage_key, plan.fields)
        if self._pairs is not None:
            box_key = self._pairs.box_key(plan.order_key)
            if box_key is not None:
                return self._keep_up_after_pair(self._pairs.order_from_clarity(event, box_key), box_key, plan,
                                                event)
        box = self._find_box(plan.order_key)
        if box is None:
            if self._state.is_filtered(entity):
                return DeliveryResult("filtered", {"order_key": plan.order_key})
            raise OutOfOrderError(f"no box for order {plan.order_key} yet", reason="box_not_found")
        if self._pairs is not None:
            return self._keep_up_after_pair(self._pairs.order_from_clarity(event, box["key"]), box["key"], plan,
                                            event)
        if not self._mapping.source_may_write("status"):
            return DeliveryResult("not_master", {"field": "status", "box_key": box["key"]})
        refused = self._claim(entity, event, plan.stage_key)
        if refused:
            return DeliveryResult(refused, {"order_key": plan.order_key, "box_key": box["key"]})
        # the stage and the fields that follow the order (the payment status): one update, only what differs
        changes: dict[str, Any] = {}
        if box.get("stageKey") != plan.stage_key:
            changes["stageKey"] = plan.stage_key
        current = box.get("fields") or {}
        if fields := {key: value for key, value in plan.fields.items() if current.get(key) != value}:
            changes["fields"] = fields
        if "stageKey" in changes:
            with recorded_echo(self._echoes, "streak", "box", box["key"], {**box, "stageKey": plan.stage_key}):
                self._client.update_box(box["key"], changes)
        elif changes:
            self._client.update_box(box["key"], changes)
        self._post_timeline(box["key"], plan.timeline, event)
        detail = {"box_key": box["key"], "stage_key": plan.stage_key}
        if "stageKey" in changes:
            return DeliveryResult("moved", detail)
        return DeliveryResult("updated" if changes else "unchanged", detail)

    def _keep_up_after_pair(self, result: DeliveryResult, box_key: str, plan: StageChangePlan,
                            event: FlowEvent) -> DeliveryResult:
        """The pair's record decides the stage; the payment field and the timeline line follow any status
        change it did not drop (a field no reverse flow reads, a comment no one syncs: no echo)."""
        if result.outcome in _DROPPED:
            return result
        if plan.fields:
            current = self._client.get_box(box_key).get("fields") or {}
            if fields := {key: value for key, value in plan.fields.items() if current.get(key) != value}:
                self._client.update_box(box_key, {"fields": fields})
        self._post_timeline(box_key, plan.timeline, event)
        return result

    def _post_timeline(self, box_key: str, line: str | None, event: FlowEvent) -> None:
        """One comment per applied change, keyed by its event: a marker derived from the event id ends the
        line. The store notes the attempt before the post; only when an earlier attempt may have posted it
        (its answer lost, the event redelivered) are the box's comments read to look for the marker."""
        if not line:
            return
        marker = f"[ref {sha256(f'{event.flow}|{event.event_id}'.encode()).hexdigest()[:12]}]"
        namespace = f"{event.flow}:timeline>streak:comment"
        if self._state.linked(namespace, event.event_id) and any(
                marker in str(comment.get("message", "")) for comment in self._client.list_comments(box_key)):
            return
        self._state.link(namespace, event.event_id, box_key)
        self._client.create_comment(box_key, f"{line} {marker}")

    def _claim(self, entity: str, event: FlowEvent, stage_key: str) -> str | None:
        """Claim the order for this change: None, or why not (``stale``; ``superseded`` by a change of the
        same time further along the mapping's lifecycle)."""
        rank = self._mapping.stage_rank(stage_key)
        if rank is None:
            return None if self._state.claim(entity, event.timestamp, event.event_id) else "stale"
        return self._state.claim_ranked(entity, event.timestamp, event.event_id, rank)

    # --- customer updated ----------------------------------------------------------------------

    def _update_contact(self, event: FlowEvent) -> DeliveryResult:
        if self._pairs is None:
            raise PermanentError(f"flow {event.flow} syncs both ways but has no two_way settings in flows.yaml",
                                 reason="not_two_way")
        return self._pairs.customer_from_clarity(event)
