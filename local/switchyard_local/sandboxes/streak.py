"""Stateful in-memory Streak CRM sandbox speaking the real API paths and payloads our connector uses.

Usage::

    with StreakSandbox() as sandbox:          # serves on 127.0.0.1:<free port>
        client = httpx.Client(base_url=sandbox.base_url, auth=("sandbox-key", ""))
        ...
        sandbox.snapshot()

or in-process: ``httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), ...)``.

Outbound webhooks: register through the API (``POST /api/v2/webhooks?pipelineKey=...``), change data
through the API or as a Streak user would (``sandbox.move_box``/``sandbox.edit_contact`` or the
``/_sandbox/boxes/{key}/stage`` and ``/_sandbox/contacts/{key}`` admin routes), then
``sandbox.wait_for_webhooks()`` and inspect ``sandbox.webhook_deliveries``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.faults import FaultInjector

FieldType = Literal["TEXT_INPUT", "NUMBER", "DATE", "DROPDOWN", "CHECKBOX", "TAG"]

MISSING_PARAMETERS = "Missing parameters"
INVALID_PATH = "Invalid API path specified"
# Anything below this is far more plausibly epoch seconds (1973 in ms, year 5138 in seconds).
MIN_EPOCH_MS = 100_000_000_000
DUPLICATE_EMAIL_ERROR_CODE = 801

WebhookScope = Literal["pipeline", "team"]
PIPELINE_WEBHOOK_EVENTS = frozenset(
    {
        "BOX_CREATE",
        "BOX_DELETE",
        "STAGE_CREATE",
        "BOX_NEW_EMAIL_ADDRESS",
        "BOX_EDIT",
        "BOX_CHANGE_STAGE",
        "BOX_CHANGE_PIPELINE",
        "COMMENT_CREATE",
        "MEETING_CREATE",
        "MEETING_UPDATE",
        "TASK_CREATE",
        "TASK_COMPLETE",
        "TASK_DUE",
    }
)
TEAM_WEBHOOK_EVENTS = frozenset(
    {"CONTACT_CREATE", "CONTACT_UPDATE", "CONTACT_DELETE", "ORG_CREATE", "ORG_UPDATE", "ORG_DELETE"}
)
WEBHOOK_EVENTS: dict[WebhookScope, frozenset[str]] = {
    "pipeline": PIPELINE_WEBHOOK_EVENTS,
    "team": TEAM_WEBHOOK_EVENTS,
}
WEBHOOK_SCOPE_PARAMS: dict[WebhookScope, str] = {"pipeline": "pipelineKey", "team": "teamKey"}
WEBHOOK_TOKEN_HEADER = "X-Streak-Webhook-Token"
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)
# Streak's search answers one page at a time (``page``, 1-based); the client reads until a page is empty.
SEARCH_PAGE_SIZE = 10


# --------------------------------------------------------------------------- pipeline definition


@dataclass(frozen=True)
class StageSpec:
    key: str
    name: str


@dataclass(frozen=True)
class FieldSpec:
    key: str
    name: str
    type: FieldType
    items: tuple[tuple[str, str], ...] = ()  # DROPDOWN: (item key, item name)
    tags: tuple[tuple[str, str], ...] = ()  # TAG: (tag key, tag text)

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "name": self.name, "type": self.type}
        if self.type == "DROPDOWN":
            data["dropdownSettings"] = {"items": [{"key": k, "name": n} for k, n in self.items]}
        if self.type == "TAG":
            data["tagSettings"] = {"tags": [{"key": k, "tag": t} for k, t in self.tags]}
        return data


@dataclass(frozen=True)
class PipelineSpec:
    key: str
    name: str
    stages: tuple[StageSpec, ...]
    fields: tuple[FieldSpec, ...]

    def stage(self, key: Any) -> StageSpec | None:
        return next((s for s in self.stages if s.key == key), None)

    def field(self, key: Any) -> FieldSpec | None:
        return next((f for f in self.fields if f.key == key), None)

    def stages_api(self) -> dict[str, dict[str, str]]:
        return {s.key: {"key": s.key, "name": s.name} for s in self.stages}

    def to_api(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "pipelineKey": self.key,
            "name": self.name,
            "stageOrder": [s.key for s in self.stages],
            "stages": self.stages_api(),
            "fields": [f.to_api() for f in self.fields],
        }


DEMO_PIPELINE = PipelineSpec(
    key="pl_orders",
    name="Orders",
    stages=(
        StageSpec("5001", "New Order"),
        StageSpec("5002", "Processing"),
        StageSpec("5003", "Complete"),
        StageSpec("5004", "Cancelled"),
    ),
    fields=(
        FieldSpec("1001", "Order number", "TEXT_INPUT"),
        FieldSpec("1002", "Order total", "NUMBER"),
        FieldSpec("1003", "Order date", "DATE"),
        FieldSpec(
            "1004",
            "Payment status",
            "DROPDOWN",
            items=(
                ("9001", "Pending"),
                ("9002", "Authorized"),
                ("9003", "Paid"),
                ("9004", "Partially refunded"),
                ("9005", "Refunded"),
                ("9006", "Voided"),
            ),
        ),
        FieldSpec("1005", "Line items", "TEXT_INPUT"),
        FieldSpec("1006", "Currency", "TEXT_INPUT"),
        FieldSpec("1021", "Billing street", "TEXT_INPUT"),
        FieldSpec("1022", "Billing city", "TEXT_INPUT"),
        FieldSpec("1023", "Billing state/province", "TEXT_INPUT"),
        FieldSpec("1024", "Billing postal code", "TEXT_INPUT"),
        FieldSpec("1025", "Billing country", "TEXT_INPUT"),
        FieldSpec("1026", "Shipping street", "TEXT_INPUT"),
        FieldSpec("1027", "Shipping city", "TEXT_INPUT"),
        FieldSpec("1028", "Shipping state/province", "TEXT_INPUT"),
        FieldSpec("1029", "Shipping postal code", "TEXT_INPUT"),
        FieldSpec("1030", "Shipping country", "TEXT_INPUT"),
    ),
)


# the sales team of the demo: the reps the shipped mapping documents assign deals to
DEMO_TEAM_MEMBERS = (
    "sales-rep@example.com",
    "ana.north@example.com", "ben.north@example.com", "carla.north@example.com",
    "chloe.europe@example.com", "dan.europe@example.com",
    "kim.accounts@example.com",
)


# --------------------------------------------------------------------------- errors and validation


def error_body(message: str | None, error_code: int | None = None) -> dict[str, Any]:
    """Streak's error shape: ``{"success": false, "error": ..., "errorCode"?: ...}``."""
    body: dict[str, Any] = {"success": False}
    if message is not None:
        body["error"] = message
    if error_code is not None:
        body["errorCode"] = error_code
    return body


class StreakError(Exception):
    """An API error answered as Streak's JSON error body."""

    def __init__(self, status: int, message: str | None, error_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def response(self) -> Response:
        return http.json_response(error_body(self.message, self.error_code), status=self.status)


def _missing() -> StreakError:
    return StreakError(400, MISSING_PARAMETERS)


def epoch_ms_problem(value: Any) -> str | None:
    """Why ``value`` is not an epoch-milliseconds timestamp, or None when it is one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer timestamp in epoch milliseconds, got {value!r}"
    if value < MIN_EPOCH_MS:
        return f"expected epoch milliseconds, got {value} which looks like epoch seconds (multiply by 1000)"
    return None


def _text_problem(spec: FieldSpec, value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {value!r}"


def _number_problem(spec: FieldSpec, value: Any) -> str | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and math.isfinite(value):
        return None
    return f"expected a JSON number, got {value!r}"


def _date_problem(spec: FieldSpec, value: Any) -> str | None:
    return epoch_ms_problem(value)


def _dropdown_problem(spec: FieldSpec, value: Any) -> str | None:
    keys = [key for key, _ in spec.items]
    if isinstance(value, str) and value in keys:
        return None
    problem = f"expected a dropdown item key (one of {', '.join(keys)}), got {value!r}"
    by_label = {name.lower(): key for key, name in spec.items}
    if isinstance(value, str) and value.lower() in by_label:
        problem += f"; that is an item name, send its key {by_label[value.lower()]!r}"
    return problem


def _checkbox_problem(spec: FieldSpec, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _tag_problem(spec: FieldSpec, value: Any) -> str | None:
    keys = {key for key, _ in spec.tags}
    if isinstance(value, list) and all(isinstance(v, str) and v in keys for v in value):
        return None
    return f"expected a list of tag keys (from {', '.join(sorted(keys))}), got {value!r}"


_FIELD_CHECKS: dict[str, Callable[[FieldSpec, Any], str | None]] = {
    "TEXT_INPUT": _text_problem,
    "NUMBER": _number_problem,
    "DATE": _date_problem,
    "DROPDOWN": _dropdown_problem,
    "CHECKBOX": _checkbox_problem,
    "TAG": _tag_problem,
}


def validate_field_value(spec: FieldSpec, value: Any) -> None:
    """Raise a 400 naming the field when ``value`` does not fit the field's type."""
    problem = _FIELD_CHECKS[spec.type](spec, value)
    if problem:
        raise StreakError(400, f'Invalid value for field {spec.key} "{spec.name}" ({spec.type}): {problem}')


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


# Writable properties of team contacts/organizations and the type check for each.
_STR, _STR_LIST = _is_str, _is_str_list
CONTACT_PROPERTIES: dict[str, Callable[[Any], bool]] = {
    "givenName": _STR,
    "familyName": _STR,
    "emailAddresses": _STR_LIST,
    "title": _STR,
    "phoneNumbers": _STR_LIST,
    "addresses": _STR_LIST,
    "other": _STR,
    "twitterHandle": _STR,
    "facebookHandle": _STR,
    "linkedinHandle": _STR,
    "photoUrl": _STR,
}
ORGANIZATION_PROPERTIES: dict[str, Callable[[Any], bool]] = {
    "name": _STR,
    "domains": _STR_LIST,
    "phoneNumbers": _STR_LIST,
    "addresses": _STR_LIST,
    "industry": _STR,
    "logoURL": _STR,
    "other": _STR,
    "twitterHandle": _STR,
    "facebookHandle": _STR,
    "linkedinHandle": _STR,
}


def _clean_properties(
    body: Mapping[str, Any], allowed: Mapping[str, Callable[[Any], bool]]
) -> dict[str, Any]:
    """Keep known properties (unknown ones are ignored, like Streak) after checking their types."""
    cleaned = {}
    for name, check in allowed.items():
        if name in body:
            if not check(body[name]):
                raise StreakError(400, f"Invalid value for {name}: {body[name]!r}")
            cleaned[name] = body[name]
    return cleaned


def _has_duplicates(values: list[str]) -> bool:
    return len(set(values)) != len(values)


def _score(needle: str, haystack: Iterable[Any]) -> int:
    """How often the query occurs in the texts: 0 is no match."""
    return sum(text.lower().count(needle) for text in haystack if isinstance(text, str))


def _ranked_page(scored: list[tuple[dict[str, Any], int]], page: int) -> list[dict[str, Any]]:
    # equal scores: most recently updated first, then most recently created (later in the table)
    matches = [(-score, -entity.get("lastUpdatedTimestamp", 0), -index, entity)
               for index, (entity, score) in enumerate(scored) if score > 0]
    matches.sort(key=lambda ranked: ranked[:3])
    start = (page - 1) * SEARCH_PAGE_SIZE
    return [ranked[3] for ranked in matches[start:start + SEARCH_PAGE_SIZE]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _same(left: Any, right: Any) -> bool:
    """JSON equality: ``True`` differs from ``1`` and dict key order does not matter."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def _is_http_url(value: str) -> bool:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


# --------------------------------------------------------------------------- routing

# One table for API and admin routes; the endpoint name selects the ``_ep_<name>`` method.
# strict_slashes=False: "/contacts" and "/contacts/" both match, without redirects.
_ROUTES = Map(
    [
        Rule("/api/v1/users/me", endpoint="get_me", methods=["GET"]),
        Rule("/api/v2/users/me/teams", endpoint="get_teams", methods=["GET"]),
        Rule("/api/v1/pipelines", endpoint="list_pipelines", methods=["GET"]),
        Rule("/api/v1/pipelines/<pipeline_key>", endpoint="get_pipeline", methods=["GET"]),
        Rule("/api/v1/pipelines/<pipeline_key>/stages", endpoint="get_stages", methods=["GET"]),
        Rule("/api/v1/pipelines/<pipeline_key>/fields", endpoint="get_fields", methods=["GET"]),
        Rule("/api/v1/pipelines/<pipeline_key>/boxes", endpoint="list_boxes", methods=["GET"]),
        Rule("/api/v2/pipelines/<pipeline_key>/boxes", endpoint="create_box", methods=["POST"]),
        Rule("/api/v1/boxes/<box_key>", endpoint="get_box", methods=["GET"]),
        Rule("/api/v1/boxes/<box_key>", endpoint="update_box", methods=["POST"]),
        Rule("/api/v1/boxes/<box_key>/fields", endpoint="get_box_fields", methods=["GET"]),
        Rule("/api/v1/boxes/<box_key>/fields/<field_key>", endpoint="set_box_field", methods=["POST"]),
        Rule("/api/v1/search", endpoint="search", methods=["GET"]),
        Rule("/api/v2/teams/<team_key>/contacts/", endpoint="create_contact", methods=["POST"]),
        Rule("/api/v2/contacts/<contact_key>", endpoint="get_contact", methods=["GET"]),
        Rule("/api/v2/contacts/<contact_key>", endpoint="update_contact", methods=["POST"]),
        Rule("/api/v2/contacts/<contact_key>", endpoint="delete_contact", methods=["DELETE"]),
        Rule("/api/v2/teams/<team_key>/organizations", endpoint="create_organization", methods=["POST"]),
        Rule("/api/v2/organizations/<org_key>", endpoint="get_organization", methods=["GET"]),
        Rule("/api/v2/organizations/<org_key>", endpoint="update_organization", methods=["POST"]),
        Rule("/api/v2/boxes/<box_key>/tasks", endpoint="list_tasks", methods=["GET"]),
        Rule("/api/v2/boxes/<box_key>/tasks", endpoint="create_task", methods=["POST"]),
        Rule("/api/v2/boxes/<box_key>/comments", endpoint="list_comments", methods=["GET"]),
        Rule("/api/v2/boxes/<box_key>/comments", endpoint="create_comment", methods=["POST"]),
        Rule("/api/v2/webhooks", endpoint="create_webhook", methods=["POST"]),
        Rule("/api/v2/webhooks", endpoint="list_webhooks", methods=["GET"]),
        Rule("/api/v2/webhooks/<webhook_key>", endpoint="delete_webhook", methods=["DELETE"]),
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
        Rule("/_sandbox/slow_writes", endpoint="admin_slow_writes", methods=["POST"]),
        Rule("/_sandbox/search_lag", endpoint="admin_search_lag", methods=["POST"]),
        Rule("/_sandbox/boxes/<box_key>/stage", endpoint="admin_move_box", methods=["POST"]),
        Rule("/_sandbox/contacts/<contact_key>", endpoint="admin_edit_contact", methods=["POST"]),
        Rule("/_sandbox/webhooks/deliveries", endpoint="admin_webhook_deliveries", methods=["GET"]),
    ],
    strict_slashes=False,
)


@dataclass(frozen=True)
class _Call:
    """What a handler sees of the request: query parameters and the JSON body (``{}`` for GET)."""

    query: MultiDict[str, str]
    body: dict[str, Any]

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() == "true"


@dataclass
class _State:
    boxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: defaultdict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    comments: defaultdict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    counters: defaultdict[str, itertools.count[int]] = field(
        default_factory=lambda: defaultdict(lambda: itertools.count(1))
    )
    # box key -> monotonic time from which search finds it (the index lags behind creates)
    indexed_at: dict[str, float] = field(default_factory=dict)
    # endpoint name -> seconds to wait before carrying out the next such requests (queued, FIFO)
    slow_writes: defaultdict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def new_key(self, prefix: str) -> str:
        return f"{prefix}_{next(self.counters[prefix])}"


# --------------------------------------------------------------------------- outbound webhooks


@dataclass
class _Outgoing:
    """One webhook delivery: the body is serialised when the event fires, so every retry sends the same bytes."""

    webhook_key: str
    event: str
    target_url: str
    token: str | None
    object_key: str | None
    body: bytes
    generation: int
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None


@dataclass
class _Worker:
    thread: threading.Thread
    stop: threading.Event


class WebhookDispatcher:
    """Registered webhooks plus an outbox that one background thread delivers in order.

    A ``200`` answer completes a delivery, ``410 Gone`` deletes the webhook, anything else (or a
    connection error) is retried after each of ``retry_delays`` and then recorded as failed.
    Lock order: callers may hold the sandbox lock when calling in; the worker never takes it.
    """

    def __init__(
        self,
        retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        timeout: float = 5.0,
    ) -> None:
        if any(delay < 0 for delay in retry_delays):
            raise ValueError(f"webhook retry delays must not be negative, got {tuple(retry_delays)!r}")
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self._cond = threading.Condition()
        self._hooks: dict[str, dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self._outbox: deque[_Outgoing] = deque()
        self._in_flight = False
        self._deliveries: list[dict[str, Any]] = []
        self._generation = 0  # bumped by reset(): in-flight deliveries of an older generation are dropped
        self._worker: _Worker | None = None

    # ----------------------------------------------------------------- registrations

    def register(
        self, scope: WebhookScope, scope_key: str, event: str, target_url: str, token: str | None
    ) -> dict[str, Any]:
        with self._cond:
            key = f"webhook_{next(self._counter)}"
            self._hooks[key] = {
                "key": key,
                "event": event,
                "targetUrl": target_url,
                WEBHOOK_SCOPE_PARAMS[scope]: scope_key,
                "creationTimestamp": _now_ms(),
                "_scope": (scope, scope_key),
                "_token": token,
            }
            return _public_hook(self._hooks[key])

    def list(self, scope: WebhookScope, scope_key: str) -> list[dict[str, Any]]:
        with self._cond:
            return [_public_hook(hook) for hook in self._hooks.values() if hook["_scope"] == (scope, scope_key)]

    def delete(self, webhook_key: str) -> bool:
        with self._cond:
            found = self._hooks.pop(webhook_key, None) is not None
            self._cond.notify_all()  # wakes a delivery backing off for this webhook
            return found

    # ----------------------------------------------------------------- events and delivery

    def publish(self, scope: WebhookScope, scope_key: str, event: str, obj: dict[str, Any]) -> int:
        """Queue ``[obj]`` for every webhook registered for ``event`` in this scope; return how many."""
        with self._cond:
            hooks = [h for h in self._hooks.values() if h["event"] == event and h["_scope"] == (scope, scope_key)]
            if not hooks:
                return 0
            body = json.dumps([obj], separators=(",", ":")).encode()
            for hook in hooks:
                self._outbox.append(
                    _Outgoing(
                        webhook_key=hook["key"],
                        event=event,
                        target_url=hook["targetUrl"],
                        token=hook["_token"],
                        object_key=obj.get("key"),
                        body=body,
                        generation=self._generation,
                    )
                )
            self._ensure_worker()
            self._cond.notify_all()
            return len(hooks)

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until the outbox is empty and nothing is in flight; False when ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._outbox and not self._in_flight, timeout=timeout)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return copy.deepcopy(self._deliveries)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._outbox) + int(self._in_flight)

    # ----------------------------------------------------------------- lifecycle

    def resume(self) -> None:
        """Restart the worker if deliveries are waiting (after ``stop``)."""
        with self._cond:
            if self._outbox:
                self._ensure_worker()

    def reset(self) -> None:
        """Forget webhooks, queued deliveries and the delivery record; drop a delivery in flight."""
        with self._cond:
            self._hooks.clear()
            self._outbox.clear()
            self._deliveries.clear()
            self._counter = itertools.count(1)
            self._generation += 1
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop the worker thread. Queued deliveries stay queued until the next event or ``resume``."""
        with self._cond:
            worker, self._worker = self._worker, None
            if worker is None:
                return
            worker.stop.set()
            self._cond.notify_all()
        # A request in progress cannot be interrupted; the thread is a daemon if it outlives this.
        worker.thread.join(timeout=self.timeout + 1)

    def _ensure_worker(self) -> None:  # caller holds self._cond
        if self._worker is None or not self._worker.thread.is_alive():
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), name="streak-webhooks", daemon=True)
            self._worker = _Worker(thread, stop)
            thread.start()

    def _run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: stop.is_set() or bool(self._outbox))
                    if stop.is_set():
                        return
                    item = self._outbox.popleft()
                    self._in_flight = True
                try:
                    self._deliver(client, item, stop)
                finally:
                    with self._cond:
                        self._in_flight = False
                        self._cond.notify_all()

    def _deliver(self, client: httpx.Client, item: _Outgoing, stop: threading.Event) -> None:
        while True:
            with self._cond:
                if not self._is_live(item):
                    self._record(item, "cancelled")  # webhook deleted (or sandbox reset) meanwhile
                    return
            self._attempt(client, item)
            if item.status_code == 200:
                self._record(item, "delivered")
                return
            if item.status_code == 410:
                with self._cond:
                    if item.generation == self._generation:
                        self._hooks.pop(item.webhook_key, None)
                self._record(item, "webhook_deleted")
                return
            if item.attempts > len(self.retry_delays):
                self._record(item, "failed")
                return
            with self._cond:
                delay = self.retry_delays[item.attempts - 1]
                self._cond.wait_for(lambda: stop.is_set() or not self._is_live(item), timeout=delay)
                if stop.is_set():
                    if self._is_live(item):
                        self._outbox.appendleft(item)  # resumed (with its attempt count) after a restart
                    return

    def _attempt(self, client: httpx.Client, item: _Outgoing) -> None:
        headers = {"Content-Type": "application/json"}
        if item.token:
            headers[WEBHOOK_TOKEN_HEADER] = item.token
        item.attempts += 1
        try:
            response = client.post(item.target_url, content=item.body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            item.status_code, item.error = None, f"{type(error).__name__}: {error}"
        else:
            item.status_code, item.error = response.status_code, None

    def _is_live(self, item: _Outgoing) -> bool:  # caller holds self._cond
        return item.generation == self._generation and item.webhook_key in self._hooks

    def _record(self, item: _Outgoing, outcome: str) -> None:
        with self._cond:
            if item.generation != self._generation or item.attempts == 0:
                return  # reset since, or dropped before any attempt: nothing was delivered
            self._deliveries.append(
                {
                    "webhook_key": item.webhook_key,
                    "event": item.event,
                    "target_url": item.target_url,
                    "object_key": item.object_key,
                    "status_code": item.status_code,
                    "error": item.error,
                    "attempts": item.attempts,
                    "outcome": outcome,
                }
            )


def _public_hook(hook: dict[str, Any]) -> dict[str, Any]:
    """The API view of a webhook: internal fields (scope tuple, token) are not echoed."""
    return {name: value for name, value in hook.items() if not name.startswith("_")}


# --------------------------------------------------------------------------- the sandbox


class StreakSandbox(http.SandboxApp):
    """In-memory Streak CRM: a WSGI app (``wsgi_app``) that can also serve itself on a local port."""

    def __init__(
        self,
        api_key: str = "sandbox-key",
        team_key: str = "team_1",
        pipeline: PipelineSpec = DEMO_PIPELINE,
        user_email: str = "sales-rep@example.com",
        team_members: Iterable[str] = DEMO_TEAM_MEMBERS,
        webhook_retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        webhook_timeout: float = 5.0,
        search_lag_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock  # seconds: Streak's change times (lastUpdatedTimestamp) come from it
        # in-process observers (tests, the chaos harness): (event, object) for every webhook event fired
        self.on_fire: Callable[[str, dict[str, Any]], None] | None = None
        self.api_key = api_key
        # a created box is found by search only this long after the create (Streak's index lags)
        self.search_lag_seconds = search_lag_seconds
        self.team_key = team_key
        self.pipeline = pipeline
        self.user_email = user_email
        # who can be assigned a box: the team's members (the API key's user always is one)
        self.team_members = frozenset(email.lower() for email in (user_email, *team_members))
        self.user_key = "user_1"
        self.requests = http.RequestLog()
        self.faults = FaultInjector(error_body=error_body)
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self._state = _State()
        self._created_ms = self._now_ms()
        self._stop: Callable[[], None] | None = None
        self._webhooks = WebhookDispatcher(retry_delays=webhook_retry_delays, timeout=webhook_timeout)

    # ----------------------------------------------------------------- lifecycle

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        base_url = super().serve(host, port)
        self._webhooks.resume()
        return base_url

    def stop(self) -> None:
        """Stop serving and stop the webhook delivery thread (queued deliveries stay queued)."""
        super().stop()
        self._webhooks.stop()

    # ----------------------------------------------------------------- inspection

    def reset(self) -> None:
        """Forget all data, recorded requests, faults, webhooks, queued and recorded webhook deliveries."""
        with self._lock:
            # keys are never reused, as in Streak: a key Switchyard linked before the reset must not name a new record
            self._state = _State(counters=self._state.counters)
            self._webhooks.reset()
        self.requests.clear()
        self.faults.clear()

    def carry_out_late(self, endpoint: str, seconds: float, n: int = 1) -> None:
        """The next ``n`` requests to ``endpoint`` (e.g. ``create_box``, ``create_task``) wait
        ``seconds`` and only then are carried out: a client that gave up meanwhile saw a timeout,
        yet the write happens, later, as with the real service on a slow day."""
        if seconds < 0 or n < 0:
            raise ValueError("seconds and n must not be negative")
        with self._lock:
            self._state.slow_writes[endpoint].extend([seconds] * n)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook delivery finished (retries included); False on timeout."""
        return self._webhooks.wait(timeout)

    @property
    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Finished deliveries in order: webhook_key, event, target_url, object_key, status_code, error,
        attempts and outcome (``delivered``, ``failed``, ``webhook_deleted`` after a 410, ``cancelled``)."""
        return self._webhooks.deliveries

    # ----------------------------------------------------------------- a Streak user's actions (UI)

    def move_box(self, box_key: str, stage_key: str) -> dict[str, Any]:
        """A rep drags the box to another stage: same state change and webhooks as the API update.

        Raises ``StreakError`` (404 unknown box, 400 invalid stage key).
        """
        with self._lock:
            box = self._box(box_key)
            return self._apply_box_changes(box, {"stageKey": self._check_stage(stage_key)})

    def edit_contact(self, contact_key: str, /, **changes: Any) -> dict[str, Any]:
        """A rep edits the contact: same validation, state change and webhooks as the API update."""
        with self._lock:
            contact = self._contact(contact_key)
            return self._apply_changes(contact, self._contact_properties(changes), "CONTACT_UPDATE")

    def snapshot(self) -> dict[str, Any]:
        """Human-oriented view of the state: names instead of keys where that helps assertions."""
        with self._lock:
            state = self._state
            return {
                "boxes": [self._box_summary(box) for box in state.boxes.values()],
                "contacts": copy.deepcopy(list(state.contacts.values())),
                "organizations": copy.deepcopy(list(state.organizations.values())),
            }

    def _box_summary(self, box: dict[str, Any]) -> dict[str, Any]:
        stage = self.pipeline.stage(box["stageKey"])
        contacts = (self._state.contacts.get(ref["key"], {}) for ref in box["contacts"])
        orgs = (self._state.organizations.get(ref["key"], {}) for ref in box["organizations"])
        return {
            "key": box["key"],
            "name": box["name"],
            "notes": box["notes"],
            "stage": stage.name if stage else None,
            "stageKey": box["stageKey"],
            "fields": {self._field_name(key): copy.deepcopy(value) for key, value in box["fields"].items()},
            "contacts": [_contact_label(contact) for contact in contacts],
            "organizations": [_organization_label(org) for org in orgs],
            "tasks": [_task_summary(task) for task in self._state.tasks[box["key"]]],
            "comments": [comment["message"] for comment in self._state.comments[box["key"]]],
            "assignees": [entry["email"] for entry in box.get("assignedToSharingEntries", [])],
        }

    def _field_name(self, key: str) -> str:
        spec = self.pipeline.field(key)
        return spec.name if spec else key

    # ----------------------------------------------------------------- WSGI plumbing

    def _handle(self, request: Request) -> Response:
        is_admin = request.path.startswith(http.ADMIN_PREFIX)
        if not is_admin:
            fault = self.faults.apply(request)
            if fault is not None:
                return fault
        try:
            if not is_admin:
                self._authenticate(request)
            endpoint, values = _ROUTES.bind("sandbox").match(request.path, request.method)
            call = _Call(query=request.args, body=self._read_body(request, strict=not is_admin))
            if not is_admin:
                self._wait_if_slow(endpoint)
            with self._lock:
                return http.json_response(getattr(self, f"_ep_{endpoint}")(call, **values))
        except StreakError as error:
            return error.response()
        except HTTPException:
            # A known path with the wrong method is treated as an unknown path too.
            return StreakError(404, INVALID_PATH).response()

    def _wait_if_slow(self, endpoint: str) -> None:
        with self._lock:
            queued = self._state.slow_writes.get(endpoint)
            delay = queued.popleft() if queued else 0.0
        if delay:
            time.sleep(delay)  # outside the lock: other requests go on meanwhile

    def _authenticate(self, request: Request) -> None:
        auth = request.authorization
        if auth is None or auth.type != "basic" or auth.username != self.api_key:
            raise StreakError(401, "Invalid API key")

    @staticmethod
    def _read_body(request: Request, strict: bool) -> dict[str, Any]:
        if request.method != "POST":
            return {}
        if strict and request.mimetype != "application/json":
            raise _missing()
        body = http.read_json_object(request)
        if body is None and (strict or request.get_data()):
            raise _missing()
        return body or {}

    # ----------------------------------------------------------------- lookups

    def _pipeline(self, pipeline_key: str) -> PipelineSpec:
        if pipeline_key != self.pipeline.key:
            raise StreakError(404, INVALID_PATH)
        return self.pipeline

    def _box(self, box_key: str) -> dict[str, Any]:
        return self._lookup(self._state.boxes, box_key, "Box")

    def _contact(self, contact_key: str) -> dict[str, Any]:
        return self._lookup(self._state.contacts, contact_key, "Contact")

    def _organization(self, org_key: str) -> dict[str, Any]:
        return self._lookup(self._state.organizations, org_key, "Organization")

    @staticmethod
    def _lookup(table: dict[str, dict[str, Any]], key: str, kind: str) -> dict[str, Any]:
        if key not in table:
            raise StreakError(404, f"{kind} not found")
        return table[key]

    def _check_team(self, team_key: str) -> None:
        if team_key != self.team_key:
            raise StreakError(400, None)  # the real service answers a bare {"success": false}

    def _check_stage(self, stage_key: Any) -> str:
        if self.pipeline.stage(stage_key) is None:
            raise StreakError(400, "Invalid stage key")
        return stage_key

    def _validated_fields(self, fields: Any) -> dict[str, Any]:
        if not isinstance(fields, dict):
            raise StreakError(400, "fields must be an object mapping field keys to values")
        for key, value in fields.items():
            validate_field_value(self._field_spec(key), value)
        return dict(fields)

    def _field_spec(self, field_key: str) -> FieldSpec:
        spec = self.pipeline.field(field_key)
        if spec is None:
            raise StreakError(400, "Invalid field key")
        return spec

    def _references(self, refs: Any, table: dict[str, Any], kind: str) -> list[dict[str, str]]:
        if not isinstance(refs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("key"), str) for r in refs
        ):
            raise StreakError(400, f'{kind}s must be a list of {{"key": ...}} objects')
        keys = list(dict.fromkeys(ref["key"] for ref in refs))
        for key in keys:
            if key not in table:
                raise StreakError(400, f"Invalid {kind} key: {key}")
        return [{"key": key} for key in keys]

    def _touch(self, entity: dict[str, Any]) -> dict[str, Any]:
        # Strictly increasing, even for several updates within one millisecond.
        entity["lastUpdatedTimestamp"] = max(self._now_ms(), entity.get("lastUpdatedTimestamp", 0) + 1)
        return copy.deepcopy(entity)

    def _fire(self, event: str, obj: dict[str, Any]) -> None:
        """Queue webhook deliveries of ``[obj]`` for ``event`` (pipeline or team scope by event name)."""
        if self.on_fire is not None:
            self.on_fire(event, copy.deepcopy(obj))
        if event in PIPELINE_WEBHOOK_EVENTS:
            self._webhooks.publish("pipeline", self.pipeline.key, event, obj)
        else:
            self._webhooks.publish("team", self.team_key, event, obj)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _insert(self, table: dict[str, Any], key: str, entity: dict[str, Any]) -> dict[str, Any]:
        now = self._now_ms()
        table[key] = {"key": key, **entity, "creationTimestamp": now, "lastUpdatedTimestamp": now}
        return copy.deepcopy(table[key])

    # ----------------------------------------------------------------- users, teams, pipelines

    def _ep_get_me(self, call: _Call) -> dict[str, Any]:
        return {
            "email": self.user_email,
            "displayName": self.user_email.split("@")[0],
            "key": self.user_key,
            "userKey": self.user_key,
            "creationTimestamp": self._created_ms,
            "lastUpdatedTimestamp": self._created_ms,
        }

    def _ep_get_teams(self, call: _Call) -> dict[str, Any]:
        team = {"key": self.team_key, "name": "Sandbox team", "members": [{"email": self.user_email}]}
        return {"results": [team]}

    def _ep_list_pipelines(self, call: _Call) -> list[dict[str, Any]]:
        return [self.pipeline.to_api()]

    def _ep_get_pipeline(self, call: _Call, pipeline_key: str) -> dict[str, Any]:
        return self._pipeline(pipeline_key).to_api()

    def _ep_get_stages(self, call: _Call, pipeline_key: str) -> dict[str, Any]:
        return self._pipeline(pipeline_key).stages_api()

    def _ep_get_fields(self, call: _Call, pipeline_key: str) -> list[dict[str, Any]]:
        return [spec.to_api() for spec in self._pipeline(pipeline_key).fields]

    # ----------------------------------------------------------------- boxes

    def _ep_list_boxes(self, call: _Call, pipeline_key: str) -> list[dict[str, Any]]:
        self._pipeline(pipeline_key)
        return [
            copy.deepcopy(box) for box in self._state.boxes.values() if box["pipelineKey"] == pipeline_key
        ]

    def _ep_create_box(self, call: _Call, pipeline_key: str) -> dict[str, Any]:
        pipeline = self._pipeline(pipeline_key)
        name, notes = call.body.get("name"), call.body.get("notes", "")
        if not isinstance(name, str) or not name.strip() or not isinstance(notes, str):
            raise _missing()
        stage_key = self._check_stage(call.body.get("stageKey", pipeline.stages[0].key))
        key = self._state.new_key("box")
        box = self._insert(self._state.boxes, key, self._new_box(key, name, notes, stage_key))
        self._state.indexed_at[key] = time.monotonic() + self.search_lag_seconds
        self._fire("BOX_CREATE", box)
        return box

    def _new_box(self, key: str, name: str, notes: str, stage_key: str) -> dict[str, Any]:
        return {
            "boxKey": key,
            "pipelineKey": self.pipeline.key,
            "stageKey": stage_key,
            "name": name,
            "notes": notes,
            "fields": {},
            "contacts": [],
            "organizations": [],
            "assignedToSharingEntries": [],
        }

    def _ep_get_box(self, call: _Call, box_key: str) -> dict[str, Any]:
        return copy.deepcopy(self._box(box_key))

    def _ep_update_box(self, call: _Call, box_key: str) -> dict[str, Any]:
        box = self._box(box_key)
        changes = self._box_changes(call.body)  # validate everything before changing anything
        return self._apply_box_changes(box, changes)

    def _apply_box_changes(self, box: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Apply validated changes; fire BOX_CHANGE_STAGE / BOX_EDIT for what actually changed."""
        if "fields" in changes:
            changes["fields"] = {**box["fields"], **changes["fields"]}
        changed = {name for name, value in changes.items() if not _same(box[name], value)}
        box.update(changes)
        updated = self._touch(box)
        if "stageKey" in changed:
            self._fire("BOX_CHANGE_STAGE", updated)
        if changed - {"stageKey"}:
            self._fire("BOX_EDIT", updated)
        return updated

    def _box_changes(self, body: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"].strip():
                raise StreakError(400, "Invalid box name")
            changes["name"] = body["name"]
        if "notes" in body:
            if not isinstance(body["notes"], str):
                raise StreakError(400, "Invalid notes")
            changes["notes"] = body["notes"]
        if "stageKey" in body:
            changes["stageKey"] = self._check_stage(body["stageKey"])
        if "contacts" in body:  # replaces the whole list, as the real API does
            changes["contacts"] = self._references(body["contacts"], self._state.contacts, "contact")
        if "organizations" in body:
            changes["organizations"] = self._references(
                body["organizations"], self._state.organizations, "organization"
            )
        if "fields" in body:
            changes["fields"] = self._validated_fields(body["fields"])
        if "assignedToSharingEntries" in body:  # replaces the list; only the team's members can be assigned
            changes["assignedToSharingEntries"] = self._assignees(body["assignedToSharingEntries"])
        return changes

    def _assignees(self, entries: Any) -> list[dict[str, str]]:
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("email"), str) for e in entries
        ):
            raise StreakError(400, 'assignedToSharingEntries must be a list of {"email": ...} objects')
        strangers = [e["email"] for e in entries if e["email"].lower() not in self.team_members]
        if strangers:
            raise StreakError(400, f"Cannot assign users who are not members of the team: {', '.join(strangers)}")
        return [{"email": e["email"]} for e in entries]

    def _ep_get_box_fields(self, call: _Call, box_key: str) -> list[dict[str, Any]]:
        fields = self._box(box_key)["fields"]
        return [{"key": key, "value": copy.deepcopy(value)} for key, value in fields.items()]

    def _ep_set_box_field(self, call: _Call, box_key: str, field_key: str) -> dict[str, Any]:
        box = self._box(box_key)
        if "value" not in call.body:
            raise _missing()
        value = call.body["value"]
        validate_field_value(self._field_spec(field_key), value)
        changed = field_key not in box["fields"] or not _same(box["fields"][field_key], value)
        box["fields"][field_key] = value
        updated = self._touch(box)
        if changed:
            self._fire("BOX_EDIT", updated)
        return {"key": field_key, "value": copy.deepcopy(value)}

    # ----------------------------------------------------------------- search

    def _ep_search(self, call: _Call) -> dict[str, Any]:
        """Relevance-ranked text search, one page at a time, like Streak's: a query matches any text
        containing it ("7" finds 17, 27, 70...), the best scored come first (ties: most recently
        updated first), and boxes created moments ago are not indexed yet."""
        query = call.query.get("query", "")
        if not query:
            raise _missing()
        page = self._page_number(call.query.get("page", "1"))
        needle = query.lower()
        pipelines, stages = call.query.getlist("pipelineKey"), call.query.getlist("stageKey")
        now = time.monotonic()
        boxes = [
            (box, _score(needle, self._box_texts(box)))
            for box in self._state.boxes.values()
            if (not pipelines or box["pipelineKey"] in pipelines)
            and (not stages or box["stageKey"] in stages)
            and self._state.indexed_at.get(box["key"], 0.0) <= now
        ]
        contacts = [(c, _score(needle, _contact_texts(c))) for c in self._state.contacts.values()]
        orgs = [(o, _score(needle, _organization_texts(o))) for o in self._state.organizations.values()]
        results = {
            "boxes": [_box_hit(box) for box in _ranked_page(boxes, page)],
            "contacts": _ranked_page(contacts, page),
            "organizations": _ranked_page(orgs, page),
        }
        return {"query": query, "page": page, "results": copy.deepcopy(results)}

    @staticmethod
    def _page_number(value: str) -> int:
        try:
            page = int(value)
        except ValueError:
            raise StreakError(400, "Invalid page") from None
        if page < 1:
            raise StreakError(400, "Invalid page")
        return page

    def _box_texts(self, box: dict[str, Any]) -> list[Any]:
        text_fields = [
            value
            for key, value in box["fields"].items()
            if (spec := self.pipeline.field(key)) is not None and spec.type == "TEXT_INPUT"
        ]
        return [box["name"], box["notes"], *text_fields]

    # ----------------------------------------------------------------- contacts

    def _ep_create_contact(self, call: _Call, team_key: str) -> dict[str, Any]:
        self._check_team(team_key)
        get_if_existing = call.flag("getIfExisting")
        if get_if_existing and set(call.body) != {"emailAddresses"}:
            raise StreakError(400, "Insufficient params for TeamContact")
        props = self._contact_properties(call.body)
        if not (props.get("givenName") or props.get("familyName") or props.get("emailAddresses")):
            raise StreakError(400, "Need to specify at least a name or email address")
        if get_if_existing:
            existing = self._find_contact(props["emailAddresses"])
            if existing is not None:
                return copy.deepcopy(existing)
        contact = self._insert(
            self._state.contacts, self._state.new_key("contact"), {"teamKey": self.team_key, **props}
        )
        self._fire("CONTACT_CREATE", contact)
        return contact

    @staticmethod
    def _contact_properties(body: Mapping[str, Any]) -> dict[str, Any]:
        props = _clean_properties(body, CONTACT_PROPERTIES)
        if _has_duplicates(props.get("emailAddresses", [])):
            raise StreakError(400, "Duplicate email addresses", error_code=DUPLICATE_EMAIL_ERROR_CODE)
        return props

    def _find_contact(self, emails: list[str]) -> dict[str, Any] | None:
        # Exact, case-sensitive comparison: the real service does not normalise emails.
        wanted = set(emails)
        return next(
            (c for c in self._state.contacts.values() if wanted & set(c.get("emailAddresses", []))),
            None,
        )

    def _ep_get_contact(self, call: _Call, contact_key: str) -> dict[str, Any]:
        return copy.deepcopy(self._contact(contact_key))

    def _ep_update_contact(self, call: _Call, contact_key: str) -> dict[str, Any]:
        contact = self._contact(contact_key)
        return self._apply_changes(contact, self._contact_properties(call.body), "CONTACT_UPDATE")

    def _apply_changes(self, entity: dict[str, Any], props: dict[str, Any], event: str) -> dict[str, Any]:
        """Merge validated properties into a contact/organization; fire ``event`` only if one changed."""
        changed = any(name not in entity or not _same(entity[name], value) for name, value in props.items())
        entity.update(props)
        updated = self._touch(entity)
        if changed:
            self._fire(event, updated)
        return updated

    def _ep_delete_contact(self, call: _Call, contact_key: str) -> dict[str, Any]:
        contact = self._contact(contact_key)
        del self._state.contacts[contact_key]
        self._fire("CONTACT_DELETE", contact)
        for box in self._state.boxes.values():
            box["contacts"] = [ref for ref in box["contacts"] if ref["key"] != contact_key]
        return {"success": True}

    # ----------------------------------------------------------------- organizations

    def _ep_create_organization(self, call: _Call, team_key: str) -> dict[str, Any]:
        self._check_team(team_key)
        get_if_existing = call.flag("getIfExisting")
        if get_if_existing and set(call.body) != {"domains"}:
            raise StreakError(400, "Insufficient params for Organization")
        props = self._organization_properties(call.body)
        if not (props.get("name") or props.get("domains")):
            raise StreakError(400, "Need to specify at least a name or domain")
        if get_if_existing:
            existing = self._find_organization(props["domains"])
            if existing is not None:
                return copy.deepcopy(existing)
        org = self._insert(
            self._state.organizations, self._state.new_key("org"), {"teamKey": self.team_key, **props}
        )
        self._fire("ORG_CREATE", org)
        return org

    @staticmethod
    def _organization_properties(body: Mapping[str, Any]) -> dict[str, Any]:
        props = _clean_properties(body, ORGANIZATION_PROPERTIES)
        if _has_duplicates(props.get("domains", [])):
            raise StreakError(400, "Duplicate domains")
        return props

    def _find_organization(self, domains: list[str]) -> dict[str, Any] | None:
        wanted = set(domains)
        return next(
            (o for o in self._state.organizations.values() if wanted & set(o.get("domains", []))),
            None,
        )

    def _ep_get_organization(self, call: _Call, org_key: str) -> dict[str, Any]:
        return copy.deepcopy(self._organization(org_key))

    def _ep_update_organization(self, call: _Call, org_key: str) -> dict[str, Any]:
        org = self._organization(org_key)
        return self._apply_changes(org, self._organization_properties(call.body), "ORG_UPDATE")

    # ----------------------------------------------------------------- tasks and comments

    def _ep_list_tasks(self, call: _Call, box_key: str) -> dict[str, Any]:
        self._box(box_key)
        return {"results": copy.deepcopy(self._state.tasks[box_key])}

    def _ep_create_task(self, call: _Call, box_key: str) -> dict[str, Any]:
        self._box(box_key)
        task = {"key": self._state.new_key("task"), "boxKey": box_key, **self._task_properties(call.body)}
        task.update(status="NOT_DONE", creationTimestamp=_now_ms())
        self._state.tasks[box_key].append(task)
        self._fire("TASK_CREATE", task)
        return copy.deepcopy(task)

    @staticmethod
    def _task_properties(body: dict[str, Any]) -> dict[str, Any]:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _missing()
        props: dict[str, Any] = {"text": text}
        if "dueDate" in body:
            problem = epoch_ms_problem(body["dueDate"])
            if problem:
                raise StreakError(400, f"Invalid dueDate: {problem}")
            props["dueDate"] = body["dueDate"]
        assignees = body.get("assignedToSharingEntries", [])
        if not isinstance(assignees, list) or not all(
            isinstance(a, dict) and isinstance(a.get("email"), str) for a in assignees
        ):
            raise StreakError(400, 'assignedToSharingEntries must be a list of {"email": ...} objects')
        props["assignedToSharingEntries"] = [{"email": a["email"]} for a in assignees]
        return props

    def _ep_list_comments(self, call: _Call, box_key: str) -> dict[str, Any]:
        self._box(box_key)
        return {"results": copy.deepcopy(self._state.comments[box_key])}

    def _ep_create_comment(self, call: _Call, box_key: str) -> dict[str, Any]:
        self._box(box_key)
        message = call.body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise _missing()
        comment = {
            "key": self._state.new_key("comment"),
            "boxKey": box_key,
            "message": message,
            "creatorKey": self.user_key,
            "timestamp": _now_ms(),
        }
        self._state.comments[box_key].append(comment)
        self._fire("COMMENT_CREATE", comment)
        return copy.deepcopy(comment)

    # ----------------------------------------------------------------- webhooks

    def _ep_create_webhook(self, call: _Call) -> dict[str, Any]:
        scope, scope_key = self._webhook_scope(call.query)
        event, target_url, token = (call.body.get(name) for name in ("event", "targetUrl", "token"))
        if not isinstance(event, str) or not event or not isinstance(target_url, str) or not target_url.strip():
            raise _missing()
        if event not in WEBHOOK_EVENTS[scope]:
            raise StreakError(400, "Invalid event")
        if not _is_http_url(target_url):
            raise StreakError(400, "Invalid targetUrl")
        if token is not None and not isinstance(token, str):
            raise StreakError(400, "Invalid token")
        return self._webhooks.register(scope, scope_key, event, target_url, token or None)

    def _ep_list_webhooks(self, call: _Call) -> dict[str, Any]:
        return {"results": self._webhooks.list(*self._webhook_scope(call.query))}

    def _ep_delete_webhook(self, call: _Call, webhook_key: str) -> dict[str, Any]:
        if not self._webhooks.delete(webhook_key):
            raise StreakError(404, "Webhook not found")
        return {"success": True}

    def _webhook_scope(self, query: MultiDict[str, str]) -> tuple[WebhookScope, str]:
        pipeline_key, team_key = query.get("pipelineKey"), query.get("teamKey")
        if pipeline_key and team_key:
            raise StreakError(400, "Specify either pipelineKey or teamKey, not both")
        if pipeline_key:
            if pipeline_key != self.pipeline.key:
                raise StreakError(400, "Invalid pipeline key")
            return "pipeline", pipeline_key
        if team_key:
            self._check_team(team_key)
            return "team", team_key
        raise _missing()

    # ----------------------------------------------------------------- admin (no auth, no faults)

    def _ep_admin_state(self, call: _Call) -> dict[str, Any]:
        return self.snapshot()

    def _ep_admin_reset(self, call: _Call) -> dict[str, Any]:
        self.reset()
        return {"success": True}

    def _ep_admin_set_faults(self, call: _Call) -> dict[str, Any]:
        try:
            self.faults.configure(call.body)
        except (TypeError, ValueError) as error:
            raise StreakError(400, f"Invalid fault plan: {error}") from error
        return {"success": True, "plan": self.faults.plan.to_dict()}

    def _ep_admin_clear_faults(self, call: _Call) -> dict[str, Any]:
        self.faults.clear()
        return {"success": True}

    def _ep_admin_slow_writes(self, call: _Call) -> dict[str, Any]:
        """``{"endpoint": "create_box", "seconds": 12, "n": 1}``: see ``carry_out_late``."""
        endpoint, seconds, n = call.body.get("endpoint"), call.body.get("seconds"), call.body.get("n", 1)
        if not isinstance(endpoint, str) or not hasattr(self, f"_ep_{endpoint}") or endpoint.startswith("admin"):
            raise StreakError(400, f"Unknown endpoint {endpoint!r}")
        if not isinstance(seconds, int | float) or not isinstance(n, int) or seconds < 0 or n < 0:
            raise StreakError(400, "seconds and n must be non-negative numbers")
        self._state.slow_writes[endpoint].extend([float(seconds)] * n)
        return {"success": True}

    def _ep_admin_search_lag(self, call: _Call) -> dict[str, Any]:
        """``{"seconds": 2.5}``: boxes created from now on are found by search that much later."""
        seconds = call.body.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise StreakError(400, "seconds must be a non-negative number")
        self.search_lag_seconds = float(seconds)
        return {"success": True}

    def _ep_admin_move_box(self, call: _Call, box_key: str) -> dict[str, Any]:
        if "stageKey" not in call.body:
            raise _missing()
        return self.move_box(box_key, call.body["stageKey"])

    def _ep_admin_edit_contact(self, call: _Call, contact_key: str) -> dict[str, Any]:
        return self.edit_contact(contact_key, **call.body)

    def _ep_admin_webhook_deliveries(self, call: _Call) -> dict[str, Any]:
        return {"deliveries": self.webhook_deliveries, "pending": self._webhooks.pending}


# --------------------------------------------------------------------------- presentation helpers


def _box_hit(box: dict[str, Any]) -> dict[str, Any]:
    return {
        "boxKey": box["key"],
        "name": box["name"],
        "lastUpdatedTimestamp": box["lastUpdatedTimestamp"],
        "assignedToKeys": [],
        "pipelineKey": box["pipelineKey"],
        "stageKey": box["stageKey"],
    }


def _full_name(contact: dict[str, Any]) -> str:
    return f"{contact.get('givenName', '')} {contact.get('familyName', '')}".strip()


def _contact_texts(contact: dict[str, Any]) -> list[Any]:
    return [*contact.get("emailAddresses", []), _full_name(contact)]


def _organization_texts(org: dict[str, Any]) -> list[Any]:
    return [org.get("name"), *org.get("domains", [])]


def _contact_label(contact: dict[str, Any]) -> str | None:
    emails = contact.get("emailAddresses") or []
    return emails[0] if emails else _full_name(contact) or None


def _organization_label(org: dict[str, Any]) -> str | None:
    return org.get("name") or next(iter(org.get("domains", [])), None)


def _task_summary(task: dict[str, Any]) -> dict[str, Any]:
    assignees = task["assignedToSharingEntries"]
    return {
        "text": task["text"],
        "dueDate": task.get("dueDate"),
        "assignee": assignees[0]["email"] if assignees else None,
    }
