"""The state machine declaration language of flows.yaml: what it accepts, the clear errors it gives, the
executions it names, and the rules every rendered definition keeps (check_definition)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from switchyard.catalog import load_catalog
from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.machine_declaration import DefinitionError, StateMachineConfig, check_definition

BASE: dict[str, Any] = {
    "key": "Order.OrderGuid",
    "timeout_days": 45,
    "routes": {"placed": {"event": "order.placed", "suffix": ""},
               "cancel": {"event": "order.status_changed", "where": {"Order.OrderStatusId": 40}}},
    "states": {
        "Route": {"choose": [{"route": "placed", "next": "Create"}, {"route": "cancel", "next": "Cancel"}]},
        "Create": {"run": "erp.create_order", "next": "Shipment", "compensate": "Undo"},
        "Shipment": {"wait_for": "shipment", "timeout_days": 30, "alarm_after_hours": 72, "heartbeat_hours": 24,
                     "next": "Ship"},
        "Ship": {"run": "shop.ship"},
        "Cancel": {"run": "erp.cancel_order", "next": "EndWait"},
        "EndWait": {"cancel_wait": "shipment"},
        "Undo": {"run": "erp.undo_order"},
    },
}


def declared(**changes: Any) -> StateMachineConfig:
    states = {**BASE["states"], **changes.pop("states", {})}
    return StateMachineConfig.model_validate({**BASE, **changes, "states": {k: v for k, v in states.items() if v}})


def event(event_type: str, status: Any = 10, guid: Any = "6f1c2b7e-3a7d") -> FlowEvent:
    return FlowEvent(flow="f", event_id="e1", source="shop", type=event_type, timestamp=datetime.now(UTC),
                     data={"Order": {"OrderGuid": guid, "OrderStatusId": status}})


def test_a_declaration_with_a_wait_compensation_and_cancel_is_accepted_with_its_parts():
    machine = declared()
    assert machine.start == "Route"
    assert machine.handlers == ("erp.create_order", "shop.ship", "erp.cancel_order", "erp.undo_order")
    assert set(machine.waits) == {"shipment"}
    wait = machine.waits["shipment"]
    assert (wait.wait_timeout_seconds, wait.alarm_after, wait.heartbeat) == (30 * 86_400, 72 * 3600, 24 * 3600)
    assert machine.compensations == {"Undo"}
    assert machine.execution_timeout_minutes == 45 * 1440  # a shipment takes weeks: days, not hours


@pytest.mark.parametrize(("changes", "message"), [
    ({"states": {"Ship": {"run": "shop.ship", "next": "Invoice"}}}, "goes to 'Invoice', which is not a declared"),
    ({"states": {"Orphan": {"run": "erp.orphan"}}}, "unreachable states (nothing leads to them from 'Route'): Orphan"),
    ({"states": {"Route": {"choose": [{"route": "placed", "next": "Create"}],
                           "otherwise": "Cancel"}}}, "routes no choice takes: ['cancel']"),
    ({"states": {"Route": {"choose": [{"route": "paid", "next": "Create"}, {"route": "cancel", "next": "Cancel"}]}}},
     "chooses route 'paid', which is not declared"),
    ({"states": {"Ship": {"run": "shop.ship", "next": "Undo"}}}, "both on the way and a compensation"),
    ({"states": {"Shipment": {"wait_for": "shipment", "next": "Ship"}}}, "needs one of timeout_days"),
    ({"states": {"Shipment": {"wait_for": "shipment", "timeout_hours": 3}}}, "timeout_hours"),
    ({"states": {"Shipment": {"wait_for": "shipment", "timeout_days": 2, "alarm_after_hours": 48, "next": "Ship"}}},
     "alarm_after must be shorter than its timeout"),
    ({"states": {"Shipment": {"wait_for": "shipment", "timeout_days": 2, "heartbeat_hours": 49, "next": "Ship"}}},
     "the heartbeat must be shorter than the wait"),
    ({"states": {"EndWait": {"cancel_wait": "invoice"}}}, "cancels wait 'invoice', which no state waits for"),
    ({"states": {"Create": {"run": "CreateOrder", "next": "Shipment"}}}, "must be <system>.<step>"),
    ({"states": {"Create": {"run": "erp.create", "choose": [], "next": "Shipment"}}}, "exactly one of run, choose"),
    ({"states": {"Ship": {"run": "shop.ship", "result": "message"}}}, "reserved"),
    ({"states": {"Done": {"run": "shop.done"}, "Ship": {"run": "shop.ship", "next": "Done"}}}, "state name 'Done'"),
    ({"routes": {"placed": {"event": "order.placed", "suffix": ""}, "cancel": {"event": "order.cancelled",
                                                                            "suffix": ""}}},
     "name their executions alike"),
    ({"timeout_minutes": 5}, "timeout_minutes or timeout_days (one of them)"),
    ({"states": {"Ship": {"run": "shop.ship", "next": "ShipmentAgain"}, "ShipmentAgain": {"run": "shop.again"}}},
     "state names ['ShipmentAgain'] are the builder's for wait state 'Shipment'"),
])
def test_a_broken_declaration_fails_with_a_clear_error(changes, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        declared(**changes)


def test_steps_that_always_run_together_are_one_state_each_result_under_its_own_name():
    machine = declared(states={"Create": {"run": ["erp.customer", "erp.create_order"], "next": "Shipment",
                                          "compensate": "Undo"}})
    create = machine.states["Create"]
    assert create.runs_several and create.sequences == {None: ("erp.customer", "erp.create_order")}
    assert create.results() == {"customer": "erp.customer", "create_order": "erp.create_order"}
    assert machine.handlers[:2] == ("erp.customer", "erp.create_order")
    single = machine.states["Ship"]
    assert (single.runs_several, single.sequences, single.results()) == (False, {None: ("shop.ship",)},
                                                                         {"ship": "shop.ship"})


def test_one_state_can_run_each_route_its_own_steps_without_a_choice():
    machine = declared(states={
        "Route": None, "Shipment": None, "Ship": None, "EndWait": None, "Create": None, "Cancel": None, "Undo": None,
        "Book": {"run": {"placed": ["erp.customer", "erp.create_order"], "cancel": ["erp.cancel_order"]}}})
    assert machine.start == "Book"
    assert machine.states["Book"].sequences == {"placed": ("erp.customer", "erp.create_order"),
                                                "cancel": ("erp.cancel_order",)}
    assert machine.handlers == ("erp.customer", "erp.create_order", "erp.cancel_order")


ONLY_BOOK = {"Route": None, "Shipment": None, "Ship": None, "EndWait": None, "Create": None, "Cancel": None,
             "Undo": None}


@pytest.mark.parametrize(("states", "message"), [
    ({"Create": {"run": ["erp.customer", "erp.customer"], "next": "Shipment"}}, "store two results under one name"),
    ({"Create": {"run": ["erp.customer", "Erp.Order"], "next": "Shipment"}}, "'Erp.Order' must be <system>.<step>"),
    ({"Create": {"run": [], "next": "Shipment"}}, "a list of steps needs at least one step"),
    ({"Create": {"run": ["erp.customer", "erp.route"], "next": "Shipment"}}, "would overwrite the execution's own"),
    ({"Create": {"run": ["erp.customer", "erp.order"], "result": "both", "next": "Shipment"}},
     "each step's result under its own name: no result"),
    # a list and another state would both write $.ship with different handlers
    ({"Create": {"run": ["erp.customer", "erp.ship"], "next": "Shipment", "compensate": "Undo"}},
     "both store their result as 'ship'"),
    ({**ONLY_BOOK, "Book": {"run": {"placed": ["erp.customer"], "paid": ["erp.payment"]}}},
     "runs steps for routes ['paid'], which are not declared"),
    ({**ONLY_BOOK, "Book": {"run": {"placed": ["erp.customer"]}}}, "routes no choice takes: ['cancel']"),
    ({**ONLY_BOOK, "Book": {"run": {}}}, "run by route needs at least one route"),
])
def test_a_broken_list_of_steps_fails_with_a_clear_error(states, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        declared(states=states)


def test_routes_match_the_event_type_and_its_fields_compared_as_text():
    machine = declared()
    assert machine.route_for(event("order.placed")) == "placed"
    assert machine.route_for(event("order.status_changed", 40)) == "cancel"
    assert machine.route_for(event("order.status_changed", "40")) == "cancel"
    assert machine.route_for(event("order.status_changed", 30)) is None
    assert machine.route_for(event("order.paid")) is None


def test_executions_are_named_by_flow_key_and_route_suffix():
    machine = declared()
    assert machine.execution_name("shop-to-erp", event("order.placed"), "placed") == "shop-to-erp-6f1c2b7e-3a7d"
    assert machine.execution_name("shop-to-erp", event("order.placed"), "cancel", 2) == \
        "shop-to-erp-6f1c2b7e-3a7d-cancel-r2"
    assert machine.execution_name("f", event("order.placed", guid="a b/c"), "placed") == "f-a_b_c"
    for missing in (None, "", {"nested": 1}):
        with pytest.raises(PermanentError, match=r"the event has no Order\.OrderGuid"):
            machine.execution_name("f", event("order.placed", guid=missing), "placed")


def test_the_order_to_cash_declaration_routes_as_the_hard_wired_machine_did_plus_refunds():
    machine = load_catalog().flows["nopcommerce-to-quickbooks"].state_machine
    assert list(machine.routes) == ["placed", "paid", "cancel", "refund"]
    assert [machine.suffix(route) for route in machine.routes] == ["", "-paid", "-cancel", "-refund"]
    assert machine.handlers == tuple(f"quickbooks.{step}" for step in
                                     ("customer", "items", "document", "write_back", "payment", "cancel", "refund"))
    assert machine.waits == {}


def test_a_refund_is_one_execution_per_running_total_and_only_when_refunded():
    machine = load_catalog().flows["nopcommerce-to-quickbooks"].state_machine
    order = {"OrderGuid": "g-1", "PaymentStatusId": 35, "RefundedAmount": "25.50"}
    def event(**changes: Any) -> FlowEvent:
        return FlowEvent(flow="f", event_id="e", source="nopcommerce", type="order.refunded",
                         timestamp=datetime(2026, 12, 3, tzinfo=UTC), data={"Order": {**order, **changes}})

    partial, full = event(), event(PaymentStatusId=40, RefundedAmount="100.00")
    not_refunded = event(PaymentStatusId=30)
    assert machine.routes["refund"].matches(partial) and machine.routes["refund"].matches(full)
    assert not machine.routes["refund"].matches(not_refunded)
    names = {machine.execution_name("f", event, "refund") for event in (partial, full)}
    assert names == {"f-g-1-refund-25_50", "f-g-1-refund-100_00"}


def definition(**states: dict[str, Any]) -> dict[str, Any]:
    catch = [{"ErrorEquals": ["States.ALL"], "Next": "RecordFailure"}]
    base = {"Step": {"Type": "Task", "Resource": "x", "Catch": catch, "Next": "Done"},
            "RecordFailure": {"Type": "Task", "Resource": "x", "Next": "Failed"},
            "Failed": {"Type": "Fail"}, "Done": {"Type": "Succeed"}}
    return {"StartAt": "Step", "States": {**base, **states}}


def test_check_definition_accepts_a_machine_whose_every_task_catches_to_the_failure_handler():
    check_definition(definition())


@pytest.mark.parametrize(("states", "message"), [
    ({"Step": {"Type": "Task", "Resource": "x", "Next": "Done"}}, "task 'Step' has no Catch of States.ALL"),
    ({"Step": {"Type": "Task", "Resource": "x", "Next": "Done",
               "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "RecordFailure"},
                         {"ErrorEquals": ["States.Timeout"], "Next": "Done"}]}}, "no Catch of States.ALL \\(last\\)"),
    ({"Step": {"Type": "Task", "Resource": "x", "Next": "Ship",
               "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "RecordFailure"}]}}, "unknown state 'Ship'"),
    ({"Lost": {"Type": "Succeed"}}, "state 'Lost' is unreachable"),
    ({"Step": {"Type": "Task", "Resource": "x",
               "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "RecordFailure"}]}}, "neither Next nor End"),
])
def test_check_definition_names_what_breaks_the_rules(states, message):
    with pytest.raises(DefinitionError, match=message):
        check_definition(json.loads(json.dumps(definition(**states))))


def test_every_step_a_flow_declares_is_provided_by_a_system():
    from switchyard.registry import step_names

    provided = set(step_names())
    for flow in load_catalog().flows.values():
        if flow.state_machine is not None:
            assert set(flow.state_machine.handlers) <= provided, flow.name
