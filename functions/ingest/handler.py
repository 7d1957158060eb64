"""POST /webhooks/{source}: verify, validate and queue a webhook; 202 only once it is queued."""

import base64
import json
import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics
from switchyard.compose import build_ingest
from switchyard.errors import EnqueueError, SignatureError, WebhookRejectedError
from switchyard.ingest import WebhookRequest
from switchyard.settings import IngestSettings

logger = Logger()
metrics = Metrics()


@cache
def service():
    return build_ingest(IngestSettings.from_env(os.environ))


def _respond(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    source = (event.get("pathParameters") or {}).get("source", "")
    query = event.get("queryStringParameters") or {}
    logger.append_keys(source=source, event_id=headers.get("webhook-id"))
    try:
        accepted = service().accept(WebhookRequest(source=source, headers=headers, body=raw, query=query))
    except WebhookRejectedError as exc:
        logger.warning("webhook rejected", extra={"status": exc.status_code, "error": exc.code})
        metrics.add_metric(name="SignatureRejected" if isinstance(exc, SignatureError) else "WebhookRejected",
                           unit="Count", value=1)
        return _respond(exc.status_code, exc.body())
    except EnqueueError:
        logger.exception("webhook not queued")
        return _respond(503, {"error": "unavailable", "message": "try again later"})
    logger.info("webhook accepted", extra={"type": accepted.event_type, "flows": list(accepted.flows),
                                           "event_ids": list(accepted.event_ids)})
    metrics.add_metric(name="WebhookAccepted", unit="Count", value=1)
    if accepted.archive_error is not None:  # queued all the same: only its replay is lost
        logger.error("webhook not archived", extra={"error": accepted.archive_error,
                                                    "event_ids": list(accepted.event_ids)})
        metrics.add_metric(name="ArchiveFailed", unit="Count", value=1)
    return _respond(accepted.status, accepted.body())
