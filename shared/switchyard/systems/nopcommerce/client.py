"""nopCommerce client over the commercial "Web API Backend" plugin (``/api-backend/[controller]/[action]``):
the write-backs Switchyard needs (order notes, order statuses, shipments with their items, product stock,
product specification attributes, customer fields and custom customer attributes) and the reads they rest on.

* **JSON is snake_case both ways.** The plugin's DTOs use Newtonsoft's ``SnakeCaseNamingStrategy``; a property
  name it does not know is silently dropped. Bodies are therefore never built by hand from our own names:
  every update sends back the DTO exactly as the plugin answered it, with one field changed.
* **Update replaces the whole entity** (fields left out become 0, false, null, ``0001-01-01``) and has no
  concurrency check, so every update is a read-modify-write: ``GetById``, then ``Update`` with every field.
  A change someone else makes between our read and our write is lost; the window is one round trip.
* **Auth**: ``Authenticate/GetToken`` with the API customer's e-mail and password answers an HS256 JWT. It is
  cached until ``margin_seconds`` before its ``exp`` claim (read without verifying: the shop verifies it, we
  only need to know when to fetch another), fetched again once on a 401 and the call retried once. Wrong
  credentials (400 "Username or password is incorrect") and a customer whose role lacks "Access Web API
  Backend" (403 on every call: ``GetToken`` itself does not check it) are PermanentError ``target_auth_failed``.
* Everything else is classified by ``connectors.http.send``: 404 PermanentError ``target_not_found``, 5xx,
  408, 429 and timeouts retryable, other 4xx ``target_rejected``.
* **Every write is idempotent**, so a redelivered event changes nothing twice: status and stock are absolute
  values, compared before anything is written. The plugin has no idempotency key for notes, so a note
  carries a marker of the write it reports (``[ref 3f9a2c71b0e4]``) and is only added when the order has
  no note with that marker (or, for notes written before markers, exactly that text). A create that timed
  out may still be carried out after the client gave up: the client waits ``settle_seconds`` and looks
  again before it reports the attempt as failed, so the retry does not add it a second time. After every
  create it reads the notes once more and deletes later copies of a marked note (two attempts that raced
  both added one): one note per marker remains, the oldest.

A shipment (``Shipment/Create`` + ``ShipmentItem/Create``) carries a ``[ref <marker>]`` in its admin comment
and is found by it before one is created; unlike notes, copies left by two attempts racing are not cleaned
up (the order-to-cash steps of one order run one at a time, in one execution).

Stock is written with ``Product/Update`` (the whole DTO with the new ``stock_quantity``), not with
``Product/AdjustInventory?quantityToChange=``. A delta is not idempotent (a retry after a lost answer applies
it twice) and a delta computed from a read races with the storefront selling in between; an absolute value
written by read-modify-write converges on the source's number however often it is repeated. The price:
``Update`` bypasses what ``AdjustInventoryAsync`` does besides the arithmetic (stock quantity history entries,
low-stock activity, admin notifications), and, like every Update here, replaces the product as read.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from json import loads as json_loads
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.connectors.http import DEFAULT_TIMEOUT, RefreshingTokenAuth, jsonable, raised_getting_token, send
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError
from switchyard.systems.nopcommerce import customer_attributes

SYSTEM = "nopCommerce"
PREFIX = "/api-backend"
TOKEN_PATH = f"{PREFIX}/Authenticate/GetToken"
DEFAULT_MARGIN_SECONDS = 60.0  # the plugin validates with zero clock skew: renew a little early
# After a create timed out: how long the shop gets to finish it before we look again. The step has 60 s; a
# create that is still running after the client's 10 s and this is left to the retry (and its clean-up).
DEFAULT_SETTLE_SECONDS = 10.0
_MARKER = re.compile(r" \[ref ([0-9a-f]{8,32})\]$")


class NopCommerceConnection(BaseModel):
    """The connection secret: ``{"base_url", "email", "password"}``. ``base_url`` is the shop's root (the
    plugin answers under ``<base_url>/api-backend/``); e-mail and password are those of the customer the
    integration signs in as, whose role must have the "Access Web API Backend" permission."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    base_url: str = Field(min_length=1)
    email: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)

    @classmethod
    def from_secret(cls, value: Mapping[str, Any]) -> NopCommerceConnection:
        try:
            return cls.model_validate(dict(value) if isinstance(value, Mapping) else value)
        except ValidationError as exc:
            # the field names only: the message must never echo the password
            missing = ", ".join(".".join(map(str, e["loc"])) or "(the secret itself)" for e in exc.errors())
            raise ConnectionConfigError(f"nopCommerce connection is incomplete: {missing}") from None


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), or None if it has none or is not a JWT.

    The signature is not checked: the shop checks it; this only decides when to fetch a new token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):  # ValueError covers bad JSON and bad UTF-8
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def _wire_now(clock: Callable[[], float]) -> str:
    """A UTC instant as the plugin's DTOs carry dates (nopCommerce stores UTC)."""
    return datetime.fromtimestamp(clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wire_date(value: datetime) -> str:
    """A query date as the plugin binds it (ISO 8601, UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _outcome_unknown(exc: RetryableError) -> bool:
    """Whether a write that failed this way may still have been carried out: the client gave up waiting, the
    connection broke, or the shop (or a proxy in front of it) answered 500/502/504. Not a 429 or a 503."""
    return exc.reason in ("target_timeout", "target_unreachable") or exc.target_status in (500, 502, 504)


def _is_plugin_not_found(body: Any) -> bool:
    """The plugin's ``NotFound("... not found")`` is a JSON string. An unknown route answers 404 with an empty
    body, and a proxy with an HTML page: neither says the entity is missing."""
    return isinstance(body, str) and bool(body.strip()) and not body.lstrip().startswith("<")


class NopCommerceClient:
    """One shop. ``clock`` decides when the cached token is due (``margin_seconds`` before its ``exp``) and
    stamps notes and product updates. Safe to share between threads."""

    def __init__(self, connection: NopCommerceConnection, *, transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time,
                 margin_seconds: float = DEFAULT_MARGIN_SECONDS, settle_seconds: float = DEFAULT_SETTLE_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.connection = connection
        self._clock = clock
        self._margin = margin_seconds
        self._settle = settle_seconds
        self._sleep = sleep
        self._http = httpx.Client(base_url=connection.base_url.rstrip("/"), headers={"Accept": "application/json"},
                                  timeout=timeout, transport=transport, auth=RefreshingTokenAuth(self._token_for))
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NopCommerceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- orders

    def get_order(self, order_id: int) -> dict[str, Any]:
        """The order DTO as the plugin returns it (snake_case); PermanentError ``target_not_found`` if unknown."""
        path = f"{PREFIX}/Order/GetById/{int(order_id)}"
        return self._object(self._call("GET", path), path)

    def order_notes(self, order_id: int) -> list[dict[str, Any]]:
        """The order's notes (an unknown order has none: the plugin answers an empty list, not 404)."""
        path = f"{PREFIX}/OrderNote/GetOrderNotesByOrderId/{int(order_id)}"
        body = self._call("GET", path)
        if not isinstance(body, list) or not all(isinstance(note, dict) for note in body):
            raise RetryableError(f"{SYSTEM} answered GET {path} with something else than a list of notes",
                                 reason="target_bad_response", target_response=body)
        return body

    def add_order_note(self, order_id: int, note: str, *, display_to_customer: bool = False,
                       marker: str | None = None) -> bool:
        """Add ``note`` (with `` [ref <marker>]`` appended when a marker is given) unless the order already has
        it; True if this call added it. A create whose outcome is unknown (timeout, 500/502/504) is looked
        for again after ``settle_seconds``; RetryableError ``write_outcome_unknown`` if it is still missing."""
        text = f"{note} [ref {marker}]" if marker else note
        notes = self.order_notes(order_id)
        if self._holding(notes, text, marker):
            self._delete_copies(notes)
            return False
        if not notes:
            # Creating a note for a missing order hits a foreign key and answers 500, which would be retried
            # forever; an order with notes exists, one without may not: make sure (404 -> target_not_found).
            self.get_order(order_id)
        try:
            # Create binds the whole DTO too: without created_on_utc the note would be dated 0001-01-01.
            self._call("POST", f"{PREFIX}/OrderNote/Create", json={
                "order_id": int(order_id),
                "note": text,
                "download_id": 0,
                "display_to_customer": display_to_customer,
                "created_on_utc": _wire_now(self._clock),
            })
        except RetryableError as exc:
            if not _outcome_unknown(exc):
                raise
            self._sleep(self._settle)  # the shop may still be carrying it out
            notes = self.order_notes(order_id)
            if not self._holding(notes, text, marker):
                raise RetryableError(f"{SYSTEM} did not answer the note for order {order_id} and does not show it "
                                     f"{self._settle:g} s later: will look again before adding it",
                                     reason="write_outcome_unknown", target_status=exc.target_status,
                                     target_response=exc.target_response) from exc
        else:
            notes = self.order_notes(order_id)
        self._delete_copies(notes)
        return True

    @staticmethod
    def _holding(notes: list[dict[str, Any]], text: str, marker: str | None) -> bool:
        """Whether the notes hold this one: its marker, or (notes written before markers) exactly its text."""
        plain = _MARKER.sub("", text)
        for existing in notes:
            held = str(existing.get("note") or "")
            found = _MARKER.search(held)
            if (marker is not None and found is not None and found.group(1) == marker) or held in (text, plain):
                return True
        return False

    def _delete_copies(self, notes: list[dict[str, Any]]) -> None:
        """Delete every marked note but the oldest (lowest id) of its marker: copies left by attempts that
        raced (each found none, each added one)."""
        kept: dict[str, int] = {}
        copies: list[int] = []
        for existing in sorted(notes, key=lambda item: int(item.get("id") or 0)):
            found = _MARKER.search(str(existing.get("note") or ""))
            if found is None or not existing.get("id"):
                continue
            if found.group(1) in kept:
                copies.append(int(existing["id"]))
            else:
                kept[found.group(1)] = int(existing["id"])
        for note_id in copies:
            try:
                self._call("DELETE", f"{PREFIX}/OrderNote/Delete/{note_id}")
            except PermanentError as exc:
                if exc.target_status != 404:  # another attempt deleted it first
                    raise

    def set_order_status(self, order_id: int, status_id: int, *, only_from: Collection[int] | None = None) -> bool:
        """Set ``order_status_id`` (10 Pending, 20 Processing, 30 Complete, 40 Cancelled) by read-modify-write.

        Nothing is written (False) when the order already has that status, or when ``only_from`` is given and
        the current status is not in it (e.g. never move a Cancelled order back to Processing)."""
        order = self.get_order(order_id)
        current = order.get("order_status_id")
        if current == status_id or (only_from is not None and current not in only_from):
            return False
        self._call("PUT", f"{PREFIX}/Order/Update", json={**order, "order_status_id": status_id})
        return True

    def set_order_statuses(self, order_id: int, statuses: Mapping[str, int], *,
                           never_from: Mapping[str, Collection[int]] | None = None) -> dict[str, int]:
        """Set several status ids at once (``order_status_id``, ``shipping_status_id``, ``payment_status_id``) by
        one read-modify-write; a field whose current value is in ``never_from[field]`` is left as it is (e.g.
        a Cancelled order is not moved to Complete). Returns the fields written (empty: nothing written)."""
        order = self.get_order(order_id)
        guard = never_from or {}
        changes = {name: int(value) for name, value in statuses.items()
                   if order.get(name) != value and order.get(name) not in guard.get(name, ())}
        if changes:
            self._call("PUT", f"{PREFIX}/Order/Update", json={**order, **changes})
        return changes

    # ----------------------------------------------------------------- shipments

    def order_shipments(self, order_id: int) -> list[dict[str, Any]]:
        """The order's shipments (``Shipment/GetByOrderId``; an unknown order has none)."""
        path = f"{PREFIX}/Shipment/GetByOrderId/{int(order_id)}"
        body = self._call("GET", path)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise RetryableError(f"{SYSTEM} answered GET {path} with something else than a list of shipments",
                                 reason="target_bad_response", target_response=body)
        return body

    def shipment_items(self, shipment_id: int) -> list[dict[str, Any]]:
        path = f"{PREFIX}/ShipmentItem/GetByShipmentId/{int(shipment_id)}"
        body = self._call("GET", path)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise RetryableError(f"{SYSTEM} answered GET {path} with something else than a list of items",
                                 reason="target_bad_response", target_response=body)
        return body

    # ----------------------------------------------------------------- reads for the poller (money as Decimal)

    def search_orders(self, *, created_from: datetime, created_to: datetime, page_index: int,
                      page_size: int) -> dict[str, Any]:
        """One page of ``Order/Search`` (newest first): ``{"items", "has_next_page", "total_count", ...}``.
        ``pageSize`` is always sent: the plugin's default is int.MaxValue (every order in one answer)."""
        path = f"{PREFIX}/Order/Search"
        params = {"createdFromUtc": _wire_date(created_from), "createdToUtc": _wire_date(created_to),
                  "pageIndex": int(page_index), "pageSize": int(page_size)}
        page = self._object(self._call("GET", path, params=params, decimals=True), path)
        if not isinstance(page.get("items"), list):
            raise RetryableError(f"{SYSTEM} answered {path} without a list of items", reason="target_bad_response",
                                 target_response=page)
        return page

    def order_items(self, order_id: int) -> list[dict[str, Any]]:
        """``OrderItem/GetOrderItems/{orderId}`` (an unknown order has none)."""
        path = f"{PREFIX}/OrderItem/GetOrderItems/{int(order_id)}"
        body = self._call("GET", path, decimals=True)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise RetryableError(f"{SYSTEM} answered GET {path} with something else than a list of items",
                                 reason="target_bad_response", target_response=body)
        return body

    def add_shipment(self, order_id: int, *, tracking_number: str, shipped_date_utc: str | None,
                     items: Mapping[int, int], marker: str, admin_comment: str = "") -> tuple[int, bool]:
        """The order's shipment marked ``[ref <marker>]`` in its admin comment, with ``items`` (order item id ->
        quantity): found, or created (``Shipment/Create``, then one ``ShipmentItem/Create`` per item it lacks).
        Returns (shipment id, created). A create whose outcome is unknown is looked for again after
        ``settle_seconds`` (RetryableError ``write_outcome_unknown`` if still missing); a retry adds only the
        items a failed attempt left out."""
        tag = f"[ref {marker}]"
        found = self._marked_shipment(order_id, tag)
        created = False
        if found is None:
            self.get_order(order_id)  # a missing order would answer a foreign-key 500, retried forever
            body = {"order_id": int(order_id), "tracking_number": tracking_number, "total_weight": None,
                    "shipped_date_utc": shipped_date_utc, "delivery_date_utc": None,
                    "ready_for_pickup_date_utc": None, "admin_comment": f"{admin_comment} {tag}".strip(),
                    "created_on_utc": _wire_now(self._clock)}
            try:
                answer = self._call("POST", f"{PREFIX}/Shipment/Create", json=body)
            except RetryableError as exc:
                if not _outcome_unknown(exc):
                    raise
                self._sleep(self._settle)
                found = self._marked_shipment(order_id, tag)
                if found is None:
                    raise RetryableError(f"{SYSTEM} did not answer the shipment for order {order_id} and does not "
                                         f"show it {self._settle:g} s later: will look again before adding it",
                                         reason="write_outcome_unknown", target_status=exc.target_status,
                                         target_response=exc.target_response) from exc
            else:
                found = self._object(answer, f"{PREFIX}/Shipment/Create")
                created = True
        shipment_id = int(found["id"])
        held = {int(item.get("order_item_id") or 0) for item in self.shipment_items(shipment_id)}
        for order_item_id, quantity in items.items():
            if int(order_item_id) not in held:
                self._call("POST", f"{PREFIX}/ShipmentItem/Create", json={
                    "shipment_id": shipment_id, "order_item_id": int(order_item_id), "quantity": int(quantity),
                    "warehouse_id": 0})
        return shipment_id, created

    def _marked_shipment(self, order_id: int, tag: str) -> dict[str, Any] | None:
        marked = [s for s in self.order_shipments(order_id) if tag in str(s.get("admin_comment") or "")]
        return min(marked, key=lambda s: int(s.get("id") or 0), default=None)

    def get_entity(self, controller: str, entity_id: int) -> dict[str, Any]:
        """``{controller}/GetById/{id}`` (Customer, Address, Product); PermanentError ``target_not_found``."""
        path = f"{PREFIX}/{controller}/GetById/{int(entity_id)}"
        return self._object(self._call("GET", path, decimals=True), path)

    # ----------------------------------------------------------------- products

    def product_by_sku(self, sku: str) -> dict[str, Any] | None:
        """The non-deleted product with this SKU (the shop compares case-insensitively), or None."""
        path = f"{PREFIX}/Product/GetProductBySku"
        try:
            body = self._call("GET", path, params={"sku": sku})
        except PermanentError as exc:
            if exc.target_status == 404 and _is_plugin_not_found(exc.target_response):
                return None
            raise
        return self._object(body, path)

    def set_stock_quantity(self, product_id: int, quantity: int) -> bool:
        """Set the product's ``stock_quantity`` to ``quantity`` (an absolute value; negative is allowed, as in
        nopCommerce) by read-modify-write of the whole product; False, and nothing written, if it already is.
        See the module docstring for why this is ``Product/Update`` and not ``Product/AdjustInventory``."""
        path = f"{PREFIX}/Product/GetById/{int(product_id)}"
        product = self._object(self._call("GET", path), path)
        if product.get("stock_quantity") == quantity:
            return False
        # updated_on_utc as the admin UI sets it on every edit (feeds and caches key on it)
        changed = {**product, "stock_quantity": int(quantity), "updated_on_utc": _wire_now(self._clock)}
        self._call("PUT", f"{PREFIX}/Product/Update", json=changed)
        return True

    # ----------------------------------------------------------------- customers

    def customer_by_email(self, email: str) -> dict[str, Any] | None:
        """The customer with this e-mail (``Customer/GetCustomerByEmail``: the shop compares without case and
        answers the lowest id), or None; a deleted customer counts as none."""
        path = f"{PREFIX}/Customer/GetCustomerByEmail"
        try:
            body = self._call("GET", path, params={"email": email})
        except PermanentError as exc:
            if exc.target_status == 404 and _is_plugin_not_found(exc.target_response):
                return None
            raise
        customer = self._object(body, path)
        return None if customer.get("deleted") else customer

    def customer_attributes(self) -> list[dict[str, Any]]:
        """Every custom customer attribute (``CustomerAttribute/GetAll``, a POST in the plugin)."""
        return self._list_of(self._call("POST", f"{PREFIX}/CustomerAttribute/GetAll"), "CustomerAttribute/GetAll")

    def customer_attribute_values(self, attribute_id: int) -> list[dict[str, Any]]:
        """The predefined values of a select attribute (``CustomerAttributeValue/GetAll/{attributeId}``)."""
        return self._list(f"{PREFIX}/CustomerAttributeValue/GetAll/{int(attribute_id)}")

    def update_customer(self, customer_id: int, fields: Mapping[str, Any],
                        attributes: Mapping[int, str] | None = None) -> list[str]:
        """Set the customer's ``fields`` (wire names, e.g. ``first_name``) and custom ``attributes`` (id -> the
        text, or a select attribute's value id) by read-modify-write of the whole DTO; returns what changed
        (``attribute:<id>`` for attributes), and writes nothing when nothing would (a redelivery)."""
        path = f"{PREFIX}/Customer/GetById/{int(customer_id)}"
        customer = self._object(self._call("GET", path), path)
        changed = sorted(name for name, value in fields.items() if customer.get(name) != value)
        xml = customer.get("custom_customer_attributes_xml")
        held = customer_attributes.parse_values(xml)
        changed_attributes = {a: v for a, v in (attributes or {}).items() if held.get(a) != [v]}
        if not changed and not changed_attributes:
            return []
        updated = {**customer, **{name: fields[name] for name in changed}}
        if changed_attributes:
            updated["custom_customer_attributes_xml"] = customer_attributes.with_values(xml, changed_attributes)
        self._call("PUT", f"{PREFIX}/Customer/Update", json=updated)
        return [*changed, *(f"attribute:{a}" for a in sorted(changed_attributes))]

    # ----------------------------------------------------------------- specification attributes

    def set_specifications(self, product_id: int, values: Mapping[str, str]) -> dict[str, str]:
        """Give the product the specification attribute ``name`` with the option ``value``, for each item of
        ``values`` (attributes and options found by name, case-insensitively, and created when missing; a
        mapping of the product to another option of that attribute is updated by read-modify-write). Other
        attributes of the product are left as they are. Returns what was written (empty: nothing)."""
        path = f"{PREFIX}/SpecificationAttribute/GetAll"
        page = self._object(self._call("GET", path, params={"pageIndex": 0, "pageSize": 1000}), path)
        attributes = {str(a.get("name") or "").casefold(): a for a in page.get("items") or []}
        mappings = self._list(f"{PREFIX}/ProductSpecificationAttribute/GetAll", {"productId": int(product_id)})
        written: dict[str, str] = {}
        for name, value in values.items():
            attribute = attributes.get(name.casefold())
            if attribute is None:
                attribute = self._object(self._call("POST", f"{PREFIX}/SpecificationAttribute/Create", json={
                    "name": name, "display_order": 0, "specification_attribute_group_id": None}), name)
                attributes[name.casefold()] = attribute
            options = self._list(f"{PREFIX}/SpecificationAttributeOption/"
                                 f"GetSpecificationAttributeOptionsBySpecificationAttribute/{int(attribute['id'])}")
            option = next((o for o in options if str(o.get("name") or "").casefold() == value.casefold()), None)
            if option is None:
                option = self._object(self._call("POST", f"{PREFIX}/SpecificationAttributeOption/Create", json={
                    "specification_attribute_id": int(attribute["id"]), "name": value, "color_squares_rgb": None,
                    "display_order": 0}), value)
            option_ids = {int(o["id"]) for o in options} | {int(option["id"])}
            held = next((m for m in mappings if int(m.get("specification_attribute_option_id") or 0) in option_ids),
                        None)
            if held is not None and int(held["specification_attribute_option_id"]) == int(option["id"]):
                continue
            if held is None:
                self._call("POST", f"{PREFIX}/ProductSpecificationAttribute/Create", json={
                    "product_id": int(product_id), "attribute_type_id": 0,  # SpecificationAttributeType.Option
                    "specification_attribute_option_id": int(option["id"]), "custom_value": None,
                    "allow_filtering": True, "show_on_product_page": True, "display_order": 0})
            else:
                self._call("PUT", f"{PREFIX}/ProductSpecificationAttribute/Update",
                           json={**held, "specification_attribute_option_id": int(option["id"])})
            written[name] = value
        return written

    def _list(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list_of(self._call("GET", path, params=params), path)

    @staticmethod
    def _list_of(body: Any, path: str) -> list[dict[str, Any]]:
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise RetryableError(f"{SYSTEM} answered GET {path} with something else than a list",
                                 reason="target_bad_response", target_response=body)
        return body

    # ----------------------------------------------------------------- plumbing

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              decimals: bool = False) -> Any:
        """One API call with the cached token (on a 401 a new token and one more try: ``RefreshingTokenAuth``).
        Returns the JSON body (None for the plugin's empty ``Ok()``), numbers as Decimal with ``decimals``."""
        try:
            response = send(self._http, method, path, system=SYSTEM, params=params,
                            json=jsonable(json) if json is not None else None)
        except PermanentError as exc:
            explained = None if raised_getting_token(exc) else self._explained(exc, method, path)
            if explained is None:
                raise
            raise explained from exc
        if not response.content:
            return None
        try:
            return json_loads(response.content, parse_float=Decimal) if decimals else response.json()
        except ValueError:  # a 2xx that is not JSON (a proxy's page?); our writes are safe to repeat
            raise RetryableError(f"{SYSTEM} answered {method} {path} with a body that is not JSON",
                                 reason="target_bad_response", target_status=response.status_code,
                                 target_response=response.text[:2000]) from None

    def _explained(self, exc: PermanentError, method: str, path: str) -> PermanentError | None:
        """A clearer message for the answers whose cause is configuration, not the request; None to keep ``exc``."""
        status, body = exc.target_status, exc.target_response
        email = self.connection.email
        if status == 403:
            message = (f"{SYSTEM} denied {method} {path} to {email} (403): give the customer's role the "
                       "'Access Web API Backend' permission (Customers > Access control list)")
        elif status == 401:
            message = (f"{SYSTEM} refused a freshly issued token for {email} on {method} {path} (401): "
                       "is the shop's clock far off, or its JWT secret key being regenerated?")
        elif status == 404 and not _is_plugin_not_found(body):
            message = (f"{SYSTEM} has no {method} {path} (404 without a message): is the Web API Backend plugin "
                       f"installed, and {self.connection.base_url!r} the shop's root URL?")
            return PermanentError(message, reason="target_not_found", target_status=status, target_response=body)
        else:
            return None
        return PermanentError(message, reason="target_auth_failed", target_status=status, target_response=body)

    def _token_for(self, rejected: str | None) -> str:
        if rejected is not None:
            self._forget_token(rejected)  # expired early, or the shop's secret key was regenerated
        return self._current_token()

    def _current_token(self) -> str:
        with self._lock:  # held while fetching: concurrent callers wait for one GetToken instead of racing
            if self._token is not None and (self._expires_at is None
                                            or self._clock() < self._expires_at - self._margin):
                return self._token
            self._token = self._fetch_token()
            self._expires_at = token_expiry(self._token)
            return self._token

    def _forget_token(self, rejected: str) -> None:
        with self._lock:
            if self._token == rejected:  # another thread may already have fetched a new one
                self._token = None

    def _fetch_token(self) -> str:
        credentials = {"email": self.connection.email, "password": self.connection.password}
        try:
            response = send(self._http, "POST", TOKEN_PATH, system=SYSTEM, json=credentials, auth=None)
        except PermanentError as exc:
            if exc.target_status in (400, 401, 403):
                body = exc.target_response
                said = body.get("message") if isinstance(body, dict) else None
                raise PermanentError(
                    f"{SYSTEM} refused to sign in {self.connection.email} ({said or exc.target_status}): "
                    "check the e-mail and password in the connection secret",
                    reason="target_auth_failed", target_status=exc.target_status, target_response=body,
                ) from exc
            explained = self._explained(exc, "POST", TOKEN_PATH)
            if explained is None:
                raise
            raise explained from exc
        try:
            token = response.json().get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RetryableError(f"{SYSTEM} answered GetToken without a token", reason="target_bad_response",
                                 target_status=response.status_code)
        return token

    @staticmethod
    def _object(body: Any, path: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RetryableError(f"{SYSTEM} answered {path} with something else than an object",
                                 reason="target_bad_response", target_response=body)
        return body
