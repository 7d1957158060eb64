"""``switchyard connection status|reconnect`` against a stack (moto CloudFormation, DynamoDB, Secrets Manager)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.connection_state import DynamoConnectionStates
from switchyard_cli.errors import CliError
from switchyard_cli.main import main
from switchyard_cli.stackinfo import tagged_resource

STACK = "Switchyard-test"
TABLE = "Switchyard-test-IdempotencyTable-1X2Y"
SECRET = {"client_id": "qbo-client", "client_secret": "qbo-secret", "realm_id": "9130", "refresh_token": "dead",
          "access_token": "old", "access_token_expires_at": 1.0}


class FakeCloudFormation:
    """The two calls ``tagged_resource`` makes (moto's CloudFormation cannot create Secrets Manager secrets)."""

    def __init__(self, resources: dict[str, tuple[dict[str, str], str]]) -> None:
        self.resources = resources

    def get_template(self, StackName: str) -> dict[str, Any]:
        return {"TemplateBody": json.dumps({"Resources": {
            logical: {"Type": "AWS::X", "Metadata": metadata} for logical, (metadata, _) in self.resources.items()}})}

    def list_stack_resources(self, StackName: str) -> dict[str, Any]:
        return {"StackResourceSummaries": [{"LogicalResourceId": logical, "PhysicalResourceId": physical}
                                           for logical, (_, physical) in self.resources.items()]}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        arn = boto3.client("secretsmanager").create_secret(Name="connections/quickbooks",
                                                           SecretString=json.dumps(SECRET))["ARN"]
        cfn = FakeCloudFormation({"IdempotencyTable": ({"switchyard:role": "idempotency-table"}, TABLE),
                                  "QuickBooksSecret": ({"switchyard:secret": "connection:quickbooks"}, arn)})
        real_client = boto3.session.Session.client

        def client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
            return cfn if service == "cloudformation" else real_client(self, service, *args, **kwargs)

        monkeypatch.setattr(boto3.session.Session, "client", client)
        yield {"table": TABLE, "secret": arn, "cfn": cfn}


def test_tagged_resource_finds_by_metadata_and_names_what_is_missing(stack: dict[str, Any]) -> None:
    assert tagged_resource(stack["cfn"], STACK, role="idempotency-table") == TABLE
    with pytest.raises(CliError, match="no resource"):
        tagged_resource(stack["cfn"], STACK, secret="connection:streak")


def test_reconnect_stores_the_token_from_stdin_drops_the_dead_access_token_and_clears_the_state(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    states = DynamoConnectionStates(boto3.client("dynamodb"), stack["table"])
    states.mark_needs_reconnect("quickbooks", reason="credentials_rejected", message="invalid_grant")
    assert json.loads(_run(capsys, "connection", "status", "--stack", STACK, "--json"))[2] == {
        "connection": "quickbooks", "status": "needs_reconnect", "reason": "credentials_rejected",
        "message": "invalid_grant", "since": pytest.approx(states.get("quickbooks").since)}

    monkeypatch.setattr("sys.stdin", io.StringIO("AB11-new-refresh-token\n"))
    assert main(["connection", "reconnect", "quickbooks", "--refresh-token", "-", "--stack", STACK]) == 0

    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=stack["secret"])["SecretString"])
    assert secret == {"client_id": "qbo-client", "client_secret": "qbo-secret", "realm_id": "9130",
                      "refresh_token": "AB11-new-refresh-token"}
    assert states.get("quickbooks").usable


def test_reconnect_of_an_unknown_connection_or_without_a_token_changes_nothing(stack: dict[str, Any]) -> None:
    assert main(["connection", "reconnect", "quickbook", "--refresh-token", "x", "--stack", STACK]) == 2
    assert main(["connection", "reconnect", "quickbooks", "--stack", STACK]) == 2
    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=stack["secret"])["SecretString"])
    assert secret["refresh_token"] == "dead"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out
