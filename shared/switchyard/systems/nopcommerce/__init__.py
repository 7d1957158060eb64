"""nopCommerce: orders (the Web API backend plugin polled, or Standard Webhooks from a sender), notes,
statuses and product stock.

The registry entry (``switchyard.registry``); everything heavy is imported when first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.registry import (
    Adapters,
    ConnectionSpec,
    FlowContext,
    MappingSpec,
    Secret,
    Secrets,
    SetupHooks,
    System,
    Target,
    WebhookSource,
)

if TYPE_CHECKING:
    from pydantic import BaseModel


def settings() -> type[BaseModel]:
    from switchyard.systems.nopcommerce.client import NopCommerceConnection

    return NopCommerceConnection


def client(secret: Secret, _connection: str, _adapters: Adapters) -> Any:
    from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection

    return NopCommerceClient(NopCommerceConnection.from_secret(secret))


def _event_models() -> Mapping[str, type]:
    from switchyard.systems.nopcommerce import source

    return {"order.placed": source.OrderPlaced, "order.status_changed": source.OrderStatusChanged,
            "order.paid": source.OrderPaid, "order.refunded": source.OrderRefunded,
            "product.updated": source.ProductUpdated}


def _target(context: FlowContext) -> Any:
    """Product stock from the flow's source system's items (the source's client, through a connection under
    ``uses``)."""
    from switchyard.systems.nopcommerce.stock import NopCommerceStockTarget

    items = context.source_connection()  # checked once, at the cold start
    state = context.adapters.entity_state()
    mapping = _load_mapping(context.flow.mapping_document)

    def build(secrets: Secrets) -> Target:
        return NopCommerceStockTarget(context.client(items, secrets),
                                      context.client(context.flow.connection, secrets), state, mapping)

    return build


def poll_source(connection_secret: Secret) -> Any:
    """The poll source of ``switchyard.polling`` for one shop, from its connection secret."""
    from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
    from switchyard.systems.nopcommerce.poller import NopCommerceOrderSource

    return NopCommerceOrderSource(NopCommerceClient(NopCommerceConnection.from_secret(connection_secret)))


def _load_mapping(document: str) -> Any:
    from switchyard.systems.nopcommerce.stock_mapping import load_stock_mapping

    return load_stock_mapping(document)


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    from switchyard.systems.nopcommerce.stock_mapping import dry_run

    return dry_run(document, event_type, data)


def _check(secret: Secret) -> str:
    """A real read: the Web API Backend's token for the customer, then one order search of the last minute."""
    from datetime import UTC, datetime, timedelta

    from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection

    with NopCommerceClient(NopCommerceConnection.from_secret(secret)) as shop:
        now = datetime.now(UTC)
        page = shop.search_orders(created_from=now - timedelta(minutes=1), created_to=now, page_index=0,
                                  page_size=1)
    return f"Order/Search answered ({page.get('total_count', 0)} order(s) in the last minute)"

SYSTEM = System(
    name="nopcommerce",
    connection=ConnectionSpec(
        # the Web API backend plugin's login (a customer in a role with "Access Web API backend")
        secret_template={"base_url": "", "email": "", "password": ""},
        settings=settings,
        client=client,
    ),
    webhook=WebhookSource(event_models=_event_models),
    target=_target,
    mapping=MappingSpec(load=_load_mapping, dry_run=_dry_run),
    poll_source=poll_source,
    setup=SetupHooks(check=_check),
)
