"""nopCommerce ⇄ BNG as flows.yaml declares it: order-to-cash waits (in days) for BNG's shipment, with an
alarm when it is overdue; BNG's webhook flow may answer that wait's token."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

FLOW = "nopcommerce-to-bng"
WEBHOOKS = "bng-to-nopcommerce"


@pytest.fixture(scope="module")
def states(dev):
    machine = dev.one(role="state-machine", flow=FLOW)
    return json.loads(dev.render(machine.properties["DefinitionString"]))


def test_order_to_cash_creates_the_customer_then_the_order_then_waits_for_the_shipment(states):
    by_name = states["States"]
    assert by_name["Customer"]["Parameters"]["step"] == "bng.customer"
    assert by_name["Customer"]["Next"] == "SalesOrder"
    assert by_name["SalesOrder"]["Next"] == "Shipment"
    assert by_name["SalesOrder"]["Catch"][-1]["Next"] == "CancelOrder"  # the compensation, then the DLQ
    # the placed execution's own cancel: the event it carries is order.placed, not a cancellation
    assert by_name["CancelOrder"]["Parameters"]["step"] == "bng.cancel_order"
    first, again = by_name["Shipment"], by_name["ShipmentAgain"]
    for task in (first, again):
        assert task["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
        assert task["Parameters"]["Payload"]["wait"] == "shipment"
        assert task["Next"] == "WriteShipment"
        # a cancellation that reached the wait before the sales order existed: cancelled now, no dead letter
        [cancelled] = [c for c in task["Catch"] if c["ErrorEquals"] == ["WaitCancelled"]]
        assert cancelled["Next"] == "CancelLateOrder"
    assert by_name["CancelLateOrder"]["Parameters"]["step"] == "bng.cancel_order"
    # the execution succeeds: no dead letter (the task ends it: no Succeed state, one transition less)
    assert by_name["CancelLateOrder"]["End"] is True and "Next" not in by_name["CancelLateOrder"]
    assert "Done" not in by_name
    assert first["TimeoutSeconds"] == 240 * 3600  # overdue after 10 days: WaitsOverdue, then it waits on
    assert again["TimeoutSeconds"] == 45 * 86_400 - 240 * 3600
    assert by_name["WriteShipment"]["Parameters"]["step"] == "bng.write_shipment"
    assert (by_name["Cancel"]["Next"], by_name["EndWait"]["Parameters"]["step"]) == ("EndWait", "wait.cancel")
    assert states["TimeoutSeconds"] == (60 + 14) * 86_400  # its 60 days plus a reconnect's 14


def test_order_to_cash_alarms_when_a_shipment_is_overdue(dev):
    alarms = [a for a in dev.of_type("AWS::CloudWatch::Alarm") if a.properties.get("MetricName") == "WaitsOverdue"]
    assert [a.properties["Dimensions"] for a in alarms] == [[{"Name": "service", "Value": FLOW}]]


def test_bngs_webhook_worker_may_answer_the_shipment_wait_and_reads_both_connections(dev):
    from tests.infra.test_infra_table_access import granted_patterns

    worker = dev.one(role="worker", flow=WEBHOOKS)
    assert granted_patterns(dev, worker)[f"wait#{FLOW}#*"] == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    granted = dev.actions_on(dev.by_ref(dev.render(worker.properties["Role"])).ref)
    [machine_arn] = [resource for resource in granted if resource.endswith(f":stateMachine:Switchyard-dev-{FLOW}")]
    assert granted[machine_arn] == {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
    for connection in ("bng", "nopcommerce"):
        assert "secretsmanager:GetSecretValue" in granted[dev.one(secret=f"connection:{connection}").ref]


def test_the_order_to_cash_steps_read_bng_and_nopcommerce_and_write_neither_secret(dev):
    steps = dev.one(role="steps", flow=FLOW)
    granted = dev.actions_on(dev.by_ref(dev.render(steps.properties["Role"])).ref)
    for connection in ("bng", "nopcommerce"):
        actions = granted[dev.one(secret=f"connection:{connection}").ref]
        assert "secretsmanager:GetSecretValue" in actions and "secretsmanager:PutSecretValue" not in actions


def test_bngs_changed_since_lists_are_swept_on_a_schedule_into_bng_to_nopcommerce(dev, catalog):
    """The shipment poll (a shipment whose webhook never came still ends the wait) and the product sync (stock
    and attributes; the first scan is the bulk fill) run as the bng source's poller, every minute."""
    from switchyard.table_keys import poll_grants

    from tests.infra.test_infra_poller import poller, schedule_of
    from tests.infra.test_infra_table_access import granted_patterns

    function = poller(dev, "bng")
    env = dev.render(function.properties["Environment"]["Variables"])
    assert (env["SWITCHYARD_DELIVERY"], env["SWITCHYARD_POLL_SYSTEM"], env["SWITCHYARD_POLL_CONNECTION"]) == (
        "both", "bng", "bng")
    assert json.loads(env["SWITCHYARD_POLL"])["start"] == "2000-01-01"  # the first scan reads every product
    assert {"shipment.created", "product.changed"} <= set(json.loads(env["SWITCHYARD_ROUTES"]))
    schedule = schedule_of(dev, function)
    assert schedule.properties["ScheduleExpression"] == "rate(1 minute)"
    role = dev.by_ref(dev.render(schedule.properties["Target"])["RoleArn"])
    assert dev.actions_on(role.ref) == {function.att("Arn"): {"lambda:InvokeFunction"}}
    granted = dev.actions_on(dev.by_ref(dev.render(function.properties["Role"])).ref)
    [queue] = [q.att("Arn") for q in dev.tagged(role="queue") if q.metadata["switchyard:flow"] == "bng-to-nopcommerce"]
    assert {r for r, actions in granted.items() if "sqs:SendMessage" in actions} == {queue}
    assert granted_patterns(dev, function) == {f"{g.prefix}*": {f"dynamodb:{a}" for a in g.actions}
                                               for g in poll_grants("bng", "bng")}
