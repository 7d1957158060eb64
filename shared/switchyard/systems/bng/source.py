"""BNG webhook events (docs/bng-contract.md#outgoing-webhooks), in BNG's own field names.

BNG signs with Standard Webhooks, verified by ``switchyard.signatures.StandardWebhookAuthenticator`` with the
connection's ``webhook_secrets``. The envelope is ``{"type", "timestamp", "data"}``; ``timestamp`` is the
change time (the entity's new ``UpdatedAt``), which orders events per entity. Unknown extra fields are kept:
BNG may send more than the integration reads.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SalesOrderStatus = Literal["New", "Released", "Shipped", "Invoiced", "Cancelled"]
InventoryType = Literal["Sale", "Return", "Purchase", "Adjustment"]
Id = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=400)]
EVENT_TYPES = ("salesorder.status_changed", "shipment.created", "inventory.changed", "product.changed")


def change_id(entity: str, entity_id: str, version: Any, updated_at: Any) -> str:
    """The ``webhook-id`` of the change that made one version of one entity (``salesorder``, ``shipment``,
    ``product``): the same for BNG's webhook and for a poll that finds that version in a changed-since list, so
    the sweep recognises what the webhooks delivered. ``UpdatedAt`` in it keeps ids apart in a BNG whose
    numbering started over (a restored test system)."""
    digest = hashlib.sha256(f"{entity}:{entity_id}:{version}:{updated_at}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


class _BngEntity(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class BngShipmentLine(_BngEntity):
    LineNo: Annotated[int, Field(ge=1)]
    ProductID: Id
    SKU: Text
    Quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    ExternalLineID: Id | None = None


class BngShipment(_BngEntity):
    ShipmentID: Id
    SalesOrderID: Id
    ExternalOrderID: Id
    Carrier: Text
    TrackingNumber: Annotated[str, Field(min_length=1, max_length=100)]
    ShippedDate: datetime
    Lines: Annotated[list[BngShipmentLine], Field(min_length=1)]


class BngSalesOrder(_BngEntity):
    SalesOrderID: Id
    ExternalOrderID: Id
    Status: SalesOrderStatus
    UpdatedAt: datetime
    InvoiceNumber: Text | None = None
    Shipments: list[Id] = []


class SalesOrderStatusChangedData(BngSalesOrder):
    PreviousStatus: SalesOrderStatus


class ShipmentCreatedData(BngShipment):
    OrderStatus: SalesOrderStatus


class InventoryTransaction(_BngEntity):
    TransactionID: Id
    Type: InventoryType
    Quantity: int
    OnHandAfter: int


class InventoryChangedData(_BngEntity):
    ProductID: Id
    SKU: Text
    OnHand: int  # the absolute quantity after the change: applied as such, never as a delta
    UpdatedAt: datetime
    Version: Annotated[int, Field(ge=1)]
    Transaction: InventoryTransaction | None = None


class ProductChangedData(_BngEntity):
    """The product as BNG holds it after the change (master data: name, price, attributes; and ``OnHand``)."""

    ProductID: Id
    SKU: Text
    Name: Text
    OnHand: int
    Attributes: dict[str, str | int | float | bool | None] = {}
    UpdatedAt: datetime
    Version: Annotated[int, Field(ge=1)]


class SalesOrderStatusChanged(BaseModel):
    type: Literal["salesorder.status_changed"]
    timestamp: datetime
    data: SalesOrderStatusChangedData


class ShipmentCreated(BaseModel):
    type: Literal["shipment.created"]
    timestamp: datetime
    data: ShipmentCreatedData


class InventoryChanged(BaseModel):
    type: Literal["inventory.changed"]
    timestamp: datetime
    data: InventoryChangedData


class ProductChanged(BaseModel):
    type: Literal["product.changed"]
    timestamp: datetime
    data: ProductChangedData


BngEvent = Annotated[SalesOrderStatusChanged | ShipmentCreated | InventoryChanged | ProductChanged,
                     Field(discriminator="type")]
