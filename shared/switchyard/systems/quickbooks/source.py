"""QuickBooks Online webhook events, as Switchyard queues them (see ``switchyard.systems.quickbooks.webhooks``):
``{"type": "item.updated", "timestamp": <the change time, UTC>, "data": <the change>}``, one per changed
entity, whichever payload shape (legacy ``eventNotifications`` or CloudEvents) QBO posted.

QBO's notifications are thin: ``data`` says which entity of which company (realm) changed how and
when, never its fields; a flow reads the entity from the QBO API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class QboEntityChange(BaseModel):
    # built by the ingest parser, never by the sender: anything else in it is a bug, not an extension
    model_config = ConfigDict(extra="forbid", frozen=True)
    realm_id: Annotated[str, Field(pattern=r"^[0-9]{1,20}$")]  # the QBO company
    # QBO's entity name, capitalised as the API spells it: "Item", "SalesReceipt"
    entity: Annotated[str, Field(max_length=50)]
    id: Annotated[str, Field(min_length=1, max_length=50)]  # QBO ids are numeric strings
    # QBO's operation: "Create", "Update", "Delete", "Merge", "Void", "Emailed"
    operation: Annotated[str, Field(max_length=20)]
    last_updated: datetime
    deleted_id: Annotated[str, Field(max_length=50)] | None = None  # merges: the id merged away


class ItemCreatedData(QboEntityChange):
    entity: Literal["Item"]
    operation: Literal["Create"]


class ItemUpdatedData(QboEntityChange):
    entity: Literal["Item"]
    operation: Literal["Update"]


class ItemDeletedData(QboEntityChange):
    entity: Literal["Item"]
    operation: Literal["Delete"]


class ItemCreated(BaseModel):
    type: Literal["item.created"]
    timestamp: datetime
    data: ItemCreatedData


class ItemUpdated(BaseModel):
    type: Literal["item.updated"]
    timestamp: datetime
    data: ItemUpdatedData


class ItemDeleted(BaseModel):
    type: Literal["item.deleted"]
    timestamp: datetime
    data: ItemDeletedData


QuickBooksEvent = Annotated[ItemCreated | ItemUpdated | ItemDeleted, Field(discriminator="type")]
