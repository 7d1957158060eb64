# ruff: noqa: F811  (pytest fixtures imported from test_worker_on_moto are parameters of the tests here)
"""The ingest function on moto archives each accepted delivery in the bucket its environment names; without the
bucket it still answers 202 with the event queued, and counts ArchiveFailed (what the alarm watches)."""

from __future__ import annotations

import json

import boto3
import pytest
from switchyard.archive import ArchivedDelivery

from infra.constructs.monitoring import ARCHIVE_FAILED_METRIC
from tests.integration.test_worker_on_moto import (  # noqa: F401 (fixtures)
    REGION,
    LambdaContext,
    Stack,
    _serving_sandbox,
    ingest,
    receive,
    served_sandbox,
    signed_event,
    stack,
)


@pytest.fixture
def archive_bucket(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="switchyard-archive")  # us-east-1: no constraint
    monkeypatch.setenv("SWITCHYARD_ARCHIVE_BUCKET", "switchyard-archive")
    monkeypatch.setenv("SWITCHYARD_CONFIG_DIGEST", "cfg-digest")
    return "switchyard-archive"


def test_ingest_function_archives_the_accepted_delivery(archive_bucket, stack, ingest, signing_secret,
                                                        sample_text) -> None:
    body = sample_text("nop_order_b2b").encode()

    response = ingest.lambda_handler(signed_event(signing_secret, body, "msg_archived"), LambdaContext())

    assert response["statusCode"] == 202
    s3 = boto3.client("s3", region_name=REGION)
    (item,) = s3.list_objects_v2(Bucket=archive_bucket, Prefix="deliveries/nopcommerce/")["Contents"]
    delivery = ArchivedDelivery.from_json(s3.get_object(Bucket=archive_bucket, Key=item["Key"])["Body"].read())
    assert delivery.config_digest == "cfg-digest"
    (event,) = delivery.events
    assert event.event_id == "msg_archived" and event.body.encode() == body


def test_ingest_function_without_its_bucket_still_queues_and_counts_the_failure(
        stack, ingest, signing_secret, sample_text, monkeypatch, capsys, caplog) -> None:
    monkeypatch.setenv("SWITCHYARD_ARCHIVE_BUCKET", "no-such-bucket")

    response = ingest.lambda_handler(signed_event(signing_secret, sample_text("nop_order_b2b").encode(),
                                                  "msg_not_archived"), LambdaContext())

    assert response["statusCode"] == 202
    assert [json.loads(r["body"])["event_id"] for r in receive(stack)] == ["msg_not_archived"]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = [line for line in printed if "_aws" in line]
    assert any(line.get(ARCHIVE_FAILED_METRIC) == [1.0] or line.get(ARCHIVE_FAILED_METRIC) == 1.0
               for line in metrics), metrics
    assert any(record.getMessage() == "webhook not archived" and "NoSuchBucket" in str(getattr(record, "error", ""))
               for record in caplog.records)
