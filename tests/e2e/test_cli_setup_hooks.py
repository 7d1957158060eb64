"""``switchyard setup`` beyond the secrets, against the local stack's sandboxes: a real call checks each
connection, Streak's webhooks are registered through Streak's API (idempotently), and the QuickBooks OAuth
consent runs once through a local redirect listener and the sandbox's token endpoint."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import httpx
import pytest
from switchyard_cli import setup as cli_setup
from switchyard_cli.errors import ExitCode
from switchyard_local.stack import REGION

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@pytest.fixture
def secrets(endpoint: dict[str, Any], cli) -> Any:
    """The stack's secrets by tag, and a way to change one that is put back afterwards."""
    aws = boto3.session.Session(aws_access_key_id="any", aws_secret_access_key="any", region_name=REGION)
    client = aws.client("secretsmanager", endpoint_url=endpoint["url"])
    arns = {entry["secret"]: entry["arn"] for entry in cli("setup", "--check", "--json")[0]["secrets"]}
    saved: dict[str, str] = {}

    class Secrets:
        def read(self, tag: str) -> dict[str, Any]:
            return dict(json.loads(client.get_secret_value(SecretId=arns[tag])["SecretString"]))

        def change(self, tag: str, **values: Any) -> None:
            saved.setdefault(tag, client.get_secret_value(SecretId=arns[tag])["SecretString"])
            client.put_secret_value(SecretId=arns[tag], SecretString=json.dumps({**self.read(tag), **values}))

        def forget(self, tag: str) -> None:  # keep what the test left (a new, valid refresh token)
            saved.pop(tag, None)

    yield Secrets()
    for tag, value in saved.items():
        client.put_secret_value(SecretId=arns[tag], SecretString=value)


def test_check_calls_each_connection_and_names_a_refused_one(stack, cli, secrets) -> None:
    # Given the local stack as make dev fills it: Streak's key reaches its pipeline
    shown, said = cli("setup", "--check", "--json")
    checks = {entry["connection"]: entry for entry in shown["checks"]}
    assert checks["streak"]["ok"] is True and checks["streak"]["reached"].startswith("pipeline ")
    checked = {"streak", "nopcommerce", "bng", "clarity"}
    assert {name for name, entry in checks.items() if entry["ok"] is True} == checked
    assert {name for name, entry in checks.items() if entry["ok"] is None} == set(checks) - checked
    assert shown["consent_pending"] == [] and "missing" not in {e["state"] for e in shown["secrets"]}
    assert any("verifier token" in line for line in shown["by_hand"])  # QuickBooks' Intuit app settings

    # When the key is wrong: --check reports Streak's refusal and exits 1, changing nothing
    secrets.change("connection:streak", api_key="not-the-key")
    shown, said = cli("setup", "--check", "--json", code=ExitCode.PROBLEM)
    (streak,) = [entry for entry in shown["checks"] if entry["connection"] == "streak"]
    assert streak["ok"] is False and "401" in streak["error"]
    assert "check refused: streak" in said
    assert secrets.read("connection:streak")["api_key"] == "not-the-key"


def test_streak_webhooks_registered_through_its_api_once(stack, cli, secrets) -> None:
    base = "http://127.0.0.1:9/switchyard"  # an address no earlier registration used
    streak = httpx.Client(base_url=stack.streak.base_url, auth=(stack.streak.api_key, ""))
    scopes = {"BOX_CHANGE_STAGE": {"pipelineKey": stack.streak.pipeline.key},
              "CONTACT_UPDATE": {"teamKey": stack.streak.team_key}}

    def ours() -> dict[str, list[dict[str, Any]]]:
        return {event: [hook for hook in streak.get("/api/v2/webhooks", params=scope).json()["results"]
                        if hook["targetUrl"].startswith(base)] for event, scope in scopes.items()}

    try:
        # --check says they are not registered, and registers nothing
        shown, _ = cli("setup", "--check", "--webhook-base-url", base, "--json", code=ExitCode.PROBLEM)
        (entry,) = shown["webhooks"]
        assert entry["source"] == "streak" and entry["ok"] is False
        assert ours() == {"BOX_CHANGE_STAGE": [], "CONTACT_UPDATE": []}

        # setup registers one webhook per event, with the event in the URL and the stack's token
        shown, _ = cli("setup", "--webhook-base-url", base, "--json")
        (entry,) = shown["webhooks"]
        assert entry["ok"] is True and all(line.split(": ")[1].startswith("registered (") for line in entry["lines"])
        registered = ours()
        assert {event: [hook["targetUrl"] for hook in hooks] for event, hooks in registered.items()} == {
            event: [f"{base}/webhooks/streak?event={event}"] for event in scopes}
        token = secrets.read("source:streak")["tokens"][0]
        hidden = stack.streak._webhooks._hooks  # Streak's listing hides the token: the sandbox's record has it
        assert {hidden[hooks[0]["key"]]["_token"] for hooks in registered.values()} == {token}

        # and run again registers nothing more
        shown, _ = cli("setup", "--webhook-base-url", base, "--json")
        assert all("registered already" in line for line in shown["webhooks"][0]["lines"])
        assert {event: len(hooks) for event, hooks in ours().items()} == {event: 1 for event in scopes}
    finally:
        for hooks in ours().values():
            for hook in hooks:
                streak.delete(f"/api/v2/webhooks/{hook['key']}")
        streak.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_quickbooks_consent_runs_once_and_stores_a_refresh_token(stack, cli, secrets, monkeypatch) -> None:
    # Given a connection with the app's credentials but no consent yet
    secrets.change("connection:quickbooks", refresh_token="")
    shown, said = cli("setup", "--check", "--json", code=ExitCode.PROBLEM)
    assert shown["consent_pending"] == ["quickbooks"] and "consent pending: quickbooks" in said

    port = _free_port()
    opened: list[str] = []
    answers: list[int] = []

    def person_consents(url: str) -> None:
        """The browser: Intuit's page redirects with a one-time code for the company (a forged link first)."""
        opened.append(url)
        query = {key: values[0] for key, values in parse_qs(urlparse(url).query).items()}

        def redirect() -> None:
            callback = query["redirect_uri"]
            code = stack.quickbooks.issue_auth_code(stack.qbo_realm)
            answers.append(httpx.get(callback, params={"code": "forged", "state": "not-ours"}).status_code)
            answers.append(httpx.get(callback, params={"code": code, "state": query["state"],
                                                       "realmId": stack.qbo_realm}).status_code)

        threading.Thread(target=redirect, daemon=True).start()

    monkeypatch.setattr(cli_setup, "open_browser", person_consents)
    shown, _ = cli("setup", "--consent", "--redirect-port", str(port), "--json")

    (url,) = opened
    query = parse_qs(urlparse(url).query)
    assert query["redirect_uri"] == [f"http://localhost:{port}/callback"]
    assert query["scope"] == ["com.intuit.quickbooks.accounting"] and query["response_type"] == ["code"]
    assert answers == [400, 200]  # the forged redirect was refused, the consent taken
    assert shown["consents"] == [{"connection": "quickbooks", "status": f"stored (company {stack.qbo_realm})"}]
    stored = secrets.read("connection:quickbooks")
    assert stored["refresh_token"] and stored["realm_id"] == stack.qbo_realm
    secrets.forget("connection:quickbooks")  # the new token is the valid one now
    # the stored token works: the sandbox's token endpoint refreshes with it
    refreshed = httpx.post(stored["token_url"], data={"grant_type": "refresh_token",
                                                     "refresh_token": stored["refresh_token"]},
                           auth=(stored["client_id"], stored["client_secret"]))
    assert refreshed.status_code == 200
    # QuickBooks rotates the refresh token on every refresh: keep the new one, so the stack this module shares
    # with the others still reaches QuickBooks (the spent one would put the connection in "needs reconnect")
    secrets.change("connection:quickbooks", refresh_token=refreshed.json()["refresh_token"])
    secrets.forget("connection:quickbooks")
    # and setup, run again, has no consent pending
    assert cli("setup", "--check", "--json")[0]["consent_pending"] == []
