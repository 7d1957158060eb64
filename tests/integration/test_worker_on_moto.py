"""The Lambda handlers in-process on moto (SQS, DynamoDB, Secrets Manager) and a served Streak sandbox.

moto starts before any AWS client exists (``switchyard.aws.clients.reset()``); each test loads the
handler modules afresh under unique names, so their cached services are built inside the mock.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.aws import clients
from switchyard.ingest import IngestService, WebhookRequest
from switchyard.signatures import sign
from switchyard_local.sandboxes.streak import StreakSandbox

from tests.conftest import REPO_ROOT

FLOW = "nopcommerce-to-streak"
REGION = "us-east-1"
MAX_RECEIVES = 5
WORKER_HANDLER = REPO_ROOT / "functions" / "flow_worker" / "handler.py"
INGEST_HANDLER = REPO_ROOT / "functions" / "ingest" / "handler.py"


@dataclass
class LambdaContext:
    function_name: str = "switchyard-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:switchyard-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Stack:
    sqs: Any
    queue_url: str
    queue_arn: str
    dlq_url: str
    sandbox: StreakSandbox
    env: dict[str, str]


def load_handler(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a handler file as a new module (fresh Logger, Metrics and cached services)."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"{path.parent.name}-{uuid.uuid4().hex[:8]}")
    name = f"switchyard_handler_{path.parent.name}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def _serving_sandbox() -> Iterator[StreakSandbox]:
    # one server per module: stopping one waits out werkzeug's 0.5 s poll interval
    sandbox = StreakSandbox()
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def served_sandbox(_serving_sandbox: StreakSandbox) -> StreakSandbox:
    """The served sandbox, emptied (data, recorded requests, faults) for this test."""
    _serving_sandbox.reset()
    return _serving_sandbox


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, served_sandbox: StreakSandbox, signing_secret: str) -> Iterator[Stack]:
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                        "POWERTOOLS_METRICS_NAMESPACE": "SwitchyardTest"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clients.reset()
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        dlq_url = sqs.create_queue(QueueName=f"{FLOW}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)})
        queue_url = sqs.create_queue(QueueName=FLOW, Attributes={"RedrivePolicy": redrive,
                                                                 "VisibilityTimeout": "60"})["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="switchyard-idempotency", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        )
        secrets = boto3.client("secretsmanager", region_name=REGION)
        connection_arn = secrets.create_secret(Name="switchyard/streak", SecretString=json.dumps({
            "base_url": served_sandbox.base_url, "api_key": "sandbox-key", "team_key": "team_1",
            "pipeline_key": "pl_orders"}))["ARN"]
        signing_arn = secrets.create_secret(Name="switchyard/nopcommerce",
                                            SecretString=json.dumps({"signing_secrets": [signing_secret]}))["ARN"]
        env = {
            "SWITCHYARD_STAGE": "test",
            # flow worker
            "SWITCHYARD_FLOW": FLOW,
            "SWITCHYARD_IDEMPOTENCY_TABLE": "switchyard-idempotency",
            "SWITCHYARD_CONNECTION_SECRET_ARN": connection_arn,
            "SWITCHYARD_CONNECTION_SECRET_ARNS": json.dumps({"streak": connection_arn}),
            "SWITCHYARD_QUEUE_URL": queue_url,
            "SWITCHYARD_DLQ_URL": dlq_url,
            "SWITCHYARD_MAX_RECEIVE_COUNT": str(MAX_RECEIVES),
            "SWITCHYARD_AUDIT_RETENTION_DAYS": "14",
            # ingest
            "SWITCHYARD_SOURCES": json.dumps({"nopcommerce": {"secret_arn": signing_arn}}),
            "SWITCHYARD_ROUTES": json.dumps({"nopcommerce": {"order.placed": {FLOW: queue_url},
                                                             "order.status_changed": {FLOW: queue_url}}}),
            "SWITCHYARD_MAX_BODY_BYTES": str(256 * 1024),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield Stack(sqs=sqs, queue_url=queue_url, queue_arn=queue_arn, dlq_url=dlq_url,
                    sandbox=served_sandbox, env=env)
    clients.reset()


@pytest.fixture
def worker(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_handler(WORKER_HANDLER, monkeypatch)


@pytest.fixture
def ingest(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_handler(INGEST_HANDLER, monkeypatch)


class _Capture:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        self.bodies += [m.body for m in messages]


class _Trusting:
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id

    def authenticate(self, request: Any) -> str:
        return self.event_id


@pytest.fixture
def queue_body(sample: Callable[..., dict[str, Any]]) -> Callable[..., str]:
    """A queue message exactly as the ingest service writes it (produced by IngestService itself)."""

    def build(name: str, event_id: str, *, data: dict[str, Any] | None = None) -> str:
        document = sample(name)
        if data is not None:
            document["data"] = data
        capture = _Capture()
        service = IngestService(routes={"nopcommerce": {document["type"]: {FLOW: "queue"}}},
                                authenticator_for=lambda _source: _Trusting(event_id), publisher=capture,
                                max_body_bytes=1 << 20)
        service.accept(WebhookRequest("nopcommerce", {}, json.dumps(document).encode()))
        (body,) = capture.bodies
        return body

    return build


def receive(stack: Stack, *, receive_count: int | None = None) -> list[dict[str, Any]]:
    """Receive visible messages as Lambda SQS records (what the event source mapping hands over)."""
    response = stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10,
                                         AttributeNames=["All"], MessageAttributeNames=["All"])
    records = []
    for message in response.get("Messages", []):
        attributes = dict(message["Attributes"])
        if receive_count is not None:
            attributes["ApproximateReceiveCount"] = str(receive_count)
        records.append({"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                        "body": message["Body"], "attributes": attributes, "messageAttributes": {},
                        "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
                        "eventSourceARN": stack.queue_arn, "awsRegion": REGION})
    return records


def run_worker(worker: ModuleType, stack: Stack, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Invoke the worker with one batch, then delete what succeeded (as the event source mapping does)."""
    response = worker.lambda_handler({"Records": records}, LambdaContext())
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in records:
        if record["messageId"] not in failed:
            stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=record["receiptHandle"])
    return response


def deliver(worker: ModuleType, stack: Stack, *bodies: str) -> dict[str, Any]:
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    records = receive(stack)
    assert len(records) == len(bodies)
    return run_worker(worker, stack, records)


def dead_letters(stack: Stack) -> list[dict[str, Any]]:
    response = stack.sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10,
                                         MessageAttributeNames=["All"])
    return [{**json.loads(m["Body"]),
             "_attributes": {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}}
            for m in response.get("Messages", [])]


def queue_depth(stack: Stack, url: str) -> dict[str, int]:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return {"visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"])}


def streak_writes(sandbox: StreakSandbox, start: int = 0) -> list[tuple[str, int]]:
    return [(path, status) for method, path, status in list(sandbox.requests)[start:] if method == "POST"]


# --- flow worker ----------------------------------------------------------------------------------------


def test_worker_handler_delivers_order_to_streak(worker, stack: Stack, queue_body) -> None:
    response = deliver(worker, stack, queue_body("nop_order_b2b", "msg_1"))

    assert response == {"batchItemFailures": []}
    (box,) = stack.sandbox.snapshot()["boxes"]
    assert box["stageKey"] == "5001"
    assert box["fields"]["Order number"] == "1042"
    assert queue_depth(stack, stack.queue_url) == {"visible": 0, "in_flight": 0}
    assert dead_letters(stack) == []


def test_worker_handler_duplicate_delivery_creates_one_box(worker, stack: Stack, queue_body) -> None:
    # Given an event delivered and processed once
    body = queue_body("nop_order_b2b", "msg_dup")
    deliver(worker, stack, body)
    requests_after_first = len(stack.sandbox.requests)

    # When SQS delivers the same event again, in another invocation
    response = deliver(worker, stack, body)

    # Then it succeeds without calling Streak at all, and Streak still holds one box
    assert response == {"batchItemFailures": []}
    assert len(stack.sandbox.requests) == requests_after_first
    assert len(stack.sandbox.snapshot()["boxes"]) == 1


def test_worker_handler_two_503s_then_success_delivers_once(worker, stack: Stack, queue_body) -> None:
    # Given Streak answers 503 twice (Retry-After: 0 keeps the test free of real sleeps)
    stack.sandbox.faults.fail_next(2, status=503, retry_after=0)

    response = deliver(worker, stack, queue_body("nop_order_b2b", "msg_flaky"))

    assert response == {"batchItemFailures": []}
    statuses = [status for _, _, status in stack.sandbox.requests]
    assert statuses[:2] == [503, 503]
    assert [path for path, _ in streak_writes(stack.sandbox)].count("/api/v2/pipelines/pl_orders/boxes") == 1
    snap = stack.sandbox.snapshot()
    assert (len(snap["boxes"]), len(snap["contacts"]), len(snap["boxes"][0]["tasks"])) == (1, 1, 1)
    assert dead_letters(stack) == []


def test_worker_handler_streak_400_dead_letters_with_reason(worker, stack: Stack, queue_body) -> None:
    # Given Streak rejects the first call
    stack.sandbox.faults.fail_next(1, status=400)
    body = queue_body("nop_order_b2b", "msg_rejected")

    # When the worker processes the event
    response = deliver(worker, stack, body)

    # Then the record is done (not retried) and its dead letter explains why
    assert response == {"batchItemFailures": []}
    assert queue_depth(stack, stack.queue_url) == {"visible": 0, "in_flight": 0}
    (letter,) = dead_letters(stack)
    assert letter["flow"] == FLOW
    assert letter["event_id"] == "msg_rejected"
    assert letter["error_class"] == "permanent"
    assert letter["reason"] == "target_rejected"
    assert letter["target_status"] == 400
    assert letter["target_response"] == {"success": False, "error": "Bad Request"}
    assert letter["attempts"] == 1
    assert letter["original"] == body
    assert letter["_attributes"] == {"flow": FLOW, "error_class": "permanent", "reason": "target_rejected",
                                     "event_id": "msg_rejected"}


def test_worker_handler_redrive_after_dead_letter_delivers(worker, stack: Stack, queue_body) -> None:
    # Given an event dead-lettered by a rejection that has since been fixed
    stack.sandbox.faults.fail_next(1, status=400)
    body = queue_body("nop_order_b2b", "msg_redrive")
    deliver(worker, stack, body)
    (letter,) = dead_letters(stack)

    # When the original message is redriven
    response = deliver(worker, stack, letter["original"])

    # Then it is delivered (a failed attempt is not remembered as done)
    assert response == {"batchItemFailures": []}
    assert len(stack.sandbox.snapshot()["boxes"]) == 1


def test_worker_handler_reports_out_of_order_record_as_batch_item_failure(worker, stack: Stack, queue_body) -> None:
    # Given a batch with an order and a status change for another order Streak has not seen yet
    order = queue_body("nop_order_b2b", "msg_order")
    unknown = dict(json.loads(json.loads(queue_body("nop_status_processing", "msg_early"))["body"])["data"])
    unknown["Order"] = {**unknown["Order"], "CustomOrderNumber": "1043"}
    early_status = queue_body("nop_status_processing", "msg_early", data=unknown)
    for body in (order, early_status):
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    records = receive(stack)
    early_id = next(r["messageId"] for r in records if r["body"] == early_status)

    # When the worker processes the batch
    response = run_worker(worker, stack, records)

    # Then only the early status change is reported failed, and it waits (invisible) before its retry
    assert response == {"batchItemFailures": [{"itemIdentifier": early_id}]}
    assert len(stack.sandbox.snapshot()["boxes"]) == 1
    assert queue_depth(stack, stack.queue_url) == {"visible": 0, "in_flight": 1}
    assert dead_letters(stack) == []


def test_worker_handler_out_of_order_on_last_receive_dead_letters(worker, stack: Stack, queue_body) -> None:
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=queue_body("nop_status_processing", "msg_st"))
    records = receive(stack, receive_count=MAX_RECEIVES)

    response = run_worker(worker, stack, records)

    assert response == {"batchItemFailures": []}
    (letter,) = dead_letters(stack)
    assert (letter["error_class"], letter["reason"], letter["attempts"]) == ("out_of_order", "box_not_found",
                                                                             MAX_RECEIVES)


# --- ingest ---------------------------------------------------------------------------------------------


def http_api_event(body: bytes, headers: dict[str, str], *, source: str = "nopcommerce",
                   base64_encoded: bool = False) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2) event for POST /webhooks/{source}."""
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}",
        "rawPath": f"/webhooks/{source}",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "nop-webhooks/1.0", **headers},
        "requestContext": {"http": {"method": "POST", "path": f"/webhooks/{source}"}, "requestId": "req-1",
                           "stage": "$default"},
        "pathParameters": {"source": source},
        "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
        "isBase64Encoded": base64_encoded,
    }


def signed_event(signing_secret: str, body: bytes, event_id: str, **kwargs: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    # a gateway may pass header names in any case
    headers = {name.title(): value for name, value in sign(signing_secret, event_id, now, body).items()}
    return http_api_event(body, headers, **kwargs)


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "base64"])
def test_ingest_handler_signed_webhook_202_and_queued(
    ingest, stack: Stack, signing_secret: str, sample_text, base64_encoded: bool
) -> None:
    body = sample_text("nop_order_b2b").encode()

    response = ingest.lambda_handler(signed_event(signing_secret, body, "msg_in", base64_encoded=base64_encoded),
                                     LambdaContext())

    assert response["statusCode"] == 202
    assert json.loads(response["body"]) == {"event_id": "msg_in", "type": "order.placed", "flows": [FLOW]}
    (record,) = receive(stack)
    message = json.loads(record["body"])
    assert (message["flow"], message["event_id"], message["type"]) == (FLOW, "msg_in", "order.placed")
    assert message["body"].encode() == body  # the event exactly as signed


def test_ingest_then_worker_end_to_end_creates_box(
    ingest, worker, stack: Stack, signing_secret: str, sample_text
) -> None:
    ingest.lambda_handler(signed_event(signing_secret, sample_text("nop_order_b2b").encode(), "msg_e2e"),
                          LambdaContext())

    response = run_worker(worker, stack, receive(stack))

    assert response == {"batchItemFailures": []}
    (box,) = stack.sandbox.snapshot()["boxes"]
    assert box["fields"]["Order total"] == 1299


def test_reused_webhook_id_with_another_body_is_its_own_event_not_a_dropped_duplicate(
    ingest, worker, stack: Stack, signing_secret: str, sample
) -> None:
    # Given two different, correctly signed orders sent with one webhook-id, then the first again
    first = sample("nop_order_b2b")
    second = sample("nop_order_b2b")
    second["data"]["Order"]["CustomOrderNumber"] = "1043"
    for document in (first, second, first):
        response = ingest.lambda_handler(signed_event(signing_secret, json.dumps(document).encode(), "msg_reused"),
                                         LambdaContext())
        assert response["statusCode"] == 202

    # When the worker processes all three
    assert run_worker(worker, stack, receive(stack)) == {"batchItemFailures": []}

    # Then both orders are boxes (202 meant queued and delivered), the repeat of the first created nothing
    boxes = stack.sandbox.snapshot()["boxes"]
    assert sorted(box["fields"]["Order number"] for box in boxes) == ["1042", "1043"]
    assert dead_letters(stack) == []


def test_ingest_handler_bad_signature_401_and_queue_stays_empty(
    ingest, stack: Stack, signing_secret: str, sample_text
) -> None:
    body = sample_text("nop_order_b2b").encode()
    event = signed_event(signing_secret, body, "msg_forged")
    event["body"] = event["body"].replace("1299.00", "1.00")

    response = ingest.lambda_handler(event, LambdaContext())

    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"] == "invalid_signature"
    assert queue_depth(stack, stack.queue_url) == {"visible": 0, "in_flight": 0}


@pytest.mark.parametrize(
    ("source", "body", "status", "error"),
    [
        ("magento", b"{}", 404, "unknown_source"),
        ("nopcommerce", b"{not json", 400, "malformed_body"),
        ("nopcommerce", b'{"type": "order.placed", "timestamp": "2026-11-20T09:15:02Z", "data": {}}', 422,
         "invalid_event"),
    ],
)
def test_ingest_handler_bad_input_4xx_and_nothing_queued(
    ingest, stack: Stack, signing_secret: str, source: str, body: bytes, status: int, error: str
) -> None:
    response = ingest.lambda_handler(signed_event(signing_secret, body, "msg_bad", source=source),
                                     LambdaContext())

    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"] == error
    assert queue_depth(stack, stack.queue_url) == {"visible": 0, "in_flight": 0}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_ingest_handler_queue_unavailable_503(
    ingest, stack: Stack, signing_secret: str, sample_text, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = json.loads(stack.env["SWITCHYARD_ROUTES"])
    routes["nopcommerce"]["order.placed"][FLOW] = stack.queue_url + "-gone"
    monkeypatch.setenv("SWITCHYARD_ROUTES", json.dumps(routes))

    response = ingest.lambda_handler(
        signed_event(signing_secret, sample_text("nop_order_b2b").encode(), "msg_1"), LambdaContext()
    )

    assert response["statusCode"] == 503


# --- no personal data or card numbers in logs ------------------------------------------------------------


def test_handlers_logs_contain_no_email_or_card_number(
    stack: Stack, signing_secret: str, sample, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given both handlers loaded while stdout is captured, and an order carrying an e-mail address
    # and (wrongly) a full card number
    ingest = load_handler(INGEST_HANDLER, monkeypatch)
    worker = load_handler(WORKER_HANDLER, monkeypatch)
    document = sample("nop_order_b2b")
    document["data"]["Order"]["CardNumber"] = "4111111111111111"
    body = json.dumps(document).encode()

    # When it goes through ingest (accepted), a forged copy is rejected, a schema-invalid copy too,
    # the worker delivers it, and a Streak rejection dead-letters a second event for the order
    context = LambdaContext()
    assert ingest.lambda_handler(signed_event(signing_secret, body, "msg_pii"), context)["statusCode"] == 202
    forged = signed_event(signing_secret, body, "msg_forged")
    forged["body"] = forged["body"].replace("Acme", "Evil")
    assert ingest.lambda_handler(forged, context)["statusCode"] == 401
    invalid = dict(document, data={**document["data"], "Customer": {"Id": 1, "Email": "jane doe at acme"}})
    invalid_event = signed_event(signing_secret, json.dumps(invalid).encode(), "msg_invalid")
    assert ingest.lambda_handler(invalid_event, context)["statusCode"] == 422
    run_worker(worker, stack, receive(stack))
    stack.sandbox.faults.fail_next(1, status=400)
    again = signed_event(signing_secret, body, "msg_pii_2")
    assert ingest.lambda_handler(again, context)["statusCode"] == 202
    run_worker(worker, stack, receive(stack))

    # Then the logs say what happened, without the customer's address or the card number
    logs = capsys.readouterr().out
    assert "webhook accepted" in logs and "webhook rejected" in logs
    assert "delivered" in logs and "dead-lettered" in logs
    lowered = logs.lower()
    for secret_text in ("jane.doe@acme-corp.example", "jane.doe", "acme-corp.example", "jane doe at acme",
                        "4111111111111111", "************4242", signing_secret, "sandbox-key"):
        assert secret_text.lower() not in lowered, secret_text
