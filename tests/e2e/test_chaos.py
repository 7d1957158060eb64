"""A small ``make chaos``: 40 scenarios across every built flow under faults on the local stack, reconciled
against the sandboxes and the DLQs. Nothing accepted may be duplicated, lost or written wrong.

Every fault class is on, as in ``make chaos`` (same-second changes, odd cents and slow answers of
QuickBooks' token endpoint included: each once broke a promise, issue 8 items 1 and 7, issue 17 item 1).
QuickBooks answers no 429 here only for time: its state machine waits the 60 s QuickBooks asks for.
"""

from __future__ import annotations

import io

import pytest
from switchyard_local.chaos.cli import chaos, render
from switchyard_local.chaos.plan import ChaosConfig, VendorFaults
from switchyard_local.chaos.reconcile import CLARITY_STREAK, NOP_BNG, NOP_QBO, NOP_STREAK, STOCK_FLOW

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("chaos")]

CI_CHAOS = ChaosConfig(
    orders=40, seed=11, max_seconds=400,  # a bound, not a target: it ends when the queues are empty
    vendor=VendorFaults(timeout_rate=0.001, late_answer_rate=0.002, no_rate_limits=frozenset({"quickbooks"})),
)
PAYLOAD_REASONS = {"unmapped_product", "unmapped_value"}  # what a poison payload is dead-lettered for
# BNG: a SKU it does not know, an address without a country (the mapping) or a street (BNG refuses the customer)
BNG_PAYLOAD_REASONS = {"unknown_product", "missing_required_field", "target_rejected"}


def test_forty_scenarios_under_faults_nothing_duplicated_lost_or_wrong() -> None:
    out = io.StringIO()
    report, record = chaos(CI_CHAOS, out=out)
    render(report, record, out=out)
    text = out.getvalue()

    assert record.settled_after_redrive, text
    assert report.count("duplicated") == 0, text
    assert report.count("lost") == 0, text
    assert report.count("wrong") == 0, text
    assert report.count("unsettled") == 0, text
    assert not report.defects, text
    assert {r.flow for r in report.results} >= {NOP_STREAK, CLARITY_STREAK, NOP_QBO, STOCK_FLOW, NOP_BNG}, text
    assert not report.unreconciled, text  # every flow's events are checked against its sandbox
    assert report.count("delivered_once") > 0.6 * len(report.results), text
    # faults were on: duplicates and poison were sent, vendors answered 5xx and 429
    assert {d.mode for d in record.deliveries} >= {"same_id", "new_id"}, text
    injected = {kind for counts in record.injected.values() for kind in counts}
    assert "429" in injected and any(kind.startswith("5") for kind in injected), text
    # what stays dead-lettered after a redrive with faults off is there for its payload
    assert {r.reason.split(" ")[0] for r in report.results
            if r.bucket == "dead_lettered" and r.flow != NOP_BNG} <= PAYLOAD_REASONS, text
    assert {r.reason.split(" ")[0] for r in report.results
            if r.bucket == "dead_lettered" and r.flow == NOP_BNG} <= BNG_PAYLOAD_REASONS, text


def test_the_seed_7_losses_replayed_each_cancel_of_an_unbooked_order_is_a_drop_with_its_reason() -> None:
    """The three kinds of 'lost' of the 2,000-order seed-7 run, replayed with ``--only`` and that run's faults:
    Clarity scenario 442 (a poison order.created whose order is already processing) and nopCommerce orders
    700694 and 700938 (unknown SKU, order.placed dead-lettered, then cancelled: nothing to void)."""
    config = ChaosConfig(orders=2000, seed=7, max_seconds=300, only=frozenset({442, 693, 937}),
                         vendor=VendorFaults(timeout_rate=0.0005, late_answer_rate=0.001,
                                             no_rate_limits=frozenset({"quickbooks"})))
    out = io.StringIO()
    report, record = chaos(config, out=out)
    render(report, record, out=out)
    text = out.getvalue()

    assert record.settled_after_redrive and not report.failed and not report.defects, text
    cancels = [r for r in report.results if r.flow == NOP_QBO and r.label == "status 40"]
    assert sorted((r.scenario, r.bucket, r.reason) for r in cancels) == [
        (693, "dropped", "nothing_to_void"), (937, "dropped", "nothing_to_void")], text
    (created,) = [r for r in report.results if r.flow == CLARITY_STREAK and r.scenario == 442]
    assert created.bucket == "delivered_once", text
