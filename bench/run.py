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
   K orders each. Target ≤ 1.5 (time per order, mapping / hand-written).
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

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
validate_envelope("nopcommerce", json.loads(open(os.environ['BENCH_BODY_FILE'], 'rb').read()))
"""
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
    return {"name": "ingest cold start (import + init + first validation) / (import boto3 + SQS client + parse)",
            "runs": runs,
            "floor_ms": round(statistics.median(floor), 1), "ingest_ms": round(statistics.median(ingest), 1),
            "ratio": round(ratio, 3), "target": 1.3, "met": ratio <= 1.3}


def bench_mapping(orders: int, rounds: int) -> dict:
    from switchyard.mapping.streak_deals import load_deal_mapping

    from bench.handwritten import plan_deal as by_hand

    mapping = load_deal_mapping("nopcommerce-to-streak.yaml")  # once, as per cold start
    samples = [json.loads(p.read_text(), parse_float=Decimal)["data"]
               for p in sorted((ROOT / "local/switchyard_local/samples").glob("nop_order_*.json"))]
    for data in samples:
        if mapping.plan_deal(data) != by_hand(data):
            raise SystemExit(f"hand-written baseline differs from the mapping for order "
                             f"{data['Order']['CustomOrderNumber']}: fix bench/handwritten.py")
    batch = [samples[i % len(samples)] for i in range(orders)]

    def best(function) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            for data in batch:
                function(data)
            times.append(time.perf_counter() - started)
        return min(times)

    best(mapping.plan_deal), best(by_hand)  # warm up
    declarative, handwritten = best(mapping.plan_deal), best(by_hand)
    ratio = declarative / handwritten
    return {"name": "mapping time per order, declarative / hand-written", "orders": orders, "rounds": rounds,
            "declarative_orders_per_s": round(orders / declarative),
            "handwritten_orders_per_s": round(orders / handwritten),
            "ratio": round(ratio, 3), "target": 1.5, "met": ratio <= 1.5}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI): checks the benchmarks work")
    args = parser.parse_args(argv)
    runs, orders, rounds = (3, 500, 2) if args.smoke else (21, 20_000, 7)
    results = [bench_cold_start(runs), bench_mapping(orders, rounds)]
    for result in results:
        verdict = "met" if result["met"] else "MISSED"
        print(f"{result['name']}: ratio {result['ratio']} (target ≤ {result['target']}, {verdict})")
        print("   " + json.dumps({k: v for k, v in result.items() if k not in ("name", "met")}))
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"smoke": args.smoke, "python": sys.version.split()[0], "cpus": os.cpu_count(), "results": results}
    (RESULTS / ("smoke.json" if args.smoke else "report.json")).write_text(json.dumps(report, indent=2))
    if args.smoke:
        print("(smoke run: too small to judge the targets; `make bench` for the real figures)")
        return 0
    return 0 if all(r["met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
