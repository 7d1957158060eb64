"""The worker's audit trail (``switchyard trace``): one entry per delivery under the event's order, the order in
every log line, and an audit store that fails never fails the delivery."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.audit import AuditEntry, DynamoDeliveryAudit, InMemoryDeliveryAudit, order_refs
from switchyard.catalog import load_catalog
from switchyard.errors import PermanentError
from switchyard.targets import DeliveryResult
from switchyard.worker import FlowWorker

from tests.unit.test_worker import CREATED, FLOW, Recorder, ScriptedTarget, fake_idempotency, message

ORDER_REF = load_catalog().sources["nopcommerce"].order_ref


def worker(target: ScriptedTarget, rec: Recorder, audit: Any) -> FlowWorker:
    return FlowWorker(flow=FLOW, target=target, dead_letters=rec, delay=lambda r, s: rec.delays.append((r, s)),
                      max_receive_count=5, make_idempotent=fake_idempotency, metrics=rec, logger=rec,
                      sleep=rec.sleeps.append, audit=audit, order_ref=ORDER_REF, clock=lambda: 1_800_000_000.0)


def test_each_delivery_of_an_order_is_one_entry_of_its_story_and_every_log_line_names_it() -> None:
    rec, audit = Recorder(), InMemoryDeliveryAudit()
    target = ScriptedTarget(CREATED, PermanentError("Streak refused", reason="target_rejected", target_status=400))
    work = worker(target, rec, audit)

    work.handle(message("msg_1"), receive_count=1, receipt_handle="rh-1")
    work.handle(message("msg_1"), receive_count=1, receipt_handle="rh-2")  # the same webhook again
    work.handle(message("msg_2", type="order.status_changed"), receive_count=1, receipt_handle="rh-3")

    story = audit.read(FLOW.name, "1042")
    assert [(e.event_id, e.outcome, e.reason) for e in story] == [
        ("msg_1", "created", None), ("msg_1", "duplicate", None), ("msg_2", "dead_lettered", "target_rejected")]
    assert story[0].detail == {"box_key": "box_1", "order_key": "1042"}
    assert story[2].detail["target_status"] == 400
    assert rec.logs and all(extra.get("order") == "1042" for _, _, extra in rec.logs)


def test_an_audit_store_that_fails_leaves_the_delivery_done_and_says_so() -> None:
    class Broken:
        def record(self, flow: str, order: str, entry: AuditEntry) -> None:
            raise RuntimeError("table throttled")

    rec = Recorder()
    result = worker(ScriptedTarget(CREATED), rec, Broken()).handle(message(), receive_count=1, receipt_handle="rh")

    assert result is not None and result["outcome"] == "created" and rec.dead_letters == []
    assert ("warning", "audit not recorded") in [(level, text) for level, text, _ in rec.logs]


def test_order_refs_follow_the_sources_paths_and_skip_what_is_not_a_name() -> None:
    data = {"Order": {"CustomOrderNumber": "1042", "Id": 42, "OrderGuid": None}, "flag": True}
    assert order_refs(ORDER_REF, data) == ["1042", "42"]
    assert order_refs(("flag", "missing.path"), data) == []


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        yield client


def test_dynamo_audit_appends_in_order_and_expires_after_the_stages_retention(dynamodb: Any) -> None:
    audit = DynamoDeliveryAudit(dynamodb, "t", retention_days=14, clock=lambda: 1_800_000_000.0)
    for number, outcome in enumerate(("created", "moved")):
        audit.record(FLOW.name, "1042", AuditEntry(at=float(number), event_id=f"msg_{number}",
                                                   event_type="order.placed", outcome=outcome,
                                                   detail={"box_key": "box_1"}))

    assert [e.outcome for e in audit.read(FLOW.name, "1042")] == ["created", "moved"]
    assert audit.read(FLOW.name, "1043") == [] and audit.read("clarity-to-streak", "1042") == []
    item = dynamodb.get_item(TableName="t", Key={"id": {"S": "audit#nopcommerce-to-streak#1042"}})["Item"]
    assert int(item["expiration"]["N"]) == 1_800_000_000 + 14 * 24 * 3600


def test_a_dropped_event_is_in_the_story_with_its_reason() -> None:
    rec, audit = Recorder(), InMemoryDeliveryAudit()
    worker(ScriptedTarget(DeliveryResult("stale", {"applied": "2026-11-20T10:00:00+00:00"})), rec, audit).handle(
        message(), receive_count=1, receipt_handle="rh")
    (entry,) = audit.read(FLOW.name, "1042")
    assert (entry.outcome, entry.reason) == ("dropped", "stale")
