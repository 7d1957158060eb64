"""``make chaos-sync``: people work in Clarity and in Streak at the same time; does everything converge?

Shoppers place orders; then admins change order statuses and customers edit their profiles in
Clarity while reps move boxes and edit contacts in Streak, all at once. Every webhook either system
fires goes through both flows' workers as deployed (FlowWorker, idempotency, retries, the pair
records, the echo ledger), but delivered the way real senders do: duplicated, reordered, in bursts,
some late (after the echo window), while both systems' APIs fail now and then (503, 429, and writes
carried out after the client gave up). After draining, every pair is compared:

- diverged: pairs whose two systems disagree on a synced field (must be 0);
- lost human edits: fields whose final value is not the one the rule says must win (must be 0):
  the latest human change to a field, by change time, in either system; a master field ends with
  the master's latest value; at an equal millisecond, one system's two changes → the later one, one
  change per system → the later lifecycle stage (status) or Clarity's;
- writes per human change: Switchyard's writes into both systems ÷ the people's changes.

Deterministic for a seed (one clock for both sandboxes, one random generator, no threads), bounded in
time. ``--small`` runs in CI (tests/e2e/test_chaos_sync.py).

    python -m switchyard_local.chaos_sync [--small] [--seed N] [--orders N] [--actions N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from switchyard.catalog import load_catalog
from switchyard.drops import InMemoryDropLog
from switchyard.echoes import InMemoryEchoLedger
from switchyard.entity_state import InMemoryEntityState
from switchyard.events import FlowEvent, flow_message
from switchyard.pairs.clarity_streak import ClarityStreakPairs
from switchyard.sync import InMemoryPairStore
from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
from switchyard.systems.clarity.target import ClarityTarget
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard.systems.streak.deal_mapping import load_deal_mapping
from switchyard.systems.streak.deals import StreakDealTarget
from switchyard.systems.streak.webhooks import change_time, delivery_event_id
from switchyard.worker import DeadLetter, FlowWorker, RetryLater

from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

START = 1_795_000_000.0
STATUSES = ("pending", "processing", "shipped")  # the statuses a person can move freely between
STAGE_OF = {"pending": "5001", "processing": "5002", "shipped": "5002", "delivered": "5003", "cancelled": "5004",
            "refunded": "5004"}
REP_STAGES = ("5001", "5002")
LIFECYCLE = ("5001", "5002", "5003", "5004")
MASTER = {"email": "clarity", "phone": "clarity"}  # the mapping documents' master-data rules
FIRST_NAMES = ("Ada", "Bo", "Cleo", "Dev", "Eli", "Fay", "Gus", "Ines", "Jo", "Kai")
LAST_NAMES = ("Abara", "Berg", "Cruz", "Dahl", "Eze", "Fox", "Gray", "Holm", "Ito", "Jung")
SYNCED_STREAK_EVENTS = ("BOX_CHANGE_STAGE", "CONTACT_UPDATE")


@dataclass(frozen=True)
class Settings:
    orders: int = 200
    actions: int = 1200
    seed: int = 7
    fault_rate: float = 0.06  # per API request while people work: 503, 429 or a write answered too late
    duplicate_rate: float = 0.1  # a webhook delivered twice
    late_rate: float = 0.05  # a webhook held back past the echo window
    burst: int = 4  # webhooks fired together are delivered together (up to this many)
    time_limit_seconds: float = 600.0


SMALL = Settings(orders=40, actions=240)


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FaultyTransport(httpx.BaseTransport):
    """A vendor API as Switchyard's client sees it: sometimes 503 or 429 before anything happens, sometimes a
    write carried out whose answer never arrives (the client times out). Counts Switchyard's writes."""

    def __init__(self, inner: httpx.BaseTransport, rng: random.Random, stats: Stats, system: str) -> None:
        self.inner, self.rng, self.stats, self.system = inner, rng, stats, system
        self.fault_rate = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        write = request.method in ("POST", "PATCH", "PUT") and "/oauth/" not in request.url.path
        if self.fault_rate and self.rng.random() < self.fault_rate:
            kind = self.rng.choice(("503", "429", "late") if write else ("503", "429"))
            self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
            if kind == "503":
                return httpx.Response(503, json={"error": "unavailable"}, request=request)
            if kind == "429":
                return httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "slow down"},
                                      request=request)
            self.stats.writes[self.system] = self.stats.writes.get(self.system, 0) + 1
            self.inner.handle_request(request).read()  # carried out ...
            raise httpx.ReadTimeout("the answer came after the client gave up", request=request)  # ... unanswered
        if write:
            self.stats.writes[self.system] = self.stats.writes.get(self.system, 0) + 1
        return self.inner.handle_request(request)


@dataclass
class Stats:
    writes: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0
    duplicates: int = 0
    late: int = 0


@dataclass
class Message:
    flow: str
    body: str
    due: float  # clock time before which it is not delivered
    receive_count: int = 1


@dataclass(frozen=True)
class Change:
    """A person's change of one synced field, as the pair's common value."""

    pair: str  # "order:<id>" or "customer:<id>"
    field: str
    side: str
    value: Any
    at_ms: int
    seq: int


@dataclass
class Report:
    seed: int
    entities: int
    human_actions: int
    human_changes: int
    diverged: int
    lost_human_edits: int
    switchyard_writes: int
    writes_per_human_change: float
    dead_letters: int
    redriven: int
    dead_letter_reasons: dict[str, int]
    drops: dict[str, int]
    faults: dict[str, int]
    deliveries: int
    duplicates_delivered: int
    late_delivered: int
    seconds: float
    problems: list[str]

    def to_text(self) -> str:
        return "\n".join([
            f"chaos-sync (seed {self.seed}): {self.entities} entities (orders and customers, each a Clarity ⇄ "
            f"Streak pair), {self.human_actions} human actions",
            f"  webhooks delivered  {self.deliveries} ({self.duplicates_delivered} duplicates, "
            f"{self.late_delivered} after the echo window)",
            f"  API faults          {', '.join(f'{n} {k}' for k, n in sorted(self.faults.items())) or 'none'}",
            f"  dropped             {', '.join(f'{n} {k}' for k, n in sorted(self.drops.items())) or 'none'}",
            f"  dead-lettered       {self.redriven} ("
            f"{', '.join(f'{n} {k}' for k, n in sorted(self.dead_letter_reasons.items())) or 'none'}), "
            f"redriven once: {self.dead_letters} left",
            f"  diverged            {self.diverged}   (must be 0)",
            f"  lost human edits    {self.lost_human_edits}   (must be 0)",
            f"  writes per human change  {self.writes_per_human_change:.2f} "
            f"({self.switchyard_writes} writes for {self.human_changes} changes)",
            f"  took {self.seconds:.1f} s",
            *(f"  ! {problem}" for problem in self.problems[:20]),
        ])


class ChaosSync:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.clock = Clock()
        self.stats = Stats()
        self.clarity = ClaritySandbox(clock=self.clock)
        self.streak = StreakSandbox(pipeline=DEMO_PIPELINE, clock=self.clock)
        self.streak.on_fire = self._streak_fired
        self._clarity_taken = 0
        self._streak_fired_now: list[tuple[str, dict[str, Any]]] = []
        self.queue: list[Message] = []
        self.dead_letters: list[DeadLetter] = []
        self.changes: list[Change] = []
        self.actions = 0
        self.redriven = 0
        self.dead_letter_reasons: dict[str, int] = {}
        self._seq = 0
        self.customers: list[str] = []
        self.orders: list[str] = []
        self.boxes: dict[str, str] = {}  # order id -> box key
        self.contacts: dict[str, str] = {}  # customer id -> contact key
        self.clarity_transport = FaultyTransport(httpx.WSGITransport(app=self.clarity.wsgi_app), self.rng,
                                                 self.stats, "clarity")
        self.streak_transport = FaultyTransport(httpx.WSGITransport(app=self.streak.wsgi_app), self.rng,
                                                self.stats, "streak")
        clarity = ClarityClient(ClarityConnection.from_secret({"base_url": "http://clarity.test",
                                                               "api_key": self.clarity.api_key}),
                                transport=self.clarity_transport)
        streak = StreakClient(StreakConnection(base_url="http://streak.test", api_key=self.streak.api_key,
                                               team_key=self.streak.team_key, pipeline_key=DEMO_PIPELINE.key),
                              transport=self.streak_transport)
        catalog = load_catalog()
        forward_flow, backward_flow = catalog.flows["clarity-to-streak"], catalog.flows["streak-to-clarity"]
        assert forward_flow.two_way is not None
        deals = load_deal_mapping(forward_flow.mapping_document)
        sync = load_clarity_sync_mapping(backward_flow.mapping_document)
        state, ledger = InMemoryEntityState(), InMemoryEchoLedger(clock=self.clock)
        self.pair_store = InMemoryPairStore()
        self.pairs = pairs = ClarityStreakPairs(deals, sync, clarity, streak, state, self.pair_store, ledger,
                                   echo_window_seconds=forward_flow.two_way.echo_window_seconds, clock=self.clock)
        self.echo_window = forward_flow.two_way.echo_window_seconds
        self.drops = InMemoryDropLog()
        self.workers = {
            flow.name: FlowWorker(flow=flow, target=target, dead_letters=self, delay=lambda _r, _s: None,
                                  max_receive_count=flow.worker.max_receive_count,
                                  make_idempotent=_idempotent(), sleep=lambda _s: None, drops=self.drops)
            # the Streak target's settle delay after an unanswered create runs on the harness's clock too
            for flow, target in ((forward_flow, StreakDealTarget(deals, streak, state, ledger, pairs=pairs,
                                                                 clock=self.clock)),
                                 (backward_flow, ClarityTarget(sync, pairs)))
        }

    # DeadLetters
    def send(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)

    # --- webhooks ------------------------------------------------------------------------------------

    def _streak_fired(self, event: str, obj: dict[str, Any]) -> None:
        if event in SYNCED_STREAK_EVENTS:
            self._streak_fired_now.append((event, obj))

    def _collect_webhooks(self) -> None:
        """Everything both systems fired since the last look becomes queue messages, as ingest makes them."""
        received = _iso(self.clock.now)
        fresh = self.clarity.outbox_undelivered[self._clarity_taken:]
        self._clarity_taken += len(fresh)
        bodies = [("clarity-to-streak", flow_message(flow="clarity-to-streak", event_id=e.event_id, source="clarity",
                                                     event_type=e.type, timestamp=e.payload["timestamp"],
                                                     received_at=received, body=e.body.decode()))
                  for e in fresh]
        fired, self._streak_fired_now = self._streak_fired_now, []
        for name, obj in fired:
            envelope = {"type": name, "timestamp": change_time(obj), "data": obj}
            bodies.append(("streak-to-clarity", flow_message(
                flow="streak-to-clarity", event_id=delivery_event_id(name, obj), source="streak", event_type=name,
                timestamp=envelope["timestamp"], received_at=received, body=json.dumps(envelope))))
        for flow, body in bodies:
            due = self.clock.now
            if self.rng.random() < self.settings.late_rate:
                due += self.echo_window + self.rng.uniform(1, 600)
                self.stats.late += 1
            self.queue.append(Message(flow, body, due))
            if self.rng.random() < self.settings.duplicate_rate:
                self.queue.append(Message(flow, body, due + self.rng.uniform(0, 30)))

    def _deliver_some(self) -> bool:
        """Deliver a burst of due messages picked at random (reordered); False when none is due."""
        due = [m for m in self.queue if m.due <= self.clock.now]
        if not due:
            return False
        for message in self.rng.sample(due, k=min(len(due), self.rng.randint(1, self.settings.burst))):
            self.queue.remove(message)
            self._deliver(message)
        return True

    def _deliver(self, message: Message) -> None:
        self.stats.deliveries += 1
        try:
            result = self.workers[message.flow].handle(message.body, receive_count=message.receive_count,
                                                       receipt_handle="-")
        except RetryLater as later:
            # visible again after the delay it asked for (SQS visibility timeout)
            self.queue.append(Message(message.flow, message.body, self.clock.now + min(later.delay_seconds, 120),
                                      message.receive_count + 1))
            return
        if result is None:
            return
        outcome = "duplicate" if result.get("duplicate") else str(result.get("outcome"))
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        self.stats.duplicates += outcome == "duplicate"
        self._collect_webhooks()

    # --- people ----------------------------------------------------------------------------------------

    def _note(self, pair: str, field_name: str, side: str, value: Any, at_ms: int) -> None:
        self._seq += 1
        self.changes.append(Change(pair, field_name, side, value, at_ms, self._seq))

    def _place_order(self, number: int) -> None:
        customer_id = f"C-{number}"
        first, last = self.rng.choice(FIRST_NAMES), f"{self.rng.choice(LAST_NAMES)}{number}"
        order = json.loads(json.dumps(DEMO_ORDERS[0]))
        order.update(customerId=customer_id, status=self.rng.choice(STATUSES))
        order["customer"] = {"customerId": customer_id, "firstName": first, "lastName": last,
                             "email": f"buyer{number}@shop{number}.example", "phone": f"+1 555 {number:04d}",
                             "company": None}
        order["shippingAddress"] = {**order["shippingAddress"], "company": None}
        placed = self.clarity.place_order(order)
        self.orders.append(placed["orderId"])
        self.customers.append(customer_id)
        at_ms = _ms(self.clock.now)
        self._note(f"order:{placed['orderId']}", "status", "clarity", STAGE_OF[placed["status"]], at_ms)
        for name, value in _clarity_values(self.clarity.get_customer(customer_id)).items():
            self._note(f"customer:{customer_id}", name, "clarity", value, at_ms)

    def _act(self) -> None:
        """One person's change, in either system, on an order or customer (only on what they can see)."""
        self.actions += 1
        number = self.actions
        choice = self.rng.random()
        if choice < 0.25:
            order_id = self.rng.choice(self.orders)
            status = self.rng.choice([s for s in STATUSES if s != self.clarity.get_order(order_id)["status"]])
            self.clarity.set_order_status(order_id, status)
            self._note(f"order:{order_id}", "status", "clarity", STAGE_OF[status], _ms(self.clock.now))
        elif choice < 0.5:
            customer_id = self.rng.choice(self.customers)
            name, value = self.rng.choice([
                ("firstName", f"{self.rng.choice(FIRST_NAMES)}{number}"), ("lastName", f"Last{number}"),
                ("phone", f"+1 556 {number:04d}"), ("email", f"changed{number}@mail{number}.example")])
            self.clarity.update_customer(customer_id, **{name: value})
            field_name = {"firstName": "first_name", "lastName": "last_name"}.get(name, name)
            self._note(f"customer:{customer_id}", field_name, "clarity", value, _ms(self.clock.now))
        elif choice < 0.75:
            boxes = self._boxes()
            if not boxes:
                return
            order_id = self.rng.choice(sorted(boxes))
            box = self.streak._state.boxes[boxes[order_id]]  # what the rep sees
            stage = self.rng.choice([s for s in REP_STAGES if s != box["stageKey"]])
            moved = self.streak.move_box(box["key"], stage)
            self._note(f"order:{order_id}", "status", "streak", stage, moved["lastUpdatedTimestamp"])
        else:
            contacts = self._contacts()
            if not contacts:
                return
            customer_id = self.rng.choice(sorted(contacts))
            name, field_name, value = self.rng.choice([
                ("givenName", "first_name", f"{self.rng.choice(FIRST_NAMES)}{number}"),
                ("familyName", "last_name", f"Rep{number}"),
                ("phoneNumbers", "phone", [f"+1 557 {number:04d}"]),
                ("emailAddresses", "email", [f"rep{number}@crm{number}.example"])])
            edited = self.streak.edit_contact(contacts[customer_id], **{name: value})
            canonical = value[0] if isinstance(value, list) else value
            self._note(f"customer:{customer_id}", field_name, "streak", canonical, edited["lastUpdatedTimestamp"])

    def _boxes(self) -> dict[str, str]:
        return {order_id: key for order_id in self.orders
                if (key := self.pair_store.load("clarity+streak:order", order_id)[0].get("keys", {}).get("streak"))}

    def _contacts(self) -> dict[str, str]:
        return {customer_id: key for customer_id in self.customers
                if (key := self.pair_store.load("clarity+streak:customer", customer_id)[0]
                    .get("keys", {}).get("streak"))}

    # --- the run --------------------------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        deadline = started + self.settings.time_limit_seconds
        problems: list[str] = []
        self.clarity_transport.fault_rate = self.streak_transport.fault_rate = self.settings.fault_rate
        for number in range(1, self.settings.orders + 1):  # shoppers, while earlier orders sync
            self._place_order(number)
            self._tick()
            self._collect_webhooks()
            self._deliver_some()
        while self.actions < self.settings.actions and time.monotonic() < deadline:
            self._tick()
            if self.rng.random() < 0.45:
                self._act()
                self._collect_webhooks()
            else:
                self._deliver_some()
        # drain: the APIs recover, late webhooks arrive, retries come due
        self.clarity_transport.fault_rate = self.streak_transport.fault_rate = 0.0
        self._drain(deadline)
        # as an operator would (`switchyard dlq redrive`): dead letters go back through their flow once
        self.redriven = len(self.dead_letters)
        for letter in self.dead_letters:
            self.dead_letter_reasons[letter.reason] = self.dead_letter_reasons.get(letter.reason, 0) + 1
            self.queue.append(Message(letter.flow, letter.original, self.clock.now))
        self.dead_letters = []
        self._drain(deadline)
        if self.queue:
            problems.append(f"time limit: {len(self.queue)} webhooks still queued")
        return self._report(time.monotonic() - started, problems)

    def _drain(self, deadline: float) -> None:
        while self.queue and time.monotonic() < deadline:
            if not self._deliver_some():
                self.clock.now = min(m.due for m in self.queue)

    def _tick(self) -> None:
        # people and webhooks in the same millisecond are common: a third of the steps take no time
        self.clock.now += self.rng.choice((0.0, 0.0, 0.001, 0.05, 0.4, 1.0, 3.0))

    # --- the verdict ------------------------------------------------------------------------------------

    def _report(self, seconds: float, problems: list[str]) -> Report:
        expected = _expected(self.changes)
        diverged = lost = 0
        boxes, contacts = self._boxes(), self._contacts()
        for order_id in self.orders:
            clarity_stage = STAGE_OF[self.clarity.get_order(order_id)["status"]]
            box_key = boxes.get(order_id)
            streak_stage = self.streak._state.boxes[box_key]["stageKey"] if box_key else None
            if clarity_stage != streak_stage:
                diverged += 1
                problems.append(f"order {order_id}: Clarity {clarity_stage}, Streak {streak_stage}")
            want = expected.get((f"order:{order_id}", "status"))
            if want is not None and streak_stage == clarity_stage and clarity_stage != want:
                lost += 1
                problems.append(f"order {order_id}: both {clarity_stage}, the latest change said {want}")
        for customer_id in self.customers:
            clarity_values = _clarity_values(self.clarity.get_customer(customer_id))
            contact_key = contacts.get(customer_id)
            streak_values = _streak_values(self.streak._state.contacts[contact_key]) if contact_key else {}
            if clarity_values != streak_values:
                diverged += 1
                problems.append(f"customer {customer_id}: Clarity {clarity_values}, Streak {streak_values}")
            for name, value in clarity_values.items():
                want = expected.get((f"customer:{customer_id}", name))
                if want is not None and streak_values.get(name) == value and value != want:
                    lost += 1
                    problems.append(f"customer {customer_id} {name}: both {value!r}, the latest change said {want!r}")
        human_changes = self.actions
        # the sync's writes into either system (creating deals for new orders is not a reaction to a change)
        sync_writes = sum(self.pairs.orders.writes_made.values()) + sum(self.pairs.customers.writes_made.values())
        drops: dict[str, int] = {}
        for flow in self.workers:
            for drop in self.drops.list(flow):
                drops[drop.reason] = drops.get(drop.reason, 0) + 1
        return Report(
            seed=self.settings.seed, entities=len(self.orders) + len(self.customers), human_actions=self.actions,
            human_changes=human_changes, diverged=diverged, lost_human_edits=lost, switchyard_writes=sync_writes,
            writes_per_human_change=sync_writes / human_changes if human_changes else 0.0,
            dead_letters=len(self.dead_letters), redriven=self.redriven,
            dead_letter_reasons=dict(self.dead_letter_reasons), drops=drops, faults=dict(self.stats.faults),
            deliveries=self.stats.deliveries, duplicates_delivered=self.stats.duplicates,
            late_delivered=self.stats.late, seconds=seconds,
            problems=problems + [f"dead letter {d.flow} {d.event_id}: {d.reason}: {d.message}"
                                 for d in self.dead_letters])


def _idempotent() -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Like Powertools' idempotent_function: a result per flow + event id; failures are not stored."""
    def wrap(func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}

        def call(*, key: dict[str, str], event: FlowEvent) -> dict[str, Any]:
            fingerprint = json.dumps(key, sort_keys=True)
            if fingerprint in stored:
                return {**stored[fingerprint], "duplicate": True}
            stored[fingerprint] = result = func(key=key, event=event)
            return result

        return call

    return wrap


def _expected(changes: list[Change]) -> dict[tuple[str, str], Any]:
    """What each field must end with: the rule the README promises, applied to what people did."""
    winners: dict[tuple[str, str], Change] = {}
    for change in changes:  # in the order people made them
        key = (change.pair, change.field)
        master = MASTER.get(change.field)
        if master is not None and change.side != master:
            continue  # a master field ends with the master's value
        current = winners.get(key)
        if current is None or change.at_ms > current.at_ms:
            winners[key] = change
        elif change.at_ms == current.at_ms:
            if change.side == current.side:
                winners[key] = change  # the same system's later change
            elif (change.field == "status" and change.value in LIFECYCLE and current.value in LIFECYCLE
                  and change.value != current.value):
                if LIFECYCLE.index(change.value) > LIFECYCLE.index(current.value):
                    winners[key] = change
            elif change.side == "clarity":
                winners[key] = change
    return {key: change.value for key, change in winners.items()}


def _clarity_values(customer: dict[str, Any]) -> dict[str, Any]:
    return {"email": str(customer["email"]).strip().lower(), "phone": customer.get("phone"),
            "first_name": customer["firstName"], "last_name": customer["lastName"]}


def _streak_values(contact: dict[str, Any]) -> dict[str, Any]:
    return {"email": (contact.get("emailAddresses") or [None])[0], "phone": (contact.get("phoneNumbers") or [None])[0],
            "first_name": contact.get("givenName"), "last_name": contact.get("familyName")}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos-sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help=f"{SMALL.orders} orders, {SMALL.actions} actions (CI)")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--orders", type=int, default=None)
    parser.add_argument("--actions", type=int, default=None)
    parser.add_argument("--time-limit", type=float, default=Settings.time_limit_seconds)
    args = parser.parse_args(argv)
    base = SMALL if args.small else Settings()
    settings = Settings(orders=args.orders or base.orders, actions=args.actions or base.actions, seed=args.seed,
                        time_limit_seconds=args.time_limit)
    report = ChaosSync(settings).run()
    print(report.to_text())
    return 0 if report.diverged == 0 and report.lost_human_edits == 0 and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
