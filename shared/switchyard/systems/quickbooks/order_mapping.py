"""The mapping of nopCommerce orders to QuickBooks Online documents (flow ``nopcommerce-to-quickbooks``).

The document (``config/mappings/nopcommerce-to-quickbooks.yaml``) holds the settings: home currency, which
payment statuses mean "paid now", how products find their Items, the shipping item, discount and tax
handling, the DocNumber rule, customer naming (and what to do when QuickBooks says a name is taken, 6240)
and the write-back to nopCommerce; and the rules saying which nopCommerce field fills which QuickBooks
field (customer, addresses, document header, lines: ``order_rules``). ``load_order_mapping`` validates
and compiles it once per process.

The functions here are pure (no I/O): they turn an event's ``data`` (nopCommerce's names, numbers parsed
as Decimal) into QuickBooks bodies. ``switchyard.systems.quickbooks.order_to_cash`` calls QuickBooks and
nopCommerce with them.

Amounts: nopCommerce's are in the primary store currency, assumed to be the company's home currency. A
line books nopCommerce's own line price (``PriceExclTax``), never ``Qty x`` a rounded unit price; its
``UnitPrice`` is ``Amount / Qty`` to QuickBooks' seven decimals. An order in another currency is booked in
that currency: every amount times ``Order.CurrencyRate``, rounded to cents half-up, and ``ExchangeRate``
(home units per foreign unit) ``= 1 / CurrencyRate``. The document equals ``Order.OrderTotal`` (converted)
to the cent: where rounding (nopCommerce's, or the conversion's) makes the amounts differ from it, the
difference is booked as a line of its own on the mapping's rounding item and named in ``PrivateNote``; a
difference larger than rounding can explain dead-letters the order (``totals_mismatch``).
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError, PermanentError
from switchyard.mapping.rules import LOOKUP_DEFAULT, compile_rules
from switchyard.systems.nopcommerce.source import NopOrder, NopOrderItem, OrderPlacedData
from switchyard.systems.quickbooks.order_rules import (
    DEFAULT_DISPLAY_NAME,
    DEFAULT_LOOKUPS,
    CustomerRulesDoc,
    DocumentRulesDoc,
    LineRulesDoc,
    OrderRules,
    PaymentRulesDoc,
    Rule,
    rule_paths,
)

CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")
UNIT_PRICE_PLACES = Decimal("0.0000001")  # QuickBooks keeps seven decimals of a UnitPrice (two of an Amount)
RATE_PLACES = Decimal("0.000001")  # ExchangeRate precision QuickBooks shows
QBO_DOC_NUMBER_MAX = 21
QBO_NAME_MAX = 100
QBO_NOTE_MAX = 4000
QBO_DESCRIPTION_MAX = 4000
QBO_MEMO_MAX = 1000  # CustomerMemo
QBO_CUSTOM_FIELD_MAX = 31  # a custom field's StringValue
QBO_PAYMENT_REF_MAX = 21  # PaymentRefNum of a SalesReceipt or Payment
ORDER_CANCELLED = 40  # nopCommerce OrderStatus.Cancelled
SALES_RECEIPT = "SalesReceipt"
ROUNDING_DESCRIPTION = "Rounding adjustment"
INVOICE = "Invoice"
_SPACES = re.compile(r"\s+")

# placeholders each template may use (checked when the document is loaded)
_TEMPLATE_FIELDS = {
    "sent_note": {"doc_type", "doc_number"},
    "payment_note": {"payment_id", "doc_number", "amount", "currency"},
    "void_note": {"doc_number", "doc_type"},
    "review_note": {"doc_type", "doc_number"},
    "paid_voided_note": {"doc_number"},
    "refund_note": {"doc_type", "refund_id", "doc_number", "amount", "currency", "refunded_total"},
    "failure_note": {"order_number", "detail"},
    "currency_suffix": {"currency"},
    "refund_description": {"order_number"},
    "duplicate_name_suffix": {"customer_id"},
}


# --- the document -----------------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CurrencyDoc(_Doc):
    home: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class PaymentDoc(PaymentRulesDoc):
    paid_status_ids: list[int] = Field(default_factory=lambda: [30], min_length=1)


class NewItemDoc(_Doc):
    """The QuickBooks Item an unknown product becomes (``items.unknown: create``); rules read the order line's
    item as ``Item`` (and ``Order``)."""

    type: Literal["NonInventory", "Service", "Inventory"] = "NonInventory"
    name: Rule = Field(default_factory=lambda: {"path": "Item.Product.Name"})
    unit_price: Rule = Field(default_factory=lambda: {"path": "Item.UnitPriceExclTax"})  # the home currency
    income_account_id: str | None = Field(default=None, min_length=1)  # IncomeAccountRef (required)
    asset_account_id: str | None = Field(default=None, min_length=1)  # AssetAccountRef (Inventory)
    expense_account_id: str | None = Field(default=None, min_length=1)  # ExpenseAccountRef, COGS (Inventory)


class ItemsDoc(_Doc):
    match_on: Literal["Sku", "Name"] = "Sku"
    shipping_sku: str | None = Field(default="SHIPPING", min_length=1)
    cache_ttl_seconds: float = Field(default=300, ge=0)
    unknown: Literal["dead_letter", "create"] = "dead_letter"  # a product key no active Item has
    create: NewItemDoc = Field(default_factory=NewItemDoc)


class DiscountDoc(_Doc):
    description: str = "Discount"
    account_id: str | None = None


class TaxDoc(_Doc):
    amounts: Literal["excl_tax", "incl_tax"] = "excl_tax"
    line_tax_code: str | None = None


class RoundingDoc(_Doc):
    item_sku: str | None = Field(default=None, min_length=1)


class RefundsDoc(_Doc):
    """order.refunded: a RefundReceipt (SalesReceipt) or CreditMemo (Invoice) of the newly refunded amount."""

    item_sku: str = Field(default="REFUND", min_length=1)  # the Service item a refund's one line is booked on
    description: str = "Refund of nopCommerce order {order_number}"
    refund_from_account_id: str | None = Field(default=None, min_length=1)  # RefundReceipt DepositToAccountRef


class DocNumberDoc(_Doc):
    max_length: int = Field(default=QBO_DOC_NUMBER_MAX, ge=1, le=QBO_DOC_NUMBER_MAX)
    overflow: Literal["keep_last", "reject"] = "keep_last"


class TxnDateDoc(_Doc):
    timezone: str = "UTC"


class DisplayNameDoc(_Doc):
    value: Rule = Field(default_factory=lambda: dict(DEFAULT_DISPLAY_NAME))  # the name before the rules below
    colon_replacement: str = "-"
    max_length: int = Field(default=QBO_NAME_MAX, ge=20, le=QBO_NAME_MAX)
    currency_suffix: str = " ({currency})"


class CustomerDoc(CustomerRulesDoc):
    display_name: DisplayNameDoc = Field(default_factory=DisplayNameDoc)
    duplicate_name_suffix: str = " [nop {customer_id}]"
    # nopCommerce CountryId -> ISO code: the lookup table ``countries`` (older documents); ``lookups.countries``
    # is the place now
    countries: dict[int, str] = Field(default_factory=dict)


_REDRIVE = "then have the order sent again (redrive it from the dead-letter queue)"
# the reasons an order.placed is dead-lettered for that someone in the shop can fix, and the note each leaves
DEFAULT_FAILURE_NOTES: dict[str, str] = {
    "unmapped_product": ("Not sent to QuickBooks: {detail}. QuickBooks has no active product or service with that "
                         f"SKU: add it there (or correct the SKU here), {_REDRIVE}."),
    "ambiguous_product": ("Not sent to QuickBooks: {detail}. Make one of them inactive or give it another SKU, "
                          f"{_REDRIVE}."),
    "missing_sku": f"Not sent to QuickBooks: {{detail}}. Give the product a SKU, {_REDRIVE}.",
    "totals_mismatch": ("Not sent to QuickBooks: {detail}. Nothing was booked; book this order by hand or ask for "
                        "the mapping's settings to be corrected, " + _REDRIVE + "."),
    "duplicate_document_number": f"Not sent to QuickBooks: {{detail}}, {_REDRIVE}.",
    "duplicate_name": "Not sent to QuickBooks: {detail}, " + _REDRIVE + ".",
    "doc_number_too_long": f"Not sent to QuickBooks: {{detail}}. Shorten the custom order number, {_REDRIVE}.",
    "refund_exceeds_document": ("Refund not booked in QuickBooks: {detail}. Nothing was refunded there: book the "
                                "refund by hand."),
}


class WriteBackDoc(_Doc):
    display_to_customer: bool = False
    sent_note: str = "Sent to QuickBooks: {doc_type} {doc_number}"
    payment_note: str = "Payment recorded in QuickBooks: Payment {payment_id} for Invoice {doc_number}"
    void_note: str = "Voided in QuickBooks: Invoice {doc_number}"
    review_note: str = ("Cancelled after payment: {doc_type} {doc_number} is paid in QuickBooks and was not "
                        "changed; review it there")
    paid_voided_note: str = ("Paid after cancel: Invoice {doc_number} is voided in QuickBooks and no payment "
                             "was recorded; review it there")
    refund_note: str = "Refund recorded in QuickBooks: {doc_type} {refund_id}, {amount} {currency}"
    set_status_id: int | None = 20
    set_status_only_from: list[int] = Field(default_factory=lambda: [10])
    # why an order could not be booked and what to do, noted once per reason (keyed by the DLQ reason)
    failure_notes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_FAILURE_NOTES))


class OrderMappingDoc(_Doc):
    flow: str = Field(min_length=1)
    target: Literal["quickbooks"]
    description: str = ""
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)  # tables for the rules' {lookup: name}
    currency: CurrencyDoc = Field(default_factory=CurrencyDoc)
    payment: PaymentDoc = Field(default_factory=PaymentDoc)
    items: ItemsDoc = Field(default_factory=ItemsDoc)
    discount: DiscountDoc = Field(default_factory=DiscountDoc)
    tax: TaxDoc = Field(default_factory=TaxDoc)
    rounding: RoundingDoc = Field(default_factory=RoundingDoc)
    refunds: RefundsDoc = Field(default_factory=RefundsDoc)
    doc_number: DocNumberDoc = Field(default_factory=DocNumberDoc)
    txn_date: TxnDateDoc = Field(default_factory=TxnDateDoc)
    customer: CustomerDoc = Field(default_factory=CustomerDoc)
    document: DocumentRulesDoc = Field(default_factory=DocumentRulesDoc)
    lines: LineRulesDoc = Field(default_factory=LineRulesDoc)
    write_back: WriteBackDoc = Field(default_factory=WriteBackDoc)


@cache
def default_rules() -> OrderRules:
    """The rules of a document that states none (what the flow has always done)."""
    doc = OrderMappingDoc(flow="-", target="quickbooks")
    return _compile_rules(doc, {})


def _compile_rules(doc: OrderMappingDoc, tables: dict[str, dict[Any, Any]]) -> OrderRules:
    return OrderRules(doc.customer, doc.customer.display_name.value, doc.document, doc.lines, tables, doc.payment)


@dataclass(frozen=True)
class NewItemSettings:
    """``items.create``, its rules compiled (name, unit price)."""

    type: str
    income_account_id: str
    asset_account_id: str | None
    expense_account_id: str | None
    values: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(compare=False, repr=False)


@dataclass(frozen=True)
class QuickBooksOrderMapping:
    """The validated settings (``dataclasses.replace`` makes variants in tests)."""

    flow: str
    description: str = ""
    home_currency: str = "USD"
    paid_status_ids: frozenset[int] = frozenset({30})
    item_match_field: Literal["Sku", "Name"] = "Sku"
    shipping_sku: str | None = "SHIPPING"
    item_cache_ttl_seconds: float = 300.0
    discount_description: str = "Discount"
    discount_account_id: str | None = None
    tax_amounts: Literal["excl_tax", "incl_tax"] = "excl_tax"
    line_tax_code: str | None = None
    rounding_sku: str | None = None
    doc_number_max_length: int = QBO_DOC_NUMBER_MAX
    doc_number_overflow: Literal["keep_last", "reject"] = "keep_last"
    txn_timezone: str = "UTC"
    colon_replacement: str = "-"
    display_name_max_length: int = QBO_NAME_MAX
    currency_suffix: str = " ({currency})"
    duplicate_name_suffix: str = " [nop {customer_id}]"
    display_to_customer: bool = False
    sent_note: str = WriteBackDoc().sent_note
    payment_note: str = WriteBackDoc().payment_note
    void_note: str = WriteBackDoc().void_note
    review_note: str = WriteBackDoc().review_note
    paid_voided_note: str = WriteBackDoc().paid_voided_note
    refund_note: str = WriteBackDoc().refund_note
    refund_sku: str = "REFUND"
    refund_description: str = RefundsDoc().description
    refund_account_id: str | None = None
    set_status_id: int | None = 20
    set_status_only_from: frozenset[int] = frozenset({10})
    failure_notes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FAILURE_NOTES))
    new_items: NewItemSettings | None = None  # None: an unknown product dead-letters the order
    rules: OrderRules = field(default_factory=default_rules, compare=False, repr=False)

    def timezone(self) -> tzinfo:
        return _zone(self.txn_timezone)


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z"):
        return UTC  # no tz database needed for the default
    return ZoneInfo(name)


def _check_template(owner: str, template: str) -> None:
    allowed = _TEMPLATE_FIELDS[owner]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise MappingError(f"{owner}: {exc}") from None
    unknown = sorted(used - allowed)
    if unknown:
        raise MappingError(f"{owner} uses unknown placeholders {unknown}; allowed: {sorted(allowed)}")


def parse_order_mapping(text: str, *, name: str = "<mapping>") -> QuickBooksOrderMapping:
    """Validate a mapping document; MappingError says which setting is wrong."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{name}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{name}: the document must be a mapping of settings")
    try:
        doc = OrderMappingDoc.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or '$'}: {error['msg']}"
                             for error in exc.errors(include_url=False))
        raise MappingError(f"{name}: {problems}") from None
    try:
        for owner in ("sent_note", "payment_note", "void_note", "review_note", "paid_voided_note", "refund_note"):
            _check_template(owner, getattr(doc.write_back, owner))
        for reason, template in doc.write_back.failure_notes.items():
            if reason not in DEFAULT_FAILURE_NOTES:
                raise MappingError(f"write_back.failure_notes: {reason!r} is not a reason an order fails for; "
                                   f"the reasons: {sorted(DEFAULT_FAILURE_NOTES)}")
            _check_template("failure_note", template)
        _check_template("currency_suffix", doc.customer.display_name.currency_suffix)
        _check_template("refund_description", doc.refunds.description)
        _check_template("duplicate_name_suffix", doc.customer.duplicate_name_suffix)
    except MappingError as exc:
        raise MappingError(f"{name}: {exc}") from None
    for owner, text_value in (("customer.display_name.currency_suffix", doc.customer.display_name.currency_suffix),
                              ("customer.duplicate_name_suffix", doc.customer.duplicate_name_suffix),
                              ("customer.display_name.colon_replacement",
                               doc.customer.display_name.colon_replacement)):
        if ":" in text_value:
            raise MappingError(f"{name}: {owner} must not contain ':' (QuickBooks forbids it in names)")
    try:
        _zone(doc.txn_date.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"{name}: txn_date.timezone {doc.txn_date.timezone!r} is not a known time zone") from None
    bad_countries = {key: code for key, code in doc.customer.countries.items() if not re.fullmatch(r"[A-Z]{2,3}", code)}
    if bad_countries:
        raise MappingError(f"{name}: customer.countries must map ids to ISO country codes, got {bad_countries}")
    tables: dict[str, dict[Any, Any]] = {table: dict(entries) for table, entries in doc.lookups.items()}
    if doc.customer.countries:
        if "countries" in tables:
            raise MappingError(f"{name}: countries are given twice (lookups.countries and customer.countries)")
        tables["countries"] = {**doc.customer.countries, LOOKUP_DEFAULT: None}  # an unlisted id: no Country
    outside_order = sorted(path for path in rule_paths(doc.document.doc_number) if not path.startswith("Order."))
    if outside_order:
        raise MappingError(f"{name}: document.doc_number may read Order.* only (order.paid and cancellations carry "
                           f"the order alone, and find its document by this number), not {outside_order}")
    outside_order = sorted(path for rule in (doc.payment.method, doc.payment.reference)
                           for path in rule_paths(rule) if not path.startswith("Order."))
    if outside_order:
        raise MappingError(f"{name}: payment.method and payment.reference may read Order.* only (order.paid "
                           f"carries the order alone), not {outside_order}")
    definitions = [custom.definition_id for custom in doc.document.custom_fields]
    if len(set(definitions)) != len(definitions):
        raise MappingError(f"{name}: document.custom_fields names a definition_id twice: {definitions}")
    try:
        rules = _compile_rules(doc, tables)
        new_items = _new_item_settings(doc.items, tables)
    except MappingError as exc:
        raise MappingError(f"{name}: {exc}") from None
    return QuickBooksOrderMapping(
        flow=doc.flow,
        description=doc.description,
        home_currency=doc.currency.home,
        paid_status_ids=frozenset(doc.payment.paid_status_ids),
        item_match_field=doc.items.match_on,
        shipping_sku=doc.items.shipping_sku,
        item_cache_ttl_seconds=doc.items.cache_ttl_seconds,
        discount_description=doc.discount.description,
        discount_account_id=doc.discount.account_id,
        tax_amounts=doc.tax.amounts,
        line_tax_code=doc.tax.line_tax_code,
        rounding_sku=doc.rounding.item_sku,
        doc_number_max_length=doc.doc_number.max_length,
        doc_number_overflow=doc.doc_number.overflow,
        txn_timezone=doc.txn_date.timezone,
        colon_replacement=doc.customer.display_name.colon_replacement,
        display_name_max_length=doc.customer.display_name.max_length,
        currency_suffix=doc.customer.display_name.currency_suffix,
        duplicate_name_suffix=doc.customer.duplicate_name_suffix,
        display_to_customer=doc.write_back.display_to_customer,
        sent_note=doc.write_back.sent_note,
        payment_note=doc.write_back.payment_note,
        void_note=doc.write_back.void_note,
        review_note=doc.write_back.review_note,
        paid_voided_note=doc.write_back.paid_voided_note,
        refund_note=doc.write_back.refund_note,
        refund_sku=doc.refunds.item_sku,
        refund_description=doc.refunds.description,
        refund_account_id=doc.refunds.refund_from_account_id,
        set_status_id=doc.write_back.set_status_id,
        set_status_only_from=frozenset(doc.write_back.set_status_only_from),
        failure_notes=dict(doc.write_back.failure_notes),
        new_items=new_items,
        rules=rules,
    )


def _new_item_settings(items: ItemsDoc, tables: dict[str, dict[Any, Any]]) -> NewItemSettings | None:
    if items.unknown != "create":
        return None
    new = items.create
    missing = [key for key, value in (("income_account_id", new.income_account_id),) if not value]
    if new.type == "Inventory":
        missing += [key for key, value in (("asset_account_id", new.asset_account_id),
                                           ("expense_account_id", new.expense_account_id)) if not value]
    if missing:
        raise MappingError(f"items.create needs {', '.join(missing)} (QuickBooks Account ids) to create "
                           f"{new.type} items")
    outside = sorted(path for rule in (new.name, new.unit_price) for path in rule_paths(rule)
                     if not path.startswith(("Item.", "Order.")))
    if outside:
        raise MappingError(f"items.create rules may read Item.* and Order.* only, not {outside}")
    values = compile_rules([("items.create.name", {**new.name, "required": True}),
                            ("items.create.unit_price", new.unit_price)], {**DEFAULT_LOOKUPS, **tables})
    return NewItemSettings(type=new.type, income_account_id=str(new.income_account_id),
                           asset_account_id=new.asset_account_id, expense_account_id=new.expense_account_id,
                           values=values)


def load_order_mapping(name: str) -> QuickBooksOrderMapping:
    """Load ``config/mappings/<name>`` (``.yaml`` optional) once per process (cold start), not per order."""
    return _load(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")


@cache
def _load(file_name: str) -> QuickBooksOrderMapping:
    try:
        text = mapping_path(file_name).read_text()
    except OSError as exc:
        raise MappingError(f"no mapping document {file_name}: {exc.strerror or exc}") from None
    return parse_order_mapping(text, name=file_name)


# --- numbers ----------------------------------------------------------------------------------


def money(value: Decimal) -> Decimal:
    """Rounded to cents, half-up (QuickBooks' rule for ``Amount = Qty x UnitPrice``)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise PermanentError(f"{what} is not a number: {value!r}", reason="invalid_event")
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise PermanentError(f"{what} is not a number: {value!r}", reason="invalid_event") from None


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros (``450.0000`` -> ``450``), so bodies and results read like the order."""
    normalized = value.normalize()
    return normalized.quantize(Decimal(1)) if normalized == normalized.to_integral_value() else normalized


# --- reading the event ------------------------------------------------------------------------


def _invalid(exc: ValidationError, what: str) -> PermanentError:
    fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in exc.errors(include_url=False))
    return PermanentError(f"the {what} does not match nopCommerce's order model: {fields}", reason="invalid_event")


@dataclass(frozen=True)
class ParsedOrder:
    """An ``order.placed``'s data validated once: the typed model (amounts) and the data as sent (rules)."""

    data: OrderPlacedData
    raw: Mapping[str, Any]


OrderData = Mapping[str, Any] | OrderPlacedData | ParsedOrder


def parsed_order(order_data: OrderData) -> ParsedOrder:
    """Validate once for several of the functions below (each accepts the result)."""
    if isinstance(order_data, ParsedOrder):
        return order_data
    return ParsedOrder(placed_data(order_data), _raw(order_data))


def placed_data(order_data: OrderData) -> OrderPlacedData:
    """The ``order.placed`` data as the typed model (PermanentError ``invalid_event`` if it is not one)."""
    if isinstance(order_data, ParsedOrder):
        return order_data.data
    if isinstance(order_data, OrderPlacedData):
        return order_data
    try:
        return OrderPlacedData.model_validate(order_data)
    except ValidationError as exc:
        raise _invalid(exc, "order.placed data") from None


def parse_order(order_data: Mapping[str, Any] | NopOrder) -> NopOrder:
    """The ``Order`` of any order event's data (or the data's ``Order`` itself)."""
    if isinstance(order_data, NopOrder):
        return order_data
    raw = order_data.get("Order", order_data) if isinstance(order_data, Mapping) else order_data
    try:
        return NopOrder.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, "Order") from None


def _extra_money(order: NopOrder, name: str) -> Decimal | None:
    """A nopCommerce amount field, declared by the model or kept as an extra, as a Decimal: finite and not
    negative (PermanentError ``invalid_event`` otherwise)."""
    value = getattr(order, name, None)  # a declared field (RefundedAmount), else one kept as an extra
    if value is None:
        value = (order.model_extra or {}).get(name)
    if value is None:
        return None
    amount = _decimal(value, f"Order.{name}")
    if not amount.is_finite() or amount < 0:
        raise PermanentError(f"Order.{name} is not an amount: {value!r}", reason="invalid_event")
    return amount


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = _SPACES.sub(" ", value).strip()
    return cleaned or None


def _text(value: Any, limit: int | None = None) -> str | None:
    """A rule's value as QuickBooks text: whitespace runs made one space, trimmed, cut to the field's length;
    None when nothing is left."""
    if value is None:
        return None
    cleaned = _clean(value if isinstance(value, str) else str(value))
    if cleaned is None or limit is None:
        return cleaned
    return cleaned[:limit].rstrip() or None


def _raw(order_data: OrderData | NopOrder) -> Mapping[str, Any]:
    """The event's data as the rules read it (nopCommerce's names, as sent; a model as its JSON)."""
    if isinstance(order_data, ParsedOrder):
        return order_data.raw
    if isinstance(order_data, BaseModel):
        return order_data.model_dump(mode="json")
    return order_data


def _order_data(order_data: Mapping[str, Any] | NopOrder) -> Mapping[str, Any]:
    """Data with an ``Order`` (a later event's data, or a bare order)."""
    raw = _raw(order_data)
    return raw if "Order" in raw else {"Order": raw}


def doc_number(mapping: QuickBooksOrderMapping, custom_order_number: str) -> str:
    """DocNumber: CustomOrderNumber if it fits, else its LAST ``max_length`` characters (the running
    sequence is at the end of custom number formats; the full number is in PrivateNote), or PermanentError
    ``doc_number_too_long`` when the mapping says ``reject``."""
    number = custom_order_number.strip()
    if not number:
        raise PermanentError("the order has no CustomOrderNumber", reason="invalid_event")
    if len(number) <= mapping.doc_number_max_length:
        return number
    if mapping.doc_number_overflow == "reject":
        raise PermanentError(f"order number {number} is longer than QuickBooks' {mapping.doc_number_max_length} "
                             "characters for DocNumber", reason="doc_number_too_long")
    return number[-mapping.doc_number_max_length:].strip()


def document_number(mapping: QuickBooksOrderMapping, order_data: Mapping[str, Any] | NopOrder) -> str:
    """The DocNumber of any order event: the ``document.doc_number`` rule's value (CustomOrderNumber by
    default) under the 21-character rule (``doc_number``)."""
    value = mapping.rules.doc_number(_order_data(order_data))
    return doc_number(mapping, str(value))


def is_paid(mapping: QuickBooksOrderMapping, order: Mapping[str, Any] | NopOrder) -> bool:
    """Paid now (a SalesReceipt) or later (an Invoice)."""
    status = order.PaymentStatusId if isinstance(order, NopOrder) else (order.get("Order", order)).get(
        "PaymentStatusId")
    return status is not None and int(status) in mapping.paid_status_ids


def document_entity(mapping: QuickBooksOrderMapping, order: Mapping[str, Any] | NopOrder) -> str:
    return SALES_RECEIPT if is_paid(mapping, order) else INVOICE


def is_cancelled(order: Mapping[str, Any] | NopOrder) -> bool:
    status = order.OrderStatusId if isinstance(order, NopOrder) else (order.get("Order", order)).get(
        "OrderStatusId")
    return status is not None and int(status) == ORDER_CANCELLED


def order_currency(mapping: QuickBooksOrderMapping, order: NopOrder) -> tuple[str, Decimal | None]:
    """(the order's currency, the CurrencyRate to convert with, None for the home currency: as is)."""
    if order.CustomerCurrencyCode == mapping.home_currency:
        return order.CustomerCurrencyCode, None
    return order.CustomerCurrencyCode, order.CurrencyRate


def exchange_rate(currency_rate: Decimal) -> Decimal:
    """QuickBooks' ExchangeRate (home units per foreign unit) for nopCommerce's CurrencyRate (the inverse)."""
    return (Decimal(1) / currency_rate).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def _item_key(item: NopOrderItem, key: Any) -> str:
    sku = _text(key)
    if sku is None:
        name = item.Product.Name if item.Product is not None else f"ProductId {item.ProductId}"
        raise PermanentError(f"order item {item.Id} ({name}) has no item key (lines.item_key, Product.Sku by "
                             "default) to find its QuickBooks item", reason="missing_sku")
    return sku


@dataclass(frozen=True)
class OrderLine:
    """One order item with what the ``lines`` rules say about it."""

    item: NopOrderItem
    sku: str  # the item key: looked for in the QuickBooks Item field items.match_on
    description: str | None
    tax_code: str | None
    class_id: str | None


def order_lines(mapping: QuickBooksOrderMapping, order_data: OrderData) -> tuple[OrderLine, ...]:
    """The order's items with their item keys, descriptions, tax codes and classes (PermanentError
    ``missing_sku`` for a line without an item key)."""
    order = parsed_order(order_data)
    data, raw = order.data, order.raw
    raw_items = raw.get("OrderItems") or []
    lines = []
    for index, item in enumerate(data.OrderItems):
        values = mapping.rules.line(raw, raw_items[index] if index < len(raw_items) else {})
        lines.append(OrderLine(item=item, sku=_item_key(item, values.item_key),
                               description=_text(values.description, QBO_DESCRIPTION_MAX),
                               tax_code=_text(values.tax_code), class_id=_text(values.class_id)))
    return tuple(lines)


def order_skus(order_data: OrderData, mapping: QuickBooksOrderMapping | None = None) -> list[str]:
    """The products' item keys (SKUs by default), each once, in order (PermanentError ``missing_sku`` for a
    line without one)."""
    chosen = mapping if mapping is not None else QuickBooksOrderMapping(flow="-")
    return list(dict.fromkeys(line.sku for line in order_lines(chosen, order_data)))


def shipping_amount(order: NopOrder, amounts: str = "excl_tax") -> Decimal:
    """Shipping excl. tax (``incl_tax``: incl. tax); a payload without the one asked for gives the other (the
    totals check catches a wrong one)."""
    inclusive = _extra_money(order, "OrderShippingInclTax")
    first, second = ((inclusive, order.OrderShippingExclTax) if amounts == "incl_tax"
                     else (order.OrderShippingExclTax, inclusive))
    return first if first is not None else second if second is not None else Decimal(0)


def discount_amount(order: NopOrder, amounts: str = "excl_tax") -> Decimal:
    """The subtotal discount (excl. or incl. tax) plus the order-total discount (nopCommerce keeps them apart;
    the order-total discount is taken off the total, tax included)."""
    subtotal = order.OrderSubTotalDiscountExclTax
    if amounts == "incl_tax":
        inclusive = _extra_money(order, "OrderSubTotalDiscountInclTax")
        subtotal = inclusive if inclusive is not None else subtotal
    return (subtotal or Decimal(0)) + (order.OrderDiscount or Decimal(0))


def item_skus(mapping: QuickBooksOrderMapping, order_data: OrderData) -> list[str]:
    """Every SKU the document needs an Item for: the products', the shipping item's when the order has
    shipping, and the rounding item's when the amounts need a rounding adjustment to equal the order total."""
    order = parsed_order(order_data)
    lines = order_lines(mapping, order)
    return _item_skus(mapping, order.data, lines, lambda: _document_amounts(mapping, order.data, lines))


def _item_skus(mapping: QuickBooksOrderMapping, data: OrderPlacedData, lines: tuple[OrderLine, ...],
               amounts: Callable[[], DocumentAmounts]) -> list[str]:
    skus = list(dict.fromkeys(line.sku for line in lines))
    if shipping_amount(data.Order, mapping.tax_amounts) > 0:
        if mapping.shipping_sku is None:
            raise PermanentError("the order has a shipping charge but the mapping names no shipping item",
                                 reason="unmapped_product")
        if mapping.shipping_sku not in skus:
            skus.append(mapping.shipping_sku)
    if amounts().adjustment and mapping.rounding_sku not in skus:
        skus.append(str(mapping.rounding_sku))  # document_amounts raised if the mapping names none
    return skus


def new_item_name(mapping: QuickBooksOrderMapping, name: str, *, sku: str | None = None) -> str:
    """An Item Name QuickBooks takes: ':' replaced, whitespace collapsed, 100 characters; with ``sku`` the
    name made unique by its SKU (`` (SKU)``, never cut) for when another item holds the plain one (6240)."""
    cleaned = _clean(name.replace(":", mapping.colon_replacement)) or ""
    suffix = f" ({sku.replace(':', mapping.colon_replacement)})" if sku else ""
    return (cleaned[:QBO_NAME_MAX - len(suffix)].rstrip() + suffix).strip()[:QBO_NAME_MAX]


def new_items(mapping: QuickBooksOrderMapping, order_data: OrderData, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The QuickBooks Item each of ``keys`` would be created as (``items.unknown: create``), from the first
    order line with that key; a key on no product line (shipping, rounding) gets none, nor does any key when
    the mapping does not create items."""
    settings = mapping.new_items
    if settings is None:
        return {}
    order = parsed_order(order_data)
    raw_items = order.raw.get("OrderItems") or []
    bodies: dict[str, dict[str, Any]] = {}
    for index, line in enumerate(order_lines(mapping, order)):
        if line.sku not in keys or line.sku in bodies:
            continue
        raw_item = raw_items[index] if index < len(raw_items) else {}
        name_value, price_value = settings.values({**order.raw, "Item": raw_item})
        name = new_item_name(mapping, _text(name_value) or line.sku)
        if not name:
            name = new_item_name(mapping, line.sku)
        body: dict[str, Any] = {"Name": name, "Type": settings.type,
                                "IncomeAccountRef": {"value": settings.income_account_id}}
        if mapping.item_match_field == "Sku":
            body["Sku"] = line.sku[:QBO_NAME_MAX]
        elif line.sku != name:  # matched by Name: the name must be the key
            body["Name"] = new_item_name(mapping, line.sku)
        if price_value is not None:
            body["UnitPrice"] = _plain(_decimal(price_value, "items.create.unit_price"))
        if line.description:
            body["Description"] = line.description
        if settings.type == "Inventory":
            body.update({"TrackQtyOnHand": True, "QtyOnHand": 0,
                         "InvStartDate": txn_date(mapping, order.data.Order.CreatedOnUtc),
                         "AssetAccountRef": {"value": settings.asset_account_id},
                         "ExpenseAccountRef": {"value": settings.expense_account_id}})
        bodies[line.sku] = body
    return bodies


# --- the customer -----------------------------------------------------------------------------


def display_name(mapping: QuickBooksOrderMapping, order_data: OrderData, *, disambiguate: bool = False) -> str:
    """The customer's DisplayName: the ``customer.display_name.value`` rule's value (company, else "First
    Last", else the e-mail by default); ':' replaced (QuickBooks forbids it); `` (EUR)`` for an order in a
    foreign currency (a customer has one currency); with ``disambiguate`` the 6240 suffix `` [nop <customer
    id>]``. The name is shortened, never the suffixes, to fit ``max_length`` (100)."""
    order = parsed_order(order_data)
    return _display_name(mapping, order.data, mapping.rules.customer(order.raw).display_name,
                         disambiguate=disambiguate)


def _display_name(mapping: QuickBooksOrderMapping, data: OrderPlacedData, value: Any, *, disambiguate: bool) -> str:
    base = _text(str(value).replace(":", mapping.colon_replacement))
    if base is None:
        raise PermanentError("customer.display_name.value: required value is missing",
                             reason="missing_required_field")
    suffix = ""
    currency, _ = order_currency(mapping, data.Order)
    if currency != mapping.home_currency:
        suffix += mapping.currency_suffix.format(currency=currency)
    if disambiguate:
        suffix += mapping.duplicate_name_suffix.format(customer_id=data.Customer.Id)
    room = mapping.display_name_max_length - len(suffix)
    return base[:room].rstrip() + suffix


def customer_key(mapping: QuickBooksOrderMapping, order_data: OrderData) -> str:
    """The entity-state key of the QuickBooks customer: the nopCommerce customer id, qualified by the
    currency for a foreign one (one QuickBooks customer per currency)."""
    data = placed_data(order_data)
    currency, _ = order_currency(mapping, data.Order)
    key = str(data.Customer.Id)
    return key if currency == mapping.home_currency else f"{key}:{currency}"


def customer_email(mapping: QuickBooksOrderMapping, order_data: OrderData) -> str:
    """The customer's e-mail (``customer.email``: Customer.Email, trimmed and lower-cased, by default)."""
    return _email(mapping.rules.email(parsed_order(order_data).raw))


def _email(value: Any) -> str:
    email = _text(value)
    if email is None:
        raise PermanentError("customer.email: required value is missing", reason="missing_required_field")
    return email


def _address(values: Mapping[str, Any]) -> dict[str, Any] | None:
    present = {key: text for key, value in values.items() if (text := _text(value))}
    return present or None


def customer_fields(mapping: QuickBooksOrderMapping, order_data: OrderData) -> dict[str, Any]:
    """The QuickBooks Customer body for the order's customer (only fields that have a value)."""
    order = parsed_order(order_data)
    data = order.data
    values = mapping.rules.customer(order.raw)
    body: dict[str, Any] = {"DisplayName": _display_name(mapping, data, values.display_name, disambiguate=False)}
    for key, value in values.names.items():
        text = _text(value, QBO_NAME_MAX)
        if text:
            body[key] = text
    body["PrimaryEmailAddr"] = {"Address": _email(values.email)}
    phone = _text(values.phone)
    if phone:
        body["PrimaryPhone"] = {"FreeFormNumber": phone}
    for key, address in (("BillAddr", values.bill_address), ("ShipAddr", values.ship_address)):
        rendered = _address(address)
        if rendered:
            body[key] = rendered
    currency, _ = order_currency(mapping, data.Order)
    if currency != mapping.home_currency:
        body["CurrencyRef"] = {"value": currency}
    return body


# fields a sync never changes on an existing customer: the bookkeeper may have renamed it (and a rename
# risks 6240), and QuickBooks cannot change a customer's currency
_KEEP_ON_UPDATE = frozenset({"DisplayName", "CurrencyRef"})


def customer_changes(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """What a sparse update must send so ``existing`` has ``desired``'s values (never fields it lacks)."""
    changes: dict[str, Any] = {}
    for key, value in desired.items():
        if key in _KEEP_ON_UPDATE:
            continue
        current = existing.get(key)
        if isinstance(value, Mapping):
            held = current if isinstance(current, Mapping) else {}
            differs = any(_comparable(key, held.get(name)) != _comparable(key, wanted)
                          for name, wanted in value.items())
            if differs:
                changes[key] = {**held, **value}  # keeps the address Id: updated in place
        elif current != value:
            changes[key] = value
    return changes


def _comparable(key: str, value: Any) -> Any:
    if key == "PrimaryEmailAddr" and isinstance(value, str):
        return value.strip().casefold()
    return value


def currency_matches(mapping: QuickBooksOrderMapping, entity: Mapping[str, Any], currency: str) -> bool:
    """Whether a QuickBooks customer (or transaction) is in ``currency`` (no CurrencyRef: the home one)."""
    ref = entity.get("CurrencyRef")
    held = ref.get("value") if isinstance(ref, Mapping) else None
    return (held or mapping.home_currency) == currency


# --- the sales document -----------------------------------------------------------------------


@dataclass(frozen=True)
class SalesDocument:
    """A SalesReceipt or Invoice to create: ``body`` holds Decimals (``connectors.http.jsonable`` sends them
    as JSON numbers)."""

    entity: str
    body: dict[str, Any]
    doc_number: str
    total: Decimal
    currency: str
    exchange_rate: Decimal | None  # None: the home currency

    def summary(self) -> dict[str, Any]:
        """The JSON-able facts a step result carries."""
        return {"entity": self.entity, "doc_number": self.doc_number, "total": float(self.total),
                "currency": self.currency,
                "exchange_rate": float(self.exchange_rate) if self.exchange_rate is not None else None}


def private_note(mapping: QuickBooksOrderMapping, order_data: OrderData, amounts: DocumentAmounts | None = None,
                 ) -> str:
    """The internal memo: the ``document.private_note`` rule's text (by default the full order number,
    nopCommerce's id and OrderGuid), with what it must always say added when the rule leaves it out: the full
    order number (DocNumber may be its last 21 characters) and the OrderGuid (which proves a document is this
    order's); then, for a foreign currency, the rate it was converted with, and a rounding adjustment with what
    it corrects. Only the rule's text is shortened to fit QuickBooks' 4,000 characters."""
    parsed = parsed_order(order_data)
    order, raw = parsed.data.Order, parsed.raw
    text = _text(mapping.rules.document(raw).private_note) or ""
    facts: list[str] = []
    number = _text(mapping.rules.doc_number(_order_data(raw))) or order.CustomOrderNumber.strip()
    guid = str(order.OrderGuid).lower()
    if number not in text:
        facts.append(f"nopCommerce order {number}")
    if guid not in text.lower():
        facts.append(f"OrderGuid {guid}")
    currency, rate = order_currency(mapping, order)
    if rate is not None:
        facts.append(f"amounts converted from {mapping.home_currency} at nopCommerce CurrencyRate {_plain(rate)} "
                     f"(1 {mapping.home_currency} = {_plain(rate)} {currency}; ExchangeRate {exchange_rate(rate)})")
    if amounts is not None and amounts.adjustment:
        facts.append(f"{ROUNDING_DESCRIPTION.lower()} {amounts.adjustment:+} {currency} on item "
                     f"{mapping.rounding_sku}: the rounded amounts add up to {amounts.lines_total}, "
                     f"OrderTotal is {amounts.expected_total}")
    if document_entity(mapping, order) == SALES_RECEIPT:
        whole_reference = payment_details(mapping, parsed).note()  # PaymentRefNum keeps 21 characters
        if whole_reference:
            facts.append(whole_reference[:200])
    tail = "; ".join(facts)
    room = QBO_NOTE_MAX - len(tail) - (2 if tail and text else 0)
    return "; ".join(part for part in (text[:max(room, 0)].rstrip(), tail) if part)[:QBO_NOTE_MAX]


def txn_date(mapping: QuickBooksOrderMapping, moment: datetime) -> str:
    stamp = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return stamp.astimezone(mapping.timezone()).date().isoformat()


def _unmapped(skus: list[str]) -> PermanentError:
    return PermanentError(f"unmapped product {', '.join(skus)}", reason="unmapped_product")


@dataclass(frozen=True)
class ItemAmount:
    """One order item as the document books it: nopCommerce's line price, in the document's currency."""

    item: NopOrderItem
    sku: str
    amount: Decimal

    @property
    def unit_price(self) -> Decimal | None:
        """``Amount / Qty`` to QuickBooks' seven decimals, so that ``Qty x UnitPrice`` rounds to ``Amount``
        (QuickBooks rejects a line where it does not, 6070); None where no such price exists (a huge Qty):
        QuickBooks then derives it from Amount and Qty."""
        unit = (self.amount / self.item.Quantity).quantize(UNIT_PRICE_PLACES, rounding=ROUND_HALF_UP)
        return _plain(unit) if money(unit * self.item.Quantity) == self.amount else None


@dataclass(frozen=True)
class DocumentAmounts:
    """What a document books, in its currency, and how it adds up to what the customer paid.

    ``adjustment`` is what the rounded amounts lack (or exceed) to equal ``expected_total``
    (``Order.OrderTotal``, converted, to the cent); the document books it on the rounding item."""

    currency: str
    rate: Decimal | None
    items: tuple[ItemAmount, ...]
    shipping: Decimal
    discount: Decimal
    tax: Decimal
    tax_included: bool  # the amounts include the tax (``tax.amounts: incl_tax``): ``tax`` is part of them
    expected_total: Decimal
    adjustment: Decimal

    @property
    def lines_total(self) -> Decimal:
        """The rounded amounts alone: items + shipping - discount (+ tax, unless the amounts include it)."""
        added_tax = Decimal(0) if self.tax_included else self.tax
        return sum((line.amount for line in self.items), Decimal(0)) + self.shipping - self.discount + added_tax

    @property
    def total(self) -> Decimal:
        return self.lines_total + self.adjustment


def _line_price(item: NopOrderItem, amounts: str) -> Decimal:
    """nopCommerce's own price of the whole line: incl. tax for ``incl_tax``; else excl. tax (the tax is
    booked as TotalTax), and for payloads without excl.-tax prices (stores without tax) the incl.-tax price
    (the totals check catches a taxed one)."""
    if amounts == "incl_tax":
        return item.PriceInclTax
    if item.PriceExclTax is not None:
        return item.PriceExclTax
    if item.UnitPriceExclTax is not None:
        return item.UnitPriceExclTax * item.Quantity
    return item.PriceInclTax


def document_amounts(mapping: QuickBooksOrderMapping, order_data: OrderData) -> DocumentAmounts:
    """The amounts of an ``order.placed``'s document and the rounding adjustment that makes it equal the
    order total. PermanentError ``totals_mismatch`` when the difference is more than rounding explains
    (a store setting the mapping does not book: payment fees, gift cards, reward points, taxed prices as
    untaxed), or when there is a difference and the mapping names no rounding item.

    Every amount is rounded at most twice: by nopCommerce, to half a cent of the store currency (``rate``
    times that once converted), and by the conversion, to half a cent: rounding explains no more than that
    per amount (a cent per amount in the home currency)."""
    order = parsed_order(order_data)
    return _document_amounts(mapping, order.data, order_lines(mapping, order))


def _document_amounts(mapping: QuickBooksOrderMapping, data: OrderPlacedData,
                      lines: tuple[OrderLine, ...]) -> DocumentAmounts:
    order = data.Order
    currency, rate = order_currency(mapping, order)

    def convert(amount: Decimal) -> Decimal:
        return money(amount * rate if rate is not None else amount)

    mode = mapping.tax_amounts
    items = tuple(ItemAmount(line.item, line.sku, convert(_line_price(line.item, mode))) for line in lines)
    shipping = convert(shipping_amount(order, mode))
    discount = convert(discount_amount(order, mode))
    tax = convert(order.OrderTax or Decimal(0))
    expected = convert(order.OrderTotal)
    included = mode == "incl_tax"
    amounts = DocumentAmounts(currency=currency, rate=rate, items=items, shipping=shipping, discount=discount,
                              tax=tax, tax_included=included, expected_total=expected, adjustment=Decimal(0))
    difference = expected - amounts.lines_total
    if not difference:
        return amounts
    added = (shipping, discount) if included else (shipping, discount, tax)
    counted = len(items) + sum(1 for amount in added if amount)
    # each amount was rounded by nopCommerce to a cent of the store currency (worth ``rate`` cents once
    # converted), and by the conversion to a cent again: at most half of each
    per_amount = HALF_CENT * (1 + (rate if rate is not None else 1))
    explained_by_rounding = abs(difference) <= per_amount * counted
    if not explained_by_rounding or mapping.rounding_sku is None:
        why = ("name a rounding item in the mapping (rounding.item_sku) to book rounding differences"
               if explained_by_rounding else "check the mapping's tax, shipping and discount settings")
        raise PermanentError(
            f"the QuickBooks document of order {order.CustomOrderNumber} would total {amounts.lines_total} "
            f"{currency}, the order {expected} {currency} (lines {sum(line.amount for line in items)}, "
            f"shipping {shipping}, discount {discount}, tax {tax}{' included' if included else ''}): {why}",
            reason="totals_mismatch")
    return dataclasses.replace(amounts, adjustment=difference)


def sales_document(mapping: QuickBooksOrderMapping, order_data: OrderData, *,
                   customer_id: str, item_refs: Mapping[str, str]) -> SalesDocument:
    """The SalesReceipt (paid now) or Invoice (paid later) of an ``order.placed``: a line per order item,
    shipping, a rounding adjustment if one is needed, the discount, the tax, in the order's currency; its
    total equals ``Order.OrderTotal`` (converted) to the cent. PermanentError ``unmapped_product`` when an
    SKU has no entry in ``item_refs``, ``totals_mismatch`` as ``document_amounts`` says."""
    parsed = parsed_order(order_data)
    data, raw = parsed.data, parsed.raw
    order = data.Order
    order_items = order_lines(mapping, parsed)
    needed = _item_skus(mapping, data, order_items, lambda: _document_amounts(mapping, data, order_items))
    amounts = _document_amounts(mapping, data, order_items)
    currency, rate = amounts.currency, amounts.rate
    missing = [sku for sku in needed if not item_refs.get(sku)]
    if missing:
        raise _unmapped(missing)
    tax_code = {"TaxCodeRef": {"value": mapping.line_tax_code}} if mapping.line_tax_code else {}
    lines: list[dict[str, Any]] = []
    for line_amount, order_line in zip(amounts.items, order_items, strict=True):
        item = line_amount.item
        line: dict[str, Any] = {"DetailType": "SalesItemLineDetail", "Amount": line_amount.amount}
        if order_line.description:
            line["Description"] = order_line.description
        detail: dict[str, Any] = {"ItemRef": {"value": str(item_refs[line_amount.sku])}, "Qty": item.Quantity}
        unit = line_amount.unit_price
        if unit is not None:
            detail["UnitPrice"] = unit
        if order_line.class_id:
            detail["ClassRef"] = {"value": order_line.class_id}
        line_tax = {"TaxCodeRef": {"value": order_line.tax_code}} if order_line.tax_code else tax_code
        line["SalesItemLineDetail"] = {**detail, **line_tax}
        lines.append(line)
    if amounts.shipping > 0 and mapping.shipping_sku is not None:  # item_skus raised if it had no item
        shipping_line: dict[str, Any] = {"DetailType": "SalesItemLineDetail", "Amount": amounts.shipping}
        description = _text(mapping.rules.shipping_description(raw), QBO_DESCRIPTION_MAX)
        if description:
            shipping_line["Description"] = description
        shipping_line["SalesItemLineDetail"] = {"ItemRef": {"value": str(item_refs[mapping.shipping_sku])},
                                                "Qty": 1, "UnitPrice": amounts.shipping, **tax_code}
        lines.append(shipping_line)
    if amounts.adjustment and mapping.rounding_sku is not None:
        lines.append({"DetailType": "SalesItemLineDetail", "Amount": amounts.adjustment,
                      "Description": ROUNDING_DESCRIPTION,
                      "SalesItemLineDetail": {"ItemRef": {"value": str(item_refs[mapping.rounding_sku])},
                                              "Qty": 1, "UnitPrice": amounts.adjustment, **tax_code}})
    if amounts.discount > 0:
        discount: dict[str, Any] = {"PercentBased": False}
        if mapping.discount_account_id:
            discount["DiscountAccountRef"] = {"value": mapping.discount_account_id}
        lines.append({"DetailType": "DiscountLineDetail", "Amount": amounts.discount,
                      "Description": mapping.discount_description, "DiscountLineDetail": discount})
    number = document_number(mapping, raw)
    body: dict[str, Any] = {
        "CustomerRef": {"value": str(customer_id)},
        "DocNumber": number,
        "TxnDate": txn_date(mapping, order.CreatedOnUtc),
        "PrivateNote": private_note(mapping, parsed, amounts),
        "Line": lines,
        "TxnTaxDetail": {"TotalTax": amounts.tax},
        "BillEmail": {"Address": _email(mapping.rules.email(raw))},
    }
    body.update(_header_fields(mapping, raw))
    entity = document_entity(mapping, order)
    if entity == SALES_RECEIPT:  # paid at checkout: the receipt is the payment (an Invoice has no such fields)
        payment = payment_details(mapping, parsed)
        body.update(payment.fields())
    if amounts.tax_included:  # the line amounts hold the tax; TotalTax says how much of them it is
        body["GlobalTaxCalculation"] = "TaxInclusive"
    xrate = exchange_rate(rate) if rate is not None else None
    if xrate is not None:
        body["CurrencyRef"] = {"value": currency}
        body["ExchangeRate"] = xrate
    return SalesDocument(entity=entity, body=body, doc_number=number, total=amounts.total,
                         currency=currency, exchange_rate=xrate)


def _header_fields(mapping: QuickBooksOrderMapping, raw: Mapping[str, Any]) -> dict[str, Any]:
    """CustomerMemo, ClassRef, DepartmentRef, CustomField and ShipAddr, as the document's rules say."""
    values = mapping.rules.document(raw)
    fields: dict[str, Any] = {}
    memo = _text(values.customer_memo, QBO_MEMO_MAX)
    if memo:
        fields["CustomerMemo"] = {"value": memo}
    for key, value in (("ClassRef", values.class_id), ("DepartmentRef", values.department_id)):
        reference = _text(value)
        if reference:
            fields[key] = {"value": reference}
    custom = []
    for definition, name, value in values.custom_fields:
        text = _text(value, QBO_CUSTOM_FIELD_MAX)
        if text:
            custom.append({"DefinitionId": definition, **({"Name": name} if name else {}), "Type": "StringType",
                           "StringValue": text})
    if custom:
        fields["CustomField"] = custom
    if mapping.rules.ship_address_on_document:
        shipping = _address(mapping.rules.customer(raw).ship_address)
        if shipping:
            fields["ShipAddr"] = shipping
    return fields


@dataclass(frozen=True)
class PaymentDetails:
    """PaymentMethodRef and PaymentRefNum of a SalesReceipt or Payment, so the bank statement can be matched."""

    method_id: str | None
    reference: str | None  # the provider's transaction id, whole
    ref_num: str | None  # as QuickBooks keeps it: the last 21 characters (the unique tail of long ids)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.method_id:
            fields["PaymentMethodRef"] = {"value": self.method_id}
        if self.ref_num:
            fields["PaymentRefNum"] = self.ref_num
        return fields

    def note(self) -> str | None:
        """What PrivateNote must add: the whole id when PaymentRefNum could keep only its tail."""
        if self.reference and self.ref_num != self.reference:
            return f"payment reference {self.reference}"
        return None


def payment_details(mapping: QuickBooksOrderMapping, order_data: OrderData | NopOrder) -> PaymentDetails:
    """The ``payment`` rules' values for an order (any order event's data, or its ``Order``)."""
    values = mapping.rules.payment(_order_data(_raw(order_data)))
    method = _text(values.method_id)
    reference = _text(values.reference)
    ref_num = reference[-QBO_PAYMENT_REF_MAX:] if reference else None
    return PaymentDetails(method_id=method, reference=reference, ref_num=ref_num)


REFUNDED_STATUS_IDS = frozenset({35, 40})  # nopCommerce PaymentStatus PartiallyRefunded, Refunded


def refunded_total(mapping: QuickBooksOrderMapping, order: NopOrder) -> Decimal | None:
    """What nopCommerce says was refunded of the order so far (``RefundedAmount``, a running total), in the
    order's currency at the order's rate, to the cent; None when the order is not (partially) refunded."""
    refunded = _extra_money(order, "RefundedAmount")
    if order.PaymentStatusId not in REFUNDED_STATUS_IDS or not refunded:
        return None
    _, rate = order_currency(mapping, order)
    return money(refunded * rate if rate is not None else refunded)


def owns(document: Mapping[str, Any], order_guid: str) -> bool:
    """Whether a QuickBooks document is this order's: its PrivateNote carries the OrderGuid."""
    return str(order_guid).lower() in str(document.get("PrivateNote") or "").lower()
