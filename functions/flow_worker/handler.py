"""One flow's SQS worker: each record delivered exactly once in effect, or dead-lettered."""

import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics
from switchyard.compose import build_worker
from switchyard.settings import WorkerSettings
from switchyard.worker import QueuedRecord

logger = Logger()
metrics = Metrics()


@cache
def app():
    return build_worker(WorkerSettings.from_env(os.environ), metrics=metrics, logger=logger)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    app().idempotency_config.register_lambda_context(context)
    # the batch's entities side by side, each in order; failures reported per record (ReportBatchItemFailures)
    records = [QueuedRecord(message_id=r["messageId"], body=r["body"], receipt_handle=r["receiptHandle"],
                            receive_count=int(r["attributes"]["ApproximateReceiveCount"]))
               for r in event["Records"]]
    return {"batchItemFailures": [{"itemIdentifier": message_id}
                                  for message_id in app().worker.handle_batch(records)]}
