"""QuickBooks Online Accounting API v3 client (API-NOTES section 3): queries, reads, idempotent writes, batch.

* Every call sends ``minorversion``; every write sends ``requestid`` built from the caller's id for the logical
  operation, so a retried write returns QBO's original answer instead of writing twice. Ids longer than QBO
  allows (50 characters, 36 for a batch) are replaced by a stable hash. Updates and voids fold the
  ``SyncToken`` into it: after a 5010 the caller re-reads, and the retry with the new token is a new
  request, not a replay of the 5010.
* The Bearer access token comes from a ``TokenStore`` (switchyard.tokens), which refreshes once per realm
  across all workers and persists the rotated refresh token. It is refreshed ahead of expiry, and on a 401:
  once, then the call is retried once.
* With a ``rate_limiter`` (switchyard.rate_limit, shared by every worker through DynamoDB), each request
  first takes a permit for key ``qbo#<realmId>``, waiting up to ``rate_limit_wait`` seconds, so Switchyard
  slows down before QBO answers 429. No permit in time raises RateLimitedError (retryable, ``retry_after``
  = when one frees), which the caller waits out apart from its retry budget, like a 429.
* QBO reports errors as a ``Fault`` body, also inside 200 answers (batch items). ``fault_error`` maps every
  one to Switchyard's errors, in this one place:

  ======================================  ==========================================================
  ``5010`` stale SyncToken                RetryableError ``stale_sync_token`` (re-read, re-apply)
  ``6240`` duplicate name                 DuplicateNameError (a PermanentError, ``duplicate_name``)
                                          carrying ``name``: link to the existing entity
  ``6140``/``6210`` duplicate DocNumber   PermanentError ``duplicate_document_number``
  ``610`` object not found                PermanentError ``object_not_found``
  other ValidationFault                   PermanentError ``target_rejected``
  429 / ThrottlingFault                   RetryableError ``rate_limited``, ``retry_after`` 60 s unless
                                          the answer says otherwise (QBO sends no header)
  5xx / SystemFault                       RetryableError ``target_unavailable``
  Authentication/AuthorizationFault       PermanentError ``target_auth_failed``
  ``invalid_grant`` on refresh            ConnectionDownError ``credentials_rejected``: the connection
                                          waits for a reconnect (switchyard.connection_state)
  ``invalid_client`` on refresh           ConnectionDownError ``client_rejected`` (app credentials)
  ======================================  ==========================================================

* The token call has its own policy (``TOKEN_TIMEOUT``, ``TOKEN_ATTEMPTS``): a refresh is the one call whose
  lost answer can end the connection (Intuit rotates the refresh token and the successor is only in the
  answer), so it waits longer for an answer than an API call, retries a refused connection at the transport
  (nothing was sent), and retries a timeout or 5xx at once with the same refresh token: Intuit answers that
  with tokens when it had not rotated yet (it keeps a refresh token's value for about 24 hours) or while it
  still honours the previous token; otherwise ``invalid_grant`` says the connection needs a reconnect.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from switchyard.connectors.http import DEFAULT_TIMEOUT, RefreshingTokenAuth, jsonable, raised_getting_token, send
from switchyard.errors import (
    ConnectionConfigError,
    ConnectionDownError,
    DeliveryError,
    DuplicateNameError,
    PermanentError,
    RetryableError,
)
from switchyard.rate_limit import Limit, RateLimiter
from switchyard.tokens import DEFAULT_MARGIN_SECONDS, TokenResponse, TokenStore

SYSTEM = "QuickBooks"
THROTTLE_WAIT_SECONDS = 60.0  # API-NOTES 3.4: on 429 wait 60 s; QBO sends no Retry-After
DEFAULT_RATE_LIMIT_WAIT = 10.0  # seconds a request may wait for a permit before the step is retried later
MAX_REQUEST_ID = 50
MAX_BATCH_REQUEST_ID = 36
MAX_BATCH_ITEMS = 30
# Intuit answers token calls within a second or two: wait far longer than that before calling an answer lost
TOKEN_TIMEOUT = httpx.Timeout(15.0, connect=3.0)
TOKEN_CONNECT_RETRIES = 2  # connection refused or connect timeout: nothing reached Intuit, safe to repeat
TOKEN_ATTEMPTS = 3  # a timeout or 5xx: the same refresh token again, at once, while any grace still holds
TOKEN_RETRY_BUDGET_SECONDS = 25.0  # no new attempt after this: the token lease (45 s) must outlast the call
_NO_ANSWER = frozenset({"target_timeout", "target_unreachable", "target_unavailable"})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


QBO_LIMITS = (Limit(500, 61.0), Limit(10, 1.2))
"""QuickBooks Online, per realm (key ``qbo#<realmId>``): 500 requests/minute and 10/second, each window
padded for uneven network latency (``switchyard.rate_limit``'s docstring)."""


class QuickBooksConnection(BaseModel):
    """The connection secret: ``{"client_id", "client_secret", "realm_id", "refresh_token", "base_url"?,
    "token_url"?, "minor_version"?}`` (the token store adds the access token and rotates the refresh token)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    base_url: str = "https://quickbooks.api.intuit.com"
    token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    realm_id: str = Field(min_length=1)
    minor_version: int = 75
    refresh_token: str = Field(min_length=1, repr=False)

    @classmethod
    def from_secret(cls, value: Mapping[str, Any]) -> QuickBooksConnection:
        try:
            return cls.model_validate(dict(value))
        except ValidationError as exc:
            missing = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise ConnectionConfigError(f"QuickBooks connection is incomplete: {missing}") from None


def _fault_of(body: Any) -> dict[str, Any] | None:
    if isinstance(body, Mapping):
        fault = body.get("Fault")
        if isinstance(fault, Mapping):
            return dict(fault)
    return None


def fault_error(body: Any, *, status: int, where: str, retry_after: float | None = None,
                name: str | None = None, fallback: DeliveryError | None = None) -> DeliveryError:
    """The Switchyard error for a QBO answer: ``body`` holds a ``Fault`` (any status, 200 included) or is
    what a failed HTTP exchange answered. ``name`` is the name the request tried to use (for 6240);
    ``fallback`` is the classification by status alone, used when the body says nothing more."""
    fault = _fault_of(body)
    errors = (fault or {}).get("Error") or [{}]
    first = errors[0] if isinstance(errors, list) and isinstance(errors[0], Mapping) else {}
    code = str(first.get("code", ""))
    fault_type = str((fault or {}).get("type", ""))
    text = "; ".join(str(part) for part in (code, first.get("Message"), first.get("Detail")) if part)
    message = f"{where}: {text}" if text else where
    details: dict[str, Any] = {"target_status": status, "target_response": body}
    if status == 429 or fault_type == "ThrottlingFault":
        return RetryableError(message, reason="rate_limited",
                              retry_after=THROTTLE_WAIT_SECONDS if retry_after is None else retry_after, **details)
    if fault_type in ("AuthenticationFault", "AuthorizationFault") or status in (401, 403) or code in ("120", "6190"):
        return PermanentError(message, reason="target_auth_failed", **details)
    if code == "5010":
        return RetryableError(message, reason="stale_sync_token", **details)
    if code == "6240":
        if name is None:
            quoted = re.search(r"name '([^']*)'", str(first.get("Detail", "")))
            name = quoted.group(1) if quoted else None
        return DuplicateNameError(message, name=name, **details)
    if code in ("6140", "6210"):
        return PermanentError(message, reason="duplicate_document_number", **details)
    if code == "610":
        return PermanentError(message, reason="object_not_found", **details)
    if fault_type == "SystemFault" or status >= 500 or status == 408:
        return RetryableError(message, reason="target_unavailable", retry_after=retry_after, **details)
    if fault is not None:
        return PermanentError(message, reason="target_rejected", **details)
    if fallback is not None:
        return fallback
    return PermanentError(message, reason="target_rejected", **details)


def quote_value(value: Any) -> str:
    """A literal for a QBO query: strings in single quotes with ``\\`` and ``'`` escaped by a backslash."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"cannot use {type(value).__name__} in a QuickBooks query")


def requestid_for(base: str, *, limit: int = MAX_REQUEST_ID) -> str:
    """``base`` if QBO accepts it as a ``requestid``, else a stable hash of it of ``limit`` characters."""
    if not base:
        raise ValueError("a request id is required: one stable id per logical operation")
    if len(base) <= limit:
        return base
    return hashlib.sha256(base.encode()).hexdigest()[:limit]


def _entity_path(entity: str) -> str:
    if not _NAME.match(entity):
        raise ValueError(f"not a QuickBooks entity name: {entity!r}")
    return entity.lower()


def _entity_of(body: Mapping[str, Any], entity: str) -> dict[str, Any]:
    for key, value in body.items():
        if key.lower() == entity.lower() and isinstance(value, dict):
            return value
    raise RetryableError(f"QuickBooks answered without the {entity}", reason="target_bad_response",
                         target_response=body)


def _name_in(body: Mapping[str, Any] | None) -> str | None:
    if not body:
        return None
    name = body.get("DisplayName", body.get("Name"))
    return str(name) if name is not None else None


@dataclass(frozen=True)
class BatchItemResult:
    """One batch item's outcome: ``value`` is the entity (or ``QueryResponse``) answered, ``error`` its Fault."""

    bid: str
    value: dict[str, Any] | None = None
    error: DeliveryError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class QuickBooksClient:
    """One company (realm). ``clock`` decides when the access token is due (``margin_seconds`` early)."""

    def __init__(self, connection: QuickBooksConnection, token_store: TokenStore, *,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] = time.time,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, margin_seconds: float = DEFAULT_MARGIN_SECONDS,
                 rate_limiter: RateLimiter | None = None, rate_limit_wait: float = DEFAULT_RATE_LIMIT_WAIT,
                 token_timeout: httpx.Timeout = TOKEN_TIMEOUT, sleep: Callable[[float], None] = time.sleep,
                 connection_name: str | None = None) -> None:
        self.connection = connection
        self.connection_name = connection_name  # the catalog's name: which connection a dead token takes down
        self.realm = connection.realm_id
        self._limiter = rate_limiter
        self._limit_key = f"qbo#{connection.realm_id}"
        self._limit_wait = rate_limit_wait
        self._store = token_store
        self._clock = clock
        self._margin = margin_seconds
        base = connection.base_url.rstrip("/")
        # every API request counts against the realm's limits, a retry after a 401 too
        hooks = {"request": [self._take_permit]} if rate_limiter is not None else {}
        self._http = httpx.Client(base_url=f"{base}/v3/company/{quote(self.realm, safe='')}",
                                  headers={"Accept": "application/json"}, timeout=timeout, transport=transport,
                                  auth=RefreshingTokenAuth(self._access_token), event_hooks=hooks)
        self._oauth = httpx.Client(headers={"Accept": "application/json"}, timeout=token_timeout,
                                   transport=transport or httpx.HTTPTransport(retries=TOKEN_CONNECT_RETRIES))
        self._token_retrying = Retrying(
            stop=stop_after_attempt(TOKEN_ATTEMPTS) | stop_after_delay(TOKEN_RETRY_BUDGET_SECONDS),
            wait=wait_random_exponential(multiplier=0.25, max=2.0),
            retry=retry_if_exception(lambda exc: isinstance(exc, RetryableError) and exc.reason in _NO_ANSWER),
            sleep=sleep, reraise=True)

    def close(self) -> None:
        self._http.close()
        self._oauth.close()

    def __enter__(self) -> QuickBooksClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reads

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of one ``select`` (one page: add ``startposition``/``maxresults`` to page). Build values
        with ``quote_value``."""
        body = self._call("GET", "/query", params={"query": sql})
        response = body.get("QueryResponse") or {}
        return next((list(rows) for rows in response.values() if isinstance(rows, list)), [])

    def query_one(self, entity: str, **equals: Any) -> dict[str, Any] | None:
        """The first ``entity`` whose fields equal ``equals`` (values quoted here), or None."""
        _entity_path(entity)
        if not equals:
            raise ValueError("query_one needs at least one field to match")
        for field in equals:
            if not _FIELD.match(field):
                raise ValueError(f"not a QuickBooks field name: {field!r}")
        where = " and ".join(f"{field} = {quote_value(value)}" for field, value in equals.items())
        rows = self.query(f"select * from {entity} where {where} maxresults 1")
        return rows[0] if rows else None

    def read(self, entity: str, entity_id: str) -> dict[str, Any]:
        body = self._call("GET", f"/{_entity_path(entity)}/{quote(str(entity_id), safe='')}")
        return _entity_of(body, entity)

    # ----------------------------------------------------------------- writes

    def create(self, entity: str, body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        """Create once per ``request_id``: a retry with the same id returns the entity created first."""
        answer = self._call("POST", f"/{_entity_path(entity)}", json=dict(body), write_id=request_id,
                            name=_name_in(body))
        return _entity_of(answer, entity)

    def sparse_update(self, entity: str, entity_id: str, sync_token: str, changes: Mapping[str, Any],
                      request_id: str) -> dict[str, Any]:
        """Change only ``changes`` (a ``Line`` array still replaces every line). A stale ``sync_token`` raises
        RetryableError("stale_sync_token"): re-read and call again with the new token."""
        payload = {**changes, "Id": str(entity_id), "SyncToken": str(sync_token), "sparse": True}
        answer = self._call("POST", f"/{_entity_path(entity)}", json=payload,
                            write_id=f"{request_id}-{sync_token}", name=_name_in(changes))
        return _entity_of(answer, entity)

    def void(self, entity: str, entity_id: str, sync_token: str, request_id: str) -> dict[str, Any]:
        answer = self._call("POST", f"/{_entity_path(entity)}", params={"operation": "void"},
                            json={"Id": str(entity_id), "SyncToken": str(sync_token)},
                            write_id=f"{request_id}-{sync_token}")
        return _entity_of(answer, entity)

    def batch(self, items: Sequence[Mapping[str, Any]], request_id: str) -> list[BatchItemResult]:
        """Run up to 30 items (``{"operation": "create", "Customer": {...}}`` or ``{"Query": "select ..."}``;
        ``bId`` defaults to the position). Results come in the order of ``items``; an item's Fault is its
        ``error``, mapped like any other answer, while the other items still succeed."""
        if not 0 < len(items) <= MAX_BATCH_ITEMS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} items, got {len(items)}")
        requests = [{**item, "bId": str(item.get("bId") or index)} for index, item in enumerate(items, 1)]
        body = self._call("POST", "/batch", json={"BatchItemRequest": requests},
                          write_id=request_id, id_limit=MAX_BATCH_REQUEST_ID)
        answers = {str(answer.get("bId")): answer for answer in body.get("BatchItemResponse") or []
                   if isinstance(answer, Mapping)}
        results = []
        for item in requests:
            bid = item["bId"]
            answer = answers.get(bid)
            where = f"{SYSTEM} batch item {bid}"
            if answer is None:
                results.append(BatchItemResult(bid, error=RetryableError(
                    f"{where} got no answer", reason="target_bad_response", target_status=200,
                    target_response=body)))
            elif _fault_of(answer) is not None:
                entity_body = next((value for key, value in item.items()
                                    if key not in ("bId", "operation") and isinstance(value, Mapping)), None)
                results.append(BatchItemResult(bid, error=fault_error(answer, status=200, where=where,
                                                                      name=_name_in(entity_body))))
            else:
                value = next((v for k, v in answer.items() if k != "bId" and isinstance(v, dict)), None)
                results.append(BatchItemResult(bid, value=value))
        return results

    # ----------------------------------------------------------------- plumbing

    def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None,
              write_id: str | None = None, id_limit: int = MAX_REQUEST_ID, name: str | None = None) -> dict[str, Any]:
        query = {"minorversion": str(self.connection.minor_version)}
        if write_id is not None:
            query["requestid"] = requestid_for(write_id, limit=id_limit)
        query.update(params or {})
        where = f"{SYSTEM} {method} {path}"
        try:
            response = send(self._http, method, path, system=SYSTEM, params=query,
                            json=jsonable(json) if json is not None else None)
        except DeliveryError as exc:
            # no answer (timeout, unreachable), or the token could not be had: already classified
            if exc.target_status is None or raised_getting_token(exc):
                raise
            raise fault_error(exc.target_response, status=exc.target_status, where=where,
                              retry_after=getattr(exc, "retry_after", None), name=name, fallback=exc) from exc
        try:
            body = response.json()
        except ValueError:
            raise RetryableError(f"{where} answered with a body that is not JSON", reason="target_bad_response",
                                 target_status=response.status_code,
                                 target_response=response.text[:2000]) from None
        if not isinstance(body, dict):
            raise RetryableError(f"{where} answered with a body that is not an object",
                                 reason="target_bad_response", target_status=response.status_code,
                                 target_response=body)
        if _fault_of(body) is not None:  # a Fault under a 200
            raise fault_error(body, status=response.status_code, where=where, name=name)
        return body

    def _take_permit(self, _request: httpx.Request) -> None:
        if self._limiter is not None:
            self._limiter.acquire(self._limit_key, max_wait=self._limit_wait)

    def _access_token(self, rejected: str | None) -> str:
        if rejected is None:
            state = self._store.current(self.realm)
            if state.access_token and state.access_valid(self._clock(), self._margin):
                return state.access_token
            rejected = state.access_token
        state = self._store.refresh(self.realm, self._refresh_tokens, stale=rejected)
        if not state.access_token:
            raise PermanentError(f"no access token for realm {self.realm}", reason="target_auth_failed")
        return state.access_token

    def _refresh_tokens(self, refresh_token: str) -> TokenResponse:
        """The OAuth refresh call (``do_refresh`` for the token store), with the token call's retry policy."""
        try:
            response = self._token_retrying(
                send, self._oauth, "POST", self.connection.token_url, system=f"{SYSTEM} OAuth",
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=(self.connection.client_id, self.connection.client_secret))
        except PermanentError as exc:
            error = exc.target_response.get("error") if isinstance(exc.target_response, dict) else None
            if error in ("invalid_grant", "invalid_client") or exc.target_status == 401:
                # rotated with the answer lost, revoked, expired; or the app's own credentials: only a person
                # can mend it, and until then every event of the connection waits
                raise ConnectionDownError(
                    f"QuickBooks refused to refresh the tokens of realm {self.realm} "
                    f"({error or exc.target_status}): reconnect the company",
                    connection=self.connection_name,
                    reason="credentials_rejected" if error != "invalid_client" and exc.target_status != 401
                    else "client_rejected",
                    target_status=exc.target_status, target_response=exc.target_response) from exc
            raise
        try:
            body = response.json()
            return TokenResponse.from_oauth(body, previous_refresh_token=refresh_token)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RetryableError(f"{SYSTEM} OAuth answered the refresh without tokens", reason="target_bad_response",
                                 target_status=response.status_code) from None
