"""Alarms that name their runbook, so whoever is paged knows where to start.

Every alarm's description ends with ``Runbook: docs/runbooks.md#<anchor>``; the anchors are listed in
:class:`Runbook` and each needs a section in ``docs/runbooks.md``.
"""

from __future__ import annotations

from enum import StrEnum

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

RUNBOOK_DOCUMENT = "docs/runbooks.md"


class Runbook(StrEnum):
    DLQ_NOT_EMPTY = "dlq-not-empty"
    QUEUE_MESSAGE_AGE = "queue-oldest-message-age"
    WORKER_ERRORS = "worker-errors"
    WORKER_THROTTLES = "worker-throttles"
    INGEST_5XX = "ingest-5xx"
    INGEST_ERRORS = "ingest-errors"
    TABLE_THROTTLED = "table-throttled"
    INTEGRATION_UNHEALTHY = "integration-unhealthy"
    SIGNATURE_REJECTED = "signature-rejected-spike"
    EXECUTIONS_FAILED = "state-machine-executions-failed"
    CONNECTION_NEEDS_RECONNECT = "connection-needs-reconnect"
    WAIT_OVERDUE = "state-machine-wait-overdue"
    CIRCUIT_OPEN = "circuit-open"
    POLL_FAILURES = "poll-failures"
    POLL_LAG = "poll-lag"
    POLL_RECOVERED = "poll-recovered-by-sweep"
    ARCHIVE_FAILED = "archive-failed"

    @property
    def reference(self) -> str:
        return f"{RUNBOOK_DOCUMENT}#{self.value}"


def runbook_alarm(
    scope: Construct,
    construct_id: str,
    *,
    metric: cloudwatch.IMetric,
    threshold: float,
    comparison: cloudwatch.ComparisonOperator,
    summary: str,
    runbook: Runbook,
    action: cloudwatch.IAlarmAction,
    evaluation_periods: int = 1,
) -> cloudwatch.Alarm:
    """An alarm notifying ``action`` on alarm and on recovery; missing data counts as fine."""
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=evaluation_periods,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=f"{summary} Runbook: {runbook.reference}",
    )
    alarm.add_alarm_action(action)
    alarm.add_ok_action(action)
    return alarm
