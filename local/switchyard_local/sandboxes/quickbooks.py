"""Stateful in-memory QuickBooks Online (QBO) Accounting API v3 sandbox: QBO's real paths, payloads, Faults, limits.

Several companies ("realms") each hold their own customers, items, invoices, sales receipts and payments.
Implemented (see ``/work/shared/API-NOTES.md`` section 3):

* OAuth2 ``POST /oauth2/v1/tokens/bearer`` (Basic client auth; ``refresh_token`` and ``authorization_code``
  grants), as Intuit documents it (docs/quickbooks-pair.md, "Tokens"): access tokens live one hour
  (``access_token_ttl_seconds`` on ``clock``, then 401 ``AuthenticationFault``); a refresh token lives 100 days
  from its issue (``x_refresh_token_expires_in``) and at most five years from the consent. Intuit keeps a
  refresh token's value for about 24 hours (a refresh inside that window answers the same refresh token);
  ``refresh_rotation_seconds`` (default 0: every refresh rotates, the strictest case) sets that window. Once
  rotated, the previous token answers ``400 {"error": "invalid_grant"}`` after ``refresh_grace_seconds``
  (default 0, Intuit's current statement; its older one was 24 hours); inside the grace it gets the same
  successor. ``revoke_realm`` is the company disconnecting the app: every token of the realm is refused.
  ``lose_refresh_answers(n)`` carries out the next ``n`` refreshes and loses their answers on the way back.
* ``/v3/company/{realmId}/{entity}`` create / full or sparse update / ``?operation=void|delete``,
  ``/{entity}/{id}`` read, ``/query`` (SQL-like), ``/batch`` (≤ 30 items, per-item Faults inside a 200).
* ``SyncToken`` (5010), Object Not Found (610), Duplicate Name (6240), DocNumber length (2050) and duplicates
  (6140), ``Amount = Qty * UnitPrice`` (6070), a transaction or payment in another currency than its customer's
  (6000: a customer has exactly one currency), query errors (4000/4001).
* ``?requestid=`` idempotency per realm (the original status and body are replayed, nothing re-executes).
* Throttling per realm with sliding windows over arrival times, as QBO's gateway counts requests before any
  work is done (a request counts for exactly one window length after it arrived; rejected requests do not
  count; the time a request waits for the sandbox's lock behind other requests' work is not arrival time):
  ``per_second`` (10), ``per_minute`` (500), ``batch_per_minute`` (40). ``time_scale`` shrinks every window
  (``time_scale=60``: a "minute" lasts one second of ``clock``).
  429 answers carry a ``ThrottlingFault`` and no rate-limit or ``Retry-After`` headers.
* Outbound webhooks (legacy ``eventNotifications`` or CloudEvents array) signed with ``intuit-signature`` =
  base64(HMAC-SHA256(verifier token, raw body)); events queued while a delivery is in flight are sent
  together in the next one, like QBO's aggregated notifications. Only connected realms send webhooks.

Usage::

    qbo = QuickBooksSandbox(webhook_url="http://127.0.0.1:8000/webhooks/qbo")
    tokens = qbo.connect_realm("9130")                          # {"access_token", "refresh_token", ...}
    item = qbo.seed_item("9130", "Trail shoes", "SHOE-42", qty_on_hand=12, unit_price=119.0)
    client = httpx.Client(transport=httpx.WSGITransport(app=qbo.wsgi_app), base_url="http://qbo",
                          headers={"Authorization": f"Bearer {tokens['access_token']}"})
    client.post("/v3/company/9130/customer?minorversion=75&requestid=abc", json={"DisplayName": "Acme"})
    qbo.set_item_quantity("9130", item["Id"], 3)                # an accountant adjusts stock: Item Update
    qbo.wait_for_webhooks()

or ``with QuickBooksSandbox() as qbo:`` to serve on ``127.0.0.1:<free port>`` (``qbo.base_url``).
"""

from __future__ import annotations

import base64
import bisect
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
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

import httpx
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.faults import FaultInjector

DEFAULT_CLIENT_ID = "qbo-client"
DEFAULT_CLIENT_SECRET = "qbo-secret"
DEFAULT_VERIFIER_TOKEN = "qbo-verifier"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
API_PREFIX = "/v3/"
REFRESH_TOKEN_TTL_SECONDS = 8_726_400  # what Intuit answers as x_refresh_token_expires_in (about 100 days)
REFRESH_TOKEN_MAX_SECONDS = 5 * 365 * 86_400  # no refresh token outlives its consent by more than five years
LOST_ANSWER_SECONDS = 30.0  # served over HTTP, a lost answer arrives this late: after any client gave up
AUTH_CODE_TTL_SECONDS = 600
MAX_REQUEST_ID_LENGTH = 50
MAX_BATCH_REQUEST_ID_LENGTH = 36
MAX_BATCH_ITEMS = 30
DEFAULT_MAX_RESULTS = 100
MAX_QUERY_RESULTS = 1000
FIRST_DOC_NUMBER = 1001
HOME_CURRENCY = {"value": "USD", "name": "United States Dollar"}
# QBO reports times in the company's time zone; every sandbox company is on a fixed US/Pacific (PDT) offset.
COMPANY_TZ = timezone(timedelta(hours=-7))
SIGNATURE_HEADER = "intuit-signature"
CLOUDEVENTS_SOURCE = "intuit.qbo.sandbox"
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)
WebhookFormat = Literal["legacy", "cloudevents"]
WEBHOOK_FORMATS = ("legacy", "cloudevents")
DEFAULT_WEBHOOK_ENTITIES = frozenset({"Customer", "Item", "Invoice", "SalesReceipt", "Payment"})
CLOUDEVENT_VERBS = {"Create": "created", "Update": "updated", "Delete": "deleted", "Void": "voided", "Merge": "merged",
                    "Emailed": "emailed"}
ITEM_TYPES = ("Inventory", "NonInventory", "Service", "Group", "Category")
LINE_DETAIL_TYPES = ("SalesItemLineDetail", "SubTotalLineDetail", "DiscountLineDetail", "DescriptionOnly")
CENT = Decimal("0.01")

# Keys the server owns: ignored in request bodies and set on every saved entity.
SYSTEM_KEYS = frozenset({"Id", "SyncToken", "MetaData", "sparse", "domain"})
READ_ONLY_KEYS = {
    "customer": frozenset({"FullyQualifiedName", "Balance", "BalanceWithJobs"}),
    "item": frozenset({"FullyQualifiedName", "TrackQtyOnHand"}),
    "invoice": frozenset({"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance", "LinkedTxn"}),
    "salesreceipt": frozenset({"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance"}),
    "refundreceipt": frozenset({"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance"}),
    "creditmemo": frozenset({"TotalAmt", "Balance", "RemainingCredit", "HomeTotalAmt", "HomeBalance"}),
    "payment": frozenset({"UnappliedAmt"}),
    "paymentmethod": frozenset(),
    "vendor": frozenset(),
    "employee": frozenset(),
}

# --------------------------------------------------------------------------- entity kinds

_COMMON_FILTERS = ("Id", "MetaData.CreateTime", "MetaData.LastUpdatedTime")
_NAME_FILTERS = (*_COMMON_FILTERS, "DisplayName", "GivenName", "FamilyName", "CompanyName", "PrimaryEmailAddr",
                 "Active", "FullyQualifiedName")
_TXN_FILTERS = (*_COMMON_FILTERS, "DocNumber", "TxnDate", "CustomerRef", "TotalAmt")
NUMERIC_FIELDS = frozenset({"Id", "TotalAmt", "Balance", "UnitPrice", "QtyOnHand"})
TIME_FIELDS = frozenset({"MetaData.CreateTime", "MetaData.LastUpdatedTime", "TxnDate", "DueDate"})


@dataclass(frozen=True)
class EntityKind:
    name: str  # the JSON key and query entity: "SalesReceipt"
    path: str  # the URL segment: "salesreceipt"
    snapshot_key: str
    filterable: tuple[str, ...]
    writable: bool = True
    name_list: bool = False  # queries return only Active=true rows unless the query filters on Active
    voidable: bool = False
    deletable: bool = False

    @property
    def filters(self) -> dict[str, str]:
        return {name.lower(): name for name in self.filterable}


KINDS: dict[str, EntityKind] = {
    kind.path: kind
    for kind in (
        EntityKind("Customer", "customer", "customers", _NAME_FILTERS, name_list=True),
        EntityKind("Item", "item", "items", (*_COMMON_FILTERS, "Name", "Sku", "Type", "Active", "FullyQualifiedName",
                                             "UnitPrice", "QtyOnHand"), name_list=True),
        EntityKind("Invoice", "invoice", "invoices", (*_TXN_FILTERS, "Balance", "DueDate"), voidable=True,
                   deletable=True),
        EntityKind("SalesReceipt", "salesreceipt", "salesReceipts", _TXN_FILTERS, voidable=True, deletable=True),
        EntityKind("RefundReceipt", "refundreceipt", "refundReceipts", _TXN_FILTERS, voidable=True, deletable=True),
        EntityKind("CreditMemo", "creditmemo", "creditMemos", (*_TXN_FILTERS, "Balance"), voidable=True,
                   deletable=True),
        EntityKind("Payment", "payment", "payments", (*_COMMON_FILTERS, "TxnDate", "CustomerRef", "TotalAmt"),
                   deletable=True),
        EntityKind("PaymentMethod", "paymentmethod", "paymentMethods", (*_COMMON_FILTERS, "Name", "Type", "Active"),
                   name_list=True),
        EntityKind("Vendor", "vendor", "vendors", _NAME_FILTERS, writable=False, name_list=True),
        EntityKind("Employee", "employee", "employees", _NAME_FILTERS, writable=False, name_list=True),
    )
}
KINDS_BY_NAME = {kind.name.lower(): kind for kind in KINDS.values()}


# --------------------------------------------------------------------------- errors


class QboFault(Exception):
    """An API error answered as QBO's ``{"Fault": {"Error": [...], "type": ...}, "time": ...}`` body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: str | None = None,
        *,
        element: str | None = None,
        fault_type: str = "ValidationFault",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}: {detail}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element
        self.fault_type = fault_type
        self.headers = dict(headers or {})

    def fault(self) -> dict[str, Any]:
        """The ``Fault`` object (also used for per-item faults inside a batch response)."""
        error: dict[str, Any] = {"Message": self.message}
        if self.detail is not None:
            error["Detail"] = self.detail
        error["code"] = self.code
        if self.element is not None:
            error["element"] = self.element
        return {"Error": [error], "type": self.fault_type}

    def body(self, time_text: str) -> dict[str, Any]:
        return {"Fault": self.fault(), "time": time_text}


def not_found(kind: str, entity_id: Any, element: str = "") -> QboFault:
    return QboFault(
        400, "610", "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. Check the fields with "
        f"accounts, customers, items, vendors or employees. ({kind} Id={entity_id})",
        element=element,
    )


def stale_object() -> QboFault:
    return QboFault(
        400, "5010", "Stale Object Error",
        "Stale Object Error : You and root were working on this at the same time. root finished before you "
        "did, so your work was not saved.",
        element="SyncToken",
    )


def required(prop: str) -> QboFault:
    return QboFault(400, "2020", "Required param missing, need to supply the required value for the API",
                    f"Required parameter {prop} is missing in the request", element=prop)


def invalid(prop: str, detail: str | None = None) -> QboFault:
    return QboFault(400, "2010", "Request has invalid or unsupported property",
                    detail or f"Property Name:{prop} specified is unsupported or invalid", element=prop)


def too_long(prop: str, maximum: int, value: str) -> QboFault:
    return QboFault(
        400, "2050", "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. Min:0 Max:{maximum} "
        f"supplied length:{len(value)}",
        element=prop,
    )


def business(detail: str, element: str = "") -> QboFault:
    return QboFault(400, "6000", "A business validation error has occurred while processing your request",
                    f"Business Validation Error: {detail}", element=element)


def unsupported(detail: str) -> QboFault:
    return QboFault(400, "500", "Unsupported Operation", detail)


def duplicate_name(name: str, holder: str) -> QboFault:
    return QboFault(
        400, "6240", "Duplicate Name Exists Error",
        f"The name supplied already exists. : Another {holder} is already using the name '{name}'. "
        "Please use a different name.",
        element="DisplayName" if holder != "product or service" else "Name",
    )


def duplicate_doc_number(doc_number: str, kind: str, entity_id: str) -> QboFault:
    return QboFault(
        400, "6140", "Duplicate Document Number Error",
        "Duplicate Document Number Error : You must specify a different number. This number has already been "
        f"used. DocNumber={doc_number} is assigned to TxnType={kind} with TxnId={entity_id}",
        element="DocNumber",
    )


def amount_mismatch(amount: Any) -> QboFault:
    return QboFault(400, "6070", "Amount is not equal to UnitPrice * Qty",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}", element="Line.Amount")


def query_parse_error(detail: str) -> QboFault:
    return QboFault(400, "4000", "Error parsing query", f"QueryParserError: {detail}")


def query_invalid(detail: str) -> QboFault:
    return QboFault(400, "4001", "Invalid query", f"QueryValidationError: {detail}")


def authentication_failed(detail: str) -> QboFault:
    return QboFault(
        401, "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", detail,
        fault_type="AuthenticationFault",
        headers={"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'},
    )


def authorization_failed() -> QboFault:
    return QboFault(403, "3100", "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                    fault_type="AuthorizationFault")


def throttled() -> QboFault:
    return QboFault(429, "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                    fault_type="ThrottlingFault")


def system_fault() -> QboFault:
    return QboFault(
        500, "10000", "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred while accessing or saving your data. Please wait a "
        "few minutes and try again. If the problem persists, contact customer support.",
        fault_type="SystemFault",
    )


def _fault_for_status(status: int) -> QboFault:
    """The QBO Fault an injected failure of ``status`` answers with."""
    if status == 429:
        return throttled()
    if status == 401:
        return authentication_failed("Token invalid")
    if status == 403:
        return authorization_failed()
    fault = system_fault() if status >= 500 else business("injected failure")
    fault.status = status
    return fault


class OAuthError(Exception):
    """An error of Intuit's OAuth server: ``{"error": "invalid_grant"}``."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error

    def response(self) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="Intuit"'} if self.status == 401 else None
        return http.json_response({"error": self.error}, status=self.status, headers=headers)


# --------------------------------------------------------------------------- small helpers


def qbo_time(epoch_seconds: float) -> str:
    """The response ``time``: company-zone ISO 8601 with milliseconds, e.g. ``2024-05-01T05:00:00.000-07:00``."""
    return datetime.fromtimestamp(epoch_seconds, tz=COMPANY_TZ).isoformat(timespec="milliseconds")


def meta_time(epoch_seconds: float) -> str:
    """``MetaData`` times: company-zone ISO 8601 in seconds, e.g. ``2024-05-01T05:00:00-07:00``."""
    return datetime.fromtimestamp(epoch_seconds, tz=COMPANY_TZ).isoformat(timespec="seconds")


def utc_time(epoch_seconds: float) -> str:
    """Webhook times: UTC with milliseconds and ``Z``, e.g. ``2024-05-01T12:00:00.000Z``."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def intuit_signature(verifier_token: str, body: bytes) -> str:
    """The ``intuit-signature`` header value: base64(HMAC-SHA256(key=verifier token, msg=raw body))."""
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimal(value: Any, prop: str) -> Decimal:
    if not _is_number(value):
        raise invalid(prop, f"Property Name:{prop} must be a number, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation as error:
        raise invalid(prop) from error
    if not result.is_finite():
        raise invalid(prop)
    return result


def _money(value: Decimal) -> float:
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _check_length(body: Mapping[str, Any], prop: str, maximum: int) -> None:
    value = body.get(prop)
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid(prop)
    if len(value) > maximum:
        raise too_long(prop, maximum, value)


def _ref_value(ref: Any) -> str | None:
    return str(ref["value"]) if isinstance(ref, dict) and ref.get("value") not in (None, "") else None


def _check_customer_currency(customer: Mapping[str, Any], currency: Any) -> None:
    """A QBO customer has exactly one currency; a transaction in another one is a validation error."""
    own = _ref_value(customer.get("CurrencyRef")) or HOME_CURRENCY["value"]
    wanted = _ref_value(currency)
    if wanted is not None and wanted != own:
        raise business(f"the transaction's currency ({wanted}) must be the customer's currency ({own})",
                       element="CurrencyRef")


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


# --------------------------------------------------------------------------- query language

_QUERY_TOKEN = re.compile(
    r"""\s*(?:(?P<string>'(?:\\.|[^'\\])*')|(?P<number>-?\d+(?:\.\d+)?)(?![\w.])|(?P<op><=|>=|!=|<>|=|<|>)"""
    r"""|(?P<punct>[(),*])|(?P<word>[A-Za-z_][\w.]*))"""
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # "=", "!=", "<", ">", "<=", ">=", "in", "like"
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    kind: EntityKind
    count: bool = False
    fields: tuple[str, ...] | None = None  # None: select *
    conditions: tuple[Condition, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS


class _QueryParser:
    """Recursive descent over ``select … from <Entity> [where …] [orderby …] [startposition N] [maxresults N]``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, Any]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _QUERY_TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise query_parse_error(f'Encountered " {text[position:].strip()[:20]!r} " at column {position + 1}')
            kind = match.lastgroup or ""
            raw = match.group(kind)
            if kind == "string":
                value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1])
            elif kind == "number":
                value = Decimal(raw)
            else:
                value = raw
            self.tokens.append((kind, value))
            position = match.end()
        self.index = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise query_parse_error("Encountered \"<EOF>\": the statement ends too early")
        self.index += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].lower() in words:
            self.index += 1
            return token[1].lower()
        return None

    def expect_keyword(self, word: str) -> None:
        if self.keyword(word) is None:
            raise query_parse_error(f"expected {word.upper()} near {self._near()}")

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token != ("punct", char):
            raise query_parse_error(f"expected {char!r}, found {token[1]!r}")

    def _near(self) -> str:
        token = self.peek()
        return "<EOF>" if token is None else repr(str(token[1]))

    def word(self, what: str) -> str:
        token = self.take()
        if token[0] != "word":
            raise query_parse_error(f"expected {what}, found {token[1]!r}")
        return str(token[1])

    def literal(self) -> Any:
        kind, value = self.take()
        if kind in ("string", "number"):
            return value
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise query_parse_error(f"expected a value, found {value!r}")

    def integer(self, what: str) -> int:
        kind, value = self.take()
        if kind != "number" or value != value.to_integral_value() or value < 1:
            raise query_parse_error(f"{what} must be a positive integer, found {value!r}")
        return int(value)

    def parse(self) -> Query:
        self.expect_keyword("select")
        count, fields = False, None
        if self.peek() == ("punct", "*"):
            self.take()
        elif self.keyword("count") is not None:
            self.expect_punct("(")
            self.expect_punct("*")
            self.expect_punct(")")
            count = True
        else:
            names = [self.word("a field name")]
            while self.peek() == ("punct", ","):
                self.take()
                names.append(self.word("a field name"))
            fields = tuple(names)
        self.expect_keyword("from")
        entity = self.word("an entity name")
        kind = KINDS_BY_NAME.get(entity.lower())
        if kind is None:
            raise query_invalid(f"entity {entity!r} is not supported by this sandbox")
        conditions: list[Condition] = []
        if self.keyword("where") is not None:
            conditions.append(self.condition(kind))
            while self.keyword("and") is not None:
                conditions.append(self.condition(kind))
        order: list[tuple[str, bool]] = []
        if self.keyword("orderby") is not None:
            while True:
                name = self._field(kind, self.word("a field name"))
                descending = self.keyword("asc", "desc") == "desc"
                order.append((name, descending))
                if self.peek() != ("punct", ","):
                    break
                self.take()
        start, maximum = 1, DEFAULT_MAX_RESULTS
        while (word := self.keyword("startposition", "maxresults")) is not None:
            if word == "startposition":
                start = self.integer("STARTPOSITION")
            else:
                maximum = min(self.integer("MAXRESULTS"), MAX_QUERY_RESULTS)
        if self.peek() is not None:
            raise query_parse_error(f"Encountered {self._near()}: unexpected text after the statement")
        return Query(kind, count, fields, tuple(conditions), tuple(order), start, maximum)

    def condition(self, kind: EntityKind) -> Condition:
        name = self._field(kind, self.word("a field name"))
        token = self.peek()
        if token is not None and token[0] == "op":
            self.take()
            op = "!=" if token[1] == "<>" else token[1]
            return Condition(name, op, (self.literal(),))
        if self.keyword("in") is not None:
            self.expect_punct("(")
            values = [self.literal()]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.literal())
            self.expect_punct(")")
            return Condition(name, "in", tuple(values))
        if self.keyword("like") is not None:
            pattern = self.literal()
            if not isinstance(pattern, str):
                raise query_parse_error("LIKE needs a quoted pattern")
            return Condition(name, "like", (pattern,))
        raise query_parse_error(f"expected an operator after {name}, found {self._near()}")

    @staticmethod
    def _field(kind: EntityKind, name: str) -> str:
        canonical = kind.filters.get(name.lower())
        if canonical is None:
            raise query_invalid(f"property '{name}' is not queryable on {kind.name} in this sandbox")
        return canonical


def parse_query(text: str) -> Query:
    """Parse a QBO query statement; raise a 4000 (syntax) or 4001 (unknown entity/field) ``QboFault``."""
    return _QueryParser(text).parse()


def _field_value(entity: Mapping[str, Any], name: str) -> Any:
    if name == "PrimaryEmailAddr":
        return (entity.get("PrimaryEmailAddr") or {}).get("Address")
    if name == "CustomerRef":
        return _ref_value(entity.get("CustomerRef"))
    value: Any = entity
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=COMPANY_TZ)


def _sort_key(name: str, value: Any) -> Any:
    """A comparable form of a field value (numbers, times, case-folded strings)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if name in NUMERIC_FIELDS or _is_number(value) or isinstance(value, Decimal):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    if name in TIME_FIELDS:
        return _as_datetime(value)
    return str(value).casefold()


def _matches(entity: Mapping[str, Any], condition: Condition) -> bool:
    actual = _field_value(entity, condition.field)
    if condition.field == "Active":
        actual = actual is not False
    if condition.op == "like":
        if not isinstance(actual, str):
            return False
        pattern = "".join(".*" if char == "%" else re.escape(char) for char in condition.values[0])
        return re.fullmatch(pattern, actual, flags=re.IGNORECASE | re.DOTALL) is not None
    left = _sort_key(condition.field, actual)
    if left is None:
        return False
    for literal in condition.values:
        if isinstance(left, bool) and isinstance(literal, str):
            literal = literal.lower() == "true"
        right = _sort_key(condition.field, literal)
        if right is None or type(left) is not type(right):
            continue
        if condition.op in ("=", "in") and left == right:
            return True
        if (condition.op == "!=" and left != right) or (condition.op == "<" and left < right):
            return True
        if (condition.op == ">" and left > right) or (condition.op == "<=" and left <= right):
            return True
        if condition.op == ">=" and left >= right:
            return True
    return False


def _order_key(fields: Sequence[tuple[str, bool]], entity: Mapping[str, Any]) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name, descending in fields:
        value = _sort_key(name, _field_value(entity, name))
        if isinstance(value, datetime):
            value = value.timestamp()
        parts.append(_Ordered(value, descending))
    return tuple(parts)


class _Ordered:
    """Sort wrapper: missing values last, optional descending, mixed types compared as strings."""

    __slots__ = ("descending", "value")

    def __init__(self, value: Any, descending: bool) -> None:
        self.value = value
        self.descending = descending

    def __lt__(self, other: _Ordered) -> bool:
        if self.value is None or other.value is None:
            return other.value is None and self.value is not None
        left, right = self.value, other.value
        if type(left) is not type(right):
            left, right = str(left), str(right)
        return left > right if self.descending else left < right

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ordered) and self.value == other.value


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookEvent:
    """One data-change notification: entity ``name`` (``"Item"``), ``entity_id``, ``operation`` (``"Update"``)."""

    realm_id: str
    name: str
    entity_id: str
    operation: str
    last_updated: str  # UTC, e.g. 2025-01-01T10:00:00.000Z
    event_id: str

    def to_dict(self) -> dict[str, str]:
        return {"realmId": self.realm_id, "name": self.name, "id": self.entity_id, "operation": self.operation,
                "lastUpdated": self.last_updated}


def legacy_payload(events: Sequence[WebhookEvent]) -> dict[str, Any]:
    """``{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [...]}}]}``, one entry per realm."""
    by_realm: dict[str, list[dict[str, str]]] = {}
    for event in events:
        by_realm.setdefault(event.realm_id, []).append(
            {"name": event.name, "id": event.entity_id, "operation": event.operation,
             "lastUpdated": event.last_updated}
        )
    return {"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": entities}}
                                   for realm, entities in by_realm.items()]}


def cloudevents_payload(events: Sequence[WebhookEvent]) -> list[dict[str, Any]]:
    """The CloudEvents array: one ``qbo.<entity>.<verb>.v1`` event per change, with empty ``data``."""
    return [
        {
            "specversion": "1.0",
            "id": event.event_id,
            "source": CLOUDEVENTS_SOURCE,
            "type": f"qbo.{event.name.lower()}.{CLOUDEVENT_VERBS.get(event.operation, 'updated')}.v1",
            "datacontenttype": "application/json",
            "time": event.last_updated,
            "intuitentityid": event.entity_id,
            "intuitaccountid": event.realm_id,
            "data": {},
        }
        for event in events
    ]


class WebhookOutbox:
    """Delivers notifications from one background thread (started on demand, ended when idle), with retries.

    Everything queued when a delivery starts goes into that one request (QBO aggregates notifications).
    Any 2xx completes it; other statuses and connection errors are retried after each ``retry_delays``
    entry, then recorded as failed. Lock order: callers may hold the sandbox lock; the worker never takes it.
    """

    def __init__(
        self,
        verifier_token: str,
        url: str | None,
        webhook_format: WebhookFormat,
        *,
        retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        if webhook_format not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook_format must be one of {WEBHOOK_FORMATS}, got {webhook_format!r}")
        if any(delay < 0 for delay in retry_delays):
            raise ValueError("webhook retry delays must not be negative")
        self.verifier_token = verifier_token
        self.url = url
        self.format: WebhookFormat = webhook_format
        self.retry_delays = tuple(retry_delays)
        self._transport = transport
        self._timeout = timeout
        self._cond = threading.Condition()
        self._queue: deque[WebhookEvent] = deque()
        self._deliveries: list[dict[str, Any]] = []
        self._in_flight = False
        self._running = False
        self._generation = 0

    def enqueue(self, event: WebhookEvent) -> None:
        with self._cond:
            self._queue.append(event)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="qbo-webhooks", daemon=True).start()

    def body_for(self, events: Sequence[WebhookEvent], webhook_format: WebhookFormat | None = None) -> bytes:
        chosen = webhook_format or self.format
        payload: Any = legacy_payload(events) if chosen == "legacy" else cloudevents_payload(events)
        return json.dumps(payload, separators=(",", ":")).encode()

    def wait(self, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout=timeout)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return copy.deepcopy(self._deliveries)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + int(self._in_flight)

    def clear(self) -> None:
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._deliveries.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        with httpx.Client(transport=self._transport, timeout=self._timeout, trust_env=False) as client:
            while True:
                with self._cond:
                    if not self._queue:
                        self._running = False
                        self._cond.notify_all()
                        return
                    events = list(self._queue)
                    self._queue.clear()
                    url, webhook_format, generation = self.url, self.format, self._generation
                    self._in_flight = True
                try:
                    record = self._deliver(client, events, url, webhook_format, generation)
                finally:
                    with self._cond:
                        self._in_flight = False
                        if record is not None and generation == self._generation:
                            self._deliveries.append(record)
                        self._cond.notify_all()

    def _deliver(
        self, client: httpx.Client, events: list[WebhookEvent], url: str | None, webhook_format: WebhookFormat,
        generation: int,
    ) -> dict[str, Any] | None:
        record: dict[str, Any] = {"format": webhook_format, "url": url,
                                  "events": [event.to_dict() for event in events],
                                  "status_code": None, "error": None, "attempts": 0}
        if url is None:
            return {**record, "error": "no webhook_url configured", "outcome": "dropped"}
        body = self.body_for(events, webhook_format)
        headers = {"content-type": "application/json", "user-agent": "Intuit-Webhooks/sandbox",
                   SIGNATURE_HEADER: intuit_signature(self.verifier_token, body)}
        for delay in (*self.retry_delays, None):
            record["attempts"] += 1
            try:
                response = client.post(url, content=body, headers=headers)
                record["status_code"], record["error"] = response.status_code, None
                if 200 <= response.status_code < 300:
                    return {**record, "outcome": "delivered"}
                record["error"] = f"HTTP {response.status_code}"
            except Exception as error:  # connection errors and bad URLs: never kill the worker
                record["status_code"], record["error"] = None, f"{type(error).__name__}: {error}"
            if delay is None:
                break
            with self._cond:
                if self._cond.wait_for(lambda: generation != self._generation, timeout=delay):
                    return None  # reset while backing off: abandon quietly
        return {**record, "outcome": "failed"}


# --------------------------------------------------------------------------- state


@dataclass
class _Throttle:
    """Arrival times of the admitted requests, sorted (guarded by the sandbox lock): requests are stamped when
    they arrive but take the lock in whatever order the server's threads get to it."""

    second: list[float] = field(default_factory=list)
    minute: list[float] = field(default_factory=list)
    batch_minute: list[float] = field(default_factory=list)


@dataclass
class _Realm:
    realm_id: str
    connected: bool = False
    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {path: {} for path in KINDS})
    ids: dict[str, itertools.count[int]] = field(default_factory=lambda: {path: itertools.count(1) for path in KINDS})
    doc_numbers: dict[str, itertools.count[int]] = field(
        default_factory=lambda: {path: itertools.count(FIRST_DOC_NUMBER) for path in KINDS}
    )
    replies: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # requestid -> (status, body)
    voided: set[tuple[str, str]] = field(default_factory=set)
    inventory: dict[tuple[str, str], dict[str, Decimal]] = field(default_factory=dict)  # txn -> item -> qty sold
    applied: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # payment id -> invoice id -> amount
    credits: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # payment id -> credit memo id -> amount
    counters: Counter[str] = field(default_factory=Counter)
    minor_versions: Counter[str] = field(default_factory=Counter)
    throttle: _Throttle = field(default_factory=_Throttle)


@dataclass
class _RefreshToken:
    realm_id: str
    expires_at: float
    issued_at: float
    hard_expires_at: float  # the consent's five years: rotation never extends it
    rotated_at: float | None = None
    successor: dict[str, Any] | None = None


@dataclass
class _Tokens:
    access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (realm, expires_at)
    refresh: dict[str, _RefreshToken] = field(default_factory=dict)
    codes: dict[str, tuple[str, float]] = field(default_factory=dict)  # one-time code -> (realm, expires_at)


_ROUTES = Map(
    [
        Rule(TOKEN_PATH, endpoint="token", methods=["POST"]),
        Rule("/v3/company/<realm_id>/query", endpoint="query", methods=["GET", "POST"]),
        Rule("/v3/company/<realm_id>/batch", endpoint="batch", methods=["POST"]),
        Rule("/v3/company/<realm_id>/<entity>", endpoint="write", methods=["POST"]),
        Rule("/v3/company/<realm_id>/<entity>/<entity_id>", endpoint="read", methods=["GET"]),
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
        Rule("/_sandbox/realms/<realm_id>/connect", endpoint="admin_connect", methods=["POST"]),
        Rule("/_sandbox/realms/<realm_id>/revoke", endpoint="admin_revoke", methods=["POST"]),
        Rule("/_sandbox/tokens/lose-answers", endpoint="admin_lose_answers", methods=["POST"]),
        Rule("/_sandbox/realms/<realm_id>/items", endpoint="admin_seed_item", methods=["POST"]),
        Rule("/_sandbox/realms/<realm_id>/items/<item_id>/quantity", endpoint="admin_item_quantity",
             methods=["POST"]),
    ],
    strict_slashes=False,
)


# --------------------------------------------------------------------------- the sandbox


class QuickBooksSandbox(http.SandboxApp):
    """In-memory QBO: a WSGI app (``wsgi_app``) that can also serve itself on a local port."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        verifier_token: str = DEFAULT_VERIFIER_TOKEN,
        webhook_url: str | None = None,
        webhook_format: WebhookFormat = "legacy",
        access_token_ttl_seconds: float = 3600,
        per_minute: int = 500,
        per_second: int = 10,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        *,
        batch_per_minute: int = 40,
        refresh_grace_seconds: float = 0.0,
        refresh_rotation_seconds: float = 0.0,
        webhook_entities: Iterable[str] = DEFAULT_WEBHOOK_ENTITIES,
        webhook_retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        webhook_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if min(per_minute, per_second, batch_per_minute) < 1:
            raise ValueError("rate limits must be at least 1")
        if min(access_token_ttl_seconds, refresh_grace_seconds, refresh_rotation_seconds) < 0:
            raise ValueError("token lifetimes must not be negative")
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_ttl_seconds = access_token_ttl_seconds
        self.refresh_grace_seconds = refresh_grace_seconds
        self.refresh_rotation_seconds = refresh_rotation_seconds
        self.lost_answer_seconds = LOST_ANSWER_SECONDS
        self._lose_refresh_answers = 0
        self.refreshes_carried_out = 0
        self.per_minute = per_minute
        self.per_second = per_second
        self.batch_per_minute = batch_per_minute
        self.time_scale = time_scale
        self.clock = clock
        self.webhook_entities = frozenset(webhook_entities)
        self.requests = http.RequestLog()
        self.faults = FaultInjector(error_body=lambda message: system_fault().body(self._time_text()))
        self.outbox = WebhookOutbox(verifier_token, webhook_url, webhook_format, retry_delays=webhook_retry_delays,
                                    transport=webhook_transport)
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self._realms: dict[str, _Realm] = {}
        self._tokens = _Tokens()
        self._events: list[WebhookEvent] = []
        self._hidden: set[tuple[str, str]] = set()  # created earlier in the running batch: invisible to it
        self._stop: Callable[[], None] | None = None

    # ----------------------------------------------------------------- webhooks

    @property
    def webhook_url(self) -> str | None:
        return self.outbox.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.outbox.url = value

    @property
    def webhook_format(self) -> WebhookFormat:
        return self.outbox.format

    @webhook_format.setter
    def webhook_format(self, value: WebhookFormat) -> None:
        if value not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook_format must be one of {WEBHOOK_FORMATS}, got {value!r}")
        self.outbox.format = value

    @property
    def verifier_token(self) -> str:
        return self.outbox.verifier_token

    @property
    def webhook_events(self) -> list[WebhookEvent]:
        """Every notification emitted so far (connected realms only), in order."""
        with self._lock:
            return list(self._events)

    @property
    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Finished deliveries in order: format, url, events, status_code, error, attempts, outcome
        (``delivered``, ``failed``, or ``dropped`` when no ``webhook_url`` was set)."""
        return self.outbox.deliveries

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every emitted notification was delivered or failed; False on timeout."""
        return self.outbox.wait(timeout)

    # ----------------------------------------------------------------- Python admin API

    def connect_realm(self, realm_id: str) -> dict[str, Any]:
        """Connect a company as the OAuth consent flow would: returns the token response
        (``access_token``, ``refresh_token``, ``token_type``, ``expires_in``, ``x_refresh_token_expires_in``)."""
        with self._lock:
            return self._issue_tokens(self._realm(str(realm_id)))

    def revoke_realm(self, realm_id: str) -> None:
        """The company disconnects the app (or an admin revokes it): every access and refresh token of the
        realm is refused from now on; ``connect_realm`` is the consent once more."""
        with self._lock:
            realm_id = str(realm_id)
            self._tokens.access = {token: entry for token, entry in self._tokens.access.items()
                                   if entry[0] != realm_id}
            self._tokens.refresh = {token: entry for token, entry in self._tokens.refresh.items()
                                    if entry.realm_id != realm_id}

    def lose_refresh_answers(self, n: int = 1) -> None:
        """The next ``n`` refresh calls are carried out (tokens rotate) but their answers are lost on the way
        back: in-process (WSGI transport) the client gets ``httpx.ReadTimeout``; served over HTTP the answer
        comes ``lost_answer_seconds`` late, after the client gave up."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            self._lose_refresh_answers += n

    def issue_auth_code(self, realm_id: str) -> str:
        """A one-time ``code`` as the consent redirect carries it (valid 10 minutes on ``clock``)."""
        with self._lock:
            self._realm(str(realm_id))
            code = f"AB11{secrets.token_urlsafe(24)}"
            self._tokens.codes[code] = (str(realm_id), self.clock() + AUTH_CODE_TTL_SECONDS)
            return code

    def seed_item(
        self,
        realm_id: str,
        name: str,
        sku: str | None,
        qty_on_hand: float,
        unit_price: float,
        type: str = "Inventory",  # QBO's Item.Type
        *,
        active: bool = True,
        notify: bool = False,
    ) -> dict[str, Any]:
        """Add an item (same validation as the API). No webhook unless ``notify`` (seeding is test setup)."""
        body: dict[str, Any] = {"Name": name, "Type": type, "UnitPrice": unit_price, "Active": active}
        if sku is not None:
            body["Sku"] = sku
        if type == "Inventory":
            body["QtyOnHand"] = qty_on_hand
        return self._seed(realm_id, "item", body, notify)

    def seed_customer(self, realm_id: str, display_name: str, email: str | None = None,
                      **fields: Any) -> dict[str, Any]:
        """Add a customer as a bookkeeper would (same validation as the API, no webhook)."""
        body: dict[str, Any] = {"DisplayName": display_name, **fields}
        if email is not None:
            body["PrimaryEmailAddr"] = {"Address": email}
        return self._seed(realm_id, "customer", body, notify=False)

    def seed_payment_method(self, realm_id: str, name: str, type: str = "CREDIT_CARD") -> dict[str, Any]:
        """Add a payment method (Sales settings' list; same validation as the API, no webhook)."""
        return self._seed(realm_id, "paymentmethod", {"Name": name, "Type": type}, notify=False)

    def seed_vendor(self, realm_id: str, display_name: str) -> dict[str, Any]:
        """Add a vendor name (vendors only exist to make DisplayName collide, 6240; readable and queryable)."""
        return self._seed(realm_id, "vendor", {"DisplayName": display_name}, notify=False)

    def seed_employee(self, realm_id: str, display_name: str) -> dict[str, Any]:
        """Add an employee name (like ``seed_vendor``)."""
        return self._seed(realm_id, "employee", {"DisplayName": display_name}, notify=False)

    def set_item_quantity(self, realm_id: str, item_id: str, qty: float) -> dict[str, Any]:
        """An accountant adjusts stock in QBO's UI: sets ``QtyOnHand``, bumps ``SyncToken``, fires Item Update."""
        with self._lock:
            realm = self._existing_realm(str(realm_id))
            item = self._find(realm, KINDS["item"], str(item_id))
            quantity = _decimal(qty, "QtyOnHand")
            if item.get("Type") != "Inventory":
                raise business("only Inventory items track a quantity on hand", element="QtyOnHand")
            item["QtyOnHand"] = _number(quantity)
            self._touch(item)
            self._emit(realm, "Item", item["Id"], "Update")
            return copy.deepcopy(item)

    def get_entity(self, realm_id: str, entity: str, entity_id: str) -> dict[str, Any]:
        """An entity as the API reads it; ``entity`` is its path or name (``"salesreceipt"``/``"SalesReceipt"``)."""
        with self._lock:
            realm = self._existing_realm(str(realm_id))
            kind = self._kind(entity)
            return self._render(realm, kind, self._find(realm, kind, str(entity_id)))

    def requests_per_realm(self, realm_id: str) -> dict[str, int]:
        """API request counters: ``total`` (authenticated), ``accepted``, ``throttled`` (429), ``replayed``."""
        with self._lock:
            realm = self._realms.get(str(realm_id))
            counters = realm.counters if realm else Counter()
            return {name: counters[name] for name in ("total", "accepted", "throttled", "replayed")}

    def minor_versions(self, realm_id: str) -> dict[str, int]:
        """How often each ``minorversion`` value was sent to the realm."""
        with self._lock:
            realm = self._realms.get(str(realm_id))
            return dict(realm.minor_versions) if realm else {}

    # ----------------------------------------------------------------- inspection

    def reset(self) -> None:
        """Forget every realm, token, recorded request, fault and webhook."""
        with self._lock:
            self._realms.clear()
            self._tokens = _Tokens()
            self._lose_refresh_answers = 0
            self._events.clear()
            self._hidden.clear()
            self.outbox.clear()
        self.requests.clear()
        self.faults.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything a test or the demo asserts on, per realm, as JSON-ready data."""
        with self._lock:
            realms = {realm_id: self._realm_snapshot(realm) for realm_id, realm in self._realms.items()}
            events = [event.to_dict() for event in self._events]
        return {
            "realms": realms,
            "webhookEvents": events,
            "webhookDeliveries": self.outbox.deliveries,
            "webhooksPending": self.outbox.pending,
        }

    def _realm_snapshot(self, realm: _Realm) -> dict[str, Any]:
        data: dict[str, Any] = {"connected": realm.connected}
        for path, kind in KINDS.items():
            rows = []
            for entity in realm.entities[path].values():
                row = self._render(realm, kind, entity)
                if kind.voidable:
                    row["status"] = self._txn_status(realm, kind, row)
                rows.append(row)
            data[kind.snapshot_key] = rows
        data["counters"] = {name: realm.counters[name] for name in ("total", "accepted", "throttled", "replayed")}
        data["minorVersions"] = dict(realm.minor_versions)
        data["requestIds"] = sorted(realm.replies)
        return data

    @staticmethod
    def _txn_status(realm: _Realm, kind: EntityKind, row: Mapping[str, Any]) -> str:
        if (kind.path, row["Id"]) in realm.voided:
            return "Voided"
        return "Paid" if Decimal(str(row.get("Balance", 0))) == 0 else "Open"

    # ----------------------------------------------------------------- WSGI plumbing

    def _handle(self, request: Request) -> Response:
        arrived = self.clock()  # the gateway's count, before the request queues for the sandbox's lock
        path = request.path
        is_admin = path.startswith(http.ADMIN_PREFIX)
        is_api = path.startswith(API_PREFIX)
        if is_api or path.rstrip("/") == TOKEN_PATH:
            injected = self.faults.apply(request)
            if injected is not None:
                return self._fault_response(_fault_for_status(injected.status_code))
        try:
            endpoint, values = _ROUTES.bind("quickbooks").match(path, request.method)
        except HTTPException:
            if is_api:
                return self._fault_response(unsupported(f"Operation {request.method} {path} is not supported."))
            if path.rstrip("/") == TOKEN_PATH:
                return OAuthError(405, "invalid_request").response()
            return http.json_response({"error": "not_found", "path": path}, status=404)
        try:
            with self._lock:
                if endpoint == "token":
                    return self._answer_token(request)
                if is_admin:
                    return getattr(self, f"_ep_{endpoint}")(request, **values)
                return self._api(request, endpoint, values, arrived)
        except QboFault as fault:
            return self._fault_response(fault)
        except OAuthError as error:
            return error.response()

    def _time_text(self) -> str:
        return qbo_time(self.clock())

    def _fault_response(self, fault: QboFault) -> Response:
        return http.json_response(fault.body(self._time_text()), status=fault.status, headers=fault.headers)

    def _api(self, request: Request, endpoint: str, values: dict[str, str], arrived: float) -> Response:
        realm_id = values.pop("realm_id")
        realm = self._authenticate(request, realm_id)
        realm.counters["total"] += 1
        if not self._admit(realm, endpoint == "batch", arrived):
            realm.counters["throttled"] += 1
            raise throttled()
        realm.counters["accepted"] += 1
        minor_version = request.args.get("minorversion")
        if minor_version is not None:
            realm.minor_versions[minor_version] += 1
        request_id = None
        if request.method == "POST" and endpoint in ("write", "batch"):
            request_id = request.args.get("requestid")
        if request_id is not None:
            limit = MAX_BATCH_REQUEST_ID_LENGTH if endpoint == "batch" else MAX_REQUEST_ID_LENGTH
            if not request_id or len(request_id) > limit:
                raise too_long("requestid", limit, request_id)
            stored = realm.replies.get(request_id)
            if stored is not None:
                realm.counters["replayed"] += 1
                return Response(stored[1], status=stored[0], mimetype="application/json")
        try:
            payload = getattr(self, f"_ep_{endpoint}")(request, realm, **values)
            status, body, headers = 200, {**payload, "time": self._time_text()}, {}
        except QboFault as fault:
            status, body, headers = fault.status, fault.body(self._time_text()), fault.headers
        raw = json.dumps(body, separators=(",", ":")).encode()
        if request_id is not None:
            realm.replies[request_id] = (status, raw)
        return Response(raw, status=status, headers=headers, mimetype="application/json")

    # ----------------------------------------------------------------- auth and throttling

    def _authenticate(self, request: Request, realm_id: str) -> _Realm:
        auth = request.authorization
        if auth is None or auth.type != "bearer" or not auth.token:
            raise authentication_failed("Token invalid")
        entry = self._tokens.access.get(auth.token)
        if entry is None:
            raise authentication_failed("Token invalid")
        token_realm, expires_at = entry
        if self.clock() >= expires_at:
            raise authentication_failed("Token expired")
        if token_realm != realm_id:
            raise authorization_failed()
        return self._realm(realm_id)

    def _admit(self, realm: _Realm, is_batch: bool, arrived: float) -> bool:
        """Sliding-window admission by arrival time; only admitted requests are recorded (a 429 does not use
        up budget). A request that arrived earlier may be judged after later ones: it is refused when the
        window ending at its arrival, together with the requests admitted after it, is full, so no window
        ever holds more than the limit."""
        minute, second = 60.0 / self.time_scale, 1.0 / self.time_scale
        windows = realm.throttle
        horizon = self.clock() - 2 * minute  # no request still in flight arrived this long ago
        checks = ((windows.second, second, self.per_second), (windows.minute, minute, self.per_minute),
                  (windows.batch_minute, minute, self.batch_per_minute if is_batch else None))
        for times, _, _ in checks:
            del times[:bisect.bisect_right(times, horizon)]
        for times, length, limit in checks:
            if limit is not None and len(times) - bisect.bisect_right(times, arrived - length) >= limit:
                return False
        bisect.insort(windows.second, arrived)
        bisect.insort(windows.minute, arrived)
        if is_batch:
            bisect.insort(windows.batch_minute, arrived)
        return True

    # ----------------------------------------------------------------- OAuth2

    def _answer_token(self, request: Request) -> Response:
        refreshed_before = self.refreshes_carried_out
        response = self._ep_token(request)
        if self.refreshes_carried_out == refreshed_before or self._lose_refresh_answers <= 0:
            return response
        self._lose_refresh_answers -= 1
        if self.base_url is None:  # in-process: what the client's transport raises when no answer comes
            raise httpx.ReadTimeout("the token answer was lost on the way back (sandbox)")
        self._lock.release()  # served: answer late, without holding up every other request
        try:
            time.sleep(self.lost_answer_seconds)
        finally:
            self._lock.acquire()
        return response

    def _ep_token(self, request: Request) -> Response:
        auth = request.authorization
        if not (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest((auth.username or "").encode(), self.client_id.encode())
            and hmac.compare_digest((auth.password or "").encode(), self.client_secret.encode())
        ):
            raise OAuthError(401, "invalid_client")
        form = request.form
        grant_type = form.get("grant_type")
        now = self.clock()
        if grant_type == "refresh_token":
            token = form.get("refresh_token")
            if not token:
                raise OAuthError(400, "invalid_request")
            entry = self._tokens.refresh.get(token)
            if entry is None or now >= entry.expires_at:
                raise OAuthError(400, "invalid_grant")
            if entry.rotated_at is not None:
                if entry.successor is not None and now - entry.rotated_at < self.refresh_grace_seconds:
                    return self._token_response(entry.successor)  # a racing refresh inside the grace
                raise OAuthError(400, "invalid_grant")
            realm = self._realm(entry.realm_id)
            self.refreshes_carried_out += 1
            if now - entry.issued_at < self.refresh_rotation_seconds:  # Intuit keeps the value for ~24 h
                return self._token_response(self._issue_tokens(realm, keep_refresh=token))
            payload = self._issue_tokens(realm, hard_expires_at=entry.hard_expires_at)
            entry.rotated_at, entry.successor = now, payload
            return self._token_response(payload)
        if grant_type == "authorization_code":
            code = form.get("code")
            if not code:
                raise OAuthError(400, "invalid_request")
            issued = self._tokens.codes.pop(code, None)  # one-time: a second exchange is invalid_grant
            if issued is None or now >= issued[1]:
                raise OAuthError(400, "invalid_grant")
            return self._token_response(self._issue_tokens(self._realm(issued[0])))
        if grant_type is None:
            raise OAuthError(400, "invalid_request")
        raise OAuthError(400, "unsupported_grant_type")

    @staticmethod
    def _token_response(payload: Mapping[str, Any]) -> Response:
        return http.json_response(dict(payload), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _issue_tokens(self, realm: _Realm, *, keep_refresh: str | None = None,
                      hard_expires_at: float | None = None) -> dict[str, Any]:
        """A new access token, with a new refresh token or (``keep_refresh``) the same one again."""
        now = self.clock()
        access = f"eyJ{secrets.token_urlsafe(48)}"
        self._tokens.access[access] = (realm.realm_id, now + self.access_token_ttl_seconds)
        if keep_refresh is not None:
            refresh = keep_refresh
            expires_at = self._tokens.refresh[refresh].expires_at
        else:
            refresh = f"AB11{secrets.token_urlsafe(36)}"
            hard = now + REFRESH_TOKEN_MAX_SECONDS if hard_expires_at is None else hard_expires_at
            expires_at = min(now + REFRESH_TOKEN_TTL_SECONDS, hard)
            self._tokens.refresh[refresh] = _RefreshToken(realm.realm_id, expires_at, issued_at=now,
                                                          hard_expires_at=hard)
        realm.connected = True
        ttl = self.access_token_ttl_seconds
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
            "x_refresh_token_expires_in": max(0, round(expires_at - now)),
        }

    # ----------------------------------------------------------------- API endpoints

    def _ep_read(self, request: Request, realm: _Realm, entity: str, entity_id: str) -> dict[str, Any]:
        if entity.lower() == "companyinfo":
            return {"CompanyInfo": self._company_info(realm)}
        kind = self._kind(entity)
        return {kind.name: self._render(realm, kind, self._find(realm, kind, entity_id))}

    def _ep_write(self, request: Request, realm: _Realm, entity: str) -> dict[str, Any]:
        kind = self._kind(entity)
        body = self._json_body(request)
        if set(body) == {kind.name}:
            raise invalid(kind.name, f"Property Name:{kind.name} is not a property of {kind.name}: send the "
                                     "entity itself, not wrapped in an envelope")
        operation = (request.args.get("operation") or ("update" if "Id" in body else "create")).lower()
        result = self._write(realm, kind, body, operation)
        return {kind.name: result}

    def _ep_query(self, request: Request, realm: _Realm) -> dict[str, Any]:
        text = request.args.get("query")
        if text is None and request.method == "POST":
            text = request.get_data(as_text=True)
        if not text or not text.strip():
            raise query_parse_error("the query statement is missing")
        return {"QueryResponse": self._run_query(realm, text)}

    def _ep_batch(self, request: Request, realm: _Realm) -> dict[str, Any]:
        body = self._json_body(request)
        items = body.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise required("BatchItemRequest")
        if len(items) > MAX_BATCH_ITEMS:
            raise business(f"a batch holds at most {MAX_BATCH_ITEMS} BatchItemRequest items, got {len(items)}",
                           element="BatchItemRequest")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("bId"), str) or not item["bId"]:
                raise required("bId")
        responses = []
        self._hidden = set()
        try:
            for item in items:
                try:
                    responses.append({"bId": item["bId"], **self._batch_item(realm, item)})
                except QboFault as fault:
                    responses.append({"bId": item["bId"], "Fault": fault.fault()})
        finally:
            self._hidden = set()
        return {"BatchItemResponse": responses}

    def _batch_item(self, realm: _Realm, item: Mapping[str, Any]) -> dict[str, Any]:
        if "Query" in item:
            if not isinstance(item["Query"], str):
                raise query_parse_error("Query must be a string")
            return {"QueryResponse": self._run_query(realm, item["Query"])}
        names = [key for key in item if key.lower() in KINDS_BY_NAME]
        if len(names) != 1 or not isinstance(item[names[0]], dict):
            raise invalid("BatchItemRequest", "Property Name:BatchItemRequest needs exactly one entity object "
                                              "(Customer, Item, Invoice, SalesReceipt or Payment) or a Query")
        kind = KINDS_BY_NAME[names[0].lower()]
        operation = item.get("operation")
        if not isinstance(operation, str):
            raise required("operation")
        result = self._write(realm, kind, item[names[0]], operation.lower())
        if operation.lower() == "create":
            self._hidden.add((kind.path, result["Id"]))
        return {kind.name: result}

    # ----------------------------------------------------------------- writes

    def _write(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any], operation: str) -> dict[str, Any]:
        if not kind.writable:
            raise unsupported(f"Operation {operation} is not supported for {kind.name} in this sandbox.")
        if operation == "create":
            return self._create(realm, kind, body)
        if operation == "update":
            return self._update(realm, kind, body)
        if operation == "void" and kind.voidable:
            return self._void(realm, kind, body)
        if operation == "delete" and kind.deletable:
            return self._delete(realm, kind, body)
        raise unsupported(f"Operation {operation.capitalize()} is not supported for {kind.name}.")

    def _create(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any], notify: bool = True,
                ) -> dict[str, Any]:
        entity, effects = self._build(realm, kind, body, None)
        entity_id = str(next(realm.ids[kind.path]))
        stamp = meta_time(self.clock())
        entity.update(domain="QBO", sparse=False, Id=entity_id, SyncToken="0",
                      MetaData={"CreateTime": stamp, "LastUpdatedTime": stamp})
        self._commit(realm, kind, entity, effects)
        if notify:
            self._emit(realm, kind.name, entity_id, "Create")
        return self._render(realm, kind, entity)

    def _current(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any]) -> dict[str, Any]:
        """The entity an update/void/delete names, after the Id and SyncToken checks (610, 5010)."""
        entity_id = body.get("Id")
        if entity_id in (None, ""):
            raise required("Id")
        current = self._find(realm, kind, str(entity_id))
        token = body.get("SyncToken")
        if token in (None, ""):
            raise required("SyncToken")
        if str(token) != current["SyncToken"]:
            raise stale_object()
        return current

    def _update(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any]) -> dict[str, Any]:
        current = self._current(realm, kind, body)
        if (kind.path, current["Id"]) in realm.voided:
            raise business(f"this {kind.name} is voided and can't be edited", element="Id")
        merged = {**current, **body} if body.get("sparse") is True else dict(body)
        entity, effects = self._build(realm, kind, merged, current)
        entity.update(domain="QBO", sparse=False, Id=current["Id"], SyncToken=current["SyncToken"],
                      MetaData=copy.deepcopy(current["MetaData"]))
        self._touch(entity)
        self._commit(realm, kind, entity, effects)
        self._emit(realm, kind.name, entity["Id"], "Update")
        return self._render(realm, kind, entity)

    def _void(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any]) -> dict[str, Any]:
        entity = self._current(realm, kind, body)
        key = (kind.path, entity["Id"])
        self._apply_inventory(realm, key, {})
        for line in entity.get("Line", []):
            line["Amount"] = 0.0
            detail = line.get("SalesItemLineDetail")
            if isinstance(detail, dict) and "Qty" in detail:
                detail["Qty"] = 0
        note = entity.get("PrivateNote")
        entity["PrivateNote"] = (f"Voided - {note}" if note else "Voided")[:4000]
        entity["TotalAmt"] = 0.0
        entity["Balance"] = 0.0
        if "HomeTotalAmt" in entity:
            entity["HomeTotalAmt"] = 0.0
        realm.voided.add(key)
        self._touch(entity)
        self._emit(realm, kind.name, entity["Id"], "Void")
        return self._render(realm, kind, entity)

    def _delete(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any]) -> dict[str, Any]:
        entity = self._current(realm, kind, body)
        entity_id = entity["Id"]
        if kind.path == "invoice" and any(entity_id in links for links in realm.applied.values()):
            raise business("this invoice has payments applied; delete the payments first", element="Id")
        if kind.path == "creditmemo" and any(entity_id in links for links in realm.credits.values()):
            raise business("this credit memo is applied to a payment; delete the payment first", element="Id")
        if kind.path == "payment":
            self._apply_payment(realm, entity_id, {})
            self._apply_credits(realm, entity_id, {})
            realm.applied.pop(entity_id, None)
        else:
            self._apply_inventory(realm, (kind.path, entity_id), {})
            realm.inventory.pop((kind.path, entity_id), None)
        realm.voided.discard((kind.path, entity_id))
        del realm.entities[kind.path][entity_id]
        self._emit(realm, kind.name, entity_id, "Delete")
        return {"status": "Deleted", "domain": "QBO", "Id": entity_id}

    def _commit(self, realm: _Realm, kind: EntityKind, entity: dict[str, Any], effects: Mapping[str, Any]) -> None:
        realm.entities[kind.path][entity["Id"]] = entity
        if "inventory" in effects:
            self._apply_inventory(realm, (kind.path, entity["Id"]), effects["inventory"])
        if kind.path == "payment":
            self._apply_payment(realm, entity["Id"], effects["applied"])
            self._apply_credits(realm, entity["Id"], effects.get("credits", {}))
        if kind.path == "invoice":
            self._refresh_invoice(realm, entity["Id"], bump=False)

    def _touch(self, entity: dict[str, Any]) -> None:
        entity["SyncToken"] = str(int(entity["SyncToken"]) + 1)
        entity["MetaData"]["LastUpdatedTime"] = meta_time(self.clock())

    def _apply_inventory(self, realm: _Realm, key: tuple[str, str], sold: Mapping[str, Decimal]) -> None:
        """Give back what the transaction sold before, take what it sells now (QtyOnHand may go negative)."""
        items = realm.entities["item"]
        for item_id, qty in realm.inventory.pop(key, {}).items():
            if item_id in items and "QtyOnHand" in items[item_id]:
                items[item_id]["QtyOnHand"] = _number(Decimal(str(items[item_id]["QtyOnHand"])) + qty)
        for item_id, qty in sold.items():
            if "QtyOnHand" in items[item_id]:
                items[item_id]["QtyOnHand"] = _number(Decimal(str(items[item_id]["QtyOnHand"])) - qty)
        if sold:
            realm.inventory[key] = dict(sold)

    def _apply_payment(self, realm: _Realm, payment_id: str, applied: Mapping[str, Decimal]) -> None:
        previous = realm.applied.pop(payment_id, {})
        if applied:
            realm.applied[payment_id] = dict(applied)
        for invoice_id in dict.fromkeys([*previous, *applied]):
            if invoice_id in realm.entities["invoice"]:
                self._refresh_invoice(realm, invoice_id, bump=True)

    def _apply_credits(self, realm: _Realm, payment_id: str, credits: Mapping[str, Decimal]) -> None:
        previous = realm.credits.pop(payment_id, {})
        if credits:
            realm.credits[payment_id] = dict(credits)
        for memo_id in dict.fromkeys([*previous, *credits]):
            memo = realm.entities["creditmemo"].get(memo_id)
            if memo is None:
                continue
            used = sum((links.get(memo_id, Decimal(0)) for links in realm.credits.values()), Decimal(0))
            voided = ("creditmemo", memo_id) in realm.voided
            memo["Balance"] = memo["RemainingCredit"] = 0.0 if voided else _money(
                Decimal(str(memo["TotalAmt"])) - used)
            self._touch(memo)

    def _refresh_invoice(self, realm: _Realm, invoice_id: str, bump: bool) -> None:
        """Recompute Balance and the Payment LinkedTxn from the payments applied to the invoice."""
        invoice = realm.entities["invoice"][invoice_id]
        payments = [(pid, links[invoice_id]) for pid, links in realm.applied.items() if invoice_id in links]
        paid = sum((amount for _, amount in payments), Decimal(0))
        voided = ("invoice", invoice_id) in realm.voided
        invoice["Balance"] = 0.0 if voided else _money(Decimal(str(invoice["TotalAmt"])) - paid)
        if "HomeTotalAmt" in invoice:
            invoice["HomeBalance"] = _money(Decimal(str(invoice["Balance"])) * Decimal(str(invoice["ExchangeRate"])))
        others = [link for link in invoice.get("LinkedTxn", []) if link.get("TxnType") != "Payment"]
        invoice["LinkedTxn"] = others + [{"TxnId": pid, "TxnType": "Payment"} for pid, _ in payments]
        if bump:
            self._touch(invoice)

    # ----------------------------------------------------------------- validation and building

    def _build(self, realm: _Realm, kind: EntityKind, body: Mapping[str, Any], current: dict[str, Any] | None,
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate ``body`` and return the new entity (without system fields) and its side effects."""
        if not isinstance(body, Mapping):
            raise invalid(kind.name, f"Property Name:{kind.name} must be a JSON object")
        data = {key: copy.deepcopy(value) for key, value in body.items()
                if key not in SYSTEM_KEYS and key not in READ_ONLY_KEYS[kind.path]}
        current_id = current["Id"] if current else None
        if kind.path in ("customer", "vendor", "employee"):
            return self._build_name(realm, kind, data, current_id), {}
        if kind.path == "item":
            return self._build_item(realm, data, current_id), {}
        if kind.path == "paymentmethod":
            return self._build_payment_method(realm, data, current_id), {}
        if kind.path == "payment":
            return self._build_payment(realm, data, current_id)
        return self._build_sale(realm, kind, data, current)

    def _build_payment_method(self, realm: _Realm, data: dict[str, Any], current_id: str | None) -> dict[str, Any]:
        name = data.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise required("Name")
        name = data["Name"] = name.strip()
        _check_length(data, "Name", 31)
        for entity_id, method in realm.entities["paymentmethod"].items():
            if entity_id != current_id and _name_key(method["Name"]) == _name_key(name):
                raise duplicate_name(name, "payment method")
        if data.setdefault("Type", "NON_CREDIT_CARD") not in ("CREDIT_CARD", "NON_CREDIT_CARD"):
            raise invalid("Type", "Property Name:Type must be CREDIT_CARD or NON_CREDIT_CARD")
        if not isinstance(data.setdefault("Active", True), bool):
            raise invalid("Active")
        return data

    def _check_payment_fields(self, realm: _Realm, data: Mapping[str, Any]) -> None:
        """PaymentMethodRef names an active PaymentMethod; PaymentRefNum fits QBO's 21 characters."""
        _check_length(data, "PaymentRefNum", 21)
        if "PaymentMethodRef" in data:
            method_id = _ref_value(data["PaymentMethodRef"])
            if method_id is None:
                raise invalid("PaymentMethodRef")
            self._find_active(realm, KINDS["paymentmethod"], method_id, "PaymentMethodRef")

    def _build_name(self, realm: _Realm, kind: EntityKind, data: dict[str, Any], current_id: str | None,
                    ) -> dict[str, Any]:
        name = data.get("DisplayName")
        if name is None:
            parts = [data.get(key) for key in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
            name = " ".join(part for part in parts if isinstance(part, str) and part.strip()) or data.get(
                "CompanyName")
        if not isinstance(name, str) or not name.strip():
            raise required("DisplayName")
        name = name.strip()
        data["DisplayName"] = name
        _check_length(data, "DisplayName", 500)
        if ":" in name:
            raise business("the DisplayName can't contain a colon (:)", element="DisplayName")
        self._check_unique_name(realm, name, (kind.path, current_id))
        active = data.setdefault("Active", True)
        if not isinstance(active, bool):
            raise invalid("Active")
        email = data.get("PrimaryEmailAddr")
        if email is not None and not (isinstance(email, dict) and isinstance(email.get("Address"), str)):
            raise invalid("PrimaryEmailAddr", "Property Name:PrimaryEmailAddr must be {\"Address\": \"...\"}")
        data["FullyQualifiedName"] = name
        if kind.path == "customer":
            data.setdefault("PrintOnCheckName", name)
            data.setdefault("CurrencyRef", dict(HOME_CURRENCY))
            data.setdefault("Job", False)
            data.setdefault("BillWithParent", False)
            data.setdefault("Taxable", False)
        return data

    def _check_unique_name(self, realm: _Realm, name: str, own: tuple[str, str | None]) -> None:
        wanted = _name_key(name)
        holders = {"customer": "customer", "vendor": "vendor", "employee": "employee"}
        for path, holder in holders.items():
            for entity_id, entity in realm.entities[path].items():
                if (path, entity_id) != own and _name_key(entity["DisplayName"]) == wanted:
                    raise duplicate_name(name, holder)

    def _build_item(self, realm: _Realm, data: dict[str, Any], current_id: str | None) -> dict[str, Any]:
        name = data.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise required("Name")
        name = data["Name"] = name.strip()
        _check_length(data, "Name", 100)
        _check_length(data, "Sku", 100)
        _check_length(data, "Description", 4000)
        if ":" in name:
            raise business("the item Name can't contain a colon (:)", element="Name")
        for entity_id, item in realm.entities["item"].items():
            if entity_id != current_id and _name_key(item["Name"]) == _name_key(name):
                raise duplicate_name(name, "product or service")
        item_type = data.setdefault("Type", "NonInventory")
        if item_type not in ITEM_TYPES:
            raise invalid("Type", f"Property Name:Type must be one of {', '.join(ITEM_TYPES)}, got {item_type!r}")
        active = data.setdefault("Active", True)
        if not isinstance(active, bool):
            raise invalid("Active")
        data["UnitPrice"] = _number(_decimal(data.get("UnitPrice", 0), "UnitPrice"))
        data["TrackQtyOnHand"] = item_type == "Inventory"
        if item_type == "Inventory":
            data["QtyOnHand"] = _number(_decimal(data.get("QtyOnHand", 0), "QtyOnHand"))
        else:
            data.pop("QtyOnHand", None)
        data["FullyQualifiedName"] = name
        return data

    def _build_sale(self, realm: _Realm, kind: EntityKind, data: dict[str, Any], current: dict[str, Any] | None,
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Invoice or SalesReceipt: references, lines, totals, DocNumber; side effect: the inventory sold."""
        _check_length(data, "DocNumber", 21)
        _check_length(data, "PrivateNote", 4000)
        if kind.path in ("salesreceipt", "refundreceipt"):
            self._check_payment_fields(realm, data)
        elif "PaymentMethodRef" in data or "PaymentRefNum" in data:
            raise invalid("PaymentMethodRef", "Property Name:PaymentMethodRef is not a property of Invoice")
        customer_id = _ref_value(data.get("CustomerRef"))
        if customer_id is None:
            raise required("CustomerRef")
        customer = self._find_active(realm, KINDS["customer"], customer_id, "CustomerRef")
        data["CustomerRef"] = {"value": customer_id, "name": customer["DisplayName"]}
        lines, subtotal, discount, sold = self._lines(realm, data.get("Line"))
        data["Line"] = lines
        tax = Decimal(0)
        tax_detail = data.get("TxnTaxDetail")
        if isinstance(tax_detail, dict) and tax_detail.get("TotalTax") is not None:
            tax = _decimal(tax_detail["TotalTax"], "TxnTaxDetail.TotalTax")
        else:
            data["TxnTaxDetail"] = {"TotalTax": 0}
        calculation = data.get("GlobalTaxCalculation", "TaxExcluded")
        if calculation not in ("TaxExcluded", "TaxInclusive", "NotApplicable"):
            raise invalid("GlobalTaxCalculation")
        # TaxInclusive: the line amounts hold the tax (TotalTax is the part of them that is tax)
        total = subtotal - discount + (tax if calculation == "TaxExcluded" else Decimal(0))
        data["TotalAmt"] = _money(total)
        today = datetime.fromtimestamp(self.clock(), tz=COMPANY_TZ).date().isoformat()
        txn_date = data.setdefault("TxnDate", current.get("TxnDate", today) if current else today)
        for prop in ("TxnDate", "DueDate"):
            if prop in data:
                try:
                    date.fromisoformat(str(data[prop]))
                except ValueError as error:
                    raise invalid(prop, f"Property Name:{prop} must be a date like 2024-05-01") from error
        currency = data.setdefault("CurrencyRef", dict(HOME_CURRENCY))
        if _ref_value(currency) is None:
            raise invalid("CurrencyRef")
        _check_customer_currency(customer, currency)
        rate = _decimal(data.setdefault("ExchangeRate", 1), "ExchangeRate")
        if rate <= 0:
            raise invalid("ExchangeRate")
        if currency["value"] != HOME_CURRENCY["value"]:
            data["HomeTotalAmt"] = _money(total * rate)
        if kind.path == "invoice":
            data.setdefault("DueDate", txn_date)
            data["Balance"] = data["TotalAmt"]  # payments are subtracted on commit
        elif kind.path == "creditmemo":  # credit the customer holds until a payment applies it
            data["Balance"] = data["RemainingCredit"] = data["TotalAmt"]
        else:
            data["Balance"] = 0.0
        self._assign_doc_number(realm, kind, data, current)
        if kind.path in ("refundreceipt", "creditmemo"):  # goods come back
            sold = {item_id: -qty for item_id, qty in sold.items()}
        return data, {"inventory": sold}

    def _lines(self, realm: _Realm, lines: Any) -> tuple[list[dict[str, Any]], Decimal, Decimal, dict[str, Decimal]]:
        if lines is None or lines == []:
            raise required("Line")
        if not isinstance(lines, list):
            raise invalid("Line")
        result: list[dict[str, Any]] = []
        subtotal = running = discount = Decimal(0)
        sold: dict[str, Decimal] = {}
        has_subtotal = False
        for number, raw in enumerate(lines, 1):
            if not isinstance(raw, dict):
                raise invalid("Line")
            line = copy.deepcopy(raw)
            detail_type = line.get("DetailType")
            if detail_type not in LINE_DETAIL_TYPES:
                raise invalid("Line.DetailType", f"Property Name:Line.DetailType must be one of "
                                                 f"{', '.join(LINE_DETAIL_TYPES)}, got {detail_type!r}")
            line["LineNum"] = number
            if detail_type == "SalesItemLineDetail":
                amount = self._sales_item_line(realm, line, sold)
                subtotal += amount
                running += amount
            elif detail_type == "SubTotalLineDetail":
                line.setdefault("SubTotalLineDetail", {})
                line["Amount"] = _money(running)
                running = Decimal(0)
                has_subtotal = True
                line.pop("Id", None)
            elif detail_type == "DiscountLineDetail":
                detail = line.setdefault("DiscountLineDetail", {})
                if not isinstance(detail, dict):
                    raise invalid("Line.DiscountLineDetail")
                if detail.get("PercentBased") is True:
                    percent = _decimal(detail.get("DiscountPercent"), "Line.DiscountLineDetail.DiscountPercent")
                    amount = (subtotal * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
                else:
                    if line.get("Amount") is None:
                        raise required("Line.Amount")
                    amount = _decimal(line["Amount"], "Line.Amount")
                line["Amount"] = _money(amount)
                discount += amount
            else:  # DescriptionOnly
                line["Amount"] = _number(_decimal(line.get("Amount", 0), "Line.Amount"))
            if detail_type != "SubTotalLineDetail":
                line["Id"] = str(number)
            result.append(line)
        if not has_subtotal:
            result.append({"Amount": _money(subtotal), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
        return result, subtotal, discount, sold

    def _sales_item_line(self, realm: _Realm, line: dict[str, Any], sold: dict[str, Decimal]) -> Decimal:
        detail = line.get("SalesItemLineDetail")
        if not isinstance(detail, dict):
            raise required("Line.SalesItemLineDetail")
        item_id = _ref_value(detail.get("ItemRef"))
        if item_id is None:
            raise required("Line.SalesItemLineDetail.ItemRef")
        item = self._find_active(realm, KINDS["item"], item_id, "Line.SalesItemLineDetail.ItemRef")
        detail["ItemRef"] = {"value": item_id, "name": item["Name"]}
        if line.get("Amount") is None:
            raise required("Line.Amount")
        amount = _decimal(line["Amount"], "Line.Amount")
        qty = _decimal(detail["Qty"], "Line.SalesItemLineDetail.Qty") if detail.get("Qty") is not None else None
        price = detail.get("UnitPrice")
        unit_price = _decimal(price, "Line.SalesItemLineDetail.UnitPrice") if price is not None else None
        if qty is not None and unit_price is not None:
            if amount != (qty * unit_price).quantize(CENT, rounding=ROUND_HALF_UP):
                raise amount_mismatch(line["Amount"])
        elif qty is not None and qty != 0:
            detail["UnitPrice"] = _number(amount / qty)
        elif unit_price is not None and unit_price != 0:
            detail["Qty"] = _number(amount / unit_price)
            qty = amount / unit_price
        line["Amount"] = _money(amount)
        if item.get("Type") == "Inventory" and qty is not None:
            sold[item_id] = sold.get(item_id, Decimal(0)) + qty
        return amount

    def _assign_doc_number(self, realm: _Realm, kind: EntityKind, data: dict[str, Any],
                           current: dict[str, Any] | None) -> None:
        own_id = current["Id"] if current else None
        taken = {entity.get("DocNumber"): entity_id for entity_id, entity in realm.entities[kind.path].items()
                 if entity_id != own_id}
        doc_number = data.get("DocNumber")
        if doc_number is None or doc_number == "":
            if current is not None and current.get("DocNumber"):
                data["DocNumber"] = current["DocNumber"]
                return
            while (candidate := str(next(realm.doc_numbers[kind.path]))) in taken:
                pass
            data["DocNumber"] = candidate
            return
        if doc_number in taken:
            raise duplicate_doc_number(doc_number, kind.name, taken[doc_number])

    def _build_payment(self, realm: _Realm, data: dict[str, Any], current_id: str | None,
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        self._check_payment_fields(realm, data)
        customer_id = _ref_value(data.get("CustomerRef"))
        if customer_id is None:
            raise required("CustomerRef")
        customer = self._find_active(realm, KINDS["customer"], customer_id, "CustomerRef")
        data["CustomerRef"] = {"value": customer_id, "name": customer["DisplayName"]}
        if data.get("TotalAmt") is None:
            raise required("TotalAmt")
        total = _decimal(data["TotalAmt"], "TotalAmt")
        if total < 0:
            raise invalid("TotalAmt", "Property Name:TotalAmt must not be negative")
        lines = data.get("Line", [])
        if not isinstance(lines, list):
            raise invalid("Line")
        previously = realm.applied.get(current_id or "", {})
        credited_before = realm.credits.get(current_id or "", {})
        applied: dict[str, Decimal] = {}
        credits: dict[str, Decimal] = {}
        for raw in lines:
            if not isinstance(raw, dict) or raw.get("Amount") is None:
                raise required("Line.Amount")
            amount = _decimal(raw["Amount"], "Line.Amount")
            links = raw.get("LinkedTxn")
            if not isinstance(links, list) or not links:
                raise required("Line.LinkedTxn")
            for link in links:
                if not isinstance(link, dict) or link.get("TxnId") in (None, ""):
                    raise required("Line.LinkedTxn.TxnId")
                if link.get("TxnType") == "CreditMemo":  # a credit used to pay the invoices of this payment
                    memo = self._find(realm, KINDS["creditmemo"], str(link["TxnId"]), "Line.LinkedTxn")
                    if _ref_value(memo.get("CustomerRef")) != customer_id:
                        raise business(f"credit memo {memo['Id']} belongs to another customer",
                                       element="Line.LinkedTxn")
                    credits[memo["Id"]] = credits.get(memo["Id"], Decimal(0)) + amount
                    continue
                if link.get("TxnType") != "Invoice":
                    raise invalid("Line.LinkedTxn.TxnType", "Property Name:Line.LinkedTxn.TxnType: this sandbox "
                                                            "applies payments to Invoice and CreditMemo only")
                invoice_id = str(link["TxnId"])
                invoice = self._find(realm, KINDS["invoice"], invoice_id, "Line.LinkedTxn")
                if _ref_value(invoice.get("CustomerRef")) != customer_id:
                    raise business(f"invoice {invoice_id} belongs to another customer", element="Line.LinkedTxn")
                applied[invoice_id] = applied.get(invoice_id, Decimal(0)) + amount
            raw["Amount"] = _money(amount)
        for invoice_id, amount in applied.items():
            invoice = realm.entities["invoice"][invoice_id]
            open_balance = Decimal(str(invoice["Balance"])) + previously.get(invoice_id, Decimal(0))
            if ("invoice", invoice_id) in realm.voided:
                open_balance = Decimal(0)
            if amount > open_balance:
                raise business(f"the amount applied to invoice {invoice_id} ({_money(amount)}) exceeds its open "
                               f"balance ({_money(open_balance)})", element="Line.Amount")
        for memo_id, amount in credits.items():
            memo = realm.entities["creditmemo"][memo_id]
            available = Decimal(str(memo["Balance"])) + credited_before.get(memo_id, Decimal(0))
            if amount > available:
                raise business(f"the credit applied from credit memo {memo_id} ({_money(amount)}) exceeds its "
                               f"remaining credit ({_money(available)})", element="Line.Amount")
        applied_total = sum(applied.values(), Decimal(0)) - sum(credits.values(), Decimal(0))
        if applied_total > total:
            raise business("the amount applied to transactions exceeds the payment's TotalAmt", element="TotalAmt")
        data["TotalAmt"] = _money(total)
        data["UnappliedAmt"] = _money(total - applied_total)
        data["Line"] = lines
        today = datetime.fromtimestamp(self.clock(), tz=COMPANY_TZ).date().isoformat()
        data.setdefault("TxnDate", today)
        _check_customer_currency(customer, data.setdefault("CurrencyRef", dict(HOME_CURRENCY)))
        return data, {"applied": applied, "credits": credits}

    # ----------------------------------------------------------------- queries

    def _run_query(self, realm: _Realm, text: str) -> dict[str, Any]:
        query = parse_query(text)
        kind = query.kind
        conditions = list(query.conditions)
        if kind.name_list and not any(condition.field == "Active" for condition in conditions):
            conditions.append(Condition("Active", "=", (True,)))
        # filter the stored entities, then render only the matches: rendering copies each row (and sums a
        # customer's invoices), and doing that for every row made each query O(rows x invoices). No filterable
        # field is one _render computes (a customer's Balance is not filterable), so the answer is the same.
        rows = [self._render(realm, kind, entity) for entity_id, entity in realm.entities[kind.path].items()
                if (kind.path, entity_id) not in self._hidden
                and all(_matches(entity, condition) for condition in conditions)]
        if query.count:
            return {"totalCount": len(rows)}
        rows.sort(key=lambda row: int(row["Id"]))
        if query.order:
            rows.sort(key=lambda row: _order_key(query.order, row))
        page = rows[query.start_position - 1:query.start_position - 1 + query.max_results]
        if not page:
            return {}
        if query.fields is not None:
            page = [{name: row[name] for name in ("Id", *query.fields, "SyncToken") if name in row}
                    | {"sparse": True} for row in page]
        return {kind.name: page, "startPosition": query.start_position, "maxResults": len(page)}

    # ----------------------------------------------------------------- lookups and rendering

    def _realm(self, realm_id: str) -> _Realm:
        realm = self._realms.get(realm_id)
        if realm is None:
            realm = self._realms[realm_id] = _Realm(realm_id)
        return realm

    def _existing_realm(self, realm_id: str) -> _Realm:
        realm = self._realms.get(realm_id)
        if realm is None:
            raise KeyError(f"unknown realm {realm_id!r}: connect_realm or seed data first")
        return realm

    @staticmethod
    def _kind(entity: str) -> EntityKind:
        kind = KINDS.get(entity.lower())
        if kind is None:
            raise unsupported(f"Operation on entity '{entity}' is not supported by this sandbox.")
        return kind

    def _find(self, realm: _Realm, kind: EntityKind, entity_id: str, element: str = "") -> dict[str, Any]:
        entity = realm.entities[kind.path].get(entity_id)
        if entity is None or (kind.path, entity_id) in self._hidden:
            raise not_found(kind.name, entity_id, element)
        return entity

    def _find_active(self, realm: _Realm, kind: EntityKind, entity_id: str, element: str) -> dict[str, Any]:
        entity = self._find(realm, kind, entity_id, element)
        if entity.get("Active") is False:
            raise not_found(kind.name, entity_id, element)
        return entity

    def _render(self, realm: _Realm, kind: EntityKind, entity: Mapping[str, Any]) -> dict[str, Any]:
        rendered = copy.deepcopy(dict(entity))
        if kind.path == "customer":
            balance = sum((Decimal(str(invoice["Balance"])) for invoice in realm.entities["invoice"].values()
                           if _ref_value(invoice.get("CustomerRef")) == entity["Id"]), Decimal(0))
            rendered["Balance"] = rendered["BalanceWithJobs"] = _money(balance)
        return rendered

    def _company_info(self, realm: _Realm) -> dict[str, Any]:
        return {"CompanyName": f"Sandbox Company {realm.realm_id}", "LegalName": f"Sandbox Company {realm.realm_id}",
                "Country": "US", "Id": "1", "SyncToken": "0", "domain": "QBO", "sparse": False}

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        body = http.read_json_object(request)
        if body is None:
            raise invalid("body", "Property Name:body: the request body must be a JSON object (this sandbox "
                                  "speaks JSON only)")
        return body

    def _seed(self, realm_id: str, path: str, body: Mapping[str, Any], notify: bool) -> dict[str, Any]:
        with self._lock:
            return self._create(self._realm(str(realm_id)), KINDS[path], body, notify=notify)

    def _emit(self, realm: _Realm, name: str, entity_id: str, operation: str) -> None:
        """Queue a notification (called with the lock held, so events keep the order of the changes)."""
        if not realm.connected or name not in self.webhook_entities:
            return
        event = WebhookEvent(realm.realm_id, name, entity_id, operation, utc_time(self.clock()), str(uuid.uuid4()))
        self._events.append(event)
        self.outbox.enqueue(event)

    # ----------------------------------------------------------------- admin (no auth, no faults)

    def _ep_admin_state(self, request: Request) -> Response:
        return http.json_response(self.snapshot())

    def _ep_admin_reset(self, request: Request) -> Response:
        self.reset()
        return http.json_response({"ok": True})

    def _ep_admin_set_faults(self, request: Request) -> Response:
        try:
            self.faults.configure(http.read_json_object(request) or {})
        except (TypeError, ValueError) as error:
            return http.json_response({"ok": False, "error": str(error)}, status=400)
        return http.json_response({"ok": True, "plan": self.faults.plan.to_dict()})

    def _ep_admin_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return http.json_response({"ok": True})

    def _ep_admin_connect(self, request: Request, realm_id: str) -> Response:
        return http.json_response(self.connect_realm(realm_id))

    def _ep_admin_revoke(self, request: Request, realm_id: str) -> Response:
        self.revoke_realm(realm_id)
        return http.json_response({"ok": True})

    def _ep_admin_lose_answers(self, request: Request) -> Response:
        body = http.read_json_object(request) or {}
        try:
            self.lose_refresh_answers(int(body.get("n", 1)))
        except (TypeError, ValueError) as error:
            return http.json_response({"ok": False, "error": str(error)}, status=400)
        return http.json_response({"ok": True})

    def _ep_admin_seed_item(self, request: Request, realm_id: str) -> Response:
        body = self._json_body(request)
        notify = bool(body.pop("notify", False))
        item = self._create(self._realm(realm_id), KINDS["item"], body, notify=notify)
        return http.json_response({"Item": item})

    def _ep_admin_item_quantity(self, request: Request, realm_id: str, item_id: str) -> Response:
        body = self._json_body(request)
        qty = body.get("QtyOnHand", body.get("qty"))
        try:
            item = self.set_item_quantity(realm_id, item_id, qty)
        except KeyError as error:
            return http.json_response({"error": "not_found", "message": str(error)}, status=404)
        return http.json_response({"Item": item})
