"""Salesforce Change Data Capture events, as Event Relay puts them on an EventBridge partner bus
(API-NOTES §2.6-2.7) and the rule's input transformer hands them to a flow's queue.

The EventBridge event's ``detail-type`` is the change event's name (``ContactChangeEvent``) and
``detail.payload`` the event: its ``ChangeEventHeader`` and the record's fields (all of them on CREATE,
the changed ones on UPDATE, none on DELETE and on gap events). The queue message (``switchyard.events``)
carries ``detail-type`` as the event type and the payload as ``data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.errors import PermanentError

ChangeType = Literal["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE",
                     "GAP_UNDELETE", "GAP_OVERFLOW"]
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"})
HEADER = "ChangeEventHeader"


class ChangeEventHeader(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    entityName: str
    recordIds: list[str] = Field(min_length=1)
    changeType: ChangeType
    changeOrigin: str = ""
    changedFields: list[str] = Field(default_factory=list)
    nulledFields: list[str] = Field(default_factory=list)
    commitTimestamp: int = 0
    transactionKey: str = ""
    sequenceNumber: int = 0


class ChangePayload(BaseModel):
    """A change event: its header and the record's fields (any, by their API names)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    ChangeEventHeader: ChangeEventHeader


class ContactChangeEvent(BaseModel):
    """The queue message's envelope of a change event (the same ``{type, timestamp, data}`` as webhooks)."""

    type: Literal["ContactChangeEvent"]
    timestamp: datetime
    data: ChangePayload


class AccountChangeEvent(BaseModel):
    type: Literal["AccountChangeEvent"]
    timestamp: datetime
    data: ChangePayload


SalesforceEvent = Annotated[ContactChangeEvent | AccountChangeEvent, Field(discriminator="type")]


def change_header(data: Mapping[str, Any]) -> ChangeEventHeader:
    try:
        return ChangeEventHeader.model_validate(data.get(HEADER))
    except ValidationError as exc:
        raise PermanentError(f"not a change event: {exc.errors()[0]['msg']}", reason="malformed_message") from None


def origin_client(header: ChangeEventHeader) -> str | None:
    """The ``client=`` a writer put in ``Sforce-Call-Options`` (``com/salesforce/api/rest/62.0;client=X``)."""
    for part in header.changeOrigin.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip() == "client" and value.strip():
            return value.strip()
    return None


def record_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields an event carries (everything but the header)."""
    return {key: value for key, value in data.items() if key != HEADER}


# The EventBridge rule's input transformer: the partner event → the worker's queue message
# (``switchyard.events.flow_message``), with the change event as the body's ``data`` (an object; the
# worker reads it with exact decimals). The event id is EventBridge's own (``$.id``): always present,
# unlike the relay's fields inside ``detail``; a relay redelivery gets a new one, which the writes absorb
# (a Clarity write of the values it already holds changes nothing).
INPUT_PATHS = {"event_id": "$.id", "type": "$.detail-type", "time": "$.time", "payload": "$.detail.payload"}


def input_template(flow: str) -> str:
    if not flow.replace("-", "").isalnum():
        raise ValueError(f"flow name {flow!r} cannot go into a template unescaped")
    return ('{"flow": "' + flow + '", "event_id": "<event_id>", "source": "salesforce", "type": "<type>", '
            '"timestamp": "<time>", "received_at": "<time>", "body": {"data": <payload>}}')
