"""Tests for the Streak sandbox's outbound webhooks (API in-process through WSGI, deliveries to a real socket)."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.streak import (
    PIPELINE_WEBHOOK_EVENTS,
    TEAM_WEBHOOK_EVENTS,
    StreakError,
    StreakSandbox,
)
from werkzeug.wrappers import Request, Response

API_KEY = "sandbox-key"
FAST_RETRIES = (0.01, 0.02, 0.03)


# --------------------------------------------------------------------------- a tiny webhook receiver


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any
    at: float


class Receiver:
    """WSGI app recording every request; answers queued statuses first, then ``default_status``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.default_status = 200
        self.delay = 0.0
        self.url = ""

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self.statuses.clear()
            self.default_status, self.delay = 200, 0.0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        record = Received(
            path=request.path,
            query=dict(request.args),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.get_json(force=True, silent=True),
            at=time.monotonic(),
        )
        with self._lock:
            self._received.append(record)
            status = self.statuses.popleft() if self.statuses else self.default_status
            delay = self.delay
        time.sleep(delay)
        return Response(b"", status=status)(environ, start_response)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    # One server per module: stopping a werkzeug server takes ~0.5 s (its poll interval).
    app = Receiver()
    app.url, stop = http.serve(app)
    yield app
    stop()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    # Sandboxes are stopped (their delivery thread joined) at teardown, so nothing leaks into the next test.
    receiver_server.clear()
    return receiver_server


@pytest.fixture
def sandbox() -> Iterator[StreakSandbox]:
    sandbox = StreakSandbox(webhook_retry_delays=FAST_RETRIES)
    yield sandbox
    sandbox.stop()


def wsgi_client(sandbox: StreakSandbox, auth: Any = (API_KEY, "")) -> httpx.Client:
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    return httpx.Client(transport=transport, base_url="http://streak.test", auth=auth)


@pytest.fixture
def client(sandbox: StreakSandbox) -> Iterator[httpx.Client]:
    with wsgi_client(sandbox) as client:
        yield client


@pytest.fixture
def admin(sandbox: StreakSandbox) -> Iterator[httpx.Client]:
    with wsgi_client(sandbox, auth=None) as client:
        yield client


def register(
    client: httpx.Client, event: str, target_url: str, token: str | None = None, team: bool = False
) -> dict[str, Any]:
    params = {"teamKey": "team_1"} if team else {"pipelineKey": "pl_orders"}
    body = {"event": event, "targetUrl": target_url, **({"token": token} if token is not None else {})}
    response = client.post("/api/v2/webhooks", params=params, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def create_box(client: httpx.Client, name: str = "Order #1001", **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v2/pipelines/pl_orders/boxes", json={"name": name, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def create_contact(client: httpx.Client, **props: Any) -> dict[str, Any]:
    response = client.post("/api/v2/teams/team_1/contacts/", json=props)
    assert response.status_code == 200, response.text
    return response.json()


def settle(sandbox: StreakSandbox) -> None:
    assert sandbox.wait_for_webhooks(timeout=5.0)


# --------------------------------------------------------------------------- registration


def test_webhook_register_pipeline_event_returns_key_and_scope(client: httpx.Client) -> None:
    hook = register(client, "BOX_CHANGE_STAGE", "https://example.com/hooks/stage", token="s3cret")
    assert set(hook) == {"key", "event", "targetUrl", "pipelineKey", "creationTimestamp"}
    assert (hook["event"], hook["targetUrl"], hook["pipelineKey"]) == (
        "BOX_CHANGE_STAGE",
        "https://example.com/hooks/stage",
        "pl_orders",
    )
    assert hook["key"] and hook["creationTimestamp"] > 1_600_000_000_000


def test_webhook_register_team_event_returns_team_key(client: httpx.Client) -> None:
    hook = register(client, "CONTACT_UPDATE", "https://example.com/hooks/contact", team=True)
    assert hook["teamKey"] == "team_1"
    assert "pipelineKey" not in hook


def test_webhook_register_every_documented_event_is_accepted(client: httpx.Client) -> None:
    for event in sorted(PIPELINE_WEBHOOK_EVENTS):
        register(client, event, "https://example.com/p")
    for event in sorted(TEAM_WEBHOOK_EVENTS):
        register(client, event, "https://example.com/t", team=True)
    pipeline_hooks = client.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).json()["results"]
    team_hooks = client.get("/api/v2/webhooks", params={"teamKey": "team_1"}).json()["results"]
    assert len(pipeline_hooks) == 13
    assert len(team_hooks) == 6


def test_webhook_list_returns_only_hooks_of_requested_scope_without_token(client: httpx.Client) -> None:
    box_hook = register(client, "BOX_CREATE", "https://example.com/a", token="s3cret")
    register(client, "CONTACT_CREATE", "https://example.com/b", team=True)
    results = client.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).json()["results"]
    assert results == [box_hook]
    assert "token" not in results[0]


def test_webhook_delete_removes_it_and_unknown_key_returns_404(client: httpx.Client) -> None:
    hook = register(client, "BOX_CREATE", "https://example.com/a")
    assert client.delete(f"/api/v2/webhooks/{hook['key']}").json() == {"success": True}
    assert client.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).json() == {"results": []}
    response = client.delete(f"/api/v2/webhooks/{hook['key']}")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Webhook not found"}


@pytest.mark.parametrize(
    ("params", "event"),
    [
        ({"pipelineKey": "pl_orders"}, "BOX_CREATED"),
        ({"pipelineKey": "pl_orders"}, "box_create"),
        ({"pipelineKey": "pl_orders"}, "CONTACT_UPDATE"),  # team event on a pipeline
        ({"teamKey": "team_1"}, "BOX_CHANGE_STAGE"),  # pipeline event on a team
    ],
)
def test_webhook_register_unknown_or_wrong_scope_event_returns_400_invalid_event(
    client: httpx.Client, params: dict[str, str], event: str
) -> None:
    response = client.post("/api/v2/webhooks", params=params, json={"event": event, "targetUrl": "https://x.io"})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Invalid event"}


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"pipelineKey": "pl_orders"}, {"event": "BOX_CREATE"}),
        ({"pipelineKey": "pl_orders"}, {"event": "BOX_CREATE", "targetUrl": ""}),
        ({"pipelineKey": "pl_orders"}, {"targetUrl": "https://x.io"}),
        ({}, {"event": "BOX_CREATE", "targetUrl": "https://x.io"}),
    ],
)
def test_webhook_register_missing_parameter_returns_400_missing_parameters(
    client: httpx.Client, params: dict[str, str], body: dict[str, Any]
) -> None:
    response = client.post("/api/v2/webhooks", params=params, json=body)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Missing parameters"}


@pytest.mark.parametrize(
    ("params", "body", "error"),
    [
        ({"pipelineKey": "pl_nope"}, {"event": "BOX_CREATE", "targetUrl": "https://x.io"}, "Invalid pipeline key"),
        ({"pipelineKey": "pl_orders"}, {"event": "BOX_CREATE", "targetUrl": "ftp://x.io"}, "Invalid targetUrl"),
        (
            {"pipelineKey": "pl_orders"},
            {"event": "BOX_CREATE", "targetUrl": "https://x.io", "token": 7},
            "Invalid token",
        ),
    ],
)
def test_webhook_register_invalid_scope_url_or_token_returns_400(
    client: httpx.Client, params: dict[str, str], body: dict[str, Any], error: str
) -> None:
    response = client.post("/api/v2/webhooks", params=params, json=body)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": error}


def test_webhook_register_wrong_team_returns_400_bare_failure(client: httpx.Client) -> None:
    body = {"event": "CONTACT_CREATE", "targetUrl": "https://x.io"}
    response = client.post("/api/v2/webhooks", params={"teamKey": "team_9"}, json=body)
    assert (response.status_code, response.json()) == (400, {"success": False})


def test_webhook_endpoints_without_api_key_return_401(sandbox: StreakSandbox) -> None:
    with wsgi_client(sandbox, auth=None) as anonymous:
        body = {"event": "BOX_CREATE", "targetUrl": "https://x.io"}
        assert anonymous.post("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}, json=body).status_code == 401
        assert anonymous.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).status_code == 401
        assert anonymous.delete("/api/v2/webhooks/webhook_1").status_code == 401


# --------------------------------------------------------------------------- BOX_CHANGE_STAGE


def test_box_change_stage_api_update_delivers_box_array_with_token(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    hook = register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/hooks/stage?route=orders", token="s3cret")
    box = create_box(client)
    updated = client.post(f"/api/v1/boxes/{box['key']}", json={"stageKey": "5003"}).json()
    settle(sandbox)
    [call] = receiver.received
    assert (call.path, call.query) == ("/hooks/stage", {"route": "orders"})
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-streak-webhook-token"] == "s3cret"
    assert call.body == [client.get(f"/api/v1/boxes/{box['key']}").json()]
    assert call.body == [updated]
    assert call.body[0]["stageKey"] == "5003"
    assert sandbox.webhook_deliveries == [
        {
            "webhook_key": hook["key"],
            "event": "BOX_CHANGE_STAGE",
            "target_url": f"{receiver.url}/hooks/stage?route=orders",
            "object_key": box["key"],
            "status_code": 200,
            "error": None,
            "attempts": 1,
            "outcome": "delivered",
        }
    ]


def test_box_change_stage_without_token_sends_no_token_header(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    sandbox.move_box(create_box(client)["key"], "5002")
    settle(sandbox)
    assert "x-streak-webhook-token" not in receiver.received[0].headers


def test_box_change_stage_ui_admin_action_delivers_box_with_new_stage(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage", token="s3cret")
    box = create_box(client)
    response = admin.post(f"/_sandbox/boxes/{box['key']}/stage", json={"stageKey": "5003"})
    assert response.status_code == 200
    assert response.json()["stageKey"] == "5003"
    assert response.json()["lastUpdatedTimestamp"] > box["lastUpdatedTimestamp"]
    settle(sandbox)
    [call] = receiver.received
    assert call.headers["x-streak-webhook-token"] == "s3cret"
    assert call.body == [client.get(f"/api/v1/boxes/{box['key']}").json()]
    assert call.body[0]["stageKey"] == "5003"


def test_box_change_stage_python_move_box_delivers_and_returns_box(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    box = create_box(client)
    moved = sandbox.move_box(box["key"], "5004")
    assert moved == client.get(f"/api/v1/boxes/{box['key']}").json()
    settle(sandbox)
    assert [call.body for call in receiver.received] == [[moved]]


def test_box_change_stage_same_stage_fires_nothing(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    register(client, "BOX_EDIT", f"{receiver.url}/edit")
    box = create_box(client, stageKey="5002")
    client.post(f"/api/v1/boxes/{box['key']}", json={"stageKey": "5002", "name": box["name"]})
    admin.post(f"/_sandbox/boxes/{box['key']}/stage", json={"stageKey": "5002"})
    settle(sandbox)
    assert receiver.received == []
    assert sandbox.webhook_deliveries == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"stageKey": "9999"}, 400, "Invalid stage key"),
        ({"stageKey": 5003}, 400, "Invalid stage key"),
        ({}, 400, "Missing parameters"),
    ],
)
def test_box_move_ui_admin_action_invalid_stage_returns_400_and_fires_nothing(
    sandbox: StreakSandbox,
    client: httpx.Client,
    admin: httpx.Client,
    receiver: Receiver,
    body: dict[str, Any],
    status: int,
    error: str,
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    box = create_box(client)
    response = admin.post(f"/_sandbox/boxes/{box['key']}/stage", json=body)
    assert (response.status_code, response.json()) == (status, {"success": False, "error": error})
    assert client.get(f"/api/v1/boxes/{box['key']}").json() == box
    settle(sandbox)
    assert receiver.received == []


def test_box_move_unknown_box_returns_404_or_raises(sandbox: StreakSandbox, admin: httpx.Client) -> None:
    assert admin.post("/_sandbox/boxes/box_404/stage", json={"stageKey": "5002"}).status_code == 404
    with pytest.raises(StreakError) as raised:
        sandbox.move_box("box_404", "5002")
    assert raised.value.status == 404


def test_box_move_ui_admin_action_needs_no_auth_and_ignores_faults(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client
) -> None:
    box = create_box(client)
    sandbox.faults.fail_next(1, 500)
    assert admin.post(f"/_sandbox/boxes/{box['key']}/stage", json={"stageKey": "5002"}).status_code == 200
    assert client.get("/api/v1/users/me").status_code == 500  # the queued fault is still there


# --------------------------------------------------------------------------- other box events


def test_webhooks_unrelated_events_deliver_nothing(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    register(client, "ORG_DELETE", f"{receiver.url}/org-delete", team=True)
    box = create_box(client)
    client.post(f"/api/v1/boxes/{box['key']}", json={"name": "renamed", "fields": {"1001": "A-1"}})
    client.post(f"/api/v1/boxes/{box['key']}/fields/1002", json={"value": 10})
    client.post(f"/api/v2/boxes/{box['key']}/comments", json={"message": "hi"})
    client.post(f"/api/v2/boxes/{box['key']}/tasks", json={"text": "call"})
    contact = create_contact(client, givenName="Jane")
    client.post(f"/api/v2/contacts/{contact['key']}", json={"familyName": "Doe"})
    settle(sandbox)
    assert receiver.received == []


def test_box_edit_property_changes_fire_box_edit_but_not_stage_change(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_EDIT", f"{receiver.url}/edit")
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    box = create_box(client)
    contact = create_contact(client, emailAddresses=["jane@x.com"])
    client.post(f"/api/v1/boxes/{box['key']}", json={"name": "renamed"})
    client.post(f"/api/v1/boxes/{box['key']}", json={"notes": "gift wrap"})
    client.post(f"/api/v1/boxes/{box['key']}", json={"fields": {"1001": "A-1"}})
    client.post(f"/api/v1/boxes/{box['key']}", json={"contacts": [{"key": contact["key"]}]})
    client.post(f"/api/v1/boxes/{box['key']}/fields/1002", json={"value": 10})
    after_last_change = client.get(f"/api/v1/boxes/{box['key']}").json()
    client.post(f"/api/v1/boxes/{box['key']}/fields/1002", json={"value": 10})  # unchanged: nothing
    client.post(f"/api/v1/boxes/{box['key']}", json={"fields": {"1001": "A-1"}, "name": "renamed"})  # unchanged
    settle(sandbox)
    calls = receiver.received
    assert [call.path for call in calls] == ["/edit"] * 5
    assert calls[-1].body == [after_last_change]


def test_box_update_stage_and_name_together_fires_stage_change_then_edit(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_EDIT", f"{receiver.url}/edit")
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    box = create_box(client)
    updated = client.post(f"/api/v1/boxes/{box['key']}", json={"stageKey": "5002", "name": "paid"}).json()
    settle(sandbox)
    assert [(call.path, call.body) for call in receiver.received] == [("/stage", [updated]), ("/edit", [updated])]


def test_box_create_comment_and_task_fire_their_events_with_object_array(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    for event in ("BOX_CREATE", "COMMENT_CREATE", "TASK_CREATE"):
        register(client, event, f"{receiver.url}/{event.lower()}")
    box = create_box(client)
    comment = client.post(f"/api/v2/boxes/{box['key']}/comments", json={"message": "hi"}).json()
    task = client.post(f"/api/v2/boxes/{box['key']}/tasks", json={"text": "call"}).json()
    settle(sandbox)
    assert [(call.path, call.body) for call in receiver.received] == [
        ("/box_create", [box]),
        ("/comment_create", [comment]),
        ("/task_create", [task]),
    ]
    assert [d["object_key"] for d in sandbox.webhook_deliveries] == [box["key"], comment["key"], task["key"]]


# --------------------------------------------------------------------------- contacts and organizations


def test_contact_update_api_change_fires_contact_update_with_contact_array(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "CONTACT_UPDATE", f"{receiver.url}/contact", token="t0k", team=True)
    contact = create_contact(client, givenName="Jane", emailAddresses=["jane@x.com"])
    updated = client.post(f"/api/v2/contacts/{contact['key']}", json={"familyName": "Doe"}).json()
    settle(sandbox)
    [call] = receiver.received
    assert call.body == [updated] == [client.get(f"/api/v2/contacts/{contact['key']}").json()]
    assert call.body[0]["familyName"] == "Doe"
    assert call.headers["x-streak-webhook-token"] == "t0k"


def test_contact_update_ui_admin_action_fires_contact_update(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    register(client, "CONTACT_UPDATE", f"{receiver.url}/contact", team=True)
    contact = create_contact(client, givenName="Jane")
    response = admin.post(f"/_sandbox/contacts/{contact['key']}", json={"title": "Buyer", "unknown": 1})
    assert response.status_code == 200
    edited = response.json()
    assert edited["title"] == "Buyer" and "unknown" not in edited
    assert edited["lastUpdatedTimestamp"] > contact["lastUpdatedTimestamp"]
    settle(sandbox)
    assert [call.body for call in receiver.received] == [[edited]]


def test_contact_update_python_edit_contact_fires_contact_update(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "CONTACT_UPDATE", f"{receiver.url}/contact", team=True)
    contact = create_contact(client, givenName="Jane")
    edited = sandbox.edit_contact(contact["key"], emailAddresses=["jane@new.com"])
    assert edited == client.get(f"/api/v2/contacts/{contact['key']}").json()
    settle(sandbox)
    assert [call.body for call in receiver.received] == [[edited]]


def test_contact_update_noop_by_api_or_ui_fires_nothing(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    register(client, "CONTACT_UPDATE", f"{receiver.url}/contact", team=True)
    contact = create_contact(client, givenName="Jane", emailAddresses=["jane@x.com"])
    client.post(f"/api/v2/contacts/{contact['key']}", json={"givenName": "Jane"})
    client.post(f"/api/v2/contacts/{contact['key']}", json={"colour": "red"})
    admin.post(f"/_sandbox/contacts/{contact['key']}", json={"emailAddresses": ["jane@x.com"]})
    sandbox.edit_contact(contact["key"], givenName="Jane")
    settle(sandbox)
    assert receiver.received == []


def test_contact_update_ui_admin_action_invalid_value_returns_400_and_fires_nothing(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    register(client, "CONTACT_UPDATE", f"{receiver.url}/contact", team=True)
    contact = create_contact(client, givenName="Jane")
    response = admin.post(f"/_sandbox/contacts/{contact['key']}", json={"emailAddresses": "not-a-list"})
    assert response.status_code == 400
    assert admin.post("/_sandbox/contacts/contact_404", json={"title": "x"}).status_code == 404
    settle(sandbox)
    assert receiver.received == []


def test_contact_and_org_create_update_fire_team_events(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    for event in ("CONTACT_CREATE", "ORG_CREATE", "ORG_UPDATE", "CONTACT_DELETE"):
        register(client, event, f"{receiver.url}/{event.lower()}", team=True)
    contact = create_contact(client, emailAddresses=["jane@x.com"])
    again = client.post(
        "/api/v2/teams/team_1/contacts/", params={"getIfExisting": "true"}, json={"emailAddresses": ["jane@x.com"]}
    )
    assert again.json()["key"] == contact["key"]  # found, not created: no second CONTACT_CREATE
    org = client.post("/api/v2/teams/team_1/organizations", json={"name": "Acme"}).json()
    updated_org = client.post(f"/api/v2/organizations/{org['key']}", json={"domains": ["acme.com"]}).json()
    client.post(f"/api/v2/organizations/{org['key']}", json={"domains": ["acme.com"]})  # no-op
    client.delete(f"/api/v2/contacts/{contact['key']}")
    settle(sandbox)
    assert [(call.path, call.body) for call in receiver.received] == [
        ("/contact_create", [contact]),
        ("/org_create", [org]),
        ("/org_update", [updated_org]),
        ("/contact_delete", [contact]),
    ]


# --------------------------------------------------------------------------- delivery outcomes


def test_delivery_500_then_200_is_retried_with_same_body_and_records_two_attempts(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage", token="s3cret")
    receiver.statuses.append(500)
    box = create_box(client)
    sandbox.move_box(box["key"], "5002")
    sandbox.move_box(box["key"], "5003")  # changes the box after the first delivery was queued
    settle(sandbox)
    calls = receiver.received
    assert len(calls) == 3
    assert calls[0].body == calls[1].body and calls[0].body[0]["stageKey"] == "5002"
    assert calls[1].headers["x-streak-webhook-token"] == "s3cret"
    deliveries = sandbox.webhook_deliveries
    assert [(d["attempts"], d["status_code"], d["outcome"]) for d in deliveries] == [
        (2, 200, "delivered"),
        (1, 200, "delivered"),
    ]


def test_delivery_default_retry_delays_wait_before_retrying(receiver: Receiver) -> None:
    sandbox = StreakSandbox()
    try:
        with wsgi_client(sandbox) as client:
            register(client, "BOX_CREATE", f"{receiver.url}/create")
            receiver.statuses.extend([503, 500])
            create_box(client)
            assert sandbox.wait_for_webhooks(timeout=5.0)
        first, second, third = receiver.received
        assert second.at - first.at >= 0.18  # first back-off 0.2 s
        assert third.at - second.at >= 0.45  # second back-off 0.5 s
        assert sandbox.webhook_deliveries[0]["attempts"] == 3
    finally:
        sandbox.stop()


def test_delivery_410_gone_deletes_the_webhook(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    hook = register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    other = register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/other")
    receiver.statuses.append(410)
    box = create_box(client)
    sandbox.move_box(box["key"], "5002")
    settle(sandbox)
    assert [d["outcome"] for d in sandbox.webhook_deliveries] == ["webhook_deleted", "delivered"]
    assert sandbox.webhook_deliveries[0]["status_code"] == 410
    assert sandbox.webhook_deliveries[0]["attempts"] == 1
    listed = client.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).json()["results"]
    assert [h["key"] for h in listed] == [other["key"]]
    sandbox.move_box(box["key"], "5003")
    settle(sandbox)
    assert [call.path for call in receiver.received] == ["/stage", "/other", "/other"]
    assert hook["key"] not in {d["webhook_key"] for d in sandbox.webhook_deliveries[2:]}


def test_delivery_always_500_records_failed_after_three_retries(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    hook = register(client, "BOX_CREATE", f"{receiver.url}/create")
    receiver.default_status = 500
    box = create_box(client)
    settle(sandbox)
    assert len(receiver.received) == 4
    assert len({str(call.body) for call in receiver.received}) == 1
    assert sandbox.webhook_deliveries == [
        {
            "webhook_key": hook["key"],
            "event": "BOX_CREATE",
            "target_url": f"{receiver.url}/create",
            "object_key": box["key"],
            "status_code": 500,
            "error": None,
            "attempts": 4,
            "outcome": "failed",
        }
    ]
    assert client.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).json()["results"] != []


def test_delivery_non_200_success_status_is_retried(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CREATE", f"{receiver.url}/create")
    receiver.statuses.append(204)
    create_box(client)
    settle(sandbox)
    assert [(d["attempts"], d["outcome"]) for d in sandbox.webhook_deliveries] == [(2, "delivered")]


def test_delivery_connection_refused_records_error_and_failed(sandbox: StreakSandbox, client: httpx.Client) -> None:
    with socket.socket() as probe:  # a free port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    register(client, "BOX_CREATE", f"http://127.0.0.1:{port}/gone")
    create_box(client)
    settle(sandbox)
    [delivery] = sandbox.webhook_deliveries
    assert (delivery["status_code"], delivery["attempts"], delivery["outcome"]) == (None, 4, "failed")
    assert delivery["error"].startswith("ConnectError")


def test_delivery_webhook_deleted_during_retries_is_cancelled(receiver: Receiver) -> None:
    sandbox = StreakSandbox(webhook_retry_delays=(5.0,))
    try:
        with wsgi_client(sandbox) as api:
            hook = register(api, "BOX_CREATE", f"{receiver.url}/create")
            receiver.default_status = 500
            create_box(api)
            deadline = time.monotonic() + 5
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.monotonic()
            assert api.delete(f"/api/v2/webhooks/{hook['key']}").status_code == 200
            assert sandbox.wait_for_webhooks(timeout=2.0)
            assert time.monotonic() - started < 2.0
        assert [(d["attempts"], d["outcome"]) for d in sandbox.webhook_deliveries] == [(1, "cancelled")]
        assert len(receiver.received) == 1
    finally:
        sandbox.stop()


# --------------------------------------------------------------------------- asynchrony, ordering, timestamps


def test_wait_for_webhooks_slow_receiver_returns_false_then_true(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CREATE", f"{receiver.url}/create")
    receiver.delay = 0.4
    started = time.monotonic()
    create_box(client)
    assert time.monotonic() - started < 0.2  # the API request does not wait for the delivery
    assert sandbox.wait_for_webhooks(timeout=0.05) is False
    assert sandbox.wait_for_webhooks(timeout=5.0) is True
    assert [d["outcome"] for d in sandbox.webhook_deliveries] == ["delivered"]


def test_wait_for_webhooks_nothing_queued_returns_true_immediately(sandbox: StreakSandbox) -> None:
    started = time.monotonic()
    assert sandbox.wait_for_webhooks(timeout=1.0) is True
    assert time.monotonic() - started < 0.1


def test_box_moves_quick_succession_timestamps_strictly_increase(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    box = create_box(client)
    stamps = [box["lastUpdatedTimestamp"]]
    for stage in ["5002", "5003"] * 10:
        stamps.append(sandbox.move_box(box["key"], stage)["lastUpdatedTimestamp"])
    for stage in ["5004", "5001"] * 5:
        response = client.post(f"/api/v1/boxes/{box['key']}", json={"stageKey": stage})
        stamps.append(response.json()["lastUpdatedTimestamp"])
    assert all(earlier < later for earlier, later in pairwise(stamps))
    settle(sandbox)
    delivered = [call.body[0]["lastUpdatedTimestamp"] for call in receiver.received]
    assert delivered == stamps[1:]


def test_contact_edits_quick_succession_timestamps_strictly_increase(
    sandbox: StreakSandbox, client: httpx.Client
) -> None:
    contact = create_contact(client, givenName="Jane")
    stamps = [contact["lastUpdatedTimestamp"]]
    for n in range(10):
        stamps.append(sandbox.edit_contact(contact["key"], title=f"t{n}")["lastUpdatedTimestamp"])
        response = client.post(f"/api/v2/contacts/{contact['key']}", json={"other": f"o{n}"})
        stamps.append(response.json()["lastUpdatedTimestamp"])
    assert all(earlier < later for earlier, later in pairwise(stamps))


def test_deliveries_many_events_arrive_in_order(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CHANGE_STAGE", f"{receiver.url}/stage")
    register(client, "BOX_EDIT", f"{receiver.url}/edit")
    receiver.statuses.extend([500, 500])  # retries of the first delivery must not let later ones overtake it
    box = create_box(client)
    expected = []
    for n, stage in enumerate(["5002", "5003", "5004", "5001"] * 3):
        expected.append(("/stage", stage))
        sandbox.move_box(box["key"], stage)
        expected.append(("/edit", stage))
        client.post(f"/api/v1/boxes/{box['key']}", json={"notes": f"note {n}"})
    settle(sandbox)
    received = [(call.path, call.body[0]["stageKey"]) for call in receiver.received]
    assert received[2:] == expected  # the first two calls are the failed attempts
    assert [d["event"] for d in sandbox.webhook_deliveries] == ["BOX_CHANGE_STAGE", "BOX_EDIT"] * 12


def test_admin_webhook_deliveries_endpoint_lists_deliveries(
    sandbox: StreakSandbox, client: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CREATE", f"{receiver.url}/create")
    create_box(client)
    settle(sandbox)
    body = admin.get("/_sandbox/webhooks/deliveries").json()
    assert body == {"deliveries": sandbox.webhook_deliveries, "pending": 0}
    assert len(body["deliveries"]) == 1


def test_reset_clears_webhooks_outbox_and_deliveries(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    register(client, "BOX_CREATE", f"{receiver.url}/create")
    create_box(client)
    settle(sandbox)
    receiver.delay = 0.2
    for n in range(5):
        create_box(client, f"queued {n}")
    sandbox.reset()
    assert sandbox.webhook_deliveries == []
    assert client.get("/api/v2/webhooks", params={"pipelineKey": "pl_orders"}).json() == {"results": []}
    settle(sandbox)
    assert sandbox.webhook_deliveries == []
    assert len(receiver.received) <= 2  # the first one, plus at most the one in flight at reset
    create_box(client)
    settle(sandbox)
    assert len(receiver.received) <= 2


def test_stop_ends_delivery_thread_and_next_event_restarts_it(
    sandbox: StreakSandbox, client: httpx.Client, receiver: Receiver
) -> None:
    before = set(threading.enumerate())
    register(client, "BOX_CREATE", f"{receiver.url}/create")
    create_box(client)
    settle(sandbox)
    workers = [t for t in set(threading.enumerate()) - before if t.name == "streak-webhooks"]
    assert len(workers) == 1
    sandbox.stop()
    assert not workers[0].is_alive()
    create_box(client, "after stop")
    settle(sandbox)
    assert len(receiver.received) == 2


def test_served_sandbox_over_socket_delivers_ui_stage_move(receiver: Receiver) -> None:
    with StreakSandbox() as sandbox:
        with httpx.Client(base_url=sandbox.base_url or "", auth=(API_KEY, ""), timeout=5) as api:
            register(api, "BOX_CHANGE_STAGE", f"{receiver.url}/stage", token="s3cret")
            box = create_box(api)
            moved = httpx.post(f"{sandbox.base_url}/_sandbox/boxes/{box['key']}/stage", json={"stageKey": "5003"})
            assert moved.status_code == 200
        assert sandbox.wait_for_webhooks(timeout=5.0)
        assert [call.body for call in receiver.received] == [[moved.json()]]
