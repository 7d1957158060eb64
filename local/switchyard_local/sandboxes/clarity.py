"""Stateful in-memory Clarity eCommerce sandbox implementing the API contract Switchyard expects.

Clarity publishes no public API, so Switchyard defines the contract (``docs/clarity-contract.md``)
and this sandbox implements exactly that: API-key or OAuth2 client-credentials auth, customers,
orders, products and stock with versions, lists of changes since a watermark, order status
transitions, fault injection, and signed outgoing webhooks delivered from a background thread with
retries.

Usage::

    with ClaritySandbox(webhook_url=receiver_url) as clarity:   # serves on 127.0.0.1:<free port>
        order = clarity.place_order(DEMO_ORDERS[0])               # a shopper buys: order.created
        client = httpx.Client(base_url=clarity.base_url, headers={"X-Api-Key": "clarity-key"})
        client.patch(f"/api/v1/orders/{order['orderId']}/status", json={"status": "shipped"})
        clarity.wait_for_webhooks()

or in-process: ``httpx.Client(transport=httpx.WSGITransport(app=clarity.wsgi_app), ...)``.
"""

from __future__ import annotations

import base64
import copy
import hmac
import itertools
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from switchyard.signatures import sign
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.faults import FaultInjector

DEFAULT_API_KEY = "clarity-key"
DEFAULT_CLIENT_ID = "switchyard"
DEFAULT_CLIENT_SECRET = "clarity-secret"
# "whsec_" + base64 of b"switchyard-clarity-sandbox-signing-key!!": a valid Standard Webhooks secret.
DEFAULT_WEBHOOK_SECRET = "whsec_c3dpdGNoeWFyZC1jbGFyaXR5LXNhbmRib3gtc2lnbmluZy1rZXkhIQ=="
TOKEN_SCOPE = "orders customers"
DEFAULT_WEBHOOK_BACKOFF = (0.2, 0.5, 1.0)

ORDER_STATUSES = ("pending", "processing", "shipped", "delivered", "cancelled", "refunded")
TERMINAL_STATUSES = frozenset({"cancelled", "refunded"})
# From a status listed here only the given targets are allowed; from any other non-terminal one, all are.
RESTRICTED_TRANSITIONS = {"delivered": frozenset({"refunded"})}
PAYMENT_STATUSES = ("paid", "pending", "refunded")

CUSTOMER_FIELDS = ("firstName", "lastName", "email", "phone", "company")
NULLABLE_CUSTOMER_FIELDS = frozenset({"phone", "company"})
READ_ONLY_CUSTOMER_FIELDS = frozenset({"customerId", "version", "updatedAt", "fieldUpdatedAt"})
ORDER_INPUT_FIELDS = (
    "customerId",
    "orderDate",
    "status",
    "totalAmount",
    "currency",
    "shippingAddress",
    "billingAddress",
    "lineItems",
    "paymentInfo",
    "customer",
)
ASSIGNED_ORDER_FIELDS = frozenset({"orderId", "version", "updatedAt", "statusHistory"})
LINE_ITEM_FIELDS = ("sku", "name", "quantity", "unitPrice")
PAYMENT_FIELDS = ("method", "status", "maskedCard")
FIRST_CUSTOMER_NUMBER = 501
FIRST_ORDER_NUMBER = 10001
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")

PRODUCT_FIELDS = ("name", "price", "currency", "active")
INVENTORY_FIELDS = ("quantityOnHand",)
SKU_PATTERN = re.compile(r"^\S(.{0,62}\S)?$")
MAX_STOCK = 1_000_000_000  # either way: a negative quantity on hand is an oversold product
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200

API_PREFIX = "/api/"
TOKEN_PATH = "/oauth/token"


# --------------------------------------------------------------------------- demo data

DEMO_ORDERS: tuple[dict[str, Any], ...] = (
    {
        # B2B: a company buyer, paid by card, e-mail typed with odd case and stray whitespace.
        "customerId": "C-501",
        "status": "processing",
        "totalAmount": 1299.00,
        "currency": "USD",
        "shippingAddress": {
            "name": "Jane Doe",
            "company": "Acme Corp",
            "line1": "100 Industrial Way",
            "line2": "Dock 4",
            "city": "Springfield",
            "region": "IL",
            "postalCode": "62701",
            "country": "US",
        },
        "billingAddress": {
            "name": "Acme Corp Accounts Payable",
            "company": "Acme Corp",
            "line1": "1 Acme Plaza",
            "line2": None,
            "city": "Springfield",
            "region": "IL",
            "postalCode": "62701",
            "country": "US",
        },
        "lineItems": [
            {"sku": "DESK-STAND-180", "name": "Standing desk 180 cm", "quantity": 1, "unitPrice": 899.00},
            {"sku": "ARM-DUAL-01", "name": "Dual monitor arm", "quantity": 2, "unitPrice": 200.00},
        ],
        "paymentInfo": {"method": "card", "status": "paid", "maskedCard": "************4242"},
        "customer": {
            "customerId": "C-501",
            "firstName": "Jane",
            "lastName": "Doe",
            "email": " Jane.Doe@Acme-Corp.example ",
            "phone": "+1 217 555 0100",
            "company": "Acme Corp",
        },
    },
    {
        # Consumer: a gmail shopper paying in EUR, payment not captured yet.
        "customerId": "C-502",
        "status": "pending",
        "totalAmount": 240.50,
        "currency": "EUR",
        "shippingAddress": {
            "name": "Luca Bianchi",
            "company": None,
            "line1": "Via Roma 12",
            "line2": None,
            "city": "Milano",
            "region": "MI",
            "postalCode": "20121",
            "country": "IT",
        },
        "billingAddress": {
            "name": "Luca Bianchi",
            "company": None,
            "line1": "Via Roma 12",
            "line2": None,
            "city": "Milano",
            "region": "MI",
            "postalCode": "20121",
            "country": "IT",
        },
        "lineItems": [
            {"sku": "SHOE-TRAIL-42", "name": "Trail running shoes, size 42", "quantity": 1, "unitPrice": 219.00},
            {"sku": "SOCK-MERINO-3", "name": "Merino socks (3 pairs)", "quantity": 1, "unitPrice": 21.50},
        ],
        "paymentInfo": {"method": "card", "status": "pending", "maskedCard": "************1881"},
        "customer": {
            "customerId": "C-502",
            "firstName": "Luca",
            "lastName": "Bianchi",
            "email": "luca.bianchi@gmail.com",
            "phone": None,
            "company": None,
        },
    },
)


# --------------------------------------------------------------------------- errors


def error_body(error: str, message: str | None = None, fields: Sequence[Mapping[str, str]] | None = None) -> dict:
    """Clarity's error shape: ``{"error": code, "message"?: ..., "fields"?: [{"field", "message"}]}``."""
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    if fields:
        body["fields"] = [dict(item) for item in fields]
    return body


def _fault_error_body(message: str) -> dict[str, Any]:
    """Error body for injected faults: the code is derived from the status's reason phrase."""
    if message == "Rate limit exceeded":
        return error_body("rate_limited", message)
    return error_body(re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_") or "error", message)


class ClarityError(Exception):
    """An API error answered as Clarity's JSON error body (also raised by the Python admin API)."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str | None = None,
        fields: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {message}" if message else f"{status} {error}")
        self.status = status
        self.error = error
        self.message = message
        self.fields = [dict(item) for item in fields or ()]
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.error, self.message, self.fields)

    def response(self) -> Response:
        return http.json_response(self.body(), status=self.status, headers=self.headers)


def _not_found(kind: str, key: str) -> ClarityError:
    return ClarityError(404, "not_found", f"{kind} {key} not found")


class _Problems:
    """Collects field problems so one 422 names every invalid field at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            names = ", ".join(item["field"] for item in self.items)
            raise ClarityError(422, "validation_failed", f"invalid fields: {names}", self.items)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def rfc3339(epoch_seconds: float) -> str:
    """UTC RFC 3339 with milliseconds and a ``Z`` suffix, e.g. ``2024-05-01T12:00:00.000Z``."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_unknown(body: Mapping[str, Any], allowed: Iterable[str], problems: _Problems, prefix: str = "") -> None:
    allowed = set(allowed)
    for key in body:
        if key not in allowed:
            problems.add(f"{prefix}{key}", "unknown field")


def _customer_changes(body: Mapping[str, Any], problems: _Problems, prefix: str = "") -> dict[str, Any]:
    """The writable customer fields of ``body``, type-checked; unknown keys are problems."""
    changes: dict[str, Any] = {}
    for key, value in body.items():
        path = f"{prefix}{key}"
        if key not in CUSTOMER_FIELDS:
            problems.add(path, "read-only field" if key in READ_ONLY_CUSTOMER_FIELDS else "unknown field")
        elif value is None and key in NULLABLE_CUSTOMER_FIELDS:
            changes[key] = None
        elif not isinstance(value, str):
            nullable = " or null" if key in NULLABLE_CUSTOMER_FIELDS else ""
            problems.add(path, f"must be a string{nullable}")
        elif key == "email" and "@" not in value:
            problems.add(path, "must be an email address (containing @)")
        else:
            changes[key] = value
    return changes


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookEvent:
    """One outgoing webhook: ``payload`` is the envelope ``{"type", "timestamp", "data"}``."""

    event_id: str
    type: str
    payload: dict[str, Any]

    @property
    def body(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class WebhookDelivery:
    """The final outcome of one event: delivered (2xx) or failed after every retry."""

    event_id: str
    type: str
    status_code: int | None  # the last HTTP status, None when the last attempt got no answer
    error: str | None  # None when delivered, else e.g. "HTTP 500" or "ConnectError: ..."
    attempts: int

    @property
    def delivered(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "type": self.type,
            "statusCode": self.status_code,
            "error": self.error,
            "attempts": self.attempts,
            "delivered": self.delivered,
        }


class WebhookOutbox:
    """Delivers events in order from one background thread, with retries; keeps events while no URL is set.

    The thread starts when there is work and ends when the queue is empty, so an idle sandbox
    holds no threads.
    """

    def __init__(
        self,
        secret: str,
        url: str | None = None,
        *,
        backoff: Sequence[float] = DEFAULT_WEBHOOK_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.secret = secret
        self._url = url
        self._backoff = tuple(backoff)
        self._transport = transport
        self._timeout = timeout
        self._cond = threading.Condition()
        self._queue: deque[WebhookEvent] = deque()
        self._parked: list[WebhookEvent] = []
        self._deliveries: list[WebhookDelivery] = []
        self._worker_running = False
        self._in_flight = False
        self._generation = 0
        self._to_lose = 0
        self._lost: list[WebhookEvent] = []

    @property
    def url(self) -> str | None:
        with self._cond:
            return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        """Set the receiver; events kept while there was none are delivered first, in order."""
        with self._cond:
            self._url = value
            if value is not None and self._parked:
                self._queue.extendleft(reversed(self._parked))
                self._parked.clear()
                self._start_worker()

    def lose_next(self, count: int = 1) -> None:
        """The next ``count`` events are never sent (a sender that crashed after the change was saved):
        nothing is delivered, retried or recorded as a delivery; ``lost`` lists them."""
        with self._cond:
            self._to_lose += count

    @property
    def lost(self) -> list[WebhookEvent]:
        with self._cond:
            return list(self._lost)

    def enqueue(self, event: WebhookEvent) -> None:
        with self._cond:
            if self._to_lose:
                self._to_lose -= 1
                self._lost.append(event)
                return
            if self._url is None and not self._queue and not self._in_flight:
                self._parked.append(event)
                return
            self._queue.append(event)
            self._start_worker()

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        with self._cond:
            return list(self._deliveries)

    @property
    def undelivered(self) -> list[WebhookEvent]:
        with self._cond:
            return list(self._parked)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + int(self._in_flight)

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until nothing is queued or in flight; True if, in addition, no event is kept undelivered."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._parked

    def clear(self) -> None:
        """Drop queued, kept and recorded events; an attempt in flight finishes but is not recorded."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._parked.clear()
            self._deliveries.clear()
            self._to_lose = 0
            self._lost.clear()
            self._cond.notify_all()

    def _start_worker(self) -> None:  # caller holds self._cond
        if not self._worker_running:
            self._worker_running = True
            threading.Thread(target=self._run, name="clarity-webhooks", daemon=True).start()

    def _run(self) -> None:
        with httpx.Client(transport=self._transport, timeout=self._timeout) as client:
            while True:
                with self._cond:
                    if not self._queue:
                        self._worker_running = False
                        self._cond.notify_all()
                        return
                    event, url, generation = self._queue.popleft(), self._url, self._generation
                    if url is None:  # the URL was unset while events were queued: keep them
                        self._parked.append(event)
                        self._cond.notify_all()
                        continue
                    self._in_flight = True
                record = None
                try:
                    record = self._deliver(client, event, url, generation)
                finally:
                    with self._cond:
                        self._in_flight = False
                        if record is not None and generation == self._generation:
                            self._deliveries.append(record)
                        self._cond.notify_all()

    def _deliver(self, client: httpx.Client, event: WebhookEvent, url: str, generation: int) -> WebhookDelivery | None:
        body = event.body
        status: int | None = None
        error: str | None = None
        attempts = 0
        for delay in (*self._backoff, None):
            attempts += 1
            # webhook-timestamp is the wall-clock time of this attempt (receivers check it against theirs).
            headers = {"content-type": "application/json", "user-agent": "Clarity-Webhooks/sandbox"}
            try:
                headers.update(sign(self.secret, event.event_id, int(time.time()), body))
                response = client.post(url, content=body, headers=headers)
                status = response.status_code
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except Exception as exc:  # connection errors, but also a bad URL or secret: never kill the worker
                status, error = None, f"{type(exc).__name__}: {exc}"
            if error is None or delay is None:
                break
            time.sleep(delay)
            with self._cond:
                if generation != self._generation:  # reset while retrying: abandon quietly
                    return None
        return WebhookDelivery(event.event_id, event.type, status, error, attempts)


# --------------------------------------------------------------------------- routing

_ROUTES = Map(
    [
        Rule(TOKEN_PATH, endpoint="token", methods=["POST"]),
        Rule("/api/v1/customers", endpoint="list_customers", methods=["GET"]),
        Rule("/api/v1/customers/<customer_id>", endpoint="get_customer", methods=["GET"]),
        Rule("/api/v1/products", endpoint="list_products", methods=["GET"]),
        Rule("/api/v1/products/<sku>", endpoint="get_product", methods=["GET"]),
        Rule("/api/v1/inventory", endpoint="list_inventory", methods=["GET"]),
        Rule("/api/v1/inventory/<sku>", endpoint="get_inventory", methods=["GET"]),
        Rule("/api/v1/customers/<customer_id>", endpoint="patch_customer", methods=["PATCH"]),
        Rule("/api/v1/orders", endpoint="list_orders", methods=["GET"]),
        Rule("/api/v1/orders/<order_id>", endpoint="get_order", methods=["GET"]),
        Rule("/api/v1/orders/<order_id>/status", endpoint="patch_order_status", methods=["PATCH"]),
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
        Rule("/_sandbox/orders", endpoint="admin_place_order", methods=["POST"]),
        Rule("/_sandbox/orders/<order_id>/status", endpoint="admin_order_status", methods=["POST"]),
        Rule("/_sandbox/customers", endpoint="admin_register_customer", methods=["POST"]),
        Rule("/_sandbox/customers/<customer_id>", endpoint="admin_update_customer", methods=["POST"]),
        Rule("/_sandbox/products/<sku>", endpoint="admin_put_product", methods=["PUT"]),
        Rule("/_sandbox/inventory/<sku>", endpoint="admin_set_stock", methods=["POST"]),
    ],
    strict_slashes=False,
)


@dataclass
class _State:
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # stored without the embedded customer
    products: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> product
    inventory: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> stock level
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (clock seconds)
    customer_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(FIRST_CUSTOMER_NUMBER))
    order_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(FIRST_ORDER_NUMBER))


def _entity_response(entity: dict[str, Any], status: int = 200) -> Response:
    return http.json_response(entity, status=status, headers={"ETag": f'"{entity["version"]}"'})


def _if_match(request: Request, version: int) -> None:
    """412 unless ``If-Match`` (absent, ``*``, or a list of versions, quoted or not) names ``version``."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    offered = [item.strip().removeprefix("W/").strip('"') for item in header.split(",")]
    if "*" in offered or str(version) in offered:
        return
    message = f"If-Match {header.strip()} does not match the current version {version}"
    raise ClarityError(412, "precondition_failed", message)


def _json_body(request: Request) -> dict[str, Any]:
    body = http.read_json_object(request)
    if body is None:
        raise ClarityError(400, "malformed_body", "the request body must be a JSON object")
    return body


def _changed_page(request: Request, entities: Iterable[dict[str, Any]], key: str) -> dict[str, Any]:
    """One page of ``entities`` changed at or after ``changedSince``, oldest first, ties by key.

    ``changedSince`` is inclusive (changes in the same millisecond as the watermark are normal) and
    the cursor is the position ``(updatedAt, key)`` of the page's last item, so paging neither skips
    nor repeats an entity that does not change meanwhile; one that changes moves to the end.
    """
    problems = _Problems()
    since_text = request.args.get("changedSince")
    since = None
    if since_text is not None:
        if _is_rfc3339(since_text):
            since = datetime.fromisoformat(since_text)
        else:
            problems.add("changedSince", "must be an RFC 3339 date-time with an offset")
    limit_text = request.args.get("limit", str(DEFAULT_PAGE_SIZE))
    limit = int(limit_text) if limit_text.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE_SIZE:
        problems.add("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    after: tuple[datetime, str] | None = None
    cursor = request.args.get("cursor")
    if cursor:
        try:
            stamp, _, last_key = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
            after = (datetime.fromisoformat(stamp), last_key)
        except ValueError:
            problems.add("cursor", "is not a cursor this endpoint gave out")
    _check_unknown(request.args, ("changedSince", "limit", "cursor"), problems)
    problems.raise_if_any()
    ordered = sorted(((datetime.fromisoformat(e["updatedAt"]), e[key], e) for e in entities),
                     key=lambda item: (item[0], item[1]))
    selected = [item for item in ordered
                if (since is None or item[0] >= since) and (after is None or (item[0], item[1]) > after)]
    page = selected[:limit]
    next_cursor = None
    if len(selected) > limit:
        last = page[-1][2]
        next_cursor = base64.urlsafe_b64encode(f"{last['updatedAt']}|{last[key]}".encode()).decode()
    return {"items": [copy.deepcopy(item[2]) for item in page], "nextCursor": next_cursor}


# --------------------------------------------------------------------------- the sandbox


class ClaritySandbox(http.SandboxApp):
    """In-memory Clarity eCommerce: a WSGI app (``wsgi_app``) that can also serve itself on a local port."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_url: str | None = None,
        token_ttl_seconds: int = 3600,
        *,
        clock: Callable[[], float] = time.time,
        webhook_backoff: Sequence[float] = DEFAULT_WEBHOOK_BACKOFF,
        webhook_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if token_ttl_seconds < 0:
            raise ValueError("token_ttl_seconds must not be negative")
        self.api_key = api_key
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_seconds = token_ttl_seconds
        self.clock = clock
        self.requests = http.RequestLog()
        self.faults = FaultInjector(error_body=_fault_error_body)
        self.outbox = WebhookOutbox(
            webhook_secret, webhook_url, backoff=webhook_backoff, transport=webhook_transport
        )
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self._state = _State()
        self._stop: Callable[[], None] | None = None

    # ----------------------------------------------------------------- webhooks

    @property
    def webhook_url(self) -> str | None:
        return self.outbox.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.outbox.url = value

    @property
    def webhook_secret(self) -> str:
        return self.outbox.secret

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Final outcome of every event sent so far, in order."""
        return self.outbox.deliveries

    @property
    def outbox_undelivered(self) -> list[WebhookEvent]:
        """Events kept because no ``webhook_url`` was set; setting one delivers them."""
        return self.outbox.undelivered

    def lose_next_webhooks(self, count: int = 1) -> None:
        """The next ``count`` changes send no webhook at all (only a sweep can find them); see ``lost_webhooks``."""
        self.outbox.lose_next(count)

    @property
    def lost_webhooks(self) -> list[WebhookEvent]:
        return self.outbox.lost

    def wait_for_webhooks(self, timeout: float = 5) -> bool:
        """Block until every emitted event was delivered or failed; False on timeout or kept events."""
        return self.outbox.wait(timeout)

    # ----------------------------------------------------------------- inspection

    def reset(self) -> None:
        """Forget all data, tokens, recorded requests, faults and webhook events."""
        with self._lock:
            self._state = _State()
            self.outbox.clear()
        self.requests.clear()
        self.faults.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything a test or the demo wants to assert on, as JSON-ready data."""
        with self._lock:
            customers = copy.deepcopy(list(self._state.customers.values()))
            orders = [self._order_summary(order) for order in self._state.orders.values()]
            products = copy.deepcopy(list(self._state.products.values()))
            inventory = copy.deepcopy(list(self._state.inventory.values()))
        return {
            "customers": customers,
            "orders": orders,
            "products": products,
            "inventory": inventory,
            "webhookDeliveries": [delivery.to_dict() for delivery in self.outbox.deliveries],
            "webhooksPending": self.outbox.pending,
            "webhooksUndelivered": [{"eventId": e.event_id, "type": e.type} for e in self.outbox.undelivered],
        }

    def _order_summary(self, order: dict[str, Any]) -> dict[str, Any]:
        customer = self._state.customers.get(order["customerId"], {})
        return {
            "orderId": order["orderId"],
            "customerId": order["customerId"],
            "customerEmail": customer.get("email"),
            "status": order["status"],
            "paymentStatus": order["paymentInfo"]["status"],
            "totalAmount": order["totalAmount"],
            "currency": order["currency"],
            "version": order["version"],
            "statusHistory": copy.deepcopy(order["statusHistory"]),
        }

    # ----------------------------------------------------------------- Python admin API (Clarity's own UI)

    def place_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """A shopper completes a purchase: assigns orderId/version/updatedAt, emits ``order.created``."""
        with self._lock:
            return self._place_order(order)

    def set_order_status(self, order_id: str, status: str, note: str | None = None) -> dict[str, Any]:
        """An admin changes the status in Clarity's UI (same rules as the API); emits ``order.status_changed``."""
        with self._lock:
            return self._change_status(order_id, {"status": status, "note": note}, by="admin")

    def update_customer(self, customer_id: str, **changes: Any) -> dict[str, Any]:
        """The customer edits their profile (same rules as the API); emits ``customer.updated``."""
        with self._lock:
            return self._update_customer(customer_id, changes)

    def register_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """A shopper creates an account (``customerId`` optional, ``email`` required); emits ``customer.created``."""
        with self._lock:
            return self._register_customer(customer)

    def put_product(self, sku: str, **fields: Any) -> dict[str, Any]:
        """A merchandiser creates or edits a product; emits ``product.created`` or ``product.updated``."""
        with self._lock:
            return self._put_product(sku, fields)

    def set_stock(self, sku: str, quantity_on_hand: int) -> dict[str, Any]:
        """The warehouse counts a product's stock; emits ``inventory.changed`` when it changed."""
        with self._lock:
            return self._set_stock(sku, {"quantityOnHand": quantity_on_hand})

    def get_product(self, sku: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._product(sku))

    def get_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return self._render_order(self._order(order_id))

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._customer(customer_id))

    # ----------------------------------------------------------------- WSGI plumbing

    def _handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith(API_PREFIX) or path.rstrip("/") == TOKEN_PATH:
            fault = self.faults.apply(request)
            if fault is not None:
                if fault.status_code == 429 and "Retry-After" not in fault.headers:
                    fault.headers["Retry-After"] = "1"  # the contract promises Retry-After on every 429
                return fault
        try:
            with self._lock:
                if path.startswith(API_PREFIX):
                    self._authenticate(request)
                endpoint, values = _ROUTES.bind("clarity").match(path, request.method)
                return getattr(self, f"_ep_{endpoint}")(request, **values)
        except ClarityError as error:
            return error.response()
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(error.valid_methods or ()))
            return ClarityError(
                405, "method_not_allowed", f"{request.method} is not allowed here", headers={"Allow": allowed}
            ).response()
        except HTTPException:
            return ClarityError(404, "not_found", f"no such endpoint: {path}").response()

    def _authenticate(self, request: Request) -> None:
        auth = request.authorization
        if auth is not None and auth.type == "bearer":
            expires_at = self._state.tokens.get(auth.token or "")
            if expires_at is None or self.clock() >= expires_at:
                raise ClarityError(
                    401,
                    "invalid_token",
                    "the access token is unknown or expired; request a new one",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            return
        key = request.headers.get("X-Api-Key")
        if key is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ClarityError(
                401,
                "unauthorized",
                "send X-Api-Key or Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="clarity"'},
            )

    # ----------------------------------------------------------------- lookups and rendering

    def _customer(self, customer_id: str) -> dict[str, Any]:
        if customer_id not in self._state.customers:
            raise _not_found("customer", customer_id)
        return self._state.customers[customer_id]

    def _order(self, order_id: str) -> dict[str, Any]:
        if order_id not in self._state.orders:
            raise _not_found("order", order_id)
        return self._state.orders[order_id]

    def _render_order(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order as the API shows it: the customer embedded as it is now."""
        rendered = copy.deepcopy(order)
        customer = copy.deepcopy(self._state.customers[order["customerId"]])
        version, updated_at, history = rendered.pop("version"), rendered.pop("updatedAt"), rendered.pop("statusHistory")
        rendered.update(customer=customer, statusHistory=history, updatedAt=updated_at, version=version)
        return rendered

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _emit(self, event_type: str, timestamp: str, data: dict[str, Any]) -> None:
        # Called with the state lock held, so events are queued in the order the changes happened.
        event = WebhookEvent(f"msg_{uuid.uuid4().hex}", event_type, {"type": event_type, "timestamp": timestamp,
                                                                    "data": data})
        self.outbox.enqueue(event)

    # ----------------------------------------------------------------- OAuth2

    def _ep_token(self, request: Request) -> Response:
        form = request.form
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, client_secret = auth.username, auth.password
        else:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            raise ClarityError(401, "invalid_client", "unknown client or wrong secret",
                               headers={"WWW-Authenticate": 'Basic realm="clarity"'})
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise ClarityError(400, "invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise ClarityError(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        now = self.clock()
        self._state.tokens = {token: exp for token, exp in self._state.tokens.items() if exp > now}
        token = secrets.token_urlsafe(32)
        self._state.tokens[token] = now + self.token_ttl_seconds
        payload = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl_seconds,
            "scope": TOKEN_SCOPE,
        }
        return http.json_response(payload, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # ----------------------------------------------------------------- customers

    def _ep_get_customer(self, request: Request, customer_id: str) -> Response:
        return _entity_response(copy.deepcopy(self._customer(customer_id)))

    def _ep_patch_customer(self, request: Request, customer_id: str) -> Response:
        _if_match(request, self._customer(customer_id)["version"])
        return _entity_response(self._update_customer(customer_id, _json_body(request)))

    def _update_customer(self, customer_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        problems = _Problems()
        changes = _customer_changes(body, problems)
        problems.raise_if_any()
        self._apply_customer_changes(customer, changes, self._now())
        return copy.deepcopy(customer)

    def _apply_customer_changes(self, customer: dict[str, Any], changes: Mapping[str, Any], now: str) -> bool:
        """Apply real changes (bump version, emit ``customer.updated``); False when nothing changed."""
        real = {key: value for key, value in changes.items() if customer.get(key) != value}
        if not real:
            return False
        customer.update(real)
        customer["fieldUpdatedAt"] = {**customer.get("fieldUpdatedAt", {}), **dict.fromkeys(real, now)}
        customer["updatedAt"] = now
        customer["version"] += 1
        self._emit("customer.updated", now, copy.deepcopy(customer))
        return True

    # ----------------------------------------------------------------- orders

    def _ep_get_order(self, request: Request, order_id: str) -> Response:
        return _entity_response(self._render_order(self._order(order_id)))

    def _ep_patch_order_status(self, request: Request, order_id: str) -> Response:
        _if_match(request, self._order(order_id)["version"])
        return _entity_response(self._change_status(order_id, _json_body(request), by="api"))

    def _change_status(self, order_id: str, body: Mapping[str, Any], by: str) -> dict[str, Any]:
        order = self._order(order_id)
        problems = _Problems()
        _check_unknown(body, ("status", "note"), problems)
        status, note = body.get("status"), body.get("note")
        if status not in ORDER_STATUSES:
            problems.add("status", f"must be one of {', '.join(ORDER_STATUSES)}")
        if note is not None and not isinstance(note, str):
            problems.add("note", "must be a string or null")
        problems.raise_if_any()
        previous = order["status"]
        if status == previous:
            return self._render_order(order)
        if previous in TERMINAL_STATUSES:
            raise ClarityError(409, "invalid_transition", f"order {order_id} is {previous}, a final status")
        allowed = RESTRICTED_TRANSITIONS.get(previous)
        if allowed is not None and status not in allowed:
            raise ClarityError(
                409, "invalid_transition", f"a {previous} order can only become {', '.join(sorted(allowed))}"
            )
        now = self._now()
        order["status"] = status
        if status == "refunded" and order["paymentInfo"]["status"] == "paid":
            order["paymentInfo"]["status"] = "refunded"
        order["statusHistory"].append({"status": status, "at": now, "note": note, "by": by})
        order["updatedAt"] = now
        order["version"] += 1
        rendered = self._render_order(order)
        self._emit("order.status_changed", now, {**copy.deepcopy(rendered), "previousStatus": previous})
        return rendered

    def _place_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        order_input, customer_id, customer_changes = self._validate_order_input(body)
        now = self._now()
        customer = self._state.customers.get(customer_id)
        if customer is None:
            customer = {"customerId": customer_id, "firstName": "", "lastName": "", "email": "",
                        "phone": None, "company": None}
            customer.update(customer_changes, fieldUpdatedAt=dict.fromkeys(CUSTOMER_FIELDS, now), updatedAt=now,
                            version=1)
            self._state.customers[customer_id] = customer
        else:
            self._apply_customer_changes(customer, customer_changes, now)
        order_id = f"CL-{next(self._state.order_numbers)}"
        status = order_input.get("status", "pending")
        order = {
            "orderId": order_id,
            "customerId": customer_id,
            "orderDate": order_input.get("orderDate", now),
            "status": status,
            "totalAmount": order_input["totalAmount"],
            "currency": order_input["currency"],
            "shippingAddress": copy.deepcopy(order_input["shippingAddress"]),
            "billingAddress": copy.deepcopy(order_input["billingAddress"]),
            "lineItems": [dict(item) for item in order_input["lineItems"]],
            "paymentInfo": {name: order_input["paymentInfo"].get(name) for name in PAYMENT_FIELDS},
            "statusHistory": [{"status": status, "at": now, "note": None, "by": "shopper"}],
            "updatedAt": now,
            "version": 1,
        }
        self._state.orders[order_id] = order
        rendered = self._render_order(order)
        self._emit("order.created", now, copy.deepcopy(rendered))
        return rendered

    def _validate_order_input(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """Check a placed order; return it, the customer id to use, and the customer fields given."""
        problems = _Problems()
        if not isinstance(body, Mapping):
            raise ClarityError(400, "malformed_body", "the order must be a JSON object")
        for key in body:
            if key in ASSIGNED_ORDER_FIELDS:
                problems.add(key, "assigned by Clarity; leave it out")
            elif key not in ORDER_INPUT_FIELDS:
                problems.add(key, "unknown field")
        if "status" in body and body["status"] not in ORDER_STATUSES:
            problems.add("status", f"must be one of {', '.join(ORDER_STATUSES)}")
        if "orderDate" in body and not _is_rfc3339(body["orderDate"]):
            problems.add("orderDate", "must be an RFC 3339 date-time with an offset")
        if not _is_number(body.get("totalAmount")) or body["totalAmount"] < 0:
            problems.add("totalAmount", "must be a non-negative number")
        if not isinstance(body.get("currency"), str) or not CURRENCY_PATTERN.match(body["currency"]):
            problems.add("currency", "must be an ISO 4217 code like USD")
        for name in ("shippingAddress", "billingAddress"):
            if not isinstance(body.get(name), dict):
                problems.add(name, "must be an object")
        self._check_line_items(body.get("lineItems"), problems)
        self._check_payment(body.get("paymentInfo"), problems)
        customer_id, changes = self._check_order_customer(body, problems)
        problems.raise_if_any()
        if customer_id is None:
            customer_id = self._new_customer_id()
        return dict(body), customer_id, changes

    @staticmethod
    def _check_line_items(items: Any, problems: _Problems) -> None:
        if not isinstance(items, list) or not items:
            problems.add("lineItems", "must be a non-empty list")
            return
        for index, item in enumerate(items):
            path = f"lineItems[{index}]"
            if not isinstance(item, dict):
                problems.add(path, "must be an object")
                continue
            _check_unknown(item, LINE_ITEM_FIELDS, problems, f"{path}.")
            if not isinstance(item.get("sku"), str) or not item["sku"].strip():
                problems.add(f"{path}.sku", "must be a non-empty string")
            if not isinstance(item.get("name"), str):
                problems.add(f"{path}.name", "must be a string")
            quantity = item.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                problems.add(f"{path}.quantity", "must be a positive integer")
            if not _is_number(item.get("unitPrice")) or item["unitPrice"] < 0:
                problems.add(f"{path}.unitPrice", "must be a non-negative number")

    @staticmethod
    def _check_payment(payment: Any, problems: _Problems) -> None:
        if not isinstance(payment, dict):
            problems.add("paymentInfo", "must be an object")
            return
        _check_unknown(payment, PAYMENT_FIELDS, problems, "paymentInfo.")
        if not isinstance(payment.get("method"), str) or not payment["method"].strip():
            problems.add("paymentInfo.method", "must be a non-empty string")
        if payment.get("status") not in PAYMENT_STATUSES:
            problems.add("paymentInfo.status", f"must be one of {', '.join(PAYMENT_STATUSES)}")
        if payment.get("maskedCard") is not None and not isinstance(payment["maskedCard"], str):
            problems.add("paymentInfo.maskedCard", "must be a string or null")

    def _check_order_customer(self, body: Mapping[str, Any], problems: _Problems) -> tuple[str | None, dict[str, Any]]:
        customer = body.get("customer")
        if not isinstance(customer, dict):
            problems.add("customer", "must be an object")
            return None, {}
        ids = [value for value in (body.get("customerId"), customer.get("customerId")) if value is not None]
        if any(not isinstance(value, str) or not value.strip() for value in ids):
            problems.add("customerId", "must be a non-empty string")
            return None, {}
        if len(set(ids)) > 1:
            problems.add("customerId", "differs from customer.customerId")
        customer_id = ids[0] if ids else None
        changes = _customer_changes(
            {key: value for key, value in customer.items() if key != "customerId"}, problems, "customer."
        )
        if customer_id not in self._state.customers and "email" not in customer:
            problems.add("customer.email", "is required for a new customer")
        return customer_id, changes

    def _new_customer_id(self) -> str:
        while True:
            candidate = f"C-{next(self._state.customer_numbers)}"
            if candidate not in self._state.customers:
                return candidate

    # ----------------------------------------------------------------- registration, products, stock

    def _register_customer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ClarityError(400, "malformed_body", "the customer must be a JSON object")
        problems = _Problems()
        customer_id = body.get("customerId")
        if customer_id is not None and (not isinstance(customer_id, str) or not customer_id.strip()
                                        or len(customer_id) > 64):
            problems.add("customerId", "must be a non-empty string of at most 64 characters")
        elif customer_id in self._state.customers:
            problems.add("customerId", "is taken")
        changes = _customer_changes({k: v for k, v in body.items() if k != "customerId"}, problems)
        if "email" not in changes:
            problems.add("email", "is required")
        problems.raise_if_any()
        now = self._now()
        customer_id = customer_id or self._new_customer_id()
        customer = {"customerId": customer_id, "firstName": "", "lastName": "", "email": "",
                    "phone": None, "company": None}
        customer.update(changes, fieldUpdatedAt=dict.fromkeys(CUSTOMER_FIELDS, now), updatedAt=now, version=1)
        self._state.customers[customer_id] = customer
        self._emit("customer.created", now, copy.deepcopy(customer))
        return copy.deepcopy(customer)

    def _product(self, sku: str) -> dict[str, Any]:
        if sku not in self._state.products:
            raise _not_found("product", sku)
        return self._state.products[sku]

    def _put_product(self, sku: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ClarityError(400, "malformed_body", "the product must be a JSON object")
        problems = _Problems()
        if not SKU_PATTERN.match(sku):
            problems.add("sku", "must be 1-64 characters without leading or trailing whitespace")
        existing = self._state.products.get(sku)
        for key, value in body.items():
            if key not in PRODUCT_FIELDS:
                read_only = key in ("sku", "version", "updatedAt")
                problems.add(key, "read-only field" if read_only else "unknown field")
            elif key == "name" and (not isinstance(value, str) or not value.strip() or len(value) > 400):
                problems.add(key, "must be a non-empty string of at most 400 characters")
            elif key == "price" and (not _is_number(value) or value < 0 or value >= 1e14):
                problems.add(key, "must be a non-negative number")
            elif key == "currency" and (not isinstance(value, str) or not CURRENCY_PATTERN.match(value)):
                problems.add(key, "must be an ISO 4217 code like USD")
            elif key == "active" and not isinstance(value, bool):
                problems.add(key, "must be true or false")
        if existing is None:
            for required in ("name", "price", "currency"):
                if required not in body:
                    problems.add(required, "is required for a new product")
        problems.raise_if_any()
        now = self._now()
        if existing is None:
            product = {"sku": sku, "name": body["name"], "price": body["price"], "currency": body["currency"],
                       "active": body.get("active", True), "updatedAt": now, "version": 1}
            self._state.products[sku] = product
            self._emit("product.created", now, copy.deepcopy(product))
            return copy.deepcopy(product)
        real = {key: value for key, value in body.items() if existing.get(key) != value}
        if real:
            existing.update(real, updatedAt=now, version=existing["version"] + 1)
            self._emit("product.updated", now, copy.deepcopy(existing))
        return copy.deepcopy(existing)

    def _inventory(self, sku: str) -> dict[str, Any]:
        if sku not in self._state.inventory:
            self._product(sku)  # 404 for an unknown product
            return {"sku": sku, "quantityOnHand": 0, "updatedAt": self._product(sku)["updatedAt"], "version": 0}
        return self._state.inventory[sku]

    def _set_stock(self, sku: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._product(sku)
        problems = _Problems()
        _check_unknown(body, INVENTORY_FIELDS, problems)
        quantity = body.get("quantityOnHand")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or abs(quantity) > MAX_STOCK:
            problems.add("quantityOnHand", "must be an integer (negative when oversold)")
        problems.raise_if_any()
        current = self._state.inventory.get(sku)
        if current is not None and current["quantityOnHand"] == quantity:
            return copy.deepcopy(current)
        now = self._now()
        version = (current["version"] if current else 0) + 1
        level = {"sku": sku, "quantityOnHand": quantity, "updatedAt": now, "version": version}
        self._state.inventory[sku] = level
        self._emit("inventory.changed", now, copy.deepcopy(level))
        return copy.deepcopy(level)

    def _ep_get_product(self, request: Request, sku: str) -> Response:
        return _entity_response(copy.deepcopy(self._product(sku)))

    def _ep_get_inventory(self, request: Request, sku: str) -> Response:
        return _entity_response(copy.deepcopy(self._inventory(sku)))

    def _ep_list_orders(self, request: Request) -> Response:
        orders = [self._render_order(order) for order in self._state.orders.values()]
        return http.json_response(_changed_page(request, orders, "orderId"))

    def _ep_list_customers(self, request: Request) -> Response:
        return http.json_response(_changed_page(request, self._state.customers.values(), "customerId"))

    def _ep_list_products(self, request: Request) -> Response:
        return http.json_response(_changed_page(request, self._state.products.values(), "sku"))

    def _ep_list_inventory(self, request: Request) -> Response:
        return http.json_response(_changed_page(request, self._state.inventory.values(), "sku"))

    # ----------------------------------------------------------------- admin (no auth, no faults)

    def _ep_admin_state(self, request: Request) -> Response:
        return http.json_response(self.snapshot())

    def _ep_admin_reset(self, request: Request) -> Response:
        self.reset()
        return http.json_response({"ok": True})

    def _ep_admin_set_faults(self, request: Request) -> Response:
        try:
            self.faults.configure(_json_body(request))
        except (TypeError, ValueError) as error:
            raise ClarityError(400, "invalid_fault_plan", str(error)) from error
        return http.json_response({"ok": True, "plan": self.faults.plan.to_dict()})

    def _ep_admin_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return http.json_response({"ok": True})

    def _ep_admin_place_order(self, request: Request) -> Response:
        return _entity_response(self._place_order(_json_body(request)), status=201)

    def _ep_admin_order_status(self, request: Request, order_id: str) -> Response:
        return _entity_response(self._change_status(order_id, _json_body(request), by="admin"))

    def _ep_admin_register_customer(self, request: Request) -> Response:
        return _entity_response(self._register_customer(_json_body(request)), status=201)

    def _ep_admin_put_product(self, request: Request, sku: str) -> Response:
        return _entity_response(self._put_product(sku, _json_body(request)))

    def _ep_admin_set_stock(self, request: Request, sku: str) -> Response:
        return _entity_response(self._set_stock(sku, _json_body(request)))

    def _ep_admin_update_customer(self, request: Request, customer_id: str) -> Response:
        return _entity_response(self._update_customer(customer_id, _json_body(request)))
