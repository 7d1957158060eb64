"""Mapping documents for flows whose target is a Streak pipeline of deals (boxes).

The document (``config/mappings/<flow>.yaml``) says, for one source's order events: the key that
finds the box again, when to create one, the contact and organization to link, the box's name,
stage and custom fields, a follow-up task, and how a status change moves the stage. ``compile``
turns it into a ``DealMapping`` whose ``plan_deal`` / ``plan_stage_change`` produce plain plans
that ``switchyard.targets.streak_deals`` carries out. ``switchyard dry-run`` prints these plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError
from switchyard.mapping.conditions import Predicate, compile_condition
from switchyard.mapping.rules import Getter, compile_rule

Rule = dict[str, Any]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactDoc(_Doc):
    email: Rule
    given_name: Rule | None = None
    family_name: Rule | None = None


class OrganizationDoc(_Doc):
    when: dict[str, Any] | None = None
    name: Rule
    domain: Rule | None = None
    # e-mail domains that identify no company (find the organization by name instead)
    public_domains: tuple[str, ...] = ()


class BoxDoc(_Doc):
    name: Rule
    stage: Rule
    notes: Rule | None = None
    fields: dict[str, Rule] = Field(default_factory=dict)  # Streak field key -> rule


class TaskDoc(_Doc):
    text: Rule
    due: Rule  # a date-time; the connector sends epoch ms
    assignee: Rule | None = None


class StageChangeDoc(_Doc):
    stage: Rule


class DealMappingDoc(_Doc):
    flow: str
    target: Literal["streak"]
    description: str = ""
    events: dict[str, Literal["upsert_deal", "move_stage"]]
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    order_key: Rule
    order_key_field: str  # the TEXT_INPUT field holding order_key, searched to find the box again
    change_time: Rule | None = None  # per-entity version; default: the event's timestamp
    create_when: dict[str, Any] | None = None
    contact: ContactDoc
    organization: OrganizationDoc | None = None
    box: BoxDoc
    task: TaskDoc | None = None
    stage_change: StageChangeDoc


# --- plans ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactPlan:
    email: str
    given_name: str | None
    family_name: str | None


@dataclass(frozen=True, slots=True)
class OrganizationPlan:
    name: str
    domain: str | None  # None: find by name


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


@dataclass(frozen=True, slots=True)
class StageChangePlan:
    order_key: str
    stage_key: str


# --- compiled mapping -------------------------------------------------------------------------


class DealMapping:
    """A validated, compiled deal mapping; built once per cold start."""

    def __init__(self, doc: DealMappingDoc) -> None:
        self.doc = doc
        lk = doc.lookups

        def rule(spec: Rule | None, where: str, *, required: bool = False) -> Getter | None:
            if spec is None:
                return None
            return compile_rule({**spec, "required": spec.get("required", required)}, lk, where)

        self.events = dict(doc.events)
        self.order_key_field = doc.order_key_field
        self._order_key = rule(doc.order_key, "order_key", required=True)
        self._create_when: Predicate | None = (
            compile_condition(doc.create_when, "create_when") if doc.create_when else None
        )
        self._email = rule(doc.contact.email, "contact.email", required=True)
        self._given = rule(doc.contact.given_name, "contact.given_name")
        self._family = rule(doc.contact.family_name, "contact.family_name")
        org = doc.organization
        self._org_when = compile_condition(org.when, "organization.when") if org and org.when else None
        self._org_name = rule(org.name, "organization.name", required=True) if org else None
        self._org_domain = rule(org.domain, "organization.domain") if org else None
        self._public_domains = frozenset(d.lower() for d in org.public_domains) if org else frozenset()
        self._box_name = rule(doc.box.name, "box.name", required=True)
        self._stage = rule(doc.box.stage, "box.stage", required=True)
        self._notes = rule(doc.box.notes, "box.notes")
        self._fields = tuple((key, rule(spec, f"box.fields.{key}")) for key, spec in doc.box.fields.items())
        task = doc.task
        self._task_text = rule(task.text, "task.text", required=True) if task else None
        self._task_due = rule(task.due, "task.due", required=True) if task else None
        self._task_assignee = rule(task.assignee, "task.assignee") if task else None
        self._moved_stage = rule(doc.stage_change.stage, "stage_change.stage", required=True)
        if self.order_key_field not in doc.box.fields:
            raise MappingError("order_key_field must be one of box.fields (it stores the order key)")

    def plan_deal(self, data: Mapping[str, Any]) -> DealPlan:
        fields = {}
        for key, get in self._fields:
            value = get(data)
            if value is not None and value != "":
                fields[key] = value
        return DealPlan(
            order_key=str(self._order_key(data)),
            create=self._create_when is None or self._create_when(data),
            box_name=self._box_name(data),
            stage_key=str(self._stage(data)),
            notes=self._notes(data) if self._notes else None,
            fields=fields,
            contact=self._plan_contact(data),
            organization=self._plan_organization(data),
            task=self._plan_task(data),
        )

    def plan_stage_change(self, data: Mapping[str, Any]) -> StageChangePlan:
        return StageChangePlan(order_key=str(self._order_key(data)), stage_key=str(self._moved_stage(data)))

    def _plan_contact(self, data: Mapping[str, Any]) -> ContactPlan:
        return ContactPlan(
            email=self._email(data),
            given_name=self._given(data) if self._given else None,
            family_name=self._family(data) if self._family else None,
        )

    def _plan_organization(self, data: Mapping[str, Any]) -> OrganizationPlan | None:
        if self._org_name is None or (self._org_when is not None and not self._org_when(data)):
            return None
        domain = self._org_domain(data) if self._org_domain else None
        if domain and domain.lower() in self._public_domains:
            domain = None
        return OrganizationPlan(name=self._org_name(data), domain=domain)

    def _plan_task(self, data: Mapping[str, Any]) -> TaskPlan | None:
        if self._task_text is None or self._task_due is None:
            return None
        due = self._task_due(data)
        return TaskPlan(
            text=self._task_text(data),
            due_date_ms=due if isinstance(due, int) else int(due.timestamp() * 1000),
            assignee_email=self._task_assignee(data) if self._task_assignee else None,
        )


def parse_deal_mapping(text: str, *, name: str = "<document>") -> DealMapping:
    try:
        document = yaml.safe_load(text)
        return DealMapping(DealMappingDoc.model_validate(document))
    except yaml.YAMLError as exc:
        raise MappingError(f"{name}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise MappingError(f"{name}: {problems}") from None
    except MappingError as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_deal_mapping(file_name: str) -> DealMapping:
    """Load a flow's mapping document once per process (cold start), not per record."""
    path = mapping_path(file_name)
    return parse_deal_mapping(path.read_text(), name=file_name)
