"""Every Switchyard error, classified once.

    SwitchyardError
    ├── WebhookRejectedError            bad input at the webhook endpoint (4xx, nothing enqueued)
    │   ├── UnknownSourceError          404
    │   ├── PayloadTooLargeError        413
    │   ├── SignatureError              401 (missing/bad signature, stale timestamp)
    │   ├── MalformedBodyError          400 (not JSON)
    │   └── SchemaError                 422 (names the offending fields)
    ├── EnqueueError                    the event could not be queued durably (503, sender retries)
    ├── MappingError                    a mapping document is invalid (fails at load, never per record)
    ├── ConnectionConfigError           a connection secret is missing or incomplete (permanent)
    └── DeliveryError                   delivering one event to its target failed
        ├── RetryableError              timeouts, 5xx, 429: back off and retry (honour Retry-After)
        │   └── RateLimitedError        (switchyard.rate_limit) our own limiter says wait: retry later
        ├── OutOfOrderError             the target lacks a predecessor (e.g. the order): retry later
        ├── ConnectionDownError         the connection's credentials are dead (refresh refused, consent
        │                               revoked): events wait until it is reconnected, never dead-lettered
        │                               for it (switchyard.connection_state)
        └── PermanentError              4xx validation, missing required field: straight to the DLQ
            └── DuplicateNameError      a name the target keeps unique is taken (an accounting system's 6240)

The worker decides retry vs dead-letter from the class alone; nothing matches on message text.
"""

from __future__ import annotations

from typing import Any


class SwitchyardError(Exception):
    """Base of every error Switchyard raises on purpose."""


class WebhookRejectedError(SwitchyardError):
    status_code = 400
    code = "rejected"

    def __init__(self, message: str, *, fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []

    def body(self) -> dict[str, Any]:
        """The JSON answer; bounded, since messages may quote what a hostile sender sent."""
        body: dict[str, Any] = {"error": self.code, "message": _clip(self.message)}
        if self.fields:
            body["fields"] = [{key: _clip(str(value)) for key, value in problem.items()}
                              for problem in self.fields[:MAX_FIELDS_SHOWN]]
        return body


MAX_FIELDS_SHOWN = 20


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class UnknownSourceError(WebhookRejectedError):
    status_code = 404
    code = "unknown_source"


class PayloadTooLargeError(WebhookRejectedError):
    status_code = 413
    code = "payload_too_large"


class SignatureError(WebhookRejectedError):
    status_code = 401
    code = "invalid_signature"


class StaleTimestampError(SignatureError):
    code = "stale_timestamp"


class MalformedBodyError(WebhookRejectedError):
    status_code = 400
    code = "malformed_body"


class SchemaError(WebhookRejectedError):
    status_code = 422
    code = "invalid_event"


class EnqueueError(SwitchyardError):
    """Queueing failed: the sender gets 503 and retries; idempotency absorbs partial fan-out."""


class MappingError(SwitchyardError):
    """A mapping document is invalid; raised when it is loaded."""


class ConnectionConfigError(SwitchyardError):
    """A connection's secret is missing or incomplete."""


class DeliveryError(SwitchyardError):
    """Delivering one event to its target failed.

    ``reason`` is machine-readable (snake_case), ``target_status`` and ``target_response`` describe
    what the target answered, when it answered.
    """

    error_class = "delivery"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        target_status: int | None = None,
        target_response: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.target_status = target_status
        self.target_response = target_response


class RetryableError(DeliveryError):
    error_class = "retryable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OutOfOrderError(DeliveryError):
    error_class = "out_of_order"


class ConnectionDownError(DeliveryError):
    """No event can reach the target through ``connection`` until someone reconnects it (an OAuth refresh
    token refused with ``invalid_grant``, consent revoked). Not the event's fault: it waits, the connection
    is marked for every function, and an alarm asks for the reconnect."""

    error_class = "connection_down"
    marks_connection_down = True  # False: waiting heals by itself (an open circuit breaker), no reconnect needed

    def __init__(self, message: str, *, connection: str | None, reason: str = "credentials_rejected",
                 down_since: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, reason=reason, **kwargs)
        self.connection = connection
        self.down_since = down_since  # when the connection was marked down (epoch s); None: just now


class PermanentError(DeliveryError):
    error_class = "permanent"


class DuplicateNameError(PermanentError):
    """An accounting system's 6240: the name is taken (DisplayName is unique across customers, vendors and
    employees). ``name`` is the name that collided, so the caller can find that entity and link to it."""

    def __init__(self, message: str, *, name: str | None, **kwargs: Any) -> None:
        super().__init__(message, reason="duplicate_name", **kwargs)
        self.name = name
