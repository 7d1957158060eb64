"""Clarity eCommerce: orders and customers; Standard Webhooks, swept by a poll of the orders changed since the
last run; written back to by a two-way pair.

The registry entry (``switchyard.registry``); everything heavy is imported when first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.registry import (
    Adapters,
    ConnectionSpec,
    EchoRules,
    MappingSpec,
    Secret,
    SetupHooks,
    System,
    WebhookSource,
)

if TYPE_CHECKING:
    from pydantic import BaseModel


def settings() -> type[BaseModel]:
    from switchyard.systems.clarity.client import ClarityConnection

    return ClarityConnection


def client(secret: Secret, _connection: str, _adapters: Adapters) -> Any:
    from switchyard.systems.clarity.client import ClarityClient, ClarityConnection

    return ClarityClient(ClarityConnection.from_secret(dict(secret)))


def _event_models() -> Mapping[str, type]:
    from switchyard.systems.clarity import source

    return {"order.created": source.OrderCreated, "order.status_changed": source.OrderStatusChanged,
            "customer.created": source.CustomerCreated, "customer.updated": source.CustomerUpdated,
            "product.created": source.ProductCreated, "product.updated": source.ProductUpdated,
            "inventory.changed": source.InventoryChanged}


def poll_source(connection_secret: Secret) -> Any:
    """The sweep of ``switchyard.polling`` for one installation: orders changed since the last run."""
    from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
    from switchyard.systems.clarity.poller import ClaritySweep

    return ClaritySweep(ClarityClient(ClarityConnection.from_secret(dict(connection_secret))))


def _sweep_key(event_type: str, data: Mapping[str, Any]) -> str | None:
    from switchyard.systems.clarity.poller import sweep_key

    return sweep_key(event_type, data)


def _load_mapping(document: str) -> Any:
    from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping

    return load_clarity_sync_mapping(document)


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    from switchyard.systems.clarity.sync_mapping import dry_run

    return dry_run(document, event_type, data)


def _check(secret: Secret) -> str:
    """A real call: the OAuth token (or the API key) and a customer lookup by an id no one has, which Clarity
    answers 404 once it has accepted the credentials (401/403 otherwise)."""
    from switchyard.errors import PermanentError
    from switchyard.systems.clarity.client import ClarityClient, ClarityConnection

    shop = ClarityClient(ClarityConnection.from_secret(dict(secret)))
    try:
        shop.get_customer("switchyard-setup-check")
    except PermanentError as exc:
        if exc.target_status != 404:
            raise
    finally:
        shop.close()
    return "credentials accepted (customer lookup answered)"


SYSTEM = System(
    name="clarity",
    connection=ConnectionSpec(
        # API key, or OAuth2 client credentials (token_url defaults to <base_url>/oauth/token)
        secret_template={"base_url": "", "api_key": "", "client_id": "", "client_secret": "", "token_url": ""},
        settings=settings,
        client=client,
    ),
    webhook=WebhookSource(event_models=_event_models, sweep_key=_sweep_key),
    mapping=MappingSpec(load=_load_mapping, dry_run=_dry_run),
    echoes=EchoRules(
        synced_attributes={"order": ("status",), "customer": ("firstName", "lastName", "email", "phone")},
        subjects={"order.status_changed": ("order", "orderId"), "customer.updated": ("customer", "customerId")},
    ),
    setup=SetupHooks(check=_check),
    poll_source=poll_source,
)
