"""The nopCommerce → BNG mapping document (``config/mappings/nopcommerce-to-bng.yaml``), compiled once.

The document holds what an integrator changes (which fields become BNG's name, type, custom fields and GL
dimensions, the status tables, the notes); the invariants stay here, in code:

* addresses normalised: trimmed, country as ISO 3166-1 alpha-2, state/province as ISO 3166-2 of that country,
  postal code in its country's format;
* money as Decimal in the order's currency (nopCommerce amounts times ``CurrencyRate``), quantized to that
  currency's minor unit, and the BNG total equal to nopCommerce's ``OrderTotal`` to the minor unit;
* lines of the same product at the same unit price aggregated into one BNG line (lines of one product at
  different prices stay apart: one line at an averaged price could not add up to the cent), each BNG line
  naming the nopCommerce order items it stands for (``ExternalLineID`` = their ids, ``;``-separated), so a
  BNG shipment maps back onto them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError, PermanentError
from switchyard.mapping.conditions import compile_condition
from switchyard.mapping.rules import compile_rule

Getter = Callable[[Any], Any]
MAPPING_FILE = "nopcommerce-to-bng.yaml"
MINOR_UNITS = {"BHD": 3, "CLP": 0, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "OMR": 3, "TND": 3,
               "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0}
STATUS_FIELDS = ("order_status_id", "shipping_status_id", "payment_status_id")
BNG_STATUSES = ("New", "Released", "Shipped", "Invoiced", "Cancelled")
MAX_EXTERNAL_LINE_ID = 64
# postal code formats: (pattern on the compacted upper-case code, formatter)
_POSTAL: dict[str, tuple[re.Pattern[str], Callable[[str], str]]] = {
    "US": (re.compile(r"^\d{5}(\d{4})?$"), lambda c: c if len(c) == 5 else f"{c[:5]}-{c[5:]}"),
    "CA": (re.compile(r"^[A-Z]\d[A-Z]\d[A-Z]\d$"), lambda c: f"{c[:3]} {c[3:]}"),
    "GB": (re.compile(r"^[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}$"), lambda c: f"{c[:-3]} {c[-3:]}"),
    "NL": (re.compile(r"^\d{4}[A-Z]{2}$"), lambda c: f"{c[:4]} {c[4:]}"),
    "JP": (re.compile(r"^\d{7}$"), lambda c: f"{c[:3]}-{c[3:]}"),
    "DE": (re.compile(r"^\d{5}$"), lambda c: c),
    "FR": (re.compile(r"^\d{5}$"), lambda c: c),
    "IT": (re.compile(r"^\d{5}$"), lambda c: c),
}


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))


def money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def postal_code(value: str | None, country: str) -> str | None:
    """Trimmed, upper-cased, in the country's format when it is one Switchyard knows and the code fits it;
    otherwise as typed (trimmed): BNG decides, and its refusal names the field."""
    if value is None or not value.strip():
        return None
    text = " ".join(value.split()).upper()
    known = _POSTAL.get(country)
    if known is None:
        return text
    compact = re.sub(r"[\s-]", "", text)
    pattern, formatted = known
    return formatted(compact) if pattern.fullmatch(compact) else text


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerDoc(_Doc):
    external_id: dict[str, Any]
    name: dict[str, Any] | list[dict[str, Any]]
    email: dict[str, Any] | None = None
    phone: dict[str, Any] | None = None
    type: dict[str, Any] | list[dict[str, Any]] = {"const": "Consumer"}
    custom_fields: dict[str, dict[str, Any]] = {}


class SalesOrderDoc(_Doc):
    external_order_id: dict[str, Any]
    reference: dict[str, Any] | None = None
    prices: Literal["excl_tax", "incl_tax"] = "excl_tax"
    rounding_tolerance_minor_units_per_line: int = Field(default=1, ge=0)
    custom_fields: dict[str, dict[str, Any]] = {}
    gl_dimensions: dict[str, list[dict[str, Any]]] = {}


class StatusDoc(_Doc):
    nop_to_bng: dict[int, Literal["New", "Released", "Shipped", "Invoiced", "Cancelled"]]
    bng_to_nop: dict[Literal["New", "Released", "Shipped", "Invoiced", "Cancelled"], dict[str, int]]
    never_from: dict[str, list[int]] = {}
    partially_shipped: dict[str, int] = {}


class ShipmentDoc(_Doc):
    notify_note: str
    admin_comment: str
    display_to_customer: bool = False
    invoiced_note: str
    review_note: str


class ProductsDoc(_Doc):
    # BNG product attribute -> nopCommerce specification attribute name; BNG attributes not listed stay in BNG
    specification_attributes: dict[str, str] = {}


class MappingDoc(_Doc):
    flow: str
    target: Literal["bng"]
    description: str = ""
    lookups: dict[str, dict[Any, Any]] = {}
    customer: CustomerDoc
    sales_order: SalesOrderDoc
    status: StatusDoc
    shipment: ShipmentDoc
    products: ProductsDoc = ProductsDoc()


def _choice(spec: dict[str, Any] | list[dict[str, Any]], lookups: Mapping[str, Any], where: str) -> Getter:
    """A rule, or a list of ``{when?, value}`` of which the first whose condition holds gives the value."""
    if isinstance(spec, dict):
        return compile_rule(spec, lookups, where)
    branches: list[tuple[Callable[[Any], bool] | None, Getter]] = []
    for index, branch in enumerate(spec):
        if not isinstance(branch, dict) or "value" not in branch or set(branch) - {"when", "value"}:
            raise MappingError(f"{where}[{index}]: a branch is {{when: <condition>, value: <rule>}}")
        when = compile_condition(branch["when"], f"{where}[{index}].when") if "when" in branch else None
        branches.append((when, compile_rule(branch["value"], lookups, f"{where}[{index}].value")))

    def first(data: Any) -> Any:
        for when, value in branches:
            if when is None or when(data):
                return value(data)
        return None

    return first


@dataclass(frozen=True)
class BngLinePlan:
    sku: str
    quantity: int
    unit_price: Decimal
    description: str | None
    order_item_ids: tuple[int, ...]


class BngOrderMapping:
    """The compiled document. ``customer`` and ``sales_order`` give BNG request bodies for an
    ``order.placed`` event's data; the status tables answer both directions."""

    def __init__(self, doc: MappingDoc) -> None:
        self.doc = doc
        lookups = doc.lookups
        self._countries = {str(key): str(value) for key, value in lookups.get("country_by_id", {}).items()}
        self._states = {str(key): str(value) for key, value in lookups.get("state_by_id", {}).items()}
        c = doc.customer
        self._customer: dict[str, Getter | None] = {
            "ExternalID": _choice(c.external_id, lookups, "customer.external_id"),
            "Name": _choice(c.name, lookups, "customer.name"),
            "Email": _choice(c.email, lookups, "customer.email") if c.email else None,
            "Phone": _choice(c.phone, lookups, "customer.phone") if c.phone else None,
            "Type": _choice(c.type, lookups, "customer.type"),
        }
        self._customer_fields = {name: _choice(rule, lookups, f"customer.custom_fields.{name}")
                                 for name, rule in c.custom_fields.items()}
        o = doc.sales_order
        self._external_order_id = _choice(o.external_order_id, lookups, "sales_order.external_order_id")
        self._reference = _choice(o.reference, lookups, "sales_order.reference") if o.reference else None
        self._order_fields = {name: _choice(rule, lookups, f"sales_order.custom_fields.{name}")
                              for name, rule in o.custom_fields.items()}
        self._dimensions = {name: _choice(rule, lookups, f"sales_order.gl_dimensions.{name}")
                            for name, rule in o.gl_dimensions.items()}
        for name, values in doc.status.bng_to_nop.items():
            if set(values) - set(STATUS_FIELDS):
                raise MappingError(f"status.bng_to_nop.{name}: fields are {', '.join(STATUS_FIELDS)}")

    # ----------------------------------------------------------------- ids and statuses

    def external_id(self, data: Mapping[str, Any]) -> str:
        return str(self.customer(data)["ExternalID"])

    def external_order_id(self, data: Mapping[str, Any]) -> str:
        return str(self._external_order_id(data))

    def bng_status_for(self, order_status_id: int) -> str | None:
        return self.doc.status.nop_to_bng.get(int(order_status_id))

    def nop_statuses_for(self, bng_status: str, *, partially_shipped: bool = False) -> dict[str, int]:
        statuses = dict(self.doc.status.bng_to_nop.get(bng_status, {}))  # type: ignore[call-overload]
        if partially_shipped:
            statuses.update(self.doc.status.partially_shipped)
        return statuses

    @property
    def never_from(self) -> dict[str, list[int]]:
        return dict(self.doc.status.never_from)

    # ----------------------------------------------------------------- customer

    def customer(self, data: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {name: rule(data) for name, rule in self._customer.items() if rule is not None}
        body["ExternalID"] = str(body["ExternalID"])
        body["BillingAddress"] = self.address(data.get("BillingAddress"), "BillingAddress")
        body["ShippingAddress"] = self.address(data.get("ShippingAddress"), "ShippingAddress")
        fields = {name: rule(data) for name, rule in self._customer_fields.items()}
        body["CustomFields"] = {name: _plain(value) for name, value in fields.items() if value is not None}
        return body

    def address(self, address: Any, where: str) -> dict[str, Any] | None:
        if not isinstance(address, Mapping):
            return None

        def text(name: str) -> str | None:
            value = address.get(name)
            return " ".join(str(value).split()) or None if value is not None else None

        country = text("CountryTwoLetterIsoCode")
        if country is None and address.get("CountryId") is not None:
            country = self._countries.get(str(address["CountryId"]))
            if country is None:
                raise PermanentError(f"{where}: nopCommerce country id {address['CountryId']} has no ISO code in "
                                     "lookups.country_by_id of the mapping", reason="unmapped_value")
        if country is None:
            raise PermanentError(f"{where}: the address has no country", reason="missing_required_field")
        country = country.upper()
        state = None
        abbreviation = text("StateProvinceAbbreviation")
        if abbreviation is not None:
            state = abbreviation.upper() if "-" in abbreviation else f"{country}-{abbreviation.upper()}"
        elif address.get("StateProvinceId") not in (None, 0):
            state = self._states.get(str(address["StateProvinceId"]))
            if state is None:
                raise PermanentError(f"{where}: nopCommerce state/province id {address['StateProvinceId']} has no "
                                     "ISO 3166-2 code in lookups.state_by_id", reason="unmapped_value")
        person = " ".join(filter(None, (text("FirstName"), text("LastName")))) or None
        return {"Name": person, "Company": text("Company"), "Line1": text("Address1"), "Line2": text("Address2"),
                "City": text("City"), "State": state, "PostalCode": postal_code(text("ZipPostalCode"), country),
                "Country": country}

    # ----------------------------------------------------------------- sales order

    def currency(self, order: Mapping[str, Any]) -> tuple[str, Decimal]:
        code = str(order.get("CustomerCurrencyCode") or "").upper()
        rate = _decimal(order.get("CurrencyRate") if order.get("CurrencyRate") is not None else 1)
        return code, rate

    def lines(self, data: Mapping[str, Any]) -> list[BngLinePlan]:
        order = data["Order"]
        currency, rate = self.currency(order)
        price_field = "UnitPriceExclTax" if self.doc.sales_order.prices == "excl_tax" else "UnitPriceInclTax"
        grouped: dict[tuple[str, Decimal], BngLinePlan] = {}
        for item in data.get("OrderItems") or []:
            product = item.get("Product") or {}
            sku = str(product.get("Sku") or "").strip()
            if not sku:
                raise PermanentError(f"order item {item.get('Id')} (product {item.get('ProductId')}) has no SKU: BNG "
                                     "finds products by SKU", reason="unmapped_product")
            raw_price = item.get(price_field)
            if raw_price is None:
                raw_price = item.get("UnitPriceInclTax")
            price = money(_decimal(raw_price) * rate, currency)
            key = (sku.casefold(), price)
            held = grouped.get(key)
            quantity = int(item["Quantity"])
            if held is None:
                grouped[key] = BngLinePlan(sku, quantity, price, product.get("Name"), (int(item["Id"]),))
            else:
                grouped[key] = BngLinePlan(held.sku, held.quantity + quantity, price, held.description,
                                           (*held.order_item_ids, int(item["Id"])))
        return list(grouped.values())

    def sales_order(self, data: Mapping[str, Any], customer_id: str) -> dict[str, Any]:
        order = data["Order"]
        currency, rate = self.currency(order)
        lines = self.lines(data)
        subtotal = sum((money(line.unit_price * line.quantity, currency) for line in lines), Decimal(0))
        excl = self.doc.sales_order.prices == "excl_tax"
        shipping_raw = order.get("OrderShippingExclTax" if excl else "OrderShippingInclTax")
        if shipping_raw is None:
            shipping_raw = order.get("OrderShippingInclTax", 0)
        shipping = money(_decimal(shipping_raw) * rate, currency)
        tax = money(_decimal(order.get("OrderTax") or 0) * rate, currency) if excl else Decimal(0)
        discount = money((_decimal(order.get("OrderDiscount") or 0)
                          + _decimal(order.get("OrderSubTotalDiscountExclTax") or 0)) * rate, currency)
        total = money(_decimal(order["OrderTotal"]) * rate, currency)
        difference = total - (subtotal + shipping + tax - discount)
        per_line = self.doc.sales_order.rounding_tolerance_minor_units_per_line
        tolerance = quantum(currency) * per_line * max(1, len(lines))
        if abs(difference) > tolerance:
            raise PermanentError(
                f"order {order.get('CustomOrderNumber')}: lines {subtotal} + shipping {shipping} + tax {tax} "
                f"- discount {discount} = {subtotal + shipping + tax - discount} {currency}, but OrderTotal is "
                f"{total} {currency} "
                "(a fee or an amount the mapping does not carry?)", reason="totals_mismatch")
        if difference > 0:  # rounding of converted unit prices: absorbed so the totals agree to the minor unit
            shipping += difference
        elif difference < 0:
            discount -= difference
        body: dict[str, Any] = {
            "ExternalOrderID": self.external_order_id(data),
            "CustomerID": customer_id,
            "OrderDate": _rfc3339(order.get("CreatedOnUtc")),
            "Currency": currency,
            "Lines": [{"SKU": line.sku, "Quantity": line.quantity, "UnitPrice": str(line.unit_price),
                       "Description": (str(line.description)[:400] if line.description else None),
                       "ExternalLineID": _line_id(line.order_item_ids)} for line in lines],
            "Totals": {"Shipping": str(shipping), "Tax": str(tax), "Discount": str(discount), "Total": str(total)},
            "ShippingAddress": self.address(data.get("ShippingAddress"), "ShippingAddress")
            or self.address(data.get("BillingAddress"), "BillingAddress"),
            "BillingAddress": self.address(data.get("BillingAddress"), "BillingAddress"),
            "CustomFields": {name: _plain(value) for name, rule in self._order_fields.items()
                             if (value := rule(data)) is not None},
            "GLDimensions": {name: str(value) for name, rule in self._dimensions.items()
                             if (value := rule(data)) is not None},
        }
        if self._reference is not None:
            body["Reference"] = self._reference(data)
        return body


def order_items_for(external_line_id: str | None) -> list[int]:
    """The nopCommerce order item ids a BNG line stands for (its ``ExternalLineID``)."""
    if not external_line_id:
        return []
    return [int(part) for part in str(external_line_id).split(";") if part.strip().isdigit()]


def _line_id(ids: Sequence[int]) -> str:
    text = ";".join(str(i) for i in ids)
    if len(text) > MAX_EXTERNAL_LINE_ID:  # too many items of one product: the shipment maps back by SKU
        return str(ids[0])
    return text


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if text.endswith("Z") or "+" in text[10:]:
        return text
    return f"{text}Z"  # nopCommerce dates are UTC without an offset


def parse_mapping(text: str, name: str = MAPPING_FILE) -> BngOrderMapping:
    try:
        return BngOrderMapping(MappingDoc.model_validate(yaml.safe_load(text)))
    except (yaml.YAMLError, ValidationError) as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_bng_mapping(file_name: str = MAPPING_FILE) -> BngOrderMapping:
    return parse_mapping(mapping_path(file_name).read_text(), file_name)
