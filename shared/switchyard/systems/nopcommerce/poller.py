"""nopCommerce orders read through the Web API Backend plugin, turned into the events its webhook plugin
would have sent (``docs/sources.md``): the polling source of ``switchyard.polling``.

``Order/Search`` pages orders newest first by creation time; nopCommerce keeps no "updated on" time, so a
change is found by comparing the order's status ids and refunded amount with its snapshot:

=========================  =====================================================  =========================
what changed               event                                                  event id
=========================  =====================================================  =========================
first seen                 ``order.placed`` (order, items, customer, addresses)   ``…:placed``
payment became Paid (or    ``order.paid`` (also at first sight when paid)         ``…:paid``
refunded: it was paid)
order or shipping status,  ``order.status_changed`` (also at first sight when     ``…:status:<o>-<p>-<s>``
or payment authorized,     the order is no longer Pending)
voided, pending
RefundedAmount grew        ``order.refunded`` (PaymentStatusId 35 or 40)          ``…:refunded:<amount>``
=========================  =====================================================  =========================

Ids are ``nopcommerce:order:<OrderGuid>:<state reached>``: the same change seen by two polls (or a poll
repeated after a crash) is the same event. The push contract asks a webhook sender for the same ids, so
the sweep recognises what the webhooks delivered. Money is read as Decimal and written as JSON numbers
with the digits the shop sent.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from switchyard.errors import PermanentError
from switchyard.polling import Page, PolledEvent, WindowKind

PAID = 30
REFUNDED_STATUSES = (35, 40)
PENDING = 10
PAID_OR_LATER = (PAID, *REFUNDED_STATUSES)

ORDER_FIELDS = (
    "Id", "OrderGuid", "CustomOrderNumber", "StoreId", "CustomerId", "OrderStatusId", "PaymentStatusId",
    "ShippingStatusId", "PaymentMethodSystemName", "CustomerCurrencyCode", "CurrencyRate", "OrderSubtotalInclTax",
    "OrderSubtotalExclTax", "OrderSubTotalDiscountInclTax", "OrderSubTotalDiscountExclTax", "OrderShippingInclTax",
    "OrderShippingExclTax", "OrderTax", "OrderDiscount", "OrderTotal", "RefundedAmount", "PaidDateUtc",
    "CreatedOnUtc", "ShippingMethod", "VatNumber",
)
ITEM_FIELDS = (
    "Id", "OrderItemGuid", "ProductId", "Quantity", "UnitPriceInclTax", "UnitPriceExclTax", "PriceInclTax",
    "PriceExclTax", "DiscountAmountInclTax", "DiscountAmountExclTax", "AttributeDescription",
)
CUSTOMER_FIELDS = ("Id", "Email", "FirstName", "LastName", "Company", "Phone")
ADDRESS_FIELDS = (
    "FirstName", "LastName", "Email", "Company", "Address1", "Address2", "City", "County", "ZipPostalCode",
    "PhoneNumber", "CountryId", "StateProvinceId",
)
DATE_FIELDS = frozenset({"PaidDateUtc", "CreatedOnUtc"})
_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


class OrderReader(Protocol):
    """What the poller needs of ``NopCommerceClient``."""

    def search_orders(self, *, created_from: datetime, created_to: datetime, page_index: int,
                      page_size: int) -> dict[str, Any]: ...
    def order_items(self, order_id: int) -> list[dict[str, Any]]: ...
    def get_entity(self, controller: str, entity_id: int) -> dict[str, Any]: ...


def wire_name(name: str) -> str:
    """``OrderSubTotalDiscountExclTax`` -> ``order_sub_total_discount_excl_tax`` (the plugin's snake_case)."""
    return _UPPER.sub("_", name).lower()


def wire_time(value: str) -> datetime:
    """A plugin date (UTC, written without an offset) as an aware datetime."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _pick(dto: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of a snake_case DTO under nopCommerce's names; absent and null values left out."""
    picked: dict[str, Any] = {}
    for name in names:
        value = dto.get(wire_name(name))
        if value is None:
            continue
        picked[name] = _rfc3339(wire_time(value)) if name in DATE_FIELDS else value
    return picked


def event_id(order_guid: str, state: str) -> str:
    return f"nopcommerce:order:{order_guid}:{state}"


def snapshot(order: Mapping[str, Any]) -> dict[str, Any]:
    """What is compared next time: the three status ids and the refunded amount (as text: exact)."""
    return {"o": order["order_status_id"], "p": order["payment_status_id"], "s": order["shipping_status_id"],
            "r": _amount_text(order.get("refunded_amount") or 0)}


def _amount_text(value: Any) -> str:
    return format(Decimal(str(value)).normalize(), "f")


def envelope_json(event_type: str, timestamp: str, data: Mapping[str, Any]) -> str:
    """``{"type", "timestamp", "data"}`` with Decimal money written as JSON numbers, digit for digit."""
    nonce = secrets.token_hex(8)

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{nonce}{format(value, 'f')}"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps({"type": event_type, "timestamp": timestamp, "data": mark(dict(data))},
                      separators=(",", ":"), ensure_ascii=False)
    return re.sub(f'"{nonce}(-?[0-9.]+)"', r"\1", text)


class NopCommerceOrderSource:
    """``switchyard.polling.PollSource`` over one shop's orders."""

    window: WindowKind = "created"  # Order/Search filters by creation time; orders keep no change time

    def __init__(self, client: OrderReader) -> None:
        self._client = client
        self._products: dict[int, dict[str, Any]] = {}  # per run: products repeat across orders

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page:
        page = self._client.search_orders(created_from=created_from, created_to=created_to, page_index=page_index,
                                          page_size=page_size)
        return Page(items=page["items"], has_next=bool(page.get("has_next_page")))

    def key(self, item: Mapping[str, Any]) -> str:
        return str(int(item["id"]))

    def created_on(self, item: Mapping[str, Any]) -> datetime:
        return wire_time(item["created_on_utc"])

    def snapshot(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return snapshot(item)

    def events(self, item: Mapping[str, Any], previous: Mapping[str, Any] | None,
               observed_at: datetime) -> list[PolledEvent]:
        current = snapshot(item)
        guid = str(item["order_guid"])
        order = _pick(item, ORDER_FIELDS)
        observed = _rfc3339(observed_at)
        events: list[PolledEvent] = []

        def add(event_type: str, state: str, timestamp: str, data: Mapping[str, Any]) -> None:
            events.append(PolledEvent(event_id(guid, state), event_type, timestamp,
                                      envelope_json(event_type, timestamp, data)))

        status_key = f"status:{current['o']}-{current['p']}-{current['s']}"
        paid_at = order.get("PaidDateUtc", observed)
        if previous is None:
            add("order.placed", "placed", order["CreatedOnUtc"], self._placed_data(item, order))
            if current["p"] in PAID_OR_LATER:  # a refunded order was paid first
                add("order.paid", "paid", paid_at, {"Order": order})
            if current["o"] != PENDING:
                add("order.status_changed", status_key, observed, {"Order": order})
            if current["p"] in REFUNDED_STATUSES and Decimal(current["r"]) > 0:
                add("order.refunded", f"refunded:{current['r']}", observed, {"Order": order})
            return events
        if current["p"] in PAID_OR_LATER and previous["p"] not in PAID_OR_LATER:
            add("order.paid", "paid", paid_at, {"Order": order})
        # a payment status that neither order.paid nor order.refunded reports (authorized, voided, pending again)
        payment_otherwise = current["p"] != previous["p"] and current["p"] not in PAID_OR_LATER
        if (current["o"], current["s"]) != (previous["o"], previous["s"]) or payment_otherwise:
            add("order.status_changed", status_key, observed, {"Order": order})
        if current["p"] in REFUNDED_STATUSES and Decimal(current["r"]) > Decimal(previous.get("r") or "0"):
            add("order.refunded", f"refunded:{current['r']}", observed, {"Order": order})
        return events

    def _placed_data(self, item: Mapping[str, Any], order: Mapping[str, Any]) -> dict[str, Any]:
        """What the webhook's ``order.placed`` carries: the order, its items with their product, the
        customer (a guest's e-mail is the billing address's) and the addresses."""
        items = []
        for raw in self._client.order_items(int(item["id"])):
            line = _pick(raw, ITEM_FIELDS)
            product = self._product(int(raw["product_id"]))
            line["Product"] = {key: value for key, value in (("Id", product.get("id")), ("Name", product.get("name")),
                                                             ("Sku", product.get("sku"))) if value is not None}
            items.append(line)
        data: dict[str, Any] = {"Order": dict(order), "OrderItems": items}
        billing = self._entity("Address", item.get("billing_address_id"), ADDRESS_FIELDS)
        if billing is not None:
            data["BillingAddress"] = billing
        customer = self._entity("Customer", item.get("customer_id"), CUSTOMER_FIELDS)
        if customer is not None:
            if not customer.get("Email") and billing and billing.get("Email"):
                customer["Email"] = billing["Email"]  # a guest: the shop keeps the e-mail on the address
            data["Customer"] = customer
        shipping = self._entity("Address", item.get("shipping_address_id"), ADDRESS_FIELDS)
        if shipping is not None:
            data["ShippingAddress"] = shipping
        return data

    def _entity(self, controller: str, entity_id: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
        """The entity's fields, or None when the order names none or the shop no longer has it (the event is
        then left without it: the schema decides, and an order that cannot be a valid event is reported,
        not retried forever)."""
        if not entity_id:
            return None
        try:
            return _pick(self._client.get_entity(controller, int(entity_id)), names)
        except PermanentError as exc:
            if exc.reason != "target_not_found":
                raise
            return None

    def _product(self, product_id: int) -> dict[str, Any]:
        if product_id not in self._products:
            self._products[product_id] = self._client.get_entity("Product", product_id)
        return self._products[product_id]
