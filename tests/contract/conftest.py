"""The DynamoDB side of the contract tests: moto, started before any client exists."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from switchyard.entity_state import DynamoEntityState, EntityState, InMemoryEntityState
from switchyard.table_keys import ConnectionKeys, TableKeys

TABLE = "idempotency"
# the scopes the stores' keys start with (switchyard.table_keys); what IAM grants is tested in tests/infra
KEYS = TableKeys(flow="clarity-to-streak", pair="clarity+streak")
CONNECTION_KEYS = ConnectionKeys("quickbooks")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def dynamo_client(aws_env) -> Iterator[object]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        yield client


@pytest.fixture(params=["in_memory", "dynamodb"])
def entity_state(request: pytest.FixtureRequest) -> EntityState:
    """Both entity-state stores, so every contract test holds for each."""
    if request.param == "in_memory":
        return InMemoryEntityState()
    return DynamoEntityState(request.getfixturevalue("dynamo_client"), TABLE, keys=KEYS, clock=lambda: 1_795_000_000)
