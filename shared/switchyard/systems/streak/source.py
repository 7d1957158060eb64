"""Streak webhook events, as Switchyard queues them (see ``switchyard.systems.streak.webhooks``):
``{"type": <event>, "timestamp": <the object's lastUpdatedTimestamp>, "data": <box or contact>}``.

Strings are bounded generously (Streak documents no limits; its keys are ~100 characters): a bound
only has to stop what no Streak account produces, since Streak retries every answer but 200.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchyard.systems.streak.webhooks import MAX_EPOCH_MILLIS


class _StreakObject(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    key: Annotated[str, Field(min_length=1, max_length=500)]
    lastUpdatedTimestamp: Annotated[int, Field(ge=0, le=MAX_EPOCH_MILLIS)]  # epoch ms, before the year 10000


Key = Annotated[str, Field(max_length=500)]
Text = Annotated[str, Field(max_length=5000)]


class StreakBox(_StreakObject):
    pipelineKey: Key
    stageKey: Key
    name: Text | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class StreakContact(_StreakObject):
    givenName: Text | None = None
    familyName: Text | None = None
    emailAddresses: Annotated[list[Annotated[str, Field(max_length=254)]], Field(max_length=100)] = Field(
        default_factory=list)
    phoneNumbers: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=100)] = Field(
        default_factory=list)


class BoxChangeStage(BaseModel):
    type: Literal["BOX_CHANGE_STAGE"]
    timestamp: datetime
    data: StreakBox


class ContactUpdate(BaseModel):
    type: Literal["CONTACT_UPDATE"]
    timestamp: datetime
    data: StreakContact


StreakEvent = Annotated[BoxChangeStage | ContactUpdate, Field(discriminator="type")]
