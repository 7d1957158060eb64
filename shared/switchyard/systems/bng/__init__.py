"""BNG ERP: customers, sales orders, shipments, products and stock (Switchyard's contract, docs/bng-contract.md).

The registry entry (``switchyard.registry``); everything heavy is imported when first used. BNG signs its
webhooks with Standard Webhooks (a core scheme). The order-to-cash steps, stock and product sync join BNG
with nopCommerce, so they live in ``switchyard.pairs.nopcommerce_bng``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.registry import Adapters, ConnectionSpec, Secret, SetupHooks, System, WebhookSource

if TYPE_CHECKING:
    from pydantic import BaseModel


def settings() -> type[BaseModel]:
    from switchyard.systems.bng.client import BngConnection

    return BngConnection


def client(secret: Secret, _connection: str, _adapters: Adapters) -> Any:
    from switchyard.systems.bng.client import BngClient, BngConnection

    return BngClient(BngConnection.from_secret(secret))


def _event_models() -> Mapping[str, type]:
    from switchyard.systems.bng import source

    return {"salesorder.status_changed": source.SalesOrderStatusChanged,
            "shipment.created": source.ShipmentCreated, "inventory.changed": source.InventoryChanged,
            "product.changed": source.ProductChanged}


def poll_source(connection_secret: Secret) -> Any:
    """The sweep of BNG's changed-since lists (shipments, products) for ``switchyard.polling``."""
    from switchyard.systems.bng.client import BngClient, BngConnection
    from switchyard.systems.bng.poller import BngChangeSource

    return BngChangeSource(BngClient(BngConnection.from_secret(connection_secret)))


def _check(secret: Secret) -> str:
    """A real read with the API key: a customer lookup by an external id no one uses (none found is fine)."""
    from switchyard.systems.bng.client import BngClient, BngConnection

    with BngClient(BngConnection.from_secret(secret)) as erp:
        erp.find_customer("switchyard-setup-check")
    return "customer lookup answered"


SYSTEM = System(
    name="bng",
    connection=ConnectionSpec(
        # API key; paths, the key's header and the external-id field names are optional (docs/bng-contract.md)
        secret_template={"base_url": "", "api_key": ""},
        settings=settings,
        client=client,
    ),
    webhook=WebhookSource(event_models=_event_models),
    setup=SetupHooks(check=_check),
    poll_source=poll_source,
)
