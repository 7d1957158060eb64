"""The task Lambda of a flow's state machine: runs one step (``{"step", "state"}``) or several in order
(``{"steps"}`` / ``{"steps_by_route"}``), records a failure, or dead-letters an execution that ended without
one (an EventBridge execution-status event)."""

import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics
from switchyard.compose import build_steps
from switchyard.machine_declaration import step_result_key
from switchyard.settings import StepSettings
from switchyard.state_machines import requested_steps, step_label

logger = Logger()
metrics = Metrics()


@cache
def app():
    return build_steps(StepSettings.from_env(os.environ), metrics=metrics, logger=logger)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    step = step_label(event)  # a failing step of several logs its own name
    logger.append_keys(flow=app().flow, step=step, event_id=(event.get("state") or {}).get("event_id"))
    result = app().handle(event)
    ended = "detail-type" in event  # EventBridge: an execution ended (timed out, aborted, failed)
    if step == "record_failure" or (ended and result.get("dead_lettered")):
        logger.error("dead-lettered", extra={"reason": result.get("reason"), "outcome": "dead_lettered"})
        metrics.add_metric(name="EventsDeadLettered", unit="Count", value=1)
    elif ended:  # its dead letter was written already, or it needs none
        logger.info("execution ended", extra={"outcome": result.get("reason")})
        metrics.add_metric(name="ExecutionEndingsSeen", unit="Count", value=1)
    elif "step" in event:
        logger.info("step done", extra={"outcome": result.get("action")})
        metrics.add_metric(name="StepsCompleted", unit="Count", value=1)
    else:  # several steps in one task: one line (log bytes cost), each step's outcome in it; one count each
        inner = requested_steps(event) or ()
        outcomes = {name: (result.get(step_result_key(name)) or {}).get("action") for name in inner}
        logger.info("steps done", extra={"outcomes": outcomes})
        metrics.add_metric(name="StepsCompleted", unit="Count", value=len(inner))
    return result
