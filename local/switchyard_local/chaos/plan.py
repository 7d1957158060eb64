"""What a chaos run sends and which faults are on: a pure function of the seed and the switches.

Three kinds of scenario cover every built flow:

* a nopCommerce order (``nopcommerce-to-streak`` and ``nopcommerce-to-quickbooks`` both take it): placed,
  maybe paid later, maybe moved through its statuses or cancelled;
* a Clarity order (``clarity-to-streak``; Streak's webhooks for the boxes then reach ``streak-to-clarity``):
  placed by a shopper in the Clarity sandbox, then its status changed by an admin;
* a stock count in QuickBooks (``quickbooks-to-nopcommerce``): an Item's quantity on hand set once or twice.

The seed fixes every scenario, every event id and timestamp of nopCommerce events, the order of the
deliveries and the seeds of the sandboxes' fault plans. Which request meets which vendor fault still
depends on the order in which the threads reach the sandboxes.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from switchyard_local.webhooks import sample

FAULT_CLASSES: dict[str, str] = {
    "duplicates": "the same webhook delivered twice (same id)",
    "redeliveries": "the same change re-sent with a new id",
    "same_second": "an order's next change in the same second as the one before",
    "out_of_order": "a change sent before its order; an older change sent after a newer one",
    "vendor_errors": "vendor answers 5xx",
    "rate_limits": "vendor answers 429 with Retry-After",
    "timeouts": "vendor holds a request past the client timeout, then carries it out",
    "late_answers": "vendor carries out a write at once and answers after the client timeout",
    "poison": "payloads a target rejects (unknown SKU, unmapped payment status) or the edge rejects (422)",
    "odd_cents": "orders whose line price is not quantity x the rounded unit price (tax included, 8 %)",
}
VENDOR_FAULTS = frozenset({"vendor_errors", "rate_limits", "timeouts", "late_answers"})
SANDBOXES = ("streak", "clarity", "quickbooks", "nopcommerce")
NOP_BASE_TIME = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
NOP_FIRST_ORDER = 700001
STOCK_ITEMS = 5  # chaos SKUs seeded in QuickBooks and nopCommerce for the stock flow
UNKNOWN_SKU = "CHAOS-NO-SUCH-SKU"
PAID, PENDING = 30, 10  # nopCommerce PaymentStatus
PROCESSING, COMPLETE, CANCELLED = 20, 30, 40  # nopCommerce OrderStatus (10 Pending at placement)


@dataclass(frozen=True)
class VendorFaults:
    """Rates applied to every API request of every sandbox while faults are on (writes only for late
    answers). ``slow_seconds`` is how long a timeout or a late answer holds the request: longer than
    the connectors' 10 s read timeout."""

    error_rate: float = 0.03
    rate_limit_rate: float = 0.02
    # each slow answer holds the in-process functions (they take turns) for slow_seconds: keep them rare
    timeout_rate: float = 0.0005
    late_answer_rate: float = 0.001
    slow_seconds: float = 11.0
    # sandboxes that answer no 429 (the state machine waits 60 s for QuickBooks' 429: a small run may
    # leave it out for time, a long one should not)
    no_rate_limits: frozenset[str] = frozenset()
    no_timeouts: frozenset[str] = frozenset()
    no_late_answers: frozenset[str] = frozenset()
    # (sandbox, path prefix) never held nor answered late, e.g. an OAuth token endpoint
    slow_spared: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ChaosConfig:
    orders: int = 200
    seed: int = 1
    max_seconds: float = 900.0
    faults: frozenset[str] = frozenset(FAULT_CLASSES)
    vendor: VendorFaults = field(default_factory=VendorFaults)
    wave_size: int = 20
    # the next wave waits until at most this many messages are in the flow queues (moto's SQS slows
    # down with deep queues)
    shallow_depth: int = 40
    # kinds of scenario, as weights
    mix: tuple[tuple[str, float], ...] = (("nopcommerce", 0.6), ("clarity", 0.3), ("stock", 0.1))
    # only these scenarios of the plan (by number), each exactly as the whole plan has it: a defect a long
    # run found, replayed in seconds
    only: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - set(FAULT_CLASSES))
        if unknown:
            raise ValueError(f"unknown fault classes: {', '.join(unknown)} (known: {', '.join(FAULT_CLASSES)})")
        if self.orders < 1 or self.max_seconds <= 0 or self.wave_size < 1:
            raise ValueError("orders, max_seconds and wave_size must be positive")
        beyond = sorted(n for n in self.only if not 0 <= n < self.orders)
        if beyond:
            raise ValueError(f"--only names scenarios outside the plan of {self.orders}: {beyond}")

    def on(self, fault: str) -> bool:
        return fault in self.faults

    def without(self, *faults: str) -> ChaosConfig:
        return replace(self, faults=self.faults - set(faults))


# --------------------------------------------------------------------------- scenarios

SendMode = Literal["first", "same_id", "new_id"]


@dataclass(frozen=True)
class Send:
    """One delivery through the front door: change ``index`` of its scenario, with its first id, the same
    id again (a duplicate delivery) or a new id (the same change re-sent)."""

    index: int
    mode: SendMode = "first"


@dataclass(frozen=True)
class NopChange:
    type: str  # order.placed, order.paid, order.status_changed
    order_status: int
    payment_status: int
    offset_seconds: int  # after the order's base time: equal offsets are the same second

    @property
    def label(self) -> str:
        if self.type == "order.status_changed":
            return f"status {self.order_status}"
        return self.type.removeprefix("order.")


@dataclass(frozen=True)
class NopScenario:
    """A nopCommerce order: its changes in the order they happen, and the deliveries in the order sent."""

    n: int
    number: int
    guid: str
    template: str  # nop_order_b2b, nop_order_consumer, nop_order_small, nop_order_cents (see nop_template)
    changes: tuple[NopChange, ...]
    sends: tuple[Send, ...]
    poison: str | None = None  # unknown_sku (QuickBooks rejects it) or invalid (the edge rejects it: 422)
    kind: str = "nopcommerce"

    @property
    def base_time(self) -> datetime:
        return NOP_BASE_TIME + timedelta(minutes=self.n)

    def timestamp(self, change: NopChange) -> str:
        return (self.base_time + timedelta(seconds=change.offset_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def event_id(self, index: int, mode: SendMode, seed: int) -> str:
        suffix = "-again" if mode == "new_id" else ""
        return f"msg_chaos{seed}_{self.number}_{index}{suffix}"


@dataclass(frozen=True)
class ClarityScenario:
    """A Clarity order placed by a shopper, then moved through ``statuses`` by an admin. Clarity assigns
    the order id and stamps the events (the run freezes its clock for same-second changes)."""

    n: int
    template: str  # clarity_order_b2b, clarity_order_consumer
    customer_id: str
    statuses: tuple[str, ...]
    same_second: tuple[bool, ...]  # per status change: in the same second as the change before
    sends: tuple[Send, ...]  # index 0 is order.created, i the i-th status change
    poison: str | None = None  # unmapped_payment_status: a signed event Clarity's validation would refuse
    kind: str = "clarity"


@dataclass(frozen=True)
class StockScenario:
    """An accountant sets an Item's quantity on hand in QuickBooks, once or several times."""

    n: int
    item: int  # 0 .. STOCK_ITEMS-1
    quantities: tuple[int, ...]
    same_second: bool
    kind: str = "stock"


Scenario = NopScenario | ClarityScenario | StockScenario


def nop_template(name: str) -> dict[str, Any]:
    """A nopCommerce ``order.placed`` the chaos orders are made from: a sample, or ``nop_order_cents``: the shop
    rounds per line, so 2 x 12.50 incl. 8 % tax is PriceExclTax 23.15 while 2 x the rounded unit price is 23.14."""
    if name != "nop_order_cents":
        return json.loads(sample(name))
    event = json.loads(sample("nop_order_b2b"))
    event["data"]["Order"].update(OrderSubtotalInclTax=25.00, OrderSubtotalExclTax=23.15, OrderShippingInclTax=5.00,
                                  OrderShippingExclTax=5.00, OrderTax=1.85, OrderTotal=30.00)
    line = event["data"]["OrderItems"][0]
    line.update(Quantity=2, UnitPriceInclTax=12.50, UnitPriceExclTax=11.57, PriceInclTax=25.00, PriceExclTax=23.15,
                Product={"Id": 77, "Name": "Cable organiser", "Sku": "CBL-ORG-01"})
    event["data"]["OrderItems"] = [line]
    return event


def stock_sku(item: int) -> str:
    return f"CHAOS-STK-{item + 1:02d}"


def build(config: ChaosConfig) -> list[Scenario]:
    kinds, weights = zip(*config.mix, strict=True)
    scenarios: list[Scenario] = []
    for n in range(config.orders):
        # one source per scenario, and every switch drawn whether on or not: turning a class off
        # changes the scenarios it touched and leaves the others as they were
        rng = random.Random(f"{config.seed}:{n}")
        kind = rng.choices(kinds, weights)[0]
        if kind == "nopcommerce":
            scenarios.append(_nop_scenario(rng, config, n))
        elif kind == "clarity":
            scenarios.append(_clarity_scenario(rng, config, n))
        else:
            scenarios.append(_stock_scenario(rng, config, n))
    return [s for s in scenarios if s.n in config.only] if config.only else scenarios


def _nop_scenario(rng: random.Random, config: ChaosConfig, n: int) -> NopScenario:
    template = rng.choices(["nop_order_b2b", "nop_order_consumer", "nop_order_small"], [0.6, 0.25, 0.15])[0]
    if _chance(rng, config, "odd_cents", 0.1):
        template = "nop_order_cents"
    paid_at_placement = rng.random() < 0.5
    roll = rng.random()
    poison = None
    if config.on("poison"):
        poison = "unknown_sku" if roll < 0.04 else "invalid" if roll < 0.06 else None
    offset = 0

    def step() -> int:
        nonlocal offset
        later = rng.randint(1, 90)
        if not _chance(rng, config, "same_second", 0.35):
            offset += later
        return offset

    payment = PAID if paid_at_placement else PENDING
    changes = [NopChange("order.placed", 10, payment, 0)]
    path = rng.choices(["none", "processing", "complete", "cancel"], [0.3, 0.3, 0.25, 0.15])[0]
    if path == "cancel" and paid_at_placement:
        path = "complete"
    # an unknown SKU's order never gets its invoice: its order.paid would wait out the state machine's
    # out-of-order retrier (about half an hour) before its dead letter
    pays_later = rng.random() < 0.6 and poison != "unknown_sku"
    if not paid_at_placement and path != "cancel" and pays_later:
        payment = PAID
        changes.append(NopChange("order.paid", 10, PAID, step()))
    if path in ("processing", "complete"):
        changes.append(NopChange("order.status_changed", PROCESSING, payment, step()))
    if path == "complete":
        changes.append(NopChange("order.status_changed", COMPLETE, payment, step()))
    if path == "cancel":
        changes.append(NopChange("order.status_changed", CANCELLED, payment, step()))
    if poison == "invalid":  # refused at the edge: nothing else of it is sent
        changes = changes[:1]
    sends = _sends(rng, config, len(changes))
    guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return NopScenario(n=n, number=NOP_FIRST_ORDER + n, guid=guid, template=template, changes=tuple(changes),
                       sends=sends, poison=poison)


def _clarity_scenario(rng: random.Random, config: ChaosConfig, n: int) -> ClarityScenario:
    template = rng.choices(["clarity_order_b2b", "clarity_order_consumer"], [0.7, 0.3])[0]
    poison = "unmapped_payment_status" if _chance(rng, config, "poison", 0.04) else None
    path = rng.choices([(), ("processing",), ("processing", "shipped"), ("processing", "delivered"),
                        ("cancelled",)], [0.25, 0.3, 0.2, 0.15, 0.1])[0]
    if poison:
        path = ()
    same = tuple(_chance(rng, config, "same_second", 0.35) for _ in path)
    return ClarityScenario(n=n, template=template, customer_id=f"C-CHAOS-{config.seed}-{n}", statuses=path,
                           same_second=same, sends=_sends(rng, config, 1 + len(path)), poison=poison)


def _stock_scenario(rng: random.Random, config: ChaosConfig, n: int) -> StockScenario:
    count = rng.choice([1, 1, 2, 3])
    quantities = tuple(rng.sample(range(5, 400), count))
    return StockScenario(n=n, item=rng.randrange(STOCK_ITEMS), quantities=quantities,
                         same_second=_chance(rng, config, "same_second", 0.5) and count > 1)


def _sends(rng: random.Random, config: ChaosConfig, changes: int) -> tuple[Send, ...]:
    sends = [Send(i) for i in range(changes)]
    if _chance(rng, config, "out_of_order", 0.3) and changes > 1:
        if rng.random() < 0.5:  # a later change arrives before the order itself
            sends.insert(0, sends.pop(rng.randrange(1, changes)))
        else:  # the newest change arrives before the one it follows
            sends[-1], sends[-2] = sends[-2], sends[-1]
    if _chance(rng, config, "duplicates", 0.2):
        sends.insert(rng.randrange(1, len(sends) + 1), Send(rng.randrange(changes), "same_id"))
    if _chance(rng, config, "redeliveries", 0.1):
        sends.insert(rng.randrange(1, len(sends) + 1), Send(rng.randrange(changes), "new_id"))
    return tuple(sends)


def _chance(rng: random.Random, config: ChaosConfig, fault: str, probability: float) -> bool:
    """Draws whether or not ``fault`` is on, so the rest of the scenario does not depend on the switch."""
    roll = rng.random()
    return config.on(fault) and roll < probability
