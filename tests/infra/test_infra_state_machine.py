"""Flows that run as state machines: the order-to-cash definition, its retries and catch, the starter's grants."""

from __future__ import annotations

import json

import pytest
from switchyard.settings import StepSettings
from switchyard.state_machines import STEP_ERRORS

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

FLOW = "nopcommerce-to-quickbooks"
TASKS = ("Book",)
# the one task's steps per route (flows.yaml): Standard bills per state transition, so the route picks them
STEPS_BY_ROUTE = {
    "placed": ["quickbooks.customer", "quickbooks.items", "quickbooks.document", "quickbooks.write_back"],
    "paid": ["quickbooks.payment", "quickbooks.write_back"],
    "cancel": ["quickbooks.cancel", "quickbooks.write_back"],
    "refund": ["quickbooks.refund", "quickbooks.write_back"]}


@pytest.fixture(scope="module")
def machine(dev):
    return dev.one(role="state-machine", flow=FLOW)


@pytest.fixture(scope="module")
def definition(dev, machine):
    rendered = dev.render(machine.properties["DefinitionString"])
    return json.loads(rendered)


@pytest.fixture(scope="module")
def steps(dev):
    return dev.one(role="steps", flow=FLOW)


def test_state_machine_one_per_state_machine_flow_standard_traced_logged(dev, catalog, machine):
    wanted = {f.name for f in catalog.flows.values() if f.runs_as == "state-machine"}
    assert {r.metadata["switchyard:flow"] for r in dev.tagged(role="state-machine")} == wanted
    assert machine.properties["StateMachineType"] == "STANDARD"
    assert machine.properties["TracingConfiguration"] == {"Enabled": True}
    logging = machine.properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False  # orders carry personal data


def test_state_machine_is_one_task_whose_route_picks_its_steps_and_ends_the_execution(definition):
    states = definition["States"]
    # a paid order's execution enters one state: Book (no Choice before it, no Succeed after it)
    assert definition["StartAt"] == "Book"
    assert set(states) == {"Book", "RecordFailure", "Failed"}
    book = states["Book"]
    assert book["Parameters"]["steps_by_route"] == STEPS_BY_ROUTE
    assert book["Parameters"]["state.$"] == "$"
    assert "step" not in book["Parameters"]
    # the steps function returns the whole state, each step's result under its name (where write_back reads it)
    assert book["ResultPath"] == "$"
    assert book["End"] is True and "Next" not in book


def test_state_machine_every_step_retries_by_error_class_and_catches_to_the_failure_handler(definition, catalog):
    config = catalog.flows[FLOW].state_machine
    states = definition["States"]
    for name in TASKS:
        task = states[name]
        retriers = {tuple(r["ErrorEquals"]): r for r in task["Retry"]}
        for error, retry in (("StepRetryable", config.retry), ("StepThrottled", config.throttled),
                             ("StepRateLimited", config.rate_limited), ("StepOutOfOrder", config.out_of_order)):
            rule = retriers[(error,)]
            assert rule["IntervalSeconds"] == retry.interval_seconds
            assert rule["MaxAttempts"] == retry.max_attempts
            assert rule["JitterStrategy"] == ("FULL" if retry.jitter else "NONE")
        assert set(STEP_ERRORS) - {"StepFailed"} <= {e for r in task["Retry"] for e in r["ErrorEquals"]}
        assert "StepFailed" not in {e for r in task["Retry"] for e in r["ErrorEquals"]}  # permanent: no retry
        (catch,) = task["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
    assert states["RecordFailure"]["Parameters"]["step"] == "record_failure"
    assert states["RecordFailure"]["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_state_machine_a_429_waits_60_seconds_without_jitter(catalog):
    throttled = catalog.flows[FLOW].state_machine.throttled
    assert (throttled.interval_seconds, throttled.backoff_rate, throttled.jitter) == (60, 1.0, False)


def test_state_machine_steps_environment_parses_as_settings(dev, steps):
    env = dev.render(steps.properties["Environment"]["Variables"])
    assert set(env) - {"SWITCHYARD_STAGE"} - {k for k in env if k.startswith("POWERTOOLS_")} == \
        StepSettings.required_env_names() - {"SWITCHYARD_STAGE"}
    settings = StepSettings.from_env(env)
    assert settings.flow == FLOW
    assert settings.dlq_url == dev.one(role="dlq", flow=FLOW).ref
    assert settings.connection_secret_arns == {"quickbooks": dev.one(secret="connection:quickbooks").ref,
                                               "nopcommerce": dev.one(secret="connection:nopcommerce").ref}
    assert steps.metadata["switchyard:code"] == "functions/flow_steps"


def test_state_machine_steps_role_reads_both_connections_and_writes_only_the_quickbooks_tokens(dev, steps):
    granted = dev.actions_on(dev.by_ref(dev.render(steps.properties["Role"])).ref)
    quickbooks = dev.one(secret="connection:quickbooks").ref
    shop = dev.one(secret="connection:nopcommerce").ref
    assert {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"} <= granted[quickbooks]
    assert "secretsmanager:GetSecretValue" in granted[shop]
    assert "secretsmanager:PutSecretValue" not in granted[shop]
    assert "sqs:SendMessage" in granted[dev.one(role="dlq", flow=FLOW).att("Arn")]


def test_state_machine_worker_may_start_and_describe_but_reads_no_connection(dev, machine):
    worker = dev.one(role="worker", flow=FLOW)
    granted = dev.actions_on(dev.by_ref(dev.render(worker.properties["Role"])).ref)
    assert "states:StartExecution" in granted[machine.ref]
    assert any("states:DescribeExecution" in actions
               for resource, actions in granted.items() if ":execution:" in resource)
    assert not any(resource.startswith("${Secrets") for resource in granted)


def test_state_machine_alarms_failed_and_timed_out_executions(dev, machine):
    alarms = [a for a in dev.of_type("AWS::CloudWatch::Alarm") if a.properties.get("Namespace") == "AWS/States"]
    metrics = {a.properties["MetricName"] for a in alarms
               if dev.render(a.properties["Dimensions"])[0]["Value"] == machine.ref}
    assert metrics == {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert all("Runbook: docs/runbooks.md#state-machine-executions-failed" in a.properties["AlarmDescription"]
               for a in alarms)


def test_state_machine_waits_for_a_reconnect_on_a_clock_and_its_timeout_covers_the_wait(definition, machine,
                                                                                      catalog):
    config = catalog.flows[FLOW].state_machine
    wait = config.waiting_for_connection
    for name in TASKS:
        (rule,) = [r for r in definition["States"][name]["Retry"] if r["ErrorEquals"] == ["StepWaitingForConnection"]]
        assert (rule["IntervalSeconds"], rule["BackoffRate"], rule["JitterStrategy"]) == (600, 1, "NONE")
        assert rule["IntervalSeconds"] * rule["MaxAttempts"] >= 14 * 24 * 3600  # the budget is time: 14 days
    # five history events per attempt must stay under an execution's 25,000
    assert wait.max_attempts * 5 < 25_000
    assert definition["TimeoutSeconds"] == config.timeout_with_waiting_minutes * 60
    assert definition["TimeoutSeconds"] >= config.timeout_minutes * 60 + wait.interval_seconds * wait.max_attempts
