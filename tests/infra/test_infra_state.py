"""Idempotency table, secrets, alarm topic, ingest alarms and dashboard; prod's stateful policies."""

from __future__ import annotations

import json

import pytest

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_idempotency_table_key_ttl_pitr_encryption_and_on_demand(dev):
    table = dev.one(role="idempotency-table").properties
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}  # AWS-managed key
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert "TableName" not in table


def test_idempotency_table_dev_removal_policy_destroys(dev):
    assert dev.one(role="idempotency-table").raw["DeletionPolicy"] == "Delete"


def test_secrets_one_per_source_and_connection_with_placeholder_values(dev, catalog):
    empty_by_scheme = {"standard-webhooks": {"signing_secrets": []}, "shared-token": {"tokens": []},
                       "intuit-signature": {"verifier_tokens": []}}
    for name, source in catalog.webhook_sources.items():
        secret = dev.one(secret=f"source:{name}")
        assert json.loads(secret.properties["SecretString"]) == empty_by_scheme[source.signature]
    for name in catalog.connections:
        secret = dev.one(secret=f"connection:{name}")
        value = json.loads(secret.properties["SecretString"])
        assert value["base_url"] == "" or value["base_url"].startswith("https://")
        assert {k for k, v in value.items() if v} <= {"base_url"}, "placeholders must hold no credentials"
    secrets = dev.of_type("AWS::SecretsManager::Secret")
    assert len(secrets) == len(catalog.webhook_sources) + len(catalog.connections)
    assert all("Name" not in s.properties for s in secrets)


def test_alarm_topic_kms_encrypted_ssl_only_and_publishable_by_cloudwatch(dev):
    (topic,) = dev.of_type("AWS::SNS::Topic")
    key = dev.by_ref(dev.render(topic.properties["KmsMasterKeyId"]))
    assert key.type == "AWS::KMS::Key" and key.properties["EnableKeyRotation"] is True
    assert any(
        s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} and "kms:GenerateDataKey*" in s["Action"]
        for s in key.properties["KeyPolicy"]["Statement"]
    )
    (policy,) = dev.of_type("AWS::SNS::TopicPolicy")
    statements = policy.properties["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    assert any(s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in statements)


def test_alarm_topic_dev_without_email_has_no_subscription(dev):
    assert dev.of_type("AWS::SNS::Subscription") == []


def test_ingest_alarms_api_5xx_and_signature_rejected_spike_notify_topic(dev):
    (topic,) = dev.of_type("AWS::SNS::Topic")
    (api,) = dev.of_type("AWS::ApiGatewayV2::Api")
    alarms = {a.properties["MetricName"]: a.properties for a in dev.of_type("AWS::CloudWatch::Alarm")}

    five_xx = alarms["5xx"]
    assert five_xx["Namespace"] == "AWS/ApiGateway"
    assert dev.render(five_xx["Dimensions"]) == [
        {"Name": "ApiId", "Value": api.ref},
        {"Name": "Stage", "Value": "$default"},
    ]
    assert (five_xx["Threshold"], five_xx["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")

    rejected = alarms["SignatureRejected"]
    assert rejected["Namespace"] == "Switchyard"
    assert rejected["Dimensions"] == [{"Name": "service", "Value": "ingest"}]
    assert (rejected["Threshold"], rejected["Period"], rejected["Statistic"]) == (20, 300, "Sum")

    for alarm in (five_xx, rejected):
        assert alarm["AlarmActions"] == [{"Ref": topic.logical_id}]
        assert "Runbook: docs/runbooks.md#" in alarm["AlarmDescription"]


def test_alarms_every_one_names_a_runbook_anchor_the_code_declares(dev):
    from infra.constructs.alarms import Runbook

    anchors = {runbook.reference for runbook in Runbook}
    for alarm in dev.of_type("AWS::CloudWatch::Alarm"):
        assert alarm.properties["AlarmDescription"].rsplit("Runbook: ", 1)[1] in anchors


def test_dashboard_shows_ingest_and_each_flow_queue_dlq_and_worker(dev):
    (dashboard,) = dev.of_type("AWS::CloudWatch::Dashboard")
    body = dev.render(dashboard.properties["DashboardBody"])
    assert "SignatureRejected" in body and '"5xx"' in body
    for worker in dev.tagged(role="worker"):
        flow = worker.metadata["switchyard:flow"]
        assert f"Flow `{flow}`" in body
        assert dev.one(role="queue", flow=flow).att("QueueName") in body
        assert dev.one(role="dlq", flow=flow).att("QueueName") in body
        assert worker.ref in body


def test_prod_stateful_resources_retained_and_alarm_email_subscribed(prod):
    stateful = [
        *prod.tagged(role="idempotency-table"),
        *prod.tagged(role="queue"),
        *prod.tagged(role="dlq"),
        *prod.of_type("AWS::SecretsManager::Secret"),
        *prod.of_type("AWS::Logs::LogGroup"),
        *prod.of_type("AWS::KMS::Key"),
    ]
    assert stateful
    assert {r.raw["DeletionPolicy"] for r in stateful} == {"Retain"}
    (subscription,) = prod.of_type("AWS::SNS::Subscription")
    assert subscription.properties["Protocol"] == "email"
    assert subscription.properties["Endpoint"] == "platform-alerts@example.com"


def test_alarm_connection_needs_reconnect_per_flow_outlasts_the_waiting_poll(dev, catalog):
    from switchyard.connection_state import METRIC, RECONNECT_POLL_SECONDS

    alarms = [a.properties for a in dev.of_type("AWS::CloudWatch::Alarm") if a.properties.get("MetricName") == METRIC]
    assert {a["Dimensions"][0]["Value"] for a in alarms} == set(catalog.flows)
    for props in alarms:
        assert props["Namespace"] == "Switchyard" and props["Statistic"] == "Sum"
        assert props["Period"] > RECONNECT_POLL_SECONDS  # every waiting event comes back within one period
        assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmDescription"].endswith("Runbook: docs/runbooks.md#connection-needs-reconnect")


def test_alarms_every_runbook_anchor_has_its_section_in_the_runbooks():
    from pathlib import Path

    from infra.constructs.alarms import RUNBOOK_DOCUMENT, Runbook

    headings = {line[3:].strip() for line in (Path(__file__).parents[2] / RUNBOOK_DOCUMENT).read_text().splitlines()
                if line.startswith("## ")}
    assert {runbook.value for runbook in Runbook} <= headings
