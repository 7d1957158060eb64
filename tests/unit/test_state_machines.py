"""State-machine flows: execution names, starting once per event, step errors for Retry/Catch, failure records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from switchyard.catalog import load_catalog
from switchyard.compose import StepApp
from switchyard.connection_state import ConnectionGuard, InMemoryConnectionStates
from switchyard.errors import (
    ConnectionConfigError,
    ConnectionDownError,
    OutOfOrderError,
    PermanentError,
    RetryableError,
)
from switchyard.events import FlowEvent, flow_message
from switchyard.rate_limit import RateLimitedError
from switchyard.state_machines import (
    MAX_EXECUTION_NAME,
    ExecutionStarter,
    StepFailed,
    StepOutOfOrder,
    StepRateLimited,
    StepRetryable,
    StepThrottled,
    StepWaitingForConnection,
    execution_name,
    failure_letter,
    record_failure,
    run_step,
    step_failure,
)
from switchyard.systems.quickbooks.client import fault_error

FLOW = "nopcommerce-to-quickbooks"
GUID = "5b0ef1d6-3c5e-4d1b-9a51-0d3f3c1a2b77"
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:OrderToCash"
# the order-to-cash declaration of flows.yaml: its routes and key name the executions
DECLARATION = load_catalog().flows[FLOW].state_machine


def event(event_type: str = "order.placed", status: int = 10, guid: str = GUID, event_id: str = "msg_1") -> FlowEvent:
    body = json.dumps({"type": event_type, "timestamp": "2026-11-25T10:00:00Z",
                       "data": {"Order": {"OrderGuid": guid, "OrderStatusId": status, "Id": 7}}})
    return FlowEvent.from_message(flow_message(flow=FLOW, event_id=event_id, source="nopcommerce",
                                               event_type=event_type, timestamp="2026-11-25T10:00:00+00:00",
                                               received_at="2026-11-25T10:00:01+00:00", body=body))


class FakeStepFunctions:
    """Standard Step Functions' StartExecution: the same name and input while the execution runs answers the
    original response; another input, or a closed execution, is ExecutionAlreadyExists."""

    def __init__(self) -> None:
        self.executions: dict[str, dict] = {}
        self.clock = lambda: datetime.now(UTC)

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict:
        held = self.executions.get(name)
        if held is not None:
            if held["input"] == json.loads(input) and held["status"] == "RUNNING":
                return held["response"]
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": name}}, "StartExecution")
        response = {"executionArn": stateMachineArn.replace(":stateMachine:", ":execution:") + f":{name}",
                    "startDate": self.clock()}
        self.executions[name] = {"input": json.loads(input), "status": "RUNNING", "response": response}
        return response

    def describe_execution(self, *, executionArn: str) -> dict:
        return {"status": self.executions[executionArn.rsplit(":", 1)[1]]["status"]}


@pytest.mark.parametrize(("event_type", "status", "route"), [
    ("order.placed", 10, "placed"), ("order.paid", 20, "paid"), ("order.status_changed", 40, "cancel"),
    ("order.status_changed", 20, None), ("order.status_changed", 30, None),
])
def test_route_only_events_order_to_cash_acts_on(event_type, status, route):
    assert DECLARATION.route_for(event(event_type, status)) == route


def test_execution_name_is_flow_and_order_guid_plus_kind_and_redrive():
    placed = event()
    assert execution_name(DECLARATION, FLOW, placed, "placed") == f"{FLOW}-{GUID}"
    assert execution_name(DECLARATION, FLOW, placed, "paid") == f"{FLOW}-{GUID}-paid"
    assert execution_name(DECLARATION, FLOW, placed, "cancel", attempt=3) == f"{FLOW}-{GUID}-cancel-r3"


def test_execution_name_over_80_characters_is_hashed_deterministically():
    long_flow = "a-very-long-flow-name-that-someone-configured-for-their-shop"
    name = execution_name(DECLARATION, long_flow, event(), "cancel", attempt=12)
    assert len(name) <= MAX_EXECUTION_NAME
    assert name == execution_name(DECLARATION, long_flow, event(), "cancel", attempt=12)
    assert name != execution_name(DECLARATION, long_flow, event(), "cancel", attempt=13)


def test_execution_name_without_order_guid_is_permanent():
    broken = FlowEvent(flow=FLOW, event_id="x", source="nopcommerce", type="order.placed",
                       timestamp=datetime.now(UTC), data={"Order": {}})
    with pytest.raises(PermanentError, match="OrderGuid"):
        execution_name(DECLARATION, FLOW, broken, "placed")


def test_starter_starts_once_and_a_duplicate_start_is_a_no_op():
    sfn = FakeStepFunctions()
    starter = ExecutionStarter(sfn, ARN, DECLARATION)
    first = starter.deliver(event())
    assert first.outcome == "started"
    assert sfn.executions[f"{FLOW}-{GUID}"]["input"]["route"] == "placed"
    assert json.loads(sfn.executions[f"{FLOW}-{GUID}"]["input"]["message"])["event_id"] == "msg_1"
    again = starter.deliver(event(event_id="msg_2"))  # the same order re-sent under another webhook id
    assert again.outcome == "duplicate"
    assert list(sfn.executions) == [f"{FLOW}-{GUID}"]


def test_starter_same_event_again_while_running_is_a_duplicate_not_a_second_start():
    # the same message redelivered (e.g. the worker died after starting): Step Functions answers the original
    sfn = FakeStepFunctions()
    assert ExecutionStarter(sfn, ARN, DECLARATION).deliver(event("order.paid", 30)).outcome == "started"
    redelivered = ExecutionStarter(sfn, ARN, DECLARATION, now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    sfn.clock = lambda: datetime.now(UTC) + timedelta(minutes=5)  # a new start would be stamped then
    again = redelivered.deliver(event("order.paid", 30))
    assert (again.outcome, again.detail["execution"]) == ("duplicate", f"{FLOW}-{GUID}-paid")
    assert list(sfn.executions) == [f"{FLOW}-{GUID}-paid"]


def test_starter_after_a_failed_execution_starts_the_next_name_a_redrive():
    sfn = FakeStepFunctions()
    starter = ExecutionStarter(sfn, ARN, DECLARATION)
    starter.deliver(event())
    sfn.executions[f"{FLOW}-{GUID}"]["status"] = "FAILED"
    assert starter.deliver(event()).detail["execution"] == f"{FLOW}-{GUID}-r2"


def test_starter_filters_status_changes_that_are_not_cancellations():
    sfn = FakeStepFunctions()
    assert ExecutionStarter(sfn, ARN, DECLARATION).deliver(event("order.status_changed", 30)).outcome == "filtered"
    assert sfn.executions == {}


def test_starter_missing_state_machine_is_permanent_and_throttling_retryable():
    class Refusing(FakeStepFunctions):
        def __init__(self, code: str) -> None:
            super().__init__()
            self.code = code

        def start_execution(self, **kwargs):
            raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "StartExecution")

    with pytest.raises(PermanentError):
        ExecutionStarter(Refusing("StateMachineDoesNotExist"), ARN, DECLARATION).deliver(event())
    with pytest.raises(RetryableError):
        ExecutionStarter(Refusing("ThrottlingException"), ARN, DECLARATION).deliver(event())


@pytest.mark.parametrize(("error", "expected"), [
    (RetryableError("5xx", reason="target_unavailable"), StepRetryable),
    (RetryableError("stale", reason="stale_sync_token"), StepRetryable),
    (fault_error({}, status=429, where="QBO"), StepThrottled),
    (RateLimitedError("qbo#1", retry_after=0.4), StepRateLimited),
    (OutOfOrderError("no invoice yet", reason="document_missing"), StepOutOfOrder),
    (PermanentError("unmapped product X", reason="unmapped_product"), StepFailed),
    (ConnectionConfigError("no refresh token"), StepFailed),
    (ConnectionDownError("invalid_grant", connection="quickbooks"), StepWaitingForConnection),
])
def test_run_step_translates_switchyard_errors_for_retry_and_catch(error, expected):
    def failing() -> dict:
        raise error

    with pytest.raises(expected) as raised:
        run_step(failing)
    details = json.loads(str(raised.value))
    assert details["reason"] == getattr(error, "reason", "connection_config_error")


def test_run_step_dead_credentials_mark_the_connection_and_wait():
    states = InMemoryConnectionStates()
    guard = ConnectionGuard(states, ("quickbooks", "nopcommerce"))

    def refused() -> dict:
        raise ConnectionDownError("QuickBooks refused the refresh", connection="quickbooks",
                                  target_status=400, target_response={"error": "invalid_grant"})

    with pytest.raises(StepWaitingForConnection) as raised:
        run_step(refused, guard=guard)

    assert json.loads(str(raised.value))["connection"] == "quickbooks"
    assert states.get("quickbooks").reason == "credentials_rejected"


def test_run_step_while_a_connection_waits_calls_nobody_then_runs_after_the_reconnect():
    states = InMemoryConnectionStates()
    states.mark_needs_reconnect("quickbooks", reason="credentials_rejected", message="invalid_grant")
    guard = ConnectionGuard(states, ("quickbooks", "nopcommerce"))
    calls: list[str] = []

    def step() -> dict:
        calls.append("called")
        return {"action": "created"}

    with pytest.raises(StepWaitingForConnection):
        run_step(step, guard=guard)
    assert calls == []

    states.mark_connected("quickbooks")
    assert run_step(step, guard=guard) == {"action": "created"}


def test_failure_letter_of_a_connection_that_never_came_back_says_so():
    with pytest.raises(StepWaitingForConnection) as raised:
        run_step(lambda: (_ for _ in ()).throw(ConnectionDownError("down", connection="quickbooks")))
    cause = lambda_cause(raised.value)

    letter = failure_letter(FLOW, {"event_id": "e1", "message": event().message,
                                   "error": {"Error": "StepWaitingForConnection", "Cause": cause}})

    assert (letter.error_class, letter.reason) == ("connection_down", "credentials_rejected")


def test_run_step_lets_a_bug_through_unchanged():
    def buggy() -> dict:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        run_step(buggy)


def lambda_cause(error: Exception) -> str:
    return json.dumps({"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []})


def test_failure_letter_reads_the_reason_from_a_step_error_cause():
    message = event().message
    with pytest.raises(StepFailed) as raised:
        run_step(lambda: (_ for _ in ()).throw(PermanentError("unmapped product MUG-1", reason="unmapped_product",
                                                               target_status=None)))
    state = {"event_id": "msg_1", "message": message,
             "error": {"Error": "StepFailed", "Cause": lambda_cause(raised.value)}}
    letter = failure_letter(FLOW, state)
    assert (letter.reason, letter.error_class, letter.message) == ("unmapped_product", "permanent",
                                                                   "unmapped product MUG-1")
    assert letter.original == message  # a redrive sends exactly this back to the flow's queue
    assert letter.event_id == "msg_1"


def test_failure_letter_of_a_states_error_names_it():
    letter = failure_letter(FLOW, {"message": "m", "error": {"Error": "States.Timeout", "Cause": ""}})
    assert letter.reason == "timeout"
    assert letter.error_class == "unexpected"


def test_failure_letter_of_an_unexpected_exception_keeps_its_message():
    cause = lambda_cause(KeyError("Order"))
    letter = failure_letter(FLOW, {"message": "m", "error": {"Error": "KeyError", "Cause": cause}})
    assert letter.reason == "key_error"
    assert "Order" in letter.message


def test_failure_letter_of_an_unexpected_exception_names_type_message_and_where():
    # an exception without a message (errorType "Exception") used to leave only "exception" behind
    where = "/var/task/switchyard/systems/quickbooks/order_to_cash.py"
    trace = [f'  File "{where}", line 412, in document\n    raise Exception()\n']
    cause = json.dumps({"errorMessage": "", "errorType": "Exception", "stackTrace": trace})
    letter = failure_letter(FLOW, {"message": "m", "error": {"Error": "Exception", "Cause": cause}})
    assert (letter.reason, letter.error_class) == ("exception", "unexpected")
    assert letter.message == "Exception (at order_to_cash.py:412 in document)"
    cause = json.dumps({"errorMessage": "'Order'", "errorType": "KeyError", "stackTrace": trace})
    letter = failure_letter(FLOW, {"message": "m", "error": {"Error": "KeyError", "Cause": cause}})
    assert letter.message == "KeyError: 'Order' (at order_to_cash.py:412 in document)"


def test_failure_letter_of_an_engine_error_with_a_plain_cause_keeps_both():
    # Step Functions' own errors carry a plain-text Cause (e.g. Lambda could not be invoked)
    state = {"message": "m", "error": {"Error": "Lambda.TooManyRequestsException", "Cause": "Rate exceeded"}}
    letter = failure_letter(FLOW, state)
    assert letter.message == "Lambda.TooManyRequestsException: Rate exceeded"
    assert letter.reason == "lambda_too_many_requests_exception"


def test_step_failure_log_names_the_error_its_cause_and_message():
    with pytest.raises(StepFailed) as raised:
        run_step(lambda: (_ for _ in ()).throw(PermanentError("unmapped product MUG-1", reason="unmapped_product")))
    assert step_failure(raised.value) == {"error_type": "StepFailed", "cause_type": "PermanentError",
                                          "reason": "unmapped_product", "error_class": "permanent",
                                          "error_message": "unmapped product MUG-1"}
    assert step_failure(ZeroDivisionError("division by zero")) == {
        "error_type": "ZeroDivisionError", "reason": "zero_division_error", "error_class": "unexpected",
        "error_message": "ZeroDivisionError: division by zero"}


def test_step_app_logs_every_failure_with_its_cause_before_raising():
    logged: list[tuple[str, str, dict]] = []

    class Logger:
        def warning(self, message, extra):
            logged.append(("warning", message, extra))

        def exception(self, message, extra):
            logged.append(("exception", message, extra))

    class Steps:
        def __init__(self, error):
            self.error = error

        def get(self):
            return self

        def run(self, step, state):
            raise self.error

    for error in (RetryableError("QuickBooks timed out", reason="target_timeout"), KeyError("Order")):
        app = StepApp(flow=FLOW, steps=Steps(error), dead_letters=None, logger=Logger())
        with pytest.raises((StepRetryable, KeyError)):
            app.handle({"step": "document", "state": {}})
    assert [(level, message, extra["step"], extra["error_type"], extra["error_message"])
            for level, message, extra in logged] == [
        ("warning", "step failed", "document", "StepRetryable", "QuickBooks timed out"),
        ("exception", "step failed", "document", "KeyError", "KeyError: 'Order'")]


def test_record_failure_sends_the_letter():
    sent = []

    class Letters:
        def send(self, letter):
            sent.append(letter)

    cause = lambda_cause(StepThrottled('{"reason": "rate_limited"}'))
    result = record_failure(FLOW, {"message": "m", "error": {"Error": "StepThrottled", "Cause": cause}}, Letters())
    assert result == {"dead_lettered": True, "reason": "rate_limited", "message": "StepThrottled"}
    assert sent[0].error_class == "retryable"


def test_failure_letter_marks_the_message_so_its_redrive_is_a_new_delivery():
    message = event().message
    letter = failure_letter(FLOW, {"message": message, "error": {"Error": "States.Timeout"}},
                            execution=f"{FLOW}-{GUID}")
    redriven = FlowEvent.from_message(letter.original)
    first = FlowEvent.from_message(message)
    assert redriven.event_id == first.event_id and redriven.data == first.data
    assert redriven.idempotency_key == {"flow": FLOW, "event_id": "msg_1", "retry_of": f"{FLOW}-{GUID}"}
    assert first.idempotency_key == {"flow": FLOW, "event_id": "msg_1"}


def test_starter_refuses_an_event_too_large_for_an_execution_with_a_clear_reason():
    huge = FlowEvent.from_message(flow_message(
        flow=FLOW, event_id="msg_big", source="nopcommerce", event_type="order.placed",
        timestamp="2026-11-25T10:00:00+00:00", received_at="2026-11-25T10:00:01+00:00",
        body=json.dumps({"type": "order.placed", "timestamp": "2026-11-25T10:00:00Z",
                         "data": {"Order": {"OrderGuid": GUID}, "OrderItems": [{"Note": "x" * 250_000}]}})))
    sfn = FakeStepFunctions()
    with pytest.raises(PermanentError) as raised:
        ExecutionStarter(sfn, ARN, DECLARATION).deliver(huge)
    assert raised.value.reason == "execution_input_too_large"
    assert sfn.executions == {}


class Letters:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, letter) -> None:
        self.sent.append(letter)


@pytest.mark.parametrize(("status", "reason", "error_class"), [
    ("TIMED_OUT", "execution_timed_out", "timed_out"), ("ABORTED", "execution_aborted", "aborted"),
    ("FAILED", "execution_failed", "unexpected"),
])
def test_an_execution_that_ended_without_its_dead_letter_is_dead_lettered_with_the_reason(status, reason,
                                                                                          error_class):
    message = event().message
    letters = Letters()
    detail = {"status": status, "name": f"{FLOW}-{GUID}", "error": "States.Runtime" if status == "FAILED" else None,
              "cause": "no route" if status == "FAILED" else None,
              "input": json.dumps({"event_id": "msg_1", "message": message})}
    assert record_result(detail, letters)["dead_lettered"] is True
    (letter,) = letters.sent
    assert (letter.reason, letter.error_class, letter.event_id) == (reason, error_class, "msg_1")
    assert letter.message.startswith(f"execution {FLOW}-{GUID} {status.lower().replace('_', ' ')}")
    assert json.loads(letter.original)["retry_of"] == f"{FLOW}-{GUID}"  # its redrive is a new delivery


def record_result(detail, letters, describe=None):
    from switchyard.state_machines import execution_ended

    return execution_ended(FLOW, detail, letters, describe=describe)


def test_an_execution_dead_lettered_by_its_failure_handler_or_still_fine_is_not_dead_lettered_again():
    from switchyard.state_machines import DEAD_LETTERED

    letters = Letters()
    assert record_result({"status": "FAILED", "error": DEAD_LETTERED}, letters)["reason"] == "dead_lettered_already"
    assert record_result({"status": "SUCCEEDED"}, letters)["reason"] == "not_a_failure"
    assert letters.sent == []


def test_an_ended_execution_whose_input_eventbridge_left_out_is_read_back():
    letters = Letters()
    described = []

    def describe(arn):
        described.append(arn)
        return {"input": json.dumps({"event_id": "msg_9", "message": event(event_id="msg_9").message})}

    record_result({"status": "TIMED_OUT", "name": "x", "executionArn": "arn:x", "input": None}, letters, describe)
    assert described == ["arn:x"] and letters.sent[0].event_id == "msg_9"


def test_failure_letter_reads_a_reason_the_machine_or_a_wait_put_in_the_cause():
    cause = json.dumps({"reason": "wait_timed_out", "error_class": "timed_out", "message": "no shipment in 30 days"})
    letter = failure_letter(FLOW, {"message": "m", "error": {"Error": "wait_timed_out", "Cause": cause}})
    assert (letter.reason, letter.error_class, letter.message) == ("wait_timed_out", "timed_out",
                                                                   "no shipment in 30 days")


def test_step_app_runs_a_declared_handler_by_name_and_names_the_known_ones_for_an_unknown():
    from switchyard.state_machines import StepHandlers

    class Bound:
        def get(self):
            return StepHandlers({"erp.customer": lambda state: {"id": state["n"]}})

    app = StepApp(flow=FLOW, steps=Bound(), dead_letters=None)
    assert app.handle({"step": "erp.customer", "state": {"n": 7}}) == {"id": 7}
    with pytest.raises(ValueError, match=r"unknown step 'erp\.order'; this flow's steps are erp\.customer"):
        app.handle({"step": "erp.order", "state": {}})


def test_a_step_that_applies_nothing_on_purpose_records_a_drop_with_its_reason():
    """Chaos seed 7: a cancellation whose order was never booked (its order.placed in the DLQ) ran, voided
    nothing and left no reason anywhere. A step says why in its result; the step app records the drop as
    a worker does: logged, counted by reason, listed by `switchyard drops`."""
    from switchyard.drops import InMemoryDropLog
    from switchyard.state_machines import STEP_DROPPED, StepHandlers

    logged, counted = [], []

    class Logger:
        def warning(self, message, extra):
            logged.append((message, extra["reason"], extra["event_id"]))

        def info(self, message, extra):
            pass

    class Bound:
        def get(self):
            return StepHandlers({"erp.cancel": lambda state: {"action": "nothing_to_void",
                                                              STEP_DROPPED: "nothing_to_void"},
                                 "erp.document": lambda state: {"action": "created", "id": "7"}})

    drops = InMemoryDropLog()
    app = StepApp(flow=FLOW, steps=Bound(), dead_letters=None, logger=Logger(), drops=drops,
                  count_drop=lambda flow, reason: counted.append((flow, reason)))
    state = {"event_id": "evt-cancel", "type": "order.status_changed", "message": "{}"}
    assert app.handle({"step": "erp.cancel", "state": state})["action"] == "nothing_to_void"
    assert app.handle({"step": "erp.document", "state": {**state, "event_id": "evt-placed"}})["id"] == "7"

    (drop,) = drops.list(FLOW)
    assert (drop.event_id, drop.event_type, drop.reason, drop.detail["step"]) == (
        "evt-cancel", "order.status_changed", "nothing_to_void", "erp.cancel")
    assert counted == [(FLOW, "nothing_to_void")]
    assert logged == [("dropped", "nothing_to_void", "evt-cancel")]


def test_a_drop_that_cannot_be_recorded_does_not_fail_the_step_that_is_done():
    from switchyard.drops import Drop
    from switchyard.state_machines import STEP_DROPPED, record_step_drop

    class Broken:
        def record(self, drop: Drop) -> None:
            raise RuntimeError("table unavailable")

        def list(self, flow: str) -> list[Drop]:
            return []

    warnings = []

    class Logger:
        def warning(self, message, extra):
            warnings.append(message)

    drop = record_step_drop(FLOW, "erp.cancel", {"event_id": "e"}, {STEP_DROPPED: "nothing_to_void"},
                            drops=Broken(), logger=Logger())
    assert drop is not None and drop.reason == "nothing_to_void"
    assert warnings == ["dropped", "drop not recorded"]
    assert record_step_drop(FLOW, "erp.cancel", {"event_id": "e"}, {"action": "voided"}, drops=Broken()) is None


# --------------------------------------------------------------------------- several steps in one task

class _Logged:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def warning(self, message, extra):
        self.lines.append(("warning", message, extra))

    def exception(self, message, extra):
        self.lines.append(("exception", message, extra))

    def info(self, message, extra):
        self.lines.append(("info", message, extra))


def _bound(handlers):
    from switchyard.state_machines import StepHandlers

    class Bound:
        def get(self):
            return StepHandlers(handlers)

    return Bound()


def test_several_steps_in_one_task_each_see_the_results_before_them_and_return_the_whole_state():
    seen = []

    def customer(state):
        seen.append(("customer", dict(state)))
        return {"id": "C1"}

    def document(state):
        seen.append(("document", dict(state)))
        return {"id": "D1", "customer": state["customer"]["id"]}

    app = StepApp(flow=FLOW, steps=_bound({"erp.customer": customer, "erp.document": document}), dead_letters=None)
    state = {"event_id": "e1", "route": "placed", "message": "{}"}
    result = app.handle({"steps": ["erp.customer", "erp.document"], "state": state})

    # what a Choice or a later state reads: each step's result under its name, the input kept
    assert result == {**state, "customer": {"id": "C1"}, "document": {"id": "D1", "customer": "C1"}}
    assert seen == [("customer", state), ("document", {**state, "customer": {"id": "C1"}})]
    assert state == {"event_id": "e1", "route": "placed", "message": "{}"}  # the input is not changed


def test_the_route_picks_the_steps_of_a_task_that_runs_each_route_its_own_and_an_unknown_route_fails_for_good():
    ran = []
    handlers = {name: (lambda state, name=name: ran.append(name) or {"ok": name})
                for name in ("erp.customer", "erp.document", "erp.cancel")}
    app = StepApp(flow=FLOW, steps=_bound(handlers), dead_letters=None)
    by_route = {"placed": ["erp.customer", "erp.document"], "cancel": ["erp.cancel"]}

    assert app.handle({"steps_by_route": by_route, "state": {"route": "cancel"}})["cancel"] == {"ok": "erp.cancel"}
    assert ran == ["erp.cancel"]
    with pytest.raises(StepFailed) as raised:
        app.handle({"steps_by_route": by_route, "state": {"route": "refund"}})
    assert json.loads(str(raised.value))["reason"] == "unknown_route"
    assert ran == ["erp.cancel"]


@pytest.mark.parametrize(("error", "expected"), [
    (PermanentError("unmapped product GIFT-1", reason="unmapped_product"), StepFailed),
    (fault_error({}, status=429, where="QBO"), StepThrottled),
    (RateLimitedError("qbo#1", retry_after=0.4), StepRateLimited),
    (OutOfOrderError("the invoice is not there yet", reason="document_missing"), StepOutOfOrder),
    (RetryableError("QuickBooks answered 503", reason="target_5xx"), StepRetryable),
])
def test_an_inner_step_that_fails_keeps_its_error_class_and_the_log_and_cause_name_it(error, expected):
    ran = []

    def fails(state):
        ran.append("items")
        raise error

    handlers = {"erp.customer": lambda state: ran.append("customer") or {"id": "C1"}, "erp.items": fails,
                "erp.document": lambda state: ran.append("document") or {"id": "D1"}}
    logged = _Logged()
    app = StepApp(flow=FLOW, steps=_bound(handlers), dead_letters=None, logger=logged)
    with pytest.raises(expected) as raised:
        app.handle({"steps": ["erp.customer", "erp.items", "erp.document"], "state": {"event_id": "e1"}})

    assert type(raised.value) is expected  # the Retry/Catch of its class applies to the whole task
    assert ran == ["customer", "items"]  # nothing after the failing step
    details = json.loads(str(raised.value))
    assert (details["step"], details["reason"]) == ("erp.items", error.reason)
    assert raised.value.__cause__ is error
    (line,) = logged.lines
    assert (line[0], line[1], line[2]["step"], line[2]["error_type"]) == ("warning", "step failed", "erp.items",
                                                                          expected.__name__)
    # the dead letter Catch writes from it keeps the inner step's reason and message
    letter = failure_letter(FLOW, {"event_id": "e1", "message": "{}",
                                   "error": {"Error": expected.__name__, "Cause": lambda_cause(raised.value)}})
    assert (letter.reason, letter.message) == (error.reason, error.message)


def test_a_bug_in_an_inner_step_leaves_unchanged_and_is_logged_with_the_inner_step():
    logged = _Logged()
    handlers = {"erp.customer": lambda state: {"id": "C1"}, "erp.items": lambda state: state["missing"]}
    app = StepApp(flow=FLOW, steps=_bound(handlers), dead_letters=None, logger=logged)
    with pytest.raises(KeyError):
        app.handle({"steps": ["erp.customer", "erp.items"], "state": {}})
    assert [(level, extra["step"], extra["error_type"]) for level, _, extra in logged.lines] == [
        ("exception", "erp.items", "KeyError")]


def test_several_steps_check_the_connections_once_and_stop_before_calling_anyone_while_one_waits():
    states = InMemoryConnectionStates()
    checks = []

    class CountingGuard(ConnectionGuard):
        def check(self) -> None:
            checks.append(1)
            super().check()

    guard = CountingGuard(states, ["quickbooks"])
    ran = []
    handlers = {name: (lambda state, name=name: ran.append(name) or {}) for name in ("erp.a", "erp.b", "erp.c")}
    app = StepApp(flow=FLOW, steps=_bound(handlers), dead_letters=None, guard=guard)
    app.handle({"steps": ["erp.a", "erp.b", "erp.c"], "state": {}})
    assert (len(checks), ran) == (1, ["erp.a", "erp.b", "erp.c"])

    states.mark_needs_reconnect("quickbooks", reason="credentials_rejected", message="invalid_grant")
    with pytest.raises(StepWaitingForConnection):
        app.handle({"steps": ["erp.a", "erp.b"], "state": {}})
    assert ran == ["erp.a", "erp.b", "erp.c"]


def test_each_inner_step_that_applies_nothing_on_purpose_records_its_drop_and_the_next_steps_still_run():
    from switchyard.drops import InMemoryDropLog
    from switchyard.state_machines import STEP_DROPPED

    drops = InMemoryDropLog()
    handlers = {"erp.cancel": lambda state: {"action": "nothing_to_void", STEP_DROPPED: "nothing_to_void"},
                "erp.write_back": lambda state: {"note": None, "saw": state["cancel"]["action"]}}
    app = StepApp(flow=FLOW, steps=_bound(handlers), dead_letters=None, drops=drops)
    result = app.handle({"steps": ["erp.cancel", "erp.write_back"],
                         "state": {"event_id": "evt-c", "type": "order.status_changed", "message": "{}"}})
    assert result["write_back"] == {"note": None, "saw": "nothing_to_void"}
    (drop,) = drops.list(FLOW)
    assert (drop.reason, drop.detail["step"]) == ("nothing_to_void", "erp.cancel")


def test_a_task_request_is_labelled_with_its_step_or_its_steps():
    from switchyard.state_machines import step_label

    assert step_label({"step": "quickbooks.items", "state": {}}) == "quickbooks.items"
    assert step_label({"steps": ["a.x", "a.y"], "state": {}}) == "a.x+a.y"
    assert step_label({"steps_by_route": {"paid": ["a.p", "a.w"]}, "state": {"route": "paid"}}) == "a.p+a.w"
    assert step_label({"steps_by_route": {"paid": ["a.p"]}, "state": {"route": "nope"}}) is None
