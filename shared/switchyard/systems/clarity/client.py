"""Clarity eCommerce client: the write-back calls of docs/clarity-contract.md.

Auth is an API key (``X-Api-Key``) or OAuth2 client credentials; tokens are fetched, cached and
renewed before expiry by httpx-auth. A 401 with OAuth2 means the token was revoked early: this
connection's cached token (and no other client's) is dropped and the call retried once with a new one
(``connectors.http.RefreshingTokenAuth``).
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx_auth
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from switchyard.connectors.http import DEFAULT_TIMEOUT, RefreshingTokenAuth, jsonable, retry_after_seconds, send
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError


class ClarityConnection(BaseModel):
    """The connection secret: ``{"base_url", "api_key"}`` or ``{"base_url", "client_id",
    "client_secret", "token_url"?}`` (token_url defaults to ``<base_url>/oauth/token``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    base_url: str
    api_key: str = ""
    client_id: str = ""
    client_secret: str = ""
    token_url: str = ""

    @model_validator(mode="after")
    def _one_auth_scheme(self) -> ClarityConnection:
        if not self.base_url:
            raise ValueError("base_url is required")
        if not self.api_key and not (self.client_id and self.client_secret):
            raise ValueError("give api_key, or client_id and client_secret")
        return self

    @classmethod
    def from_secret(cls, value: dict[str, Any]) -> ClarityConnection:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise ConnectionConfigError(f"Clarity connection is incomplete: {exc.errors()[0]['msg']}") from None


def _raise_transient_token_answer(response: httpx.Response) -> None:
    """httpx-auth reports every failed token request as one auth error; a 5xx, 408 or 429 from the
    token endpoint is transient, so it is classified as retryable here instead."""
    status = response.status_code
    if status in (408, 429) or status >= 500:
        response.read()
        raise RetryableError(f"Clarity answered {status} to the token request",
                             reason="rate_limited" if status == 429 else "target_unavailable",
                             retry_after=retry_after_seconds(response), target_status=status,
                             target_response=response.text[:2000])


def _client_credentials_token(credentials: httpx_auth.OAuth2ClientCredentials, rejected: str | None) -> str:
    """The cached token of these credentials (httpx-auth's cache, shared by the process, keyed by the credentials'
    ``state``); a rejected one is dropped from it first, unless another call already replaced it."""
    cache = httpx_auth.OAuth2.token_cache
    if rejected is not None and (cache.tokens.get(credentials.state) or (None,))[0] == rejected:
        cache.tokens.pop(credentials.state, None)
    return str(cache.get_token(credentials.state, early_expiry=credentials.early_expiry,
                               on_missing_token=credentials.request_new_token))


class ClarityClient:
    def __init__(self, connection: ClarityConnection, *, transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self.connection = connection
        base_url = connection.base_url.rstrip("/")
        headers = {"Accept": "application/json"}
        auth: httpx.Auth | None = None
        if connection.api_key:
            headers["X-Api-Key"] = connection.api_key
        else:
            credentials = httpx_auth.OAuth2ClientCredentials(
                connection.token_url or f"{base_url}/oauth/token",
                client_id=connection.client_id,
                client_secret=connection.client_secret,
                client=httpx.Client(transport=transport, timeout=timeout,
                                    event_hooks={"response": [_raise_transient_token_answer]}),
            )
            auth = RefreshingTokenAuth(lambda rejected: _client_credentials_token(credentials, rejected))
        self._http = httpx.Client(base_url=base_url, headers=headers, auth=auth, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None,
              params: dict[str, str] | None = None) -> Any:
        try:
            response = send(self._http, method, path, system="Clarity",
                            json=jsonable(json) if json is not None else None, headers=headers, params=params)
        except PermanentError as exc:
            if exc.target_status == 412:  # someone changed it since we read it: read again, retry
                raise RetryableError(str(exc), reason="stale_version", target_status=412,
                                     target_response=exc.target_response) from exc
            raise
        try:
            return response.json() if response.content else None
        except ValueError:
            raise RetryableError(f"Clarity answered {method} {path} with a body that is not JSON",
                                 reason="target_bad_response", target_status=response.status_code) from None

    def get_order(self, order_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/orders/{order_id}")

    def orders_changed_since(self, since: str, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page of the orders changed at or after ``since`` (RFC 3339), oldest change first:
        ``{"items", "nextCursor"}`` (docs/clarity-contract.md, lists of changes)."""
        params = {"changedSince": since, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        return self._call("GET", "/api/v1/orders", params=params)

    def customers_changed_since(self, since: str, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page of the customers changed at or after ``since``, oldest change first."""
        params = {"changedSince": since, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        return self._call("GET", "/api/v1/customers", params=params)

    def update_order_status(self, order_id: str, status: str, *, note: str | None = None) -> dict[str, Any]:
        body = {"status": status, **({"note": note} if note else {})}
        return self._call("PATCH", f"/api/v1/orders/{order_id}/status", json=body)

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/customers/{customer_id}")

    def update_customer(self, customer_id: str, changes: dict[str, Any], *, version: int | None = None) -> Any:
        headers = {"If-Match": str(version)} if version is not None else None
        return self._call("PATCH", f"/api/v1/customers/{customer_id}", json=changes, headers=headers)
