"""Day-2 operations on a connection: its state, and the reconnect after its credentials died.

``reconnect`` is the end of the runbook's "connection-needs-reconnect": once the OAuth consent has been given
again, it stores the new refresh token in the connection secret (every other key kept; the access token of
the dead credentials removed) and only then marks the connection ``connected`` in the shared state, so no
function sees the connection usable with the old token. The events that waited drain on their next turn
(within ``RECONNECT_POLL_SECONDS``); each is delivered once (workers are idempotent per event, QuickBooks
writes carry a ``requestid``, every step looks before it writes).

Works on any clients: the deployed stack's (boto3, the operator's credentials) or the local stack's (moto).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from switchyard.connection_state import ConnectionState, DynamoConnectionStates

# what a dead set of credentials leaves in a connection secret and must not outlive it
_TOKEN_KEYS = ("access_token", "access_token_expires_at", "refresh_token_expires_at", "tokens_refreshed_at")


def default_token_url(system: str) -> str | None:
    """The token endpoint the system's connection model defaults to (registry), if it has one."""
    from switchyard import registry

    field = registry.system(system).connection.settings().model_fields.get("token_url")
    return field.default if field is not None and isinstance(field.default, str) and field.default else None


def exchange_authorization_code(secret: dict[str, Any], code: str, redirect_uri: str, *, system: str,
                                transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The consent's one-time ``code`` exchanged for tokens (OAuth 2 ``authorization_code`` grant, client
    credentials from the connection secret)."""
    token_url = secret.get("token_url") or default_token_url(system)
    if not token_url:
        raise SystemExit(f"the connection secret has no token_url and {system} has no default")
    with httpx.Client(transport=transport, timeout=30) as client:
        response = client.post(token_url, data={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": redirect_uri},
                               auth=(secret["client_id"], secret["client_secret"]),
                               headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise SystemExit(f"the token endpoint refused the code: {response.status_code} {response.text[:200]}")
    tokens: dict[str, Any] = response.json()
    return tokens


def reconnect(secrets: Any, dynamodb: Any, *, table: str, secret_id: str, connection: str, refresh_token: str,
              realm_id: str | None = None) -> ConnectionState:
    """Store the refresh token of a new consent in the connection secret, then mark the connection usable."""
    if not refresh_token:
        raise ValueError("a refresh token is required")
    document = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
    if not isinstance(document, dict):
        raise SystemExit(f"secret {secret_id} is not a JSON object")
    for key in _TOKEN_KEYS:
        document.pop(key, None)
    document["refresh_token"] = refresh_token
    if realm_id is not None:
        document["realm_id"] = realm_id
    secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(document))
    return DynamoConnectionStates(dynamodb, table).mark_connected(connection)


def status(dynamodb: Any, *, table: str, connections: list[str]) -> list[dict[str, Any]]:
    states = DynamoConnectionStates(dynamodb, table)
    return [{"connection": state.connection, "status": state.status.value, "reason": state.reason,
             "message": state.message, "since": state.since}
            for state in (states.get(name) for name in connections)]
