"""The task Lambda of a flow's state machine: runs one step (``{"step", "state"}``), records a failure, or
dead-letters an execution that ended without one (an EventBridge execution-status event)."""

import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics
from switchyard.compose import build_steps
from switchyard.settings import StepSettings

logger = Logger()
metrics = Metrics()


@cache
def app():
    return build_steps(StepSettings.from_env(os.environ), metrics=metrics, logger=logger)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    step = event.get("step")
    logger.append_keys(flow=app().flow, step=step, event_id=(event.get("state") or {}).get("event_id"))
    result = app().handle(event)
    ended = "detail-type" in event  # EventBridge: an execution ended (timed out, aborted, failed)
    if step == "record_failure" or (ended and result.get("dead_lettered")):
        logger.error("dead-lettered", extra={"reason": result.get("reason"), "outcome": "dead_lettered"})
        metrics.add_metric(name="EventsDeadLettered", unit="Count", value=1)
    elif ended:  # its dead letter was written already, or it needs none
        logger.info("execution ended", extra={"outcome": result.get("reason")})
        metrics.add_metric(name="ExecutionEndingsSeen", unit="Count", value=1)
    else:
        logger.info("step done", extra={"outcome": result.get("action")})
        metrics.add_metric(name="StepsCompleted", unit="Count", value=1)
    return result
