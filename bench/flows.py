"""Benchmarks 4 and 5: what an order costs, end to end on the local stack (bench/meter.py counts).

4. nopCommerce -> Streak: signed 5 KB orders of 10 lines through the front door (ingest, SQS on moto,
   the worker with idempotency and entity state on moto's DynamoDB, the Streak sandbox over HTTP).
   * Streak calls per order, from the sandbox's request log: a new customer at a new company, a new
     customer at a known company, a returning customer, a status change.
   * Handler CPU per 1,000 orders: thread CPU of the ingest and worker invocations, moto's share taken
     out (bench/meter.py). Target 3 CPU-s.
   * Throughput and webhook-to-target latency (p50/p99: from the webhook POST to the end of the worker
     invocation that delivered it), with the pollers running in the background as Lambda's would.
   * Sequential Streak round trips per order: with the sandbox answering after ``ROUND_TRIP_MS``, the
     worker's time per order beyond its CPU, divided by that delay. Lambda's billed duration is then
     costed at ``VENDOR_MS`` per round trip.
5. order-to-cash (nopCommerce -> QuickBooks): orders through the state machine (moto's Step Functions
   engine running the synthesized definition) for its requests per order: step invocations,
   transitions (from each execution's history), limiter and entity-state reads and writes.

Dollars per 1M orders (bench/costs.py) multiply the counted requests per order by the list prices in
bench/aws_prices.yaml.
"""

from __future__ import annotations

import copy
import json
import re
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench.costs import cost_per_million
from bench.meter import Meter, install

STREAK_FLOW = "nopcommerce-to-streak"
QBO_FLOW = "nopcommerce-to-quickbooks"
ROUND_TRIP_MS = 40    # the sandbox's answer delay while round trips are measured
VENDOR_MS = 200       # a vendor call's round trip in production, for Lambda's billed duration
AWS_MS = 10           # an AWS request's round trip from Lambda (SQS, DynamoDB, Secrets Manager)
VCPU_MB = 1769        # Lambda gives a function one vCPU at 1,769 MB, a share in proportion below
ORDERS_PER_S_AT_1M = 1_000_000 / (30 * 86_400)
ORDER_LINES = 10
BATCH_ORDERS = 10     # orders of distinct customers in one worker batch, to show them run side by side
TARGETS = {"calls_new_order": 5, "calls_status_change": 2, "cpu_s_per_1000": 3.0,
           "usd_per_1m_streak": 5.0, "usd_per_1m_order_to_cash": 60.0, "orders_per_s": 50.0}


def _order(number: int, customer: int, *, company: bool = True) -> dict[str, Any]:
    from switchyard_local.webhooks import sample

    event = json.loads(sample("nop_order_b2b"))
    order = event["data"]["Order"]
    order.update(Id=number, CustomOrderNumber=str(number), OrderGuid=str(uuid.UUID(int=number)))
    lines = event["data"]["OrderItems"]
    event["data"]["OrderItems"] = [
        {**copy.deepcopy(lines[i % len(lines)]), "Id": number * 100 + i,
         "OrderItemGuid": str(uuid.UUID(int=number * 100 + i))} for i in range(ORDER_LINES)]
    subtotal = sum(line["PriceInclTax"] for line in event["data"]["OrderItems"])  # totals that add up
    order.update(OrderSubtotalInclTax=subtotal, OrderSubtotalExclTax=subtotal,
                 OrderTotal=subtotal + order["OrderShippingInclTax"])
    who = event["data"]["Customer"]
    who.update(Id=10_000 + customer, Email=f"buyer{customer}@company{customer}.example",
               FirstName=f"Buyer{customer}", LastName="Bench")
    who["Company"] = f"Company {customer}" if company else None
    event["data"]["BillingAddress"]["Email"] = who["Email"]
    return event


def _status(number: int, status: int = 20) -> dict[str, Any]:
    from switchyard_local.webhooks import sample

    event = json.loads(sample("nop_status_processing"))
    event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderStatusId=status,
                                  OrderGuid=str(uuid.UUID(int=number)))
    return event


def _post(stack: Any, http: httpx.Client, event: dict[str, Any]) -> str:
    from switchyard_local.webhooks import signed_headers

    body = json.dumps(event).encode()
    event_id = f"msg_{uuid.uuid4().hex}"
    response = http.post("/webhooks/nopcommerce", content=body,
                         headers=signed_headers(stack.signing_secret, body, event_id=event_id))
    if response.status_code != 202:
        raise SystemExit(f"the front door answered {response.status_code}: {response.text[:300]}")
    return event_id


def _streak_calls(stack: Any, http: httpx.Client, event: dict[str, Any]) -> list[str]:
    before = len(stack.streak.requests)
    _post(stack, http, event)
    if not stack.drain(timeout=60):
        raise SystemExit("the flow queue did not drain")
    return [f"{method} {path}" for method, path, _ in list(stack.streak.requests)[before:]
            if not path.startswith("/_sandbox")]


def measure_streak_calls(stack: Any, http: httpx.Client) -> dict[str, Any]:
    """Calls per order of each kind, after one order has warmed the pipeline cache (a cold start's
    pipeline read is not an order's)."""
    _streak_calls(stack, http, _order(900_000, 900_000))
    new = _streak_calls(stack, http, _order(900_001, 900_001))
    known_company = _order(900_002, 900_002)
    known_company["data"]["Customer"]["Company"] = "Company 900001"
    known_company["data"]["Customer"]["Email"] = "someone.else@company900001.example"
    new_at_known = _streak_calls(stack, http, known_company)
    returning = _streak_calls(stack, http, _order(900_003, 900_001))
    status = _streak_calls(stack, http, _status(900_001))
    return {"new_customer_new_company": len(new), "new_customer_known_company": len(new_at_known),
            "returning_customer": len(returning), "status_change": len(status),
            "sequences": {"new_customer_new_company": new, "returning_customer": returning,
                          "status_change": status}}


def _send_all(stack: Any, events: list[dict[str, Any]], senders: int) -> dict[str, float]:
    """POST every event from ``senders`` threads; returns event id -> time its POST started."""
    sent: dict[str, float] = {}
    lock = threading.Lock()
    work = list(enumerate(events))

    def run() -> None:
        with httpx.Client(base_url=stack.base_url, timeout=60) as http:
            while True:
                with lock:
                    if not work:
                        return
                    _, event = work.pop(0)
                started = time.monotonic()
                event_id = _post(stack, http, event)
                with lock:
                    sent[event_id] = started

    threads = [threading.Thread(target=run) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


def _wait_delivered(meter: Meter, sent: dict[str, float], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(event_id in meter.finished for event_id in sent):
            return True
        time.sleep(0.05)
    return False


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _only_flow(stack: Any, flow: str) -> None:
    """Route the source's events to one flow only (a nopCommerce order also feeds order-to-cash):
    each benchmark costs one flow."""
    for function in stack.functions.values():
        routes = function.environment.get("SWITCHYARD_ALL_ROUTES") or function.environment.get("SWITCHYARD_ROUTES")
        if routes:
            function.environment["SWITCHYARD_ALL_ROUTES"] = routes
            table = json.loads(routes)
            _keep_only(table, flow)
            function.environment["SWITCHYARD_ROUTES"] = json.dumps(table)
            function._module = None  # a new container: the ingest service reads its routes once


def _keep_only(routes: dict[str, Any], flow: str) -> None:
    """Drop every other flow from a routes table: ingest's (source -> event type -> flow -> queue URL) or a
    poller's (event type -> flow -> queue URL)."""
    for value in routes.values():
        if isinstance(value, dict) and value and all(isinstance(url, str) for url in value.values()):
            for name in [name for name in value if name != flow]:
                del value[name]
        elif isinstance(value, dict):
            _keep_only(value, flow)


def _log_bytes(stack: Any) -> int:
    return sum(len(json.dumps(record)) + 1 for record in stack.logs.records())


def bench_flows(streak_orders: int, order_to_cash_orders: int, *, round_trip_orders: int) -> list[dict]:
    """Both flows on one local stack (one synth and deploy)."""
    from switchyard_local.stack import LocalStack

    install()
    with LocalStack(stage="prod") as stack:  # prod's memory, tracing, log level and triggers
        streak = bench_streak_flow(stack, streak_orders, customers=max(1, streak_orders // 3),
                                   round_trip_orders=round_trip_orders)
        order_to_cash = bench_order_to_cash_cost(stack, order_to_cash_orders)
    return [_judged(streak, [
        ("Streak calls, new order (new customer, new company)", "<=", TARGETS["calls_new_order"],
         streak["streak_calls_per_order"]["new_customer_new_company"]),
        ("Streak calls, new order (returning customer)", "<=", TARGETS["calls_new_order"],
         streak["streak_calls_per_order"]["returning_customer"]),
        ("Streak calls, status change", "<=", TARGETS["calls_status_change"],
         streak["streak_calls_per_order"]["status_change"]),
        ("handler CPU-s per 1,000 orders (ingest + worker)", "<=", TARGETS["cpu_s_per_1000"],
         streak["handler_cpu_s_per_1000_orders"]["total"]),
        ("USD per 1M orders", "<=", TARGETS["usd_per_1m_streak"], streak["cost"]["usd_per_1m_orders"]),
        ("local stack orders/s", ">=", TARGETS["orders_per_s"], streak["orders_per_s"]),
    ]), _judged(order_to_cash, [
        ("USD per 1M orders", "<=", TARGETS["usd_per_1m_order_to_cash"], order_to_cash["cost"]["usd_per_1m_orders"]),
    ])]


def _judged(result: dict, targets: list[tuple[str, str, float, float]]) -> dict:
    judged = [{"what": what, "target": f"{op} {target}", "measured": measured,
               "met": measured <= target if op == "<=" else measured >= target}
              for what, op, target, measured in targets]
    lost = result.get("dead_letters", 0) + result.get("failed_executions", 0)
    return {**result, "targets": judged, "met": all(t["met"] for t in judged), "orders_lost": lost}


def bench_streak_flow(stack: Any, orders: int, *, customers: int, senders: int = 4,
                      round_trip_orders: int = 20) -> dict:
    meter = install()
    with httpx.Client(base_url=stack.base_url, timeout=60) as http:
        _only_flow(stack, STREAK_FLOW)
        calls = measure_streak_calls(stack, http)
        stack.streak.reset()

        # the worker's waits, the sandbox answering after ROUND_TRIP_MS: one order per invocation (its
        # sequential round trips), then BATCH_ORDERS orders of distinct customers in one batch (side by side)
        stack.streak.faults.configure({"latency_ms": ROUND_TRIP_MS})
        meter.reset()
        for i in range(round_trip_orders):
            _post(stack, http, _order(200_000 + i, 50_000 + i))
            stack.drain(timeout=60)
        alone = meter.snapshot()
        waited = alone["handler_wall"]["worker"] - alone["handler_cpu"]["worker"] - alone["moto_cpu"]["worker"]
        rounds = max(0.0, waited / round_trip_orders) / (ROUND_TRIP_MS / 1000)
        one_order_ms = alone["handler_wall"]["worker"] / alone["invocations"]["worker"] * 1000
        meter.reset()
        for i in range(BATCH_ORDERS):
            _post(stack, http, _order(210_000 + i, 51_000 + i))
        stack.drain(timeout=60)
        batched = meter.snapshot()
        batch_ms = batched["handler_wall"]["worker"] / batched["invocations"]["worker"] * 1000
        orders_per_batch = BATCH_ORDERS / batched["invocations"]["worker"]
        stack.streak.faults.clear()
        stack.streak.reset()

        # throughput, CPU and AWS requests: a backlog of orders, customers coming back
        events = [_order(100_000 + i, i % customers) for i in range(orders)]
        meter.reset()
        logs_before = _log_bytes(stack)
        stack.run_pollers_in_background(interval=0.01)
        started = time.monotonic()
        sent = _send_all(stack, events, senders)
        if not _wait_delivered(meter, sent, timeout=max(120.0, orders * 0.5)):
            missing = sum(1 for event_id in sent if event_id not in meter.finished)
            raise SystemExit(f"{missing} of {orders} orders were not delivered")
        elapsed = max(meter.finished.values()) - started
        latencies = [(meter.finished[event_id] - at) * 1000 for event_id, at in sent.items()]
        counted = meter.snapshot()
        log_bytes = _log_bytes(stack) - logs_before
        streak_requests = [r for r in stack.streak.requests if not r[1].startswith("/_sandbox")]
        dead = stack.dead_letters(STREAK_FLOW)

    per_order = _per_order(counted, orders)
    cpu_per_1000 = {role: round(cpu / orders * 1000, 2) for role, cpu in counted["handler_cpu"].items()}
    cpu_total = round(sum(counted["handler_cpu"].values()) / orders * 1000, 2)
    worker_invocations = counted["invocations"].get("worker", 0)
    assert counted["invocations"].get("ingest", 0) == orders, counted["invocations"]
    prod = Production.of(stack, STREAK_FLOW)
    usage = prod.usage(counted, per_order, orders, log_bytes=log_bytes,
                       waits_s={"worker": rounds * VENDOR_MS / 1000}, traces_per_execution=0)
    return {
        "name": "nopCommerce -> Streak end to end on the local stack",
        "orders": orders, "customers": customers, "senders": senders,
        "streak_calls_per_order": calls,
        "streak_calls_per_order_in_run": round(len(streak_requests) / orders, 2),
        "handler_cpu_s_per_1000_orders": {"total": cpu_total, **cpu_per_1000},
        "moto_cpu_s_per_1000_orders_removed": {role: round(cpu / orders * 1000, 2)
                                               for role, cpu in counted["moto_cpu"].items()},
        "orders_per_s": round(orders / elapsed, 1),
        "latency_ms": {"p50": round(_percentile(latencies, 0.5)), "p99": round(_percentile(latencies, 0.99))},
        "sequential_streak_round_trips_per_order": round(rounds, 2),
        # a batch's orders run side by side: its invocation lasts about one order's, not the sum
        "worker_ms_one_order_vs_batch": {"one_order": round(one_order_ms), "batch": round(batch_ms),
                                         "orders_per_batch": round(orders_per_batch, 1),
                                         "round_trip_ms": ROUND_TRIP_MS},
        "worker_invocations_per_order_in_run": round(worker_invocations / orders, 3),
        "production_model": prod.describe(),
        "aws_requests_per_order": per_order["requests"],
        "usage_per_order": {k: round(v, 9) for k, v in usage.items()},
        "cost": cost_per_million(usage),
        "dead_letters": len(dead),
    }


def _per_order(counted: dict[str, Any], orders: int) -> dict[str, Any]:
    requests = {f"{service}.{operation}": round(n / orders, 3)
                for (service, operation), n in sorted(counted["requests"].items())}
    units = {k: v / orders for k, v in counted["units"].items()}
    return {"requests": requests, "units": units}


@dataclass
class Production:
    """The flow in production at 1M orders a month, from the deployed template (on moto): each role's
    memory, tracing mode and the queue trigger's batch size and batching window.

    * A Lambda's duration is its CPU here scaled to its share of a vCPU (memory / 1,769 MB), plus
      ``AWS_MS`` per AWS request and its waits on vendors (``waits_s``). A worker runs its batch's
      orders side by side (``FlowWorker.handle_batch``, distinct orders at this rate): their waits
      overlap, so an invocation waits about as long as one order does, and each order's share of the
      waits is divided by the orders per invocation; CPU does not overlap (a fraction of a vCPU).
    * Worker invocations per order: orders arrive at 1M / 30 days (0.39/s); a batching window of W s
      gathers 1 + 0.39 W of them (at most the batch size) into one invocation.
    * Traces: Lambda's active tracing records every request at this rate (its fixed reservoir is one a
      second); pass-through records none (nothing upstream samples); a state machine's execution is
      one trace with its steps.
    """

    memory_mb: dict[str, int]
    tracing: dict[str, str]
    batch_size: int
    batching_window_s: float

    @classmethod
    def of(cls, stack: Any, flow: str) -> Production:
        lam, cfn = stack.client("lambda"), stack.client("cloudformation")
        (deployed,) = cfn.describe_stacks()["Stacks"]
        template = cfn.get_template(StackName=deployed["StackName"])["TemplateBody"]
        resources = (json.loads(template) if isinstance(template, str) else template)["Resources"]
        memory, tracing = {}, {}
        worker_name = ""
        for function in stack.functions.values():
            role = {"ingest": "ingest", "flow_steps": "steps", "flow_worker": "worker"}.get(function.code_dir.name)
            # a source's poller is no part of an order's cost (and has no queue trigger to read)
            if role is None or (role != "ingest" and function.environment.get("SWITCHYARD_FLOW") != flow):
                continue
            memory[role] = function.memory_mb
            properties = resources[function.logical_id]["Properties"]
            tracing[role] = (properties.get("TracingConfig") or {}).get("Mode", "PassThrough")
            if role == "worker":
                worker_name = function.function_name
        mappings = lam.list_event_source_mappings(FunctionName=worker_name)["EventSourceMappings"]
        mapping = mappings[0] if mappings else {}
        return cls(memory, tracing, int(mapping.get("BatchSize", 10)),
                   float(mapping.get("MaximumBatchingWindowInSeconds", 0)))

    @property
    def orders_per_worker_invocation(self) -> float:
        return min(self.batch_size, 1 + ORDERS_PER_S_AT_1M * self.batching_window_s)

    @property
    def worker_invocations_per_order(self) -> float:
        return 1 / self.orders_per_worker_invocation

    def describe(self) -> dict[str, Any]:
        return {"memory_mb": self.memory_mb, "tracing": self.tracing, "batch_size": self.batch_size,
                "batching_window_s": self.batching_window_s,
                "worker_invocations_per_order": round(self.worker_invocations_per_order, 3),
                "vendor_round_trip_ms": VENDOR_MS, "aws_request_ms": AWS_MS}

    def usage(self, counted: dict[str, Any], per_order: dict[str, Any], orders: int, *, log_bytes: int,
              waits_s: dict[str, float], traces_per_execution: int) -> dict[str, float]:
        gb_s, invocations = 0.0, 0.0
        for role, memory in self.memory_mb.items():
            per = {"ingest": 1.0, "worker": self.worker_invocations_per_order}.get(role)
            if per is None:  # steps: as many invocations as counted
                per = counted["invocations"].get(role, 0) / orders
            cpu = counted["handler_cpu"].get(role, 0.0) / orders
            aws = counted["role_requests"].get(role, 0) / orders
            side_by_side = self.orders_per_worker_invocation if role == "worker" else 1.0
            duration = cpu * max(1.0, VCPU_MB / memory) + (aws * AWS_MS / 1000 + waits_s.get(role, 0.0)) / side_by_side
            gb_s += duration * memory / 1024
            invocations += per
        traced = {role: mode == "Active" for role, mode in self.tracing.items()}
        traces = (traced.get("ingest", False) * 1.0 + traced.get("worker", False) * self.worker_invocations_per_order
                  + traced.get("steps", False) * traces_per_execution)
        # the queue trigger's receive and delete, one each per invocation
        sqs = per_order["units"].get("sqs_request", 0.0) - counted["role_requests"].get("lambda_service", 0) / orders
        return {
            "api_gateway_http_request": 1.0,
            "lambda_request": invocations,
            "lambda_gb_second_arm": gb_s,
            "sqs_request": sqs + 2 * self.worker_invocations_per_order,
            "dynamodb_write_request_unit": per_order["units"].get("dynamodb_wru", 0.0),
            "dynamodb_read_request_unit": per_order["units"].get("dynamodb_rru", 0.0),
            "secrets_manager_api_call": per_order["units"].get("secrets_manager_api_call", 0.0),
            "xray_trace_recorded": traces,
            "cloudwatch_logs_ingested_gb": log_bytes / orders / 1e9,
        }


# --- order-to-cash -----------------------------------------------------------------------------------


def bench_order_to_cash_cost(stack: Any, orders: int) -> dict:
    """Requests per order of the order-to-cash flow: each order placed (paid: a SalesReceipt) through
    the state machine on moto's Step Functions engine."""
    meter = install()
    with httpx.Client(base_url=stack.base_url, timeout=60) as http:
        _only_flow(stack, QBO_FLOW)
        events = []
        for i in range(orders):
            event = _order(300_000 + i, 60_000 + i % max(1, orders // 2))
            event["data"]["Order"]["PaymentStatusId"] = 30  # paid: a SalesReceipt
            stack.seed_shop_order(event["data"])
            events.append(event)
        meter.reset()
        logs_before = _log_bytes(stack)
        for event in events:
            _post(stack, http, event)
        if not stack.drain(timeout=max(120.0, orders * 5.0)):
            raise SystemExit("order-to-cash did not drain")
        counted = meter.snapshot()
        log_bytes = _log_bytes(stack) - logs_before
        executions = stack.executions(QBO_FLOW)
        transitions, starts = _transitions(stack, executions)
        failed = sum(1 for e in executions if e["status"] != "SUCCEEDED")
        by_call = {vendor: Counter(f"{method} {re.sub(r'/[0-9]+', '/{id}', path)}"
                                   for method, path, *_ in sandbox.requests if not path.startswith("/_sandbox"))
                   for vendor, sandbox in (("quickbooks", stack.quickbooks), ("nopcommerce", stack.nopcommerce))}
        qbo_requests = sum(by_call["quickbooks"].values())
        shop_requests = sum(by_call["nopcommerce"].values())
        vendor_requests = qbo_requests + shop_requests

    per_order = _per_order(counted, orders)
    invocations = counted["invocations"]
    steps = invocations.get("steps", 0) / orders
    prod = Production.of(stack, QBO_FLOW)
    usage = prod.usage(counted, per_order, orders, log_bytes=log_bytes,
                       waits_s={"steps": vendor_requests / orders * VENDOR_MS / 1000}, traces_per_execution=1)
    usage["step_functions_transition"] = transitions / orders
    return {
        "name": "order-to-cash (nopCommerce -> QuickBooks) on the local stack's Step Functions engine",
        "orders": orders, "failed_executions": failed,
        "state_transitions_per_order": round(transitions / orders, 2),
        # what AWS's wording ("each time a step of your workflow is executed") bills if a start is no step:
        # the dollars above count the start too, the conservative reading
        "states_entered_per_order": round((transitions - starts) / orders, 2),
        "step_invocations_per_order": round(steps, 2),
        "quickbooks_requests_per_order": round(qbo_requests / orders, 2),
        "nopcommerce_requests_per_order": round(shop_requests / orders, 2),
        # which calls: the Lambda's wait on them is most of its GB-s (VENDOR_MS each)
        "vendor_calls_per_order": {vendor: {call: round(n / orders, 2) for call, n in calls.most_common()}
                                   for vendor, calls in by_call.items()},
        "production_model": prod.describe(),
        "aws_requests_per_order": per_order["requests"],
        "usage_per_order": {k: round(v, 9) for k, v in usage.items()},
        "cost": cost_per_million(usage),
    }


def _transitions(stack: Any, executions: list[dict[str, Any]]) -> tuple[int, int]:
    """State transitions as Step Functions bills them, (total, executions): each state entered, and the
    start counted as one too (the conservative reading)."""
    sfn = stack.client("stepfunctions")
    total = started = 0
    for summary in sfn.list_executions(stateMachineArn=stack.state_machines[QBO_FLOW])["executions"]:
        history = sfn.get_execution_history(executionArn=summary["executionArn"], maxResults=1000)["events"]
        kinds = Counter(event["type"] for event in history)
        total += sum(n for kind, n in kinds.items() if kind.endswith("StateEntered")) + 1
        started += 1
    return total, started


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def bench_order_to_cash_only(orders: int) -> dict:
    """The order-to-cash cost alone, on its own local stack (prod's template): `python -m bench.flows`."""
    from switchyard_local.stack import LocalStack

    install()
    with LocalStack(stage="prod") as stack:
        result = bench_order_to_cash_cost(stack, orders)
    return _judged(result, [("USD per 1M orders", "<=", TARGETS["usd_per_1m_order_to_cash"],
                             result["cost"]["usd_per_1m_orders"])])


if __name__ == "__main__":  # e.g. python -m bench.flows --orders 20: the order-to-cash part of `make bench` alone
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="order-to-cash: requests, transitions and dollars per order")
    parser.add_argument("--orders", type=int, default=20)
    outcome = bench_order_to_cash_only(parser.parse_args().orders)
    print(json.dumps(outcome, indent=2))
    sys.exit(0 if outcome["orders_lost"] == 0 else 1)
