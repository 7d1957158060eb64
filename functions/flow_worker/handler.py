"""One flow's SQS worker: each record delivered exactly once in effect, or dead-lettered."""

import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from switchyard.compose import build_worker
from switchyard.settings import WorkerSettings

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


@cache
def app():
    return build_worker(WorkerSettings.from_env(os.environ), metrics=metrics, logger=logger)


def record_handler(record: SQSRecord) -> None:
    app().worker.handle(
        record.body,
        receive_count=int(record.attributes.approximate_receive_count),
        receipt_handle=record.receipt_handle,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    app().idempotency_config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
