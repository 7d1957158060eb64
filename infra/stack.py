"""One deployable Switchyard stack per stage, built from the catalog and the stage's settings."""

from __future__ import annotations

import re

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct
from switchyard import registry
from switchyard.catalog import Catalog
from switchyard.table_keys import keeps_connection_state, table_grants

from infra.constructs import FlowPipeline, IntegrationSecrets, Monitoring, WebhookIngress
from infra.constructs.archive import EventArchive
from infra.constructs.partner_events import PartnerEventRoutes
from infra.constructs.poller import SourcePoller
from infra.constructs.state_machine import FlowStateMachine
from infra.functions import FunctionFactory
from infra.layer import SharedLayer
from infra.metadata import annotate
from infra.settings import StageSettings
from infra.tags import stack_tags, tag_component, tag_flow, tag_stack


def _pascal(name: str) -> str:
    """``nopcommerce-to-streak`` -> ``NopcommerceToStreak`` (CloudFormation output ids)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


class SwitchyardStack(Stack):
    """Ingress, one pipeline per enabled flow, idempotency table, secrets, monitoring."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageSettings,
        catalog: Catalog,
        bundle_dependencies: bool,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"Switchyard integration bundle ({stage.name})",
            termination_protection=stage.termination_protection,
            tags=stack_tags(stage.name),  # the stack itself; tag_stack puts them on every resource in the template
        )
        tag_stack(self, stage.name)
        removal_policy = stage.stateful_removal_policy

        # Stateful resources keep these construct ids: renaming one replaces the resource.
        self.idempotency_table = dynamodb.Table(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal_policy,
        )
        annotate(self.idempotency_table, role="idempotency-table")
        self.secrets = IntegrationSecrets(self, "Secrets", catalog=catalog, removal_policy=removal_policy)
        self.monitoring = Monitoring(self, "Monitoring", stage=stage)
        layer = SharedLayer(self, "SharedLibrary", bundle_dependencies=bundle_dependencies)
        for shared in (self.idempotency_table, self.secrets, layer):
            tag_component(shared, "shared")
        tag_component(self.monitoring, "monitoring")

        functions = FunctionFactory(stage=stage, layer=layer.layer)
        # a system whose refresh token rotates on every refresh: whoever calls it saves the new one
        writable = frozenset(name for name, c in catalog.connections.items() if keeps_connection_state(c.system))
        self.flows: dict[str, FlowPipeline] = {}
        self.state_machines: dict[str, FlowStateMachine] = {}
        step_handlers = registry.step_names()  # every step a declaration may run
        for flow in stage.flows(catalog):
            connection_secrets = {name: self.secrets.connections[name] for name in flow.connections}
            pipeline = self.flows[flow.name] = FlowPipeline(
                self,
                f"Flow-{flow.name}",
                flow=flow,
                functions=functions,
                connection_secrets=connection_secrets,
                writable_connections=writable,
                idempotency_table=self.idempotency_table,
                table_grants=table_grants(catalog, flow, "worker"),
                alarm_action=self.monitoring.alarm_action,
                thresholds=stage.alarm_thresholds,
                removal_policy=removal_policy,
                audit_retention_days=stage.log_retention_days,  # an order's story lives as long as its logs
            )
            tag_flow(pipeline, flow)  # the state machine below is in the pipeline's scope: tagged too
            if flow.runs_as == "state-machine":
                self.state_machines[flow.name] = FlowStateMachine(
                    pipeline,
                    # the id the first such flow deployed with: its named machine cannot be replaced in place
                    "OrderToCash",
                    flow=flow,
                    pipeline=pipeline,
                    functions=functions,
                    connection_secrets=connection_secrets,
                    writable_connections=writable,
                    idempotency_table=self.idempotency_table,
                    table_grants=table_grants(catalog, flow, "steps"),
                    alarm_action=self.monitoring.alarm_action,
                    thresholds=stage.alarm_thresholds,
                    log_retention=stage.log_retention,
                    removal_policy=removal_policy,
                    log_level=stage.state_machine_log_level,
                    tracing=stage.tracing == "active",
                    step_handlers=step_handlers,
                )
        for flow in stage.flows(catalog):  # a flow whose events end another flow's waits (a shipment webhook)
            for waiting in flow.completes_waits_of:
                if waiting in self.state_machines:
                    delivering = (self.state_machines[flow.name].steps if flow.name in self.state_machines
                                  else self.flows[flow.name].worker)
                    self.state_machines[waiting].grant_callbacks(delivering)
        # Salesforce Event Relay → partner bus → rule → the flow's queue (issue 13)
        self.partner_events = PartnerEventRoutes(self, "PartnerEvents", catalog=catalog, flows=self.flows,
                                                 partner_sources=stage.partner_event_sources)
        tag_component(self.partner_events, "ingress")
        self.archive = EventArchive(self, "EventArchive", retention_days=stage.archive_retention_days,
                                    removal_policy=removal_policy)
        tag_component(self.archive, "shared")
        self.ingress = WebhookIngress(
            self,
            "Ingress",
            stage=stage,
            catalog=catalog,
            functions=functions,
            source_secrets=self.secrets.sources,
            flow_queues={name: pipeline.queue for name, pipeline in self.flows.items()},
            table=self.idempotency_table,
            archive=self.archive,
        )
        tag_component(self.ingress, "ingress")
        self.pollers = self._pollers(stage, catalog, functions)
        self.monitoring.watch_ingress(self.ingress)
        self.monitoring.watch_table(self.idempotency_table)
        for pipeline in self.flows.values():
            self.monitoring.watch_flow(pipeline)
        self.monitoring.watch_connections(self.flows.values())
        # the breaker guards the worker's target connection: flows whose worker calls the target itself
        self.monitoring.watch_circuits([p for p in self.flows.values() if p.flow.runs_as == "worker"])
        # last: the composite alarm of an integration covers every alarm its flows have by now
        self.integration_alarms = self.monitoring.watch_integrations(list(self.flows.values()))
        self._outputs()

    def _pollers(self, stage: StageSettings, catalog: Catalog, functions: FunctionFactory) -> dict[str, SourcePoller]:
        """A scheduled poller per polled source (delivery poll or both) that a deployed flow listens to."""
        pollers: dict[str, SourcePoller] = {}
        queues = {name: pipeline.queue for name, pipeline in self.flows.items()}
        for source in catalog.polled_sources():
            if not any(flow.source == source for flow in (p.flow for p in self.flows.values())):
                continue
            poller = pollers[source] = SourcePoller(
                self, f"Poller-{source}", source=source, stage=stage, catalog=catalog, functions=functions,
                connection_secrets=self.secrets.connections, flow_queues=queues, table=self.idempotency_table,
                alarm_action=self.monitoring.alarm_action)
            tag_component(poller, "poller")
        return pollers

    def _outputs(self) -> None:
        def output(output_id: str, value: str, description: str) -> None:
            CfnOutput(self, output_id, value=value, description=description)

        output("ApiUrl", self.ingress.url, "Webhook HTTP API base URL")
        for source, secret in self.secrets.sources.items():
            output(f"WebhookUrl{_pascal(source)}", self.ingress.webhook_url(source), f"POST {source} webhooks here")
            output(f"SigningSecretArn{_pascal(source)}", secret.secret_arn, f"{source} webhook signing secrets")
        for name, secret in self.secrets.connections.items():
            output(f"ConnectionSecretArn{_pascal(name)}", secret.secret_arn, f"Connection {name} (base URL, keys)")
        for name, pipeline in self.flows.items():
            output(f"QueueUrl{_pascal(name)}", pipeline.queue.queue_url, f"Flow {name} queue")
            output(f"DeadLetterQueueUrl{_pascal(name)}", pipeline.dead_letter_queue.queue_url, f"Flow {name} DLQ")
        for name, machine in self.state_machines.items():
            output(f"StateMachineArn{_pascal(name)}", machine.state_machine.state_machine_arn,
                   f"Flow {name} state machine")
        output("AlarmTopicArn", self.monitoring.topic.topic_arn, "SNS topic every Switchyard alarm notifies")
        output("IdempotencyTableName", self.idempotency_table.table_name, "Worker idempotency records")
        output("ArchiveBucketName", self.archive.bucket.bucket_name, "Every accepted webhook, for switchyard replay")
        for source, poller in self.pollers.items():
            output(f"PollerFunctionName{_pascal(source)}", poller.function.function_name,
                   f"Invoke to poll {source} now (the schedule does every few minutes)")
