"""Drive a chaos plan through the local stack: waves of deliveries under vendor faults, drain, faults off,
one redrive of every DLQ, drain again; then hand everything to ``reconcile``."""

from __future__ import annotations

import contextlib
import copy
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from switchyard_local.chaos.plan import (
    SANDBOXES,
    STOCK_ITEMS,
    UNKNOWN_SKU,
    ChaosConfig,
    ClarityScenario,
    NopScenario,
    Scenario,
    Send,
    StockScenario,
    build,
    nop_template,
    stock_sku,
)
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.clarity import WebhookEvent as ClarityWebhookEvent
from switchyard_local.sandboxes.faults import FaultPlan
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

EXECUTION_EVENTS_SECONDS = 2.0  # how often ended executions are looked for (each look lists them all)
DLQ_HOLD_SECONDS = 600  # letters read from a DLQ stay invisible this long (they are counted once)


@dataclass
class Delivery:
    """One POST through the front door and its answer."""

    scenario: int
    index: int  # the scenario's change (0 = the order itself)
    mode: str  # first, same_id, new_id, or "echo" for a Clarity event that was not the run's own
    source: str
    event_id: str
    status: int
    flows: tuple[str, ...] = ()
    answer: str = ""

    @property
    def accepted(self) -> bool:
        return self.status in (200, 202)


@dataclass
class Letter:
    flow: str
    event_id: str | None
    reason: str
    error_class: str
    message: str
    entity_id: str | None = None  # data.id of the event (QuickBooks notifications: the Item)


@dataclass
class RunRecord:
    """Everything the run did and saw, for ``reconcile``."""

    config: ChaosConfig
    scenarios: list[Scenario]
    deliveries: list[Delivery] = field(default_factory=list)
    sent_scenarios: set[int] = field(default_factory=set)
    clarity_orders: dict[int, str] = field(default_factory=dict)  # scenario -> Clarity order id
    clarity_event_times: dict[str, str] = field(default_factory=dict)  # event id -> its timestamp
    stock_item_ids: dict[int, str] = field(default_factory=dict)  # chaos item -> QuickBooks Item id
    letters_before_redrive: list[Letter] = field(default_factory=list)
    letters_after_redrive: list[Letter] = field(default_factory=list)
    redriven: int = 0
    stock_notifications: int = 0  # Item changes QuickBooks' webhooks delivered (answered 200)
    settled: bool = False
    settled_after_redrive: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    injected: dict[str, dict[str, int]] = field(default_factory=dict)  # sandbox -> fault kind -> count
    # (sandbox, time, kind, method, path, start of the body) of every injected vendor fault
    injected_log: list[tuple[str, float, str, str, str, str]] = field(default_factory=list)


class FrozenClock:
    """A sandbox clock that can be held on one second (same-second changes) or run with real time."""

    def __init__(self) -> None:
        self.held: float | None = None

    def __call__(self) -> float:
        return time.time() if self.held is None else self.held


class ChaosRun:
    def __init__(self, stack: LocalStack, config: ChaosConfig, out: TextIO = sys.stdout) -> None:
        self.stack = stack
        self.config = config
        self.out = out
        self.record = RunRecord(config=config, scenarios=build(config))
        self.http = httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local")
        self._rng = random.Random(f"deliveries:{config.seed}")
        self._started = 0.0
        self._clarity_clock = FrozenClock()
        self._qbo_clock = FrozenClock()
        self._paused, self._stop = threading.Event(), threading.Event()
        self._pollers: list[threading.Thread] = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    # --- the run -------------------------------------------------------------------------------

    def run(self, started: float | None = None) -> RunRecord:
        self._started = started if started is not None else time.monotonic()
        try:
            return self._run()
        finally:
            self._stop_pollers()
            self._clarity.clock = self.stack.quickbooks.clock = time.time

    def _run(self) -> RunRecord:
        budget, record = self.config.max_seconds, self.record
        self._seed_stock_items()
        self._clarity.clock = self._clarity_clock
        self.stack.quickbooks.clock = self._qbo_clock
        self._faults_on()
        self._start_pollers()
        waves = [record.scenarios[i:i + self.config.wave_size]
                 for i in range(0, len(record.scenarios), self.config.wave_size)]
        for number, wave in enumerate(waves):
            if self.elapsed() > 0.55 * budget:
                self.say(f"  time bound: {len(record.scenarios) - len(record.sent_scenarios)} scenarios not sent")
                break
            # the workers pause while a wave is sent: in-process functions take turns, and a worker
            # sleeping out a retry would hold the front door for its whole backoff
            with self._pollers_paused():
                self._send_wave(wave, number)
            self._wait_until_shallow(deadline=0.55 * budget)
            if number % 5 == 4 or number == len(waves) - 1:
                self.say(f"  sent {len(record.sent_scenarios)}/{len(record.scenarios)} scenarios, "
                         f"{len(record.deliveries)} deliveries, {self.elapsed():.0f} s")
        record.timings["sent"] = self.elapsed()
        record.settled = self._drain(deadline=0.75 * budget, with_faults=True)
        record.timings["drained_with_faults"] = self.elapsed()
        self._faults_off()
        record.settled = self._drain(deadline=0.8 * budget) and record.settled
        record.timings["drained"] = self.elapsed()
        record.letters_before_redrive, held = self._read_dead_letters()
        record.redriven = self._redrive(held)
        self.say(f"  faults off; {len(record.letters_before_redrive)} dead letters, redriven once: {record.redriven}")
        record.settled_after_redrive = self._drain(deadline=budget)
        record.timings["drained_after_redrive"] = self.elapsed()
        record.letters_after_redrive, _ = self._read_dead_letters()
        record.stock_notifications = sum(1 for d in self.stack.quickbooks.webhook_deliveries
                                         if d.get("outcome") == "delivered"
                                         for event in d["events"] if event.get("name") == "Item")
        return record

    # --- workers ---------------------------------------------------------------------------------

    def _start_pollers(self) -> None:
        """One poller per flow queue and one for ended executions, as each event source mapping polls on
        its own: a worker sleeping out a backoff or waiting on a held answer stalls only its own flow
        (with the stack's ``concurrent_functions``)."""
        def loop(poll: Callable[[], int], idle: float) -> None:
            while not self._stop.is_set():
                if self._paused.is_set() or not poll():
                    self._stop.wait(idle)

        polls: dict[str, tuple[Callable[[], int], float]] = {
            name: (flow.poller.poll_once, 0.1) for name, flow in self.stack.flows.items()}
        if self.stack.execution_events is not None:
            # each look lists every execution of every machine (moto filters by status in Python): every
            # 2 s, as EventBridge delivers within seconds, not between every batch of every queue
            polls["execution-events"] = (self.stack.execution_events.poll, EXECUTION_EVENTS_SECONDS)
        self._pollers = [threading.Thread(target=loop, args=poll, name=f"chaos-poller-{name}", daemon=True)
                         for name, poll in polls.items()]
        for thread in self._pollers:
            thread.start()

    def _stop_pollers(self) -> None:
        self._stop.set()
        for thread in self._pollers:
            thread.join(timeout=30)

    @contextlib.contextmanager
    def _pollers_paused(self) -> Iterator[None]:
        self._paused.set()
        try:
            yield
        finally:
            self._paused.clear()

    # --- faults ----------------------------------------------------------------------------------

    def _faults_on(self) -> None:
        vendor, config = self.config.vendor, self.config
        for number, name in enumerate(SANDBOXES):
            plan = FaultPlan(
                error_rate=vendor.error_rate if config.on("vendor_errors") else 0.0,
                error_status=(503, 500, 502, 503)[number],
                rate_limit_rate=(vendor.rate_limit_rate
                                 if config.on("rate_limits") and name not in vendor.no_rate_limits else 0.0),
                retry_after_seconds=1,
                timeout_rate=vendor.timeout_rate if config.on("timeouts") and name not in vendor.no_timeouts else 0.0,
                timeout_seconds=vendor.slow_seconds,
                late_answer_rate=(vendor.late_answer_rate
                                  if config.on("late_answers") and name not in vendor.no_late_answers else 0.0),
                late_answer_seconds=vendor.slow_seconds,
                slow_spared_paths=tuple(path for sandbox, path in vendor.slow_spared if sandbox == name),
                seed=config.seed * 10 + number,
            )
            self._sandbox(name).faults.set_plan(plan)

    def _faults_off(self) -> None:
        for name in SANDBOXES:
            injector = self._sandbox(name).faults
            self.record.injected[name] = dict(injector.injected_counts())
            self.record.injected_log.extend((name, *entry) for entry in injector.injected_log())
            injector.clear()

    @property
    def _clarity(self) -> ClaritySandbox:
        assert self.stack.clarity is not None  # built by LocalStack
        return self.stack.clarity

    def _sandbox(self, name: str) -> Any:
        return getattr(self.stack, name)

    # --- sending ---------------------------------------------------------------------------------

    def _send_wave(self, wave: list[Scenario], number: int) -> None:
        nop = [s for s in wave if isinstance(s, NopScenario)]
        clarity = [s for s in wave if isinstance(s, ClarityScenario)]
        stock = [s for s in wave if isinstance(s, StockScenario)]
        for scenario in nop:
            if scenario.poison != "invalid":
                # the shop has its orders, as they are once every change happened (webhooks follow changes)
                self.stack.seed_shop_order(self._nop_event(scenario, 0)["data"])
                last = scenario.changes[-1]
                statuses = [c.order_status for c in scenario.changes if c.type == "order.status_changed"]
                self.stack.nopcommerce.update_order(scenario.number, OrderStatusId=statuses[-1] if statuses else 10,
                                                    PaymentStatusId=last.payment_status)
        # every scenario's deliveries in its own order, the scenarios interleaved
        queue = [(s, send) for s in nop for send in s.sends]
        for scenario, send in _interleave(queue, self._rng):
            self._send_nop(scenario, send)
        self._send_clarity(clarity)
        for count in stock:
            self._set_stock(count)
        self.record.sent_scenarios.update(s.n for s in wave)

    def _nop_event(self, scenario: NopScenario, index: int) -> dict[str, Any]:
        change = scenario.changes[index]
        placed = nop_template(scenario.template)
        number, data = scenario.number, placed["data"]
        created = scenario.base_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        data["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=scenario.guid, CustomerId=number,
                             OrderStatusId=10, PaymentStatusId=scenario.changes[0].payment_status,
                             CreatedOnUtc=created)
        company = bool(data["Customer"].get("Company"))
        email = f"buyer{number}@chaos{number}.example" if company else f"shopper{number}@gmail.com"
        data["Customer"].update(Id=number, Email=email, LastName=f"Chaos{number}")
        if company:
            data["Customer"]["Company"] = data["BillingAddress"]["Company"] = f"Chaos Co {number}"
        data["BillingAddress"]["Email"] = email
        if scenario.poison == "unknown_sku":
            data["OrderItems"][0]["Product"]["Sku"] = UNKNOWN_SKU
        if scenario.poison == "invalid":
            del data["Customer"]["Email"]
            data["Order"]["OrderTotal"] = "a lot"
        timestamp = scenario.timestamp(change)
        if change.type == "order.placed":
            return {**placed, "timestamp": timestamp}
        order = {**data["Order"], "OrderStatusId": change.order_status, "PaymentStatusId": change.payment_status}
        if change.type == "order.paid":
            order["PaidDateUtc"] = timestamp
            return {"type": "order.paid", "timestamp": timestamp,
                    "data": {"Order": order, "Customer": data["Customer"]}}
        status = json.loads(sample("nop_status_processing"))
        status["data"]["Order"] = {key: order[key] for key in (
            "Id", "OrderGuid", "CustomOrderNumber", "OrderStatusId", "PaymentStatusId", "ShippingStatusId",
            "OrderTotal", "CustomerCurrencyCode", "CreatedOnUtc") if key in order}
        return {**status, "timestamp": timestamp}

    def _send_nop(self, scenario: NopScenario, send: Send) -> None:
        body = json.dumps(self._nop_event(scenario, send.index)).encode()
        event_id = scenario.event_id(send.index, send.mode, self.config.seed)
        self._post(scenario.n, send.index, send.mode, "nopcommerce", body, event_id)

    def _post(self, scenario: int, index: int, mode: str, source: str, body: bytes, event_id: str) -> Delivery:
        headers = signed_headers(self.stack.signing_secret, body, event_id=event_id)
        status, answer = post_webhook(self.http, source, body, headers)
        flows = tuple(answer.get("flows", ())) if isinstance(answer, dict) else ()
        delivery = Delivery(scenario=scenario, index=index, mode=mode, source=source, event_id=event_id,
                            status=status, flows=flows, answer="" if status in (200, 202) else json.dumps(answer)[:200])
        self.record.deliveries.append(delivery)
        return delivery

    def _send_clarity(self, scenarios: list[ClarityScenario]) -> None:
        """Shoppers and admins act in the Clarity sandbox while its webhooks are held back; then the held
        events are delivered in the plan's order (duplicates, new ids, out of order)."""
        if not scenarios:
            return
        clarity = self._clarity
        clarity.wait_for_webhooks(timeout=30)
        url = clarity.webhook_url
        clarity.webhook_url = None
        placed: dict[int, ClarityScenario] = {}
        try:
            for scenario in scenarios:
                if scenario.poison:
                    continue
                base = float(int(time.time()))
                self._clarity_clock.held = base
                order = clarity.place_order(_clarity_order_input(scenario))
                self.record.clarity_orders[scenario.n] = order["orderId"]
                placed[scenario.n] = scenario
                for status, same in zip(scenario.statuses, scenario.same_second, strict=True):
                    if not same:
                        self._clarity_clock.held = (self._clarity_clock.held or base) + 1
                    clarity.set_order_status(order["orderId"], status)
            held = clarity.outbox.undelivered
            clarity.outbox.clear()
        finally:
            self._clarity_clock.held = None
            clarity.webhook_url = url
        by_order: dict[str, list[ClarityWebhookEvent]] = {}
        own = {order_id: n for n, order_id in self.record.clarity_orders.items() if n in placed}
        for event in held:
            order_id = str(event.payload.get("data", {}).get("orderId", ""))
            if event.type.startswith("order.") and order_id in own:
                by_order.setdefault(order_id, []).append(event)
            else:  # not one of this wave's orders (an API write's event): delivered as Clarity would
                self._post_clarity(-1, 0, "echo", event)
        queue: list[tuple[Any, Any]] = []
        for scenario in scenarios:
            if scenario.poison:
                queue.append((scenario, None))
                continue
            events = by_order.get(self.record.clarity_orders[scenario.n], [])
            queue.extend((scenario, (send, events)) for send in scenario.sends if send.index < len(events))
        for scenario, item in _interleave(queue, self._rng):
            if item is None:
                self._send_clarity_poison(scenario)
                continue
            send, events = item
            event = events[send.index]
            if send.mode == "new_id":
                event = ClarityWebhookEvent(f"{event.event_id}-again", event.type, event.payload)
            self._post_clarity(scenario.n, send.index, send.mode, event)

    def _post_clarity(self, scenario: int, index: int, mode: str, event: ClarityWebhookEvent) -> None:
        self.record.clarity_event_times[event.event_id] = str(event.payload.get("timestamp"))
        self._post(scenario, index, mode, "clarity", event.body, event.event_id)

    def _send_clarity_poison(self, scenario: ClarityScenario) -> None:
        """An order event whose payment status Clarity's own validation would refuse (a newer Clarity, a
        plugin): the flow has no lookup entry for it."""
        event = clarity_poison_event(scenario, self.config.seed)
        order_id = str(event["data"]["orderId"])
        self.record.clarity_orders[scenario.n] = order_id
        event_id = f"msg_chaos{self.config.seed}_{order_id}"
        self.record.clarity_event_times[event_id] = str(event.get("timestamp"))
        self._post(scenario.n, 0, "first", "clarity", json.dumps(event).encode(), event_id)

    def _seed_stock_items(self) -> None:
        qbo, shop, realm = self.stack.quickbooks, self.stack.nopcommerce, self.stack.qbo_realm
        for item in range(STOCK_ITEMS):
            sku = stock_sku(item)
            created = qbo.seed_item(realm, f"Chaos stock item {item + 1}", sku, qty_on_hand=100, unit_price=1.0)
            self.record.stock_item_ids[item] = str(created["Id"])
            shop.seed_product(f"Chaos stock item {item + 1}", sku, 100, price=1.0)

    def _set_stock(self, scenario: StockScenario) -> None:
        base = float(int(time.time()))
        try:
            for number, quantity in enumerate(scenario.quantities):
                self._qbo_clock.held = base + (0 if scenario.same_second else number)
                self.stack.quickbooks.set_item_quantity(self.stack.qbo_realm,
                                                        self.record.stock_item_ids[scenario.item], quantity)
        finally:
            self._qbo_clock.held = None

    # --- waiting ---------------------------------------------------------------------------------

    def _depth(self) -> int:
        sqs, total = self.stack.client("sqs"), 0
        for flow in self.stack.flows.values():
            attributes = sqs.get_queue_attributes(QueueUrl=flow.queue_url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            total += sum(int(value) for value in attributes.values())
        return total

    def _wait_until_shallow(self, deadline: float) -> None:
        while self.elapsed() < deadline and self._depth() > self.config.shallow_depth:
            time.sleep(0.5)

    def _quiet(self) -> bool:
        stack = self.stack
        # ended executions are looked for here too: one that failed since the last look is not quiet
        ended = stack.execution_events.poll() if stack.execution_events is not None else 0
        return (ended == 0 and self._depth() == 0 and stack.streak.wait_for_webhooks(timeout=0)
                and self._clarity.wait_for_webhooks(timeout=0) and stack.quickbooks.wait_for_webhooks(timeout=0)
                and stack.running_executions() == 0)

    def _drain(self, deadline: float, with_faults: bool = False) -> bool:
        """Wait (the pollers run in the background) until nothing is queued, running or being sent,
        twice in a row a second apart; False if ``deadline`` (seconds of the run) came first."""
        calm, shown = 0, self.elapsed()
        while self.elapsed() < deadline:
            calm = calm + 1 if self._quiet() else 0
            if calm >= 2:
                return True
            if self.elapsed() - shown > 30:
                shown = self.elapsed()
                self.say(f"  draining{' (faults on)' if with_faults else ''}: {self._waiting()}, {shown:.0f} s")
            time.sleep(1.0)
        self.say(f"  time bound while draining: {self._waiting()}")
        return False

    def _waiting(self) -> str:
        """What the run still waits for: messages per flow queue, running executions (by name)."""
        sqs, queued = self.stack.client("sqs"), {}
        for name, flow in self.stack.flows.items():
            attributes = sqs.get_queue_attributes(QueueUrl=flow.queue_url, AttributeNames=["All"])["Attributes"]
            depth = sum(int(attributes.get(key, 0)) for key in (
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"))
            if depth:
                queued[name] = depth
        sfn, running = self.stack.client("stepfunctions"), []
        for arn in self.stack.state_machines.values():
            listed = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
            running += [e["name"] for e in listed]
        shown = ", ".join(running[:5]) + (f" and {len(running) - 5} more" if len(running) > 5 else "")
        return f"queued {queued or 0}, {len(running)} executions running{': ' + shown if running else ''}"

    # --- dead letters ------------------------------------------------------------------------------

    def _read_dead_letters(self) -> tuple[list[Letter], list[tuple[str, dict[str, Any]]]]:
        """Every letter of every DLQ, each read once: receiving hides it for ``DLQ_HOLD_SECONDS``, so
        paging cannot see a letter twice or stop early (a visibility-0 read can)."""
        sqs, letters, held = self.stack.client("sqs"), [], []
        for name, flow in self.stack.flows.items():
            for _ in range(10_000):
                messages = sqs.receive_message(QueueUrl=flow.dlq_url, MaxNumberOfMessages=10,
                                               VisibilityTimeout=DLQ_HOLD_SECONDS,
                                               AttributeNames=["All"]).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    letters.append(_letter(name, message["Body"]))
                    held.append((name, message))
        return letters, held

    def _redrive(self, held: list[tuple[str, dict[str, Any]]]) -> int:
        """``switchyard dlq redrive`` for every flow: each letter's original back to its queue, then deleted."""
        sqs = self.stack.client("sqs")
        for name, message in held:
            flow = self.stack.flows[name]
            try:
                letter = json.loads(message["Body"])
                original = letter["original"] if isinstance(letter, dict) and "original" in letter else message["Body"]
            except ValueError:
                original = message["Body"]
            sqs.send_message(QueueUrl=flow.queue_url, MessageBody=original)
            sqs.delete_message(QueueUrl=flow.dlq_url, ReceiptHandle=message["ReceiptHandle"])
        return len(held)


def _letter(flow: str, body: str) -> Letter:
    try:
        data = json.loads(body)
    except ValueError:
        return Letter(flow, None, "unreadable", "unknown", body[:200])
    if isinstance(data, dict) and "reason" in data:
        return Letter(flow, data.get("event_id"), str(data.get("reason")), str(data.get("error_class")),
                      str(data.get("message", ""))[:300], _entity_id(data.get("original")))
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return Letter(flow, event_id, "moved_by_redrive_policy", "unknown",
                  "received maxReceiveCount times without an answer", _entity_id(body))


def _entity_id(message: Any) -> str | None:
    """``data.id`` of the event a queue message carries, if it has one."""
    try:
        envelope = json.loads(json.loads(message)["body"])
        return str(envelope["data"]["id"])
    except (TypeError, ValueError, KeyError):
        return None


def clarity_poison_event(scenario: ClarityScenario, seed: int) -> dict[str, Any]:
    """The ``order.created`` of a poison scenario: its template as it is (the consumer sample's order is
    already ``processing``), with a payment status no lookup entry names."""
    event = json.loads(sample(scenario.template))
    event["data"].update(orderId=f"CL-CHAOS-{seed}-{scenario.n}", customerId=scenario.customer_id)
    event["data"]["customer"]["customerId"] = scenario.customer_id
    event["data"]["paymentInfo"]["status"] = "captured"
    return event


def _clarity_order_input(scenario: ClarityScenario) -> dict[str, Any]:
    order = copy.deepcopy(DEMO_ORDERS[0 if scenario.template == "clarity_order_b2b" else 1])
    customer = order["customer"]
    order["customerId"] = customer["customerId"] = scenario.customer_id
    order["status"] = "pending"
    number = scenario.customer_id.rsplit("-", 1)[-1]
    if customer.get("company"):
        customer["company"] = order["shippingAddress"]["company"] = order["billingAddress"]["company"] = \
            f"Clarity Chaos {scenario.customer_id}"
        customer["email"] = f"buyer{number}@{scenario.customer_id.lower()}.example"
    else:
        customer["email"] = f"shopper.{scenario.customer_id.lower()}@gmail.com"
    return order


def _interleave(items: list[tuple[Any, Any]], rng: random.Random) -> Iterator[tuple[Any, Any]]:
    """Each scenario's items in their own order, the scenarios mixed at random."""
    lanes: dict[int, list[tuple[Any, Any]]] = {}
    for scenario, item in items:
        lanes.setdefault(id(scenario), []).append((scenario, item))
    order = [key for key, lane in lanes.items() for _ in lane]
    rng.shuffle(order)
    for key in order:
        yield lanes[key].pop(0)

