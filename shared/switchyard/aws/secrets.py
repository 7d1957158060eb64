"""Secrets Manager adapter: JSON secrets, cached briefly so rotations are picked up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from switchyard.errors import ConnectionConfigError


class SecretReader:
    def __init__(self, client: Any, *, ttl_seconds: float = 300, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def get_json(self, secret_id: str) -> dict[str, Any]:
        cached = self._cache.get(secret_id)
        if cached and self._clock() - cached[0] < self._ttl:
            return cached[1]
        try:
            raw = self._client.get_secret_value(SecretId=secret_id)["SecretString"]
            value = json.loads(raw)
        except Exception as exc:
            raise ConnectionConfigError(f"secret {secret_id} is unreadable or not JSON") from exc
        if not isinstance(value, dict):
            raise ConnectionConfigError(f"secret {secret_id} is not a JSON object")
        self._cache[secret_id] = (self._clock(), value)
        return value
