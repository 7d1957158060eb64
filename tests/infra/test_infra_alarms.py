"""Alarms added for what used to fail silently: the ingest function itself, and throttling of the shared table.
Every alarm names a runbook section that exists."""

from __future__ import annotations

import re

import pytest

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
