"""Stateful in-memory Salesforce org: the REST API subset Switchyard uses, and Change Data Capture.

Behaves like a real org on its worst ordinary day (API-NOTES §2): OAuth 2.0 client credentials on
the My Domain token URL (``instance_url`` in the answer), upsert by external id (201 created, 200 or
204 updated by API version, 300 for several matches, 404 for a field that is no external id),
sObject Collections upsert and Composite with ``@{ref.field}`` references and ``allOrNone`` (both
answer 200 with per-item failures), a SOQL subset for price-book lookups, Salesforce's error array,
``Sforce-Limit-Info`` on every data call, a 24-hour rolling API allocation answered with 403
``REQUEST_LIMIT_EXCEEDED``, ``UNABLE_TO_LOCK_ROW`` on demand, 401 ``INVALID_SESSION_ID``, injected
503s, and Change Data Capture events for Account and Contact (``ChangeEventHeader`` with
``changeOrigin`` carrying the writer's ``Sforce-Call-Options: client=…``) in the envelope Event
Relay puts on an EventBridge partner bus, handed to ``event_sink``.

Usage::

    with SalesforceSandbox() as org:                      # serves on 127.0.0.1:<free port>
        org.add_product("DESK-STAND-180", "Standing desk", 899)
        org.update_record("Contact", contact_id, Phone="+1 555 0100")   # a rep's edit: a CDC event
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.faults import FaultInjector

DEFAULT_CLIENT_ID = "switchyard-connected-app"
DEFAULT_CLIENT_SECRET = "salesforce-secret"
DEFAULT_ORG_ID = "00D5g000000SWTCHY"
DEFAULT_CHANNEL_ID = "0YL5g0000000SWTCH"
DEFAULT_DAILY_API_LIMIT = 100_000
LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})
DAY_SECONDS = 24 * 3600
MAX_COLLECTION_RECORDS = 200
MAX_COMPOSITE_SUBREQUESTS = 25
STANDARD_PRICE_BOOK = "Standard Price Book"
# the first API version that answers an upsert's update with 200 and a body instead of 204
UPSERT_BODY_VERSION = 46.0

KEY_PREFIXES = {"Account": "001", "Contact": "003", "Opportunity": "006", "OpportunityLineItem": "00k",
                "RecordType": "012", "Pricebook2": "01s", "Product2": "01t", "PricebookEntry": "01u",
                "Order": "801", "OrderItem": "802"}
_SYSTEM_FIELDS = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted")
# object -> writable fields; every object also has the read-only system fields above
FIELDS: dict[str, frozenset[str]] = {
    "Account": frozenset({"Name", "ExternalID__c", "Phone", "Website", "Type", "RecordTypeId", "Industry",
                          "AccountNumber", "Description", "BillingStreet", "BillingCity", "BillingState",
                          "BillingPostalCode", "BillingCountry", "ShippingStreet", "ShippingCity", "ShippingState",
                          "ShippingPostalCode", "ShippingCountry"}),
    "Contact": frozenset({"FirstName", "LastName", "Email", "Phone", "MobilePhone", "Title", "AccountId",
                          "ExternalID__c", "MailingStreet", "MailingCity", "MailingState", "MailingPostalCode",
                          "MailingCountry", "Description"}),
    "Product2": frozenset({"Name", "ProductCode", "IsActive", "Description", "Family", "ExternalID__c",
                           "StockOnHand__c"}),
    "Pricebook2": frozenset({"Name", "IsActive", "Description"}),
    "PricebookEntry": frozenset({"Pricebook2Id", "Product2Id", "UnitPrice", "IsActive", "UseStandardPrice"}),
    "Order": frozenset({"AccountId", "EffectiveDate", "Status", "Pricebook2Id", "ExternalID__c", "Description",
                        "Name", "PoNumber"}),
    "OrderItem": frozenset({"OrderId", "PricebookEntryId", "Quantity", "UnitPrice", "Description",
                            "ExternalID__c"}),
    "Opportunity": frozenset({"Name", "StageName", "CloseDate", "AccountId", "Amount", "Pricebook2Id",
                              "ExternalID__c", "Description"}),
    "OpportunityLineItem": frozenset({"OpportunityId", "PricebookEntryId", "Quantity", "UnitPrice",
                                      "Description", "ExternalID__c"}),
    "RecordType": frozenset({"Name", "DeveloperName", "SobjectType", "IsActive"}),
}
READ_ONLY_FIELDS = {"Pricebook2": frozenset({"IsStandard"}), "Order": frozenset({"TotalAmount", "OrderNumber"}),
                    "OrderItem": frozenset({"Product2Id", "ListPrice", "TotalPrice"}),
                    "PricebookEntry": frozenset({"ProductCode", "Name"})}
EXTERNAL_ID_FIELDS = {name: frozenset({"ExternalID__c"}) for name in
                      ("Account", "Contact", "Product2", "Order", "OrderItem", "Opportunity",
                       "OpportunityLineItem")}
REQUIRED_ON_CREATE = {
    "Account": ("Name",), "Contact": ("LastName",), "Product2": ("Name",), "Pricebook2": ("Name",),
    "PricebookEntry": ("Pricebook2Id", "Product2Id", "UnitPrice"),
    "Order": ("AccountId", "EffectiveDate", "Status"),
    "OrderItem": ("OrderId", "PricebookEntryId", "Quantity", "UnitPrice"),
    "Opportunity": ("Name", "StageName", "CloseDate"),
    "OpportunityLineItem": ("OpportunityId", "PricebookEntryId", "Quantity", "UnitPrice"),
    "RecordType": ("Name", "DeveloperName", "SobjectType"),
}
# reference field -> the object it points to; its relationship name is the field without "Id"
REFERENCES = {"AccountId": "Account", "OrderId": "Order", "OpportunityId": "Opportunity", "Product2Id": "Product2",
              "Pricebook2Id": "Pricebook2", "PricebookEntryId": "PricebookEntry", "RecordTypeId": "RecordType"}
DATE_FIELDS = frozenset({"EffectiveDate", "CloseDate"})
NUMBER_FIELDS = frozenset({"UnitPrice", "Quantity", "Amount", "StockOnHand__c"})
BOOLEAN_FIELDS = frozenset({"IsActive", "UseStandardPrice"})
ORDER_STATUSES = {"Draft": "Draft", "Activated": "Activated"}  # status -> category
CDC_OBJECTS = ("Account", "Contact")

API_PREFIX = "/services/data/"
TOKEN_PATH = "/services/oauth2/token"


# --------------------------------------------------------------------------- errors


class SalesforceError(Exception):
    """One REST error: answered as Salesforce's array ``[{"message", "errorCode", "fields"?}]``."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields) if fields is not None else None
        self.headers = dict(headers or {})

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return item

    def collection_item(self) -> dict[str, Any]:
        """sObject Collections name the code ``statusCode`` and always list ``fields``."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}

    def response(self) -> Response:
        return http.json_response([self.item()], status=self.status, headers=self.headers)


class OAuthError(Exception):
    """An OAuth endpoint error: ``{"error", "error_description"}`` (RFC 6749 shape)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description

    def response(self) -> Response:
        return http.json_response({"error": self.error, "error_description": self.description}, status=self.status)


def _fault_error_body(message: str) -> list[dict[str, str]]:
    code = "SERVER_UNAVAILABLE" if message == "Service Unavailable" else re.sub(r"\W+", "_", message.upper())
    return [{"message": message, "errorCode": code}]


def _not_found(message: str = "The requested resource does not exist") -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", message)


def _required_missing(names: Sequence[str]) -> SalesforceError:
    return SalesforceError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(names)}]",
                           list(names))


class _Halted(Exception):
    """A composite subrequest could not run (a reference to a failed or missing result)."""


def salesforce_datetime(epoch_seconds: float) -> str:
    """Salesforce's date-time text: ``2024-05-01T12:00:00.000+0000``."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{int(epoch_seconds * 1000) % 1000:03d}+0000"


# --------------------------------------------------------------------------- change events


@dataclass(frozen=True)
class ChangeEvent:
    """One CDC event as Event Relay delivers it to EventBridge (``envelope``)."""

    envelope: dict[str, Any]

    @property
    def header(self) -> dict[str, Any]:
        return self.envelope["detail"]["payload"]["ChangeEventHeader"]

    @property
    def payload(self) -> dict[str, Any]:
        return self.envelope["detail"]["payload"]


def eventbridge_entries(events: Iterable[ChangeEvent], bus_name: str) -> list[dict[str, Any]]:
    """``PutEvents`` entries for a partner bus (``Source`` is the partner event source name)."""
    return [{"Source": e.envelope["source"], "DetailType": e.envelope["detail-type"],
             "Detail": json.dumps(e.envelope["detail"]), "EventBusName": bus_name} for e in events]


# --------------------------------------------------------------------------- SOQL subset

_SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
                   r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", re.IGNORECASE | re.DOTALL)
_CONDITION = re.compile(r"^\s*(?P<field>[\w.]+)\s*(?:(?P<op>=|!=)\s*(?P<value>'(?:[^'\\]|\\.)*'|true|false|null|"
                        r"-?\d+(?:\.\d+)?)|\s+IN\s*\((?P<values>[^)]*)\))\s*$", re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _soql_literal(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if text.startswith("'"):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return float(text) if "." in text else int(text)


def _split_and(where: str) -> list[str]:
    """Split a WHERE clause on AND outside quoted literals (OR is not in the subset: such a part is malformed)."""
    parts, current = [], ""
    for token in re.split(r"('(?:[^'\\]|\\.)*')", where):
        if token.startswith("'"):
            current += token
            continue
        pieces = re.split(r"\s+AND\s+", token, flags=re.IGNORECASE)
        current += pieces[0]
        for piece in pieces[1:]:
            parts.append(current)
            current = piece
    parts.append(current)
    return parts


# --------------------------------------------------------------------------- state


@dataclass
class _State:
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # object -> id -> record
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    api_calls: deque[float] = field(default_factory=deque)  # clock time of every counted call (24 h)
    api_usage_offset: int = 0  # calls "made by other integrations" (set_api_usage)
    lock_failures: int = 0  # the next record writes that meet UNABLE_TO_LOCK_ROW
    events: list[ChangeEvent] = field(default_factory=list)
    commit_number: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class _Write:
    """What one API transaction writes: the calling client (for ``changeOrigin``) and its pending events."""

    client: str | None
    api_version: str
    pending: list[tuple[str, str, str, dict[str, Any], list[str], list[str]]] = field(default_factory=list)


_ROUTES = Map(
    [
        Rule(TOKEN_PATH, endpoint="token", methods=["POST"]),
        Rule("/services/data/", endpoint="versions", methods=["GET"]),
        Rule("/services/data/<version>/query", endpoint="query", methods=["GET"]),
        Rule("/services/data/<version>/limits", endpoint="limits", methods=["GET"]),
        Rule("/services/data/<version>/composite", endpoint="composite", methods=["POST"]),
        Rule("/services/data/<version>/composite/sobjects/<sobject>/<id_field>", endpoint="collection_upsert",
             methods=["PATCH"]),
        Rule("/services/data/<version>/sobjects/<sobject>", endpoint="create", methods=["POST"]),
        Rule("/services/data/<version>/sobjects/<sobject>/<record_id>", endpoint="get", methods=["GET"]),
        Rule("/services/data/<version>/sobjects/<sobject>/<record_id>", endpoint="update", methods=["PATCH"]),
        Rule("/services/data/<version>/sobjects/<sobject>/<record_id>", endpoint="delete", methods=["DELETE"]),
        Rule("/services/data/<version>/sobjects/<sobject>/<id_field>/<path:value>", endpoint="upsert",
             methods=["PATCH"]),
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
        Rule("/_sandbox/records/<sobject>/<record_id>", endpoint="admin_update", methods=["PATCH"]),
        Rule("/_sandbox/products", endpoint="admin_add_product", methods=["POST"]),
    ],
    strict_slashes=False,
)


def _version_number(version: str) -> float:
    match = re.fullmatch(r"v(\d+\.\d)", version)
    if match is None:
        raise _not_found()
    return float(match.group(1))


class SalesforceSandbox(http.SandboxApp):
    """An in-memory Salesforce org (WSGI app ``wsgi_app``; ``serve()`` or ``with`` for a local port)."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        *,
        org_id: str = DEFAULT_ORG_ID,
        channel_id: str = DEFAULT_CHANNEL_ID,
        instance_url: str | None = None,
        daily_api_limit: int = DEFAULT_DAILY_API_LIMIT,
        token_ttl_seconds: int = 7200,
        clock: Callable[[], float] = time.time,
        event_sink: Callable[[ChangeEvent], None] | None = None,
        region: str = "us-east-1",
        aws_account: str = "123456789012",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.org_id = org_id
        self.channel_id = channel_id
        self._instance_url = instance_url
        self.daily_api_limit = daily_api_limit
        self.token_ttl_seconds = token_ttl_seconds
        self.clock = clock
        self.event_sink = event_sink
        self.region = region
        self.aws_account = aws_account
        self.requests = http.RequestLog()
        self.call_options: list[tuple[str, str, str | None]] = []  # (method, path, client) of every write
        self.faults = FaultInjector(error_body=_fault_error_body)
        self._lock = threading.RLock()
        self._state = _State()
        self._seed()

    # ----------------------------------------------------------------- set-up and inspection

    @property
    def instance_url(self) -> str:
        return self._instance_url or self.base_url or "http://salesforce.test"

    @property
    def partner_event_source(self) -> str:
        """The EventBridge partner event source name Event Relay creates for this org's channel."""
        return f"aws.partner/salesforce.com/{self.org_id}/{self.channel_id}"

    def create_partner_event_source(self, events_client: Any) -> str:
        """What Salesforce does when an Event Relay is configured: offer a partner event source to the AWS
        account (pending until the account associates a partner bus with it). Returns its name."""
        events_client.create_partner_event_source(Name=self.partner_event_source, Account=self.aws_account)
        return self.partner_event_source

    def _seed(self) -> None:
        self.standard_price_book_id = self._insert("Pricebook2", {"Name": STANDARD_PRICE_BOOK, "IsActive": True},
                                                   system={"IsStandard": True})
        for developer_name, name in (("Business", "Business Account"), ("Person", "Person Account")):
            self._insert("RecordType", {"Name": name, "DeveloperName": developer_name, "SobjectType": "Account",
                                        "IsActive": True})

    def reset(self) -> None:
        with self._lock:
            self._state = _State()
            self._seed()
        self.requests.clear()
        self.call_options.clear()
        self.faults.clear()

    def records(self, sobject: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._state.records.get(sobject, {}).values()))

    def record(self, sobject: str, record_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._record(sobject, record_id))

    def find(self, sobject: str, **values: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._state.records.get(sobject, {}).values()
                    if all(r.get(k) == v for k, v in values.items())]

    @property
    def change_events(self) -> list[ChangeEvent]:
        with self._lock:
            return list(self._state.events)

    @property
    def api_usage(self) -> int:
        with self._lock:
            return self._usage(self.clock())

    def set_api_usage(self, calls: int) -> None:
        """Pretend other integrations made ``calls`` API calls in the last 24 hours."""
        with self._lock:
            self._state.api_usage_offset = calls - len(self._state.api_calls)

    def lock_rows(self, n: int) -> None:
        """The next ``n`` record writes fail with ``UNABLE_TO_LOCK_ROW`` (another transaction holds the row)."""
        with self._lock:
            self._state.lock_failures = n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"records": copy.deepcopy(self._state.records), "apiUsage": self._usage(self.clock()),
                    "apiLimit": self.daily_api_limit,
                    "changeEvents": [copy.deepcopy(e.envelope) for e in self._state.events]}

    # ----------------------------------------------------------------- a user's actions in the org (UI: no origin)

    def add_product(self, code: str, name: str, price: float, *, active: bool = True,
                    price_book_id: str | None = None, external_id: str | None = None) -> dict[str, str]:
        """A Product2 with an entry in the standard price book (and ``price_book_id``, if given)."""
        with self._lock:
            extra = {"ExternalID__c": external_id} if external_id is not None else {}
            product_id = self._insert("Product2", {"Name": name, "ProductCode": code, "IsActive": True, **extra})
            entries = {"standard": self._insert("PricebookEntry", {
                "Pricebook2Id": self.standard_price_book_id, "Product2Id": product_id, "UnitPrice": price,
                "IsActive": active, "UseStandardPrice": False})}
            if price_book_id is not None:
                entries["custom"] = self._insert("PricebookEntry", {
                    "Pricebook2Id": price_book_id, "Product2Id": product_id, "UnitPrice": price,
                    "IsActive": active, "UseStandardPrice": False})
            return {"product": product_id, **entries}

    def create_record(self, sobject: str, **fields: Any) -> str:
        """A user creates a record in the UI: emits CREATE (no ``changeOrigin``); no uniqueness check, so two
        records may share an external id, as in an org whose external id field is not Unique."""
        with self._lock:
            write = _Write(client=None, api_version="")
            record_id = self._insert(sobject, fields, write=write, ui=True)
            self._commit(write)
            return record_id

    def update_record(self, sobject: str, record_id: str, **fields: Any) -> None:
        """A rep edits a record in the UI: emits UPDATE with the changed fields (no ``changeOrigin``)."""
        self.bulk_update(sobject, [record_id], **fields)

    def bulk_update(self, sobject: str, record_ids: Sequence[str], **fields: Any) -> None:
        """One change applied to several records in one transaction: one event with all their ``recordIds``."""
        with self._lock:
            write = _Write(client=None, api_version="")
            for record_id in record_ids:
                self._update(sobject, record_id, fields, write=write, check_locks=False)
            self._commit(write, merge=True)

    def delete_record(self, sobject: str, record_id: str) -> None:
        with self._lock:
            write = _Write(client=None, api_version="")
            self._delete(sobject, record_id, write)
            self._commit(write)

    def emit_gap(self, sobject: str, record_ids: Sequence[str], change_type: str = "GAP_UPDATE") -> None:
        """A gap event: CDC could not produce the change itself (too large, an internal error)."""
        if change_type not in ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"):
            raise ValueError(f"not a gap change type: {change_type}")
        with self._lock:
            write = _Write(client=None, api_version="")
            write.pending.append((sobject, change_type, "", {}, list(record_ids), []))
            self._commit(write, merge=True)

    # ----------------------------------------------------------------- WSGI

    def _handle(self, request: Request) -> Response:
        path = request.path
        is_api = path.startswith(API_PREFIX) or path.rstrip("/") == TOKEN_PATH
        if is_api:
            fault = self.faults.apply(request)
            if fault is not None:
                return fault
        try:
            with self._lock:
                endpoint, values = _ROUTES.bind("salesforce").match(path, request.method)
                if path.startswith(API_PREFIX) and endpoint != "versions":
                    self._authenticate(request)
                    now = self.clock()
                    if self._usage(now) >= self.daily_api_limit:
                        raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.",
                                              headers=self._limit_header(now))
                    self._state.api_calls.append(now)
                    try:
                        response = getattr(self, f"_ep_{endpoint}")(request, **values)
                    except SalesforceError as error:
                        error.headers.update(self._limit_header(now))
                        raise
                    response.headers.update(self._limit_header(now))
                    return response
                return getattr(self, f"_ep_{endpoint}")(request, **values)
        except (SalesforceError, OAuthError) as error:
            return error.response()
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(error.valid_methods or ()))
            return SalesforceError(405, "METHOD_NOT_ALLOWED",
                                   f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
                                   headers={"Allow": allowed}).response()
        except HTTPException:
            return _not_found().response()

    def _usage(self, now: float) -> int:
        calls = self._state.api_calls
        while calls and calls[0] <= now - DAY_SECONDS:
            calls.popleft()
        return max(0, len(calls) + self._state.api_usage_offset)

    def _limit_header(self, now: float) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self._usage(now)}/{self.daily_api_limit}"}

    def _authenticate(self, request: Request) -> None:
        auth = request.authorization
        token = auth.token if auth is not None and auth.type == "bearer" else None
        expires = self._state.tokens.get(token or "")
        if expires is None or self.clock() >= expires:
            raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid",
                                  headers={"WWW-Authenticate": 'Token'})

    @staticmethod
    def _calling_client(request: Request) -> str | None:
        options = request.headers.get("Sforce-Call-Options", "")
        for option in options.split(","):
            name, _, value = option.strip().partition("=")
            if name.strip() == "client" and value.strip():
                return value.strip()
        return None

    def _write(self, request: Request, version: str) -> _Write:
        client = self._calling_client(request)
        self.call_options.append((request.method, request.path, client))
        return _Write(client=client, api_version=version)

    # ----------------------------------------------------------------- OAuth 2.0

    def _ep_token(self, request: Request) -> Response:
        host = (request.host or "").split(":")[0].lower()
        if host in LOGIN_HOSTS:
            raise OAuthError(400, "invalid_request", "request not supported on this domain")
        form = request.form
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant type not supported")
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, client_secret = auth.username, auth.password
        else:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if client_id is None or not hmac.compare_digest(client_id.encode(), self.client_id.encode()):
            raise OAuthError(400, "invalid_client_id", "client identifier invalid")
        if client_secret is None or not hmac.compare_digest(client_secret.encode(), self.client_secret.encode()):
            raise OAuthError(400, "invalid_client", "invalid client credentials")
        now = self.clock()
        self._state.tokens = {t: exp for t, exp in self._state.tokens.items() if exp > now}
        token = f"{self.org_id}!{secrets.token_urlsafe(48)}"
        self._state.tokens[token] = now + self.token_ttl_seconds
        issued_at = str(int(now * 1000))
        identity = f"{self.instance_url}/id/{self.org_id}/0055g00000SWTCHAAA"
        signature = base64.b64encode(hmac.new(self.client_secret.encode(), (identity + issued_at).encode(),
                                              hashlib.sha256).digest()).decode()
        return http.json_response({
            "access_token": token, "instance_url": self.instance_url, "id": identity, "token_type": "Bearer",
            "issued_at": issued_at, "signature": signature, "token_format": "opaque",
        }, headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"})

    def expire_tokens(self) -> None:
        """Every session ends now (an admin revoked them, or the org's session timeout passed)."""
        with self._lock:
            self._state.tokens.clear()

    # ----------------------------------------------------------------- REST endpoints

    def _ep_versions(self, request: Request) -> Response:
        return http.json_response([{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}])

    def _ep_limits(self, request: Request, version: str) -> Response:
        _version_number(version)
        used = self._usage(self.clock())
        return http.json_response({"DailyApiRequests": {"Max": self.daily_api_limit,
                                                        "Remaining": max(0, self.daily_api_limit - used)}})

    def _ep_get(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        _version_number(version)
        self._check_object(sobject)
        record = self._record(sobject, record_id)
        wanted = request.args.get("fields")
        return http.json_response(self._render(sobject, record, wanted.split(",") if wanted else None))

    def _ep_create(self, request: Request, version: str, sobject: str) -> Response:
        _version_number(version)
        self._check_object(sobject)
        body = self._body(request)
        write = self._write(request, version)
        record_id = self._transaction(write, lambda: self._insert(sobject, body, write=write))
        return http.json_response({"id": record_id, "success": True, "errors": []}, status=201)

    def _ep_update(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        _version_number(version)
        self._check_object(sobject)
        body = self._body(request)
        write = self._write(request, version)
        self._transaction(write, lambda: self._update(sobject, record_id, body, write=write))
        return Response(status=204)

    def _ep_delete(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        _version_number(version)
        self._check_object(sobject)
        write = self._write(request, version)
        self._transaction(write, lambda: self._delete(sobject, record_id, write))
        return Response(status=204)

    def _ep_upsert(self, request: Request, version: str, sobject: str, id_field: str, value: str) -> Response:
        number = _version_number(version)
        self._check_object(sobject)
        if id_field not in EXTERNAL_ID_FIELDS.get(sobject, ()):
            raise _not_found()
        body = self._body(request)
        if id_field in body and body[id_field] != value:
            raise SalesforceError(400, "INVALID_FIELD",
                                  f"The external id field {id_field} in the body does not match the URL value",
                                  [id_field])
        matches = self._matching(sobject, id_field, value)
        if len(matches) > 1:
            return http.json_response([f"/services/data/{version}/sobjects/{sobject}/{rid}" for rid in matches],
                                      status=300)
        if not matches and request.args.get("updateOnly") == "true":
            raise _not_found(f"Provided external ID field does not exist or is not accessible: {value}")
        write = self._write(request, version)
        if matches:
            (record_id,) = matches
            self._transaction(write, lambda: self._update(sobject, record_id, body, write=write))
            if number < UPSERT_BODY_VERSION:
                return Response(status=204)
            return http.json_response({"id": record_id, "success": True, "errors": [], "created": False})
        record_id = self._transaction(write, lambda: self._insert(sobject, {**body, id_field: value}, write=write))
        return http.json_response({"id": record_id, "success": True, "errors": [], "created": True}, status=201)

    def _ep_collection_upsert(self, request: Request, version: str, sobject: str, id_field: str) -> Response:
        _version_number(version)
        self._check_object(sobject)
        if id_field not in EXTERNAL_ID_FIELDS.get(sobject, ()):
            raise _not_found()
        body = self._body(request)
        records, all_or_none = body.get("records"), body.get("allOrNone", False)
        if not isinstance(records, list) or not records or not isinstance(all_or_none, bool):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "records must be a non-empty array, allOrNone a boolean")
        if len(records) > MAX_COLLECTION_RECORDS:
            raise SalesforceError(400, "EXCEEDED_ID_LIMIT",
                                  f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records "
                                  "into this call")
        write = self._write(request, version)
        before = copy.deepcopy(self._state.records)
        results: list[dict[str, Any]] = []
        for record in records:
            results.append(self._collection_item(sobject, id_field, record, write))
        if all_or_none and not all(r["success"] for r in results):
            self._state.records = before
            write.pending.clear()
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                      "message": "Record rolled back because not all records were valid and the request was using "
                                 "AllOrNone header", "fields": []}
            results = [r if not r["success"] else {"id": None, "success": False, "errors": [rolled]}
                       for r in results]
            for r in results:
                r.pop("created", None)
        self._commit(write)
        return http.json_response(results)

    def _collection_item(self, sobject: str, id_field: str, record: Any, write: _Write) -> dict[str, Any]:
        try:
            if not isinstance(record, dict) or (record.get("attributes") or {}).get("type") != sobject:
                raise SalesforceError(400, "INVALID_TYPE", f"Each record needs attributes.type {sobject}")
            if "Id" in record:
                raise SalesforceError(400, "INVALID_FIELD", "Record Ids are not allowed when upserting", ["Id"])
            value = record.get(id_field)
            if not isinstance(value, str) or not value:
                raise _required_missing([id_field])
            fields = {k: v for k, v in record.items() if k not in ("attributes", id_field)}
            matches = self._matching(sobject, id_field, value)
            if len(matches) > 1:
                raise SalesforceError(300, "DUPLICATE_EXTERNAL_ID",
                                      f"{id_field}: more than one record found for external id field: "
                                      f"[{', '.join(matches)}]", [id_field])
            snapshot = copy.deepcopy(self._state.records)
            pending = len(write.pending)
            try:
                if matches:
                    self._update(sobject, matches[0], fields, write=write)
                    return {"id": matches[0], "success": True, "errors": [], "created": False}
                return {"id": self._insert(sobject, {**fields, id_field: value}, write=write), "success": True,
                        "errors": [], "created": True}
            except SalesforceError:
                self._state.records = snapshot
                del write.pending[pending:]
                raise
        except SalesforceError as error:
            return {"id": None, "success": False, "errors": [error.collection_item()]}

    def _ep_composite(self, request: Request, version: str) -> Response:
        _version_number(version)
        body = self._body(request)
        subrequests, all_or_none = body.get("compositeRequest"), body.get("allOrNone", False)
        if not isinstance(subrequests, list) or not subrequests or not isinstance(all_or_none, bool):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "compositeRequest must be a non-empty array")
        if len(subrequests) > MAX_COMPOSITE_SUBREQUESTS:
            raise SalesforceError(400, "LIMIT_EXCEEDED",
                                  f"Max number of subrequests is {MAX_COMPOSITE_SUBREQUESTS}")
        seen: set[str] = set()
        for sub in subrequests:
            if not isinstance(sub, dict) or not {"method", "url", "referenceId"} <= sub.keys():
                raise SalesforceError(400, "JSON_PARSER_ERROR", "every subrequest needs method, url and referenceId")
            if sub["referenceId"] in seen or not re.fullmatch(r"[A-Za-z]\w*", str(sub["referenceId"])):
                raise SalesforceError(400, "INVALID_INPUT", f"Invalid or duplicate referenceId {sub['referenceId']}")
            seen.add(sub["referenceId"])
            headers = {name.lower() for name in (sub.get("httpHeaders") or {})}
            if headers & {"authorization", "content-type", "accept"}:
                raise SalesforceError(400, "INVALID_INPUT", "Subrequests inherit Authorization, Content-Type and "
                                                            "Accept; don't set them")
        write = self._write(request, version)
        before = copy.deepcopy(self._state.records)
        results: dict[str, Any] = {}
        answers: list[dict[str, Any]] = []
        failed = False
        for sub in subrequests:
            ref = sub["referenceId"]
            if failed and all_or_none:
                answers.append(_halted(ref, "The transaction was rolled back since another operation in the same "
                                            "transaction failed."))
                continue
            try:
                url = _resolve_references(sub["url"], results)
                payload = _resolve_references(sub.get("body"), results)
            except _Halted as halted:
                answers.append(_halted(ref, str(halted)))
                failed = True
                continue
            status, answer = self._subrequest(sub["method"], url, payload, write)
            answers.append({"body": answer, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref})
            if status < 300:
                results[ref] = answer if answer is not None else {}
            else:
                failed = True
        if failed and all_or_none:
            self._state.records = before
            write.pending.clear()
            for answer in answers:
                if answer["httpStatusCode"] < 300:
                    answer.update(_halted(answer["referenceId"], "The transaction was rolled back since another "
                                                                 "operation in the same transaction failed."))
        self._commit(write)
        return http.json_response({"compositeResponse": answers})

    def _subrequest(self, method: str, url: str, body: Any, write: _Write) -> tuple[int, Any]:
        """Run one composite subrequest in the composite's transaction: (status, body)."""
        path, _, query = url.partition("?")
        try:
            endpoint, matched = _ROUTES.bind("salesforce").match(path, method)
        except HTTPException:
            return 404, [_not_found().item()]
        values = dict(matched)
        version = values.pop("version", None)
        try:
            if version is not None:
                _version_number(version)
            if endpoint == "query":
                from urllib.parse import parse_qs

                soql = (parse_qs(query).get("q") or [""])[0]
                return 200, self._query(soql)
            sobject = values.get("sobject", "")
            self._check_object(sobject)
            if body is not None and not isinstance(body, dict):
                raise SalesforceError(400, "JSON_PARSER_ERROR", "The body must be a JSON object")
            body = body or {}
            if endpoint == "create":
                return 201, {"id": self._insert(sobject, body, write=write), "success": True, "errors": []}
            if endpoint == "update":
                self._update(sobject, values["record_id"], body, write=write)
                return 204, None
            if endpoint == "get":
                return 200, self._render(sobject, self._record(sobject, values["record_id"]))
            if endpoint == "delete":
                self._delete(sobject, values["record_id"], write)
                return 204, None
            if endpoint == "upsert":
                id_field, value = values["id_field"], values["value"]
                if id_field not in EXTERNAL_ID_FIELDS.get(sobject, ()):
                    raise _not_found()
                matches = self._matching(sobject, id_field, value)
                if len(matches) > 1:
                    return 300, [f"/services/data/{version}/sobjects/{sobject}/{rid}" for rid in matches]
                if not matches and "updateOnly=true" in query:
                    raise _not_found(f"Provided external ID field does not exist or is not accessible: {value}")
                if matches:
                    self._update(sobject, matches[0], body, write=write)
                    return 200, {"id": matches[0], "success": True, "errors": [], "created": False}
                return 201, {"id": self._insert(sobject, {**body, id_field: value}, write=write), "success": True,
                             "errors": [], "created": True}
            raise SalesforceError(400, "INVALID_INPUT", f"{method} {path} is not supported in a composite request")
        except SalesforceError as error:
            return error.status, [error.item()]

    def _ep_query(self, request: Request, version: str) -> Response:
        _version_number(version)
        return http.json_response(self._query(request.args.get("q", "")))

    # ----------------------------------------------------------------- records

    def _check_object(self, sobject: str) -> None:
        if sobject not in FIELDS:
            raise SalesforceError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type "
                                                    f"'{sobject}' is not supported.")

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        body = http.read_json_object(request)
        if body is None:
            raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body is not a JSON object")
        return body

    def _record(self, sobject: str, record_id: str) -> dict[str, Any]:
        record = self._state.records.get(sobject, {}).get(record_id)
        if record is None:
            if not record_id.startswith(KEY_PREFIXES.get(sobject, "~")) or len(record_id) not in (15, 18):
                raise SalesforceError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not "
                                                        f"accessible: {record_id}")
            raise _not_found()
        return record

    def _matching(self, sobject: str, id_field: str, value: str) -> list[str]:
        return [rid for rid, r in self._state.records.get(sobject, {}).items() if r.get(id_field) == value]

    def _render(self, sobject: str, record: Mapping[str, Any], wanted: Sequence[str] | None = None) -> dict[str, Any]:
        names = wanted if wanted is not None else list(record)
        rendered: dict[str, Any] = {"attributes": {"type": sobject,
                                                   "url": f"/services/data/v62.0/sobjects/{sobject}/{record['Id']}"}}
        for name in names:
            rendered[name] = self._field_value(sobject, record, name)
        return rendered

    def _field_value(self, sobject: str, record: Mapping[str, Any], name: str) -> Any:
        if "." in name:
            relation, _, rest = name.partition(".")
            ref_field = f"{relation}Id"
            if ref_field not in REFERENCES or ref_field not in FIELDS[sobject] | READ_ONLY_FIELDS.get(sobject, set()):
                raise SalesforceError(400, "INVALID_FIELD", f"Didn't understand relationship '{relation}' in field "
                                                            f"path", [name])
            target = self._state.records.get(REFERENCES[ref_field], {}).get(record.get(ref_field) or "")
            return None if target is None else self._field_value(REFERENCES[ref_field], target, rest)
        known = FIELDS[sobject] | READ_ONLY_FIELDS.get(sobject, frozenset()) | set(_SYSTEM_FIELDS)
        if name not in known:
            raise SalesforceError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'.", [name])
        return record.get(name)

    def _resolve_relationships(self, sobject: str, body: dict[str, Any]) -> dict[str, Any]:
        """``"Account": {"ExternalID__c": "C-1"}`` → ``AccountId``: a reference by external id."""
        resolved = {}
        for key, value in body.items():
            ref_field = f"{key}Id"
            if isinstance(value, dict) and ref_field in FIELDS[sobject] and ref_field in REFERENCES:
                target = REFERENCES[ref_field]
                pairs = [(k, v) for k, v in value.items() if k != "attributes"]
                if len(pairs) != 1 or pairs[0][0] not in EXTERNAL_ID_FIELDS.get(target, ()):
                    raise SalesforceError(400, "INVALID_FIELD", f"{key} must name one external id field of "
                                                                f"{target}", [key])
                matches = self._matching(target, pairs[0][0], str(pairs[0][1]))
                if not matches:
                    raise SalesforceError(400, "INVALID_FIELD", f"Foreign key external ID: {pairs[0][1]} not found "
                                                                f"for field {pairs[0][0]} in entity {target}", [key])
                if len(matches) > 1:
                    raise SalesforceError(400, "INVALID_FIELD", f"Foreign key external ID: {pairs[0][1]} matches "
                                                                f"more than one {target}: [{', '.join(matches)}]",
                                          [key])
                resolved[ref_field] = matches[0]
            else:
                resolved[key] = value
        return resolved

    def _validate(self, sobject: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "attributes":
                continue
            if key not in FIELDS[sobject]:
                if key in READ_ONLY_FIELDS.get(sobject, ()) or key in _SYSTEM_FIELDS:
                    raise SalesforceError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                                          f"Unable to create/update fields: {key}. Please check the security "
                                          "settings of this field and verify that it is read/write for your "
                                          "profile or permission set.", [key])
                raise SalesforceError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject}",
                                      [key])
            if value is not None:
                if key in DATE_FIELDS and not (isinstance(value, str) and _is_date(value)):
                    raise SalesforceError(400, "JSON_PARSER_ERROR",
                                          f"Cannot deserialize instance of date from VALUE_STRING value {value}",
                                          [key])
                if key in NUMBER_FIELDS and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise SalesforceError(400, "JSON_PARSER_ERROR",
                                          f"Cannot deserialize instance of double from {value!r}", [key])
                if key in BOOLEAN_FIELDS and not isinstance(value, bool):
                    raise SalesforceError(400, "JSON_PARSER_ERROR",
                                          f"Cannot deserialize instance of boolean from {value!r}", [key])
                if key in REFERENCES:
                    target = REFERENCES[key]
                    if not isinstance(value, str) or value not in self._state.records.get(target, {}):
                        raise SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY",
                                              f"invalid cross reference id: {value}", [key])
                if isinstance(value, str) and len(value) > 255 and key != "Description":
                    raise SalesforceError(400, "STRING_TOO_LONG", f"{key}: data value too large", [key])
            clean[key] = value
        return clean

    def _take_lock(self) -> None:
        if self._state.lock_failures > 0:
            self._state.lock_failures -= 1
            raise SalesforceError(400, "UNABLE_TO_LOCK_ROW",
                                  "unable to obtain exclusive access to this record or 1 records", [])

    def _new_id(self, sobject: str) -> str:
        return f"{KEY_PREFIXES[sobject]}5g{next(self._state.counter):010d}AAA"

    def _insert(self, sobject: str, fields: Mapping[str, Any], *, write: _Write | None = None,
                system: Mapping[str, Any] | None = None, ui: bool = False) -> str:
        if write is not None and not ui:
            self._take_lock()
        values = self._validate(sobject, self._resolve_relationships(sobject, dict(fields)))
        missing = [name for name in REQUIRED_ON_CREATE.get(sobject, ()) if values.get(name) in (None, "")]
        if missing:
            raise _required_missing(missing)
        self._check_rules(sobject, None, values)
        now = salesforce_datetime(self.clock())
        record_id = self._new_id(sobject)
        record = {"Id": record_id, **values, **(system or {}), "CreatedDate": now, "LastModifiedDate": now,
                  "SystemModstamp": now, "IsDeleted": False}
        self._derive(sobject, record)
        self._state.records.setdefault(sobject, {})[record_id] = record
        if write is not None and sobject in CDC_OBJECTS:
            shown = {k: v for k, v in record.items() if v is not None and k not in ("Id", "IsDeleted",
                                                                                     "SystemModstamp")}
            write.pending.append((sobject, "CREATE", now, shown, [record_id], []))
        return record_id

    def _update(self, sobject: str, record_id: str, fields: Mapping[str, Any], *, write: _Write,
                check_locks: bool = True) -> None:
        record = self._record(sobject, record_id)
        if check_locks:
            self._take_lock()
        values = self._validate(sobject, self._resolve_relationships(sobject, dict(fields)))
        self._check_rules(sobject, record, values)
        changed = {k: v for k, v in values.items() if record.get(k) != v}
        now = salesforce_datetime(self.clock())
        record.update(changed, LastModifiedDate=now, SystemModstamp=now)
        self._derive(sobject, record)
        if sobject in CDC_OBJECTS and changed:
            nulled = sorted(k for k, v in changed.items() if v is None)
            write.pending.append((sobject, "UPDATE", now, {**changed, "LastModifiedDate": now}, [record_id], nulled))

    def _delete(self, sobject: str, record_id: str, write: _Write) -> None:
        self._record(sobject, record_id)
        del self._state.records[sobject][record_id]
        if sobject in CDC_OBJECTS:
            write.pending.append((sobject, "DELETE", salesforce_datetime(self.clock()), {}, [record_id], []))

    def _check_rules(self, sobject: str, record: Mapping[str, Any] | None, values: Mapping[str, Any]) -> None:
        """The object rules Salesforce enforces on Order, OrderItem and price-book entries (API-NOTES §2.5)."""
        merged = {**(record or {}), **values}
        if sobject == "Order":
            status = merged.get("Status")
            if status not in ORDER_STATUSES:
                raise SalesforceError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                      f"Status: bad value for restricted picklist field: {status}", ["Status"])
            if record is None and ORDER_STATUSES[status] != "Draft":
                raise SalesforceError(400, "FIELD_INTEGRITY_EXCEPTION",
                                      "Choose a Draft status. You can't create an order with an Activated status.",
                                      ["Status"])
            if record is not None and ORDER_STATUSES.get(record.get("Status", "")) == "Activated" and \
                    ({"AccountId", "Pricebook2Id"} & values.keys()):
                raise SalesforceError(400, "FIELD_INTEGRITY_EXCEPTION", "You can't edit an activated order",
                                      sorted({"AccountId", "Pricebook2Id"} & values.keys()))
            if record is not None and status == "Activated" and not any(
                    item.get("OrderId") == record["Id"] for item in self._state.records.get("OrderItem", {}).values()):
                raise SalesforceError(400, "VALIDATION_FAILED", "You can't activate an order without products.",
                                      ["Status"])
        if sobject in ("OrderItem", "OpportunityLineItem"):
            parent_field, parent_type = ("OrderId", "Order") if sobject == "OrderItem" else \
                ("OpportunityId", "Opportunity")
            parent = self._state.records.get(parent_type, {}).get(merged.get(parent_field) or "")
            entry = self._state.records.get("PricebookEntry", {}).get(merged.get("PricebookEntryId") or "")
            if parent is not None and entry is not None:
                if not parent.get("Pricebook2Id") or parent["Pricebook2Id"] != entry["Pricebook2Id"]:
                    raise SalesforceError(400, "FIELD_INTEGRITY_EXCEPTION",
                                          "field integrity exception: PricebookEntryId (pricebook entry is in a "
                                          f"different pricebook than the one assigned to the {parent_type}, or "
                                          f"{parent_type} has no pricebook assigned)", ["PricebookEntryId"])
                if not entry.get("IsActive"):
                    raise SalesforceError(400, "FIELD_INTEGRITY_EXCEPTION",
                                          "field integrity exception: PricebookEntryId (pricebook entry is inactive)",
                                          ["PricebookEntryId"])
            quantity = merged.get("Quantity")
            if isinstance(quantity, int | float) and quantity <= 0 and sobject == "OrderItem":
                raise SalesforceError(400, "FIELD_INTEGRITY_EXCEPTION", "Quantity must be positive", ["Quantity"])
        if sobject == "PricebookEntry" and record is None:
            product_id, book_id = merged["Product2Id"], merged["Pricebook2Id"]
            entries = self._state.records.get("PricebookEntry", {}).values()
            if any(e["Product2Id"] == product_id and e["Pricebook2Id"] == book_id for e in entries):
                raise SalesforceError(400, "DUPLICATE_VALUE", "This price definition already exists in this price "
                                                              "book", [])
            if book_id != self.standard_price_book_id and not any(
                    e["Product2Id"] == product_id and e["Pricebook2Id"] == self.standard_price_book_id
                    for e in entries):
                raise SalesforceError(400, "STANDARD_PRICE_NOT_DEFINED",
                                      "Before creating a custom price, create a standard price.", [])

    def _derive(self, sobject: str, record: dict[str, Any]) -> None:
        """Read-only fields Salesforce computes."""
        if sobject == "OrderItem" or sobject == "OpportunityLineItem":
            entry = self._state.records.get("PricebookEntry", {}).get(record.get("PricebookEntryId") or "", {})
            record["Product2Id"] = entry.get("Product2Id")
            record["ListPrice"] = entry.get("UnitPrice")
            record["TotalPrice"] = round(float(record.get("Quantity") or 0) * float(record.get("UnitPrice") or 0), 2)
            parent_field, parent_type = ("OrderId", "Order") if sobject == "OrderItem" else \
                ("OpportunityId", "Opportunity")
            parent = self._state.records.get(parent_type, {}).get(record.get(parent_field) or "")
            if parent is not None and sobject == "OrderItem":
                items = [i for i in self._state.records.get("OrderItem", {}).values()
                         if i.get("OrderId") == parent["Id"] and i["Id"] != record.get("Id")]
                parent["TotalAmount"] = round(sum(i["TotalPrice"] for i in items) + record["TotalPrice"], 2)
        if sobject == "PricebookEntry":
            product = self._state.records.get("Product2", {}).get(record.get("Product2Id") or "", {})
            record["ProductCode"], record["Name"] = product.get("ProductCode"), product.get("Name")
        if sobject == "Order":
            record.setdefault("TotalAmount", 0.0)
            record.setdefault("OrderNumber", f"{len(self._state.records.get('Order', {})) + 1:08d}")

    # ----------------------------------------------------------------- transactions and change events

    def _transaction(self, write: _Write, action: Callable[[], Any]) -> Any:
        before = copy.deepcopy(self._state.records)
        try:
            result = action()
        except SalesforceError:
            self._state.records = before
            raise
        self._commit(write)
        return result

    def _commit(self, write: _Write, *, merge: bool = False) -> None:
        """Publish the transaction's change events (one per record change; merged when ``merge``)."""
        if not write.pending:
            return
        commit_number = next(self._state.commit_number)
        transaction_key = uuid.uuid4().hex
        pending = write.pending
        if merge:  # the same change to several records in one transaction: one event listing them all
            grouped: dict[tuple[str, str, str], tuple[dict[str, Any], list[str], list[str]]] = {}
            for sobject, change_type, _when, fields, ids, nulled in pending:
                key = (sobject, change_type, json.dumps({k: v for k, v in fields.items()}, sort_keys=True,
                                                        default=str))
                if key in grouped:
                    grouped[key][1].extend(ids)
                else:
                    grouped[key] = (fields, list(ids), nulled)
            pending = [(k[0], k[1], "", f, ids, n) for k, (f, ids, n) in grouped.items()]
        origin = ""
        if write.api_version:
            origin = f"com/salesforce/api/rest/{write.api_version.removeprefix('v')}"
            if write.client:
                origin += f";client={write.client}"
        now = self.clock()
        for sequence, (sobject, change_type, _when, fields, ids, nulled) in enumerate(pending, start=1):
            changed = sorted(fields) if change_type == "UPDATE" else []
            header = {"entityName": sobject, "recordIds": list(ids), "changeType": change_type,
                      "changeOrigin": origin, "transactionKey": transaction_key, "sequenceNumber": sequence,
                      "commitTimestamp": int(now * 1000), "commitNumber": commit_number,
                      "commitUser": "0055g00000SWTCHAAA", "changedFields": changed, "nulledFields": nulled,
                      "diffFields": []}
            event_id = str(uuid.uuid4())
            envelope = {
                "version": "0", "id": event_id, "detail-type": f"{sobject}ChangeEvent",
                "source": self.partner_event_source, "account": self.aws_account,
                "time": datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region, "resources": [],
                "detail": {"payload": {"ChangeEventHeader": header, **fields},
                           "schemaId": f"{sobject}ChangeEvent-schema", "id": event_id},
            }
            event = ChangeEvent(envelope)
            self._state.events.append(event)
            if self.event_sink is not None:
                self.event_sink(event)
        write.pending = []

    # ----------------------------------------------------------------- SOQL

    def _query(self, soql: str) -> dict[str, Any]:
        match = _SOQL.match(soql)
        if match is None:
            raise SalesforceError(400, "MALFORMED_QUERY", f"unexpected token in: {soql[:200]}")
        sobject = match.group("object")
        if sobject not in FIELDS:
            raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        names = [name.strip() for name in match.group("fields").split(",")]
        blank = {"Id": ""}  # every field path is checked, also when no record matches
        for name in names:
            self._field_value(sobject, blank, name)
        conditions = []
        for part in _split_and(match.group("where")) if match.group("where") else []:
            condition = _CONDITION.match(part)
            if condition is None:
                raise SalesforceError(400, "MALFORMED_QUERY", f"unexpected condition: {part.strip()[:200]}")
            if condition.group("values") is not None:
                values = [_soql_literal(v.group(0)) for v in _QUOTED.finditer(condition.group("values"))]
                conditions.append((condition.group("field"), "IN", values))
            else:
                conditions.append((condition.group("field"), condition.group("op"),
                                   _soql_literal(condition.group("value"))))
        records = []
        for record in self._state.records.get(sobject, {}).values():
            keep = True
            for name, op, value in conditions:
                actual = self._field_value(sobject, record, name)
                keep = actual in value if op == "IN" else (actual == value) == (op == "=")
                if not keep:
                    break
            if keep:
                records.append(self._render_query_row(sobject, record, names))
        if match.group("limit"):
            records = records[: int(match.group("limit"))]
        return {"totalSize": len(records), "done": True, "records": records}

    def _render_query_row(self, sobject: str, record: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
        row: dict[str, Any] = {"attributes": {"type": sobject,
                                              "url": f"/services/data/v62.0/sobjects/{sobject}/{record['Id']}"}}
        for name in names:
            if "." in name:
                relation, _, rest = name.partition(".")
                target_type = REFERENCES.get(f"{relation}Id")
                target = self._state.records.get(target_type or "", {}).get(record.get(f"{relation}Id") or "")
                value = self._field_value(sobject, record, name)
                if target is None:
                    row[relation] = None
                else:
                    nested = row.setdefault(relation, {"attributes": {
                        "type": target_type, "url": f"/services/data/v62.0/sobjects/{target_type}/{target['Id']}"}})
                    nested[rest] = value
            else:
                row[name] = self._field_value(sobject, record, name)
        return row

    # ----------------------------------------------------------------- admin endpoints (no auth, no faults)

    def _ep_admin_state(self, request: Request) -> Response:
        return http.json_response(self.snapshot())

    def _ep_admin_reset(self, request: Request) -> Response:
        self.reset()
        return http.json_response({"ok": True})

    def _ep_admin_set_faults(self, request: Request) -> Response:
        try:
            self.faults.configure(self._body(request))
        except (TypeError, ValueError) as error:
            return http.json_response({"error": "invalid_fault_plan", "message": str(error)}, status=400)
        return http.json_response({"ok": True, "plan": self.faults.plan.to_dict()})

    def _ep_admin_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return http.json_response({"ok": True})

    def _ep_admin_update(self, request: Request, sobject: str, record_id: str) -> Response:
        self.update_record(sobject, record_id, **self._body(request))
        return http.json_response(self.record(sobject, record_id))

    def _ep_admin_add_product(self, request: Request) -> Response:
        body = self._body(request)
        return http.json_response(self.add_product(body["code"], body["name"], body["price"],
                                                   active=body.get("active", True)), status=201)


def _halted(reference: str, message: str) -> dict[str, Any]:
    return {"body": [{"errorCode": "PROCESSING_HALTED", "message": message}], "httpHeaders": {},
            "httpStatusCode": 400, "referenceId": reference}


_REFERENCE = re.compile(r"@\{(\w+)\.([\w.\[\]]+)\}")


def _reference_value(results: Mapping[str, Any], reference: str, path: str) -> Any:
    if reference not in results:
        raise _Halted(f"Invalid reference specified. No value for {reference}.{path} found in {reference}. "
                      f"Provided referenceId ('{reference}') does not match any earlier successful subrequest.")
    value: Any = results[reference]
    for part in re.findall(r"\w+|\[\d+\]", path):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError):
            raise _Halted(f"Invalid reference specified. No value for {reference}.{path} found in "
                          f"{reference}.") from None
    return value


def _resolve_references(value: Any, results: Mapping[str, Any]) -> Any:
    """Replace ``@{ref.path}`` with earlier subrequests' answers (a whole string keeps the value's type)."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return _reference_value(results, whole.group(1), whole.group(2))
        return _REFERENCE.sub(lambda m: str(_reference_value(results, m.group(1), m.group(2))), value)
    if isinstance(value, list):
        return [_resolve_references(item, results) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_references(item, results) for key, item in value.items()}
    return value


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10
