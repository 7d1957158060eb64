"""Event Relay → partner bus → rule with the input transformer → the flow's queue, on moto: what the worker
reads is a FlowEvent with the change event as ``data`` (exact decimals, header intact)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.events import FlowEvent
from switchyard.systems.salesforce.source import INPUT_PATHS, change_header, input_template
from switchyard_local.partner_buses import allow_partner_buses
from switchyard_local.sandboxes.salesforce import ChangeEvent, SalesforceSandbox, eventbridge_entries

from tests.conftest import FakeClock

REGION = "us-east-1"
FLOW = "salesforce-to-clarity"


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    allow_partner_buses()
    with mock_aws():
        yield boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)


def route(events: Any, sqs: Any, org: SalesforceSandbox) -> str:
    """The path the CDK stack builds: a bus named after the partner source, a rule, a transformer, a queue."""
    source = org.create_partner_event_source(events)  # Salesforce's side of the relay
    queue_url = sqs.create_queue(QueueName=f"{FLOW}-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = events.create_event_bus(Name=source, EventSourceName=source)["EventBusArn"]  # named after its source
    events.put_rule(Name="cdc", EventBusName=bus, EventPattern=json.dumps({
        "source": [source], "detail-type": ["AccountChangeEvent", "ContactChangeEvent"]}))
    events.put_targets(Rule="cdc", EventBusName=bus, Targets=[{
        "Id": "queue", "Arn": queue_arn,
        "InputTransformer": {"InputPathsMap": INPUT_PATHS, "InputTemplate": input_template(FLOW)}}])
    return str(queue_url)


def test_a_change_event_reaches_the_queue_as_the_workers_message(aws: tuple[Any, Any]) -> None:
    events, sqs = aws
    published: list[ChangeEvent] = []
    org = SalesforceSandbox(clock=FakeClock(1_790_000_000.0), event_sink=published.append)
    queue_url = route(events, sqs, org)
    contact = org.create_record("Contact", LastName="Doe", ExternalID__c="C-1")
    org.update_record("Contact", contact, Phone="+1 555 0100")
    org.add_product("DESK", "Desk", 1)  # no CDC for products: nothing else on the bus
    answer = events.put_events(Entries=eventbridge_entries(published, org.partner_event_source))
    assert answer["FailedEntryCount"] == 0
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    flow_events = [FlowEvent.from_message(m["Body"]) for m in messages]
    assert [(e.flow, e.source, e.type) for e in flow_events] == [(FLOW, "salesforce", "ContactChangeEvent")] * 2
    headers = [change_header(e.data) for e in flow_events]
    assert [h.changeType for h in headers] == ["CREATE", "UPDATE"]
    assert flow_events[1].data["Phone"] == "+1 555 0100" and headers[1].recordIds == [contact]
    assert flow_events[0].event_id and flow_events[0].event_id != flow_events[1].event_id
    assert flow_events[0].timestamp.tzinfo is not None


def test_other_sources_and_event_types_do_not_reach_the_queue(aws: tuple[Any, Any]) -> None:
    events, sqs = aws
    org = SalesforceSandbox(aws_account="123456789012")
    queue_url = route(events, sqs, org)
    events.put_events(Entries=[
        {"Source": org.partner_event_source, "DetailType": "Order_Synced__e", "Detail": "{}",
         "EventBusName": org.partner_event_source},
        {"Source": "aws.partner/salesforce.com/00Dother/0YLother", "DetailType": "ContactChangeEvent",
         "Detail": "{}", "EventBusName": org.partner_event_source}])
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages", []) == []


def test_money_in_a_change_event_stays_exact() -> None:
    message = input_template(FLOW).replace("<event_id>", "e-1").replace("<type>", "OpportunityChangeEvent") \
        .replace("<time>", "2026-11-22T08:00:00Z").replace("<payload>", '{"Amount": 12345678901234.5678}')
    event = FlowEvent.from_message(message)
    assert event.data["Amount"] == Decimal("12345678901234.5678")
