"""Salesforce Event Relay → partner event bus → rule with an input transformer → the flow's queue, in CDK."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

PARTNER = "aws.partner/salesforce.com/00D5g000000SWTCHY/0YL5g0000000SWTCH"


def partner_rules(template: Any) -> list[Any]:
    """The rules on the partner bus (the stack has other rules: a state machine's execution-status rule)."""
    return [rule for rule in template.of_type("AWS::Events::Rule") if "EventBusName" in rule.properties]


def test_partner_bus_is_named_after_the_stage_partner_event_source(dev) -> None:
    (bus,) = dev.of_type("AWS::Events::EventBus")
    assert bus.properties["EventSourceName"] == bus.properties["Name"] == PARTNER


def test_rule_matches_the_source_and_the_flow_event_types_and_targets_the_flow_queue(dev) -> None:
    (rule,) = partner_rules(dev)
    (bus,) = dev.of_type("AWS::Events::EventBus")
    props = dev.render(rule.properties)
    assert props["EventBusName"] == bus.ref
    assert props["EventPattern"] == {"source": [PARTNER], "detail-type": ["ContactChangeEvent", "AccountChangeEvent"]}
    (target,) = props["Targets"]
    queue = dev.by_ref(target["Arn"])
    assert queue.type == "AWS::SQS::Queue" and "salesforcetoclarity" in queue.logical_id.lower()
    assert "DeadLetter" not in queue.logical_id


def test_input_transformer_renders_the_workers_message(dev) -> None:
    from switchyard.events import FlowEvent

    (rule,) = partner_rules(dev)
    transformer = rule.properties["Targets"][0]["InputTransformer"]
    assert transformer["InputPathsMap"]["payload"] == "$.detail.payload"
    message = transformer["InputTemplate"]
    for name, value in {"event_id": "11111111-2222", "type": "ContactChangeEvent", "time": "2026-11-22T09:30:00Z",
                        "payload": json.dumps({"ChangeEventHeader": {"changeType": "UPDATE"}, "Phone": "1"})}.items():
        message = message.replace(f"<{name}>", value)
    event = FlowEvent.from_message(message)
    assert (event.flow, event.source, event.type, event.event_id) == (
        "salesforce-to-clarity", "salesforce", "ContactChangeEvent", "11111111-2222")
    assert event.data["Phone"] == "1"


def test_only_eventbridge_can_send_to_the_queue_and_only_from_that_rule(dev) -> None:
    (rule,) = partner_rules(dev)
    statements = [s for policy in dev.of_type("AWS::SQS::QueuePolicy")
                  for s in dev.render(policy.properties["PolicyDocument"]["Statement"])
                  if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    (statement,) = statements
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule.att("Arn")}}
    assert "sqs:SendMessage" in statement["Action"]


def test_eventbridge_sources_get_no_webhook_route_nor_signing_secret(dev) -> None:
    routes = [dev.render(r.properties["RouteKey"]) for r in dev.of_type("AWS::ApiGatewayV2::Route")]
    assert routes and not any("salesforce" in route for route in routes)
    secrets = [r.logical_id for r in dev.of_type("AWS::SecretsManager::Secret")]
    assert any("Connectionsalesforce" in s for s in secrets)
    assert not any("Sourcesalesforce" in s for s in secrets)


def test_a_stage_without_the_partner_source_builds_no_bus_and_warns(prod) -> None:
    assert prod.of_type("AWS::Events::EventBus") == [] and partner_rules(prod) == []


def test_partner_event_source_names_are_validated() -> None:
    from pydantic import ValidationError

    from infra.settings import StageSettings

    with pytest.raises(ValidationError, match="partner event source"):
        StageSettings(name="dev", partner_event_sources={"salesforce": "salesforce-org"})
