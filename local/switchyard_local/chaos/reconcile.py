"""Classify every accepted event of a chaos run by what the targets hold, the DLQs and the workers' logs.

For each flow an accepted event belongs to, its expected effect is looked up in the sandbox's state:

* Streak (``nopcommerce-to-streak``, ``clarity-to-streak``): boxes by the order-key field (a box without
  one, named like the order's box, is a ghost of it), the stage the order's newest change implies (equal
  change times: the later status in the lifecycle), one follow-up task, one payment comment;
* QuickBooks (``nopcommerce-to-quickbooks``): the order's SalesReceipt or Invoice by DocNumber and
  OrderGuid, its total to the cent in the document currency, a Payment linked once, a void; the
  nopCommerce order gets one "Sent to QuickBooks" note;
* nopCommerce (``quickbooks-to-nopcommerce``): each chaos item's stock equals its QuickBooks quantity.

Buckets (each accepted event lands in exactly one): delivered once, delivered after redrive, dropped with
a reason (filtered by the mapping, or superseded: a strictly newer change of the entity was applied),
dead-lettered with a reason (still there after the redrive), duplicated, lost (accepted, its effect
missing, not in a DLQ; a "stale" log line does not excuse a missing effect), wrong (present but not
what was sent: amount, document kind, an unexpected record), unsettled (the run's time bound came first).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from switchyard_local.chaos.bng_check import NOP_BNG, BngChecker
from switchyard_local.chaos.plan import (
    CANCELLED,
    PAID,
    STOCK_ITEMS,
    ClarityScenario,
    NopScenario,
    StockScenario,
    nop_template,
    stock_sku,
)
from switchyard_local.chaos.run import Letter, RunRecord, _clarity_order_input, clarity_poison_event

NOP_STREAK, CLARITY_STREAK = "nopcommerce-to-streak", "clarity-to-streak"
NOP_QBO, STOCK_FLOW, STREAK_CLARITY = "nopcommerce-to-quickbooks", "quickbooks-to-nopcommerce", "streak-to-clarity"
CLARITY_SALESFORCE = "clarity-to-salesforce"
# flows chaos sends events to but has no checker for yet: counted apart, by name, never as delivered
NOT_RECONCILED_YET: dict[str, str] = {}
ORDER_KEY_FIELD = "Order number"  # field 1001 of the demo pipeline, as the Streak sandbox names it
NOP_STAGE = {10: "5001", 20: "5002", 30: "5003", 40: "5004"}
CLARITY_STAGE = {"pending": "5001", "processing": "5002", "shipped": "5002", "delivered": "5003",
                 "cancelled": "5004", "refunded": "5004"}
CLARITY_RANK = {"pending": 0, "processing": 1, "shipped": 2, "delivered": 3, "cancelled": 4, "refunded": 5}
DROP_OUTCOMES = frozenset({"stale", "filtered", "unchanged", "not_master", "unlinked", "echo"})
BUCKETS = ("delivered_once", "delivered_after_redrive", "dropped", "dead_lettered", "duplicated", "lost",
           "wrong", "unsettled")


@dataclass
class EventResult:
    flow: str
    event_id: str
    scenario: int
    label: str
    bucket: str
    reason: str = ""


@dataclass
class Defect:
    bucket: str
    flow: str
    what: str
    sequence: list[str]
    evidence: list[str] = field(default_factory=list)


@dataclass
class Report:
    results: list[EventResult]
    defects: list[Defect]
    deliveries: int
    accepted_deliveries: int
    rejected: Counter[str]
    letters_before: Counter[str]
    letters_after: Counter[str]
    secondary: dict[str, Counter[str]]
    stock_notifications: int
    unreconciled: Counter[str] = field(default_factory=Counter)  # flow -> its events nobody checked

    def count(self, bucket: str) -> int:
        return sum(1 for r in self.results if r.bucket == bucket)

    def reasons(self, bucket: str) -> Counter[str]:
        return Counter(r.reason for r in self.results if r.bucket == bucket)

    @property
    def failed(self) -> bool:
        return any(self.count(bucket) for bucket in ("duplicated", "lost", "wrong"))


class Reconciler:
    def __init__(self, record: RunRecord, *, streak: dict[str, Any], quickbooks: dict[str, Any],
                 notes: dict[int, list[str]], stock: dict[str, float], clarity_orders: dict[str, dict[str, Any]],
                 outcomes: list[dict[str, Any]], salesforce: dict[str, list[dict[str, Any]]] | None = None,
                 bng: dict[str, Any] | None = None, drops: dict[tuple[str, str], str] | None = None) -> None:
        self.record = record
        self.bng = BngChecker(bng or {})  # the BNG sandbox's snapshot
        self.drops = drops or {}  # (flow, event id) -> the reason `switchyard drops` lists
        self.salesforce = salesforce or {}  # object name -> records of the org sandbox
        self.settled = record.settled_after_redrive
        self.boxes_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.unkeyed: list[dict[str, Any]] = []
        for box in streak["boxes"]:
            key = (box.get("fields") or {}).get(ORDER_KEY_FIELD)
            (self.boxes_by_key[str(key)] if key else self.unkeyed).append(box)
        self.qbo = quickbooks
        self.notes = notes
        self.stock = stock
        self.clarity_orders = clarity_orders
        self.outcomes: dict[tuple[str, str], list[str]] = defaultdict(list)
        for entry in outcomes:
            self.outcomes[(str(entry["flow"]), str(entry["event_id"]))].append(str(entry["outcome"]))
        self.before = _letters_by_event(record.letters_before_redrive)
        self.after = _letters_by_event(record.letters_after_redrive)
        # deliveries of one change under different ids ("same change re-sent with a new id")
        self.twins: dict[str, set[str]] = defaultdict(set)
        by_change: dict[tuple[int, int], set[str]] = defaultdict(set)
        for delivery in record.deliveries:
            if delivery.scenario >= 0:
                by_change[(delivery.scenario, delivery.index)].add(delivery.event_id)
        for ids in by_change.values():
            for event_id in ids:
                self.twins[event_id] = ids - {event_id}
        self.results: list[EventResult] = []
        self.defects: list[Defect] = []

    # --- the whole run -------------------------------------------------------------------------

    def reconcile(self) -> Report:
        record = self.record
        accepted: dict[tuple[str, str], tuple[int, int]] = {}
        for delivery in record.deliveries:
            if delivery.accepted and delivery.scenario >= 0:
                for flow in delivery.flows:
                    accepted.setdefault((flow, delivery.event_id), (delivery.scenario, delivery.index))
        scenarios = {s.n: s for s in record.scenarios}
        unreconciled: Counter[str] = Counter()
        for (flow, event_id), (n, index) in accepted.items():
            scenario = scenarios[n]
            if flow in NOT_RECONCILED_YET:
                unreconciled[flow] += 1
            elif isinstance(scenario, NopScenario) and flow == NOP_STREAK:
                self._nop_streak(scenario, index, event_id)
            elif isinstance(scenario, NopScenario) and flow == NOP_QBO:
                self._nop_quickbooks(scenario, index, event_id)
            elif isinstance(scenario, NopScenario) and flow == NOP_BNG:
                self._nop_bng(scenario, index, event_id)
            elif isinstance(scenario, ClarityScenario) and flow == CLARITY_STREAK:
                self._clarity_streak(scenario, index, event_id)
            elif isinstance(scenario, ClarityScenario) and flow == CLARITY_SALESFORCE:
                self._clarity_salesforce(scenario, index, event_id)
            else:
                self._add(flow, event_id, n, f"index {index}", "wrong", f"routed to unexpected flow {flow}")
        for scenario in scenarios.values():
            if isinstance(scenario, ClarityScenario) and not scenario.poison and scenario.n in record.sent_scenarios:
                self._clarity_status_kept(scenario)
        stock_notifications = self._stock()
        secondary = {flow: Counter(outcome for (f, _), outs in self.outcomes.items() if f == flow for outcome in outs)
                     for flow in (STREAK_CLARITY,)}
        rejected = Counter(f"{d.status} {d.answer[:80]}" for d in record.deliveries if not d.accepted)
        return Report(results=self.results, defects=self.defects, deliveries=len(record.deliveries),
                      accepted_deliveries=sum(1 for d in record.deliveries if d.accepted), rejected=rejected,
                      letters_before=Counter(f"{lt.flow}: {lt.reason}" for lt in record.letters_before_redrive),
                      letters_after=Counter(f"{lt.flow}: {lt.reason}" for lt in record.letters_after_redrive),
                      secondary=secondary, stock_notifications=stock_notifications, unreconciled=unreconciled)

    # --- one event -----------------------------------------------------------------------------

    def _settle(self, flow: str, event_id: str, scenario: Any, label: str, effect: str, why: str = "") -> None:
        """``effect``: once, superseded, filtered, dropped (applied nothing, and must have said why: a drop
        recorded for `switchyard drops`), missing, duplicated or wrong, as the target shows it."""
        key = (flow, event_id)
        logged = self.outcomes.get(key, [])
        was_dead = key in self.before
        if effect == "duplicated":
            bucket, reason = "duplicated", why
        elif effect == "wrong":
            bucket, reason = "wrong", why
        elif effect == "once":
            bucket, reason = "delivered_once", ""
            if was_dead:
                bucket, reason = "delivered_after_redrive", self.before[key].reason
        elif effect == "superseded":
            bucket = "dropped" if "stale" in logged or key in self.drops else "delivered_once"
            reason = "stale: a newer change was applied" if bucket == "dropped" else ""
        elif effect == "filtered":
            bucket, reason = "dropped", why or "filtered"
        elif effect == "dropped" and (drop := self._recorded_drop(flow, event_id)):
            bucket, reason = "dropped", f"{drop}: {why}" if why else drop
        elif key in self.after:
            bucket, reason = "dead_lettered", self.after[key].reason
            if not getattr(scenario, "poison", None):  # faults were off for the redrive: nothing should fail
                self.defects.append(Defect("stuck", flow, f"{_describe(scenario)}: {label}: still dead-lettered "
                                           f"after a redrive with faults off: {reason}: {self.after[key].message}",
                                           self._sequence(scenario), self._evidence(scenario)))
        elif twin := next((t for t in sorted(self.twins.get(event_id, ())) if (flow, t) in self.after), None):
            # the same change under another id: taken as a duplicate of it, which is in the DLQ
            bucket, reason = "dead_lettered", f"{self.after[(flow, twin)].reason} (as the same change, {twin})"
        elif not self.settled:
            bucket, reason = "unsettled", "the run's time bound came before the queues were empty"
        else:
            drop = [o for o in logged if o in DROP_OUTCOMES]
            bucket = "lost"
            reason = f"logged {drop[0]}" if drop else ("dead-lettered, then lost after redrive" if was_dead
                                                       else "no effect, no dead letter, no log line")
            if effect == "dropped":
                reason = f"{reason}, no drop recorded"
            reason = f"{reason}; {why}" if why else reason
        self._add(flow, event_id, scenario.n, label, bucket, reason)
        if bucket in ("duplicated", "lost", "wrong"):
            self.defects.append(Defect(bucket, flow, f"{_describe(scenario)}: {label}: {reason}",
                                       self._sequence(scenario), self._evidence(scenario)))

    def _recorded_drop(self, flow: str, event_id: str) -> str | None:
        """The reason recorded for this event, or for the same change under another id (its execution ran
        once: a twin's start was a duplicate)."""
        for candidate in (event_id, *sorted(self.twins.get(event_id, ()))):
            if (flow, candidate) in self.drops:
                return self.drops[(flow, candidate)]
        return None

    def _add(self, flow: str, event_id: str, n: int, label: str, bucket: str, reason: str) -> None:
        self.results.append(EventResult(flow, event_id, n, label, bucket, reason))

    # --- nopCommerce → Streak ------------------------------------------------------------------

    def _nop_streak(self, scenario: NopScenario, index: int, event_id: str) -> None:
        change = scenario.changes[index]
        label = change.label
        boxes = self._boxes(str(scenario.number), f"Order {scenario.number} ")
        eligible = _nop_creates_deal(scenario)
        if not eligible:
            self._settle(NOP_STREAK, event_id, scenario, label, "wrong" if boxes else "filtered",
                         f"{len(boxes)} box(es) for an order below the deal rule" if boxes else "filtered")
            return
        if len(boxes) > 1:
            self._settle(NOP_STREAK, event_id, scenario, label, "duplicated",
                         f"{len(boxes)} boxes for order {scenario.number} ({_ghosts(boxes)} without order key)")
            return
        if not boxes:
            self._settle(NOP_STREAK, event_id, scenario, label, "missing", "no box")
            return
        box = boxes[0]
        streak_changes = [(i, c) for i, c in enumerate(scenario.changes) if c.type != "order.paid"]
        winner = max(streak_changes, key=lambda ic: (ic[1].offset_seconds, ic[1].order_status))[0]
        if change.type == "order.placed":
            tasks = [t for t in box["tasks"] if t.get("text") == f"Follow up on order {scenario.number}"]
            if len(tasks) > 1:
                self._settle(NOP_STREAK, event_id, scenario, label, "duplicated", f"{len(tasks)} follow-up tasks")
                return
        if index == winner:
            expected = NOP_STAGE[change.order_status]
            effect = "once" if box["stageKey"] == expected else "missing"
            self._settle(NOP_STREAK, event_id, scenario, label, effect,
                         f"box in stage {box['stageKey']}, the newest change says {expected}")
        else:
            self._settle(NOP_STREAK, event_id, scenario, label, "once" if index == 0 else "superseded")

    # --- nopCommerce → QuickBooks ----------------------------------------------------------------

    def _nop_quickbooks(self, scenario: NopScenario, index: int, event_id: str) -> None:
        change = scenario.changes[index]
        label = change.label
        docs = [(kind, doc) for kind in ("salesReceipts", "invoices") for doc in self.qbo[kind]
                if doc.get("DocNumber") == str(scenario.number) and scenario.guid in str(doc.get("PrivateNote"))]
        if change.type == "order.status_changed" and change.order_status != CANCELLED:
            self._settle(NOP_QBO, event_id, scenario, label, "filtered", "a status change needs no execution")
            return
        if scenario.poison == "unknown_sku":  # its place is the DLQ; a cancellation finds nothing to void
            nothing_booked = "dropped" if change.order_status == CANCELLED else "missing"
            self._settle(NOP_QBO, event_id, scenario, label, "wrong" if docs else nothing_booked,
                         f"a document for an order with an unknown SKU: {docs}" if docs else "")
            return
        if len(docs) > 1:
            self._settle(NOP_QBO, event_id, scenario, label, "duplicated",
                         f"{len(docs)} documents: {[(k, d.get('Id')) for k, d in docs]}")
            return
        cancelled = any(c.order_status == CANCELLED for c in scenario.changes)
        if not docs:
            if cancelled:  # the shop said cancelled before the document was booked: nothing to book or void,
                # and each of its events a drop with the reason recorded
                self._settle(NOP_QBO, event_id, scenario, label, "dropped", "cancelled in the shop before booking")
            else:
                self._settle(NOP_QBO, event_id, scenario, label, "missing", "no document")
            return
        kind, doc = docs[0]
        if change.type == "order.placed":
            expected_kind = "salesReceipts" if change.payment_status == PAID else "invoices"
            notes = [n for n in self.notes.get(scenario.number, []) if n.startswith("Sent to QuickBooks")]
            expected_total = _expected_total(scenario)
            if kind != expected_kind:
                self._settle(NOP_QBO, event_id, scenario, label, "wrong", f"a {kind} instead of {expected_kind}")
            elif doc.get("status") != "Voided" and Decimal(str(doc.get("TotalAmt"))) != expected_total:
                self._settle(NOP_QBO, event_id, scenario, label, "wrong",
                             f"{kind} TotalAmt {doc.get('TotalAmt')} {_currency(doc)}, the order is {expected_total}")
            elif len(notes) > 1:
                self._settle(NOP_QBO, event_id, scenario, label, "duplicated", f"{len(notes)} notes {notes}")
            else:
                self._settle(NOP_QBO, event_id, scenario, label, "once" if notes else "missing",
                             "" if notes else "document booked, no note in nopCommerce")
        elif change.type == "order.paid":
            payments = [p for p in self.qbo["payments"]
                        if any(link.get("TxnId") == doc.get("Id") for line in p.get("Line", [])
                               for link in line.get("LinkedTxn", []))]
            if len(payments) > 1:
                self._settle(NOP_QBO, event_id, scenario, label, "duplicated", f"{len(payments)} payments linked")
            else:
                paid_off = payments and Decimal(str(doc.get("Balance", "0"))) == 0
                self._settle(NOP_QBO, event_id, scenario, label, "once" if paid_off else "missing",
                             f"{len(payments)} payment(s), balance {doc.get('Balance')}")
        else:  # cancelled
            self._settle(NOP_QBO, event_id, scenario, label, "once" if doc.get("status") == "Voided" else "missing",
                         f"{kind} status {doc.get('status')}")

    # --- nopCommerce → BNG (the checker: chaos/bng_check.py) --------------------------------------

    def _nop_bng(self, scenario: NopScenario, index: int, event_id: str) -> None:
        label = scenario.changes[index].label
        effect, why = self.bng.check(scenario, index)
        if effect != "refused":
            self._settle(NOP_BNG, event_id, scenario, label, effect, why)
        elif (NOP_BNG, event_id) in self.after:  # the mapping refuses the order: the DLQ is its place
            self._add(NOP_BNG, event_id, scenario.n, label, "dead_lettered", self.after[(NOP_BNG, event_id)].reason)
        elif any(c.order_status == CANCELLED for c in scenario.changes) and self._recorded_drop(NOP_BNG, event_id):
            # the shop had cancelled it before the execution booked anything: a drop with its reason
            self._settle(NOP_BNG, event_id, scenario, label, "dropped", f"refused anyway: {why}")
        else:
            self._settle(NOP_BNG, event_id, scenario, label, "missing", f"expected in the DLQ: {why}")

    # --- Clarity → Streak -------------------------------------------------------------------------

    def _clarity_streak(self, scenario: ClarityScenario, index: int, event_id: str) -> None:
        order_id = self.record.clarity_orders.get(scenario.n, "")
        label = "created" if index == 0 else f"status {scenario.statuses[index - 1]}"
        boxes = self._boxes(order_id, f"Clarity {order_id} ")
        if len(boxes) > 1:
            self._settle(CLARITY_STREAK, event_id, scenario, label, "duplicated",
                         f"{len(boxes)} boxes for {order_id} ({_ghosts(boxes)} without order key)")
            return
        if not boxes:
            self._settle(CLARITY_STREAK, event_id, scenario, label, "missing", "no box")
            return
        box = boxes[0]
        if index == 0:
            tasks = [t for t in box["tasks"] if t.get("text") == f"Follow up on Clarity order {order_id}"]
            comments = [c for c in box["comments"] if c.startswith("Payment:")]
            if len(tasks) > 1 or len(comments) > 1:
                self._settle(CLARITY_STREAK, event_id, scenario, label, "duplicated",
                             f"{len(tasks)} tasks, {len(comments)} payment comments")
                return
        # the order as it was created: pending as the run places it, or the status a poison event carries
        created = (str(clarity_poison_event(scenario, self.record.config.seed)["data"]["status"])
                   if scenario.poison else "pending")
        statuses = [created, *scenario.statuses]
        seconds, times = 0, []
        for same in (False, *scenario.same_second):
            seconds += 0 if same else 1
            times.append(seconds)
        winner = max(range(len(statuses)), key=lambda i: (times[i], CLARITY_RANK[statuses[i]]))
        if index == winner:
            expected = CLARITY_STAGE[statuses[index]]
            effect = "once" if box["stageKey"] == expected else "missing"
            self._settle(CLARITY_STREAK, event_id, scenario, label, effect,
                         f"box in stage {box['stageKey']}, the newest change says {expected}")
        else:
            self._settle(CLARITY_STREAK, event_id, scenario, label, "once" if index == 0 else "superseded")

    def _clarity_salesforce(self, scenario: ClarityScenario, index: int, event_id: str) -> None:
        """order.created (the only event of the order this flow takes): one Order with one item per line."""
        order_id = self.record.clarity_orders.get(scenario.n, "")
        orders = [o for o in self.salesforce.get("Order", []) if o.get("ExternalID__c") == order_id]
        label = "created" if index == 0 else f"status {scenario.statuses[index - 1]}"
        if len(orders) > 1:
            self._settle(CLARITY_SALESFORCE, event_id, scenario, label, "duplicated", f"{len(orders)} Orders")
            return
        if not orders:
            self._settle(CLARITY_SALESFORCE, event_id, scenario, label, "missing", "no Order")
            return
        items = [i for i in self.salesforce.get("OrderItem", []) if i.get("OrderId") == orders[0]["Id"]]
        # what the shopper bought, or what the poison event (a sample) says was bought
        sent = (clarity_poison_event(scenario, self.record.config.seed)["data"] if scenario.poison
                else _clarity_order_input(scenario))
        lines = len(sent["lineItems"])
        self._settle(CLARITY_SALESFORCE, event_id, scenario, label, "once" if len(items) == lines else "wrong",
                     f"{len(items)} OrderItems for {lines} lines")

    def _clarity_status_kept(self, scenario: ClarityScenario) -> None:
        """An echo of Switchyard's own write must not change the Clarity order back."""
        order_id = self.record.clarity_orders.get(scenario.n)
        order = self.clarity_orders.get(str(order_id))
        expected = (scenario.statuses or ("pending",))[-1]
        if order is not None and order["status"] != expected:
            what = f"{_describe(scenario)}: Clarity status {order['status']}, the admin set {expected}"
            self.defects.append(Defect("wrong", STREAK_CLARITY, what, self._sequence(scenario),
                                       self._evidence(scenario)))
            self._add(STREAK_CLARITY, f"clarity-order-{order_id}", scenario.n, "status kept", "wrong",
                      f"written back: {order['status']}")

    # --- QuickBooks → nopCommerce ------------------------------------------------------------------

    def _stock(self) -> int:
        """Per chaos item, the last quantity set in QuickBooks must be nopCommerce's stock; every event the
        stock worker saw is classified by its logged outcome."""
        items = {str(item["Id"]): item for item in self.qbo["items"]}
        touched = {s.item for s in self.record.scenarios
                   if isinstance(s, StockScenario) and s.n in self.record.sent_scenarios}
        seen = {event_id for (flow, event_id) in self.outcomes if flow == STOCK_FLOW}
        seen |= {event_id for (flow, event_id) in self.before if flow == STOCK_FLOW}
        mismatched = set()
        for item in range(STOCK_ITEMS):
            if item not in touched:
                continue
            qbo_qty = Decimal(str(items[self.record.stock_item_ids[item]].get("QtyOnHand")))
            shop_qty = Decimal(str(self.stock.get(stock_sku(item))))
            if qbo_qty != shop_qty:
                mismatched.add(item)
                scenario = next(s for s in reversed(self.record.scenarios) if isinstance(s, StockScenario)
                                and s.item == item and s.n in self.record.sent_scenarios)
                item_id = self.record.stock_item_ids[item]
                letters = [lt for lt in self.record.letters_after_redrive
                           if lt.flow == STOCK_FLOW and lt.entity_id == item_id]
                bucket = "dead_lettered" if letters else "lost" if self.settled else "unsettled"
                reason = letters[0].reason if letters else f"nopCommerce stock {shop_qty}, QuickBooks {qbo_qty}"
                self._add(STOCK_FLOW, f"stock-{stock_sku(item)}", scenario.n, "stock", bucket, reason)
                if bucket == "lost":
                    self.defects.append(Defect("lost", STOCK_FLOW, f"{stock_sku(item)}: nopCommerce {shop_qty}, "
                                               f"QuickBooks {qbo_qty}", self._sequence(scenario),
                                               self._evidence(scenario)))
        for event_id in sorted(seen):
            key = (STOCK_FLOW, event_id)
            logged = [o for o in self.outcomes.get(key, []) if o != "duplicate"]
            if key in self.after:
                bucket, reason = "dead_lettered", self.after[key].reason
            elif key in self.before:
                bucket, reason = "delivered_after_redrive", self.before[key].reason
            elif any(o in ("stale", "unchanged") for o in logged):
                bucket, reason = "dropped", f"{logged[0]}: the item's newer quantity was applied"
            else:
                bucket, reason = "delivered_once", ""
            self._add(STOCK_FLOW, event_id, -1, "item change", bucket, reason)
        return self.record.stock_notifications

    # --- helpers -----------------------------------------------------------------------------------

    def _boxes(self, key: str, ghost_prefix: str) -> list[dict[str, Any]]:
        ghosts = [b for b in self.unkeyed if str(b.get("name", "")).startswith(ghost_prefix)]
        return [*self.boxes_by_key.get(key, []), *ghosts]

    def _sequence(self, scenario: Any) -> list[str]:
        steps = []
        for delivery in self.record.deliveries:
            if delivery.scenario != scenario.n:
                continue
            if isinstance(scenario, NopScenario):
                change = scenario.changes[delivery.index]
                what = f"{change.type} (status {change.order_status}, payment {change.payment_status}) " \
                       f"at {scenario.timestamp(change)}"
            elif isinstance(scenario, ClarityScenario):
                what = "order.created" if delivery.index == 0 else \
                    f"order.status_changed → {scenario.statuses[delivery.index - 1]}"
                what += f" at {self.record.clarity_event_times.get(delivery.event_id, '?')}"
            else:
                what = "item"
            outcomes = {flow: self.outcomes.get((flow, delivery.event_id), []) for flow in delivery.flows}
            steps.append(f"{what} id={delivery.event_id} [{delivery.mode}] → HTTP {delivery.status}; "
                         f"worker: {outcomes}")
        if isinstance(scenario, StockScenario):
            steps.append(f"QuickBooks quantity set to {list(scenario.quantities)} "
                         f"{'in one second' if scenario.same_second else 'a second apart'}")
        for letter in self.record.letters_before_redrive:
            if any(letter.event_id == d.event_id for d in self.record.deliveries if d.scenario == scenario.n):
                steps.append(f"dead letter {letter.flow}: {letter.reason}: {letter.message[:160]}")
        return steps

    def _evidence(self, scenario: Any) -> list[str]:
        """The vendor faults injected into requests about this order (matched by its number or id)."""
        if isinstance(scenario, NopScenario):
            needles = [str(scenario.number), scenario.guid]
        elif isinstance(scenario, ClarityScenario):
            needles = [self.record.clarity_orders.get(scenario.n, "?")]
        else:
            needles = [self.record.stock_item_ids.get(scenario.item, "?"), stock_sku(scenario.item)]
        keys = [b["key"] for n in needles for b in self.boxes_by_key.get(n, [])]
        found = []
        for sandbox, _, kind, method, path, body in self.record.injected_log:
            text = f"{path} {body}"
            if any(needle in text for needle in (*needles, *keys)):
                found.append(f"{sandbox}: {kind} on {method} {path} {body[:100]}")
        return found


def _letters_by_event(letters: list[Letter]) -> dict[tuple[str, str], Letter]:
    return {(letter.flow, str(letter.event_id)): letter for letter in letters if letter.event_id}


def _template(scenario: NopScenario) -> dict[str, Any]:
    return json.loads(json.dumps(nop_template(scenario.template)), parse_float=Decimal)["data"]


def _nop_creates_deal(scenario: NopScenario) -> bool:
    """The nopcommerce-to-streak mapping's rule: a company, or a total of at least 100."""
    data = _template(scenario)
    return bool(data["Customer"].get("Company")) or data["Order"]["OrderTotal"] >= 100


def _expected_total(scenario: NopScenario) -> Decimal:
    """What the customer paid, in the document's currency: OrderTotal at the order's CurrencyRate, to the cent
    (the chaos orders keep their template's lines and totals)."""
    order = _template(scenario)["Order"]
    rate = Decimal(str(order.get("CurrencyRate", 1))) if order.get("CustomerCurrencyCode", "USD") != "USD" else 1
    return (Decimal(str(order["OrderTotal"])) * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _currency(doc: dict[str, Any]) -> str:
    return str((doc.get("CurrencyRef") or {}).get("value", ""))


def _ghosts(boxes: list[dict[str, Any]]) -> int:
    return sum(1 for b in boxes if not (b.get("fields") or {}).get(ORDER_KEY_FIELD))


def _describe(scenario: Any) -> str:
    if isinstance(scenario, NopScenario):
        extra = f", poison {scenario.poison}" if scenario.poison else ""
        return f"nopCommerce order {scenario.number} ({scenario.template}{extra})"
    if isinstance(scenario, ClarityScenario):
        extra = f", poison {scenario.poison}" if scenario.poison else ""
        return f"Clarity scenario {scenario.n} ({scenario.template}{extra}, statuses {list(scenario.statuses)})"
    return f"stock scenario {scenario.n} ({stock_sku(scenario.item)})"
