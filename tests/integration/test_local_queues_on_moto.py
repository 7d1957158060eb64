"""Counting what waits in the local stack's queues, on moto: ``switchyard dlq list`` sees every letter,
the pollers and ``LocalStack.drain()`` count delayed messages, executions and dead letters are paged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard_cli import main as cli
from switchyard_cli.operations import list_dead_letters, redrive
from switchyard_cli.stackinfo import StackResources
from switchyard_local.functions import InProcessFunction
from switchyard_local.pollers import QueuePoller
from switchyard_local.stack import FlowResources, LocalStack

REGION = "us-east-1"


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def letter(number: int) -> str:
    return json.dumps({"flow": "f", "event_id": f"msg_{number}", "error_class": "permanent", "reason": "r",
                       "message": f"letter {number}", "attempts": 1, "original": "{}"})


def fill(sqs: Any, url: str, count: int, **extra: Any) -> None:
    for number in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=letter(number), **extra)


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_list_dead_letters_shows_all_seventeen_and_leaves_them_visible(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    fill(sqs, url, 17)

    letters = list_dead_letters(sqs, url)

    assert sorted(item["event_id"] for item in letters) == sorted(f"msg_{n}" for n in range(17))
    assert visible(sqs, url) == 17  # listing consumed nothing and hid nothing
    assert len(list_dead_letters(sqs, url)) == 17  # and can be repeated at once


def test_cli_dlq_list_counts_every_letter(sqs: Any, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    fill(sqs, url, 17)
    monkeypatch.setattr(StackResources, "flow_queues", lambda self, flow: ("unused", url))
    monkeypatch.setattr(StackResources, "read", classmethod(lambda cls, cfn, stack: cls(stack, {}, {})))

    assert cli.main(["dlq", "list", "nopcommerce-to-quickbooks", "--json"]) == 0

    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 17
    assert "17 dead letter(s) in nopcommerce-to-quickbooks" in captured.err


def test_redrive_with_a_limit_moves_that_many_and_leaves_the_rest_visible(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="queue")["QueueUrl"]
    fill(sqs, dlq, 17)

    assert redrive(sqs, dlq, queue, limit=12) == 12

    assert (visible(sqs, queue), visible(sqs, dlq)) == (12, 5)
    assert redrive(sqs, dlq, queue) == 5


def poller(sqs: Any, url: str) -> QueuePoller:
    function = InProcessFunction(logical_id="F", function_name="f", arn="arn:aws:lambda:us-east-1:1:function:f",
                                 code_dir=None, handler="h.h", environment={}, timeout_seconds=3,  # type: ignore[arg-type]
                                 memory_mb=128, base_environment={})
    return QueuePoller(sqs=sqs, queue_url=url, queue_arn="arn:aws:sqs:us-east-1:1:queue", function=function,
                       batch_size=10, report_batch_item_failures=True)


def test_poller_depth_counts_delayed_messages(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="queue")["QueueUrl"]
    fill(sqs, url, 2, DelaySeconds=60)  # a throttled delivery re-queued with a delay

    assert poller(sqs, url).depth() == 2


def test_drain_waits_for_delayed_messages_instead_of_reporting_empty(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="queue")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    fill(sqs, url, 1, DelaySeconds=60)
    stack = LocalStack()
    stack.flows = {"f": FlowResources(name="f", queue_url=url, dlq_url=dlq, poller=poller(sqs, url))}
    stack._sandboxes_quiet = lambda: True  # type: ignore[method-assign]

    assert stack.drain(timeout=0.5, interval=0.05) is False  # a message still waits


def test_local_stack_dead_letters_reads_past_one_hundred(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    fill(sqs, url, 130)
    stack = LocalStack()
    stack.flows = {"f": FlowResources(name="f", queue_url=url, dlq_url=url, poller=poller(sqs, url))}
    stack.client = lambda service: sqs  # type: ignore[method-assign]

    letters = stack.dead_letters("f")

    assert len(letters) == 130 and len({item["event_id"] for item in letters}) == 130
    assert visible(sqs, url) == 130


@pytest.fixture
def sfn_without_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Step Functions that records executions without running them (they stay RUNNING); said explicitly,
    because moto keeps the last configuration it was given and other tests turn its engine on."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}}):
        yield boto3.client("stepfunctions", region_name=REGION)


def test_local_stack_executions_and_running_count_page_past_one_hundred(sfn_without_engine: Any) -> None:
    sfn = sfn_without_engine
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    arn = sfn.create_state_machine(name="m", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
    for number in range(130):
        sfn.start_execution(stateMachineArn=arn, name=f"order-{number}", input="{}")
    stack = LocalStack()
    stack.state_machines = {"f": arn}
    stack.client = lambda service: sfn  # type: ignore[method-assign]

    executions = stack.executions("f")

    assert len(executions) == 130 and len({e["name"] for e in executions}) == 130
    assert [e["name"] for e in executions[:2]] == ["order-0", "order-1"]  # oldest first
    assert stack.running_executions() == 130
