"""What every connector shares: error classification of an HTTP exchange, JSON-safe values, and the token
auth that refreshes and retries once on a 401."""

from __future__ import annotations

from collections.abc import Callable, Generator
from decimal import Decimal
from email.utils import parsedate_to_datetime
from time import time
from typing import Any

import httpx

from switchyard.errors import PermanentError, RetryableError

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def jsonable(value: Any) -> Any:
    """Decimals become JSON numbers (integral ones as ints), recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def retry_after_seconds(response: httpx.Response) -> float | None:
    header = response.headers.get("retry-after")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(header).timestamp() - time())
        except (TypeError, ValueError):
            return None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def send(client: httpx.Client, method: str, url: str, *, system: str, **kwargs: Any) -> httpx.Response:
    """Send one request; raise RetryableError / PermanentError for anything but a 2xx answer."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{system} timed out on {method} {url}", reason="target_timeout") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{system} unreachable on {method} {url}", reason="target_unreachable") from exc
    except httpx.HTTPError as exc:  # an auth flow failed (e.g. httpx-auth could not get a token)
        if "timeout" in type(exc).__name__.lower() or "Timeout" in type(exc).__name__:
            raise RetryableError(f"{system}: token request timed out", reason="target_timeout") from exc
        raise PermanentError(f"{system}: could not authenticate: {exc}", reason="target_auth_failed") from exc
    status = response.status_code
    if status < 300:
        return response
    details = {"target_status": status, "target_response": _body(response)}
    where = f"{system} answered {status} to {method} {url}"
    if status == 429:
        raise RetryableError(where, reason="rate_limited", retry_after=retry_after_seconds(response),
                             **details)
    if status >= 500 or status == 408:
        raise RetryableError(where, reason="target_unavailable", retry_after=retry_after_seconds(response),
                             **details)
    if status in (401, 403):
        raise PermanentError(where, reason="target_auth_failed", **details)
    if status == 404:
        raise PermanentError(where, reason="target_not_found", **details)
    raise PermanentError(where, reason="target_rejected", **details)


class RefreshingTokenAuth(httpx.Auth):
    """The one "refresh the token and retry once on 401" of every connector: each request carries the current
    token; a 401 (a token expired or revoked early) asks for a newer one once and sends the request once more.
    A second 401 is the answer the caller classifies (usually a permanent auth failure).

    ``token(rejected)``: the token to use; with ``rejected`` (the one just refused) a newer one, fetched
    unless another caller already replaced it. Only this connection's token is ever dropped."""

    def __init__(self, token: Callable[[str | None], str], *, header: str = "Authorization",
                 template: str = "Bearer {token}") -> None:
        self._token = token
        self._header = header
        self._template = template

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._current(None)
        request.headers[self._header] = self._template.format(token=token)
        response = yield request
        if response.status_code == 401:
            request.headers[self._header] = self._template.format(token=self._current(token))
            yield request

    def _current(self, rejected: str | None) -> str:
        try:
            return self._token(rejected)
        except Exception as exc:  # classified by whoever fetched the token: the caller must not classify it again
            exc.raised_getting_token = True  # type: ignore[attr-defined]
            raise


def raised_getting_token(exc: BaseException) -> bool:
    """Whether an error came from getting a token (``RefreshingTokenAuth``), not from the request's answer."""
    return bool(getattr(exc, "raised_getting_token", False))
