"""Salesforce: the REST client (client.py), Change Data Capture events arriving through Event Relay and
EventBridge (source.py), and the mapping of Clarity's records into Salesforce (mapping.py, target.py).

The registry entry (``switchyard.registry``); everything heavy is imported when first used. The flows of the
Clarity ⇄ Salesforce pair are built by ``switchyard.pairs.clarity_salesforce``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.registry import Adapters, ConnectionSpec, EchoRules, MappingSpec, Secret, System, WebhookSource

if TYPE_CHECKING:
    from pydantic import BaseModel


def _settings() -> type[BaseModel]:
    from switchyard.systems.salesforce.client import SalesforceConnection

    return SalesforceConnection


def call_options_client(connection: str) -> str:
    """The ``Sforce-Call-Options`` client id of every write through a connection: change events that carry it
    in ``changeOrigin`` are Switchyard's own writes coming back."""
    return f"switchyard.{connection}"


def _client(secret: Secret, connection: str, _adapters: Adapters) -> Any:
    from switchyard.systems.salesforce.client import SalesforceClient, SalesforceConnection

    return SalesforceClient(SalesforceConnection.from_secret(secret),
                            call_options_client=call_options_client(connection), connection_name=connection)


def _event_models() -> Mapping[str, type]:
    from switchyard.systems.salesforce import source

    return {"ContactChangeEvent": source.ContactChangeEvent, "AccountChangeEvent": source.AccountChangeEvent}


def _load_mapping(document: str) -> Any:
    from switchyard.systems.salesforce.mapping import load_salesforce_mapping

    return load_salesforce_mapping(document)


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    from dataclasses import asdict, is_dataclass

    from switchyard.connectors.http import jsonable
    from switchyard.systems.salesforce.mapping import load_salesforce_mapping

    action, plan = load_salesforce_mapping(document).plan(event_type, data)
    return action, jsonable(asdict(plan) if is_dataclass(plan) and not isinstance(plan, type) else plan)


SYSTEM = System(
    name="salesforce",
    connection=ConnectionSpec(
        # a connected (or external client) app with the client-credentials flow and a Run As user; base_url is
        # the org's My Domain URL (the flow is refused on login.salesforce.com); api_version optional (v62.0)
        secret_template={"base_url": "", "client_id": "", "client_secret": ""},
        settings=_settings,
        client=_client,
    ),
    # Change Data Capture through an EventBridge partner bus (catalog delivery: eventbridge), no HTTP route
    webhook=WebhookSource(event_models=_event_models),
    mapping=MappingSpec(load=_load_mapping, dry_run=_dry_run),
    # its own writes come back as change events recognised by changeOrigin, not by fingerprints; a flow into
    # it still keeps an echo ledger, so the reverse flow's writes into the other system are recognised there
    echoes=EchoRules(synced_attributes={}, subjects={}),
)
