"""``switchyard replay`` against the local stack: every accepted webhook is in the archive (moto's S3); a dry run
shows what the stack's mapping sent next to what a changed mapping would send; a replay goes through the flow's
queue and is a duplicate for every event already delivered."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from switchyard.catalog import config_dir
from switchyard_cli.errors import ExitCode
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "nopcommerce-to-streak"


@pytest.fixture
def http(stack: LocalStack):
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as client:
        yield client
    assert stack.drain(timeout=60), "flow queues did not drain"


def place(stack: LocalStack, http: httpx.Client, number: int) -> str:
    event = json.loads(sample("nop_order_b2b"))
    event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=str(uuid.UUID(int=number)),
                                  OrderStatusId=10)
    body = json.dumps(event).encode()
    status, answer = post_webhook(http, "nopcommerce", body, signed_headers(stack.signing_secret, body))
    assert status == 202
    return str(answer["event_id"])


def boxes_for(stack: LocalStack, number: int) -> list[dict[str, Any]]:
    return [b for b in stack.streak.snapshot()["boxes"] if b["fields"].get("Order number") == str(number)]


@pytest.fixture
def changed_config(tmp_path: Path) -> Path:
    """This installation's configuration with one mapping change: pending orders go to another stage."""
    copy = Path(shutil.copytree(config_dir(), tmp_path / "config"))
    mapping = copy / "mappings" / f"{FLOW}.yaml"
    text = mapping.read_text()
    assert "10: New Order" in text  # stage 5001, named as in the pipeline
    mapping.write_text(text.replace("10: New Order", "10: Complete", 1))  # stage 5003
    return copy


def test_dry_run_diffs_the_stack_mapping_against_a_changed_one(stack, http, cli, changed_config) -> None:
    # Given an order delivered by the stack's mapping
    event_id = place(stack, http, 7301)
    assert stack.drain(timeout=30)
    assert len(boxes_for(stack, 7301)) == 1

    # When the operator dry-runs a replay against the unchanged mapping: the same plan, what the delivery did
    same, said = cli("replay", FLOW, "--from", "1h", "--order", "7301", "--dry-run", "--json")
    (shown,) = same["events"]
    assert (shown["event_id"], shown["order"], shown["outcome"]) == (event_id, "7301", "created")
    assert shown["detail"]["box_key"] == boxes_for(stack, 7301)[0]["key"]
    assert shown["changed"] is False and shown["diff"] == [] and not shown["mapping_changed_since"]
    assert "0 would be sent differently today" in said

    # and against the changed mapping: the diff names the stage, old and new
    changed, said = cli("replay", FLOW, "--from", "1h", "--order", "7301", "--dry-run", "--config",
                        str(changed_config), "--json")
    (shown,) = changed["events"]
    assert shown["changed"] is True
    removed = [line for line in shown["diff"] if line.startswith("-") and not line.startswith("---")]
    added = [line for line in shown["diff"] if line.startswith("+") and not line.startswith("+++")]
    assert any('"5001"' in line for line in removed) and any('"5003"' in line for line in added)
    assert len(removed) == len(added) == 1  # only the stage differs
    assert "1 would be sent differently today (nothing queued" in said
    text, _ = cli("replay", FLOW, "--from", "1h", "--order", "7301", "--dry-run", "--config", str(changed_config))
    assert "delivered: created" in text and '+' in text and "5003" in text
    # nothing was queued by either dry run
    assert stack.drain(timeout=5) and len(boxes_for(stack, 7301)) == 1


def test_replay_goes_through_the_queue_and_delivers_nothing_twice(stack, http, cli) -> None:
    first = place(stack, http, 7302)
    assert stack.drain(timeout=30)

    # without a terminal to confirm, nothing is queued
    _, said = cli("replay", FLOW, "--from", "1h", "--order", "7302", code=ExitCode.USAGE)
    assert "needs --yes" in said
    replayed, said = cli("replay", FLOW, "--from", "1h", "--order", "7302", "--yes", "--json")
    assert [(e["event_id"], e["done"]) for e in replayed["events"]] == [(first, "queued")]
    assert replayed["queued"] == 1 and "1 event(s) queued again" in said
    assert stack.drain(timeout=30)

    # Then the order's deal exists once and its story shows the replay as a duplicate of the first delivery
    assert len(boxes_for(stack, 7302)) == 1
    story, _ = cli("trace", "7302", FLOW, "--json")
    assert [(d["event_id"], d["outcome"]) for d in story["deliveries"]] == [(first, "created"), (first, "duplicate")]


def test_replay_selects_by_time_and_refuses_a_reversed_range(stack, cli) -> None:
    nothing, said = cli("replay", FLOW, "--from", "2999-01-01", "--to", "2999-01-02", "--dry-run", "--json")
    assert nothing["events"] == [] and "0 event(s)" in said
    _, said = cli("replay", FLOW, "--from", "1h", "--to", "2h", "--dry-run", code=ExitCode.USAGE)
    assert "is after" in said
    _, said = cli("replay", "no-such-flow", "--from", "1h", "--dry-run", code=ExitCode.USAGE)
    assert "unknown flow" in said
