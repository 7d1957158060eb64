"""StreakClient: auth, request shapes, JSON numbers, and Streak's error shapes (httpx.MockTransport)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError
from switchyard.systems.streak.client import StreakClient, StreakConnection

CONNECTION = StreakConnection(base_url="https://streak.test/", api_key="key-123", team_key="team_1",
                              pipeline_key="pl_orders")


class Recorder:
    """A MockTransport handler that records requests and answers from a queue (default ``{}``)."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.requests: list[httpx.Request] = []
        self._responses = list(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._responses.pop(0) if self._responses else httpx.Response(200, json={})

    def client(self) -> StreakClient:
        return StreakClient(CONNECTION, transport=httpx.MockTransport(self))

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def test_streak_client_basic_auth_uses_api_key_as_user_and_empty_password() -> None:
    recorder = Recorder()

    recorder.client().get_box("box_1")

    request = recorder.requests[0]
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"key-123:").decode()
    assert request.headers["content-type"] == "application/json"
    assert str(request.url) == "https://streak.test/api/v1/boxes/box_1"


def test_streak_client_set_field_sends_decimal_as_json_number() -> None:
    recorder = Recorder()

    recorder.client().set_field("box_1", "1002", Decimal("1299.00"))
    recorder.client().set_field("box_1", "1002", Decimal("24.99"))

    assert recorder.body(0) == {"value": 1299}
    assert isinstance(recorder.body(0)["value"], int)
    assert recorder.body(1) == {"value": 24.99}
    assert b'"24.99"' not in recorder.requests[1].content  # a number, not a string


def test_streak_client_create_box_posts_v2_json() -> None:
    recorder = Recorder(httpx.Response(200, json={"key": "box_9"}))

    box = recorder.client().create_box("pl_orders", name="Order 1", stage_key="5001", notes=None)

    assert box == {"key": "box_9"}
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v2/pipelines/pl_orders/boxes")
    assert recorder.body() == {"name": "Order 1", "stageKey": "5001"}  # no empty notes sent


def test_streak_client_find_or_create_contact_sends_only_email_with_get_if_existing() -> None:
    recorder = Recorder()

    recorder.client().find_or_create_contact("team_1", "jane@acme.example")

    request = recorder.requests[0]
    assert request.url.path == "/api/v2/teams/team_1/contacts/"
    assert request.url.params["getIfExisting"] == "true"
    assert recorder.body() == {"emailAddresses": ["jane@acme.example"]}


def test_streak_client_create_task_sends_due_date_ms_and_assignee() -> None:
    recorder = Recorder()

    recorder.client().create_task("box_1", text="Follow up", due_date_ms=1_795_425_300_000,
                                  assignee_email="rep@example.com")

    assert recorder.body() == {"text": "Follow up", "dueDate": 1_795_425_300_000,
                               "assignedToSharingEntries": [{"email": "rep@example.com"}]}


def test_streak_client_search_boxes_returns_box_hits() -> None:
    hits = {"results": {"boxes": [{"boxKey": "box_1"}], "contacts": [], "organizations": []}}
    recorder = Recorder(httpx.Response(200, json=hits))

    assert recorder.client().search_boxes("1042", "pl_orders") == [{"boxKey": "box_1"}]
    assert recorder.requests[0].url.params["pipelineKey"] == "pl_orders"


def test_streak_client_search_boxes_reads_every_page_until_an_empty_one() -> None:
    def page(*keys: str) -> httpx.Response:
        return httpx.Response(200, json={"results": {"boxes": [{"boxKey": k} for k in keys]}})

    recorder = Recorder(page("box_1", "box_2"), page("box_2", "box_3"), page())

    assert recorder.client().search_boxes("7", "pl_orders") == [
        {"boxKey": "box_1"}, {"boxKey": "box_2"}, {"boxKey": "box_3"}]
    assert [r.url.params["page"] for r in recorder.requests] == ["1", "2", "3"]


def test_streak_client_search_boxes_failed_page_raises_retryable() -> None:
    recorder = Recorder(httpx.Response(200, json={"results": {"boxes": [{"boxKey": "box_1"}]}}),
                        httpx.Response(503, json={"success": False}))

    with pytest.raises(RetryableError):
        recorder.client().search_boxes("7", "pl_orders")


def test_streak_client_update_box_sends_field_values_as_one_map() -> None:
    recorder = Recorder()
    recorder.client().update_box("box_1", {"fields": {"1001": "A-1", "1002": Decimal("12.50")}})

    assert recorder.requests[0].url.path == "/api/v1/boxes/box_1"
    assert recorder.body() == {"fields": {"1001": "A-1", "1002": 12.5}}


def test_streak_client_success_false_under_200_raises_permanent() -> None:
    body = {"success": False, "error": "Missing parameters"}
    recorder = Recorder(httpx.Response(200, json=body))

    with pytest.raises(PermanentError) as raised:
        recorder.client().update_box("box_1", {"stageKey": "5002"})

    assert raised.value.reason == "target_rejected"
    assert raised.value.target_status == 200
    assert raised.value.target_response == body


def test_streak_client_400_raises_permanent_with_streak_error_body() -> None:
    body = {"success": False, "error": "Invalid stage key"}
    recorder = Recorder(httpx.Response(400, json=body))

    with pytest.raises(PermanentError) as raised:
        recorder.client().update_box("box_1", {"stageKey": "9999"})

    assert (raised.value.target_status, raised.value.target_response) == (400, body)


def test_streak_client_401_raises_target_auth_failed() -> None:
    recorder = Recorder(httpx.Response(401, json={"success": False, "error": "Invalid API key"}))

    with pytest.raises(PermanentError) as raised:
        recorder.client().get_box("box_1")

    assert raised.value.reason == "target_auth_failed"


def test_streak_client_503_raises_retryable() -> None:
    recorder = Recorder(httpx.Response(503, headers={"Retry-After": "2"}))

    with pytest.raises(RetryableError) as raised:
        recorder.client().list_tasks("box_1")

    assert raised.value.retry_after == 2.0


def test_streak_client_timeout_raises_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = StreakClient(CONNECTION, transport=httpx.MockTransport(handler))

    with pytest.raises(RetryableError) as raised:
        client.get_box("box_1")

    assert raised.value.reason == "target_timeout"


def test_streak_connection_from_secret_complete_secret_parsed() -> None:
    connection = StreakConnection.from_secret(
        {"api_key": "k", "team_key": "t", "pipeline_key": "p", "rotated_at": "2026-11-01"}
    )

    assert connection.base_url == "https://api.streak.com"
    assert (connection.api_key, connection.team_key, connection.pipeline_key) == ("k", "t", "p")


@pytest.mark.parametrize(
    ("secret", "named"),
    [
        ({"team_key": "team-VALUE", "pipeline_key": "pl-VALUE"}, "api_key"),
        ({"api_key": "apikey-VALUE", "pipeline_key": "pl-VALUE"}, "team_key"),
        ({"api_key": "apikey-VALUE", "team_key": "team-VALUE"}, "pipeline_key"),
        ({"api_key": "", "team_key": "team-VALUE", "pipeline_key": "pl-VALUE"}, "api_key"),
    ],
)
def test_streak_connection_from_secret_missing_key_raises_connection_config_error(secret, named) -> None:
    with pytest.raises(ConnectionConfigError, match=named) as raised:
        StreakConnection.from_secret(secret)

    assert "VALUE" not in str(raised.value)  # names the keys, never echoes secret values
