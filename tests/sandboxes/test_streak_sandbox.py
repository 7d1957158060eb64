"""Tests for the in-memory Streak CRM sandbox (mostly in-process through WSGI, one real socket)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes.faults import FaultPlan
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, FieldSpec, StreakSandbox

API_KEY = "sandbox-key"
ORDER_MS = 1_700_000_000_000
# The demo pipeline plus the two field types it lacks, so every validator is covered.
FULL_PIPELINE = dataclasses.replace(
    DEMO_PIPELINE,
    fields=(
        *DEMO_PIPELINE.fields,
        FieldSpec("1007", "Gift order", "CHECKBOX"),
        FieldSpec("1008", "Labels", "TAG", tags=(("7001", "vip"), ("7002", "wholesale"))),
    ),
)


@pytest.fixture
def sandbox() -> StreakSandbox:
    return StreakSandbox(pipeline=FULL_PIPELINE)


@pytest.fixture
def client(sandbox: StreakSandbox) -> Iterator[httpx.Client]:
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    with httpx.Client(transport=transport, base_url="http://streak.test", auth=(API_KEY, "")) as client:
        yield client


def create_box(client: httpx.Client, name: str = "Order #1001", **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v2/pipelines/pl_orders/boxes", json={"name": name, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def create_contact(
    client: httpx.Client, body: dict[str, Any], get_if_existing: bool = False
) -> httpx.Response:
    params = {"getIfExisting": "true"} if get_if_existing else None
    return client.post("/api/v2/teams/team_1/contacts/", json=body, params=params)


def create_org(client: httpx.Client, body: dict[str, Any], get_if_existing: bool = False) -> httpx.Response:
    params = {"getIfExisting": "true"} if get_if_existing else None
    return client.post("/api/v2/teams/team_1/organizations", json=body, params=params)


def set_field(client: httpx.Client, box_key: str, field_key: str, value: Any) -> httpx.Response:
    return client.post(f"/api/v1/boxes/{box_key}/fields/{field_key}", json={"value": value})


# --------------------------------------------------------------------------- auth and protocol


@pytest.mark.parametrize("auth", [None, ("wrong-key", ""), ("", API_KEY)])
def test_auth_missing_or_wrong_key_returns_401(sandbox: StreakSandbox, auth: Any) -> None:
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    with httpx.Client(transport=transport, base_url="http://streak.test", auth=auth) as client:
        response = client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "Invalid API key"}


def test_post_without_json_content_type_returns_400_missing_parameters(client: httpx.Client) -> None:
    response = client.post("/api/v2/pipelines/pl_orders/boxes", data={"name": "Order #1"})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Missing parameters"}


def test_post_with_malformed_json_returns_400_missing_parameters(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/api/v2/pipelines/pl_orders/boxes", content=b"{nope", headers=headers)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/nothing"), ("GET", "/api/v1/pipelines/pl_missing"), ("DELETE", "/api/v1/pipelines")],
)
def test_unknown_path_or_pipeline_returns_404_invalid_path(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Invalid API path specified"}


def test_users_me_valid_key_returns_user(client: httpx.Client) -> None:
    user = client.get("/api/v1/users/me").json()
    assert user["email"] == "sales-rep@example.com"
    assert user["key"] == user["userKey"]
    assert {"displayName", "creationTimestamp", "lastUpdatedTimestamp"} <= set(user)


def test_teams_me_returns_configured_team_with_members(client: httpx.Client) -> None:
    teams = client.get("/api/v2/users/me/teams").json()["results"]
    assert teams[0]["key"] == "team_1"
    assert teams[0]["members"] == [{"email": "sales-rep@example.com"}]


# --------------------------------------------------------------------------- pipelines


def test_pipeline_get_returns_stages_keyed_by_stage_key(client: httpx.Client) -> None:
    pipeline = client.get("/api/v1/pipelines/pl_orders").json()
    assert pipeline["key"] == "pl_orders"
    assert pipeline["name"] == "Orders"
    assert pipeline["stages"]["5003"] == {"key": "5003", "name": "Complete"}
    field_keys = [field["key"] for field in pipeline["fields"]]
    assert field_keys[:6] == ["1001", "1002", "1003", "1004", "1005", "1006"]
    assert client.get("/api/v1/pipelines").json()[0]["key"] == "pl_orders"


def test_pipeline_fields_include_dropdown_and_tag_settings(client: httpx.Client) -> None:
    fields = {field["key"]: field for field in client.get("/api/v1/pipelines/pl_orders/fields").json()}
    assert fields["1004"]["type"] == "DROPDOWN"
    assert {"key": "9003", "name": "Paid"} in fields["1004"]["dropdownSettings"]["items"]
    assert fields["1008"]["tagSettings"]["tags"][0] == {"key": "7001", "tag": "vip"}
    assert "dropdownSettings" not in fields["1001"]


def test_pipeline_stages_endpoint_lists_all_stages(client: httpx.Client) -> None:
    stages = client.get("/api/v1/pipelines/pl_orders/stages").json()
    assert list(stages) == ["5001", "5002", "5003", "5004"]


# --------------------------------------------------------------------------- boxes


def test_box_create_without_stage_uses_first_stage(client: httpx.Client) -> None:
    box = create_box(client, notes="from nopCommerce")
    assert box["key"] == box["boxKey"]
    assert box["stageKey"] == "5001"
    assert box["pipelineKey"] == "pl_orders"
    assert box["notes"] == "from nopCommerce"
    assert (box["fields"], box["contacts"], box["organizations"]) == ({}, [], [])
    assert client.get(f"/api/v1/boxes/{box['key']}").json() == box


def test_box_create_without_name_returns_400_missing_parameters(client: httpx.Client) -> None:
    response = client.post("/api/v2/pipelines/pl_orders/boxes", json={"stageKey": "5001"})
    assert response.status_code == 400
    assert response.json()["error"] == "Missing parameters"


def test_box_create_unknown_stage_returns_400_invalid_stage_key(client: httpx.Client) -> None:
    response = client.post("/api/v2/pipelines/pl_orders/boxes", json={"name": "x", "stageKey": "9999"})
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid stage key"


def test_box_get_unknown_key_returns_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/boxes/box_404")
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_box_list_returns_boxes_of_pipeline(client: httpx.Client) -> None:
    create_box(client, "A")
    create_box(client, "B")
    assert [box["name"] for box in client.get("/api/v1/pipelines/pl_orders/boxes").json()] == ["A", "B"]


def test_box_update_changes_properties_and_ignores_unknown_ones(client: httpx.Client) -> None:
    box = create_box(client)
    body = {"name": "Order #1001 (paid)", "stageKey": "5002", "fields": {"1002": 99.5}, "colour": "red"}
    updated = client.post(f"/api/v1/boxes/{box['key']}", json=body).json()
    assert updated["name"] == "Order #1001 (paid)"
    assert (updated["stageKey"], updated["fields"]) == ("5002", {"1002": 99.5})
    assert "colour" not in updated
    assert updated["lastUpdatedTimestamp"] >= box["lastUpdatedTimestamp"]


def test_box_update_merges_fields_with_existing_values(client: httpx.Client) -> None:
    box = create_box(client)
    set_field(client, box["key"], "1001", "1001")
    updated = client.post(f"/api/v1/boxes/{box['key']}", json={"fields": {"1006": "EUR"}}).json()
    assert updated["fields"] == {"1001": "1001", "1006": "EUR"}


def test_box_update_with_one_invalid_property_changes_nothing(client: httpx.Client) -> None:
    box = create_box(client)
    body = {"name": "renamed", "fields": {"1003": 1_700_000_000}}
    response = client.post(f"/api/v1/boxes/{box['key']}", json=body)
    assert response.status_code == 400
    assert client.get(f"/api/v1/boxes/{box['key']}").json()["name"] == "Order #1001"


def test_box_update_invalid_stage_returns_400(client: httpx.Client) -> None:
    box = create_box(client)
    response = client.post(f"/api/v1/boxes/{box['key']}", json={"stageKey": 5002})
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid stage key"


def test_box_update_contacts_replaces_the_whole_list(client: httpx.Client) -> None:
    box = create_box(client)
    first = create_contact(client, {"emailAddresses": ["a@example.com"]}).json()
    second = create_contact(client, {"emailAddresses": ["b@example.com"]}).json()
    client.post(f"/api/v1/boxes/{box['key']}", json={"contacts": [{"key": first["key"]}]})
    updated = client.post(f"/api/v1/boxes/{box['key']}", json={"contacts": [{"key": second["key"]}]}).json()
    assert updated["contacts"] == [{"key": second["key"]}]


def test_box_update_unknown_contact_or_org_key_returns_400(client: httpx.Client) -> None:
    box = create_box(client)
    for prop in ("contacts", "organizations"):
        response = client.post(f"/api/v1/boxes/{box['key']}", json={prop: [{"key": "nope"}]})
        assert response.status_code == 400
        assert "nope" in response.json()["error"]


def test_box_update_organizations_links_existing_org(client: httpx.Client) -> None:
    box = create_box(client)
    org = create_org(client, {"name": "Acme", "domains": ["acme.com"]}).json()
    updated = client.post(f"/api/v1/boxes/{box['key']}", json={"organizations": [{"key": org["key"]}]}).json()
    assert updated["organizations"] == [{"key": org["key"]}]


# --------------------------------------------------------------------------- field validation


@pytest.mark.parametrize(
    ("field_key", "value"),
    [
        ("1001", "ORD-1001"),
        ("1002", 125),
        ("1002", 125.75),
        ("1003", ORDER_MS),
        ("1004", "9003"),
        ("1007", True),
        ("1008", ["7001", "7002"]),
        ("1008", []),
    ],
)
def test_box_field_valid_value_is_stored(client: httpx.Client, field_key: str, value: Any) -> None:
    box = create_box(client)
    response = set_field(client, box["key"], field_key, value)
    assert response.status_code == 200, response.text
    assert response.json() == {"key": field_key, "value": value}
    assert client.get(f"/api/v1/boxes/{box['key']}/fields").json() == [{"key": field_key, "value": value}]


@pytest.mark.parametrize(
    ("field_key", "value"),
    [
        ("1001", 1001),
        ("1001", None),
        ("1002", "125.00"),
        ("1002", True),
        ("1003", "2024-01-01"),
        ("1003", float(ORDER_MS)),
        ("1003", True),
        ("1004", 9003),
        ("1004", "9999"),
        ("1007", "true"),
        ("1008", "7001"),
        ("1008", ["7999"]),
    ],
)
def test_box_field_invalid_value_returns_400_naming_the_field(
    client: httpx.Client, field_key: str, value: Any
) -> None:
    box = create_box(client)
    response = set_field(client, box["key"], field_key, value)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert f"field {field_key}" in response.json()["error"]
    assert client.get(f"/api/v1/boxes/{box['key']}").json()["fields"] == {}


def test_box_field_date_in_seconds_returns_400_mentioning_seconds(client: httpx.Client) -> None:
    box = create_box(client)
    response = set_field(client, box["key"], "1003", ORDER_MS // 1000)
    assert response.status_code == 400
    assert '"Order date"' in response.json()["error"]
    assert "seconds" in response.json()["error"]


def test_box_field_dropdown_label_returns_400_suggesting_item_key(client: httpx.Client) -> None:
    box = create_box(client)
    response = set_field(client, box["key"], "1004", "Paid")
    assert response.status_code == 400
    assert "'9003'" in response.json()["error"]


def test_box_field_unknown_field_key_returns_400(client: httpx.Client) -> None:
    box = create_box(client)
    response = set_field(client, box["key"], "4242", "x")
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid field key"


def test_box_field_without_value_returns_400_missing_parameters(client: httpx.Client) -> None:
    box = create_box(client)
    response = client.post(f"/api/v1/boxes/{box['key']}/fields/1001", json={})
    assert response.status_code == 400
    assert response.json()["error"] == "Missing parameters"


# --------------------------------------------------------------------------- search


def test_search_by_text_field_value_finds_box(client: httpx.Client) -> None:
    box = create_box(client, "Jane Doe order")
    create_box(client, "Other order")
    set_field(client, box["key"], "1001", "NOP-1001")
    body = client.get("/api/v1/search", params={"query": "nop-1001"}).json()
    assert body["query"] == "nop-1001"
    assert body["results"]["boxes"] == [
        {
            "boxKey": box["key"],
            "name": "Jane Doe order",
            "lastUpdatedTimestamp": body["results"]["boxes"][0]["lastUpdatedTimestamp"],
            "assignedToKeys": [],
            "pipelineKey": "pl_orders",
            "stageKey": "5001",
        }
    ]


def test_search_ignores_non_text_field_values(client: httpx.Client) -> None:
    box = create_box(client, "Order")
    set_field(client, box["key"], "1004", "9003")
    assert client.get("/api/v1/search", params={"query": "9003"}).json()["results"]["boxes"] == []


def test_search_with_stage_filter_excludes_other_stages(client: httpx.Client) -> None:
    create_box(client, "Order A", stageKey="5001")
    create_box(client, "Order B", stageKey="5003")
    params = [("query", "order"), ("stageKey", "5003"), ("stageKey", "5004"), ("pipelineKey", "pl_orders")]
    boxes = client.get("/api/v1/search", params=params).json()["results"]["boxes"]
    assert [box["name"] for box in boxes] == ["Order B"]


def test_search_matches_contacts_by_email_and_orgs_by_domain(client: httpx.Client) -> None:
    create_contact(client, {"givenName": "Jane", "emailAddresses": ["jane@acme.com"]})
    create_org(client, {"name": "Acme Inc", "domains": ["acme.com"]})
    results = client.get("/api/v1/search", params={"query": "ACME.COM"}).json()["results"]
    assert [contact["emailAddresses"] for contact in results["contacts"]] == [["jane@acme.com"]]
    assert [org["name"] for org in results["organizations"]] == ["Acme Inc"]


def test_search_ranks_by_relevance_and_answers_one_page_at_a_time(client: httpx.Client) -> None:
    # Given "7" and twelve look-alikes (17 ... 74), the exact one created first
    names = ["7", *(str(n) for n in range(17, 68, 10)), *(str(n) for n in range(70, 75)), "77"]
    for name in names:
        create_box(client, f"Order {name}")

    pages = [client.get("/api/v1/search", params={"query": "7", "page": page}).json() for page in (1, 2, 3)]

    # Then "77" (two occurrences) ranks first, equal scores newest first: "Order 7" only on page 2
    first, second, third = ([box["name"] for box in page["results"]["boxes"]] for page in pages)
    assert [page["page"] for page in pages] == [1, 2, 3]
    assert first[0] == "Order 77" and len(first) == 10
    assert second == ["Order 27", "Order 17", "Order 7"]
    assert third == []


def test_search_with_invalid_page_returns_400(client: httpx.Client) -> None:
    response = client.get("/api/v1/search", params={"query": "x", "page": "0"})
    assert (response.status_code, response.json()["error"]) == (400, "Invalid page")


def test_search_does_not_find_a_box_until_the_index_caught_up() -> None:
    sandbox = StreakSandbox(search_lag_seconds=0.2)
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://streak.test",
                      auth=(API_KEY, "")) as client:
        create_box(client, "Order 1042")
        assert client.get("/api/v1/search", params={"query": "1042"}).json()["results"]["boxes"] == []
        time.sleep(0.25)
        assert len(client.get("/api/v1/search", params={"query": "1042"}).json()["results"]["boxes"]) == 1


def test_update_box_sets_a_map_of_fields_in_one_call_or_none_of_them(client: httpx.Client) -> None:
    box = create_box(client)

    refused = client.post(f"/api/v1/boxes/{box['key']}", json={"fields": {"1001": "A-1", "1004": "Paid"}})
    assert refused.status_code == 400
    assert client.get(f"/api/v1/boxes/{box['key']}").json()["fields"] == {}

    done = client.post(f"/api/v1/boxes/{box['key']}", json={"fields": {"1001": "A-1", "1004": "9003"}})
    assert done.json()["fields"] == {"1001": "A-1", "1004": "9003"}


def test_update_box_ignores_field_keys_at_the_top_level_as_streak_does(client: httpx.Client) -> None:
    # Streak's "update a box" takes field values under "fields"; other properties are ignored
    box = create_box(client)
    response = client.post(f"/api/v1/boxes/{box['key']}", json={"1001": "A-1"})
    assert response.status_code == 200
    assert response.json()["fields"] == {}


def test_carry_out_late_write_happens_after_the_delay_even_when_the_client_gave_up() -> None:
    with StreakSandbox() as sandbox:
        sandbox.carry_out_late("create_box", 0.5)
        with httpx.Client(base_url=sandbox.base_url or "", auth=(API_KEY, ""), timeout=0.1) as client:
            with pytest.raises(httpx.TimeoutException):
                client.post("/api/v2/pipelines/pl_orders/boxes", json={"name": "Order 1"})
            assert sandbox.snapshot()["boxes"] == []
            time.sleep(0.7)
            assert [box["name"] for box in sandbox.snapshot()["boxes"]] == ["Order 1"]


def test_admin_routes_set_slow_writes_and_search_lag(sandbox: StreakSandbox, client: httpx.Client) -> None:
    assert client.post("/_sandbox/search_lag", json={"seconds": 0.2}).json() == {"success": True}
    assert client.post("/_sandbox/slow_writes", json={"endpoint": "create_box", "seconds": 0.1}).status_code == 200
    assert client.post("/_sandbox/slow_writes", json={"endpoint": "nope", "seconds": 1}).status_code == 400

    started = time.monotonic()
    create_box(client, "Order 1042")
    assert time.monotonic() - started >= 0.1
    assert client.get("/api/v1/search", params={"query": "1042"}).json()["results"]["boxes"] == []
    assert sandbox.search_lag_seconds == 0.2


def test_search_without_query_returns_400_missing_parameters(client: httpx.Client) -> None:
    response = client.get("/api/v1/search")
    assert response.status_code == 400
    assert response.json()["error"] == "Missing parameters"


# --------------------------------------------------------------------------- contacts


def test_contact_create_returns_contact_object(client: httpx.Client) -> None:
    body = {"givenName": "Jane", "familyName": "Doe", "emailAddresses": ["j@x.com"]}
    response = create_contact(client, body)
    contact = response.json()
    assert response.status_code == 200
    assert contact["teamKey"] == "team_1"
    assert {key: contact[key] for key in body} == body
    assert {"key", "creationTimestamp", "lastUpdatedTimestamp"} <= set(contact)
    assert client.get(f"/api/v2/contacts/{contact['key']}").json() == contact


def test_contact_create_path_without_trailing_slash_is_accepted(client: httpx.Client) -> None:
    response = client.post("/api/v2/teams/team_1/contacts", json={"emailAddresses": ["j@x.com"]})
    assert response.status_code == 200


def test_contact_create_without_name_or_email_returns_400(client: httpx.Client) -> None:
    response = create_contact(client, {"title": "CEO"})
    assert response.status_code == 400
    assert response.json()["error"] == "Need to specify at least a name or email address"


def test_contact_create_duplicate_emails_returns_400_error_code_801(client: httpx.Client) -> None:
    response = create_contact(client, {"emailAddresses": ["j@x.com", "j@x.com"]})
    assert response.status_code == 400
    assert response.json()["errorCode"] == 801


def test_contact_create_wrong_team_returns_400_bare_failure(client: httpx.Client) -> None:
    response = client.post("/api/v2/teams/team_9/contacts/", json={"emailAddresses": ["j@x.com"]})
    assert response.status_code == 400
    assert response.json() == {"success": False}


def test_contact_create_without_get_if_existing_always_creates(client: httpx.Client) -> None:
    first = create_contact(client, {"emailAddresses": ["j@x.com"]}).json()
    second = create_contact(client, {"emailAddresses": ["j@x.com"]}).json()
    assert first["key"] != second["key"]


def test_contact_get_if_existing_exact_email_returns_existing(client: httpx.Client) -> None:
    existing = create_contact(client, {"givenName": "Jane", "emailAddresses": ["jane@x.com"]}).json()
    found = create_contact(client, {"emailAddresses": ["jane@x.com"]}, get_if_existing=True).json()
    assert found == existing


def test_contact_get_if_existing_different_case_creates_new_contact(client: httpx.Client) -> None:
    existing = create_contact(client, {"emailAddresses": ["jane@x.com"]}).json()
    created = create_contact(client, {"emailAddresses": ["Jane@X.com"]}, get_if_existing=True).json()
    assert created["key"] != existing["key"]
    assert created["emailAddresses"] == ["Jane@X.com"]


def test_contact_get_if_existing_with_other_properties_returns_400(client: httpx.Client) -> None:
    body = {"givenName": "Jane", "emailAddresses": ["jane@x.com"]}
    response = create_contact(client, body, get_if_existing=True)
    assert response.status_code == 400
    assert response.json()["error"] == "Insufficient params for TeamContact"


def test_contact_update_merges_given_properties(client: httpx.Client) -> None:
    contact = create_contact(client, {"givenName": "Jane", "emailAddresses": ["jane@x.com"]}).json()
    updated = client.post(f"/api/v2/contacts/{contact['key']}", json={"familyName": "Doe"}).json()
    assert updated["key"] == contact["key"]
    assert (updated["givenName"], updated["familyName"]) == ("Jane", "Doe")
    assert updated["emailAddresses"] == ["jane@x.com"]


def test_contact_delete_removes_it_and_unlinks_boxes(client: httpx.Client) -> None:
    box = create_box(client)
    contact = create_contact(client, {"emailAddresses": ["jane@x.com"]}).json()
    client.post(f"/api/v1/boxes/{box['key']}", json={"contacts": [{"key": contact["key"]}]})
    assert client.delete(f"/api/v2/contacts/{contact['key']}").status_code == 200
    assert client.get(f"/api/v2/contacts/{contact['key']}").status_code == 404
    assert client.get(f"/api/v1/boxes/{box['key']}").json()["contacts"] == []


# --------------------------------------------------------------------------- organizations


def test_org_get_if_existing_any_matching_domain_returns_existing(client: httpx.Client) -> None:
    existing = create_org(client, {"name": "Acme", "domains": ["acme.com", "acme.io"]}).json()
    found = create_org(client, {"domains": ["other.com", "acme.io"]}, get_if_existing=True).json()
    assert found == existing


def test_org_get_if_existing_unknown_domain_creates_org(client: httpx.Client) -> None:
    created = create_org(client, {"domains": ["new.com"]}, get_if_existing=True).json()
    assert created["domains"] == ["new.com"]
    assert client.get(f"/api/v2/organizations/{created['key']}").json() == created


def test_org_get_if_existing_with_name_returns_400(client: httpx.Client) -> None:
    response = create_org(client, {"name": "Acme", "domains": ["acme.com"]}, get_if_existing=True)
    assert response.status_code == 400


def test_org_create_duplicate_domains_returns_400(client: httpx.Client) -> None:
    assert create_org(client, {"name": "Acme", "domains": ["acme.com", "acme.com"]}).status_code == 400


def test_org_create_without_name_or_domains_returns_400(client: httpx.Client) -> None:
    assert create_org(client, {"industry": "Retail"}).status_code == 400


def test_org_update_merges_given_properties(client: httpx.Client) -> None:
    org = create_org(client, {"name": "Acme"}).json()
    updated = client.post(f"/api/v2/organizations/{org['key']}", json={"domains": ["acme.com"]}).json()
    assert (updated["name"], updated["domains"]) == ("Acme", ["acme.com"])


# --------------------------------------------------------------------------- tasks and comments


def test_task_create_with_ms_due_date_returns_not_done_task(client: httpx.Client) -> None:
    box = create_box(client)
    body = {"text": "Ship it", "dueDate": ORDER_MS, "assignedToSharingEntries": [{"email": "rep@x.com"}]}
    task = client.post(f"/api/v2/boxes/{box['key']}/tasks", json=body).json()
    assert task["status"] == "NOT_DONE"
    assert (task["boxKey"], task["text"], task["dueDate"]) == (box["key"], "Ship it", ORDER_MS)
    assert task["assignedToSharingEntries"] == [{"email": "rep@x.com"}]
    assert client.get(f"/api/v2/boxes/{box['key']}/tasks").json() == {"results": [task]}


@pytest.mark.parametrize(
    "body",
    [
        {"text": "Ship it", "dueDate": ORDER_MS // 1000},
        {"text": "Ship it", "dueDate": "tomorrow"},
        {"dueDate": ORDER_MS},
    ],
)
def test_task_create_invalid_body_returns_400(client: httpx.Client, body: dict[str, Any]) -> None:
    box = create_box(client)
    assert client.post(f"/api/v2/boxes/{box['key']}/tasks", json=body).status_code == 400


def test_task_create_on_unknown_box_returns_404(client: httpx.Client) -> None:
    assert client.post("/api/v2/boxes/box_404/tasks", json={"text": "x"}).status_code == 404


def test_box_assigned_to_a_team_member_replaces_the_list(client: httpx.Client) -> None:
    box = create_box(client)
    entries = [{"email": "ana.north@example.com"}, {"email": "Sales-Rep@example.com"}]
    updated = client.post(f"/api/v1/boxes/{box['key']}", json={"assignedToSharingEntries": entries}).json()
    assert updated["assignedToSharingEntries"] == entries

    again = client.post(f"/api/v1/boxes/{box['key']}", json={"assignedToSharingEntries": entries[:1]}).json()
    assert again["assignedToSharingEntries"] == entries[:1]


@pytest.mark.parametrize("entries", [[{"email": "stranger@elsewhere.example"}], [{"mail": "x"}], "ana"])
def test_box_assigned_to_someone_outside_the_team_returns_400_and_changes_nothing(
    client: httpx.Client, entries: Any
) -> None:
    box = create_box(client)
    response = client.post(f"/api/v1/boxes/{box['key']}",
                           json={"assignedToSharingEntries": entries, "fields": {"1001": "1001"}})
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert client.get(f"/api/v1/boxes/{box['key']}").json()["fields"] == {}


def test_comment_create_then_list_returns_it(client: httpx.Client) -> None:
    box = create_box(client)
    comment = client.post(f"/api/v2/boxes/{box['key']}/comments", json={"message": "Paid in full"}).json()
    assert comment["message"] == "Paid in full"
    assert client.get(f"/api/v2/boxes/{box['key']}/comments").json() == {"results": [comment]}


# --------------------------------------------------------------------------- inspection and admin


def test_snapshot_after_scenario_uses_names_instead_of_keys(
    sandbox: StreakSandbox, client: httpx.Client
) -> None:
    box = create_box(client, "Order #1001", stageKey="5002")
    contact = create_contact(client, {"givenName": "Jane", "emailAddresses": ["jane@x.com"]}).json()
    org = create_org(client, {"name": "Acme", "domains": ["acme.com"]}).json()
    links = {"contacts": [{"key": contact["key"]}], "organizations": [{"key": org["key"]}]}
    client.post(f"/api/v1/boxes/{box['key']}", json={**links, "fields": {"1004": "9003", "1003": ORDER_MS},
                                                      "assignedToSharingEntries": [{"email": "ana.north@example.com"}]})
    client.post(
        f"/api/v2/boxes/{box['key']}/tasks",
        json={"text": "Call", "assignedToSharingEntries": [{"email": "r@x"}]},
    )
    client.post(f"/api/v2/boxes/{box['key']}/comments", json={"message": "hello"})

    snapshot = sandbox.snapshot()
    assert snapshot["boxes"] == [
        {
            "key": box["key"],
            "name": "Order #1001",
            "notes": "",
            "stage": "Processing",
            "stageKey": "5002",
            "fields": {"Payment status": "9003", "Order date": ORDER_MS},
            "contacts": ["jane@x.com"],
            "organizations": ["Acme"],
            "tasks": [{"text": "Call", "dueDate": None, "assignee": "r@x"}],
            "comments": ["hello"],
            "assignees": ["ana.north@example.com"],
        }
    ]
    assert [c["key"] for c in snapshot["contacts"]] == [contact["key"]]
    assert [o["name"] for o in snapshot["organizations"]] == ["Acme"]


def test_requests_log_records_api_calls_but_not_admin_calls(
    sandbox: StreakSandbox, client: httpx.Client
) -> None:
    client.get("/api/v1/users/me")
    client.get("/api/v1/boxes/box_404")
    client.get("/_sandbox/state")
    assert list(sandbox.requests) == [("GET", "/api/v1/users/me", 200), ("GET", "/api/v1/boxes/box_404", 404)]


def test_reset_forgets_data_requests_and_faults(sandbox: StreakSandbox, client: httpx.Client) -> None:
    create_box(client)
    sandbox.faults.set_plan(FaultPlan(error_rate=1.0))
    sandbox.reset()
    assert sandbox.snapshot() == {"boxes": [], "contacts": [], "organizations": []}
    assert len(sandbox.requests) == 0
    # a key is never given twice, as in Streak: Switchyard's links to records from before the reset (a shared
    # local stack keeps them) must not name the records made after it
    assert create_box(client)["key"] == "box_2"


def test_admin_endpoints_need_no_auth_and_control_state(sandbox: StreakSandbox) -> None:
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    with httpx.Client(transport=transport, base_url="http://streak.test") as anonymous:
        assert anonymous.post("/_sandbox/faults", json={"error_rate": 1.0}).status_code == 200
        assert sandbox.faults.plan.error_rate == 1.0
        assert anonymous.get("/_sandbox/state").json() == {"boxes": [], "contacts": [], "organizations": []}
        assert anonymous.post("/_sandbox/faults", json={"nonsense": 1}).status_code == 400
        assert anonymous.delete("/_sandbox/faults").status_code == 200
        assert sandbox.faults.plan == FaultPlan()
        assert anonymous.post("/_sandbox/reset").status_code == 200


# --------------------------------------------------------------------------- faults through the sandbox


def test_faults_fail_next_two_503s_then_request_succeeds(
    sandbox: StreakSandbox, client: httpx.Client
) -> None:
    sandbox.faults.fail_next(2, 503)
    statuses = [client.get("/api/v1/users/me").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [status for _, _, status in sandbox.requests] == [503, 503, 200]


def test_faults_injected_error_uses_streak_error_body(sandbox: StreakSandbox, client: httpx.Client) -> None:
    sandbox.faults.fail_next(1, 503)
    assert client.get("/api/v1/users/me").json() == {"success": False, "error": "Service Unavailable"}


def test_faults_rate_limit_returns_429_with_retry_after(sandbox: StreakSandbox, client: httpx.Client) -> None:
    sandbox.faults.set_plan(FaultPlan(rate_limit_rate=1.0, retry_after_seconds=2))
    response = client.post("/api/v2/pipelines/pl_orders/boxes", json={"name": "x"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert sandbox.snapshot()["boxes"] == []


def test_faults_latency_delays_api_calls_but_not_admin_calls(
    sandbox: StreakSandbox, client: httpx.Client
) -> None:
    sandbox.faults.set_plan(FaultPlan(latency_ms=100))
    started = time.monotonic()
    assert client.get("/api/v1/users/me").status_code == 200
    assert time.monotonic() - started >= 0.095
    started = time.monotonic()
    client.get("/_sandbox/state")
    assert time.monotonic() - started < 0.09


def test_faults_admin_paths_are_never_faulted(sandbox: StreakSandbox, client: httpx.Client) -> None:
    sandbox.faults.fail_next(1, 500)
    assert client.get("/_sandbox/state").status_code == 200
    assert client.get("/api/v1/users/me").status_code == 500


# --------------------------------------------------------------------------- real socket


def test_serve_real_socket_answers_and_stops() -> None:
    with StreakSandbox() as sandbox:
        assert sandbox.base_url is not None and sandbox.base_url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{sandbox.base_url}/api/v1/users/me", auth=(API_KEY, ""), timeout=5)
        assert response.status_code == 200
        base_url = sandbox.base_url
    assert sandbox.base_url is None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base_url}/api/v1/users/me", timeout=1)


def test_serve_timeout_fault_trips_client_timeout_but_request_still_applies() -> None:
    with StreakSandbox() as sandbox:
        sandbox.faults.set_plan(FaultPlan(timeout_rate=1.0, timeout_seconds=0.3))
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{sandbox.base_url}/api/v2/pipelines/pl_orders/boxes",
                json={"name": "slow"},
                auth=(API_KEY, ""),
                timeout=0.05,
            )
        deadline = time.monotonic() + 5
        while not sandbox.snapshot()["boxes"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [box["name"] for box in sandbox.snapshot()["boxes"]] == ["slow"]


def test_serve_concurrent_box_creation_keeps_every_box() -> None:
    with StreakSandbox() as sandbox:
        errors: list[BaseException] = []

        def worker(worker_id: int) -> None:
            try:
                with httpx.Client(base_url=sandbox.base_url or "", auth=(API_KEY, ""), timeout=5) as client:
                    for i in range(10):
                        create_box(client, f"Order {worker_id}-{i}")
            except BaseException as error:  # surfaced below; threads swallow exceptions otherwise
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        boxes = sandbox.snapshot()["boxes"]
        assert len(boxes) == 50
        assert len({box["key"] for box in boxes}) == 50
        assert len(sandbox.requests) == 50
