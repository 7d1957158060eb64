"""Mapping documents for flows whose target is Clarity eCommerce (write-back from a CRM).

``update_order_status``: the CRM object (e.g. a Streak box) names a Clarity order and a status;
``update_customer``: the CRM contact's fields become the linked Clarity customer's. Master-data
rules say which fields this direction may overwrite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError
from switchyard.mapping.conditions import compile_condition
from switchyard.mapping.rules import compile_rules

Rule = dict[str, Any]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderStatusDoc(_Doc):
    when: dict[str, Any] | None = None
    order_id: Rule
    status: Rule
    note: Rule | None = None


class CustomerDoc(_Doc):
    email: Rule | None = None
    phone: Rule | None = None
    first_name: Rule | None = None
    last_name: Rule | None = None


class SyncDoc(_Doc):
    """The two-way pair's tie-breaks (``switchyard.sync``)."""

    tie_winner: str = "clarity"  # equal change times of one field in both systems: this system's change wins
    lifecycle: dict[Literal["status"], tuple[str, ...]] = Field(default_factory=dict)  # pair values, in order


class ClaritySyncDoc(_Doc):
    flow: str
    target: Literal["clarity"]
    source: str
    description: str = ""
    master: dict[Literal["email", "phone", "name", "status"], str] = Field(default_factory=dict)
    events: dict[str, Literal["update_order_status", "update_customer"]]
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    order_status: OrderStatusDoc | None = None
    customer: CustomerDoc | None = None
    sync: SyncDoc = SyncDoc()


@dataclass(frozen=True, slots=True)
class OrderStatusPlan:
    applies: bool  # False: not one of this target's orders (the `when` condition)
    order_id: str | None
    status: str | None
    note: str | None


# logical customer field -> (master-data field, Clarity attribute)
CUSTOMER_FIELDS = {"email": ("email", "email"), "phone": ("phone", "phone"),
                   "first_name": ("name", "firstName"), "last_name": ("name", "lastName")}


class ClaritySyncMapping:
    def __init__(self, doc: ClaritySyncDoc) -> None:
        self.doc = doc
        self.events = dict(doc.events)
        self.source = doc.source
        self._master = dict(doc.master)
        bad = set(self._master.values()) - {doc.source, "clarity", "both"}
        if bad:
            raise MappingError(f"master: values must be {doc.source!r}, 'clarity' or 'both', got {bad}")
        if doc.sync.tie_winner not in (doc.source, "clarity"):
            raise MappingError(f"sync.tie_winner must be {doc.source!r} or 'clarity'")
        status = doc.order_status
        if "update_order_status" in self.events.values() and status is None:
            raise MappingError("events use update_order_status but there is no order_status section")
        if "update_customer" in self.events.values() and doc.customer is None:
            raise MappingError("events use update_customer but there is no customer section")
        self._when = compile_condition(status.when, "order_status.when") if status and status.when else None
        # the lookup the status rule reads (CRM stage -> Clarity status), for writing a pair's winning stage
        self._status_lookup = next((doc.lookups.get(t["lookup"], {}) for t in (status.status.get("transforms") or ())
                                    if isinstance(t, dict) and "lookup" in t), {}) if status else {}
        self._status = compile_rules(
            [("order_status.order_id", {**status.order_id, "required": True}),
             # no status (a stage its lookup maps to none): the order is left as it is
             ("order_status.status", status.status),
             ("order_status.note", status.note or {"const": None})],
            doc.lookups,
        ) if status else None
        customer = doc.customer
        self._customer_fields = tuple(name for name in CUSTOMER_FIELDS if customer and getattr(customer, name))
        self._customer = compile_rules(
            [(f"customer.{name}", getattr(customer, name)) for name in self._customer_fields], doc.lookups
        ) if customer and self._customer_fields else None

    def source_may_write(self, field: str) -> bool:
        return self._master.get(field, "both") in (self.source, "both")  # type: ignore[call-overload]

    def plan_order_status(self, data: Mapping[str, Any]) -> OrderStatusPlan:
        assert self._status is not None
        if self._when is not None and not self._when(data):
            return OrderStatusPlan(applies=False, order_id=None, status=None, note=None)
        order_id, status, note = self._status(data)
        if status is None:
            return OrderStatusPlan(applies=False, order_id=str(order_id), status=None, note=None)
        return OrderStatusPlan(applies=True, order_id=str(order_id), status=str(status), note=note)

    def master_of(self, field: str) -> str | None:
        """The system that owns ``field`` (email, phone, name, status); None: the latest change wins."""
        master = self._master.get(field, "both")  # type: ignore[call-overload]
        return None if master == "both" else str(master)

    def status_for_stage(self, stage: str) -> str:
        status = self._status_lookup.get(stage)
        if status is None:
            raise MappingError(f"order_status.status: no Clarity status for {stage!r}")
        return str(status)

    def customer_values(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Logical customer field (email, phone, first_name, last_name) -> the CRM contact's value, normalised
        the same way as the other direction's, so both systems' values compare."""
        if self._customer is None:
            return {}
        return dict(zip(self._customer_fields, self._customer(data), strict=True))

    def plan_customer(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Clarity attribute -> value, for the fields this direction may write (master-data rules)."""
        if self._customer is None:
            return {}
        changes = {}
        for name, value in zip(self._customer_fields, self._customer(data), strict=True):
            master_field, attribute = CUSTOMER_FIELDS[name]
            if self.source_may_write(master_field):
                changes[attribute] = value
        return changes


def parse_clarity_sync_mapping(text: str, *, name: str = "<document>") -> ClaritySyncMapping:
    try:
        return ClaritySyncMapping(ClaritySyncDoc.model_validate(yaml.safe_load(text)))
    except yaml.YAMLError as exc:
        raise MappingError(f"{name}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise MappingError(f"{name}: {problems}") from None
    except MappingError as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_clarity_sync_mapping(file_name: str) -> ClaritySyncMapping:
    return parse_clarity_sync_mapping(mapping_path(file_name).read_text(), name=file_name)


def dry_run(mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """What an event becomes under a Clarity sync mapping, calling nobody: (action, plan)."""
    sync = load_clarity_sync_mapping(mapping_file)
    action = sync.events.get(event_type)
    plans = {"update_order_status": sync.plan_order_status, "update_customer": sync.plan_customer}
    if action is None:
        raise MappingError(f"{mapping_file} does not handle event type {event_type!r}")
    return action, plans[action](data)
