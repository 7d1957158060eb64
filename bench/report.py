"""The committed report of a full `make bench`: bench/REPORT.md (read it) and bench/report.json (all figures)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], folder: Path) -> Path:
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    path = folder / "REPORT.md"
    path.write_text(render(report))
    return path


def render(report: dict[str, Any]) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# `make bench` report",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: Python {report['python']}, "
        f"{report['cpus']} CPUs, load average {load:.1f} when it ended (other work shares this machine:",
        "ratios are measured within the run, absolute times are not comparable between machines).",
        "All figures: bench/report.json. Prices: bench/aws_prices.yaml.",
        "",
        "## Ratios",
        "",
        "| Benchmark | Target | Measured | Rounds (min-max) | |",
        "|---|---|---|---|---|",
    ]
    flows = []
    for result in report["results"]:
        if "targets" in result:
            flows.append(result)
            continue
        compared = "≥" if result.get("higher_is_better") else "≤"
        spread = result.get("spread")
        rounds = f"{spread['min']}-{spread['max']}" if spread else "-"
        lines.append(f"| {result['name']} | {compared} {result['target']} | {result['ratio']} | {rounds} | "
                     f"{'met' if result['met'] else 'MISSED'} |")
    for result in flows:
        lines += ["", f"## {result['name']}", "", "| What | Target | Measured | |", "|---|---|---|---|"]
        for target in result["targets"]:
            lines.append(f"| {target['what']} | {target['target']} | {target['measured']} | "
                         f"{'met' if target['met'] else 'MISSED'} |")
        if "latency_ms" in result:
            lines += ["", f"Latency webhook → target: p50 {result['latency_ms']['p50']} ms, "
                      f"p99 {result['latency_ms']['p99']} ms ({result['orders']} orders, "
                      f"{result['senders']} senders). Handler CPU per 1,000 orders: "
                      f"{result['handler_cpu_s_per_1000_orders']} CPU-s (moto's share removed: "
                      f"{result['moto_cpu_s_per_1000_orders_removed']}). Sequential Streak round trips per "
                      f"order: {result['sequential_streak_round_trips_per_order']}."]
            calls = result["streak_calls_per_order"]
            lines += ["", "Streak calls per order: " + ", ".join(
                f"{kind.replace('_', ' ')} {n}" for kind, n in calls.items() if isinstance(n, int)) + "."]
        if "state_transitions_per_order" in result:
            lines += ["", f"{result['orders']} orders: {result['state_transitions_per_order']} state transitions, "
                      f"{result['step_invocations_per_order']} step invocations, "
                      f"{result['quickbooks_requests_per_order']} QuickBooks and "
                      f"{result['nopcommerce_requests_per_order']} nopCommerce requests per order."]
        cost = result["cost"]
        lines += ["", f"**${cost['usd_per_1m_orders']} per 1M orders** (prices checked {cost['prices_checked']}; "
                  f"model: {json.dumps(result['production_model'])}):", "",
                  "| Cost line | Per order | $ per 1M orders |", "|---|---|---|"]
        lines += [f"| {line['item']} | {line['per_order']:g} | {line['usd_per_1m_orders']} |" for line in cost["lines"]]
        lines += ["", "AWS requests per order: " + ", ".join(
            f"{k} {v}" for k, v in result["aws_requests_per_order"].items()) + "."]
    return "\n".join(lines) + "\n"
