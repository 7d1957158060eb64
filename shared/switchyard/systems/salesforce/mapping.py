"""Mapping documents of the flows whose target is Salesforce (``clarity-to-salesforce.yaml``).

Paths read the event's ``data`` in the source's own names; targets are Salesforce field API names.
One document declares, per event type, what happens (``events``), how a customer becomes an Account and a
Contact (B2B or B2C by a condition, fallbacks for required fields), how an order becomes an Order with
OrderItems or an Opportunity with line items (validation rules that reject an order), products with
their price-book price, the stock field, and the master of every synced field (``master``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError, PermanentError
from switchyard.mapping.conditions import compile_condition
from switchyard.mapping.rules import compile_rule

Rule = dict[str, Any]
Master = Literal["clarity", "salesforce", "both"]
Action = Literal["upsert_customer", "upsert_order", "upsert_product", "update_stock"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountShapes(_Doc):
    b2b: dict[str, Rule]
    b2c: dict[str, Rule]


class CustomerDoc(_Doc):
    key: Rule  # the external id of the Account and of the Contact
    b2b_when: dict[str, Any]  # a condition: true → the B2B account shape
    account: AccountShapes
    contact: dict[str, Rule]
    # "Object.Field" → the rule used when the field's own rule gives nothing (a warning metric counts it)
    fallbacks: dict[str, Rule] = Field(default_factory=dict)


class RejectRule(_Doc):
    when: dict[str, Any]
    reason: str


class OrderDoc(_Doc):
    key: Rule
    customer: str = "customer"  # where the order's customer object sits in the event data
    record: Literal["Order", "Opportunity"] = "Order"
    lines: str = "lineItems"
    reject_when: tuple[RejectRule, ...] = ()
    fields: dict[str, Rule]  # of the Order or the Opportunity
    line: dict[str, Rule]  # of each OrderItem / OpportunityLineItem, read from one line item
    product_code: Rule  # read from one line item: the Product2.ProductCode its price-book entry is found by
    activate: bool = False  # Order only: set Status to Activated once the items are in


class ProductDoc(_Doc):
    key: Rule
    fields: dict[str, Rule]  # of Product2
    price: Rule  # the standard price-book entry's UnitPrice
    active: Rule | None = None  # the entry's IsActive


class StockDoc(_Doc):
    key: Rule
    field: str  # the Product2 field that holds the stock, e.g. StockOnHand__c
    value: Rule


class SalesforceMappingDoc(_Doc):
    flow: str
    target: Literal["salesforce"]
    source: str
    description: str = ""
    external_id_field: str = "ExternalID__c"
    price_book: str = "standard"  # "standard" or a Pricebook2 id
    master: dict[str, Master] = Field(default_factory=dict)  # "Object.Field" → its master; default: both
    events: dict[str, Action]
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    customer: CustomerDoc | None = None
    order: OrderDoc | None = None
    product: ProductDoc | None = None
    stock: StockDoc | None = None

    @model_validator(mode="after")
    def _sections_for_actions(self) -> SalesforceMappingDoc:
        needs = {"upsert_customer": "customer", "upsert_order": "order", "upsert_product": "product",
                 "update_stock": "stock"}
        for event, action in self.events.items():
            if getattr(self, needs[action]) is None:
                raise ValueError(f"event {event} is mapped to {action} but the document has no {needs[action]}")
        if self.order is not None and self.customer is None:
            raise ValueError("an order section needs the customer section (the order's account)")
        return self


Getter = Callable[[Any], Any]


def _compile_fields(rules: Mapping[str, Rule], lookups: Mapping[str, Any], where: str) -> dict[str, Getter]:
    return {name: compile_rule(rule, lookups, f"{where}.{name}") for name, rule in rules.items()}


def _apply(getters: Mapping[str, Getter], data: Any) -> dict[str, Any]:
    return {name: get(data) for name, get in getters.items()}


@dataclass(frozen=True)
class CustomerPlan:
    key: str
    b2b: bool
    account: dict[str, Any]
    contact: dict[str, Any]
    fallbacks_used: tuple[str, ...] = ()  # "Contact.LastName": a required field came from its fallback


@dataclass(frozen=True)
class OrderLinePlan:
    key: str  # the line's external id: "<order key>-<position>" (idempotent on redelivery)
    product_code: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class OrderPlan:
    key: str
    record: str
    customer: CustomerPlan
    fields: dict[str, Any]
    lines: tuple[OrderLinePlan, ...] = field(default=())


class SalesforceMapping:
    def __init__(self, doc: SalesforceMappingDoc) -> None:
        self.doc = doc
        self.events = dict(doc.events)
        self.external_id_field = doc.external_id_field
        lookups = doc.lookups
        if doc.customer is not None:
            c = doc.customer
            self._customer_key = compile_rule({**c.key, "required": True}, lookups, "customer.key")
            self._b2b = compile_condition(c.b2b_when, "customer.b2b_when")
            self._b2b_account = _compile_fields(c.account.b2b, lookups, "customer.account.b2b")
            self._b2c_account = _compile_fields(c.account.b2c, lookups, "customer.account.b2c")
            self._contact = _compile_fields(c.contact, lookups, "customer.contact")
            self._fallbacks = _compile_fields(c.fallbacks, lookups, "customer.fallbacks")
            for name in self._fallbacks:
                if name.partition(".")[0] not in ("Account", "Contact"):
                    raise MappingError(f"customer.fallbacks.{name}: name Account.<Field> or Contact.<Field>")
        if doc.order is not None:
            o = doc.order
            self._order_key = compile_rule({**o.key, "required": True}, lookups, "order.key")
            self._order_fields = _compile_fields(o.fields, lookups, "order.fields")
            self._line_fields = _compile_fields(o.line, lookups, "order.line")
            self._product_code = compile_rule({**o.product_code, "required": True}, lookups, "order.product_code")
            self._rejects = [(compile_condition(r.when, f"order.reject_when[{i}]"), r.reason)
                             for i, r in enumerate(o.reject_when)]
        if doc.product is not None:
            p = doc.product
            self._product_key = compile_rule({**p.key, "required": True}, lookups, "product.key")
            self._product_fields = _compile_fields(p.fields, lookups, "product.fields")
            self._price = compile_rule({**p.price, "required": True}, lookups, "product.price")
            self._active = compile_rule(p.active, lookups, "product.active") if p.active else None
        if doc.stock is not None:
            s = doc.stock
            self._stock_key = compile_rule({**s.key, "required": True}, lookups, "stock.key")
            self._stock_value = compile_rule(s.value, lookups, "stock.value")

    def master(self, sobject: str, name: str) -> str:
        return self.doc.master.get(f"{sobject}.{name}", "both")

    def writable(self, sobject: str, fields: Mapping[str, Any], *, side: str) -> dict[str, Any]:
        """The fields ``side``'s change may write (its own and shared ones; never the other side's)."""
        return {k: v for k, v in fields.items() if self.master(sobject, k) in (side, "both")}

    # ------------------------------------------------------------------ plans (pure: dry-run and tests)

    def plan_customer(self, data: Mapping[str, Any]) -> CustomerPlan:
        assert self.doc.customer is not None
        b2b = bool(self._b2b(data))
        account = _apply(self._b2b_account if b2b else self._b2c_account, data)
        contact = _apply(self._contact, data)
        used = []
        for name, fallback in self._fallbacks.items():
            sobject, _, field_name = name.partition(".")
            target = account if sobject == "Account" else contact
            if target.get(field_name) in (None, ""):
                target[field_name] = fallback(data)
                used.append(name)
        return CustomerPlan(key=str(self._customer_key(data)), b2b=b2b, account=account, contact=contact,
                            fallbacks_used=tuple(used))

    def plan_order(self, data: Mapping[str, Any]) -> OrderPlan:
        assert self.doc.order is not None
        for condition, reason in self._rejects:
            if condition(data):
                raise PermanentError(f"rejected by the mapping: {reason}", reason="rejected_by_mapping")
        key = str(self._order_key(data))
        customer = data.get(self.doc.order.customer)
        if not isinstance(customer, Mapping):
            raise PermanentError(f"order {key} has no {self.doc.order.customer} object",
                                 reason="missing_required_field")
        lines = data.get(self.doc.order.lines) or []
        return OrderPlan(
            key=key, record=self.doc.order.record, customer=self.plan_customer(customer),
            fields=_apply(self._order_fields, data),
            lines=tuple(OrderLinePlan(key=f"{key}-{position}", product_code=str(self._product_code(line)),
                                      fields=_apply(self._line_fields, line))
                        for position, line in enumerate(lines, start=1)))

    def plan_product(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"key": str(self._product_key(data)), "fields": _apply(self._product_fields, data),
                "price": self._price(data), "active": self._active(data) if self._active else True}

    def plan_stock(self, data: Mapping[str, Any]) -> dict[str, Any]:
        assert self.doc.stock is not None
        return {"key": str(self._stock_key(data)), "field": self.doc.stock.field, "value": self._stock_value(data)}

    def plan(self, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
        action = self.events.get(event_type)
        if action is None:
            raise MappingError(f"{self.doc.flow} does not handle event type {event_type!r}")
        planner = {"upsert_customer": self.plan_customer, "upsert_order": self.plan_order,
                   "upsert_product": self.plan_product, "update_stock": self.plan_stock}[action]
        return action, planner(data)


def parse_salesforce_mapping(text: str, *, name: str) -> SalesforceMapping:
    try:
        document = yaml.safe_load(text)
        return SalesforceMapping(SalesforceMappingDoc.model_validate(document))
    except (yaml.YAMLError, ValidationError) as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_salesforce_mapping(file_name: str) -> SalesforceMapping:
    """Load a flow's mapping document once per process (cold start), not per record."""
    return parse_salesforce_mapping(mapping_path(file_name).read_text(), name=file_name)
