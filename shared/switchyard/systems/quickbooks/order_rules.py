"""Which nopCommerce field becomes which QuickBooks field (flow ``nopcommerce-to-quickbooks``).

These are the ``customer``, ``document`` and ``lines`` rules of ``config/mappings/nopcommerce-to-quickbooks.yaml``,
written in the rule language every mapping document uses (``switchyard.mapping.rules``: ``path``,
``template``, ``const``, ``each``, ``first_of``, transforms, lookups). A rule left out of the document takes
the default below (what the flow has always done); ``null`` leaves the QuickBooks field out.

Rules read the event's ``data`` in nopCommerce's names (``Order``, ``OrderItems``, ``Customer``,
``BillingAddress``, ``ShippingAddress``); ``lines`` rules read one order item as ``Item`` besides them
(``Item.Product.Sku``). What the rules yield is only the values: the accounting invariants (amounts,
rounding, currency, the 21-character DocNumber, names QuickBooks refuses, field lengths) are applied by
``switchyard.systems.quickbooks.order_mapping``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from string import Formatter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from switchyard.mapping.rules import LOOKUP_DEFAULT, compile_rules

Rule = dict[str, Any]
MAX_CUSTOM_FIELDS = 3  # QuickBooks Online's API carries the first three String custom fields of a sales form


def _first(*rules: Rule) -> Rule:
    return {"first_of": list(rules)}


def _address(prefix: str) -> dict[str, Rule | None]:
    return {
        "line1": {"path": f"{prefix}.Address1"},
        "line2": {"path": f"{prefix}.Address2"},
        "city": {"path": f"{prefix}.City"},
        # CountrySubDivisionCode: the abbreviation the shop sends with the address, else the id's entry in
        # the state_provinces table, else the state's name
        "state": _first({"path": f"{prefix}.StateProvince.Abbreviation"},
                        {"path": f"{prefix}.StateProvinceId", "transforms": [{"lookup": "state_provinces"}]},
                        {"path": f"{prefix}.StateProvince.Name"}),
        "postal_code": {"path": f"{prefix}.ZipPostalCode"},
        "country": {"path": f"{prefix}.CountryId", "transforms": [{"lookup": "countries"}]},
    }


DEFAULT_DISPLAY_NAME: Rule = _first(
    {"path": "Customer.Company"}, {"path": "BillingAddress.Company"},
    {"template": "{Customer.FirstName} {Customer.LastName}"},
    {"template": "{BillingAddress.FirstName} {BillingAddress.LastName}"},
    {"path": "Customer.Email"},
)
# tables the default rules use; a document's own table of the same name replaces them
DEFAULT_LOOKUPS: dict[str, dict[Any, Any]] = {"countries": {LOOKUP_DEFAULT: None},
                                              "state_provinces": {LOOKUP_DEFAULT: None},
                                              "payment_methods": {LOOKUP_DEFAULT: None}}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddressRulesDoc(_Doc):
    """BillAddr / ShipAddr: each key one QuickBooks address field (``state`` is ``CountrySubDivisionCode``)."""

    line1: Rule | None = None
    line2: Rule | None = None
    city: Rule | None = None
    state: Rule | None = None
    postal_code: Rule | None = None
    country: Rule | None = None


def _address_doc(prefix: str) -> AddressRulesDoc:
    return AddressRulesDoc(**_address(prefix))


class CustomFieldDoc(_Doc):
    definition_id: str = Field(min_length=1)  # the field's DefinitionId (Preferences.SalesFormsPrefs.CustomField)
    name: str | None = None
    value: Rule


class DocumentRulesDoc(_Doc):
    """The SalesReceipt / Invoice header."""

    # DocNumber before the 21-character rule (doc_number: in the document); reads Order.* only, since
    # order.paid and cancellations carry the order alone
    doc_number: Rule = Field(default_factory=lambda: {"path": "Order.CustomOrderNumber"})
    # PrivateNote; the OrderGuid and the full order number are added if the rule leaves them out (they prove
    # the document is this order's), and the conversion rate and a rounding adjustment are appended
    private_note: Rule | None = Field(default_factory=lambda: {
        "template": "nopCommerce order {Order.CustomOrderNumber} (Id {Order.Id}, OrderGuid {Order.OrderGuid})"})
    customer_memo: Rule | None = None  # CustomerMemo: the message printed on the document
    class_id: Rule | None = None  # ClassRef: a QuickBooks Class Id
    department_id: Rule | None = None  # DepartmentRef: a QuickBooks Location (Department) Id
    ship_address: bool = False  # ShipAddr on the document too (the customer's ship_address rules)
    custom_fields: list[CustomFieldDoc] = Field(default_factory=list, max_length=MAX_CUSTOM_FIELDS)


class LineRulesDoc(_Doc):
    """One order item's line; rules read the item as ``Item`` (and the event's data as usual)."""

    # the value looked for in the QuickBooks Item field ``items.match_on`` (Sku or Name)
    item_key: Rule = Field(default_factory=lambda: {"path": "Item.Product.Sku"})
    description: Rule | None = Field(default_factory=lambda: {"path": "Item.Product.Name"})
    tax_code: Rule | None = None  # TaxCodeRef of the product lines (else tax.line_tax_code)
    class_id: Rule | None = None  # ClassRef of the product lines (class tracking per row)
    # the shipping line's Description (its Item is items.shipping_sku)
    shipping_description: Rule | None = Field(default_factory=lambda: {
        "path": "Order.ShippingMethod",
        "transforms": ["trim", "empty_to_null", {"prefix": "Shipping ("}, {"suffix": ")"}], "default": "Shipping"})


class PaymentRulesDoc(_Doc):
    """What lets a bookkeeper match the bank statement: on the SalesReceipt (paid at checkout) and on the
    Payment of an Invoice. Rules read ``Order.*`` only (order.paid carries the order alone)."""

    # PaymentMethodRef: a QuickBooks PaymentMethod Id, by default the lookup table ``payment_methods`` keyed by
    # nopCommerce's PaymentMethodSystemName (a method not listed: no PaymentMethodRef)
    method: Rule | None = Field(default_factory=lambda: {
        "path": "Order.PaymentMethodSystemName", "transforms": [{"lookup": "payment_methods"}]})
    # PaymentRefNum: the payment provider's id of the money received (the capture, else the authorization)
    reference: Rule | None = Field(default_factory=lambda: _first({"path": "Order.CaptureTransactionId"},
                                                                  {"path": "Order.AuthorizationTransactionId"}))


class CustomerRulesDoc(_Doc):
    """The customer's fields but DisplayName (``customer.display_name.value``, with the naming settings)."""

    given_name: Rule | None = Field(default_factory=lambda: _first({"path": "Customer.FirstName"},
                                                                   {"path": "BillingAddress.FirstName"}))
    family_name: Rule | None = Field(default_factory=lambda: _first({"path": "Customer.LastName"},
                                                                    {"path": "BillingAddress.LastName"}))
    company_name: Rule | None = Field(default_factory=lambda: _first({"path": "Customer.Company"},
                                                                     {"path": "BillingAddress.Company"}))
    # PrimaryEmailAddr and the document's BillEmail; also how an existing customer is found
    email: Rule = Field(default_factory=lambda: {"path": "Customer.Email", "transforms": ["trim", "lower"]})
    phone: Rule | None = Field(default_factory=lambda: _first({"path": "BillingAddress.PhoneNumber"},
                                                              {"path": "Customer.Phone"}))
    bill_address: AddressRulesDoc | None = Field(default_factory=lambda: _address_doc("BillingAddress"))
    ship_address: AddressRulesDoc | None = Field(default_factory=lambda: _address_doc("ShippingAddress"))


def rule_paths(spec: Any) -> set[str]:
    """Every source path a rule (or condition) reads: its path, template placeholders, alternatives, ``when``."""
    if isinstance(spec, list):
        return set().union(*(rule_paths(part) for part in spec)) if spec else set()
    if not isinstance(spec, Mapping):
        return set()
    paths: set[str] = set()
    for key in ("path", "each"):
        if isinstance(spec.get(key), str):
            paths.add(spec[key])
    if isinstance(spec.get("template"), str):
        with suppress(ValueError):  # compile_rule names a malformed template
            paths |= {name for _, name, _, _ in Formatter().parse(spec["template"]) if name}
    for key in ("first_of", "when", "any", "all", "not"):
        paths |= rule_paths(spec.get(key))
    return paths


# --- compiled ---------------------------------------------------------------------------------

ADDRESS_FIELDS = {"line1": "Line1", "line2": "Line2", "city": "City", "state": "CountrySubDivisionCode",
                  "postal_code": "PostalCode", "country": "Country"}
_CUSTOMER_NAMES = ("GivenName", "FamilyName", "CompanyName")


@dataclass(frozen=True)
class CustomerValues:
    """What the rules say about the customer: raw values, before QuickBooks' limits are applied."""

    display_name: Any
    names: dict[str, Any]  # GivenName, FamilyName, CompanyName
    email: Any
    phone: Any
    bill_address: dict[str, Any]  # QuickBooks address field -> value
    ship_address: dict[str, Any]


@dataclass(frozen=True)
class DocumentValues:
    private_note: Any
    customer_memo: Any
    class_id: Any
    department_id: Any
    custom_fields: tuple[tuple[str, str | None, Any], ...]  # (DefinitionId, Name, value)


@dataclass(frozen=True)
class PaymentValues:
    method_id: Any
    reference: Any


@dataclass(frozen=True)
class LineValues:
    item_key: Any
    description: Any
    tax_code: Any
    class_id: Any


def _present(rules: Mapping[str, Rule | None]) -> list[tuple[str, Rule]]:
    return [(where, rule) for where, rule in rules.items() if rule is not None]


class OrderRules:
    """The compiled rules (once per cold start). Each group is one ``compile_rules`` call."""

    def __init__(self, customer: CustomerRulesDoc, display_name: Rule, document: DocumentRulesDoc,
                 lines: LineRulesDoc, lookups: Mapping[str, Mapping[Any, Any]],
                 payment: PaymentRulesDoc | None = None) -> None:
        tables = {**DEFAULT_LOOKUPS, **lookups}
        self.ship_address_on_document = document.ship_address
        named = {"customer.given_name": customer.given_name, "customer.family_name": customer.family_name,
                 "customer.company_name": customer.company_name}
        addresses: dict[str, Rule | None] = {}
        for side, doc in (("bill_address", customer.bill_address), ("ship_address", customer.ship_address)):
            for key in ADDRESS_FIELDS:
                addresses[f"customer.{side}.{key}"] = getattr(doc, key) if doc is not None else None
        self._address_keys = tuple(where for where, _rule in _present(addresses))
        optional = _present({**named, "customer.phone": customer.phone, **addresses})
        self._customer_optional = tuple(where for where, _rule in optional)
        self._customer = compile_rules(
            [("customer.display_name.value", {**display_name, "required": True}),
             ("customer.email", {**customer.email, "required": True}), *optional], tables)
        self._email = compile_rules([("customer.email", {**customer.email, "required": True})], tables)
        self._doc_number = compile_rules([("document.doc_number", {**document.doc_number, "required": True})],
                                         tables)
        header = _present({"document.private_note": document.private_note,
                           "document.customer_memo": document.customer_memo,
                           "document.class_id": document.class_id, "document.department_id": document.department_id})
        self._header_keys = tuple(where for where, _rule in header)
        self._custom_fields = tuple((field.definition_id, field.name) for field in document.custom_fields)
        self._document = compile_rules(
            [*header, *((f"document.custom_fields[{index}].value", field.value)
                        for index, field in enumerate(document.custom_fields))], tables)
        line = _present({"lines.description": lines.description, "lines.tax_code": lines.tax_code,
                         "lines.class_id": lines.class_id})
        self._line_keys = tuple(where for where, _rule in line)
        self._line = compile_rules([("lines.item_key", lines.item_key), *line], tables)
        self._shipping = compile_rules(_present({"lines.shipping_description": lines.shipping_description}), tables)
        payment = payment if payment is not None else PaymentRulesDoc()
        self._payment = compile_rules([("payment.method", payment.method or {"const": None}),
                                       ("payment.reference", payment.reference or {"const": None})], tables)

    def customer(self, data: Mapping[str, Any]) -> CustomerValues:
        display, email, *rest = self._customer(data)
        values = dict(zip(self._customer_optional, rest, strict=True))
        names = {name: values.get(f"customer.{key}") for name, key in
                 zip(_CUSTOMER_NAMES, ("given_name", "family_name", "company_name"), strict=True)}
        addresses: dict[str, dict[str, Any]] = {"bill_address": {}, "ship_address": {}}
        for where in self._address_keys:
            _customer, side, key = where.split(".")
            addresses[side][ADDRESS_FIELDS[key]] = values[where]
        return CustomerValues(display_name=display, names=names, email=email, phone=values.get("customer.phone"),
                              bill_address=addresses["bill_address"], ship_address=addresses["ship_address"])

    def email(self, data: Mapping[str, Any]) -> Any:
        return self._email(data)[0]

    def doc_number(self, data: Mapping[str, Any]) -> Any:
        return self._doc_number(data)[0]

    def document(self, data: Mapping[str, Any]) -> DocumentValues:
        values = self._document(data)
        header = dict(zip(self._header_keys, values, strict=False))
        customs = values[len(self._header_keys):]
        return DocumentValues(
            private_note=header.get("document.private_note"), customer_memo=header.get("document.customer_memo"),
            class_id=header.get("document.class_id"), department_id=header.get("document.department_id"),
            custom_fields=tuple((definition, name, value)
                                for (definition, name), value in zip(self._custom_fields, customs, strict=True)))

    def line(self, data: Mapping[str, Any], item: Any) -> LineValues:
        item_key, *rest = self._line({**data, "Item": item})
        values = dict(zip(self._line_keys, rest, strict=True))
        return LineValues(item_key=item_key, description=values.get("lines.description"),
                          tax_code=values.get("lines.tax_code"), class_id=values.get("lines.class_id"))

    def shipping_description(self, data: Mapping[str, Any]) -> Any:
        values = self._shipping(data)
        return values[0] if values else None

    def payment(self, data: Mapping[str, Any]) -> PaymentValues:
        method_id, reference = self._payment(data)
        return PaymentValues(method_id=method_id, reference=reference)
