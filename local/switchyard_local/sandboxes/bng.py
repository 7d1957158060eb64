"""Stateful in-memory BNG ERP sandbox implementing the API contract Switchyard expects (docs/bng-contract.md).

BNG publishes no API, so Switchyard defines the contract and this sandbox implements exactly that: API-key
auth, customers unique by ``ExternalID``, sales orders unique by ``ExternalOrderID`` with lines, totals to
the cent in the currency's precision, custom fields and GL dimensions, the order lifecycle ('New',
'Released', 'Shipped', 'Invoiced', 'Cancelled'), shipments with carrier and tracking number, products with
attributes and on-hand quantity, inventory transactions, a published rate limit (429 + ``Retry-After``),
fault injection (5xx, slow and late answers), list-changed-since endpoints with cursors, and Standard
Webhooks signed events for order status, shipment and inventory changes.

Usage::

    with BngSandbox(webhook_url=receiver_url) as bng:          # serves on 127.0.0.1:<free port>
        bng.add_product("DESK-180", "Standing desk", on_hand=12)
        client = httpx.Client(base_url=bng.base_url, headers={"X-Api-Key": "bng-key"})
        client.post("/api/v1/customers", json={"ExternalID": "nop-customer-7", "Name": "Acme", ...})
        bng.ship_order("SO-50001", carrier="UPS", tracking_number="1Z999")   # the warehouse ships

or in-process: ``httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), ...)``.
"""

from __future__ import annotations

import copy
import hmac
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from switchyard.systems.bng.source import change_id
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.clarity import WebhookDelivery, WebhookEvent, WebhookOutbox
from switchyard_local.sandboxes.faults import FaultInjector

DEFAULT_API_KEY = "bng-key"
API_KEY_HEADER = "X-Api-Key"
# "whsec_" + base64 of b"switchyard-bng-sandbox-signing-key!!!!!": a valid Standard Webhooks secret.
DEFAULT_WEBHOOK_SECRET = "whsec_c3dpdGNoeWFyZC1ibmctc2FuZGJveC1zaWduaW5nLWtleSEhISEh"
DEFAULT_API_PREFIX = "/api/v1"
DEFAULT_RATE_LIMIT = 120  # requests per API key ...
DEFAULT_RATE_WINDOW_SECONDS = 60  # ... per fixed window (published: X-RateLimit-* headers)
DEFAULT_WEBHOOK_BACKOFF = (0.2, 0.5, 1.0)
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 100

ORDER_STATUSES = ("New", "Released", "Shipped", "Invoiced", "Cancelled")
TRANSITIONS: dict[str, frozenset[str]] = {
    "New": frozenset({"Released", "Cancelled"}),
    "Released": frozenset({"Shipped", "Cancelled"}),
    "Shipped": frozenset({"Invoiced"}),
    "Invoiced": frozenset(),
    "Cancelled": frozenset(),
}
CUSTOMER_TYPES = ("Business", "Consumer")
INVENTORY_TYPES = ("Sale", "Return", "Purchase", "Adjustment")
# ISO 4217 minor units of the currencies whose precision is not 2 (every other code has 2)
CURRENCY_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
                      "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3}
COUNTRY = re.compile(r"^[A-Z]{2}$")
SUBDIVISION = re.compile(r"^(?P<country>[A-Z]{2})-[A-Z0-9]{1,3}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TEXT = 200
MAX_ID = 64
MAX_LINES = 500
MAX_CUSTOM_FIELDS = 50

CUSTOMER_FIELDS = ("ExternalID", "Name", "Email", "Phone", "Type", "BillingAddress", "ShippingAddress",
                   "CustomFields")
ADDRESS_FIELDS = ("Name", "Company", "Line1", "Line2", "City", "State", "PostalCode", "Country")
ORDER_FIELDS = ("ExternalOrderID", "CustomerID", "OrderDate", "Currency", "Lines", "ShippingAddress",
                "BillingAddress", "Totals", "CustomFields", "GLDimensions", "Reference")
LINE_FIELDS = ("ProductID", "SKU", "Description", "Quantity", "UnitPrice", "ExternalLineID")
TOTAL_FIELDS = ("Shipping", "Tax", "Discount", "Total")


# --------------------------------------------------------------------------- errors


def error_body(error: str, message: str, fields: Sequence[Mapping[str, str]] | None = None,
               **extra: Any) -> dict[str, Any]:
    """BNG's error shape: ``{"error": code, "message", "fields"?: [{"field", "message"}], ...}``."""
    body: dict[str, Any] = {"error": error, "message": message}
    if fields:
        body["fields"] = [dict(item) for item in fields]
    body.update(extra)
    return body


def _fault_error_body(message: str) -> dict[str, Any]:
    if message == "Rate limit exceeded":
        return error_body("rate_limited", message)
    return error_body(re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_") or "error", message)


class BngError(Exception):
    """An API error answered as BNG's JSON error body (also raised by the Python back-office API)."""

    def __init__(self, status: int, error: str, message: str, fields: Sequence[Mapping[str, str]] | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.fields = [dict(item) for item in fields or ()]
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> Response:
        return http.json_response(error_body(self.error, self.message, self.fields, **self.extra),
                                  status=self.status, headers=self.headers)


class _Problems:
    """Collects field problems so one 422 names every invalid field at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path, "message": message})

    def raise_if_any(self, error: str = "validation_failed") -> None:
        if self.items:
            summary = "; ".join(f"{item['field']}: {item['message']}" for item in self.items)
            raise BngError(422, error, summary, self.items)


def rfc3339(epoch_seconds: float) -> str:
    """UTC RFC 3339 with milliseconds and ``Z``, e.g. ``2026-12-03T12:00:00.000Z``."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def currency_exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)


def _money(value: Any, currency: str, path: str, problems: _Problems, *, allow_negative: bool = False) -> Decimal:
    """A money amount (JSON string or number) with at most the currency's decimals."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.add(path, "must be a decimal string or number")
        return Decimal(0)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        problems.add(path, "must be a decimal string or number")
        return Decimal(0)
    if not amount.is_finite() or (amount < 0 and not allow_negative) or abs(amount) >= Decimal(10) ** 14:
        problems.add(path, "must be a non-negative amount below 10^14")
        return Decimal(0)
    exponent = currency_exponent(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-exponent)):
        problems.add(path, f"has more than {exponent} decimals, the precision of {currency}")
    return amount


def _amount_text(amount: Decimal, currency: str) -> str:
    return str(amount.quantize(Decimal(1).scaleb(-currency_exponent(currency))))


def _text(value: Any, path: str, problems: _Problems, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        if required:
            problems.add(path, "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        problems.add(path, "must be a non-empty string" if required else "must be a string or null")
        return None
    if len(value) > limit:
        problems.add(path, f"must be at most {limit} characters")
    if value != value.strip():
        problems.add(path, "must not start or end with whitespace")
    return value


def _unknown(body: Mapping[str, Any], allowed: Iterable[str], problems: _Problems, prefix: str = "") -> None:
    allowed = set(allowed)
    for key in body:
        if key not in allowed:
            problems.add(f"{prefix}{key}", "unknown field")


def _address(value: Any, path: str, problems: _Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(path, "must be an object or null")
        return None
    _unknown(value, ADDRESS_FIELDS, problems, f"{path}.")
    for name in ("Name", "Company", "Line2"):
        _text(value.get(name), f"{path}.{name}", problems)
    for name in ("Line1", "City", "Country"):
        _text(value.get(name), f"{path}.{name}", problems, required=True)
    country = value.get("Country")
    if isinstance(country, str) and not COUNTRY.fullmatch(country):
        problems.add(f"{path}.Country", "must be an ISO 3166-1 alpha-2 code such as US")
    state = value.get("State")
    if state is not None:
        matched = SUBDIVISION.fullmatch(state) if isinstance(state, str) else None
        if matched is None:
            problems.add(f"{path}.State", "must be an ISO 3166-2 subdivision code such as US-IL")
        elif isinstance(country, str) and matched.group("country") != country:
            problems.add(f"{path}.State", f"{state} is not a subdivision of {country}")
    postal = value.get("PostalCode")
    _text(postal, f"{path}.PostalCode", problems, limit=20)
    return {name: value.get(name) for name in ADDRESS_FIELDS}


def _custom_fields(value: Any, path: str, problems: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_CUSTOM_FIELDS:
        problems.add(path, f"must be an object of at most {MAX_CUSTOM_FIELDS} fields")
        return {}
    for key, item in value.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", key):
            problems.add(f"{path}.{key}", "names are letters, digits and _ (at most 64), starting with a letter")
        elif item is not None and (isinstance(item, dict | list) or (isinstance(item, str) and len(item) > 400)):
            problems.add(f"{path}.{key}", "must be a string (at most 400), number, boolean or null")
    return dict(value)


# --------------------------------------------------------------------------- state


@dataclass
class _State:
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    shipments: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # API key -> (window start, requests in it)
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)


def _routes(prefix: str) -> Map:
    return Map([
        Rule(f"{prefix}/customers", endpoint="list_customers", methods=["GET"]),
        Rule(f"{prefix}/customers", endpoint="create_customer", methods=["POST"]),
        Rule(f"{prefix}/customers/<customer_id>", endpoint="get_customer", methods=["GET"]),
        Rule(f"{prefix}/customers/<customer_id>", endpoint="patch_customer", methods=["PATCH"]),
        Rule(f"{prefix}/sales-orders", endpoint="list_orders", methods=["GET"]),
        Rule(f"{prefix}/sales-orders", endpoint="create_order", methods=["POST"]),
        Rule(f"{prefix}/sales-orders/<order_id>", endpoint="get_order", methods=["GET"]),
        Rule(f"{prefix}/sales-orders/<order_id>/cancel", endpoint="cancel_order", methods=["POST"]),
        Rule(f"{prefix}/shipments", endpoint="list_shipments", methods=["GET"]),
        Rule(f"{prefix}/shipments/<shipment_id>", endpoint="get_shipment", methods=["GET"]),
        Rule(f"{prefix}/products", endpoint="list_products", methods=["GET"]),
        Rule(f"{prefix}/products/<product_id>", endpoint="get_product", methods=["GET"]),
        Rule(f"{prefix}/inventory-transactions", endpoint="list_transactions", methods=["GET"]),
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
        Rule("/_sandbox/products", endpoint="admin_add_product", methods=["POST"]),
        Rule("/_sandbox/sales-orders/<order_id>/release", endpoint="admin_release", methods=["POST"]),
        Rule("/_sandbox/sales-orders/<order_id>/ship", endpoint="admin_ship", methods=["POST"]),
        Rule("/_sandbox/sales-orders/<order_id>/invoice", endpoint="admin_invoice", methods=["POST"]),
        Rule("/_sandbox/inventory", endpoint="admin_inventory", methods=["POST"]),
    ], strict_slashes=False)


# --------------------------------------------------------------------------- the sandbox


class BngSandbox(http.SandboxApp):
    """In-memory BNG: a WSGI app (``wsgi_app``) that can also serve itself on a local port."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_url: str | None = None,
        *,
        api_prefix: str = DEFAULT_API_PREFIX,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_window_seconds: int = DEFAULT_RATE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        webhook_backoff: Sequence[float] = DEFAULT_WEBHOOK_BACKOFF,
        webhook_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if rate_limit < 1 or rate_window_seconds < 1:
            raise ValueError("rate_limit and rate_window_seconds must be positive")
        self.api_key = api_key
        self.api_prefix = "/" + api_prefix.strip("/")
        self.rate_limit = rate_limit
        self.rate_window_seconds = rate_window_seconds
        self.clock = clock
        self.requests = http.RequestLog()
        self.faults = FaultInjector(error_body=_fault_error_body)
        self.outbox = WebhookOutbox(webhook_secret, webhook_url, backoff=webhook_backoff, transport=webhook_transport)
        self.base_url: str | None = None
        self._routes = _routes(self.api_prefix)
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
        return self.outbox.deliveries

    def wait_for_webhooks(self, timeout: float = 5) -> bool:
        return self.outbox.wait(timeout)

    # ----------------------------------------------------------------- inspection

    def reset(self) -> None:
        """Forget all data, rate-limit windows, recorded requests, faults and webhook events."""
        with self._lock:
            self._state = _State()
            self.outbox.clear()
        self.requests.clear()
        self.faults.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state = copy.deepcopy(self._state)
        return {
            "customers": list(state.customers.values()),
            "salesOrders": list(state.orders.values()),
            "shipments": list(state.shipments.values()),
            "products": list(state.products.values()),
            "inventoryTransactions": list(state.transactions.values()),
            "webhookDeliveries": [delivery.to_dict() for delivery in self.outbox.deliveries],
            "webhooksPending": self.outbox.pending,
        }

    def customers(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._state.customers.values()))

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._state.orders.values()))

    def order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._order(order_id))

    def order_by_external_id(self, external_order_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._find(self._state.orders, "ExternalOrderID", external_order_id)
            return copy.deepcopy(found)

    def product(self, sku: str) -> dict[str, Any]:
        with self._lock:
            found = self._product_by_sku(sku)
            if found is None:
                raise BngError(404, "not_found", f"product {sku} not found")
            return copy.deepcopy(found)

    # ----------------------------------------------------------------- back office (Python admin API)

    def add_product(self, sku: str, name: str, *, on_hand: int = 0, attributes: Mapping[str, Any] | None = None,
                    unit_price: str = "0.00") -> dict[str, Any]:
        """A product is set up in BNG (products are mastered there)."""
        with self._lock:
            if self._product_by_sku(sku) is not None:
                raise BngError(409, "duplicate_sku", f"a product with SKU {sku} exists")
            now = self._now()
            product_id = f"P-{1000 + next(self._state.numbers)}"
            product = {"ProductID": product_id, "SKU": sku, "Name": name, "UnitPrice": unit_price,
                       "Attributes": dict(attributes or {}), "OnHand": int(on_hand), "UpdatedAt": now, "Version": 1}
            self._state.products[product_id] = product
            self._emit_product(product)
            return copy.deepcopy(product)

    def set_product_attributes(self, sku: str, **attributes: Any) -> dict[str, Any]:
        """Product attributes edited in BNG: a new version, ``product.changed`` is sent."""
        with self._lock:
            product = self._product_by_sku(sku)
            if product is None:
                raise BngError(404, "not_found", f"product {sku} not found")
            product["Attributes"] = {**product["Attributes"], **attributes}
            self._touch(product)
            self._emit_product(product)
            return copy.deepcopy(product)

    def _emit_product(self, product: dict[str, Any]) -> None:
        self._emit("product.changed", product["UpdatedAt"], copy.deepcopy(product),
                   entity=("product", product, "ProductID"))

    def record_inventory(self, sku: str, quantity: int, kind: str = "Purchase", reference: str | None = None) -> dict:
        """An inventory transaction in BNG (a purchase received, a return, an adjustment): the on-hand
        quantity changes and ``inventory.changed`` is sent."""
        if kind not in INVENTORY_TYPES:
            raise BngError(422, "validation_failed", f"Type must be one of {', '.join(INVENTORY_TYPES)}")
        with self._lock:
            product = self._product_by_sku(sku)
            if product is None:
                raise BngError(404, "not_found", f"product {sku} not found")
            return self._inventory(product, int(quantity), kind, reference)

    def release_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return self._transition(self._order(order_id), "Released")

    def ship_order(self, order_id: str, *, carrier: str, tracking_number: str,
                   lines: Sequence[Mapping[str, Any]] | None = None, shipped_at: float | None = None) -> dict[str, Any]:
        """The warehouse ships (all open quantities, or ``lines``: ``[{"LineNo", "Quantity"}]``). A New order is
        released first. Stock leaves (a Sale transaction per product); ``shipment.created`` is sent, and the
        order becomes Shipped once every line is shipped in full."""
        with self._lock:
            order = self._order(order_id)
            if order["Status"] == "New":
                self._transition(order, "Released")
            if order["Status"] != "Released":
                raise BngError(409, "invalid_transition", f"sales order {order_id} is {order['Status']}")
            shipped = self._shipped_quantities(order)
            wanted = {int(line["LineNo"]): int(line["Quantity"]) for line in lines} if lines else {
                line["LineNo"]: line["Quantity"] - shipped.get(line["LineNo"], 0) for line in order["Lines"]}
            now = self._now()
            shipment_lines = []
            for line in order["Lines"]:
                quantity = wanted.get(line["LineNo"], 0)
                if quantity <= 0:
                    continue
                if quantity > line["Quantity"] - shipped.get(line["LineNo"], 0):
                    raise BngError(409, "over_shipment", f"line {line['LineNo']} has fewer open units")
                shipment_lines.append({"LineNo": line["LineNo"], "ProductID": line["ProductID"], "SKU": line["SKU"],
                                       "Quantity": quantity, "ExternalLineID": line.get("ExternalLineID")})
            if not shipment_lines:
                raise BngError(409, "nothing_to_ship", f"sales order {order_id} has no open quantity")
            shipment_id = f"SH-{70000 + next(self._state.numbers)}"
            shipment = {"ShipmentID": shipment_id, "SalesOrderID": order_id,
                        "ExternalOrderID": order["ExternalOrderID"], "Carrier": carrier,
                        "TrackingNumber": tracking_number,
                        "ShippedDate": rfc3339(shipped_at) if shipped_at is not None else now,
                        "Lines": shipment_lines, "UpdatedAt": now, "Version": 1}
            self._state.shipments[shipment_id] = shipment
            order["Shipments"].append(shipment_id)
            for item in shipment_lines:
                self._inventory(self._state.products[item["ProductID"]], -item["Quantity"], "Sale", order_id)
            complete = all(shipped.get(line["LineNo"], 0) + wanted.get(line["LineNo"], 0) >= line["Quantity"]
                           for line in order["Lines"])
            if complete:
                self._transition(order, "Shipped", emit=False)
            else:
                self._touch(order)
            self._emit("shipment.created", now, {**copy.deepcopy(shipment), "OrderStatus": order["Status"]},
                       entity=("shipment", shipment, "ShipmentID"))
            if complete:
                self._emit_status(order, "Released")
            return copy.deepcopy(shipment)

    def invoice_order(self, order_id: str) -> dict[str, Any]:
        """Accounting invoices a shipped order: status Invoiced, an invoice number."""
        with self._lock:
            order = self._order(order_id)
            if order["Status"] == "Shipped":
                order["InvoiceNumber"] = f"INV-{90000 + next(self._state.numbers)}"
                order["InvoicedAt"] = self._now()
            return self._transition(order, "Invoiced")

    # ----------------------------------------------------------------- WSGI plumbing

    def _handle(self, request: Request) -> Response:
        path = request.path
        is_api = path.startswith(self.api_prefix + "/")
        if is_api:
            fault = self.faults.apply(request)
            if fault is not None:
                if fault.status_code == 429 and "Retry-After" not in fault.headers:
                    fault.headers["Retry-After"] = "1"
                return fault
        headers: dict[str, str] = {}
        try:
            with self._lock:
                if is_api:
                    self._authenticate(request)
                    headers = self._take_permit(request.headers[API_KEY_HEADER])
                endpoint, values = self._routes.bind("bng").match(path, request.method)
                response: Response = getattr(self, f"_ep_{endpoint}")(request, **values)
        except BngError as error:
            response = error.response()
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(error.valid_methods or ()))
            response = BngError(405, "method_not_allowed", f"{request.method} is not allowed here",
                                headers={"Allow": allowed}).response()
        except HTTPException:
            response = BngError(404, "not_found", f"no such endpoint: {path}").response()
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get(API_KEY_HEADER)
        if key is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise BngError(401, "unauthorized", f"send a valid API key in {API_KEY_HEADER}")

    def _take_permit(self, key: str) -> dict[str, str]:
        """The published limit: ``rate_limit`` requests per key per fixed window; 429 with ``Retry-After``."""
        now = self.clock()
        start = now - (now % self.rate_window_seconds)
        window_start, used = self._state.windows.get(key, (start, 0))
        if window_start != start:
            window_start, used = start, 0
        reset = window_start + self.rate_window_seconds
        limit_headers = {"X-RateLimit-Limit": str(self.rate_limit),
                         "X-RateLimit-Reset": str(math.ceil(reset))}
        if used >= self.rate_limit:
            wait = max(1, math.ceil(reset - now))
            raise BngError(429, "rate_limited", f"more than {self.rate_limit} requests in "
                           f"{self.rate_window_seconds} s; retry in {wait} s",
                           headers={**limit_headers, "Retry-After": str(wait), "X-RateLimit-Remaining": "0"})
        self._state.windows[key] = (window_start, used + 1)
        return {**limit_headers, "X-RateLimit-Remaining": str(self.rate_limit - used - 1)}

    # ----------------------------------------------------------------- helpers

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _next(self, prefix: str, base: int) -> str:
        return f"{prefix}-{base + next(self._state.numbers)}"

    def _touch(self, entity: dict[str, Any]) -> None:
        entity["UpdatedAt"] = self._now()
        entity["Version"] += 1

    @staticmethod
    def _find(entities: Mapping[str, dict[str, Any]], key: str, value: str) -> dict[str, Any] | None:
        return next((entity for entity in entities.values() if entity[key] == value), None)

    def _product_by_sku(self, sku: str) -> dict[str, Any] | None:
        folded = sku.casefold()
        return next((p for p in self._state.products.values() if p["SKU"].casefold() == folded), None)

    def _order(self, order_id: str) -> dict[str, Any]:
        order = self._state.orders.get(order_id)
        if order is None:
            raise BngError(404, "not_found", f"sales order {order_id} not found")
        return order

    def _emit(self, event_type: str, timestamp: str, data: dict[str, Any], *,
              entity: tuple[str, dict[str, Any], str]) -> None:
        # called with the state lock held, so events leave in the order the changes happened; the id names the
        # version the change made (kind, the entity, its id field): a changed-since poll computes the same
        kind, changed, id_key = entity
        event = WebhookEvent(change_id(kind, changed[id_key], changed["Version"], changed["UpdatedAt"]), event_type,
                             {"type": event_type, "timestamp": timestamp, "data": data})
        self.outbox.enqueue(event)

    def _emit_status(self, order: dict[str, Any], previous: str) -> None:
        self._emit("salesorder.status_changed", order["UpdatedAt"],
                   {**copy.deepcopy(order), "PreviousStatus": previous}, entity=("salesorder", order, "SalesOrderID"))

    def _transition(self, order: dict[str, Any], status: str, *, emit: bool = True) -> dict[str, Any]:
        previous = order["Status"]
        if status == previous:
            return copy.deepcopy(order)
        if status not in TRANSITIONS[previous]:
            raise BngError(409, "invalid_transition",
                           f"sales order {order['SalesOrderID']} is {previous} and cannot become {status}",
                           currentStatus=previous)
        order["Status"] = status
        self._touch(order)
        order["StatusHistory"].append({"Status": status, "At": order["UpdatedAt"]})
        if emit:
            self._emit_status(order, previous)
        return copy.deepcopy(order)

    def _shipped_quantities(self, order: Mapping[str, Any]) -> dict[int, int]:
        shipped: dict[int, int] = {}
        for shipment_id in order["Shipments"]:
            for line in self._state.shipments[shipment_id]["Lines"]:
                shipped[line["LineNo"]] = shipped.get(line["LineNo"], 0) + line["Quantity"]
        return shipped

    def _inventory(self, product: dict[str, Any], quantity: int, kind: str, reference: str | None) -> dict[str, Any]:
        product["OnHand"] += quantity
        self._touch(product)
        transaction = {"TransactionID": self._next("IT", 30000), "ProductID": product["ProductID"],
                       "SKU": product["SKU"], "Type": kind, "Quantity": quantity, "OnHandAfter": product["OnHand"],
                       "Reference": reference, "OccurredAt": product["UpdatedAt"], "UpdatedAt": product["UpdatedAt"]}
        self._state.transactions[transaction["TransactionID"]] = transaction
        self._emit("inventory.changed", product["UpdatedAt"],
                   {"ProductID": product["ProductID"], "SKU": product["SKU"], "OnHand": product["OnHand"],
                    "UpdatedAt": product["UpdatedAt"], "Version": product["Version"],
                    "Transaction": copy.deepcopy(transaction)}, entity=("product", product, "ProductID"))
        return copy.deepcopy(transaction)

    @staticmethod
    def _json(request: Request) -> dict[str, Any]:
        body = http.read_json_object(request)
        if body is None:
            raise BngError(400, "malformed_body", "the request body must be a JSON object")
        return body

    def _list(self, request: Request, entities: Iterable[dict[str, Any]], id_key: str,
              filters: Mapping[str, str]) -> Response:
        """A page of ``entities`` ordered by (UpdatedAt, id), filtered by exact fields and ``changedSince``
        (inclusive); ``after`` is the cursor a previous page answered as ``NextCursor``."""
        args = request.args
        problems = _Problems()
        unknown = set(args) - {"changedSince", "limit", "after", *filters}
        for name in sorted(unknown):
            problems.add(name, "unknown query parameter")
        since = _parse_time(args["changedSince"]) if "changedSince" in args else None
        if "changedSince" in args and since is None:
            problems.add("changedSince", "must be an RFC 3339 date-time with an offset")
        try:
            limit = int(args.get("limit", DEFAULT_PAGE_SIZE))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            problems.add("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
        after: tuple[str, str] | None = None
        if "after" in args:
            stamp, bar, entity_id = args["after"].partition("|")
            if not bar or _parse_time(stamp) is None:
                problems.add("after", "is not a cursor this API answered")
            else:
                after = (stamp, entity_id)
        problems.raise_if_any()
        rows = []
        for entity in entities:
            if any(str(entity.get(wire)) != args[name] for name, wire in filters.items() if name in args):
                continue
            moment = _parse_time(entity["UpdatedAt"])
            if since is not None and moment is not None and moment < since:
                continue
            rows.append(entity)
        rows.sort(key=lambda e: (e["UpdatedAt"], e[id_key]))  # fixed-width UTC stamps sort as text
        if after is not None:
            rows = [e for e in rows if (e["UpdatedAt"], e[id_key]) > after]
        page = rows[:limit]
        cursor = f"{page[-1]['UpdatedAt']}|{page[-1][id_key]}" if len(rows) > limit else None
        return http.json_response({"Items": copy.deepcopy(page), "NextCursor": cursor})

    # ----------------------------------------------------------------- customers

    def _ep_list_customers(self, request: Request) -> Response:
        return self._list(request, self._state.customers.values(), "CustomerID", {"externalId": "ExternalID"})

    def _ep_get_customer(self, request: Request, customer_id: str) -> Response:
        customer = self._state.customers.get(customer_id)
        if customer is None:
            raise BngError(404, "not_found", f"customer {customer_id} not found")
        return http.json_response(copy.deepcopy(customer))

    def _customer_values(self, body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
        problems = _Problems()
        _unknown(body, CUSTOMER_FIELDS, problems)
        values: dict[str, Any] = {}
        if not partial or "ExternalID" in body:
            values["ExternalID"] = _text(body.get("ExternalID"), "ExternalID", problems, required=True, limit=MAX_ID)
        if not partial or "Name" in body:
            values["Name"] = _text(body.get("Name"), "Name", problems, required=True)
        if "Email" in body or not partial:
            email = _text(body.get("Email"), "Email", problems, limit=254)
            if email is not None and not EMAIL.fullmatch(email):
                problems.add("Email", f"{email!r} is not an e-mail address")
            values["Email"] = email
        if "Phone" in body or not partial:
            values["Phone"] = _text(body.get("Phone"), "Phone", problems, limit=50)
        if "Type" in body or not partial:
            kind = body.get("Type", "Consumer")
            if kind not in CUSTOMER_TYPES:
                problems.add("Type", f"must be one of {', '.join(CUSTOMER_TYPES)}")
            values["Type"] = kind
        for name in ("BillingAddress", "ShippingAddress"):
            if name in body or not partial:
                values[name] = _address(body.get(name), name, problems)
        if "CustomFields" in body or not partial:
            values["CustomFields"] = _custom_fields(body.get("CustomFields"), "CustomFields", problems)
        problems.raise_if_any()
        return values

    def _ep_create_customer(self, request: Request) -> Response:
        values = self._customer_values(self._json(request), partial=False)
        existing = self._find(self._state.customers, "ExternalID", values["ExternalID"])
        if existing is not None:
            raise BngError(409, "duplicate_external_id",
                           f"customer {existing['CustomerID']} already has ExternalID {values['ExternalID']}",
                           existingId=existing["CustomerID"])
        customer = {"CustomerID": self._next("C", 100000), **values, "UpdatedAt": self._now(), "Version": 1}
        self._state.customers[customer["CustomerID"]] = customer
        return http.json_response(copy.deepcopy(customer), status=201)

    def _ep_patch_customer(self, request: Request, customer_id: str) -> Response:
        customer = self._state.customers.get(customer_id)
        if customer is None:
            raise BngError(404, "not_found", f"customer {customer_id} not found")
        values = self._customer_values(self._json(request), partial=True)
        if "ExternalID" in values and values["ExternalID"] != customer["ExternalID"]:
            other = self._find(self._state.customers, "ExternalID", values["ExternalID"])
            if other is not None:
                raise BngError(409, "duplicate_external_id", f"customer {other['CustomerID']} already has "
                               f"ExternalID {values['ExternalID']}", existingId=other["CustomerID"])
        changed = {key: value for key, value in values.items() if customer.get(key) != value}
        if changed:
            customer.update(changed)
            self._touch(customer)
        return http.json_response(copy.deepcopy(customer))

    # ----------------------------------------------------------------- sales orders

    def _ep_list_orders(self, request: Request) -> Response:
        return self._list(request, self._state.orders.values(), "SalesOrderID",
                          {"externalOrderId": "ExternalOrderID", "status": "Status", "customerId": "CustomerID"})

    def _ep_get_order(self, request: Request, order_id: str) -> Response:
        return http.json_response(copy.deepcopy(self._order(order_id)))

    def _ep_create_order(self, request: Request) -> Response:
        body = self._json(request)
        order = self._validate_order(body)
        existing = self._find(self._state.orders, "ExternalOrderID", order["ExternalOrderID"])
        if existing is not None:
            raise BngError(409, "duplicate_external_order_id",
                           f"sales order {existing['SalesOrderID']} already has ExternalOrderID "
                           f"{order['ExternalOrderID']}", existingId=existing["SalesOrderID"])
        now = self._now()
        order.update(SalesOrderID=self._next("SO", 50000), Status="New", StatusHistory=[{"Status": "New", "At": now}],
                     Shipments=[], InvoiceNumber=None, InvoicedAt=None, CreatedAt=now, UpdatedAt=now, Version=1)
        self._state.orders[order["SalesOrderID"]] = order
        return http.json_response(copy.deepcopy(order), status=201)

    def _validate_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        problems = _Problems()
        _unknown(body, ORDER_FIELDS, problems)
        external = _text(body.get("ExternalOrderID"), "ExternalOrderID", problems, required=True, limit=MAX_ID)
        customer_id = _text(body.get("CustomerID"), "CustomerID", problems, required=True, limit=MAX_ID)
        if customer_id is not None and customer_id not in self._state.customers:
            problems.add("CustomerID", f"customer {customer_id} does not exist")
        if "OrderDate" in body and _parse_time(body["OrderDate"]) is None:
            problems.add("OrderDate", "must be an RFC 3339 date-time with an offset")
        currency = body.get("Currency")
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            problems.add("Currency", "must be an ISO 4217 code such as USD")
            currency = "USD"
        lines, unknown_products = self._order_lines(body.get("Lines"), currency, problems)
        subtotal = sum((Decimal(line["LineTotal"]) for line in lines), Decimal(0))
        totals_in = body.get("Totals") if isinstance(body.get("Totals"), dict) else {}
        if "Totals" in body and not isinstance(body.get("Totals"), dict):
            problems.add("Totals", "must be an object")
        _unknown(totals_in, TOTAL_FIELDS, problems, "Totals.")
        parts = {name: _money(totals_in.get(name, 0), currency, f"Totals.{name}", problems)
                 for name in ("Shipping", "Tax", "Discount")}
        expected = subtotal + parts["Shipping"] + parts["Tax"] - parts["Discount"]
        every_line_known = isinstance(body.get("Lines"), list) and len(lines) == len(body["Lines"])
        if "Total" in totals_in and every_line_known:  # a sum over unresolved lines would only add noise
            total = _money(totals_in["Total"], currency, "Totals.Total", problems)
            if total != expected:
                problems.add("Totals.Total", f"{total} is not lines {subtotal} + shipping {parts['Shipping']} + tax "
                             f"{parts['Tax']} - discount {parts['Discount']} = {expected}")
        glds = body.get("GLDimensions") or {}
        if not isinstance(glds, dict) or not all(isinstance(v, str) and len(v) <= 64 for v in glds.values()):
            problems.add("GLDimensions", "must be an object of strings (at most 64 characters)")
            glds = {}
        reference = _text(body.get("Reference"), "Reference", problems)
        shipping = _address(body.get("ShippingAddress"), "ShippingAddress", problems)
        billing = _address(body.get("BillingAddress"), "BillingAddress", problems)
        custom = _custom_fields(body.get("CustomFields"), "CustomFields", problems)
        if unknown_products and len(unknown_products) == len(problems.items):
            problems.raise_if_any("unknown_product")
        problems.raise_if_any()
        return {"ExternalOrderID": external, "CustomerID": customer_id,
                "OrderDate": body.get("OrderDate") or self._now(), "Currency": currency, "Reference": reference,
                "Lines": lines, "ShippingAddress": shipping, "BillingAddress": billing,
                "Totals": {"Subtotal": _amount_text(subtotal, currency),
                           **{name: _amount_text(value, currency) for name, value in parts.items()},
                           "Total": _amount_text(expected, currency)},
                "CustomFields": custom, "GLDimensions": dict(glds)}

    def _order_lines(self, value: Any, currency: str, problems: _Problems) -> tuple[list[dict[str, Any]], list[str]]:
        if not isinstance(value, list) or not value or len(value) > MAX_LINES:
            problems.add("Lines", f"must be a list of 1 to {MAX_LINES} lines")
            return [], []
        lines, unknown = [], []
        for index, line in enumerate(value):
            path = f"Lines[{index}]"
            if not isinstance(line, dict):
                problems.add(path, "must be an object")
                continue
            _unknown(line, LINE_FIELDS, problems, f"{path}.")
            product = None
            if line.get("ProductID") is not None:
                product = self._state.products.get(str(line["ProductID"]))
                if product is None:
                    problems.add(f"{path}.ProductID", f"unknown product {line['ProductID']}")
                    unknown.append(str(line["ProductID"]))
            elif isinstance(line.get("SKU"), str) and line["SKU"].strip():
                product = self._product_by_sku(line["SKU"])
                if product is None:
                    problems.add(f"{path}.SKU", f"unknown product SKU {line['SKU']}")
                    unknown.append(line["SKU"])
            else:
                problems.add(path, "needs a ProductID or a SKU")
            if product is not None and line.get("SKU") is not None and line.get("ProductID") is not None \
                    and str(line["SKU"]).casefold() != product["SKU"].casefold():
                problems.add(f"{path}.SKU", f"{line['SKU']} is not the SKU of product {product['ProductID']}")
            quantity = line.get("Quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 1_000_000:
                problems.add(f"{path}.Quantity", "must be an integer from 1 to 1000000")
                quantity = 0
            price = _money(line.get("UnitPrice"), currency, f"{path}.UnitPrice", problems)
            description = _text(line.get("Description"), f"{path}.Description", problems, limit=400)
            external_line = _text(line.get("ExternalLineID"), f"{path}.ExternalLineID", problems, limit=MAX_ID)
            if product is None:
                continue
            total = (price * quantity).quantize(Decimal(1).scaleb(-currency_exponent(currency)))
            lines.append({"LineNo": index + 1, "ProductID": product["ProductID"], "SKU": product["SKU"],
                          "Description": description or product["Name"], "Quantity": quantity,
                          "UnitPrice": _amount_text(price, currency), "LineTotal": _amount_text(total, currency),
                          "ExternalLineID": external_line})
        return lines, unknown

    def _ep_cancel_order(self, request: Request, order_id: str) -> Response:
        order = self._order(order_id)
        body = http.read_json_object(request) or {}
        reason = body.get("Reason")
        if order["Status"] == "Cancelled":
            return http.json_response(copy.deepcopy(order))
        cancelled = self._transition(order, "Cancelled")
        if isinstance(reason, str):
            order["CancelReason"] = reason[:400]
            cancelled["CancelReason"] = order["CancelReason"]
        return http.json_response(cancelled)

    # ----------------------------------------------------------------- shipments, products, inventory

    def _ep_list_shipments(self, request: Request) -> Response:
        return self._list(request, self._state.shipments.values(), "ShipmentID",
                          {"salesOrderId": "SalesOrderID", "externalOrderId": "ExternalOrderID"})

    def _ep_get_shipment(self, request: Request, shipment_id: str) -> Response:
        shipment = self._state.shipments.get(shipment_id)
        if shipment is None:
            raise BngError(404, "not_found", f"shipment {shipment_id} not found")
        return http.json_response(copy.deepcopy(shipment))

    def _ep_list_products(self, request: Request) -> Response:
        return self._list(request, self._state.products.values(), "ProductID", {"sku": "SKU"})

    def _ep_get_product(self, request: Request, product_id: str) -> Response:
        product = self._state.products.get(product_id)
        if product is None:
            raise BngError(404, "not_found", f"product {product_id} not found")
        return http.json_response(copy.deepcopy(product))

    def _ep_list_transactions(self, request: Request) -> Response:
        return self._list(request, self._state.transactions.values(), "TransactionID",
                          {"sku": "SKU", "productId": "ProductID"})

    # ----------------------------------------------------------------- admin (no auth, no faults, not logged)

    def _ep_admin_state(self, request: Request) -> Response:
        return http.json_response(self.snapshot())

    def _ep_admin_reset(self, request: Request) -> Response:
        self.reset()
        return http.json_response({"ok": True})

    def _ep_admin_set_faults(self, request: Request) -> Response:
        try:
            self.faults.configure(self._json(request))
        except (TypeError, ValueError) as error:
            raise BngError(400, "invalid_fault_plan", str(error)) from error
        return http.json_response({"ok": True, "plan": self.faults.plan.to_dict()})

    def _ep_admin_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return http.json_response({"ok": True})

    def _ep_admin_add_product(self, request: Request) -> Response:
        body = self._json(request)
        return http.json_response(self.add_product(str(body.get("SKU")), str(body.get("Name")),
                                                   on_hand=int(body.get("OnHand", 0)),
                                                   attributes=body.get("Attributes") or {}), status=201)

    def _ep_admin_release(self, request: Request, order_id: str) -> Response:
        return http.json_response(self.release_order(order_id))

    def _ep_admin_ship(self, request: Request, order_id: str) -> Response:
        body = self._json(request)
        return http.json_response(self.ship_order(order_id, carrier=str(body.get("Carrier")),
                                                  tracking_number=str(body.get("TrackingNumber")),
                                                  lines=body.get("Lines")), status=201)

    def _ep_admin_invoice(self, request: Request, order_id: str) -> Response:
        return http.json_response(self.invoice_order(order_id))

    def _ep_admin_inventory(self, request: Request) -> Response:
        body = self._json(request)
        return http.json_response(self.record_inventory(str(body.get("SKU")), int(body.get("Quantity", 0)),
                                                        str(body.get("Type", "Purchase")), body.get("Reference")),
                                  status=201)
