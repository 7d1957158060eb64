"""Streak CRM: boxes (deals) in a pipeline, contacts, organizations, tasks; unsigned webhooks with a token.

The registry entry (``switchyard.registry``); everything heavy is imported when first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.registry import (
    Adapters,
    ConnectionSpec,
    Delivery,
    EchoRules,
    FlowContext,
    MappingSpec,
    Secret,
    Secrets,
    SetupHooks,
    SignatureScheme,
    System,
    Target,
    WebhookSource,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from switchyard.ingest import Authenticator, SplitEvent


def settings() -> type[BaseModel]:
    from switchyard.systems.streak.client import StreakConnection

    return StreakConnection


def client(secret: Secret, _connection: str, _adapters: Adapters) -> Any:
    from switchyard.systems.streak.client import StreakClient, StreakConnection

    return StreakClient(StreakConnection.from_secret(dict(secret)))


def _event_models() -> Mapping[str, type]:
    from switchyard.systems.streak import source

    return {"BOX_CHANGE_STAGE": source.BoxChangeStage, "CONTACT_UPDATE": source.ContactUpdate}


def _split(delivery: Delivery) -> tuple[list[SplitEvent], int | None]:
    from switchyard.systems.streak.webhooks import split_object_array

    return split_object_array(delivery)


def _shared_token(tokens: tuple[str, ...]) -> Authenticator:
    from switchyard.signatures import SharedTokenAuthenticator
    from switchyard.systems.streak.webhooks import TOKEN_HEADER

    return SharedTokenAuthenticator(tokens, header=TOKEN_HEADER)


def _target(context: FlowContext) -> Any:
    """One-way flows into Streak (a two-way flow's target is its pair's): deals from the flow's mapping."""
    from switchyard.systems.streak.deal_mapping import load_deal_mapping
    from switchyard.systems.streak.deals import StreakDealTarget

    mapping = load_deal_mapping(context.flow.mapping_document)
    state, echoes = context.adapters.entity_state(), context.adapters.echo_ledger()

    def build(secrets: Secrets) -> Target:
        return StreakDealTarget(mapping, context.client(context.flow.connection, secrets), state, echoes)

    return build


def _load_mapping(document: str) -> Any:
    from switchyard.systems.streak.deal_mapping import load_deal_mapping

    return load_deal_mapping(document)


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    from switchyard.systems.streak.deal_mapping import dry_run

    return dry_run(document, event_type, data)


def _check(secret: Secret) -> str:
    from switchyard.systems.streak.setup import check

    return check(secret)


def _register_webhooks(secret: Secret, webhook_url: str, source_secret: Secret, apply: bool) -> list[str]:
    from switchyard.systems.streak.setup import register_webhooks

    return register_webhooks(secret, webhook_url, source_secret, apply)


SYSTEM = System(
    name="streak",
    connection=ConnectionSpec(
        secret_template={"base_url": "https://api.streak.com", "api_key": "", "team_key": "", "pipeline_key": ""},
        settings=settings,
        client=client,
    ),
    webhook=WebhookSource(event_models=_event_models, formats={"object-array": _split},
                          signatures={"shared-token": SignatureScheme("tokens", _shared_token)}),
    target=_target,
    mapping=MappingSpec(load=_load_mapping, dry_run=_dry_run),
    echoes=EchoRules(
        synced_attributes={"box": ("stageKey",),
                           "contact": ("givenName", "familyName", "emailAddresses", "phoneNumbers")},
        subjects={"BOX_CHANGE_STAGE": ("box", "key"), "CONTACT_UPDATE": ("contact", "key")},
    ),
    setup=SetupHooks(check=_check, register_webhooks=_register_webhooks),
)
