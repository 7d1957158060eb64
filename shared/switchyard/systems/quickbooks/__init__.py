"""QuickBooks Online: order-to-cash steps (customer, document, payment, void), Item notifications, Item updates.

The registry entry (``switchyard.registry``); everything heavy is imported when first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.registry import (
    Adapters,
    ConnectionSpec,
    Delivery,
    FlowContext,
    MappingSpec,
    Secret,
    Secrets,
    SetupHooks,
    SignatureScheme,
    StepRunner,
    StepSet,
    System,
    WebhookSource,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from switchyard.ingest import Authenticator, SplitEvent

# the steps of order-to-cash (``OrderToCash.run``); a state machine's task names them ``quickbooks.<step>``
ORDER_TO_CASH_STEPS = ("customer", "items", "document", "payment", "cancel", "refund", "write_back")


def settings() -> type[BaseModel]:
    from switchyard.systems.quickbooks.client import QuickBooksConnection

    return QuickBooksConnection


def client(secret: Secret, connection: str, adapters: Adapters) -> Any:
    """Tokens in the connection secret (one refresher per realm) and a limiter per realm shared by every
    function: both from the adapters."""
    from switchyard.systems.quickbooks.client import QBO_LIMITS, QuickBooksClient, QuickBooksConnection

    # a short wait per request: a step that cannot get permits soon is retried later by the state machine
    return QuickBooksClient(QuickBooksConnection.from_secret(secret), adapters.token_store(connection),
                            rate_limiter=adapters.rate_limiter(connection, QBO_LIMITS),
                            rate_limit_wait=5.0 / adapters.time_scale, connection_name=connection)


def _event_models() -> Mapping[str, type]:
    from switchyard.systems.quickbooks import source

    return {"item.created": source.ItemCreated, "item.updated": source.ItemUpdated,
            "item.deleted": source.ItemDeleted}


def _split(delivery: Delivery) -> tuple[list[SplitEvent], int | None]:
    from switchyard.systems.quickbooks.webhooks import split_notification

    return split_notification(delivery)


def _intuit_signature(tokens: tuple[str, ...]) -> Authenticator:
    from switchyard.systems.quickbooks.webhooks import IntuitSignatureAuthenticator

    return IntuitSignatureAuthenticator(tokens)


def _order_to_cash(context: FlowContext) -> Any:
    """The steps write the order into QuickBooks and its outcome back to the flow's source (a note, a status)."""
    from switchyard.systems.quickbooks.order_mapping import load_order_mapping
    from switchyard.systems.quickbooks.order_to_cash import OrderToCash

    mapping = load_order_mapping(context.flow.mapping_document)
    shop = context.source_connection()
    state = context.adapters.entity_state()

    def build(secrets: Secrets) -> StepRunner:
        return OrderToCash(mapping, context.client(context.flow.connection, secrets), context.client(shop, secrets),
                           flow=context.flow.name, state=state)

    return build


def _item_updates(context: FlowContext) -> Any:
    """One-way flows into QuickBooks: a shop's product edits update the Item's name and price."""
    from switchyard.systems.quickbooks.item_updates import QuickBooksItemUpdateTarget, load_item_update_mapping

    mapping = load_item_update_mapping(context.flow.mapping_document)
    state = context.adapters.entity_state()

    def build(secrets: Secrets) -> Any:
        return QuickBooksItemUpdateTarget(mapping, context.client(context.flow.connection, secrets), state)

    return build


def _load_mapping(document: str) -> Any:
    from switchyard.systems.quickbooks.item_updates import is_item_update_document, load_item_update_mapping
    from switchyard.systems.quickbooks.order_mapping import load_order_mapping

    return load_item_update_mapping(document) if is_item_update_document(document) else load_order_mapping(document)


def _dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    from switchyard.systems.quickbooks.dry_run import dry_run
    from switchyard.systems.quickbooks.item_updates import is_item_update_document, load_item_update_mapping

    if is_item_update_document(document):
        return load_item_update_mapping(document).dry_run(event_type, data)
    return dry_run(document, event_type, data)


AUTHORIZE_URL = "https://appcenter.intuit.com/connect/oauth2"
ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"


def _consent_url(secret: Secret, redirect_uri: str, state: str) -> str:
    """Intuit's consent page for the app (client id) with the accounting scope; it redirects with ``code``,
    ``state`` and ``realmId`` (the company)."""
    from urllib.parse import urlencode

    query = urlencode({"client_id": secret["client_id"], "response_type": "code", "scope": ACCOUNTING_SCOPE,
                       "redirect_uri": redirect_uri, "state": state})
    return f"{secret.get('authorize_url') or AUTHORIZE_URL}?{query}"


def _instructions(webhook_url: str) -> list[str]:
    return [f"Intuit developer portal > your app > Webhooks: endpoint URL {webhook_url}, entity Item "
            "(Create, Update); copy the app's verifier token into the quickbooks source secret "
            "(verifier_tokens), which setup asks for",
            "Intuit developer portal > your app > Keys & credentials: add the redirect URI setup prints for the "
            "consent (http://localhost:PORT/callback)"]


SYSTEM = System(
    name="quickbooks",
    connection=ConnectionSpec(
        # OAuth2 authorization code: the operator connects the company once and puts its first refresh token;
        # Switchyard then keeps the rotated one here (switchyard.tokens)
        secret_template={"base_url": "https://quickbooks.api.intuit.com", "client_id": "", "client_secret": "",
                         "realm_id": "", "refresh_token": ""},
        settings=settings,
        client=client,
        keeps_state=True,
    ),
    webhook=WebhookSource(event_models=_event_models, formats={"intuit": _split},
                          signatures={"intuit-signature": SignatureScheme("verifier_tokens", _intuit_signature)}),
    target=_item_updates,
    step_sets={"order-to-cash": StepSet(steps=ORDER_TO_CASH_STEPS, build=_order_to_cash)},
    mapping=MappingSpec(load=_load_mapping, dry_run=_dry_run),
    setup=SetupHooks(consent_url=_consent_url, instructions=_instructions),
)
