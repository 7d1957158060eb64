"""Streak webhook events, as Switchyard queues them (see ``switchyard.streak_webhooks``):
``{"type": <event>, "timestamp": <the object's lastUpdatedTimestamp>, "data": <box or contact>}``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _StreakObject(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    key: Annotated[str, Field(min_length=1)]
    lastUpdatedTimestamp: Annotated[int, Field(ge=0)]  # epoch ms


class StreakBox(_StreakObject):
    pipelineKey: str
    stageKey: str
    name: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class StreakContact(_StreakObject):
    givenName: str | None = None
    familyName: str | None = None
    emailAddresses: list[str] = Field(default_factory=list)
    phoneNumbers: list[str] = Field(default_factory=list)


class BoxChangeStage(BaseModel):
    type: Literal["BOX_CHANGE_STAGE"]
    timestamp: datetime
    data: StreakBox


class ContactUpdate(BaseModel):
    type: Literal["CONTACT_UPDATE"]
    timestamp: datetime
    data: StreakContact


StreakEvent = Annotated[BoxChangeStage | ContactUpdate, Field(discriminator="type")]
