"""Mapping documents for flows whose target is a Streak pipeline of deals (boxes).

The document (``config/mappings/<flow>.yaml``) says, for one source's order events: the key that
finds the box again, when to create one, the contact and organization to link, the box's name,
stage and custom fields, a follow-up task, and how a status change moves the stage. ``compile``
turns it into a ``DealMapping`` whose ``plan_deal`` / ``plan_stage_change`` produce plain plans
that ``switchyard.systems.streak.deals`` carries out. ``switchyard dry-run`` prints these plans.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from hashlib import sha256
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError, PermanentError
from switchyard.mapping.conditions import Predicate, compile_condition
from switchyard.mapping.rules import compile_rules
from switchyard.systems.streak.pipeline_names import resolve_names
from switchyard.systems.streak.schema import PipelineSchema

Rule = dict[str, Any]
DEFAULT_SETTLE_SECONDS = 60.0
# ISO 4217 minor units where they are not 2
MINOR_UNITS = {"BHD": 3, "CLP": 0, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "OMR": 3, "TND": 3,
               "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0}
_QUANTA = {code: Decimal(1).scaleb(-digits) for code, digits in MINOR_UNITS.items()}
_CENT, _ONE = Decimal("0.01"), Decimal(1)


def _decimal(value: Any) -> Decimal:
    return value if type(value) is Decimal else Decimal(str(value))


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# What Streak lets a client write on a team's contacts and organizations besides the keys Switchyard sets
# itself (e-mail, names, domains, addresses): text properties, and lists of text (a value becomes one entry).
# Streak keeps no user-defined fields on them; anything else it silently ignores, so a document is refused.
CONTACT_FIELDS = {"title": str, "phoneNumbers": list, "other": str, "twitterHandle": str, "facebookHandle": str,
                  "linkedinHandle": str, "photoUrl": str}
ORGANIZATION_FIELDS = {"phoneNumbers": list, "industry": str, "logoURL": str, "other": str, "twitterHandle": str,
                       "facebookHandle": str, "linkedinHandle": str}


class ContactDoc(_Doc):
    email: Rule
    given_name: Rule | None = None
    family_name: Rule | None = None
    phone: Rule | None = None
    customer_key: Rule | None = None  # the source's customer id: linked to the Streak contact
    fields: dict[str, Rule] = Field(default_factory=dict)  # Streak contact property -> rule (CONTACT_FIELDS)


class ContactUpdateDoc(_Doc):
    """``update_contact``: a source customer's change applied to its linked Streak contact."""

    customer_key: Rule
    email: Rule | None = None
    phone: Rule | None = None
    given_name: Rule | None = None
    family_name: Rule | None = None


AddressPart = Literal["street", "street2", "city", "state", "postal_code", "country"]
ADDRESS_PARTS: tuple[AddressPart, ...] = ("street", "street2", "city", "state", "postal_code", "country")


class AddressDoc(_Doc):
    """One of the order's addresses, parsed into parts; ``fields`` names the box field of each part."""

    street: Rule | None = None
    street2: Rule | None = None
    city: Rule | None = None
    state: Rule | None = None  # state, province or region
    postal_code: Rule | None = None
    country: Rule | None = None
    fields: dict[AddressPart, str] = Field(default_factory=dict)  # part -> Streak field key


class OrganizationDoc(_Doc):
    when: dict[str, Any] | None = None
    name: Rule
    domain: Rule | None = None
    # e-mail domains that identify no company (find the organization by name instead)
    public_domains: tuple[str, ...] = ()
    # what must agree for an existing organization to be the order's: a shared mail domain alone
    # (resellers, group companies, a shared mail host) would link another company
    match_on: tuple[Literal["name", "domain"], ...] = ("name", "domain")
    # names of the document's `addresses` put on the organization (Streak keeps them as one line each)
    addresses: tuple[str, ...] = ()
    fields: dict[str, Rule] = Field(default_factory=dict)  # Streak organization property -> rule


class AmountDoc(_Doc):
    """A money amount shown with its currency label, so the two always agree."""

    field: str  # the NUMBER field showing the amount
    currency_field: str  # the TEXT_INPUT field showing its currency code
    total: Rule  # the amount in the source's base currency
    rate: Rule | None = None  # units of ``currency`` per base-currency unit (none: total is in it)
    currency: Rule  # the currency the amount is shown in


class BoxDoc(_Doc):
    name: Rule
    stage: Rule
    notes: Rule | None = None
    comment: Rule | None = None  # posted once on the box (Streak's activity feed)
    fields: dict[str, Rule] = Field(default_factory=dict)  # Streak field key -> rule
    amount: AmountDoc | None = None


class AssignmentRuleDoc(_Doc):
    """``when`` the condition holds (none: always), the deal goes to ``rep`` or round-robin within ``team``."""

    when: dict[str, Any] | None = None
    rep: str | None = None  # a team member's e-mail
    team: str | None = None  # a name from assignment.teams


class AssignmentDoc(_Doc):
    """Who gets the deal (the box and its follow-up task): the first rule that holds, else ``fallback``."""

    teams: dict[str, list[str]] = Field(default_factory=dict)  # team name -> members' e-mail addresses
    rules: list[AssignmentRuleDoc] = Field(default_factory=list)
    fallback: AssignmentRuleDoc
    # what picks a member within a team: one hash of it, so a redelivery picks the same rep (default: order key)
    spread_by: Rule | None = None


class TaskDoc(_Doc):
    text: Rule
    due: Rule  # a date-time; the connector sends epoch ms
    assignee: Rule | None = None


class StageChangeDoc(_Doc):
    stage: Rule
    # box fields that follow the order after it is placed (e.g. the payment status), written with the stage
    fields: dict[str, Rule] = Field(default_factory=dict)
    # one line on the box's timeline (a comment) per change, posted once however often the event comes:
    # its parts' values joined with " · " (a part without a value is left out)
    timeline: list[Rule] = Field(default_factory=list)
    # stage keys in the order an order moves through them: of two status changes with the same change
    # time, the one whose stage comes later wins whatever the order they arrive in (empty: arrival order)
    lifecycle: list[str] = Field(default_factory=list)


MasterField = Literal["email", "phone", "name", "status"]


class DealMappingDoc(_Doc):
    flow: str
    target: Literal["streak"]
    description: str = ""
    # a copy of the pipeline's definition (GET /api/v1/pipelines/{pipelineKey}, a JSON file beside the
    # documents) that names of stages, fields and dropdown items are checked against when nothing may call
    # Streak (dry-run, synth); a worker resolves them from the connection's pipeline (pipeline_names.py)
    pipeline: str | None = None
    source: str = ""  # the source system's name, for master-data rules
    # which system wins per field: the source's name, "streak", or "both" (the latest change wins)
    master: dict[MasterField, str] = Field(default_factory=dict)
    events: dict[str, Literal["upsert_deal", "move_stage", "update_contact"]]
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    order_key: Rule
    order_key_field: str  # the TEXT_INPUT field holding order_key, searched to find the box again
    # after a create without an answer, how long Streak may take to show it in search: nothing is
    # created again for that order before a lookup this much later has found nothing
    settle_seconds: float = Field(default=DEFAULT_SETTLE_SECONDS, ge=0)
    change_time: Rule | None = None  # per-entity version; default: the event's timestamp
    create_when: dict[str, Any] | None = None
    contact: ContactDoc
    addresses: dict[str, AddressDoc] = Field(default_factory=dict)  # e.g. billing, shipping
    organization: OrganizationDoc | None = None
    box: BoxDoc
    task: TaskDoc | None = None
    assignment: AssignmentDoc | None = None
    stage_change: StageChangeDoc
    contact_update: ContactUpdateDoc | None = None


# --- plans ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactPlan:
    email: str
    given_name: str | None
    family_name: str | None
    phone: str | None = None
    customer_key: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # Streak contact properties, filled when empty


@dataclass(frozen=True, slots=True)
class ContactUpdatePlan:
    customer_key: str
    email: str | None
    phone: str | None
    given_name: str | None
    family_name: str | None


@dataclass(frozen=True, slots=True)
class OrganizationPlan:
    name: str
    domain: str | None  # None: find by name
    match_on: tuple[str, ...] = ("name", "domain")
    addresses: tuple[str, ...] = ()  # one line each, added to the organization's when missing
    fields: dict[str, Any] = field(default_factory=dict)  # Streak organization properties, filled when empty


@dataclass(frozen=True, slots=True)
class TaskPlan:
    text: str
    due_date_ms: int
    assignee_email: str | None


@dataclass(frozen=True, slots=True)
class DealPlan:
    order_key: str
    create: bool  # False: the create_when condition filtered this order out
    box_name: str
    stage_key: str
    notes: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    contact: ContactPlan | None = None
    organization: OrganizationPlan | None = None
    task: TaskPlan | None = None
    comment: str | None = None
    addresses: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> part -> value
    assignee: str | None = None  # the sales rep's e-mail the box is assigned to


@dataclass(frozen=True, slots=True)
class StageChangePlan:
    order_key: str
    stage_key: str
    fields: dict[str, Any] = field(default_factory=dict)
    timeline: str | None = None


# --- compiled mapping -------------------------------------------------------------------------


class DealMapping:
    """A validated, compiled deal mapping; built once per cold start.

    Rules are compiled in groups (``compile_rules``): the deal's rules in one, the organization's
    (evaluated only when its condition holds) in another, the stage change's in a third.
    """

    # the document as written (names and all), set by compile_deal_mapping: for_pipeline resolves it again
    source_document: Any = None
    names_used = False  # the document names stages, fields or items (not only keys)
    name = "<document>"

    def __init__(self, doc: DealMappingDoc) -> None:
        self.doc = doc
        self._for_pipeline: tuple[PipelineSchema, DealMapping] | None = None
        self._for_pipeline_lock = threading.Lock()
        self.events = dict(doc.events)
        self.order_key_field = doc.order_key_field
        self.settle_seconds = doc.settle_seconds
        if self.order_key_field not in doc.box.fields:
            raise MappingError("order_key_field must be one of box.fields (it stores the order key)")

        def required(spec: Rule) -> Rule:
            return {**spec, "required": spec.get("required", True)}

        deal: list[tuple[str, Rule]] = [
            ("order_key", required(doc.order_key)),
            ("box.name", required(doc.box.name)),
            ("box.stage", required(doc.box.stage)),
            ("contact.email", required(doc.contact.email)),
        ]
        optional = {"box.notes": doc.box.notes, "contact.given_name": doc.contact.given_name,
                    "contact.family_name": doc.contact.family_name, "contact.phone": doc.contact.phone,
                    "contact.customer_key": doc.contact.customer_key, "box.comment": doc.box.comment}
        if doc.task:
            deal += [("task.text", required(doc.task.text)), ("task.due", required(doc.task.due))]
            optional["task.assignee"] = doc.task.assignee
        deal += [(where, spec) for where, spec in optional.items() if spec is not None]
        amount = doc.box.amount
        if amount is not None:
            clash = {amount.field, amount.currency_field} & set(doc.box.fields)
            if clash or amount.field == amount.currency_field:
                raise MappingError(f"box.amount: fields {sorted(clash) or [amount.field]} are set twice")
            deal += [("box.amount.total", required(amount.total)), ("box.amount.currency", required(amount.currency))]
            if amount.rate is not None:  # checked when a deal is made (a filtered order needs none)
                deal.append(("box.amount.rate", amount.rate))
        self._amount = amount
        self._field_keys = tuple(doc.box.fields)
        self._compile_addresses(doc)
        self._compile_assignment(doc)
        self._contact_fields = _compile_properties("contact.fields", doc.contact.fields, CONTACT_FIELDS,
                                                   doc.lookups)
        if doc.contact.phone is not None and "phoneNumbers" in doc.contact.fields:
            raise MappingError("contact.fields.phoneNumbers: the contact's phone is contact.phone already")
        self._org_fields = _compile_properties("organization.fields", doc.organization.fields, ORGANIZATION_FIELDS,
                                               doc.lookups) if doc.organization else None
        deal += [(f"box.fields.{key}", spec) for key, spec in doc.box.fields.items()]
        at = {where: index for index, (where, _spec) in enumerate(deal)}
        self._deal = compile_rules(deal, doc.lookups)
        self._fields_at = len(deal) - len(self._field_keys)
        # positions in the values tuple (-1: not in this document)
        (self._i_notes, self._i_given, self._i_family, self._i_text, self._i_due, self._i_assignee,
         self._i_phone, self._i_customer, self._i_comment, self._i_total, self._i_currency, self._i_rate) = (
            at.get(name, -1) for name in ("box.notes", "contact.given_name", "contact.family_name", "task.text",
                                          "task.due", "task.assignee", "contact.phone", "contact.customer_key",
                                          "box.comment", "box.amount.total", "box.amount.currency",
                                          "box.amount.rate"))
        self.source = doc.source
        self._master = dict(doc.master)
        update = doc.contact_update
        self._contact_update = compile_rules(
            [("contact_update.customer_key", required(update.customer_key))]
            + [(f"contact_update.{name}", getattr(update, name) or {"const": None})
               for name in ("email", "phone", "given_name", "family_name")],
            doc.lookups,
        ) if update else None
        if "update_contact" in self.events.values() and update is None:
            raise MappingError("events use update_contact but the document has no contact_update section")
        unknown_masters = {v for v in self._master.values()} - {doc.source, "streak", "both"}
        if unknown_masters:
            raise MappingError(f"master: values must be {doc.source!r}, 'streak' or 'both', got {unknown_masters}")

        org = doc.organization
        self._org = compile_rules(
            [("organization.name", required(org.name))]
            + ([("organization.domain", org.domain)] if org.domain else []),
            doc.lookups,
        ) if org else None
        self._org_when = compile_condition(org.when, "organization.when") if org and org.when else None
        self._public_domains = frozenset(d.lower() for d in org.public_domains) if org else frozenset()
        self._org_match_on = tuple(dict.fromkeys(org.match_on)) if org else ()
        if org and not self._org_match_on:
            raise MappingError("organization.match_on: name at least one of name, domain")
        self._create_when: Predicate | None = (
            compile_condition(doc.create_when, "create_when") if doc.create_when else None
        )
        change = doc.stage_change
        if doc.order_key_field in change.fields:
            raise MappingError("stage_change.fields: the order key field cannot change")
        self._change_field_keys = tuple(change.fields)
        self._stage_change = compile_rules(
            [("order_key", required(doc.order_key)), ("stage_change.stage", required(change.stage))]
            + [(f"stage_change.fields.{key}", spec) for key, spec in change.fields.items()]
            + [(f"stage_change.timeline[{index}]", spec) for index, spec in enumerate(change.timeline)],
            doc.lookups,
        )

    def for_pipeline(self, pipeline: PipelineSchema) -> DealMapping:
        """This document with its names resolved from ``pipeline`` (a live definition): itself when it names
        nothing; compiled once per definition read (MappingError naming what the pipeline lacks)."""
        if not self.names_used:
            return self
        with self._for_pipeline_lock:
            cached = self._for_pipeline
            if cached is not None and cached[0] is pipeline:
                return cached[1]
            resolved = compile_deal_mapping(self.source_document, name=self.name, pipeline=pipeline)
            self._for_pipeline = (pipeline, resolved)
            return resolved

    def _compile_addresses(self, doc: DealMappingDoc) -> None:
        """Each address's parts in one rule group; which box field each part goes to, each field set once."""
        parts = [(name, part) for name, address in doc.addresses.items() for part in ADDRESS_PARTS
                 if getattr(address, part) is not None]
        self._address_parts = tuple(parts)
        self._addresses = compile_rules(
            [(f"addresses.{name}.{part}", getattr(doc.addresses[name], part)) for name, part in parts], doc.lookups)
        self._address_fields: dict[tuple[str, str], str] = {}
        amount = doc.box.amount
        taken = set(doc.box.fields) | ({amount.field, amount.currency_field} if amount else set())
        for name, address in doc.addresses.items():
            for part, key in address.fields.items():
                if getattr(address, part) is None:
                    raise MappingError(f"addresses.{name}.fields.{part}: the address has no {part} rule")
                if key in taken:
                    raise MappingError(f"addresses.{name}.fields.{part}: field {key!r} is set twice")
                taken.add(key)
                self._address_fields[(name, part)] = key
        named = doc.organization.addresses if doc.organization else ()
        unknown = [name for name in named if name not in doc.addresses]
        if unknown:
            raise MappingError(f"organization.addresses: {unknown} are not among addresses ({sorted(doc.addresses)})")
        self._org_addresses = tuple(dict.fromkeys(named))

    def _compile_assignment(self, doc: DealMappingDoc) -> None:
        """Rules in order, each a (condition, rep or team); every team named must exist and have members."""
        assignment = doc.assignment
        self._assign: list[tuple[Predicate | None, str | None, tuple[str, ...]]] = []
        self._spread_by = None
        if assignment is None:
            return
        for team, members in assignment.teams.items():
            if not members or len(set(members)) != len(members):
                raise MappingError(f"assignment.teams.{team}: name each member once, at least one")
        rules = [(f"assignment.rules[{i}]", rule) for i, rule in enumerate(assignment.rules)]
        for where, rule in [*rules, ("assignment.fallback", assignment.fallback)]:
            if (rule.rep is None) == (rule.team is None):
                raise MappingError(f"{where}: name either a rep or a team")
            if rule.team is not None and rule.team not in assignment.teams:
                raise MappingError(f"{where}: team {rule.team!r} is not among assignment.teams "
                                   f"({sorted(assignment.teams)})")
            if rule.rep is not None and "@" not in rule.rep:
                raise MappingError(f"{where}: rep {rule.rep!r} is not an e-mail address")
            when = compile_condition(rule.when, f"{where}.when") if rule.when else None
            team_members = tuple(assignment.teams[rule.team]) if rule.team else ()
            self._assign.append((when, rule.rep, team_members))
        if assignment.fallback.when is not None:
            raise MappingError("assignment.fallback: the fallback applies when no rule does; it takes no 'when'")
        if assignment.spread_by is not None:
            self._spread_by = compile_rules([("assignment.spread_by", assignment.spread_by)], doc.lookups)

    def plan_assignee(self, data: Mapping[str, Any], order_key: str) -> str | None:
        """The rep of the first rule that holds; within a team, the member a stable hash of the order picks
        (the same on every redelivery and every worker; spread evenly over many orders)."""
        for when, rep, members in self._assign:
            if when is not None and not when(data):
                continue
            if rep is not None:
                return rep
            spread = self._spread_by(data)[0] if self._spread_by else None
            seed = str(order_key if spread is None else spread).encode()
            return members[int.from_bytes(sha256(seed).digest()[:8], "big") % len(members)]
        return None

    def plan_addresses(self, data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        """The order's addresses, part by part (trimmed; empty parts and empty addresses left out)."""
        addresses: dict[str, dict[str, str]] = {}
        for (name, part), value in zip(self._address_parts, self._addresses(data), strict=True):
            text = "" if value is None else str(value).strip()
            if text:
                addresses.setdefault(name, {})[part] = text
        return addresses

    def plan_deal(self, data: Mapping[str, Any]) -> DealPlan:
        values = self._deal(data)
        at = (*values, None)  # at[i]: the optional rule i's value; an absent rule's index is -1, this None

        fields = {}
        for key, field_value in zip(self._field_keys, values[self._fields_at:], strict=True):
            if field_value is not None and field_value != "":
                fields[key] = field_value
        create = self._create_when is None or self._create_when(data)
        if self._amount is not None and create:
            if self._amount.rate is not None and at[self._i_rate] is None:
                raise PermanentError("box.amount.rate: required value is missing", reason="missing_required_field")
            fields[self._amount.field], fields[self._amount.currency_field] = self._shown_amount(
                values[self._i_total], at[self._i_rate], values[self._i_currency])
        addresses = self.plan_addresses(data)
        for (name, part), key in self._address_fields.items():
            if (value := addresses.get(name, {}).get(part)) is not None:
                fields[key] = value
        assignee = self.plan_assignee(data, str(values[0])) if create else None
        task = None
        if self._i_text >= 0:
            due = values[self._i_due]
            task = TaskPlan(text=values[self._i_text],
                            due_date_ms=due if isinstance(due, int) else int(due.timestamp() * 1000),
                            assignee_email=at[self._i_assignee] or assignee)  # the task's own rule, else the rep
        return DealPlan(
            order_key=str(values[0]),
            create=create,
            box_name=values[1],
            stage_key=str(values[2]),
            notes=at[self._i_notes],
            fields=fields,
            contact=ContactPlan(email=values[3], given_name=at[self._i_given], family_name=at[self._i_family],
                                phone=at[self._i_phone],
                                customer_key=None if (key := at[self._i_customer]) is None else str(key),
                                fields=self._contact_fields(data)),
            organization=self._plan_organization(data, addresses),
            task=task,
            comment=at[self._i_comment],
            addresses=addresses,
            assignee=assignee,
        )

    def _shown_amount(self, total: Any, rate: Any, currency: Any) -> tuple[int | float, str]:
        """The amount in ``currency``, rounded half up to that currency's minor unit, and its label."""
        code = str(currency).strip().upper()
        try:
            factor = _decimal(rate) if rate is not None else _ONE
            amount = _decimal(total) * factor
        except InvalidOperation:
            raise PermanentError(f"box.amount: {total!r} times {rate!r} is not an amount",
                                 reason="invalid_source_value") from None
        if not amount.is_finite() or factor <= 0:
            raise PermanentError(f"box.amount: {total!r} at rate {rate!r} is not an amount",
                                 reason="invalid_source_value")
        shown = amount.quantize(_QUANTA.get(code, _CENT), rounding=ROUND_HALF_UP)
        return (int(shown) if shown == shown.to_integral_value() else float(shown)), code

    def source_may_write(self, field: str) -> bool:
        """Master-data rule: may this flow's source overwrite ``field`` (email, phone, name, status)?"""
        return self._master.get(field, "both") in (self.source, "both")  # type: ignore[call-overload]

    def plan_contact_update(self, data: Mapping[str, Any]) -> ContactUpdatePlan:
        if self._contact_update is None:
            raise MappingError("this mapping has no contact_update section")
        key, email, phone, given, family = self._contact_update(data)
        return ContactUpdatePlan(customer_key=str(key), email=email, phone=phone, given_name=given,
                                 family_name=family)

    def stage_rank(self, stage_key: str) -> int | None:
        """The stage's place in the document's lifecycle, if it declares one."""
        lifecycle = self.doc.stage_change.lifecycle
        return lifecycle.index(stage_key) if stage_key in lifecycle else None

    def plan_stage_change(self, data: Mapping[str, Any]) -> StageChangePlan:
        order_key, stage, *values = self._stage_change(data)
        count = len(self._change_field_keys)
        fields = {key: value for key, value in zip(self._change_field_keys, values[:count], strict=True)
                  if value is not None and value != ""}  # a value the event lacks leaves the field alone
        line = " · ".join(text for part in values[count:] if part is not None and (text := str(part).strip()))
        return StageChangePlan(order_key=str(order_key), stage_key=str(stage), fields=fields, timeline=line or None)

    def _plan_organization(self, data: Mapping[str, Any],
                           addresses: Mapping[str, Mapping[str, str]]) -> OrganizationPlan | None:
        if self._org is None or (self._org_when is not None and not self._org_when(data)):
            return None
        name, *rest = self._org(data)
        domain = rest[0] if rest else None
        if domain and domain.lower() in self._public_domains:
            domain = None
        lines = (one_line_address(addresses[n]) for n in self._org_addresses if n in addresses)
        return OrganizationPlan(name=name, domain=domain, match_on=self._org_match_on,
                                addresses=tuple(dict.fromkeys(lines)),  # billing = shipping: once
                                fields=self._org_fields(data) if self._org_fields else {})


def _compile_properties(where: str, rules: Mapping[str, Rule], allowed: Mapping[str, type],
                        lookups: Any) -> Callable[[Any], dict[str, Any]]:
    """Rules for a contact's or organization's properties: only names Streak writes, values as it wants them
    (text; a list property gets the value as its one entry); a value the event lacks is left out."""
    unknown = sorted(set(rules) - set(allowed))
    if unknown:
        raise MappingError(f"{where}: Streak has no writable property {', '.join(map(repr, unknown))} "
                           f"(it has {', '.join(sorted(allowed))})")
    names = tuple(rules)
    values = compile_rules([(f"{where}.{name}", rules[name]) for name in names], lookups)

    def plan(data: Any) -> dict[str, Any]:
        planned: dict[str, Any] = {}
        for name, value in zip(names, values(data), strict=True):
            text = "" if value is None else str(value).strip()
            if text:
                planned[name] = [text] if allowed[name] is list else text
        return planned

    return plan


def one_line_address(parts: Mapping[str, str]) -> str:
    """"1 Main St, Springfield, IL 62701, US": how an address reads on one line (Streak's form)."""
    region = " ".join(p for p in (parts.get("state"), parts.get("postal_code")) if p)
    return ", ".join(p for p in (parts.get("street"), parts.get("street2"), parts.get("city"), region,
                                 parts.get("country")) if p)


def parse_deal_mapping(text: str, *, name: str = "<document>", pipeline: PipelineSchema | None = None) -> DealMapping:
    """Validate and compile a document; names of stages, fields and dropdown items resolved from ``pipeline``
    (default: the copy the document names in ``pipeline:``, else it must use keys)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{name}: not valid YAML: {exc}") from None
    return compile_deal_mapping(document, name=name, pipeline=pipeline)


def compile_deal_mapping(document: Any, *, name: str, pipeline: PipelineSchema | None = None) -> DealMapping:
    try:
        doc = DealMappingDoc.model_validate(document)
        if pipeline is None and doc.pipeline is not None:
            pipeline = pipeline_copy(doc.pipeline)
        if pipeline is None:
            _keys_only(doc)
        resolved, names_used = resolve_names(document, pipeline) if pipeline is not None else (document, False)
        mapping = DealMapping(DealMappingDoc.model_validate(resolved) if names_used else doc)
        mapping.source_document, mapping.names_used, mapping.name = document, names_used, name
        return mapping
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise MappingError(f"{name}: {problems}") from None
    except MappingError as exc:
        raise MappingError(f"{name}: {exc}") from None


def _keys_only(doc: DealMappingDoc) -> None:
    """Without a copy of the pipeline nothing can check a name when the document loads: fields and lifecycle
    stages must be Streak's keys (digits) then."""
    refs = [("order_key_field", doc.order_key_field), *((f"box.fields.{k}", k) for k in doc.box.fields),
            *((f"stage_change.fields.{k}", k) for k in doc.stage_change.fields),
            *((f"stage_change.lifecycle[{i}]", k) for i, k in enumerate(doc.stage_change.lifecycle)),
            *((f"addresses.{n}.fields.{p}", k) for n, a in doc.addresses.items() for p, k in a.fields.items())]
    if (amount := doc.box.amount) is not None:
        refs += [("box.amount.field", amount.field), ("box.amount.currency_field", amount.currency_field)]
    named = [f"{where} ({ref!r})" for where, ref in refs if not ref.isdigit()]
    if named:
        raise MappingError(f"names {', '.join(named)}: a document that names what the pipeline holds says where "
                           f"its definition is (pipeline: a copy of GET /api/v1/pipelines/{{key}}), else uses keys")


def pipeline_copy(file_name: str) -> PipelineSchema:
    """The pipeline definition a document names (``pipeline:``), as Streak's API returns it."""
    path = mapping_path(file_name)
    try:
        return PipelineSchema.from_api(json.loads(path.read_text()))
    except FileNotFoundError:
        raise MappingError(f"pipeline: {file_name!r} not found beside the mapping documents") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MappingError(f"pipeline: {file_name!r} is not a pipeline definition ({exc})") from None


@cache
def load_deal_mapping(file_name: str) -> DealMapping:
    """Load a flow's mapping document once per process (cold start), not per record."""
    path = mapping_path(file_name)
    return parse_deal_mapping(path.read_text(), name=file_name)


def dry_run(mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """What an event becomes under a deal mapping, calling nobody: (action, plan)."""
    deals = load_deal_mapping(mapping_file)
    action = deals.events.get(event_type)
    plans = {"upsert_deal": deals.plan_deal, "move_stage": deals.plan_stage_change,
             "update_contact": deals.plan_contact_update}
    if action is None:
        raise MappingError(f"{mapping_file} does not handle event type {event_type!r}")
    return action, plans[action](data)
