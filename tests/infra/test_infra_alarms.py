"""Alarms added for what used to fail silently: the ingest function itself, and throttling of the shared table.
Every alarm names a runbook section that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra.conftest import Cfn

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def alarms_on(dev, namespace: str, metric: str, dimension: str, value: str) -> list[dict]:
    return [a.properties for a in dev.of_type("AWS::CloudWatch::Alarm")
            if a.properties.get("Namespace") == namespace and a.properties.get("MetricName") == metric
            and {"Name": dimension, "Value": value} in dev.render(a.properties.get("Dimensions", []))]


def assert_pages_topic_and_names_runbook(dev, alarm: dict, anchor: str) -> None:
    (topic,) = dev.of_type("AWS::SNS::Topic")
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic.logical_id}]
    assert alarm["AlarmDescription"].endswith(f"Runbook: docs/runbooks.md#{anchor}")
    assert alarm["TreatMissingData"] == "notBreaching"


def test_ingest_function_errors_alarm(dev):
    (ingest,) = dev.tagged(role="ingest")

    (alarm,) = alarms_on(dev, "AWS/Lambda", "Errors", "FunctionName", ingest.ref)

    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert_pages_topic_and_names_runbook(dev, alarm, "ingest-errors")


@pytest.mark.parametrize("metric", ["ReadThrottleEvents", "WriteThrottleEvents"])
def test_shared_table_throttling_alarms_reads_and_writes(dev, metric):
    table = dev.one(role="idempotency-table")

    (alarm,) = alarms_on(dev, "AWS/DynamoDB", metric, "TableName", table.ref)

    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert_pages_topic_and_names_runbook(dev, alarm, "table-throttled")


def test_dashboard_shows_table_throttling(dev):
    (dashboard,) = dev.of_type("AWS::CloudWatch::Dashboard")
    body = dev.render(dashboard.properties["DashboardBody"])
    assert "ReadThrottleEvents" in body and "WriteThrottleEvents" in body


def test_every_runbook_anchor_has_a_section_in_the_runbooks_document():
    from infra.constructs.alarms import RUNBOOK_DOCUMENT, Runbook
    from infra.paths import REPO_ROOT

    sections = set(re.findall(r"^## (\S+)\s*$", (REPO_ROOT / RUNBOOK_DOCUMENT).read_text(), flags=re.M))
    assert {runbook.value for runbook in Runbook} - sections == set()


def test_one_composite_alarm_per_integration_any_of_its_flows_alarms(dev, catalog):
    from switchyard.table_keys import pair_scope

    (topic,) = dev.of_type("AWS::SNS::Topic")
    composites = dev.of_type("AWS::CloudWatch::CompositeAlarm")
    integrations = {pair_scope(flow) for flow in catalog.flows.values()}
    assert len(composites) == len(integrations) == 5  # streak pairs, quickbooks, clarity+salesforce, bng
    alarms = dev.of_type("AWS::CloudWatch::Alarm")
    for name in integrations:
        (composite,) = [c for c in composites if c.properties["AlarmDescription"].startswith(f"Integration {name} ")]
        rule = dev.render(composite.properties["AlarmRule"])
        members = {flow.name for flow in catalog.flows.values() if pair_scope(flow) == name}
        # every alarm of every flow of the integration, and none of another's (flow alarms live in the flow's scope)
        expected = {a.logical_id for a in alarms
                    if any(a.logical_id.startswith("Flow" + re.sub(r"[^A-Za-z0-9]", "", m)) for m in members)}
        assert expected
        assert set(re.findall(r'ALARM\("\$\{(\w+)\.Arn\}"\)', rule)) == expected
        assert " OR " in rule and " AND " not in rule
        assert composite.properties["AlarmActions"] == composite.properties["OKActions"] == [{"Ref": topic.logical_id}]
        assert composite.properties["AlarmDescription"].endswith("Runbook: docs/runbooks.md#integration-unhealthy")


def test_both_directions_of_a_pair_are_one_integration_alarm(dev):
    (composite,) = [c for c in dev.of_type("AWS::CloudWatch::CompositeAlarm")
                    if "clarity-to-streak" in c.properties["AlarmDescription"]]
    assert "streak-to-clarity" in composite.properties["AlarmDescription"]


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """The dev stack with every threshold set in context: what a stage's ``alarm_thresholds`` changes."""
    from infra.application import build_app, project_context
    from infra.settings import BUNDLE_DEPENDENCIES_CONTEXT, STAGES_CONTEXT
    from infra.synth import synth_assembly

    outdir = str(tmp_path_factory.mktemp("cdk-thresholds"))
    stages = project_context()[STAGES_CONTEXT]
    thresholds = {"dead_letters": 5, "oldest_message_age_minutes": 45, "worker_errors": 3, "worker_throttles": 4,
                  "executions_failed": 6, "ingest_5xx": 7, "ingest_errors": 8, "signature_rejected": 90,
                  "table_throttle_events": 11, "poll_failures": 12, "poll_lag_minutes": 13, "poll_recovered": 14,
                  "archive_failed": 15}
    context = {STAGES_CONTEXT: {**stages, "dev": {**stages["dev"], "alarm_thresholds": thresholds}},
               BUNDLE_DEPENDENCIES_CONTEXT: False}
    assembly = synth_assembly(build_app(stages=["dev"], context=context, outdir=outdir), outdir)
    (artifact,) = assembly.stacks
    return Cfn(json.loads(Path(artifact.template_full_path).read_text()))


def test_alarm_thresholds_come_from_the_stages_context(strict, dev):
    def thresholds(cfn) -> dict[str, set[float]]:
        found: dict[str, set[float]] = {}
        for alarm in cfn.of_type("AWS::CloudWatch::Alarm"):
            found.setdefault(alarm.properties["MetricName"], set()).add(alarm.properties["Threshold"])
        return found

    assert thresholds(strict) == {
        "ApproximateNumberOfMessagesVisible": {5}, "ApproximateAgeOfOldestMessage": {45 * 60},
        "Errors": {3, 8},  # workers, ingest
        "Throttles": {4}, "ExecutionsFailed": {6}, "ExecutionsTimedOut": {6}, "5xx": {7},
        "SignatureRejected": {90}, "ReadThrottleEvents": {11}, "WriteThrottleEvents": {11},
        "ConnectionNeedsReconnect": {1},  # not a stage setting: one waiting event means someone must reconnect
        "CircuitOpen": {1},  # neither: an open breaker means a target is down
        "PollFailures": {12}, "PollLagSeconds": {13 * 60}, "PollRecoveredBySweep": {14}, "ArchiveFailed": {15},
        "WaitsOverdue": {1},  # neither: one overdue wait (an order not shipped in time) is worth a look
    }
    # dev declares none: the defaults, the first occurrence pages (signatures: a spike of 20)
    assert thresholds(dev) == {
        "ApproximateNumberOfMessagesVisible": {1}, "ApproximateAgeOfOldestMessage": {900}, "Errors": {1},
        "Throttles": {1}, "ExecutionsFailed": {1}, "ExecutionsTimedOut": {1}, "5xx": {1},
        "SignatureRejected": {20}, "ReadThrottleEvents": {1}, "WriteThrottleEvents": {1},
        "ConnectionNeedsReconnect": {1}, "CircuitOpen": {1}, "WaitsOverdue": {1},
        "PollFailures": {3}, "PollLagSeconds": {15 * 60}, "PollRecoveredBySweep": {1},  # three failed runs in a row
        "ArchiveFailed": {1},
    }
    (rejected,) = [a for a in strict.of_type("AWS::CloudWatch::Alarm")
                   if a.properties["MetricName"] == "SignatureRejected"]
    assert rejected.properties["AlarmDescription"].startswith("At least 90 webhooks")


@pytest.mark.parametrize("thresholds", [{"worker_errors": 0}, {"oldest_message_age_minute": 5},
                                        {"signature_rejected": "many"}])
def test_alarm_thresholds_invalid_in_context_fail_naming_the_stage(thresholds):
    from infra.settings import SettingsError, stages_from_context

    with pytest.raises(SettingsError, match=r"switchyard:stages\.qa"):
        stages_from_context({"qa": {"alarm_thresholds": thresholds}})


def test_every_flow_whose_worker_calls_its_target_alarms_while_its_circuit_is_open(dev):
    from switchyard.catalog import load_catalog

    flows = {name for name, flow in load_catalog().flows.items() if flow.runs_as == "worker"}
    alarms = [a.properties for a in dev.of_type("AWS::CloudWatch::Alarm")
              if a.properties.get("MetricName") == "CircuitOpen"]
    assert {dimension["Value"] for alarm in alarms for dimension in alarm["Dimensions"]} == flows
    for alarm in alarms:
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert_pages_topic_and_names_runbook(dev, alarm, "circuit-open")


def test_archive_failures_alarm_per_stage_threshold(dev, dev_stage):
    (alarm,) = alarms_on(dev, "Switchyard", "ArchiveFailed", "service", "ingest")

    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 300)
    assert alarm["Threshold"] == dev_stage.alarm_thresholds.archive_failed == 1
    assert_pages_topic_and_names_runbook(dev, alarm, "archive-failed")
