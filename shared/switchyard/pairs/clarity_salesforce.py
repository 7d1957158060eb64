"""Salesforce → Clarity eCommerce: a rep's change of a Contact (Change Data Capture) reaches the Clarity
customer it was made from (salesforce-to-clarity.yaml). The other direction is
``switchyard.systems.salesforce.target`` (clarity-to-salesforce.yaml); both documents declare the same
master of every field.

Per change type: CREATE and UPDATE carry the fields (UPDATE only the changed ones: only those are
written); DELETE is recorded and not applied (Clarity keeps its customers); a gap event carries no
fields, so each record is read by id and all its mapped fields are written; one event may name several
records (the same change in one transaction): each is applied. A change whose ``changeOrigin`` names our
own connector (``Sforce-Call-Options: client=…``) is our write coming back and is dropped as an echo.
Fields whose master is Clarity are not written. Writes into Clarity are recorded in the echo ledger first,
so the ``customer.updated`` webhook they cause is recognised by the other flow and not sent back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.echoes import EchoLedger, recorded_echo
from switchyard.entity_state import EntityState
from switchyard.errors import MappingError
from switchyard.events import FlowEvent
from switchyard.registry import FlowContext, MappingSpec, Pair
from switchyard.systems.salesforce import call_options_client
from switchyard.systems.salesforce.source import GAP_TYPES, change_header, origin_client, record_fields
from switchyard.targets import DeliveryResult

Master = Literal["clarity", "salesforce", "both"]
SIDE = "salesforce"
CUSTOMER_ATTRIBUTES = ("firstName", "lastName", "email", "phone", "company")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChangeMappingDoc(_Doc):
    flow: str
    target: Literal["clarity"]
    source: Literal["salesforce"]
    description: str = ""
    key_field: str = "ExternalID__c"  # holds the Clarity customerId on the Contact
    master: dict[str, Master] = Field(default_factory=dict)
    events: dict[str, Literal["update_customer"]]
    # object -> Salesforce field -> Clarity customer attribute
    fields: dict[str, dict[str, Literal["firstName", "lastName", "email", "phone", "company"]]]


class ChangeMapping:
    def __init__(self, doc: ChangeMappingDoc) -> None:
        self.doc = doc
        self.events = dict(doc.events)

    def master(self, sobject: str, name: str) -> str:
        return self.doc.master.get(f"{sobject}.{name}", "both")

    def changes(self, sobject: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The Clarity attributes ``values`` set, and the mapped fields left out because Clarity owns them."""
        mapped = self.doc.fields.get(sobject, {})
        changes: dict[str, Any] = {}
        not_master = []
        for name, value in values.items():
            if name not in mapped:
                continue
            if self.master(sobject, name) not in (SIDE, "both"):
                not_master.append(name)
                continue
            changes[mapped[name]] = value
        return changes, not_master


    def dry_run(self, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
        """What a change event would write into Clarity, without reading Salesforce (a gap event's fields
        and a key the event does not carry are read by id when delivered)."""
        action = self.events.get(event_type)
        if action is None:
            raise MappingError(f"{self.doc.flow} does not handle event type {event_type!r}")
        header = change_header(data)
        fields = record_fields(data)
        if header.changeType == "UPDATE":
            fields = {name: fields.get(name) for name in header.changedFields}
        changes, not_master = self.changes(header.entityName, fields)
        return action, {"change_type": header.changeType, "records": header.recordIds,
                        "customer": fields.get(self.doc.key_field, f"<{self.doc.key_field} of each record>"),
                        "changes": changes, "not_master": not_master,
                        "reads_salesforce": header.changeType in GAP_TYPES or self.doc.key_field not in fields}


def parse_change_mapping(text: str, *, name: str) -> ChangeMapping:
    try:
        return ChangeMapping(ChangeMappingDoc.model_validate(yaml.safe_load(text)))
    except (yaml.YAMLError, ValidationError) as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_change_mapping(file_name: str) -> ChangeMapping:
    return parse_change_mapping(mapping_path(file_name).read_text(), name=file_name)


class ClarityCustomers(Protocol):
    def get_customer(self, customer_id: str) -> dict[str, Any]: ...
    def update_customer(self, customer_id: str, changes: dict[str, Any], *, version: int | None = None) -> Any: ...


class SalesforceRecords(Protocol):
    def get(self, sobject: str, record_id: str, fields: Any = None) -> dict[str, Any] | None: ...


class SalesforceToClarityTarget:
    def __init__(self, mapping: ChangeMapping, salesforce: SalesforceRecords, clarity: ClarityCustomers,
                 state: EntityState, echoes: EchoLedger, *, our_client: str) -> None:
        self.mapping = mapping
        self.salesforce = salesforce
        self.clarity = clarity
        self.state = state
        self.echoes = echoes
        self.our_client = our_client

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        header = change_header(event.data)
        sobject = header.entityName
        if origin_client(header) == self.our_client:
            return DeliveryResult("echo", {"entity": sobject, "records": header.recordIds})
        if header.changeType in ("DELETE", "GAP_DELETE"):
            return DeliveryResult("filtered", {"reason": "deleted in Salesforce: Clarity keeps its customers",
                                               "records": header.recordIds})
        if sobject not in self.mapping.doc.fields:
            return DeliveryResult("filtered", {"reason": f"no fields of {sobject} are synced"})
        change_time = (datetime.fromtimestamp(header.commitTimestamp / 1000, tz=UTC) if header.commitTimestamp
                       else event.timestamp)
        gap = header.changeType in GAP_TYPES
        fields = record_fields(event.data)
        if header.changeType == "UPDATE":  # only what changed (a field set to null is among changedFields)
            fields = {name: fields.get(name) for name in header.changedFields}
        outcomes: dict[str, Any] = {}
        for record_id in header.recordIds:
            outcomes[record_id] = self._apply(sobject, record_id, fields, gap=gap, change_time=change_time,
                                              event_id=event.event_id)
        applied = [o for o in outcomes.values() if o["outcome"] == "updated"]
        outcome = "updated" if applied else next(iter(outcomes.values()))["outcome"]
        return DeliveryResult(outcome, {"change_type": header.changeType, "records": outcomes})

    def _apply(self, sobject: str, record_id: str, fields: Mapping[str, Any], *, gap: bool,
               change_time: datetime, event_id: str) -> dict[str, Any]:
        key_field = self.mapping.doc.key_field
        customer_id = None if gap else fields.get(key_field)
        if gap or customer_id is None:
            wanted = [key_field, *self.mapping.doc.fields[sobject]]
            record = self.salesforce.get(sobject, record_id, wanted)
            if record is None:
                return {"outcome": "filtered", "reason": "the record no longer exists"}
            customer_id = record.get(key_field)
            if gap:  # the event said nothing about which fields: take them all as they are now
                fields = {name: record.get(name) for name in self.mapping.doc.fields[sobject]}
        if not customer_id:
            return {"outcome": "filtered", "reason": f"no {key_field}: not a Clarity customer"}
        changes, not_master = self.mapping.changes(sobject, fields)
        if not changes:
            return {"outcome": "not_master" if not_master else "unchanged", "not_master": not_master}
        if not self.state.claim(f"salesforce>clarity#customer#{customer_id}", change_time, event_id):
            return {"outcome": "stale", "customer": customer_id}
        current = self.clarity.get_customer(str(customer_id))
        real = {k: v for k, v in changes.items() if current.get(k) != v}
        if not real:
            return {"outcome": "unchanged", "customer": customer_id}
        expected = {**current, **real}
        with recorded_echo(self.echoes, "clarity", "customer", str(customer_id), expected):
            self.clarity.update_customer(str(customer_id), real, version=current.get("version"))
        return {"outcome": "updated", "customer": customer_id, "fields": sorted(real), "not_master": not_master}


def target_factory(flow: Any, systems: Mapping[str, str], state: EntityState, echoes: EchoLedger, *,
                   usage_metric: Any = None, warn: Any = None) -> Any:
    """connection secrets → the target of a flow of this pair (compose calls it once per cold start; the
    mapping is loaded here, the clients per secret value)."""
    from switchyard.rate_limit import ReportedAllocation
    from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
    from switchyard.systems.salesforce.client import SalesforceClient, SalesforceConnection, UsageObserver
    from switchyard.systems.salesforce.mapping import load_salesforce_mapping
    from switchyard.systems.salesforce.target import SalesforceTarget

    salesforce_connection = systems["salesforce"]
    allocation = ReportedAllocation(f"salesforce#{salesforce_connection}")  # per process: see rate_limit

    def salesforce(secrets: Mapping[str, Any]) -> SalesforceClient:
        return SalesforceClient(SalesforceConnection.from_secret(secrets[salesforce_connection]),
                                call_options_client=call_options_client(salesforce_connection),
                                connection_name=salesforce_connection,
                                usage=UsageObserver(allocation, usage_metric))

    if flow.target == "salesforce":
        mapping = load_salesforce_mapping(flow.mapping_document)
        return lambda secrets: SalesforceTarget(mapping, salesforce(secrets), state, source=flow.source, warn=warn)
    changes = load_change_mapping(flow.mapping_document)
    clarity_connection = systems["clarity"]
    return lambda secrets: SalesforceToClarityTarget(
        changes, salesforce(secrets), ClarityClient(ClarityConnection.from_secret(secrets[clarity_connection])),
        state, echoes, our_client=call_options_client(salesforce_connection))


# --------------------------------------------------------------------------- the registry entry


def _usage_metric(used: int, limit: int) -> None:
    """``SalesforceApiUsedPercent``: how much of the org's 24-hour API allocation is used (Sforce-Limit-Info)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="SalesforceApiUsedPercent", unit=MetricUnit.Percent, value=100.0 * used / limit):
        pass


def _mapping_warning(flow: str) -> Any:
    def count(warning: str) -> None:
        """``MappingWarnings``: a record was written with a mapping's fallback (e.g. no last name)."""
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        with single_metric(name="MappingWarnings", unit=MetricUnit.Count, value=1) as metric:
            metric.add_dimension(name="flow", value=flow)
            metric.add_dimension(name="warning", value=warning)

    return count


def _target(context: FlowContext) -> Any:
    flow = context.flow
    systems = {context.catalog.connections[name].system: name for name in flow.connections}
    return target_factory(flow, systems, context.adapters.entity_state(), context.adapters.echo_ledger(),
                          usage_metric=_usage_metric, warn=_mapping_warning(flow.name))


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    return load_change_mapping(document).dry_run(event_type, data)


PAIR = Pair(systems=frozenset({"clarity", "salesforce"}), target=_target,
            # the salesforce-to-clarity documents (change events into Clarity); the other direction's are the
            # Salesforce system's own
            mapping=MappingSpec(load=load_change_mapping, dry_run=_dry_run), mapping_target="clarity")
