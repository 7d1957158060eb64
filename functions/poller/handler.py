"""Scheduled (EventBridge Scheduler, every minute by default): poll one source, queue what changed.

The event may carry ``{"grace_seconds": 0}``: queue what the webhooks missed now, without the sweep's grace
(an operator who knows the sender was down; the local demo)."""

import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics
from switchyard.compose import build_poller
from switchyard.settings import PollerSettings

logger = Logger()
metrics = Metrics()


@cache
def settings() -> PollerSettings:
    return PollerSettings.from_env(os.environ)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    grace = (event or {}).get("grace_seconds")
    try:
        poller = build_poller(settings(), grace_seconds=float(grace) if grace is not None else None,
                              time_left=lambda: context.get_remaining_time_in_millis() / 1000)
        if poller is None:  # a source deployed before its connection is filled in: not a failure
            logger.info("poll skipped: the connection secret is still the placeholder")
            return {"skipped": "connection not configured"}
        report = poller.run()
    except Exception:
        logger.exception("poll failed: the cursor and snapshots did not move, the next run reads the same pages")
        metrics.add_metric(name="PollFailures", unit="Count", value=1)
        raise
    metrics.add_metric(name="PollPagesRead", unit="Count", value=report.pages_read)
    metrics.add_metric(name="PollEventsQueued", unit="Count", value=report.events_queued)
    metrics.add_metric(name="PollRecoveredBySweep", unit="Count", value=report.recovered)
    metrics.add_metric(name="PollLagSeconds", unit="Seconds", value=report.lag_seconds)
    summary = {"pages_read": report.pages_read, "items_seen": report.items_seen,
               "events_queued": report.events_queued, "recovered": report.recovered,
               "already_pushed": report.already_pushed, "held": report.held,
               "scan_finished": report.scan_finished, "lag_seconds": report.lag_seconds,
               "stopped_for_time": report.stopped_for_time,
               "invalid": report.invalid,
               "event_ids": report.queued_ids}
    if report.invalid:  # the shop holds something the webhook contract refuses: never queued
        logger.error("polled events not queued: they fail the source's schema", extra={"invalid": report.invalid})
        metrics.add_metric(name="PollInvalidEvents", unit="Count", value=len(report.invalid))
    logger.info("poll finished", extra={k: v for k, v in summary.items() if k != "event_ids"})
    return summary
