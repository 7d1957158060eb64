"""Switchyard benchmarks. Each reports a ratio of two things measured in this one run, on this
machine, so the figure does not depend on the machine's speed.

1. ingest cold start: a fresh Python process importing the ingest handler, building its service
   (settings, botocore clients, routes) and validating its first event (an order.placed body: this
   loads that event type's validator), against the floor no Python receiver avoids: importing boto3,
   creating an SQS client and parsing the same body. Median of N alternating runs. Target ≤ 1.3.
   Runs with the machine's PYTHONDONTWRITEBYTECODE: our code is compiled in each fresh process, as in
   Lambda, where the layer carries no bytecode for the runtime's Python.
2. mapping throughput: the declarative nopcommerce-to-streak mapping against the same mapping
   written by hand (bench/handwritten.py, checked to give identical plans). Best of R rounds of
   K orders each. Target ≤ 2.5 (time per order, mapping / hand-written): rules are closures; the
   generated-code fast path that bought ~6 µs per order was dropped (README, Decisions), so this guards
   against the engine growing slower, not for µs that vanish next to a vendor round trip.
3. QuickBooks throughput inside the rate limit (bench/qbo_throughput.py): 1,000 generated nopCommerce
   orders through the order-to-cash steps against the QuickBooks sandbox at QBO's 500/min and 10/s per
   realm, time-scaled, with production's shared limiter (DynamoRateLimiter on moto) and the state machine's
   retry rules. The ratio is the share of the limit used: accepted requests / (500 x scaled minutes), the
   lower of the whole run and its steady part. Target ≥ 0.90, and no order may fail (none because of
   throttling).
4./5. what an order costs, per flow, end to end on the local stack (bench/flows.py, bench/meter.py):
   Streak calls per order, handler CPU per 1,000 orders, dollars per 1M orders with the top cost lines
   (list prices: bench/aws_prices.yaml), local throughput and webhook-to-target latency.

Stable figures: the two sides of a ratio run in alternating rounds, the report gives the median and the
spread (min-max of the per-round ratios), and a run fails only on a clear regression: the median more
than 10 % past the target, or every round past it. A missed target that is not a clear regression is
reported as MISSED. Counts (Streak calls per order) are exact: more calls than the target fail the run.
A full run also writes bench/REPORT.md and bench/report.json (committed); bench/results/ keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from bench.flows import bench_flows
from bench.qbo_throughput import bench_qbo_throughput
from bench.report import write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLEAR_REGRESSION = 1.10  # a ratio's median this far past its target fails the run
MAPPING_TARGET = 2.5  # declarative / hand-written, closures only (the generated fast path is gone: README, Decisions)
# Streak calls per order today (exact counts): more than these is a regression, whatever the target says
STREAK_CALL_BUDGET = {"Streak calls, new order (new customer, new company)": 8,
                      "Streak calls, new order (returning customer)": 6,
                      # read the box, update stage and payment in one call, and the timeline comment the deal
                      # keeps per change (issue 11): Streak takes no comment inside the box update
                      "Streak calls, status change": 3}

FLOOR = """
import boto3, json, os
boto3.client('sqs', region_name='us-east-1')
json.loads(open(os.environ['BENCH_BODY_FILE'], 'rb').read())
"""
INGEST = """
import importlib.util, json, os
spec = importlib.util.spec_from_file_location("ingest_handler", os.environ["HANDLER_FILE"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.service()
from switchyard.envelopes import validate_envelope
from switchyard.webhook_json import decode
validate_envelope("nopcommerce", decode(open(os.environ['BENCH_BODY_FILE'], 'rb').read()))
"""
BENCHMARKS = ("cold-start", "mapping", "qbo", "flows")
FLOW_ORDERS, FLOW_QBO_ORDERS, FLOW_ROUND_TRIP_ORDERS = 1_000, 20, 20
FLOW_SMOKE = (12, 2, 2)
# QuickBooks throughput: a time scale at which this 2-core machine (one interpreter runs the workers and
# moto) outruns the limit, so the limit is the bottleneck; the report says which was
# Time scale S: windows shrink S-fold, the machine's send-to-arrival delays do not, so the limiter's 200 ms of
# latency tolerance (rate_limit: 10 per 1.2 s) becomes 200/S ms: S=3 keeps 67 ms (at S=6, 33 ms was below this
# loaded machine's p99 of 90-170 ms, and QBO's 429s, a scaled minute's wait each, were the bench's own making)
QBO_ORDERS, QBO_TIME_SCALE = 1_000, 3.0  # a "minute" lasts 20 s: about 3.8 minutes, 9 steady windows
QBO_SMOKE_ORDERS, QBO_SMOKE_TIME_SCALE = 100, 6.0  # about 15 s; too short to judge
QBO_WORKERS = 8
INGEST_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    "SWITCHYARD_STAGE": "bench",
    "SWITCHYARD_SOURCES": json.dumps({"nopcommerce": {"secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x"}}),
    "SWITCHYARD_ROUTES": json.dumps({"nopcommerce": {"order.placed": {"f": "https://sqs.us-east-1.amazonaws.com/1/q"}}}),
    "SWITCHYARD_MAX_BODY_BYTES": "262144",
    "POWERTOOLS_SERVICE_NAME": "ingest", "POWERTOOLS_METRICS_NAMESPACE": "Switchyard",
    "HANDLER_FILE": str(ROOT / "functions" / "ingest" / "handler.py"),
    "BENCH_BODY_FILE": str(ROOT / "local" / "switchyard_local" / "samples" / "nop_order_b2b.json"),
}


def _fresh_process_ms(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return (time.perf_counter() - started) * 1000


def bench_cold_start(runs: int) -> dict:
    env = {**os.environ, **INGEST_ENV}
    _fresh_process_ms(FLOOR, env), _fresh_process_ms(INGEST, env)  # warm the OS file cache
    floor, ingest = [], []
    for _ in range(runs):  # alternate, so drift in machine load hits both alike
        floor.append(_fresh_process_ms(FLOOR, env))
        ingest.append(_fresh_process_ms(INGEST, env))
    ratio = statistics.median(ingest) / statistics.median(floor)
    pairs = [i / f for i, f in zip(ingest, floor, strict=True)]
    return {"name": "ingest cold start (import + init + first validation) / (import boto3 + SQS client + parse)",
            "runs": runs,
            "floor_ms": round(statistics.median(floor), 1), "ingest_ms": round(statistics.median(ingest), 1),
            "ratio": round(ratio, 3), "spread": _spread(pairs), "target": 1.3, "met": ratio <= 1.3,
            "regressed": _regressed(ratio, pairs, 1.3)}


def bench_mapping(orders: int, rounds: int) -> dict:
    from switchyard.systems.streak.deal_mapping import load_deal_mapping

    from bench.handwritten import plan_deal as by_hand

    mapping = load_deal_mapping("nopcommerce-to-streak.yaml")  # once, as per cold start
    samples = [json.loads(p.read_text(), parse_float=Decimal)["data"]
               for p in sorted((ROOT / "local/switchyard_local/samples").glob("nop_order_*.json"))]
    for data in samples:
        if mapping.plan_deal(data) != by_hand(data):
            raise SystemExit(f"hand-written baseline differs from the mapping for order "
                             f"{data['Order']['CustomOrderNumber']}: fix bench/handwritten.py")
    batch = [samples[i % len(samples)] for i in range(orders)]

    def timed(function) -> float:
        started = time.perf_counter()
        for data in batch:
            function(data)
        return time.perf_counter() - started

    timed(mapping.plan_deal), timed(by_hand)  # warm up
    declarative, handwritten = [], []
    for round_ in range(rounds):  # interleaved, alternating which goes first: load drift hits both alike
        pair = (mapping.plan_deal, by_hand) if round_ % 2 == 0 else (by_hand, mapping.plan_deal)
        times = {function: timed(function) for function in pair}
        declarative.append(times[mapping.plan_deal])
        handwritten.append(times[by_hand])
    ratios = [d / h for d, h in zip(declarative, handwritten, strict=True)]
    ratio = statistics.median(ratios)
    return {"name": "mapping time per order, declarative / hand-written", "orders": orders, "rounds": rounds,
            "declarative_orders_per_s": round(orders / min(declarative)),
            "handwritten_orders_per_s": round(orders / min(handwritten)),
            "ratio": round(ratio, 3), "spread": _spread(ratios), "target": MAPPING_TARGET,
            "met": ratio <= MAPPING_TARGET, "regressed": _regressed(ratio, ratios, MAPPING_TARGET)}


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "max": round(max(values), 3)}


def _regressed(median: float, ratios: list[float], target: float) -> bool:
    """A clear regression: the median well past the target, or every round past it."""
    return median > target * CLEAR_REGRESSION or min(ratios) > target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI): checks the benchmarks work")
    parser.add_argument("--only", choices=BENCHMARKS, action="append",
                        help="run only this benchmark (repeatable); report: bench/results/report-<names>.json")
    parser.add_argument("--flow-orders", type=int, metavar="N",
                        help="orders in the Streak run of `flows` (default 1,000): fewer while iterating")
    args = parser.parse_args(argv)
    runs, orders, rounds = (3, 500, 3) if args.smoke else (21, 20_000, 15)
    flow_sizes = FLOW_SMOKE if args.smoke else (FLOW_ORDERS, FLOW_QBO_ORDERS, FLOW_ROUND_TRIP_ORDERS)
    if args.flow_orders:
        flow_sizes = (args.flow_orders, *flow_sizes[1:])
    qbo_orders, qbo_scale = (QBO_SMOKE_ORDERS, QBO_SMOKE_TIME_SCALE) if args.smoke else (QBO_ORDERS, QBO_TIME_SCALE)
    chosen = args.only or list(BENCHMARKS)
    benchmarks = {"cold-start": lambda: bench_cold_start(runs), "mapping": lambda: bench_mapping(orders, rounds),
                  "qbo": lambda: [bench_qbo_throughput(qbo_orders, qbo_scale, QBO_WORKERS)],
                  "flows": lambda: bench_flows(flow_sizes[0], flow_sizes[1], round_trip_orders=flow_sizes[2])}
    results = []
    for name in BENCHMARKS:
        if name in chosen:
            produced = benchmarks[name]()
            results.extend(produced if isinstance(produced, list) else [produced])
    for result in results:
        if "regressed" not in result and "ratio" in result:
            result["regressed"] = (result["ratio"] < result["target"] / CLEAR_REGRESSION
                                   if result.get("higher_is_better") else
                                   result["ratio"] > result["target"] * CLEAR_REGRESSION)
        verdict = "met" if result["met"] else "MISSED"
        if "targets" in result:
            print(f"{result['name']}:")
            for target in result["targets"]:
                print(f"   {target['what']}: {target['measured']} (target {target['target']}, "
                      f"{'met' if target['met'] else 'MISSED'})")
            top = ", ".join(f"{line['item']} ${line['usd_per_1m_orders']}" for line in result["cost"]["lines"][:4])
            print(f"   top cost lines per 1M orders: {top}")
            continue
        compared = "≥" if result.get("higher_is_better") else "≤"
        spread = f", rounds {result['spread']['min']}-{result['spread']['max']}" if "spread" in result else ""
        print(f"{result['name']}: ratio {result['ratio']}{spread} (target {compared} {result['target']}, {verdict})")
        if "orders_failed_throttling" in result:
            print(f"   orders failed because of throttling: {result['orders_failed_throttling']} (target 0), "
                  f"otherwise: {result['orders_failed_other']}; QBO 429s: {result['qbo_429s']}; "
                  f"bottleneck: {result['bottleneck']}")
        print("   " + json.dumps({k: v for k, v in result.items() if k not in ("name", "met")}))
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"smoke": args.smoke, "python": sys.version.split()[0], "cpus": os.cpu_count(), "results": results}
    stem = "smoke" if args.smoke else "report"
    if args.only:  # a partial run does not overwrite the full report
        stem += "-" + "-".join(bench for bench in BENCHMARKS if bench in chosen)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    # any lost order fails a run, smoke or not; so does a Streak call more than the pinned counts
    failed = sum(r.get("orders_failed_throttling", 0) + r.get("orders_failed_other", 0) + r.get("orders_lost", 0)
                 for r in results)
    calls_over = [t for r in results for t in r.get("targets", []) if t["what"].startswith("Streak calls")
                  and t["measured"] > STREAK_CALL_BUDGET.get(t["what"], t["measured"])]
    if args.smoke:
        print("(smoke run: too small to judge the targets; `make bench` for the real figures)")
        return 1 if failed or calls_over else 0
    if not args.only:
        report_path = write_report(report, ROOT / "bench")
        print(f"report: {report_path.relative_to(ROOT)} (and bench/report.json)")
    regressed = [r["name"] for r in results if r.get("regressed")]
    for name in regressed:
        print(f"CLEAR REGRESSION: {name}")
    return 1 if failed or calls_over or regressed else 0


if __name__ == "__main__":
    sys.exit(main())
