"""switchyard replay's pieces without a stack: which archived events a replay selects, the comparison of two
mappings, and the stack's configuration written safely to a folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.archive import ArchivedDelivery, ArchivedEvent, S3DeliveryArchive, config_digest, config_files
from switchyard.audit import AuditEntry
from switchyard.catalog import config_dir, load_catalog
from switchyard_cli import replay
from switchyard_cli.errors import CliError

FLOW = "nopcommerce-to-streak"
AT = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def _event(sample_text: Any, number: int, flows: tuple[str, ...]) -> ArchivedEvent:
    event = json.loads(sample_text("nop_order_b2b"))
    event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number))
    return ArchivedEvent(f"msg_{number}", "order.placed", event["timestamp"], json.dumps(event), f"d{number}", flows)


@pytest.fixture
def archive() -> Any:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="archive")
        yield S3DeliveryArchive(s3, "archive")


def test_select_keeps_the_flows_events_in_range_and_of_the_orders_given(archive, sample_text) -> None:
    archive.write(ArchivedDelivery("nopcommerce", AT.isoformat(), (
        _event(sample_text, 1, (FLOW, "nopcommerce-to-bng")), _event(sample_text, 2, ("nopcommerce-to-bng",)))))
    archive.write(ArchivedDelivery("nopcommerce", (AT + timedelta(minutes=5)).isoformat(),
                                   (_event(sample_text, 3, (FLOW,)),)))
    archive.write(ArchivedDelivery("nopcommerce", (AT + timedelta(hours=3)).isoformat(),
                                   (_event(sample_text, 4, (FLOW,)),)))
    catalog = load_catalog()

    every = replay.select(archive, catalog, FLOW, AT - timedelta(hours=1), AT + timedelta(hours=1))
    assert [(item.event.event_id, item.order) for item in every] == [("msg_1", "1"), ("msg_3", "3")]
    assert [i.event.event_id for i in replay.select(archive, catalog, FLOW, AT, AT + timedelta(hours=4), ["3"])] \
        == ["msg_3"]
    # the replayed message is the one ingest queued: the same flow, event id, digest and received time
    message = json.loads(every[0].message(FLOW))
    assert (message["flow"], message["event_id"], message["digest"], message["received_at"]) == (
        FLOW, "msg_1", "d1", AT.isoformat())


def test_compare_shows_no_diff_under_one_mapping_and_flags_an_older_one(archive, sample_text) -> None:
    files = config_files(config_dir())
    deployed = {"digest": config_digest(files), "files": files}
    archive.write(ArchivedDelivery("nopcommerce", AT.isoformat(), (_event(sample_text, 5, (FLOW,)),),
                                   config_digest=deployed["digest"]))
    archive.write(ArchivedDelivery("nopcommerce", (AT + timedelta(seconds=1)).isoformat(),
                                   (_event(sample_text, 6, (FLOW,)),), config_digest="older"))
    items = replay.select(archive, load_catalog(), FLOW, AT, AT + timedelta(minutes=1))
    told = {"5": [AuditEntry(at=1.0, event_id="msg_5", event_type="order.placed", outcome="created",
                             detail={"box_key": "b5"})]}

    compared = replay.compare(FLOW, items, deployed=deployed, now_config=None, audit=lambda o: told.get(o, []))

    assert [(c.item.order, c.diff, c.outcome, c.detail, c.mapping_changed_since) for c in compared] == [
        ("5", [], "created", {"box_key": "b5"}, False), ("6", [], None, {}, True)]
    assert compared[0].sent["action"] == "upsert_deal" and compared[0].sent == compared[0].now


def test_stack_configuration_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="outside"):
        replay.write_config({"../evil.yaml": "x"}, tmp_path / "config")
    assert not (tmp_path / "evil.yaml").exists()
