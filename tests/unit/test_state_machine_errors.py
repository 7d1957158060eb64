"""State-machine flows: how a step's error becomes the state machine's error, its log line and its dead letter.

Each test states one behaviour the mutation run of issue 18 found unpinned (docs/mutation-testing.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError
from switchyard.catalog import load_catalog
from switchyard.errors import (
    ConnectionConfigError,
    DeliveryError,
    OutOfOrderError,
    PermanentError,
    RetryableError,
)
from switchyard.events import FlowEvent, flow_message
from switchyard.state_machines import (
    ExecutionStarter,
    StepFailed,
    StepThrottled,
    failure_letter,
    record_failure,
    run_step,
    step_error,
    step_failure,
    unexpected_message,
)

FLOW = "nopcommerce-to-quickbooks"
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:OrderToCash"
DECLARATION = load_catalog().flows[FLOW].state_machine
FAILED_AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def queued_event() -> FlowEvent:
    body = json.dumps({"type": "order.placed", "timestamp": "2026-11-25T10:00:00Z",
                       "data": {"Order": {"OrderGuid": "g-1", "OrderStatusId": 10, "Id": 7}}})
    return FlowEvent.from_message(flow_message(flow=FLOW, event_id="msg_1", source="nopcommerce",
                                               event_type="order.placed", timestamp="2026-11-25T10:00:00+00:00",
                                               received_at="2026-11-25T10:00:01+00:00", body=body))


def raised_by_step(error: Exception) -> Exception:
    def step() -> dict:
        raise error

    with pytest.raises(Exception) as raised:
        run_step(step)
    return raised.value


def lambda_cause(error: Exception, trace: list[str] | None = None) -> str:
    """What Step Functions' Catch puts under Cause for a Lambda function error."""
    return json.dumps({"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": trace or []})


def letter_for(error: dict, **state) -> object:
    return failure_letter(FLOW, {"message": "m", "error": error, **state}, now=lambda: FAILED_AT)


# --------------------------------------------------------------------------- the step error's details


def test_step_error_carries_what_the_target_answered_into_the_dead_letter():
    error = PermanentError("QuickBooks refused the invoice", reason="validation_fault", target_status=400,
                           target_response={"Fault": {"Error": [{"code": "6000"}]}})
    raised = raised_by_step(error)

    letter = letter_for({"Error": "StepFailed", "Cause": lambda_cause(raised)}, event_id="msg_1")

    assert (letter.flow, letter.event_id, letter.error_class, letter.reason, letter.message) == (
        FLOW, "msg_1", "permanent", "validation_fault", "QuickBooks refused the invoice")
    assert (letter.target_status, letter.target_response) == (400, {"Fault": {"Error": [{"code": "6000"}]}})
    assert (letter.attempts, letter.failed_at) == (1, "2026-12-03T10:00:00+00:00")


def test_step_error_of_a_throttled_delivery_keeps_the_wait_the_target_asked_for():
    raised = raised_by_step(RetryableError("429", reason="rate_limited", retry_after=60, target_status=429))
    assert isinstance(raised, StepThrottled)
    assert json.loads(str(raised))["retry_after"] == 60


def test_step_error_target_response_with_decimals_and_dates_is_written_as_text():
    answer = {"TotalAmt": Decimal("12.30"), "MetaData": {"LastUpdatedTime": datetime(2026, 12, 3, tzinfo=UTC)}}
    raised = raised_by_step(PermanentError("refused", reason="validation_fault", target_response=answer))
    assert json.loads(str(raised))["target_response"] == {
        "TotalAmt": "12.30", "MetaData": {"LastUpdatedTime": "2026-12-03 00:00:00+00:00"}}


def test_step_error_keeps_a_target_response_of_2000_characters_and_clips_a_longer_one():
    exactly = "a" * 1998  # 2000 characters as JSON, with its quotes
    raised = raised_by_step(PermanentError("refused", reason="validation_fault", target_response=exactly))
    assert json.loads(str(raised))["target_response"] == exactly

    longer = "a" * 1999
    raised = raised_by_step(PermanentError("refused", reason="validation_fault", target_response=longer))
    assert json.loads(str(raised))["target_response"] == json.dumps(longer)[:2000] + "..."


def test_step_error_of_a_bad_connection_config_is_permanent_and_keeps_its_message():
    raised = raised_by_step(ConnectionConfigError("no refresh token for quickbooks"))
    assert isinstance(raised, StepFailed)
    assert json.loads(str(raised)) == {"reason": "connection_config_error", "error_class": "permanent",
                                       "message": "no refresh token for quickbooks"}


def test_step_error_of_a_delivery_error_of_no_known_kind_is_caught_with_its_own_class():
    raised = raised_by_step(DeliveryError("odd", reason="odd_answer"))
    assert isinstance(raised, StepFailed)
    letter = letter_for({"Error": "StepFailed", "Cause": lambda_cause(raised)})
    assert (letter.error_class, letter.reason) == ("delivery", "odd_answer")


def test_step_error_passes_a_step_error_through_unchanged():
    already = StepThrottled('{"reason": "rate_limited"}')
    assert step_error(already) is already
    assert step_error(KeyError("Order")) is None


# --------------------------------------------------------------------------- the failure letter


def test_failure_letter_without_an_error_name_is_a_runtime_error():
    letter = letter_for({})
    assert (letter.reason, letter.message, letter.error_class) == ("runtime", "States.Runtime", "unexpected")


def test_failure_letter_of_a_states_error_without_a_cause_is_named_by_it_alone():
    letter = letter_for({"Error": "States.Timeout"})
    assert (letter.reason, letter.message) == ("timeout", "States.Timeout")


def test_failure_letter_of_an_error_without_a_name_says_unexpected():
    assert letter_for({"Error": ""}).reason == "unexpected"
    assert letter_for({"Error": "States."}).reason == "unexpected"


def test_failure_letter_names_the_exception_type_of_the_cause_not_the_name_it_was_caught_under():
    cause = lambda_cause(KeyError("Order"))
    letter = letter_for({"Error": "States.TaskFailed", "Cause": cause})
    assert (letter.reason, letter.message) == ("key_error", "KeyError: 'Order'")


def test_failure_letter_of_a_cause_without_its_type_uses_the_error_name():
    cause = json.dumps({"errorMessage": "boom"})
    letter = letter_for({"Error": "ValueError", "Cause": cause})
    assert (letter.reason, letter.message) == ("value_error", "ValueError: boom")


def test_failure_letter_of_an_unexpected_exception_whose_message_reads_as_json_names_it():
    # KeyError(7) says "7": valid JSON, but no step error's details; it used to leave the whole cause behind
    trace = ['  File "order_to_cash.py", line 3, in document\n']
    for error, text in ((KeyError(7), "7"), (ValueError("[1, 2]"), "[1, 2]"), (ValueError('"x"'), '"x"')):
        letter = letter_for({"Error": type(error).__name__, "Cause": lambda_cause(error, trace)})
        assert letter.message == f"{type(error).__name__}: {text} (at order_to_cash.py:3 in document)"
        assert (letter.reason, letter.error_class) == (
            "key_error" if isinstance(error, KeyError) else "value_error", "unexpected")


def test_failure_letter_prefers_the_error_class_the_step_wrote_over_its_name():
    cause = lambda_cause(StepFailed(json.dumps({"reason": "document_missing", "error_class": "out_of_order"})))
    assert letter_for({"Error": "StepFailed", "Cause": cause}).error_class == "out_of_order"


def test_failure_letter_of_a_step_error_without_a_reason_takes_the_error_name():
    cause = lambda_cause(StepThrottled(json.dumps({"message": "429"})))
    letter = letter_for({"Error": "StepThrottled", "Cause": cause})
    assert (letter.reason, letter.error_class, letter.message) == ("step_throttled", "retryable", "429")


def test_failure_letter_counts_the_attempts_recorded_with_the_error_one_without():
    assert letter_for({"Error": "States.Timeout", "attempts": 3}).attempts == 3
    assert letter_for({"Error": "States.Timeout"}).attempts == 1


def test_failure_letter_without_an_event_id_has_none_and_without_a_message_an_empty_original():
    letter = failure_letter(FLOW, {"error": {"Error": "States.Timeout"}})
    assert letter.event_id is None
    assert letter.original == ""


def test_failure_letter_redrive_message_is_written_compactly_like_the_queue_s():
    message = queued_event().message
    letter = failure_letter(FLOW, {"message": message, "error": {"Error": "States.Timeout"}}, execution="run-1")
    assert letter.original == json.dumps({**json.loads(message), "retry_of": "run-1"}, separators=(",", ":"))


def test_unexpected_message_names_a_file_given_without_a_folder():
    trace = ['  File "order_to_cash.py", line 12, in lines\n']
    assert unexpected_message("KeyError", "'Sku'", trace) == "KeyError: 'Sku' (at order_to_cash.py:12 in lines)"


def test_record_failure_sends_the_flow_s_letter_marked_with_its_execution():
    sent = []

    class Letters:
        def send(self, letter):
            sent.append(letter)

    message = queued_event().message
    record_failure(FLOW, {"message": message, "error": {"Error": "States.Timeout"}}, Letters(), execution="run-1")
    assert sent[0].flow == FLOW
    assert json.loads(sent[0].original)["retry_of"] == "run-1"


# --------------------------------------------------------------------------- the step's failure log line


def test_step_failure_of_a_step_error_raised_without_a_cause_has_no_cause_type():
    assert step_failure(StepFailed(json.dumps({"reason": "x", "message": "m"})))["cause_type"] is None


def test_step_failure_of_a_step_error_whose_text_is_not_json_details_logs_the_text():
    for text in ("not json", "[1, 2]", "42"):
        logged = step_failure(StepFailed(text))
        assert (logged["reason"], logged["error_class"], logged["error_message"]) == (None, None, text)


# --------------------------------------------------------------------------- starting an execution


def test_starter_a_start_failing_without_an_error_code_is_retried_and_names_the_failure():
    class Failing:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def start_execution(self, **_: object) -> dict:
            raise self.error

    for error, said in ((ConnectionResetError("connection reset by peer"), "connection reset by peer"),
                        (ClientError({"Error": {"Message": "?"}}, "StartExecution"), "StartExecution")):
        with pytest.raises(RetryableError) as raised:
            ExecutionStarter(Failing(error), ARN, DECLARATION).deliver(queued_event())
        assert raised.value.reason == "start_execution_failed"
        assert said in str(raised.value)


def test_out_of_order_step_error_is_not_caught_as_permanent():
    raised = raised_by_step(OutOfOrderError("no invoice yet", reason="document_missing"))
    letter = letter_for({"Error": type(raised).__name__, "Cause": lambda_cause(raised)})
    assert (letter.error_class, letter.reason) == ("out_of_order", "document_missing")
