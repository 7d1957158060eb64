"""Streak → nopCommerce: a rep's edit of a Streak contact updates the nopCommerce customer's fields and custom
customer attributes (flow ``streak-to-nopcommerce``, mapping ``streak-to-nopcommerce.yaml``). The other
direction, nopCommerce orders into Streak deals, is the Streak system's own target; this pair hands it over.

Streak notifies contact edits (``CONTACT_UPDATE``, team scope) with the whole contact: names, e-mail addresses,
phone numbers, title, the ``other`` note and the social handles. What the mapping document decides:

* ``match.emails``: which of the contact's e-mail addresses find the customer (``Customer/GetCustomerByEmail``,
  tried in order; the first address a customer has wins). The e-mail is the key, so it is never written.
* ``customer``: nopCommerce customer fields (wire names: ``first_name``, ``phone``, ``company``...) ← rules
  over the contact, in the rule language of every mapping document.
* ``attributes``: custom customer attributes, by their name in the shop (or ``#<id>``) ← rules. The names are
  resolved from ``CustomerAttribute/GetAll`` once per client. Text attributes take the value as it is; a
  dropdown or radio list takes the predefined value of that name (``CustomerAttributeValue/GetAll``, case-blind),
  and a value it does not offer leaves the attribute as it is (reported as ``not_an_option``).
* ``master``: per field or attribute, which system wins: ``streak`` (the rep's edit is written),
  ``nopcommerce`` (never written: counted as ``not_master``), or ``nopcommerce_if_set`` (the rep's value
  only fills a field the shop leaves empty).

What stays in code: a contact without a value for a field leaves the shop's value alone (an empty Streak field
never erases what the customer entered); the customer is updated by read-modify-write and only when a value
differs, so a redelivery writes nothing; edits are ordered per contact by Streak's ``lastUpdatedTimestamp``
(an older edit arriving late is ``stale``; equal times are applied); and Switchyard's own writes into the
contact (``nopcommerce-to-streak`` creating or updating it from an order) come back as ``CONTACT_UPDATE`` and
are dropped as echoes by the worker (``echoes_heard_by`` below, ``switchyard.echoes``), so an order's
customer data never travels Streak → nopCommerce as if a rep had typed it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard import registry
from switchyard.catalog import mapping_path
from switchyard.entity_state import EntityState
from switchyard.errors import MappingError, PermanentError
from switchyard.events import FlowEvent
from switchyard.mapping.rules import compile_rule, compile_rules
from switchyard.registry import FlowContext, MappingSpec, Pair, Secrets, Target
from switchyard.targets import DeliveryResult

Master = Literal["streak", "nopcommerce", "nopcommerce_if_set"]
UPDATE_CUSTOMER = "update_customer"
# nopCommerce Customer columns a CRM may own (wire names). Not the e-mail: it is how the two are matched.
CUSTOMER_FIELDS = frozenset({
    "first_name", "last_name", "company", "phone", "fax", "gender", "street_address", "street_address2",
    "zip_postal_code", "city", "county", "vat_number", "admin_comment",
})
Rule = dict[str, Any]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchDoc(_Doc):
    # the contact's e-mail addresses, in the order they are tried as the customer's e-mail
    emails: Rule = Field(default_factory=lambda: {"path": "emailAddresses"})


class ContactMappingDoc(_Doc):
    flow: str = Field(min_length=1)
    target: Literal["nopcommerce"]
    source: Literal["streak"]
    description: str = ""
    events: dict[Literal["CONTACT_UPDATE"], Literal["update_customer"]]
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    match: MatchDoc = Field(default_factory=MatchDoc)
    customer: dict[str, Rule] = Field(default_factory=dict)
    attributes: dict[str, Rule] = Field(default_factory=dict)
    master: dict[str, Master]

    @model_validator(mode="after")
    def _checked(self) -> ContactMappingDoc:
        unknown = sorted(set(self.customer) - CUSTOMER_FIELDS)
        if unknown:
            raise ValueError(f"customer: {', '.join(unknown)} are not nopCommerce customer fields a CRM can own "
                             f"(one of {', '.join(sorted(CUSTOMER_FIELDS))})")
        clash = sorted(set(self.customer) & set(self.attributes))
        if clash:
            raise ValueError(f"{', '.join(clash)}: both a customer field and an attribute; rename the attribute")
        mapped = {*self.customer, *self.attributes}
        missing = sorted(mapped - set(self.master))
        if missing:
            raise ValueError(f"master: say which system wins for {', '.join(missing)}")
        stray = sorted(set(self.master) - mapped)
        if stray:
            raise ValueError(f"master: {', '.join(stray)} is not mapped under customer or attributes")
        if not mapped:
            raise ValueError("map at least one customer field or attribute")
        return self


@dataclass(frozen=True)
class ContactChange:
    """What one contact edit asks of the shop, before the shop is read."""

    emails: tuple[str, ...]
    fields: dict[str, str]  # customer field -> value (fields whose value is empty are left out)
    attributes: dict[str, str]  # attribute name -> value
    not_master: tuple[str, ...]  # mapped fields the shop owns: not written


class ContactMapping:
    def __init__(self, doc: ContactMappingDoc) -> None:
        self.doc = doc
        self.events: dict[str, str] = {str(k): str(v) for k, v in doc.events.items()}
        where = doc.flow
        self._emails = compile_rule(doc.match.emails, doc.lookups, f"{where}: match.emails")
        self._fields = compile_rules([(f"{where}: customer.{k}", v) for k, v in doc.customer.items()], doc.lookups)
        self._attributes = compile_rules([(f"{where}: attributes.{k}", v) for k, v in doc.attributes.items()],
                                         doc.lookups)

    def change(self, contact: Mapping[str, Any]) -> ContactChange:
        found = self._emails(contact)
        emails = [found] if isinstance(found, str) else list(found or [])
        cleaned = tuple(dict.fromkeys(e.strip() for e in emails if isinstance(e, str) and e.strip()))
        fields = self._values(self.doc.customer, self._fields(contact))
        attributes = self._values(self.doc.attributes, self._attributes(contact))
        not_master = tuple(name for name in {**fields, **attributes} if self.doc.master[name] == "nopcommerce")
        return ContactChange(
            emails=cleaned,
            fields={k: v for k, v in fields.items() if k not in not_master},
            attributes={k: v for k, v in attributes.items() if k not in not_master},
            not_master=not_master,
        )

    @staticmethod
    def _values(rules: Mapping[str, Rule], values: tuple[Any, ...]) -> dict[str, str]:
        out = {}
        for name, value in zip(rules, values, strict=True):
            if value is None or value == "":
                continue  # Streak has nothing for it: the shop keeps its value
            if isinstance(value, bool | dict | list):
                raise MappingError(f"{name}: the rule yields {type(value).__name__}, not a text value")
            out[name] = str(value)
        return out

    def fills_only(self, name: str) -> bool:
        return self.doc.master[name] == "nopcommerce_if_set"

    def dry_run(self, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
        """What a contact edit would ask of the shop, calling nobody (which customer it finds, and which of the
        ``nopcommerce_if_set`` fields it fills, depend on the shop)."""
        action = self.events.get(event_type)
        if action is None:
            raise MappingError(f"{self.doc.flow} does not handle event type {event_type!r}")
        change = self.change(data)
        return action, {"contact": data.get("key"), "customer_emails": list(change.emails),
                        "fields": change.fields, "attributes": change.attributes,
                        "only_if_empty_in_shop": sorted(n for n in {**change.fields, **change.attributes}
                                                        if self.fills_only(n)),
                        "not_master": list(change.not_master)}


def parse_contact_mapping(text: str, *, name: str) -> ContactMapping:
    try:
        return ContactMapping(ContactMappingDoc.model_validate(yaml.safe_load(text)))
    except (yaml.YAMLError, ValidationError) as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_contact_mapping(file_name: str) -> ContactMapping:
    return parse_contact_mapping(mapping_path(file_name).read_text(), name=file_name)


class ShopCustomers(Protocol):
    def customer_by_email(self, email: str) -> dict[str, Any] | None: ...
    def customer_attributes(self) -> list[dict[str, Any]]: ...
    def customer_attribute_values(self, attribute_id: int) -> list[dict[str, Any]]: ...
    def update_customer(self, customer_id: int, fields: Mapping[str, Any],
                        attributes: Mapping[int, str] | None = None) -> list[str]: ...


def entity_key(contact_key: str) -> str:
    """The EntityState key that orders one Streak contact's edits."""
    return f"streak-contact:{contact_key}"


class StreakContactToNopCommerceTarget:
    def __init__(self, mapping: ContactMapping, shop: ShopCustomers, state: EntityState) -> None:
        self._mapping = mapping
        self._shop = shop
        self._state = state
        self._attributes: dict[str, tuple[int, int]] | None = None  # folded name or "#id" -> (id, control type)
        self._options: dict[int, dict[str, int]] = {}  # select attribute id -> folded value name -> value id
        self._lock = threading.Lock()

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if event.type not in self._mapping.events:
            raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")
        contact = event.data
        key = str(contact.get("key") or "")
        if not key:
            raise PermanentError(f"{event.type} event {event.event_id} has no contact key", reason="malformed_event")
        change = self._mapping.change(contact)
        if not change.fields and not change.attributes:
            outcome = "not_master" if change.not_master else "unchanged"
            return DeliveryResult(outcome, {"contact": key, "not_master": list(change.not_master)})
        if not change.emails:
            return DeliveryResult("filtered", {"reason": "the contact has no e-mail address", "contact": key})
        customer = self._customer(change.emails)
        if customer is None:
            return DeliveryResult("filtered", {"reason": "no customer of the shop has the contact's e-mail",
                                               "contact": key})
        if not self._state.claim(entity_key(key), event.timestamp, event.event_id):
            return DeliveryResult("stale", {"contact": key, "customer": customer["id"]})
        fields = {name: value for name, value in change.fields.items()
                  if not (self._mapping.fills_only(name) and customer.get(name))}
        attributes, not_options = self._attribute_values(customer, change.attributes)
        written = self._shop.update_customer(int(customer["id"]), fields, attributes)
        detail: dict[str, Any] = {"contact": key, "customer": customer["id"], "written": written,
                                  "not_master": list(change.not_master)}
        if not_options:  # a rep's value the shop offers no choice for: left as it is, the rest written
            detail["not_an_option"] = not_options
        return DeliveryResult("updated" if written else "unchanged", detail)

    def _customer(self, emails: tuple[str, ...]) -> dict[str, Any] | None:
        for email in emails:
            customer = self._shop.customer_by_email(email)
            if customer is not None:
                return customer
        return None

    def _attribute_values(self, customer: Mapping[str, Any],
                          values: Mapping[str, str]) -> tuple[dict[int, str], dict[str, str]]:
        """Attribute id -> what the customer's XML holds for it (the text, or a select attribute's value id), and
        the values a select attribute does not offer (name -> value)."""
        from switchyard.systems.nopcommerce.customer_attributes import SINGLE_CHOICE_CONTROL_TYPES, parse_values

        if not values:
            return {}, {}
        attributes = self._writable_attributes()
        held = parse_values(customer.get("custom_customer_attributes_xml"))
        out: dict[int, str] = {}
        not_options: dict[str, str] = {}
        for name, value in values.items():
            found = attributes.get(name.casefold())
            if found is None:
                raise PermanentError(f"{self._mapping.doc.flow}: the shop has no text, dropdown or radio customer "
                                     f"attribute {name!r} (Customers > Customer settings > Customer form fields)",
                                     reason="mapping_error")
            attribute_id, control_type = found
            if self._mapping.fills_only(name) and any(held.get(attribute_id, [])):
                continue
            if control_type in SINGLE_CHOICE_CONTROL_TYPES:
                option = self._options_of(attribute_id).get(value.strip().casefold())
                if option is None:
                    not_options[name] = value
                    continue
                value = str(option)
            out[attribute_id] = value
        return out, not_options

    def _writable_attributes(self) -> dict[str, tuple[int, int]]:
        """Text and single-choice attributes by folded name and by ``#<id>``; read once per client (attributes
        change rarely; a client is rebuilt when the connection secret changes)."""
        from switchyard.systems.nopcommerce.customer_attributes import (
            SINGLE_CHOICE_CONTROL_TYPES,
            TEXT_CONTROL_TYPES,
        )

        with self._lock:
            if self._attributes is None:
                found: dict[str, tuple[int, int]] = {}
                for attribute in self._shop.customer_attributes():
                    control_type = attribute.get("attribute_control_type_id")
                    if control_type not in TEXT_CONTROL_TYPES | SINGLE_CHOICE_CONTROL_TYPES:
                        continue
                    entry = (int(attribute["id"]), int(control_type))
                    found.setdefault(str(attribute.get("name") or "").casefold(), entry)
                    found[f"#{entry[0]}"] = entry
                self._attributes = found
            return self._attributes

    def _options_of(self, attribute_id: int) -> dict[str, int]:
        with self._lock:
            options = self._options.get(attribute_id)
        if options is None:  # read outside the lock: two threads reading the same list is harmless
            options = {}
            for option in self._shop.customer_attribute_values(attribute_id):
                options.setdefault(str(option.get("name") or "").strip().casefold(), int(option["id"]))
            with self._lock:
                self._options[attribute_id] = options
        return options


# --------------------------------------------------------------------------- the registry entry


def _target(context: FlowContext) -> Callable[[Secrets], Target]:
    flow = context.flow
    if flow.target != "nopcommerce":  # nopCommerce orders into Streak: the Streak system's own target
        streak_target = registry.system(flow.target).target
        if streak_target is None:
            raise ValueError(f"flow {flow.name}: system {flow.target!r} registers no target")
        return streak_target(context)
    mapping = load_contact_mapping(flow.mapping_document)
    state = context.adapters.entity_state()

    def build(secrets: Secrets) -> Target:
        return StreakContactToNopCommerceTarget(mapping, context.client(flow.connection, secrets), state)

    return build


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    return load_contact_mapping(document).dry_run(event_type, data)


PAIR = Pair(systems=frozenset({"nopcommerce", "streak"}), target=_target,
            # the streak-to-nopcommerce documents; nopCommerce's own are stock levels, Streak's deals
            mapping=MappingSpec(load=load_contact_mapping, dry_run=_dry_run), mapping_target="nopcommerce",
            # a contact nopcommerce-to-streak wrote comes back as CONTACT_UPDATE: not a rep's edit
            echoes_heard_by=frozenset({"nopcommerce"}))
