"""Events that arrive through an EventBridge partner bus instead of a webhook (Salesforce Event Relay).

Per catalog source with ``delivery: eventbridge`` that a deployed flow subscribes to: the partner event
bus, named after the partner event source the SaaS created in the account (stage setting
``partner_event_sources``: catalog source → partner event source name), and per subscribed flow a rule
matching the source and the flow's event types, whose input transformer turns each event into the
flow worker's queue message (``switchyard.systems.salesforce.source.input_template``) on the flow's
queue. EventBridge retries a failed delivery to SQS for 24 hours.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Annotations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct
from switchyard.catalog import Catalog
from switchyard.systems.salesforce.source import INPUT_PATHS, input_template

from infra.constructs.flow import FlowPipeline


class PartnerEventRoutes(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, catalog: Catalog,
                 flows: Mapping[str, FlowPipeline], partner_sources: Mapping[str, str]) -> None:
        super().__init__(scope, construct_id)
        self.buses: dict[str, events.EventBus] = {}
        self.rules: dict[str, events.Rule] = {}
        for source, config in catalog.sources.items():
            if config.delivery != "eventbridge":
                continue
            subscribers = [pipeline for pipeline in flows.values() if pipeline.flow.source == source]
            if not subscribers:
                continue
            partner = partner_sources.get(source)
            if partner is None:
                Annotations.of(self).add_warning_v2(
                    f"switchyard:partner-source-{source}",
                    f"no partner event source for {source!r} in this stage (partner_event_sources): flows "
                    f"{', '.join(p.flow.name for p in subscribers)} receive nothing until it is set")
                continue
            # a partner bus takes its name from its event source (CDK sets Name = EventSourceName)
            bus = self.buses[source] = events.EventBus(self, f"Bus-{source}", event_source_name=partner)
            for pipeline in subscribers:
                flow = pipeline.flow
                rule = self.rules[flow.name] = events.Rule(
                    self, f"Rule-{flow.name}", event_bus=bus,
                    description=f"Switchyard: {source} events of flow {flow.name} to its queue",
                    event_pattern=events.EventPattern(source=[partner], detail_type=list(flow.events)))
                rule.add_target(targets.SqsQueue(pipeline.queue))
                # the worker's message shape: EventBridge's own input transformer, shared with the local stack
                cfn_rule = rule.node.default_child
                assert isinstance(cfn_rule, events.CfnRule)
                cfn_rule.add_property_override("Targets.0.InputTransformer", {
                    "InputPathsMap": INPUT_PATHS, "InputTemplate": input_template(flow.name)})
