"""Salesforce REST API client (API-NOTES §2): upserts by external id, collections, composite, SOQL.

* Auth is OAuth 2.0 client credentials against the org's **My Domain** token URL (``SalesforceAuth``, an
  ``httpx.Auth``): the token and the ``instance_url`` it comes with are cached per connected app and org for
  the process; a 401 ``INVALID_SESSION_ID`` (session timeout, revoked) gets one new token and one retry.
  There is no refresh token. A token answer ``invalid_client``/``invalid_client_id`` means the connected
  app's credentials are dead: ConnectionDownError, so events wait for a reconnect.
* Every request carries ``Sforce-Call-Options: client=<connector id>``: CDC's ``changeOrigin`` then names
  us, which is how the reverse flow recognises its own writes (source.py).
* Composite and collections answer 200 with per-item failures: every item is walked, and the first real
  failure (not the ``PROCESSING_HALTED``/``ALL_OR_NONE_OPERATION_ROLLED_BACK`` that follow it) is raised.
* ``Sforce-Limit-Info: api-usage=used/limit`` of every answer feeds ``ReportedAllocation`` (calls stop,
  retryable, once the org's 24-hour allocation is down to its reserve) and the ``SalesforceApiUsage`` metric.

  ===========================================  ==================================================
  403 ``REQUEST_LIMIT_EXCEEDED``               RetryableError ``rate_limited`` (throttling: the
                                               worker requeues without spending receive budget)
  ``UNABLE_TO_LOCK_ROW`` (400, or an item)     RetryableError ``record_locked``
  503 / 5xx / timeouts                         RetryableError (connectors.http)
  300, ``DUPLICATE_EXTERNAL_ID``               MultipleMatchesError (permanent, ``matching_ids``)
  401 after the one re-auth                    PermanentError ``target_auth_failed``
  404                                          PermanentError ``target_not_found``
  other 4xx / item errors                      PermanentError ``target_rejected`` with the error
                                               codes in the message
  ===========================================  ==================================================
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from switchyard.connectors.http import DEFAULT_TIMEOUT, jsonable, retry_after_seconds, send
from switchyard.errors import (
    ConnectionConfigError,
    ConnectionDownError,
    PermanentError,
    RetryableError,
)
from switchyard.rate_limit import ReportedAllocation

SYSTEM = "Salesforce"
DEFAULT_API_VERSION = "v62.0"
LIMIT_EXCEEDED_RETRY_SECONDS = 900.0  # the 24-hour allocation frees slowly: the longest SQS delay
MAX_COLLECTION_RECORDS = 200
RETRYABLE_ITEM_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
FOLLOWER_CODES = frozenset({"PROCESSING_HALTED", "ALL_OR_NONE_OPERATION_ROLLED_BACK"})
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
_LISTED_IDS = re.compile(r"\[([A-Za-z0-9, ]+)\]")  # "... more than one record found ...: [001…, 001…]"
_VERSION = re.compile(r"^v\d+\.\d$")


class SalesforceConnection(BaseModel):
    """The connection secret: ``{"base_url", "client_id", "client_secret",
    "api_version"?}``. ``base_url`` is the org's My Domain (``https://acme.my.salesforce.com``): the
    client-credentials flow is refused on ``login.salesforce.com``."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    base_url: str
    client_id: str
    client_secret: str
    api_version: str = DEFAULT_API_VERSION

    @field_validator("base_url")
    @classmethod
    def _my_domain(cls, value: str) -> str:
        value = value.rstrip("/")
        host = httpx.URL(value).host
        if not host:
            raise ValueError("base_url must be an absolute URL")
        if host in ("login.salesforce.com", "test.salesforce.com"):
            raise ValueError("client credentials need the org's My Domain URL, not login/test.salesforce.com")
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("api_version looks like v62.0")
        return value

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/services/oauth2/token"

    @classmethod
    def from_secret(cls, value: Mapping[str, Any]) -> SalesforceConnection:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise ConnectionConfigError(f"Salesforce connection is incomplete: {where}: {error['msg']}") from None


# --------------------------------------------------------------------------- errors


class MultipleMatchesError(PermanentError):
    """Several records share the external id (300, or ``DUPLICATE_EXTERNAL_ID``): never guess which one."""

    def __init__(self, message: str, *, matching_ids: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("target_response", {"matching_ids": list(matching_ids)})
        super().__init__(message, reason="multiple_matches", **kwargs)
        self.matching_ids = list(matching_ids)


def _error_codes(errors: Any) -> list[str]:
    """The codes of a Salesforce error array (``errorCode``; collections say ``statusCode``)."""
    if not isinstance(errors, list):
        return []
    return [str(e.get("errorCode") or e.get("statusCode")) for e in errors if isinstance(e, dict)]


def _only_followers(errors: Any) -> bool:
    """True for a failure that only follows another (rolled back, halted): the other one is the cause."""
    codes = set(_error_codes(errors))
    return bool(codes) and codes <= FOLLOWER_CODES


def item_error(errors: Any, *, where: str, status: int | None = None) -> Exception:
    """The Switchyard error for one failed item or answer (its Salesforce error array)."""
    codes = [code for code in _error_codes(errors) if code not in FOLLOWER_CODES] or _error_codes(errors)
    messages = "; ".join(f"{e.get('errorCode') or e.get('statusCode')}: {e.get('message')}"
                         for e in errors if isinstance(e, dict)) if isinstance(errors, list) else str(errors)
    text = f"{where}: {messages}"
    if RETRYABLE_ITEM_CODES & set(codes):
        return RetryableError(text, reason="record_locked", target_status=status, target_response=errors)
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        return RetryableError(text, reason="rate_limited", retry_after=LIMIT_EXCEEDED_RETRY_SECONDS,
                              target_status=status, target_response=errors)
    if "DUPLICATE_EXTERNAL_ID" in codes:
        listed = _LISTED_IDS.search(messages)
        ids = [part.strip() for part in listed.group(1).split(",") if part.strip()] if listed else []
        return MultipleMatchesError(text, matching_ids=ids, target_status=status)
    return PermanentError(text, reason="target_rejected", target_status=status, target_response=errors)


# --------------------------------------------------------------------------- auth


@dataclass(frozen=True)
class Session:
    access_token: str
    instance_url: str


class _SessionCache:
    """One session per (token URL, client id) for the whole process; invalidating names the token it
    replaces, so a thread holding an old token never throws away the new one another thread just got."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], Session] = {}

    def get(self, key: tuple[str, str]) -> Session | None:
        with self._lock:
            return self._sessions.get(key)

    def put(self, key: tuple[str, str], session: Session) -> None:
        with self._lock:
            self._sessions[key] = session

    def invalidate(self, key: tuple[str, str], session: Session) -> None:
        with self._lock:
            if self._sessions.get(key) == session:
                del self._sessions[key]


SESSIONS = _SessionCache()


def _invalid_session(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
    try:
        return "INVALID_SESSION_ID" in _error_codes(response.json())
    except ValueError:
        return True  # a 401 without Salesforce's body: a new session is still the one thing to try


class SalesforceAuth(httpx.Auth):
    """Client credentials on the My Domain token URL; Bearer on every request; one re-auth on
    ``INVALID_SESSION_ID``. Requests are sent to the session's ``instance_url`` (relative URLs are rebased)."""

    requires_response_body = True

    def __init__(self, connection: SalesforceConnection, *, connection_name: str | None = None,
                 cache: _SessionCache | None = None) -> None:
        self._connection = connection
        self._connection_name = connection_name
        self._cache = cache if cache is not None else SESSIONS
        self._key = (connection.token_url, connection.client_id)

    def session(self) -> Session | None:
        return self._cache.get(self._key)

    def _token_request(self) -> httpx.Request:
        return httpx.Request("POST", self._connection.token_url, data={
            "grant_type": "client_credentials", "client_id": self._connection.client_id,
            "client_secret": self._connection.client_secret}, headers={"Accept": "application/json"})

    def _session_from(self, response: httpx.Response) -> Session:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        if status == 200 and isinstance(body, dict) and body.get("access_token") and body.get("instance_url"):
            session = Session(str(body["access_token"]), str(body["instance_url"]).rstrip("/"))
            self._cache.put(self._key, session)
            return session
        where = f"{SYSTEM} answered {status} to the token request"
        if status in (408, 429) or status >= 500:
            raise RetryableError(where, reason="rate_limited" if status == 429 else "target_unavailable",
                                 retry_after=retry_after_seconds(response), target_status=status,
                                 target_response=body)
        error = body.get("error") if isinstance(body, dict) else None
        if error in ("invalid_client", "invalid_client_id", "unauthorized_client"):
            raise ConnectionDownError(f"{where}: {error}", connection=self._connection_name,
                                      reason="client_rejected", target_status=status, target_response=body)
        raise PermanentError(f"{where}: {error}", reason="target_auth_failed", target_status=status,
                             target_response=body)

    def _prepare(self, request: httpx.Request, session: Session) -> None:
        instance = httpx.URL(session.instance_url)
        request.url = request.url.copy_with(scheme=instance.scheme, host=instance.host, port=instance.port)
        request.headers["Host"] = instance.netloc.decode()
        request.headers["Authorization"] = f"Bearer {session.access_token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        session = self._cache.get(self._key)
        if session is None:
            session = self._session_from((yield self._token_request()))
        self._prepare(request, session)
        response = yield request
        if _invalid_session(response):
            self._cache.invalidate(self._key, session)
            self._prepare(request, self._session_from((yield self._token_request())))
            yield request


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class UpsertResult:
    id: str
    created: bool


@dataclass(frozen=True)
class SubResponse:
    reference_id: str
    status: int
    body: Any


class UsageObserver:
    """What the client does with each ``Sforce-Limit-Info``: guard the allocation, publish the metric."""

    def __init__(self, allocation: ReportedAllocation | None = None,
                 metric: Callable[[int, int], None] | None = None) -> None:
        self.allocation = allocation
        self.metric = metric

    def __call__(self, used: int, limit: int) -> None:
        if self.allocation is not None:
            self.allocation.observe(used, limit)
        if self.metric is not None:
            self.metric(used, limit)


class SalesforceClient:
    def __init__(self, connection: SalesforceConnection, *, call_options_client: str,
                 transport: httpx.BaseTransport | None = None, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
                 connection_name: str | None = None, usage: UsageObserver | None = None) -> None:
        if not re.fullmatch(r"[\w.-]{1,40}", call_options_client):
            raise ValueError("the Sforce-Call-Options client id is 1-40 letters, digits, '.', '-' or '_'")
        self.connection = connection
        self.call_options_client = call_options_client
        self.version = connection.api_version
        self._usage = usage or UsageObserver()
        self.auth = SalesforceAuth(connection, connection_name=connection_name)
        # the base URL is a placeholder: SalesforceAuth rebases every request onto the session's instance_url
        self._http = httpx.Client(base_url=connection.base_url, auth=self.auth, timeout=timeout,
                                  transport=transport, event_hooks={"response": [self._observe_usage]},
                                  headers={"Accept": "application/json",
                                           "Sforce-Call-Options": f"client={call_options_client}"})

    def close(self) -> None:
        self._http.close()

    @property
    def data_path(self) -> str:
        return f"/services/data/{self.version}"

    def _call(self, method: str, path: str, *, json: Any = None,
              params: Mapping[str, str] | None = None) -> httpx.Response:
        """One API call: the allocation guard first, then the answer classified (see the module docstring)."""
        if self._usage.allocation is not None:
            self._usage.allocation.check()
        where = f"{SYSTEM} {method} {path}"
        try:
            response = send(self._http, method, path, system=SYSTEM, params=params,
                            json=jsonable(json) if json is not None else None)
        except PermanentError as exc:
            codes = _error_codes(exc.target_response)
            if exc.target_status == 300:
                urls = exc.target_response if isinstance(exc.target_response, list) else []
                ids = [str(url).rstrip("/").rsplit("/", 1)[-1] for url in urls]
                raise MultipleMatchesError(f"{where}: {len(ids)} records share the external id", matching_ids=ids,
                                           target_status=300) from None
            if exc.target_status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
                raise RetryableError(f"{where}: the org's 24-hour API allocation is used up", reason="rate_limited",
                                     retry_after=LIMIT_EXCEEDED_RETRY_SECONDS, target_status=403,
                                     target_response=exc.target_response) from None
            if codes and exc.target_status not in (401, 404):
                raise item_error(exc.target_response, where=where, status=exc.target_status) from None
            raise
        return response

    def _observe_usage(self, response: httpx.Response) -> None:
        """Response hook: every answer, errors included, says how much of the 24-hour allocation is used."""
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self._usage(int(match.group(1)), int(match.group(2)))

    # ------------------------------------------------------------------ operations

    def upsert(self, sobject: str, id_field: str, value: str, fields: Mapping[str, Any], *,
               update_only: bool = False) -> UpsertResult:
        """PATCH by external id: created (201) or updated (200 with a body from v46.0, 204 before).
        ``update_only``: never create (a missing record is a 404 PermanentError ``target_not_found``)."""
        path = f"{self.data_path}/sobjects/{sobject}/{id_field}/{quote(value, safe='')}"
        body = {k: v for k, v in fields.items() if k != id_field}
        response = self._call("PATCH", path, json=body, params={"updateOnly": "true"} if update_only else None)
        if response.status_code == 204 or not response.content:
            return UpsertResult(id="", created=False)
        answer = response.json()
        return UpsertResult(id=str(answer.get("id") or ""), created=bool(answer.get("created")))

    def upsert_collection(self, sobject: str, id_field: str, records: Sequence[Mapping[str, Any]], *,
                          all_or_none: bool = False) -> list[UpsertResult]:
        """sObject Collections upsert (≤ 200 records of one type). Every item is walked; the first failure
        is raised (earlier items stay written unless ``all_or_none``: upserts are safe to repeat)."""
        if not 1 <= len(records) <= MAX_COLLECTION_RECORDS:
            raise ValueError(f"a collection holds 1 to {MAX_COLLECTION_RECORDS} records, got {len(records)}")
        body = {"allOrNone": all_or_none,
                "records": [{"attributes": {"type": sobject}, **record} for record in records]}
        answers = self._call("PATCH", f"{self.data_path}/composite/sobjects/{sobject}/{id_field}", json=body).json()
        if not isinstance(answers, list) or len(answers) != len(records):
            raise RetryableError(f"{SYSTEM} answered a collection of {len(records)} with {answers!r:.200}",
                                 reason="target_bad_response")
        failures = [(i, a) for i, a in enumerate(answers) if not a.get("success")]
        real = [(i, a) for i, a in failures if not _only_followers(a.get("errors"))]
        if failures:
            index, answer = (real or failures)[0]
            raise item_error(answer.get("errors"), where=f"{SYSTEM} {sobject} {records[index].get(id_field)}",
                             status=200)
        return [UpsertResult(id=str(a.get("id")), created=bool(a.get("created"))) for a in answers]

    def composite(self, subrequests: Sequence[Mapping[str, Any]], *, all_or_none: bool = True) -> list[SubResponse]:
        """One composite request (one API call); every subresponse is walked and the first real failure
        raised (a 300 inside becomes MultipleMatchesError)."""
        body = {"allOrNone": all_or_none, "collateSubrequests": False, "compositeRequest": list(subrequests)}
        answer = self._call("POST", f"{self.data_path}/composite", json=body).json()
        items = [SubResponse(str(r.get("referenceId")), int(r.get("httpStatusCode", 0)), r.get("body"))
                 for r in (answer.get("compositeResponse") or [])]
        if len(items) != len(subrequests):
            raise RetryableError(f"{SYSTEM} answered {len(subrequests)} subrequests with {len(items)}",
                                 reason="target_bad_response")
        failed = [item for item in items if item.status >= 300]
        real = [item for item in failed if not _only_followers(item.body)]
        if failed:
            first = (real or failed)[0]
            if first.status == 300:
                ids = [str(url).rstrip("/").rsplit("/", 1)[-1] for url in first.body or []]
                raise MultipleMatchesError(f"{SYSTEM} composite {first.reference_id}: {len(ids)} records share "
                                           "the external id", matching_ids=ids, target_status=300)
            if first.status >= 500:
                raise RetryableError(f"{SYSTEM} composite {first.reference_id} answered {first.status}",
                                     reason="target_unavailable", target_status=first.status,
                                     target_response=first.body)
            raise item_error(first.body, where=f"{SYSTEM} composite {first.reference_id}", status=first.status)
        return items

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query (``nextRecordsUrl`` followed to the end)."""
        answer = self._call("GET", f"{self.data_path}/query", params={"q": soql}).json()
        records = list(answer.get("records") or [])
        while not answer.get("done", True) and answer.get("nextRecordsUrl"):
            answer = self._call("GET", str(answer["nextRecordsUrl"])).json()
            records.extend(answer.get("records") or [])
        return records

    def get(self, sobject: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None:
        """A record by id; None when it no longer exists (deleted, merged away)."""
        params = {"fields": ",".join(fields)} if fields else None
        try:
            return dict(self._call("GET", f"{self.data_path}/sobjects/{sobject}/{record_id}", params=params).json())
        except PermanentError as exc:
            if exc.target_status == 404:
                return None
            raise

    def update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        self._call("PATCH", f"{self.data_path}/sobjects/{sobject}/{record_id}", json=dict(fields))
