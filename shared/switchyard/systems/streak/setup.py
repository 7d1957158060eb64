"""``switchyard setup`` for Streak: check the API key against the pipeline, register the webhooks.

Streak posts its webhooks to a URL registered through its API (``POST /api/v2/webhooks?pipelineKey=…`` or
``?teamKey=…``, one per event type), echoing the ``token`` given at registration in a header. Switchyard's
URL names the event (``?event=BOX_CHANGE_STAGE``), as the source expects. Registering is idempotent: a
webhook for the same event and URL is kept (Streak's list hides its token, so a rotated token needs the old
webhook deleted first).
"""

from __future__ import annotations

from typing import Any

from switchyard.systems.streak.client import StreakClient, StreakConnection

# event -> the scope Streak registers it under (box events per pipeline, contact events per team)
SUBSCRIPTIONS = {"BOX_CHANGE_STAGE": "pipelineKey", "CONTACT_UPDATE": "teamKey"}


def _client(secret: Any) -> StreakClient:
    return StreakClient(StreakConnection.from_secret(dict(secret)))


def check(secret: Any) -> str:
    """A real read: the pipeline the connection writes deals into (401 for a wrong key, 400/404 for a wrong
    pipeline key)."""
    client = _client(secret)
    try:
        pipeline = client.get_pipeline(client.connection.pipeline_key)
    finally:
        client.close()
    return f"pipeline {pipeline.get('name') or client.connection.pipeline_key!r}"


def register_webhooks(secret: Any, webhook_url: str, source_secret: Any, apply: bool) -> list[str]:
    tokens = source_secret.get("tokens") or []
    token = tokens[0] if tokens else None
    if not token:
        raise ValueError("the streak source secret has no token yet: run setup without --check first")
    client = _client(secret)
    done: list[str] = []
    try:
        for event, scope in SUBSCRIPTIONS.items():
            key = client.connection.pipeline_key if scope == "pipelineKey" else client.connection.team_key
            target = f"{webhook_url}?event={event}"
            hooks = client.list_webhooks(scope, key)
            if any(hook.get("event") == event and hook.get("targetUrl") == target for hook in hooks):
                done.append(f"{event}: registered already ({target})")
                continue
            if not apply:
                done.append(f"{event}: not registered ({target})")
                continue
            client.create_webhook(scope, key, event=event, target_url=target, token=token)
            done.append(f"{event}: registered ({target})")
    finally:
        client.close()
    return done
