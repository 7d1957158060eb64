"""Webhook signature verification (Standard Webhooks: id.timestamp.body, HMAC-SHA256, base64).

The cryptography is the ``standardwebhooks`` library's; this module adds what a receiver needs
around it: several secrets valid at once (rotation), a precise error for a stale timestamp, and
one error type for everything else.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable, Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from switchyard.errors import SignatureError, StaleTimestampError

TOLERANCE_SECONDS = 5 * 60
REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class StandardWebhookVerifier:
    """Verifies one delivery against any of the source's current signing secrets."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets if secret]
        self._tolerance = tolerance_seconds
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """Return the event id (``webhook-id``) of a genuine delivery, else raise SignatureError."""
        missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
        if missing:
            raise SignatureError(f"missing header(s): {', '.join(missing)}")
        try:
            sent_at = int(headers["webhook-timestamp"])
        except ValueError:
            raise SignatureError("webhook-timestamp is not an integer Unix time") from None
        if abs(self._clock() - sent_at) > self._tolerance:
            raise StaleTimestampError(
                f"webhook-timestamp is outside the {self._tolerance // 60}-minute tolerance"
            )
        if not self._webhooks:
            raise SignatureError("no signing secret is configured for this source")
        for webhook in self._webhooks:
            try:
                webhook.verify(body, dict(headers), json_parse=False)
                return headers["webhook-id"]
            except (WebhookVerificationError, ValueError, binascii.Error):
                continue  # next secret (rotation); malformed signature lists land here too
        raise SignatureError("no signature matches a current signing secret")


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers a Standard Webhooks sender would send (used by the demo, tests and the CLI)."""
    from datetime import UTC, datetime

    signature = Webhook(secret).sign(event_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
