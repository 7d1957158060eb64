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


def _qbo_note(result: dict[str, Any]) -> str:
    """Where the QuickBooks throughput went: the 429s, which window QBO (the sandbox) and the workers saw full,
    and the spread of permit-to-arrival delays against what the limiter's padded windows tolerate."""
    arrival = result.get("qbo_sent_to_arrival_ms_p50_p99_max") or [None, None, None]
    stamp = result.get("permit_stamp_to_request_sent_ms_p50_p99_max") or [None, None, None]
    return (f"QuickBooks throughput: {result['qbo_429s']} answers 429 (full window as QBO saw it: "
            f"{result.get('qbo_429s_by_full_window')}; as the workers' send times show it: "
            f"{result.get('qbo_429s_by_window_seen_by_the_client')}); permit → sent p99 {stamp[1]} ms, sent → "
            f"arrival p50 {arrival[0]} / p99 {arrival[1]} ms, against a latency tolerance of "
            f"{result.get('limiter_latency_tolerance_ms')} ms at time scale {result['time_scale']} (200 ms at real "
            f"time); worker time: {result.get('worker_time_shares')}; bottleneck: {result.get('bottleneck')}; "
            f"load average {result.get('load_average_1min_at_start_and_end')}.")


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
    notes: list[str] = []
    for result in report["results"]:
        if "targets" in result:
            flows.append(result)
            continue
        compared = "≥" if result.get("higher_is_better") else "≤"
        spread = result.get("spread")
        rounds = f"{spread['min']}-{spread['max']}" if spread else "-"
        lines.append(f"| {result['name']} | {compared} {result['target']} | {result['ratio']} | {rounds} | "
                     f"{'met' if result['met'] else 'MISSED'} |")
        if "qbo_429s" in result:
            notes.append(_qbo_note(result))
    lines += [line for note in notes for line in ("", note)]
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
