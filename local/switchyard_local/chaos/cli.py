"""``make chaos`` / ``python -m switchyard_local.chaos``: start the stack, run, reconcile, print the report.
Exit 0 only if nothing accepted was duplicated, lost or written wrong (else 1) and the run settled within
``--max-seconds`` (else 2)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from switchyard.drops import DynamoDropLog

from switchyard_local.chaos.bng_check import seed_products
from switchyard_local.chaos.plan import (
    FAULT_CLASSES,
    NOP_FIRST_ORDER,
    SANDBOXES,
    STOCK_ITEMS,
    VENDOR_FAULTS,
    ChaosConfig,
    NopScenario,
    VendorFaults,
    stock_sku,
)
from switchyard_local.chaos.reconcile import BUCKETS, NOT_RECONCILED_YET, Reconciler, Report
from switchyard_local.chaos.run import ChaosRun, RunRecord
from switchyard_local.stack import LocalStack

BUCKET_TITLES = {
    "delivered_once": "delivered once",
    "delivered_after_redrive": "delivered after redrive",
    "dropped": "dropped with a reason",
    "dead_lettered": "dead-lettered with a reason (still, after redrive)",
    "duplicated": "duplicated (must be 0)",
    "lost": "lost (must be 0)",
    "wrong": "written wrong (must be 0)",
    "unsettled": "unsettled at the time bound",
}


def parse(argv: list[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__)
    parser.add_argument("--orders", type=int, default=200, help="scenarios (orders and stock counts), default 200")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="bound on the whole run after the stack started (sending stops at 55%%)")
    parser.add_argument("--faults", default="all",
                        help=f"comma-separated fault classes, 'all' or 'none' ({', '.join(FAULT_CLASSES)})")
    parser.add_argument("--without", default="", help="fault classes to leave out of --faults")
    parser.add_argument("--only", default="", metavar="N,N",
                        help="run only these scenarios of the plan, as the whole plan has them: scenario numbers, "
                             f"or nopCommerce order numbers ({NOP_FIRST_ORDER} is scenario 0)")
    parser.add_argument("--wave-size", type=int, default=20)
    parser.add_argument("--error-rate", type=float, default=VendorFaults.error_rate)
    parser.add_argument("--rate-limit-rate", type=float, default=VendorFaults.rate_limit_rate)
    parser.add_argument("--timeout-rate", type=float, default=VendorFaults.timeout_rate)
    parser.add_argument("--late-answer-rate", type=float, default=VendorFaults.late_answer_rate)
    parser.add_argument("--no-429-from", default="", help="comma-separated sandboxes that answer no 429")
    parser.add_argument("--slow-spared", action="append", default=[], metavar="SANDBOX:PATH",
                        help="a path prefix of a sandbox never held nor answered late (repeatable), "
                             "e.g. quickbooks:/oauth2/v1/tokens/bearer")
    args = parser.parse_args(argv)
    if args.faults == "all":
        faults = set(FAULT_CLASSES)
    elif args.faults == "none":
        faults = set()
    else:
        faults = {name.strip() for name in args.faults.split(",") if name.strip()}
    faults -= {name.strip() for name in args.without.split(",") if name.strip()}
    spared = tuple(tuple(entry.split(":", 1)) for entry in args.slow_spared)
    if any(len(entry) != 2 or entry[0] not in SANDBOXES for entry in spared):
        parser.error(f"--slow-spared takes SANDBOX:PATH with SANDBOX one of {', '.join(SANDBOXES)}")
    vendor = VendorFaults(error_rate=args.error_rate, rate_limit_rate=args.rate_limit_rate,
                          timeout_rate=args.timeout_rate, late_answer_rate=args.late_answer_rate,
                          no_rate_limits=frozenset(name for name in args.no_429_from.split(",") if name),
                          slow_spared=spared)  # type: ignore[arg-type]
    try:
        only = frozenset(_scenario_number(int(part)) for part in args.only.split(",") if part.strip())
        return ChaosConfig(orders=args.orders, seed=args.seed, max_seconds=args.max_seconds,
                           faults=frozenset(faults), vendor=vendor, wave_size=args.wave_size, only=only)
    except ValueError as exc:
        parser.error(str(exc))


def _scenario_number(number: int) -> int:
    return number - NOP_FIRST_ORDER if number >= NOP_FIRST_ORDER else number


def chaos(config: ChaosConfig, out: TextIO = sys.stdout, log_path: Path | None = None) -> tuple[Report, RunRecord]:
    """Start a local stack, run the plan, reconcile; the stack is stopped before this returns."""
    started = time.monotonic()
    with LocalStack(log_path=log_path, concurrent_functions=True) as stack:
        print(f"local stack up in {time.monotonic() - started:.0f} s", file=out, flush=True)
        seed_products(stack.bng)  # BNG is master for products: the chaos orders' SKUs exist there first
        record = ChaosRun(stack, config, out=out).run()
        report = reconcile(stack, record)
    record.timings["total_with_stack"] = time.monotonic() - started
    return report, record


def reconcile(stack: LocalStack, record: RunRecord) -> Report:
    realm = stack.quickbooks.snapshot()["realms"][stack.qbo_realm]
    numbers = [s.number for s in record.scenarios if isinstance(s, NopScenario)]
    notes = {n: [note["note"] for note in _notes(stack, n)] for n in numbers}
    stock = {stock_sku(i): stack.nopcommerce.product_by_sku(stock_sku(i))["stock_quantity"] for i in range(STOCK_ITEMS)}
    assert stack.clarity is not None
    orders = {o["orderId"]: o for o in stack.clarity.snapshot()["orders"]}
    return Reconciler(record, streak=stack.streak.snapshot(), quickbooks=realm, notes=notes, stock=stock,
                      clarity_orders=orders, outcomes=stack.outcomes(),
                      salesforce={name: stack.salesforce.records(name) for name in ("Order", "OrderItem")},
                      bng=stack.bng.snapshot(), drops=_drops(stack)).reconcile()


def _drops(stack: LocalStack) -> dict[tuple[str, str], str]:
    """Every drop the functions recorded, as `switchyard drops FLOW` lists them: (flow, event id) -> reason."""
    assert stack.table_access is not None  # set when the stack deployed
    log = DynamoDropLog(stack.client("dynamodb"), stack.table_access.table_name)
    return {(flow, drop.event_id): drop.reason for flow in stack.flows for drop in log.list(flow)}


def _notes(stack: LocalStack, number: int) -> list[dict[str, Any]]:
    try:
        return stack.nopcommerce.notes(number)
    except KeyError:  # an order refused at the edge was never seeded
        return []


def render(report: Report, record: RunRecord, out: TextIO = sys.stdout) -> None:
    config = record.config

    def say(text: str = "") -> None:
        print(text, file=out)

    kinds: dict[str, int] = {}
    for scenario in record.scenarios:
        if scenario.n in record.sent_scenarios:
            kinds[scenario.kind] = kinds.get(scenario.kind, 0) + 1
    say()
    only = f" --only {','.join(str(n) for n in sorted(config.only))}" if config.only else ""
    say(f"chaos: --orders {config.orders} --seed {config.seed} --max-seconds {config.max_seconds:.0f}{only}")
    say(f"  fault classes on: {', '.join(sorted(config.faults)) or 'none'}")
    vendor = config.vendor
    spared = "".join(f", {sandbox} {path} never slow" for sandbox, path in vendor.slow_spared)
    if config.faults & VENDOR_FAULTS:
        def rate(fault: str, value: float, spared: frozenset[str] = frozenset()) -> str:
            return f"{value if config.on(fault) else 0:.1%}{_except(spared)}"

        say(f"  vendor faults (every sandbox, while on): 5xx {rate('vendor_errors', vendor.error_rate)}, "
            f"429 {rate('rate_limits', vendor.rate_limit_rate, vendor.no_rate_limits)}, "
            f"held past the client timeout {rate('timeouts', vendor.timeout_rate, vendor.no_timeouts)}, "
            f"writes answered late {rate('late_answers', vendor.late_answer_rate, vendor.no_late_answers)} "
            f"({vendor.slow_seconds:.0f} s){spared}")
    say("  injected: " + "; ".join(f"{name} {dict(sorted(record.injected.get(name, {}).items()))}"
                                    for name in SANDBOXES))
    say(f"scenarios sent: {sum(kinds.values())} of {len(record.scenarios)} ({kinds})")
    modes: dict[str, int] = {}
    for delivery in record.deliveries:
        modes[delivery.mode] = modes.get(delivery.mode, 0) + 1
    say(f"webhook deliveries: {report.deliveries} ({modes}); accepted {report.accepted_deliveries}; "
        f"QuickBooks stock notifications delivered: {report.stock_notifications}")
    for answer, count in sorted(report.rejected.items()):
        say(f"  rejected at the edge: {count} x {answer}")
    say(f"accepted events (one per flow an accepted webhook was queued for): {len(report.results)}")
    for bucket in BUCKETS:
        reasons = report.reasons(bucket)
        detail = "; ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()) if reason)
        say(f"  {BUCKET_TITLES[bucket]:<52} {report.count(bucket):>6}" + (f"   ({detail})" if detail else ""))
    for flow, count in sorted(report.unreconciled.items()):
        say(f"  not reconciled: {count} events of {flow} ({NOT_RECONCILED_YET[flow]})")
    say(f"dead-lettered with a reason, before the redrive: {sum(report.letters_before.values())}")
    for reason, count in sorted(report.letters_before.items()):
        say(f"    {reason}: {count}")
    say(f"redriven once with faults off: {record.redriven}; still in a DLQ after: {sum(report.letters_after.values())}")
    for reason, count in sorted(report.letters_after.items()):
        say(f"    {reason}: {count}")
    say("per flow:")
    flows = sorted({r.flow for r in report.results})
    for flow in flows:
        counts = {b: sum(1 for r in report.results if r.flow == flow and r.bucket == b) for b in BUCKETS}
        say(f"  {flow:<28} " + ", ".join(f"{BUCKET_TITLES[b].split(' (')[0]} {c}" for b, c in counts.items() if c))
    for flow, outcomes in report.secondary.items():
        say(f"  {flow:<28} (Streak's webhooks for the boxes written) worker outcomes {dict(sorted(outcomes.items()))}")
    say(f"time: sent by {record.timings.get('sent', 0):.0f} s, drained by {record.timings.get('drained', 0):.0f} s, "
        f"after redrive by {record.timings.get('drained_after_redrive', 0):.0f} s "
        f"(settled: {record.settled}, after redrive: {record.settled_after_redrive})")
    if report.defects:
        say(f"\nDEFECTS ({len(report.defects)}):")
        for defect in report.defects[:40]:
            say(f"- [{defect.bucket}] {defect.flow}: {defect.what}")
            for step in defect.sequence:
                say(f"    {step}")
            for line in defect.evidence[:8]:
                say(f"    vendor fault: {line}")
        if len(report.defects) > 40:
            say(f"... and {len(report.defects) - 40} more")


def _except(names: frozenset[str]) -> str:
    return f" (not {', '.join(sorted(names))})" if names else ""


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    log = Path(".local-stack") / "chaos-functions.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    report, record = chaos(config, log_path=log)
    render(report, record)
    faults = log.with_name("chaos-faults.log")
    faults.write_text("".join(f"{when:.3f} {sandbox} {kind} {method} {path} {body}\n"
                              for sandbox, when, kind, method, path, body in sorted(record.injected_log,
                                                                                     key=lambda e: e[1])))
    print(f"(function logs: {log}; every injected vendor fault: {faults})")
    if report.failed:
        return 1
    return 0 if record.settled_after_redrive else 2
