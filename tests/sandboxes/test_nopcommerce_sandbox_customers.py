"""The nopCommerce sandbox's customers as the Web API Backend plugin serves them: ``Customer/GetCustomerByEmail``,
``Customer/Update`` (replaces the entity) and ``CustomerAttribute/GetAll`` (a POST)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox


@pytest.fixture
def sandbox() -> NopCommerceSandbox:
    return NopCommerceSandbox()


@pytest.fixture
def client(sandbox: NopCommerceSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://shop.test") as http:
        token = http.post("/api-backend/Authenticate/GetToken",
                          json={"email": DEFAULT_API_EMAIL, "password": DEFAULT_API_PASSWORD}).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def test_customer_by_email_ignores_case_and_answers_the_lowest_id_deleted_or_not(sandbox, client):
    first = sandbox.seed_customer("Ann@Shop.example", Deleted=True)
    sandbox.seed_customer("ann@shop.example")

    found = client.get("/api-backend/Customer/GetCustomerByEmail", params={"email": "ANN@shop.example"})

    assert found.status_code == 200
    assert (found.json()["id"], found.json()["deleted"]) == (first["id"], True)


def test_customer_by_unknown_or_missing_email(client):
    missing = client.get("/api-backend/Customer/GetCustomerByEmail", params={"email": "nobody@shop.example"})
    no_email = client.get("/api-backend/Customer/GetCustomerByEmail")

    assert (missing.status_code, missing.json()) == (404, "Customer email=nobody@shop.example not found")
    assert no_email.status_code == 400 and no_email.headers["Content-Type"].startswith("application/problem+json")


def test_customer_update_replaces_the_whole_customer(sandbox, client):
    customer = sandbox.seed_customer("bo@shop.example", FirstName="Bo", Phone="+1 555 0100")

    # a body with only some fields: the others are reset to the DTO defaults, as FromDto does
    answer = client.put("/api-backend/Customer/Update", json={"id": customer["id"], "first_name": "Bob"})

    stored = sandbox.customer(customer["id"])
    assert (answer.status_code, answer.content) == (200, b"")
    assert (stored["first_name"], stored["phone"], stored["email"], stored["active"]) == ("Bob", None, None, False)


def test_customer_update_of_an_unknown_customer_is_404(client):
    answer = client.put("/api-backend/Customer/Update", json={"id": 999, "first_name": "X"})

    assert (answer.status_code, answer.json()) == (404, "Customer Id=999 is not found")


def test_customer_attributes_are_listed_by_a_post_in_display_order(sandbox, client):
    sandbox.seed_customer_attribute("LinkedIn", DisplayOrder=2)
    sandbox.seed_customer_attribute("Job title", DisplayOrder=1)

    listed = client.post("/api-backend/CustomerAttribute/GetAll")

    assert [(a["name"], a["attribute_control_type_id"]) for a in listed.json()] == [("Job title", 4), ("LinkedIn", 4)]
    assert client.get("/api-backend/CustomerAttribute/GetAll").status_code == 405


def test_values_of_a_select_attribute_by_its_id(sandbox, client):
    dropdown = sandbox.seed_customer_attribute("Newsletter", control_type=1, values=("Weekly", "Monthly"))

    listed = client.get(f"/api-backend/CustomerAttributeValue/GetAll/{dropdown['id']}")
    unknown = client.get("/api-backend/CustomerAttributeValue/GetAll/99")

    assert [(v["name"], v["customer_attribute_id"]) for v in listed.json()] == [
        ("Weekly", dropdown["id"]), ("Monthly", dropdown["id"])]
    assert (unknown.status_code, unknown.json()) == (200, [])
