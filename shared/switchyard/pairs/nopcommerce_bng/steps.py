"""The nopCommerce ⇄ BNG wiring the registry finds (``PAIR`` in this package): the order-to-cash steps a state
machine names ``run: bng.<step>``, and the target of BNG's own events (flow bng-to-nopcommerce).

Both take BNG's client and nopCommerce's from the flow's connections (its target's and one under ``uses``), each
built by its own system's factory: neither system imports the other.
"""

from __future__ import annotations

from typing import Any

from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.pairs.nopcommerce_bng.mapping import load_bng_mapping
from switchyard.pairs.nopcommerce_bng.order_to_cash import BngOrderToCash, shipment_callback
from switchyard.pairs.nopcommerce_bng.products import PRODUCT_EVENTS, ProductWriter
from switchyard.pairs.nopcommerce_bng.stock import BngStockTarget
from switchyard.registry import FlowContext, Secrets, StepRunner, Target, WaitEnder
from switchyard.targets import DeliveryResult

BNG = "bng"
SHOP = "nopcommerce"
SHIPMENT_WAIT = "shipment"  # the wait_for of the order-to-cash declaration that BNG's shipment.created ends


def order_to_cash(context: FlowContext) -> Any:
    """The steps write the order into BNG (the flow's target) and the shipment back to nopCommerce (``uses``)."""
    mapping = load_bng_mapping(context.flow.mapping_document)
    bng, shop = context.connection_to(BNG), context.connection_to(SHOP)

    def build(secrets: Secrets) -> StepRunner:
        return BngOrderToCash(mapping, context.client(bng, secrets), context.client(shop, secrets),
                              flow=context.flow.name)

    return build


class BngEventsTarget:
    """BNG's webhooks (and what its sweep found missing) into nopCommerce: ``shipment.created`` completes the
    order's waiting execution (which then writes the shipment), ``inventory.changed`` and ``product.changed``
    set the product's stock and specification attributes, ``salesorder.status_changed`` the order's statuses."""

    def __init__(self, waits: WaitEnder, products: ProductWriter, statuses: BngOrderToCash) -> None:
        self._waits = waits
        self._products = products
        self._statuses = statuses

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if event.type == "shipment.created":
            if not event.data.get("ExternalOrderID"):
                raise PermanentError(f"shipment.created {event.event_id} names no ExternalOrderID",
                                     reason="malformed_event")
            entity, output = shipment_callback(event.data)
            # "stored": the execution has not reached its wait yet and gets the shipment when it does
            delivered = self._waits.complete(SHIPMENT_WAIT, entity, output)
            return DeliveryResult("updated", {"wait": SHIPMENT_WAIT, "entity": entity, "delivery": delivered})
        if event.type in PRODUCT_EVENTS:
            return self._products.deliver(event)
        if event.type == "salesorder.status_changed":
            result = self._statuses.write_status(event, {})
            return DeliveryResult("updated" if result["statuses"] or result["note_added"] else "unchanged", result)
        return DeliveryResult("filtered", {"reason": f"{event.type} is not applied to nopCommerce"})


def bng_events(context: FlowContext) -> Any:
    flow = context.flow
    declarations = {name: context.catalog.flows[name].state_machine for name in flow.completes_waits_of}
    waiting = [name for name, declared in declarations.items() if declared and SHIPMENT_WAIT in declared.waits]
    if len(waiting) != 1:
        raise ValueError(f"flow {flow.name}: completes_waits_of must name the one flow waiting for "
                         f"{SHIPMENT_WAIT!r} (found {waiting})")
    waits = context.adapters.waits(waiting[0])
    mapping = load_bng_mapping(context.catalog.flows[waiting[0]].mapping_document)
    state = context.adapters.entity_state()
    bng, shop = context.connection_to(BNG), context.connection_to(SHOP)

    def build(secrets: Secrets) -> Target:
        bng_client, shop_client = context.client(bng, secrets), context.client(shop, secrets)
        products = ProductWriter(bng_client, shop_client, BngStockTarget(bng_client, shop_client, state),
                                 mapping.doc.products.specification_attributes)
        return BngEventsTarget(waits, products, BngOrderToCash(mapping, bng_client, shop_client, flow=waiting[0]))

    return build
