"""Queue pollers that behave like Lambda's SQS event source mappings.

moto's own mappings invoke synchronously inside send_message, one record at a time, and ignore
partial batch responses; these poll with the mapping's batch size, hand the function an SQS event,
delete only what succeeded (ReportBatchItemFailures), and leave the rest to the queue's visibility
timeout and redrive policy (moto moves a message to the DLQ after maxReceiveCount receives).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from switchyard_local.functions import FunctionError, InProcessFunction


@dataclass
class QueuePoller:
    sqs: Any
    queue_url: str
    queue_arn: str
    function: InProcessFunction
    batch_size: int
    report_batch_item_failures: bool
    region: str = "us-east-1"

    def poll_once(self) -> int:
        """Receive one batch and run it; returns the number of records handed to the function."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, self.batch_size),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [self._record(m) for m in messages]}
        try:
            result = self.function.invoke(event)
        except FunctionError:
            return len(messages)  # whole batch becomes visible again after the visibility timeout
        failed: set[str] = set()
        if self.report_batch_item_failures and isinstance(result, dict):
            failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def depth(self) -> int:
        """Everything the queue still holds: visible, in flight, and delayed (a throttled or out-of-order
        delivery is re-queued with a delay and is not visible yet, but it still waits)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            name: {"stringValue": value.get("StringValue"), "binaryValue": None,
                   "stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType", "String")}
            for name, value in message.get("MessageAttributes", {}).items()
        }
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": message["Attributes"].get("ApproximateReceiveCount", "1"),
                "SentTimestamp": message["Attributes"].get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": message["Attributes"].get("SenderId", "local"),
                "ApproximateFirstReceiveTimestamp": message["Attributes"].get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))),
            },
            "messageAttributes": attributes,
            "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }
