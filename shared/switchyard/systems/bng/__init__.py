"""BNG ERP: its connection settings and client (``client``) and its webhook events (``source``).

The contract is Switchyard's own (docs/bng-contract.md). Factories the registry and compose use:
``connection_from_secret`` and ``client_for``; the webhook source verifies Standard Webhooks with the
connection's ``webhook_secrets`` (``authenticator_for``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from switchyard.signatures import StandardWebhookAuthenticator
from switchyard.systems.bng.client import BngClient, BngConnection, DuplicateExternalIdError
from switchyard.systems.bng.source import EVENT_TYPES, BngEvent

SYSTEM = "bng"


def connection_from_secret(secret: Mapping[str, Any]) -> BngConnection:
    return BngConnection.from_secret(secret)


def client_for(secret: Mapping[str, Any], *, transport: httpx.BaseTransport | None = None) -> BngClient:
    return BngClient(connection_from_secret(secret), transport=transport)


def authenticator_for(secret: Mapping[str, Any]) -> StandardWebhookAuthenticator:
    return StandardWebhookAuthenticator(list(connection_from_secret(secret).webhook_secrets))


__all__ = ["EVENT_TYPES", "SYSTEM", "BngClient", "BngConnection", "BngEvent", "DuplicateExternalIdError",
           "authenticator_for", "client_for", "connection_from_secret"]
