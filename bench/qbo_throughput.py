"""Benchmark 3: QuickBooks throughput inside the rate limit.

Generated nopCommerce ``order.placed`` events go through the order-to-cash steps (customer -> items ->
document -> write_back; the unpaid ones later also order.paid: payment -> write_back) against the QuickBooks
sandbox with QBO's real limits (500 requests/min and 10/s per realm), time-scaled by ``time_scale`` S (a
"minute" lasts 60/S s). It reports the share of the limit used and how many orders failed because of
throttling.

* The sandboxes (QuickBooks and nopCommerce, seeded with the items and orders) are served over HTTP on
  loopback (``sandbox.serve()``) from a child process: the workers call them over the network as the step
  Lambdas call QBO, and the sandboxes' CPU is not taken from the workers' interpreter (2 cores, one GIL each).
* The limiter is production's: ``DynamoRateLimiter`` with ``QBO_LIMITS`` (``limits`` for another setting) at
  the same time scale, on moto's DynamoDB in-process, one item shared by every worker (the "token bucket" of
  the issue is a sliding-window log, see switchyard.rate_limit). The customer links (entity state) live in
  the same moto table, as in production (DynamoEntityState on the idempotency table).
* Each worker thread is one step Lambda: its own QuickBooksClient (own httpx client and token-store view),
  NopCommerceClient, OrderToCash and ItemCache (per process, as in a warm Lambda). A request waits for a
  permit at most ``rate_limit_wait`` = 5 s / S (production waits 5 s, compose.py).
* Steps run through ``run_step``, so errors become the state machine's errors, and are retried as the state
  machine's Retry rules say (flows.yaml: intervals / S, full jitter where configured, one attempt budget per
  retrier per step); StepFailed or an exhausted budget fails the execution. A retry wait parks the execution
  without holding a worker (Step Functions waits without a Lambda); a free worker takes a parked execution
  that is due, else the next new one (the orders are a backlog, all there at the start).
* S is chosen so that this machine outruns the limit (the report says which was the bottleneck): the workers
  and moto share one interpreter, which manages about 100 QBO requests/s; 500/min at S=3 is 25/s.
  S also shrinks the limiter's latency tolerance (200 ms at S=1) to 200/S ms, while the delay between a
  permit and the request's arrival does not shrink: the report gives both (``limiter_latency_tolerance_ms``,
  ``qbo_sent_to_arrival_ms_p50_p99_max``).

Headline: the share of the limit used = accepted QBO requests / (500 x elapsed scaled minutes), the lower
of the whole run (start to last execution, ramp-up and tail included) and the steady part (the whole windows
after the first and before the last two); met when it is >= 0.90 and no execution failed (none because of
throttling, none otherwise).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
from switchyard.errors import RetryableError

FLOW = "nopcommerce-to-quickbooks"
REALM = "9130"
TABLE = "idempotency"
PLACED_STEPS = ("customer", "items", "document", "write_back")
PAID_STEPS = ("payment", "write_back")
PAID_AFTER = 100  # an order.paid execution starts about this many executions after its order's placed one
PER_MINUTE, PER_SECOND = 500, 10  # QBO's published limits per realm, and the sandbox's defaults
PRODUCTION_RATE_LIMIT_WAIT = 5.0  # compose._quickbooks_client
TARGET = 0.90
CENT = Decimal("0.01")

FIRST_NAMES = ("Jane", "John", "Maria", "Ahmed", "Li", "Olga", "Pedro", "Aisha", "Tom", "Grace", "Kenji", "Fatima",
               "Lars", "Chloe", "Ivan", "Priya", "Noah", "Emma", "Yusuf", "Sofia", "Mateo", "Hana", "Omar", "Ines")
LAST_NAMES = ("Doe", "Smith", "Garcia", "Khan", "Wei", "Petrova", "Silva", "Bello", "Brown", "Kim", "Tanaka",
              "Haddad", "Berg", "Martin", "Novak", "Patel", "Jones", "Schmidt", "Yilmaz", "Rossi", "Lopez", "Sato")
COMPANY_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent", "Tyrell",
                 "Cyberdyne", "Wonka", "Gringotts", "Oscorp", "Nakatomi", "Monarch", "Pied Piper", "Aperture")
COMPANY_KINDS = ("Corp", "LLC", "Ltd", "Industries", "Logistics", "Labs", "Trading", "Studio", "Partners")
PRODUCTS = (("Standing desk", "DESK-STD-01", "450.00"), ("Monitor arm", "ARM-MON-02", "90.00"),
            ("Office chair", "CHAIR-ERG-03", "329.00"), ("Desk lamp", "LAMP-LED-04", "39.90"),
            ("Keyboard", "KB-MECH-05", "119.00"), ("Mouse", "MOUSE-06", "29.99"), ("Webcam", "CAM-HD-07", "74.50"),
            ("Headset", "HEAD-08", "89.00"), ("USB hub", "HUB-USB-09", "24.95"),
            ("Docking station", "DOCK-10", "189.00"), ("Footrest", "FOOT-11", "45.00"),
            ("Cable tray", "TRAY-12", "19.90"), ("Whiteboard", "WB-13", "129.00"),
            ("Filing cabinet", "CAB-14", "210.00"), ("Bookshelf", "SHELF-15", "149.00"),
            ("Desk mat", "MAT-16", "22.50"), ("Laptop stand", "STAND-17", "49.00"),
            ("Power strip", "POWER-18", "17.95"), ("Plant pot", "POT-19", "12.00"), ("Coat rack", "RACK-20", "65.00"),
            ("Printer", "PRINT-21", "259.00"), ("Paper (box)", "PAPER-22", "34.00"), ("Shredder", "SHRED-23", "99.00"),
            ("Noise panel", "PANEL-24", "79.00"))
SHIPPING_RATES = (Decimal("9.95"), Decimal("19.00"), Decimal("39.00"))


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- the generated shop


@dataclass(frozen=True)
class Execution:
    kind: str  # "placed" | "paid"
    order_id: int
    steps: tuple[str, ...]
    state: dict[str, Any]  # the execution's input, as ExecutionStarter writes it
    paid_later: dict[str, Any] | None = None  # for an unpaid order: its order.paid execution's input


def _customers(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Mostly distinct people; ~35 % buy for a company. A few share a name or a company with an earlier
    customer (another e-mail): QuickBooks' DisplayName is taken (6240) and they get a name of their own."""
    people = [(first, last) for first in FIRST_NAMES for last in LAST_NAMES]
    companies = [f"{word} {kind}" for word in COMPANY_WORDS for kind in COMPANY_KINDS]
    rng.shuffle(people)
    rng.shuffle(companies)
    customers: list[dict[str, Any]] = []
    for index in range(count):
        first, last = people[rng.randrange(index) if index and rng.random() < 0.03 else index % len(people)]
        company = None
        if rng.random() < 0.35:
            company = companies[rng.randrange(len(companies))] if rng.random() < 0.05 else companies.pop()
        customer_id = 500 + index
        email = f"{first}.{last}.{customer_id}@{(company or 'mail').split()[0]}.example".lower()
        address = {"FirstName": first, "LastName": last, "Company": company, "Address1": f"{index + 1} Main St",
                   "City": rng.choice(("Springfield", "Riverton", "Lakeside", "Toronto")),
                   "ZipPostalCode": f"{10000 + index}", "CountryId": rng.choice((1, 1, 1, 2)),
                   "PhoneNumber": f"555-{index:04d}"}
        # nopCommerce keeps the e-mail as typed: some with capitals and blanks around it
        typed = f" {email.title()} " if index % 7 == 0 else email
        customers.append({"Customer": {"Id": customer_id, "Email": typed, "FirstName": first, "LastName": last,
                                       "Company": company},
                          "BillingAddress": {**address, "Email": email},
                          "ShippingAddress": {k: v for k, v in address.items() if k != "PhoneNumber"}})
    return customers


def _plain(value: Any) -> Any:
    """Decimals as JSON numbers (the webhook body nopCommerce sends)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def generate(orders: int, customers: int = 400, seed: int = 7, unpaid_share: float = 0.3) -> tuple[
        list[Execution], list[dict[str, Any]]]:
    """The order.placed executions (in arrival order) and the nopCommerce orders to seed (wire names)."""
    from switchyard.events import flow_message

    rng = random.Random(seed)
    people = _customers(rng, customers)
    executions, shop_orders = [], []
    for index in range(orders):
        order_id = 10_001 + index
        guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-order-{seed}-{order_id}"))
        buyer = people[min(int(rng.paretovariate(1.2)) - 1, customers - 1) if rng.random() < 0.3
                       else rng.randrange(customers)]  # some regulars, most spread out
        lines = []
        for line_no, (name, sku, price) in enumerate(rng.sample(PRODUCTS, rng.choice((1, 1, 2, 2, 3))), 1):
            quantity, unit = rng.randint(1, 5), Decimal(price)
            lines.append({"Id": order_id * 10 + line_no, "ProductId": PRODUCTS.index((name, sku, price)) + 1,
                          "Quantity": quantity, "UnitPriceInclTax": unit, "UnitPriceExclTax": unit,
                          "PriceInclTax": _money(unit * quantity), "PriceExclTax": _money(unit * quantity),
                          "Product": {"Id": PRODUCTS.index((name, sku, price)) + 1, "Name": name, "Sku": sku}})
        subtotal = sum((line["PriceExclTax"] for line in lines), Decimal(0))
        shipping = rng.choice(SHIPPING_RATES) if rng.random() < 0.6 else Decimal(0)
        discount = _money(subtotal * Decimal("0.1")) if rng.random() < 0.1 else Decimal(0)
        tax = _money((subtotal - discount) * Decimal("0.08")) if rng.random() < 0.25 else Decimal(0)
        total = subtotal + shipping - discount + tax
        paid_now = rng.random() >= unpaid_share
        created = f"2026-11-{1 + index * 28 // max(orders, 1):02d}T{9 + index % 10:02d}:{index % 60:02d}:00Z"
        order = {"Id": order_id, "OrderGuid": guid, "CustomOrderNumber": str(order_id), "StoreId": 1,
                 "CustomerId": buyer["Customer"]["Id"], "OrderStatusId": 10, "PaymentStatusId": 30 if paid_now else 10,
                 "ShippingStatusId": 20 if shipping else 10, "OrderSubtotalExclTax": subtotal,
                 "OrderShippingExclTax": shipping, "OrderTax": tax, "OrderDiscount": discount, "OrderTotal": total,
                 "CustomerCurrencyCode": "USD", "CurrencyRate": 1.0, "ShippingMethod": "Ground" if shipping else None,
                 "CreatedOnUtc": created}
        placed = {"type": "order.placed", "timestamp": created,
                  "data": {"Order": order, "OrderItems": lines, **buyer}}
        paid_doc = None
        if not paid_now:
            paid_doc = {"type": "order.paid", "timestamp": created,
                        "data": {"Order": {**order, "PaymentStatusId": 30, "PaidDateUtc": created}}}
        executions.append(Execution("placed", order_id, PLACED_STEPS, _execution_input(flow_message, placed, "placed"),
                                    _execution_input(flow_message, paid_doc, "paid") if paid_doc else None))
        shop_orders.append({"id": order_id, "order_guid": guid, "custom_order_number": str(order_id),
                            "customer_id": buyer["Customer"]["Id"], "order_status_id": 10,
                            "payment_status_id": 30 if paid_now else 10, "order_total": float(total),
                            "order_shipping_excl_tax": float(shipping), "order_tax": float(tax),
                            "shipping_status_id": 20 if shipping else 10, "created_on_utc": created})
    return executions, shop_orders


def _execution_input(flow_message: Callable[..., str], document: dict[str, Any], route: str) -> dict[str, Any]:
    """What ExecutionStarter passes to StartExecution: the flow's queue message as ingest wrote it."""
    order_id = document["data"]["Order"]["Id"]
    event_id = f"evt_{order_id}_{route}"
    message = flow_message(flow=FLOW, event_id=event_id, source="nopcommerce", event_type=document["type"],
                           timestamp=document["timestamp"], received_at="2026-11-30T12:00:00+00:00",
                           body=json.dumps(_plain(document)))
    return {"flow": FLOW, "event_id": event_id, "type": document["type"], "route": route, "message": message}


# --------------------------------------------------------------------------- the sandboxes (child process)


SENT_HEADER = "x-bench-sent"  # when the worker sent a QBO request (epoch s): the sandbox measures its delay


def _serve_quickbooks(pipe: Any, time_scale: float) -> None:
    """Child process: the QuickBooks sandbox, items seeded, realm connected, served on loopback; answers
    "counters", "summary", "stop"."""
    from switchyard_local.sandboxes.quickbooks import QuickBooksSandbox

    qbo = QuickBooksSandbox(per_minute=PER_MINUTE, per_second=PER_SECOND, time_scale=time_scale)
    # diagnostics only (behaviour unchanged): which window was full at each 429, how long after the worker sent
    # it each request arrived (what the sandbox counts, as QBO's gateway does) and how long after that it was
    # admitted or refused (queued for the sandbox's lock behind other requests' work)
    refusals: Counter[str] = Counter()
    delays: dict[bool, list[float]] = {True: [], False: []}
    arrivals: list[float] = []
    local = threading.local()
    api, admit = qbo._api, qbo._admit

    def api_noting_sent(request: Any, endpoint: str, values: dict[str, str], arrived: float) -> Any:
        local.sent = float(request.headers.get(SENT_HEADER) or 0)
        return api(request, endpoint, values, arrived)

    def admit_and_record(realm: Any, is_batch: bool, arrived: float) -> bool:
        admitted = admit(realm, is_batch, arrived)
        if getattr(local, "sent", 0):
            delays[admitted].append(qbo.clock() - local.sent)
            arrivals.append(arrived - local.sent)
        if not admitted:
            full = [name for name, times, limit in (("second", realm.throttle.second, qbo.per_second),
                                                    ("minute", realm.throttle.minute, qbo.per_minute))
                    if len(times) >= limit]
            refusals["+".join(full) or "batch"] += 1
        return admitted

    qbo._api = api_noting_sent  # type: ignore[method-assign]
    qbo._admit = admit_and_record  # type: ignore[method-assign]
    tokens = qbo.connect_realm(REALM)
    for name, sku, price in PRODUCTS:
        qbo.seed_item(REALM, name, sku, qty_on_hand=1_000_000, unit_price=float(price))
    qbo.seed_item(REALM, "Shipping", "SHIPPING", qty_on_hand=0, unit_price=0, type="Service")
    pipe.send({"url": qbo.serve(), "tokens": tokens})
    while True:
        command = pipe.recv()
        if command == "counters":
            pipe.send(qbo.requests_per_realm(REALM))
        elif command == "summary":
            realm = qbo.snapshot()["realms"][REALM]

            def ms(values: list[float]) -> list[float | None]:
                return [round(1000 * statistics.median(values), 1) if values else None,
                        round(1000 * _percentile(values, 0.99), 1), round(1000 * max(values, default=0), 1)]

            pipe.send({
                "counters": realm["counters"], "refusals": dict(refusals),
                "sent_to_arrival_ms_p50_p99_max": ms(arrivals),
                "sent_to_admitted_ms_p50_p99_max": ms(delays[True]),
                "sent_to_refused_ms_p50_p99_max": ms(delays[False]),
                "customers": len(realm["customers"]), "sales_receipts": len(realm["salesReceipts"]),
                "invoices": len(realm["invoices"]),
                "open_invoices": sum(1 for row in realm["invoices"] if row.get("status") == "Open"),
                "payments": len(realm["payments"]),
            })
        else:
            qbo.stop()
            pipe.send("stopped")
            return


def _serve_shop(pipe: Any, shop_orders: list[dict[str, Any]]) -> None:
    """Child process: the nopCommerce sandbox with the orders, served on loopback; "summary", "stop"."""
    from switchyard_local.sandboxes.nopcommerce import NopCommerceSandbox

    shop = NopCommerceSandbox()
    for order in shop_orders:
        shop.seed_order(order)
    pipe.send({"url": shop.serve()})
    while True:
        command = pipe.recv()
        if command == "summary":
            orders = shop.snapshot()["orders"]
            pipe.send({"shop_orders_processing": sum(1 for order in orders if order["order_status_id"] == 20),
                       "shop_notes": sum(len(order["notes"]) for order in orders)})
        else:
            shop.stop()
            pipe.send("stopped")
            return


class SandboxHost:
    """A child process serving one sandbox (one process each: the QBO sandbox's answers are not delayed by
    the shop's, and neither takes the workers' interpreter)."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited threads or locks
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=target, args=(child, *args), daemon=True)
        self._process.start()
        if not self._pipe.poll(120):
            raise RuntimeError("the sandbox process did not start")
        self.info: dict[str, Any] = self._pipe.recv()

    def ask(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self.ask("stop")
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


# --------------------------------------------------------------------------- instrumentation


class _Recorder(httpx.BaseTransport):
    """Every QBO API request: (sent at, answered at, status), epoch seconds (the limiter's clock), and how
    long after the limiter stamped its permit it was sent."""

    def __init__(self, log: list[tuple[float, float, int]], stats: WorkerStats) -> None:
        self._inner = httpx.HTTPTransport()
        self._log = log
        self._stats = stats

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.time()
        api = request.url.path.startswith("/v3/")
        if api:
            self._stats.stamp_to_send.append(sent - self._stats.last_clock)
            request.headers[SENT_HEADER] = repr(sent)
        response = self._inner.handle_request(request)
        if api:
            self._log.append((sent, time.time(), response.status_code))
        return response

    def close(self) -> None:
        self._inner.close()


@dataclass
class WorkerStats:
    permit_sleep: float = 0.0  # inside the limiter, sleeping until a permit frees
    acquire_time: float = 0.0  # inside limiter.acquire in total (sleep + DynamoDB calls)
    acquires: int = 0
    acquire_latencies: list[float] = field(default_factory=list)  # per acquire, without the sleeps
    refusals: Counter[str] = field(default_factory=Counter)  # acquire gave up: why
    last_clock: float = 0.0  # the limiter's last clock reading: the stamp of the permit it granted last
    stamp_to_send: list[float] = field(default_factory=list)  # permit stamped -> request sent, per request
    retry_waits: Counter[str] = field(default_factory=Counter)  # executions parked for a retry, by retrier
    idle: float = 0.0  # no execution due: every one in flight is parked for a retry (or none is left)
    wall: float = 0.0


class _CountingDynamo:
    """A botocore DynamoDB client that counts (and times) its calls; conditional-write conflicts too."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            except self._client.exceptions.ConditionalCheckFailedException:
                self.conflicts += 1
                raise
            finally:
                self.seconds += time.perf_counter() - started
                self.calls[name] += 1
        return timed


class _TimedLimiter:
    """The worker's limiter, timing each acquire (the sleeps are counted by the limiter's sleep function)."""

    def __init__(self, limiter: Any, stats: WorkerStats) -> None:
        self._limiter = limiter
        self._stats = stats

    def acquire(self, key: str, *, max_wait: float) -> float:
        slept_before = self._stats.permit_sleep
        started = time.perf_counter()
        try:
            return self._limiter.acquire(key, max_wait=max_wait)
        except RetryableError as exc:
            self._stats.refusals["lost_races" if "races" in str(exc) else str(exc.reason)] += 1
            raise
        finally:
            spent = time.perf_counter() - started
            self._stats.acquire_time += spent
            self._stats.acquires += 1
            self._stats.acquire_latencies.append(spent - (self._stats.permit_sleep - slept_before))

    def time_until_available(self, key: str) -> float:
        return float(self._limiter.time_until_available(key))


# --------------------------------------------------------------------------- the state machine's part


@dataclass
class Outcome:
    execution: Execution
    ok: bool = True
    step: str | None = None
    reason: str | None = None
    throttling: bool = False
    retries: Counter[str] = field(default_factory=Counter)


@dataclass
class _Run:
    """An execution in flight: its state, the step it is at, that step's retry attempts per retrier."""

    execution: Execution
    state: dict[str, Any]
    outcome: Outcome
    step: int = 0
    attempts: Counter[str] = field(default_factory=Counter)  # Step Functions counts per retrier, per state


class _Scheduler:
    """What Step Functions and the flow worker do between steps. A step's retry wait does not hold a worker (a
    waiting execution holds no Lambda): the run is parked until it is due. A free worker takes the parked run
    that is due first, else the next new execution; an unpaid order's order.paid execution joins the new ones
    PAID_AFTER places back once its order.placed execution succeeded."""

    def __init__(self, executions: list[Execution]) -> None:
        self._new: deque[Execution] = deque(executions)
        self._parked: list[tuple[float, int, _Run]] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._running = 0

    def take(self) -> _Run | float | None:
        """A run to work on; else seconds to wait before asking again; None when everything is done."""
        with self._lock:
            now = time.monotonic()
            if self._parked and self._parked[0][0] <= now:
                self._running += 1
                return heapq.heappop(self._parked)[2]
            if self._new:
                self._running += 1
                execution = self._new.popleft()
                return _Run(execution, dict(execution.state), Outcome(execution))
            if self._parked:
                return min(self._parked[0][0] - now, 0.005)
            return 0.002 if self._running else None

    def park(self, run: _Run, seconds: float) -> None:
        with self._lock:
            self._running -= 1
            heapq.heappush(self._parked, (time.monotonic() + seconds, next(self._sequence), run))

    def finish(self, follow_up: Execution | None) -> None:
        with self._lock:
            self._running -= 1
            if follow_up is not None:
                self._new.insert(min(PAID_AFTER, len(self._new)), follow_up)


RETRIERS = {"StepRetryable": "retry", "StepThrottled": "throttled", "StepRateLimited": "rate_limited",
            "StepOutOfOrder": "out_of_order"}
THROTTLING_REASONS = {"rate_limited", "rate_limited_locally"}


def run_steps(o2c: Any, run: _Run, config: Any, time_scale: float, rng: random.Random,
              retry_waits: Counter[str]) -> float | None:
    """Run the execution's steps from where it is; the seconds to park it for a retry, or None when it ended
    (``run.outcome`` says how). Retry rules are the state machine's (flows.yaml), waits divided by S."""
    from switchyard.state_machines import StepError, StepFailed, run_step

    steps, state, outcome = run.execution.steps, run.state, run.outcome
    while run.step < len(steps):
        step = steps[run.step]
        try:
            state[step] = run_step(lambda step=step: o2c.run(step, state))
        except StepError as exc:
            kind = type(exc).__name__
            retrier_name = RETRIERS.get(kind)
            retrier = getattr(config, retrier_name) if retrier_name else None
            if isinstance(exc, StepFailed) or retrier is None or run.attempts[kind] >= retrier.max_attempts:
                reason = _reason(exc)
                exhausted = not isinstance(exc, StepFailed) and retrier is not None
                outcome.ok, outcome.step = False, step
                outcome.reason = f"{kind} retries exhausted ({reason})" if exhausted else reason
                outcome.throttling = (exhausted and kind in ("StepThrottled", "StepRateLimited")) or \
                    reason in THROTTLING_REASONS
                return None
            delay = min(retrier.interval_seconds * retrier.backoff_rate ** run.attempts[kind],
                        retrier.max_delay_seconds)
            if retrier.jitter:
                delay = rng.uniform(0, delay)  # JitterStrategy FULL
            run.attempts[kind] += 1
            outcome.retries[kind] += 1
            retry_waits[retrier_name] += delay / time_scale
            return delay / time_scale
        except Exception as exc:  # a bug: Step Functions would catch it as it is (States.ALL)
            outcome.ok, outcome.step, outcome.reason = False, step, f"unexpected {exc!r}"
            return None
        run.step += 1
        run.attempts.clear()
    return None


def _reason(exc: Exception) -> str:
    try:
        return str(json.loads(str(exc)).get("reason") or type(exc).__name__)
    except (ValueError, AttributeError):
        return type(exc).__name__


# --------------------------------------------------------------------------- the benchmark


def _max_retries(outcomes: list[Outcome]) -> Counter[str]:
    most: Counter[str] = Counter()
    for outcome in outcomes:
        most |= outcome.retries
    return most


def _refusals_by_window(log: list[tuple[float, float, int]], time_scale: float) -> dict[str, int]:
    """Which limit each 429 met, judged from the client's send times of the accepted requests before it
    (approximate: the sandbox stamps arrivals a little later): "second" if 10 were sent in the last scaled
    second, "minute" if 500 in the last scaled minute, else "neither" (the arrival order differed)."""
    accepted = sorted(sent for sent, _, status in log if status != 429)
    second, minute = 1.0 / time_scale, 60.0 / time_scale
    kinds: Counter[str] = Counter()
    for sent, _, status in log:
        if status != 429:
            continue
        end = bisect.bisect_left(accepted, sent)
        if end - bisect.bisect_right(accepted, sent - second) >= PER_SECOND:
            kinds["second"] += 1
        elif end - bisect.bisect_right(accepted, sent - minute) >= PER_MINUTE:
            kinds["minute"] += 1
        else:
            kinds["neither"] += 1
    return dict(kinds)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _moto_permit_cost(client: Any) -> float:
    """Seconds per uncontended permit on moto (a consistent read plus a conditional put, one thread)."""
    from switchyard.rate_limit import DynamoRateLimiter, Limit
    from switchyard.table_keys import ConnectionKeys

    # a log of 500 to 800 grants: the size of a busy QBO key's item (500 at most), so the item costs the same
    limiter = DynamoRateLimiter(client, TABLE, (Limit(2000, 60.0),), keys=ConnectionKeys("quickbooks"))
    for _ in range(500):
        limiter.acquire("calibration", max_wait=0)
    rounds = 300
    started = time.perf_counter()
    for _ in range(rounds):
        limiter.acquire("calibration", max_wait=0)
    return (time.perf_counter() - started) / rounds


def bench_qbo_throughput(orders: int = 1000, time_scale: float = 3.0, workers: int = 8, *, paid: bool = True,
                         seed: int = 7, limits: tuple[tuple[int, float], ...] | None = None) -> dict[str, Any]:
    """Push ``orders`` order.placed executions (and, with ``paid``, the unpaid ones' order.paid) through
    ``workers`` concurrent workers against the sandbox limited to 500/min and 10/s per realm at
    ``time_scale``; returns the result dict (headline: share of the limit used). ``limits`` configures the
    limiter otherwise, e.g. ``((500, 60), (10, 1))``, exactly QBO's published limits (default: QBO_LIMITS,
    as production runs); the share is always of QBO's 500 per 60 s."""
    import boto3
    from moto import mock_aws
    from switchyard.catalog import load_catalog
    from switchyard.entity_state import DynamoEntityState
    from switchyard.rate_limit import DynamoRateLimiter, Limit
    from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
    from switchyard.systems.quickbooks.client import QBO_LIMITS, QuickBooksClient, QuickBooksConnection
    from switchyard.systems.quickbooks.order_mapping import load_order_mapping
    from switchyard.systems.quickbooks.order_to_cash import ItemCache, OrderToCash
    from switchyard.table_keys import ConnectionKeys, TableKeys
    from switchyard.tokens import InMemoryTokenStore
    from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD
    from switchyard_local.sandboxes.quickbooks import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, TOKEN_PATH

    flow = load_catalog().flows[FLOW]
    config = flow.state_machine
    mapping = load_order_mapping(flow.mapping_document)
    placed, shop_orders = generate(orders, seed=seed)
    rate_limit_wait = PRODUCTION_RATE_LIMIT_WAIT / time_scale
    limiter_limits = tuple(Limit(requests, seconds) for requests, seconds in limits) if limits else QBO_LIMITS
    window = 60.0 / time_scale

    qbo_host = SandboxHost(_serve_quickbooks, time_scale)
    shop_host = SandboxHost(_serve_shop, shop_orders)
    try:
        qbo_url, shop_url, tokens = qbo_host.info["url"], shop_host.info["url"], qbo_host.info["tokens"]
        secret = {"base_url": qbo_url, "token_url": f"{qbo_url}{TOKEN_PATH}", "client_id": DEFAULT_CLIENT_ID,
                  "client_secret": DEFAULT_CLIENT_SECRET, "realm_id": REALM, "refresh_token": tokens["refresh_token"]}
        connection = QuickBooksConnection.from_secret(secret)
        tokens_shared = InMemoryTokenStore()  # stands for the connection secret every Lambda reads
        tokens_shared.seed(REALM, tokens["refresh_token"], access_token=tokens["access_token"],
                           access_expires_at=time.time() + float(tokens["expires_in"]))
        shop_connection = NopCommerceConnection(base_url=shop_url, email=DEFAULT_API_EMAIL,
                                                password=DEFAULT_API_PASSWORD)
        aws = {"region_name": "us-east-1", "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        with mock_aws():
            admin = boto3.client("dynamodb", **aws)
            admin.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                               BillingMode="PAY_PER_REQUEST")
            permit_cost = _moto_permit_cost(admin)
            requests_log: list[tuple[float, float, int]] = []
            scheduler = _Scheduler(placed)
            outcomes: list[Outcome] = []
            stats = [WorkerStats() for _ in range(workers)]
            dynamos = [_CountingDynamo(boto3.client("dynamodb", **aws)) for _ in range(workers)]
            entity_state = DynamoEntityState(boto3.client("dynamodb", **aws), TABLE,
                                             keys=TableKeys.for_flow(flow))

            def worker(index: int) -> None:
                mine = stats[index]

                def sleep(seconds: float) -> None:
                    started = time.perf_counter()
                    time.sleep(seconds)
                    mine.permit_sleep += time.perf_counter() - started

                def clock() -> float:
                    mine.last_clock = time.time()
                    return mine.last_clock

                limiter = _TimedLimiter(DynamoRateLimiter(dynamos[index], TABLE, limiter_limits, clock=clock,
                                                          sleep=sleep, time_scale=time_scale,
                                                          keys=ConnectionKeys("quickbooks")), mine)
                qbo = QuickBooksClient(connection, InMemoryTokenStore(shared_with=tokens_shared),
                                       transport=_Recorder(requests_log, mine), rate_limiter=limiter,
                                       rate_limit_wait=rate_limit_wait)
                shop = NopCommerceClient(shop_connection)
                # the item cache's 5 minutes are scaled minutes too
                o2c = OrderToCash(mapping, qbo, shop, flow=FLOW, state=entity_state,
                                  clock=lambda: time.time() * time_scale, item_cache=ItemCache())
                rng = random.Random(seed * 1000 + index)
                started = time.perf_counter()
                try:
                    while True:
                        run = scheduler.take()
                        if run is None:
                            break
                        if not isinstance(run, _Run):
                            idle_from = time.perf_counter()
                            time.sleep(run)
                            mine.idle += time.perf_counter() - idle_from
                            continue
                        park_for = run_steps(o2c, run, config, time_scale, rng, mine.retry_waits)
                        if park_for is not None:
                            scheduler.park(run, park_for)
                            continue
                        outcomes.append(run.outcome)
                        execution = run.execution
                        follow_up = None
                        if paid and run.outcome.ok and execution.paid_later is not None:
                            follow_up = Execution("paid", execution.order_id, PAID_STEPS, execution.paid_later)
                        scheduler.finish(follow_up)
                finally:
                    mine.wall = time.perf_counter() - started
                    qbo.close()
                    shop.close()

            before = qbo_host.ask("counters")
            load_before = os.getloadavg()[0]
            threads = [threading.Thread(target=worker, args=(index,), name=f"worker-{index}")
                       for index in range(workers)]
            started = time.time()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            finished = time.time()
            load_after = os.getloadavg()[0]
        summary = qbo_host.ask("summary") | shop_host.ask("summary")
    finally:
        qbo_host.stop()
        shop_host.stop()
    return _report(orders=orders, time_scale=time_scale, workers=workers, paid=paid, window=window,
                   rate_limit_wait=rate_limit_wait, started=started, finished=finished, before=before,
                   summary=summary, outcomes=outcomes, requests_log=requests_log, stats=stats, dynamos=dynamos,
                   permit_cost=permit_cost, limits=limiter_limits, production=limiter_limits == QBO_LIMITS,
                   load=(load_before, load_after))


def _report(*, orders: int, time_scale: float, workers: int, paid: bool, window: float, rate_limit_wait: float,
            started: float, finished: float, before: dict[str, int], summary: dict[str, Any],
            outcomes: list[Outcome], requests_log: list[tuple[float, float, int]], stats: list[WorkerStats],
            dynamos: list[_CountingDynamo], permit_cost: float, limits: tuple[Any, ...],
            production: bool, load: tuple[float, float]) -> dict[str, Any]:
    counters = {name: summary["counters"][name] - before.get(name, 0) for name in summary["counters"]}
    elapsed = finished - started
    scaled_minutes = elapsed * time_scale / 60
    accepted = counters["accepted"]
    whole = accepted / (PER_MINUTE * scaled_minutes)
    # steady part: whole windows, after the first one (the burst a fresh window allows) and before the last
    # partial one and the one before it (the queue running dry)
    steady_windows = int(elapsed / window) - 2
    steady: float | None = None
    if steady_windows >= 1:
        low, high = started + window, started + window * (1 + steady_windows)
        in_steady = sum(1 for sent, _, status in requests_log if status != 429 and low <= sent < high)
        steady = in_steady / (PER_MINUTE * steady_windows)
    utilisation = min(whole, steady) if steady is not None else whole

    failed = [outcome for outcome in outcomes if not outcome.ok]
    throttling_failures = [outcome for outcome in failed if outcome.throttling]
    placed_failed = {outcome.execution.order_id for outcome in failed}
    other_reasons = Counter(f"{outcome.step}: {outcome.reason}" for outcome in failed if not outcome.throttling)
    retries: Counter[str] = Counter()
    for outcome in outcomes:
        retries.update(outcome.retries)
    executions = Counter(outcome.execution.kind for outcome in outcomes)

    wall = sum(stat.wall for stat in stats)
    permit_sleep = sum(stat.permit_sleep for stat in stats)
    limiter_dynamo = sum(stat.acquire_time for stat in stats) - permit_sleep
    idle = sum(stat.idle for stat in stats)
    parked: Counter[str] = Counter()
    for stat in stats:
        parked.update(stat.retry_waits)
    latencies = [latency for stat in stats for latency in stat.acquire_latencies]
    shares = {  # of the workers' (the step Lambdas') time
        "waiting_for_permits": round(permit_sleep / wall, 3),
        "limiter_dynamodb_calls": round(limiter_dynamo / wall, 3),
        "idle_every_execution_parked": round(idle / wall, 3),
        "working": round((wall - permit_sleep - limiter_dynamo - idle) / wall, 3),
    }
    calls: Counter[str] = Counter()
    for dynamo in dynamos:
        calls.update(dynamo.calls)
    dynamo_seconds = sum(dynamo.seconds for dynamo in dynamos)
    dynamo_calls = sum(calls.values())
    limit_rate = PER_MINUTE * time_scale / 60  # permits per real second the limit allows
    statuses = Counter(status for _, _, status in requests_log)
    durations = [answered - sent for sent, answered, _ in requests_log]
    # the limit is the bottleneck when the workers could do more than it allows: they sleep in the limiter
    # waiting for permits; the machine, when they are busy working and the limiter rarely makes them wait
    held_back = permit_sleep / wall
    bottleneck = (f"the rate limit (workers slept {held_back:.0%} of their time waiting for permits)"
                  if held_back >= 0.10 else
                  f"the machine (workers slept only {held_back:.0%} of their time waiting for permits)")
    met = utilisation >= TARGET and not failed
    stamp_to_send = [delay for stat in stats for delay in stat.stamp_to_send]
    refused = _refusals_by_window(requests_log, time_scale)
    # how much later than an earlier one a request may arrive (relative to its permit) before QBO's own window
    # sees more than the limiter allowed: the padding of the limiter's window over QBO's, in real time
    published = {PER_MINUTE: 60.0, PER_SECOND: 1.0}
    tolerance_ms = min((limit.per_seconds - published[limit.requests]) / time_scale * 1000
                       for limit in limits if limit.requests in published) if any(
        limit.requests in published for limit in limits) else None
    return {
        "name": "QuickBooks throughput: share of the 500/min/realm limit used (time-scaled sandbox, shared "
                "DynamoDB limiter on moto)",
        "ratio": round(utilisation, 3), "target": TARGET, "higher_is_better": True, "met": met,
        "orders": orders, "orders_failed_throttling": len({o.execution.order_id for o in throttling_failures}),
        "orders_failed_other": len(placed_failed - {o.execution.order_id for o in throttling_failures}),
        "executions": dict(executions), "time_scale": time_scale, "workers": workers,
        "order_paid_executions": paid,
        "elapsed_s": round(elapsed, 2), "scaled_minutes": round(scaled_minutes, 2),
        "utilisation_whole_run": round(whole, 3),
        "utilisation_steady": round(steady, 3) if steady is not None else None,
        "steady_windows": max(steady_windows, 0),
        "headline": "the lower of utilisation_whole_run and utilisation_steady",
        "qbo_requests": counters,
        "qbo_requests_per_order": round(accepted / orders, 2),
        "qbo_429s": counters["throttled"],
        "qbo_429s_by_full_window": summary["refusals"],
        "qbo_429s_by_window_seen_by_the_client": refused,
        "limiter_latency_tolerance_ms": round(tolerance_ms, 1) if tolerance_ms is not None else None,
        "qbo_sent_to_arrival_ms_p50_p99_max": summary["sent_to_arrival_ms_p50_p99_max"],
        "qbo_sent_to_admitted_ms_p50_p99_max": summary["sent_to_admitted_ms_p50_p99_max"],
        "qbo_sent_to_refused_ms_p50_p99_max": summary["sent_to_refused_ms_p50_p99_max"],
        "permit_stamp_to_request_sent_ms_p50_p99_max": [
            round(1000 * statistics.median(stamp_to_send), 1) if stamp_to_send else None,
            round(1000 * _percentile(stamp_to_send, 0.99), 1), round(1000 * max(stamp_to_send, default=0), 1)],
        "client_statuses": {str(code): count for code, count in sorted(statuses.items())},
        "qbo_request_ms_p50_p99": [round(1000 * statistics.median(durations), 1) if durations else None,
                                   round(1000 * _percentile(durations, 0.99), 1)],
        "retries": dict(retries),
        "failure_reasons": dict(other_reasons + Counter(f"throttling: {o.step}: {o.reason}"
                                                         for o in throttling_failures)),
        "rate_limit_wait_s": round(rate_limit_wait, 4),
        "limiter_limits": ", ".join(f"{limit.requests}/{limit.per_seconds:g}s" for limit in limits)
        + (" (QBO_LIMITS" if production else " (not QBO_LIMITS") + "; QBO publishes 500/60s, 10/1s)",
        "worker_time_shares": shares,
        "execution_seconds_parked_for_retries": {name: round(seconds, 1) for name, seconds in parked.items()},
        "max_retries_of_one_execution": dict(_max_retries(outcomes)),
        "bottleneck": bottleneck,
        "limiter": {
            "acquires": sum(stat.acquires for stat in stats),
            "acquires_refused": dict(sum((stat.refusals for stat in stats), Counter())),
            "acquire_ms_p50_p99_without_sleeping": [
                round(1000 * statistics.median(latencies), 2) if latencies else None,
                round(1000 * _percentile(latencies, 0.99), 2)],
            "dynamodb_calls": dict(calls), "dynamodb_conflicts": sum(dynamo.conflicts for dynamo in dynamos),
            "dynamodb_calls_per_s": round(dynamo_calls / elapsed, 1),
            "dynamodb_ms_per_call": round(1000 * dynamo_seconds / max(dynamo_calls, 1), 2),
            "moto_ms_per_permit_uncontended": round(1000 * permit_cost, 2),
            "moto_share_of_one_core_at_the_limit": round(limit_rate * permit_cost, 3),
        },
        "booked": {key: summary[key] for key in ("customers", "sales_receipts", "invoices", "open_invoices", "payments",
                                                 "shop_orders_processing", "shop_notes")},
        "cpus": os.cpu_count(),
        "load_average_1min_at_start_and_end": [round(value, 2) for value in load],
    }


if __name__ == "__main__":  # python -m bench.qbo_throughput --orders 1000 --time-scale 3 --workers 8
    import argparse

    parser = argparse.ArgumentParser(description="benchmark 3 alone; prints the result as JSON")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--time-scale", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-paid", action="store_true", help="no order.paid executions for the unpaid orders")
    parser.add_argument("--limits", help="the limiter's limits instead of QBO_LIMITS, e.g. 500/60,10/1")
    args = parser.parse_args()
    limits = tuple((int(requests), float(seconds)) for requests, seconds in
                   (part.split("/") for part in args.limits.split(","))) if args.limits else None
    result = bench_qbo_throughput(args.orders, args.time_scale, args.workers, paid=not args.no_paid, limits=limits)
    print(json.dumps(result, indent=2))
