"""Sending signed webhooks like a source system would (demo, CLI, tests)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from switchyard.signatures import sign

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def signed_headers(secret: str, body: bytes, *, event_id: str | None = None,
                   timestamp: int | None = None) -> dict[str, str]:
    headers = sign(secret, event_id or f"msg_{uuid.uuid4().hex}", timestamp or int(time.time()), body)
    return {**headers, "content-type": "application/json"}


def post_webhook(client: httpx.Client, source: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = client.post(f"/webhooks/{source}", content=body, headers=headers)
    try:
        return response.status_code, response.json()
    except json.JSONDecodeError:
        return response.status_code, response.text
