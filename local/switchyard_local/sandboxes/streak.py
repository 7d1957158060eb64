"""Stateful in-memory Streak CRM sandbox speaking the real API paths and payloads our connector uses.

Usage::

    with StreakSandbox() as sandbox:          # serves on 127.0.0.1:<free port>
        client = httpx.Client(base_url=sandbox.base_url, auth=("sandbox-key", ""))
        ...
        sandbox.snapshot()

or in-process: ``httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), ...)``.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
    ),
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


def _matches(needle: str, haystack: Iterable[Any]) -> bool:
    return any(isinstance(text, str) and needle in text.lower() for text in haystack)


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
    ],
    strict_slashes=False,
)
ADMIN_PREFIX = "/_sandbox/"


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

    def new_key(self, prefix: str) -> str:
        return f"{prefix}_{next(self.counters[prefix])}"


# --------------------------------------------------------------------------- the sandbox


class StreakSandbox:
    """In-memory Streak CRM: a WSGI app (``wsgi_app``) that can also serve itself on a local port."""

    def __init__(
        self,
        api_key: str = "sandbox-key",
        team_key: str = "team_1",
        pipeline: PipelineSpec = DEMO_PIPELINE,
        user_email: str = "sales-rep@example.com",
    ) -> None:
        self.api_key = api_key
        self.team_key = team_key
        self.pipeline = pipeline
        self.user_email = user_email
        self.user_key = "user_1"
        self.requests = http.RequestLog()
        self.faults = FaultInjector(error_body=error_body)
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self._state = _State()
        self._created_ms = _now_ms()
        self._stop: Callable[[], None] | None = None

    # ----------------------------------------------------------------- lifecycle

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start a threaded HTTP server in the background and return its base URL."""
        if self._stop is not None:
            raise RuntimeError(f"sandbox already serving at {self.base_url}")
        self.base_url, self._stop = http.serve(self.wsgi_app, host, port)
        return self.base_url

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
        self._stop, self.base_url = None, None

    def __enter__(self) -> StreakSandbox:
        if self._stop is None:
            self.serve()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- inspection

    def reset(self) -> None:
        """Forget all data, recorded requests and faults."""
        with self._lock:
            self._state = _State()
        self.requests.clear()
        self.faults.clear()

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
        }

    def _field_name(self, key: str) -> str:
        spec = self.pipeline.field(key)
        return spec.name if spec else key

    # ----------------------------------------------------------------- WSGI plumbing

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self._handle(request)
        if not request.path.startswith(ADMIN_PREFIX):
            self.requests.append((request.method, request.path, response.status_code))
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        is_admin = request.path.startswith(ADMIN_PREFIX)
        if not is_admin:
            fault = self.faults.apply(request)
            if fault is not None:
                return fault
        try:
            if not is_admin:
                self._authenticate(request)
            endpoint, values = _ROUTES.bind("sandbox").match(request.path, request.method)
            call = _Call(query=request.args, body=self._read_body(request, strict=not is_admin))
            with self._lock:
                return http.json_response(getattr(self, f"_ep_{endpoint}")(call, **values))
        except StreakError as error:
            return error.response()
        except HTTPException:
            # A known path with the wrong method is treated as an unknown path too.
            return StreakError(404, INVALID_PATH).response()

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
        entity["lastUpdatedTimestamp"] = _now_ms()
        return copy.deepcopy(entity)

    def _insert(self, table: dict[str, Any], key: str, entity: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
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
        return self._insert(self._state.boxes, key, self._new_box(key, name, notes, stage_key))

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
        }

    def _ep_get_box(self, call: _Call, box_key: str) -> dict[str, Any]:
        return copy.deepcopy(self._box(box_key))

    def _ep_update_box(self, call: _Call, box_key: str) -> dict[str, Any]:
        box = self._box(box_key)
        changes = self._box_changes(call.body)  # validate everything before changing anything
        if "fields" in changes:
            changes["fields"] = {**box["fields"], **changes["fields"]}
        box.update(changes)
        return self._touch(box)

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
        return changes

    def _ep_get_box_fields(self, call: _Call, box_key: str) -> list[dict[str, Any]]:
        fields = self._box(box_key)["fields"]
        return [{"key": key, "value": copy.deepcopy(value)} for key, value in fields.items()]

    def _ep_set_box_field(self, call: _Call, box_key: str, field_key: str) -> dict[str, Any]:
        box = self._box(box_key)
        if "value" not in call.body:
            raise _missing()
        value = call.body["value"]
        validate_field_value(self._field_spec(field_key), value)
        box["fields"][field_key] = value
        self._touch(box)
        return {"key": field_key, "value": copy.deepcopy(value)}

    # ----------------------------------------------------------------- search

    def _ep_search(self, call: _Call) -> dict[str, Any]:
        query = call.query.get("query", "")
        if not query:
            raise _missing()
        needle = query.lower()
        pipelines, stages = call.query.getlist("pipelineKey"), call.query.getlist("stageKey")
        boxes = [
            _box_hit(box)
            for box in self._state.boxes.values()
            if (not pipelines or box["pipelineKey"] in pipelines)
            and (not stages or box["stageKey"] in stages)
            and _matches(needle, self._box_texts(box))
        ]
        contacts = [c for c in self._state.contacts.values() if _matches(needle, _contact_texts(c))]
        orgs = [o for o in self._state.organizations.values() if _matches(needle, _organization_texts(o))]
        results = {"boxes": boxes, "contacts": contacts, "organizations": orgs}
        return {"query": query, "results": copy.deepcopy(results)}

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
        return self._insert(
            self._state.contacts, self._state.new_key("contact"), {"teamKey": self.team_key, **props}
        )

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
        contact.update(self._contact_properties(call.body))
        return self._touch(contact)

    def _ep_delete_contact(self, call: _Call, contact_key: str) -> dict[str, Any]:
        self._contact(contact_key)
        del self._state.contacts[contact_key]
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
        return self._insert(
            self._state.organizations, self._state.new_key("org"), {"teamKey": self.team_key, **props}
        )

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
        org.update(self._organization_properties(call.body))
        return self._touch(org)

    # ----------------------------------------------------------------- tasks and comments

    def _ep_list_tasks(self, call: _Call, box_key: str) -> dict[str, Any]:
        self._box(box_key)
        return {"results": copy.deepcopy(self._state.tasks[box_key])}

    def _ep_create_task(self, call: _Call, box_key: str) -> dict[str, Any]:
        self._box(box_key)
        task = {"key": self._state.new_key("task"), "boxKey": box_key, **self._task_properties(call.body)}
        task.update(status="NOT_DONE", creationTimestamp=_now_ms())
        self._state.tasks[box_key].append(task)
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
        return copy.deepcopy(comment)

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
