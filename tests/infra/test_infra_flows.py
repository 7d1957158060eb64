"""Per flow: queue + DLQ wiring, the worker and its event source, grants and alarms."""

from __future__ import annotations

import pytest
from switchyard.settings import WorkerSettings

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


@pytest.fixture(scope="module")
def flows(dev, catalog, dev_stage):
    """flow config, queue, dlq and worker resources for every flow deployed in dev."""
    enabled = dev_stage.flows(catalog)
    assert enabled, "dev deploys no flow: nothing to check"
    return [
        (
            flow,
            dev.one(role="queue", flow=flow.name),
            dev.one(role="dlq", flow=flow.name),
            dev.one(role="worker", flow=flow.name),
        )
        for flow in enabled
    ]


def test_flow_catalog_every_enabled_flow_has_queue_dlq_and_worker(dev, catalog, dev_stage):
    deployed = {r.metadata["switchyard:flow"] for r in dev.tagged(role="worker")}
    assert deployed == {flow.name for flow in dev_stage.flows(catalog)}


def test_flow_queue_redrive_targets_own_dlq_with_configured_max_receive_count(flows, dev):
    for flow, queue, dlq, _ in flows:
        redrive = dev.render(queue.properties["RedrivePolicy"])
        assert redrive == {"deadLetterTargetArn": dlq.att("Arn"), "maxReceiveCount": flow.worker.max_receive_count}


def test_flow_dlq_retention_is_fourteen_days(flows):
    for _, _, dlq, _ in flows:
        assert dlq.properties["MessageRetentionPeriod"] == 1_209_600


def test_flow_queues_sqs_managed_encryption_enabled(flows):
    for _, queue, dlq, _ in flows:
        assert queue.properties["SqsManagedSseEnabled"] is True
        assert dlq.properties["SqsManagedSseEnabled"] is True


def test_flow_queue_policies_non_ssl_requests_denied(flows, dev):
    policies = dev.of_type("AWS::SQS::QueuePolicy")
    for _, queue, dlq, _ in flows:
        for q in (queue, dlq):
            statements = [
                s
                for p in policies
                if q.ref in dev.render(p.properties["Queues"])
                for s in p.properties["PolicyDocument"]["Statement"]
            ]
            assert any(
                s["Effect"] == "Deny"
                and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                and s["Principal"] in ("*", {"AWS": "*"})
                for s in statements
            ), f"{q.logical_id} accepts non-SSL requests"


def test_flow_queue_visibility_timeout_at_least_six_worker_timeouts(flows):
    for flow, queue, _, worker in flows:
        assert worker.properties["Timeout"] == flow.worker.timeout_seconds
        assert queue.properties["VisibilityTimeout"] >= 6 * worker.properties["Timeout"]


def test_flow_event_source_mapping_reports_batch_item_failures_with_configured_batch_size(flows, dev):
    mappings = dev.of_type("AWS::Lambda::EventSourceMapping")
    for flow, queue, _, worker in flows:
        (mapping,) = [m for m in mappings if dev.render(m.properties["FunctionName"]) == worker.ref]
        assert dev.render(mapping.properties["EventSourceArn"]) == queue.att("Arn")
        assert mapping.properties["BatchSize"] == flow.worker.batch_size
        assert mapping.properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_flow_worker_sizing_and_code_match_catalog(flows):
    for flow, _, _, worker in flows:
        assert worker.properties["MemorySize"] == flow.worker.memory_mb
        assert worker.properties["Timeout"] == flow.worker.timeout_seconds
        assert worker.properties["Handler"] == "handler.lambda_handler"
        assert worker.metadata["switchyard:code"] == "functions/flow_worker"


def test_flow_worker_environment_keys_equal_settings_env_names_plus_powertools(flows):
    for flow, _, _, worker in flows:
        expected = WorkerSettings.required_env_names()
        if flow.runs_as == "state-machine":
            expected |= {"SWITCHYARD_STATE_MACHINE_ARN"}
        assert set(worker.properties["Environment"]["Variables"]) == expected | POWERTOOLS


def test_flow_worker_environment_references_own_resources_and_parses_as_settings(flows, dev):
    table = dev.one(role="idempotency-table")
    for flow, queue, dlq, worker in flows:
        env = dev.render(worker.properties["Environment"]["Variables"])
        settings = WorkerSettings.from_env(env)
        assert settings.flow == flow.name == env["POWERTOOLS_SERVICE_NAME"]
        assert settings.queue_url == queue.ref  # Ref of an SQS queue is its URL
        assert settings.dlq_url == dlq.ref
        assert settings.idempotency_table == table.ref
        assert settings.connection_secret_arn == dev.one(secret=f"connection:{flow.connection}").ref
        assert settings.connection_secret_arns == {name: dev.one(secret=f"connection:{name}").ref
                                                   for name in flow.connections}
        assert settings.max_receive_count == flow.worker.max_receive_count
        if flow.runs_as == "state-machine":
            assert settings.state_machine_arn == dev.one(role="state-machine", flow=flow.name).ref


def test_flow_worker_role_grants_consume_dead_letter_secret_and_table_only(flows, dev, catalog):
    table = dev.one(role="idempotency-table")
    for flow, queue, dlq, worker in flows:
        if flow.runs_as == "state-machine":
            continue  # its worker starts executions: test_infra_state_machine checks that role
        role = dev.by_ref(dev.render(worker.properties["Role"]))
        log_group = dev.by_ref(dev.render(worker.properties["LoggingConfig"]["LogGroup"]))
        secrets = {name: dev.one(secret=f"connection:{name}") for name in flow.connections}
        granted = dev.actions_on(role.ref)
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= granted[queue.att("Arn")]
        assert "sqs:SendMessage" in granted[dlq.att("Arn")]
        for name, secret in secrets.items():
            assert "secretsmanager:GetSecretValue" in granted[secret.ref]
            # only QuickBooks rotates its refresh token, so only its secret is written
            writes = "secretsmanager:PutSecretValue" in granted[secret.ref]
            assert writes == (catalog.connections[name].system == "quickbooks")
        table_actions = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
        assert table_actions <= granted[table.att("Arn")]
        assert {"logs:CreateLogStream", "logs:PutLogEvents"} <= granted[log_group.att("Arn")]
        # the state machines whose waits it ends may get its answers (SendTask*: test_infra_flow_declarations)
        answers = {resource for resource in granted for waiting in flow.completes_waits_of
                   if resource.endswith(f":stateMachine:Switchyard-dev-{waiting}")}
        assert len(answers) == len(flow.completes_waits_of)
        # Nothing else: no other flow's queue, no source secret ("*" is X-Ray only, see test_infra_functions).
        assert set(granted) == {
            queue.att("Arn"),
            dlq.att("Arn"),
            *(secret.ref for secret in secrets.values()),
            table.att("Arn"),
            log_group.att("Arn"),
            "*",
            *answers,
        }


def test_flow_alarms_dlq_age_errors_throttles_each_notify_alarm_topic(flows, dev):
    topic = dev.of_type("AWS::SNS::Topic")[0]
    alarms = dev.of_type("AWS::CloudWatch::Alarm")

    def alarm(metric: str, dimension_value: str):
        (found,) = [
            a
            for a in alarms
            if a.properties["MetricName"] == metric
            and dimension_value in [d["Value"] for d in dev.render(a.properties["Dimensions"])]
        ]
        assert found.properties["AlarmActions"] == [{"Ref": topic.logical_id}]
        assert "Runbook: docs/runbooks.md#" in found.properties["AlarmDescription"]
        return found.properties

    for _, queue, dlq, worker in flows:
        dlq_alarm = alarm("ApproximateNumberOfMessagesVisible", dlq.att("QueueName"))
        assert (dlq_alarm["Threshold"], dlq_alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        age = alarm("ApproximateAgeOfOldestMessage", queue.att("QueueName"))
        assert (age["Threshold"], age["ComparisonOperator"]) == (900, "GreaterThanThreshold")
        for metric in ("Errors", "Throttles"):
            worker_alarm = alarm(metric, worker.ref)
            assert (worker_alarm["Threshold"], worker_alarm["ComparisonOperator"]) == (
                1,
                "GreaterThanOrEqualToThreshold",
            )
