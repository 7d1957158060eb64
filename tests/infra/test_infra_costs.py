"""What each order costs in AWS, as the template decides it (issue 15): tracing, Step Functions logs,
the queue trigger's batching window."""

from __future__ import annotations


def _functions(cfn):
    return [f for f in cfn.of_type("AWS::Lambda::Function") if f.metadata.get("switchyard:code")]


def test_costs_dev_traces_every_function_and_logs_every_state_machine_event(dev):
    assert {f.properties["TracingConfig"]["Mode"] for f in _functions(dev)} == {"Active"}
    for machine in dev.of_type("AWS::StepFunctions::StateMachine"):
        assert machine.properties["TracingConfiguration"] == {"Enabled": True}
        assert machine.properties["LoggingConfiguration"]["Level"] == "ALL"


def test_costs_prod_traces_only_sampled_requests_and_logs_state_machine_errors_only(prod):
    # Lambda's active tracing cannot be sampled below one request a second: at 1M orders a month that is
    # every order ($5 per 1M traces); prod records traces only for requests that arrive sampled
    assert {f.properties["TracingConfig"]["Mode"] for f in _functions(prod)} == {"PassThrough"}
    machines = prod.of_type("AWS::StepFunctions::StateMachine")
    assert machines
    for machine in machines:
        assert machine.properties["TracingConfiguration"] == {"Enabled": False}
        logging = machine.properties["LoggingConfiguration"]
        assert logging["Level"] == "ERROR" and logging["IncludeExecutionData"] is False


def test_costs_streak_orders_share_invocations_for_up_to_two_seconds(dev, catalog):
    mappings = {m.properties["FunctionName"]["Ref"]: m.properties
                for m in dev.of_type("AWS::Lambda::EventSourceMapping")}
    windows = {}
    for function in _functions(dev):
        flow = function.properties.get("Environment", {}).get("Variables", {}).get("SWITCHYARD_FLOW")
        if function.logical_id in mappings and flow:
            windows[flow] = mappings[function.logical_id].get("MaximumBatchingWindowInSeconds", 0)
    assert windows["nopcommerce-to-streak"] == 2
    for flow in catalog.flows.values():
        if flow.runs_as == "worker":
            assert windows[flow.name] == flow.worker.batching_window_seconds
