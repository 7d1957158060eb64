"""Webhook signature verification (Standard Webhooks: id.timestamp.body, HMAC-SHA256, base64).

The cryptography is the ``standardwebhooks`` library's; this module adds what a receiver needs
around it: several secrets valid at once (rotation), a precise error for a stale timestamp, and
one error type for everything else. A shared token is here too (senders that sign nothing); a system with
a scheme of its own registers it with its webhook source (``switchyard.registry.WebhookSource.signatures``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from switchyard.errors import SignatureError, StaleTimestampError
from switchyard.registry import SignatureScheme

TOLERANCE_SECONDS = 5 * 60
REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}")


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
        if not _EVENT_ID.fullmatch(headers["webhook-id"]):  # it becomes a key, a log field, an SQS attribute
            raise SignatureError("webhook-id must be 1 to 256 printable ASCII characters without spaces")
        # checked as text first: int() takes "1_0", " 1" and Unicode digits, and a 309-digit value
        # overflows the float arithmetic below (a 500 any stranger could cause, before any secret is used)
        if not _UNIX_SECONDS.fullmatch(headers["webhook-timestamp"]):
            raise SignatureError("webhook-timestamp is not an integer Unix time (up to 12 ASCII digits)")
        sent_at = int(headers["webhook-timestamp"])
        if abs(self._clock() - sent_at) > self._tolerance:
            raise StaleTimestampError(
                f"webhook-timestamp is outside the {self._tolerance // 60}-minute tolerance"
            )
        if not self._webhooks:
            raise SignatureError("no signing secret is configured for this source")
        try:
            payload = body.decode()
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8 text") from None
        # The library's own verify() re-checks the timestamp against the wall clock with a fixed
        # 5-minute window, which would ignore ``clock`` and ``tolerance_seconds``: the timestamp is
        # checked above, so only the library's HMAC (``sign``) is used here.
        offered = _v1_signatures(headers["webhook-signature"])
        signed_at = datetime.fromtimestamp(sent_at, tz=UTC)
        for webhook in self._webhooks:  # several secrets are valid during rotation
            expected = base64.b64decode(webhook.sign(headers["webhook-id"], signed_at, payload).partition(",")[2])
            if any(hmac.compare_digest(expected, candidate) for candidate in offered):
                return headers["webhook-id"]
        raise SignatureError("no signature matches a current signing secret")


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded ``v1,<base64>`` entries of a signature header; malformed entries are skipped."""
    signatures = []
    for entry in header.split():
        version, comma, encoded = entry.partition(",")
        if not comma or version != "v1":
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return signatures


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers a Standard Webhooks sender would send (used by the demo, tests and the CLI)."""
    signature = Webhook(secret).sign(event_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


class StandardWebhookAuthenticator:
    """Standard Webhooks for a webhook request (ingest's ``Authenticator``)."""

    def __init__(self, secrets: Sequence[str], **kwargs: object) -> None:
        self._verifier = StandardWebhookVerifier(secrets, **kwargs)  # type: ignore[arg-type]

    def authenticate(self, request: object) -> str:
        return self._verifier.verify(request.body, request.headers)  # type: ignore[attr-defined]


class SharedTokenAuthenticator:
    """Senders that do not sign bodies echo a token registered with them, in a header (``header``, named
    by the sender's system) or in the URL (``?token=``). Compared in constant time; several tokens may be
    valid at once during a rotation."""

    def __init__(self, tokens: Sequence[str], *, header: str) -> None:
        self._tokens = [token.encode() for token in tokens if token]
        self._header = header.lower()

    def authenticate(self, request: object) -> None:
        presented = (request.headers.get(self._header) or request.query.get("token") or "")  # type: ignore[attr-defined]
        if not presented:
            raise SignatureError(f"missing {self._header} header or token parameter")
        if not self._tokens:
            raise SignatureError("no token is configured for this source")
        candidate = presented.encode()
        matched = False
        for token in self._tokens:  # no early exit: the time taken does not tell which token was near
            matched |= hmac.compare_digest(candidate, token)
        if not matched:
            raise SignatureError("the token does not match")
        return None


# the schemes every system may use; a system registers its own besides (``registry.WebhookSource.signatures``)
CORE_SCHEMES: dict[str, SignatureScheme] = {
    "standard-webhooks": SignatureScheme("signing_secrets", StandardWebhookAuthenticator),
}
