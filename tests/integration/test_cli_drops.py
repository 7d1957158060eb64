"""`switchyard drops FLOW`: the drops a flow's worker recorded, read from the stack's table (moto)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from switchyard.drops import Drop, DynamoDropLog
from switchyard_cli import main as cli
from switchyard_cli.stackinfo import StackResources


def test_cli_drops_lists_flow_drops_with_reasons(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="table-1", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        log = DynamoDropLog(dynamodb, "table-1")
        for event_id, reason, flow in (("evt_1", "stale", "clarity-to-streak"),
                                       ("evt_2", "not_master", "clarity-to-streak"),
                                       ("evt_3", "stale", "streak-to-clarity")):
            log.record(Drop(flow=flow, event_id=event_id, event_type="customer.updated", reason=reason,
                            dropped_at=float(event_id[-1])))
        template = {"Resources": {"Table": {"Metadata": {"switchyard:role": "idempotency-table"}}}}
        monkeypatch.setattr(StackResources, "read", classmethod(
            lambda cls, cfn, stack: cls(stack, template, {"Table": "table-1"})))

        assert cli.main(["drops", "clarity-to-streak", "--stack", "Switchyard-dev", "--json"]) == 0

    out, err = capsys.readouterr()
    assert [(d["event_id"], d["reason"]) for d in json.loads(out)] == [("evt_1", "stale"), ("evt_2", "not_master")]
    assert "2 dropped event(s) in clarity-to-streak: 1 not_master, 1 stale" in err
