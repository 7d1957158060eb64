"""The chaos harness's plan (deterministic, switchable) and its reconciliation (what counts as lost,
duplicated, wrong), on hand-built sandbox states: the classification must catch each kind of defect."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from switchyard_local.chaos.cli import render
from switchyard_local.chaos.plan import (
    FAULT_CLASSES,
    PAID,
    PENDING,
    ChaosConfig,
    ClarityScenario,
    NopChange,
    NopScenario,
    Send,
    build,
)
from switchyard_local.chaos.reconcile import CLARITY_SALESFORCE, CLARITY_STREAK, NOP_QBO, NOP_STREAK, Reconciler
from switchyard_local.chaos.run import Delivery, Letter, RunRecord, clarity_poison_event

GUID = "5b1c0f2e-0000-4000-8000-00000000abcd"


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    config = ChaosConfig(orders=200, seed=7)
    assert build(config) == build(ChaosConfig(orders=200, seed=7))
    assert build(config) != build(ChaosConfig(orders=200, seed=8))


def test_every_switchable_class_appears_and_switching_it_off_removes_it() -> None:
    everything = build(ChaosConfig(orders=400, seed=3))
    sends = [send for s in everything for send in getattr(s, "sends", ())]
    assert {"same_id", "new_id"} <= {send.mode for send in sends}
    assert any(getattr(s, "poison", None) for s in everything)
    quiet = build(ChaosConfig(orders=400, seed=3, faults=frozenset()))
    assert {send.mode for s in quiet for send in getattr(s, "sends", ())} == {"first"}
    assert not any(getattr(s, "poison", None) for s in quiet)
    for scenario in quiet:  # no same-second changes, everything sent in the order it happened
        if isinstance(scenario, NopScenario):
            offsets = [c.offset_seconds for c in scenario.changes]
            assert offsets == sorted(set(offsets))
            assert [send.index for send in scenario.sends] == list(range(len(scenario.changes)))


def test_an_unknown_fault_class_is_refused() -> None:
    with pytest.raises(ValueError, match="dupes"):
        ChaosConfig(faults=frozenset({"dupes"}))
    assert set(FAULT_CLASSES) == set(ChaosConfig().faults)


# --------------------------------------------------------------------------- reconciliation

def order(*changes: NopChange, template: str = "nop_order_b2b", poison: str | None = None) -> NopScenario:
    return NopScenario(n=0, number=700001, guid=GUID, template=template, changes=changes,
                       sends=tuple(Send(i) for i in range(len(changes))), poison=poison)


PLACED = NopChange("order.placed", 10, PAID, 0)


def record_for(scenario: NopScenario, *, flows: tuple[str, ...] = (NOP_STREAK, NOP_QBO), settled: bool = True,
               before: list[Letter] | None = None, after: list[Letter] | None = None) -> RunRecord:
    record = RunRecord(config=ChaosConfig(orders=1), scenarios=[scenario])
    record.sent_scenarios = {0}
    record.deliveries = [Delivery(0, i, "first", "nopcommerce", f"e{i}", 202, flows)
                         for i in range(len(scenario.changes))]
    record.settled = record.settled_after_redrive = settled
    record.letters_before_redrive = before or []
    record.letters_after_redrive = after or []
    return record


def box(stage: str = "5001", key: str | None = "700001", name: str = "Order 700001 · Jane", tasks: int = 1) -> dict:
    fields = {"Order number": key} if key else {}
    return {"key": f"b{stage}{key}{name}", "name": name, "stageKey": stage, "fields": fields,
            "tasks": [{"text": "Follow up on order 700001"}] * tasks, "comments": []}


def receipt(total: str = "1299.00", kind: str = "salesReceipts") -> dict[str, list[dict[str, Any]]]:
    doc = {"Id": "11", "DocNumber": "700001", "PrivateNote": f"nopCommerce order (OrderGuid {GUID})",
           "TotalAmt": total, "Balance": 0, "status": "Paid"}
    return {"salesReceipts": [doc] if kind == "salesReceipts" else [], "invoices": [doc] if kind == "invoices" else [],
            "payments": [], "items": []}


def reconcile(record: RunRecord, boxes: list[dict], qbo: dict | None = None,
              outcomes: list[dict] | None = None, notes: list[str] | None = None,
              drops: dict[tuple[str, str], str] | None = None) -> dict[tuple[str, str], str]:
    report = Reconciler(record, streak={"boxes": boxes}, quickbooks=qbo or receipt(),
                        notes={700001: ["Sent to QuickBooks: SalesReceipt 700001"] if notes is None else notes},
                        stock={}, clarity_orders={}, outcomes=outcomes or [], drops=drops).reconcile()
    return {(r.flow, r.event_id): r.bucket for r in report.results}


def test_one_box_in_the_newest_stage_and_one_document_to_the_cent_is_delivered_once() -> None:
    scenario = order(PLACED, NopChange("order.status_changed", 20, PAID, 60))
    buckets = reconcile(record_for(scenario), [box("5002")])
    assert buckets == {(NOP_STREAK, "e0"): "delivered_once", (NOP_STREAK, "e1"): "delivered_once",
                       (NOP_QBO, "e0"): "delivered_once", (NOP_QBO, "e1"): "dropped"}


def test_a_same_second_status_change_logged_stale_is_lost_not_dropped() -> None:
    """Placed and moved to Processing in the same second; the box stayed in New Order and the worker said stale."""
    scenario = order(PLACED, NopChange("order.status_changed", 20, PAID, 0))
    stale = [{"flow": NOP_STREAK, "event_id": "e1", "outcome": "stale"}]
    buckets = reconcile(record_for(scenario, flows=(NOP_STREAK,)), [box("5001")], outcomes=stale)
    assert buckets[(NOP_STREAK, "e1")] == "lost"


def test_an_older_change_dropped_as_stale_after_a_newer_one_is_dropped_with_a_reason() -> None:
    scenario = order(PLACED, NopChange("order.status_changed", 20, PAID, 60),
                     NopChange("order.status_changed", 30, PAID, 120))
    stale = [{"flow": NOP_STREAK, "event_id": "e1", "outcome": "stale"}]
    buckets = reconcile(record_for(scenario, flows=(NOP_STREAK,)), [box("5003")], outcomes=stale)
    assert buckets == {(NOP_STREAK, "e0"): "delivered_once", (NOP_STREAK, "e1"): "dropped",
                       (NOP_STREAK, "e2"): "delivered_once"}


def test_a_ghost_box_without_the_order_key_or_a_second_task_is_a_duplicate() -> None:
    scenario = order(PLACED)
    assert reconcile(record_for(scenario, flows=(NOP_STREAK,)),
                     [box(), box(key=None)]) == {(NOP_STREAK, "e0"): "duplicated"}
    assert reconcile(record_for(scenario, flows=(NOP_STREAK,)), [box(tasks=2)]) == {(NOP_STREAK, "e0"): "duplicated"}


def test_a_document_a_cent_short_is_wrong_and_two_notes_are_a_duplicate() -> None:
    scenario = order(PLACED)
    assert reconcile(record_for(scenario, flows=(NOP_QBO,)), [], qbo=receipt("1298.99")) == {(NOP_QBO, "e0"): "wrong"}
    twice = ["Sent to QuickBooks: SalesReceipt 700001"] * 2
    assert reconcile(record_for(scenario, flows=(NOP_QBO,)), [], notes=twice) == {(NOP_QBO, "e0"): "duplicated"}


def test_an_unpaid_order_booked_as_a_sales_receipt_is_wrong() -> None:
    scenario = order(NopChange("order.placed", 10, PENDING, 0))
    assert reconcile(record_for(scenario, flows=(NOP_QBO,)), []) == {(NOP_QBO, "e0"): "wrong"}


def test_dead_letters_redrive_and_missing_effects() -> None:
    scenario = order(PLACED)
    letter = Letter(NOP_QBO, "e0", "target_unavailable", "retryable", "503")
    redriven = record_for(scenario, flows=(NOP_QBO,), before=[letter])
    assert reconcile(redriven, []) == {(NOP_QBO, "e0"): "delivered_after_redrive"}
    still = record_for(scenario, flows=(NOP_QBO,), before=[letter], after=[letter])
    assert reconcile(still, [], qbo=receipt(kind="none")) == {(NOP_QBO, "e0"): "dead_lettered"}
    gone = record_for(scenario, flows=(NOP_QBO,), before=[letter])
    assert reconcile(gone, [], qbo=receipt(kind="none")) == {(NOP_QBO, "e0"): "lost"}
    nowhere = record_for(scenario, flows=(NOP_QBO,))
    assert reconcile(nowhere, [], qbo=receipt(kind="none")) == {(NOP_QBO, "e0"): "lost"}
    unsettled = record_for(scenario, flows=(NOP_QBO,), settled=False)
    assert reconcile(unsettled, [], qbo=receipt(kind="none")) == {(NOP_QBO, "e0"): "unsettled"}


def test_an_order_below_the_deal_rule_is_dropped_as_filtered_and_a_box_for_it_is_wrong() -> None:
    scenario = order(PLACED, template="nop_order_small")
    assert reconcile(record_for(scenario, flows=(NOP_STREAK,)), []) == {(NOP_STREAK, "e0"): "dropped"}
    assert reconcile(record_for(scenario, flows=(NOP_STREAK,)), [box()]) == {(NOP_STREAK, "e0"): "wrong"}


def test_a_letter_still_there_after_a_redrive_with_faults_off_is_a_defect_unless_the_payload_is_poison() -> None:
    letter = Letter(NOP_QBO, "e0", "target_auth_failed", "permanent", "invalid_grant")
    stuck = record_for(order(PLACED), flows=(NOP_QBO,), before=[letter], after=[letter])
    report = Reconciler(stuck, streak={"boxes": []}, quickbooks=receipt(kind="none"), notes={}, stock={},
                        clarity_orders={}, outcomes=[]).reconcile()
    assert [(r.bucket, r.reason) for r in report.results] == [("dead_lettered", "target_auth_failed")]
    assert [d.bucket for d in report.defects] == ["stuck"] and not report.failed
    poison = record_for(order(PLACED, poison="unknown_sku"), flows=(NOP_QBO,),
                        before=[letter], after=[Letter(NOP_QBO, "e0", "unmapped_product", "permanent", "")])
    report = Reconciler(poison, streak={"boxes": []}, quickbooks=receipt(kind="none"), notes={}, stock={},
                        clarity_orders={}, outcomes=[]).reconcile()
    assert [r.bucket for r in report.results] == ["dead_lettered"] and not report.defects


def test_an_order_cancelled_in_the_shop_before_booking_needs_no_document() -> None:
    scenario = order(NopChange("order.placed", 10, PENDING, 0), NopChange("order.status_changed", 40, PENDING, 30))
    said = {(NOP_QBO, "e0"): "cancelled_before_booking", (NOP_QBO, "e1"): "nothing_to_void"}
    buckets = reconcile(record_for(scenario, flows=(NOP_QBO,)), [], qbo=receipt(kind="none"), drops=said)
    assert buckets == {(NOP_QBO, "e0"): "dropped", (NOP_QBO, "e1"): "dropped"}
    # nothing booked and no reason recorded: every drop must say why
    buckets = reconcile(record_for(scenario, flows=(NOP_QBO,)), [], qbo=receipt(kind="none"))
    assert buckets == {(NOP_QBO, "e0"): "lost", (NOP_QBO, "e1"): "lost"}
    open_invoice = receipt(kind="invoices")
    open_invoice["invoices"][0]["status"] = "Open"
    buckets = reconcile(record_for(scenario, flows=(NOP_QBO,)), [], qbo=open_invoice, notes=[])
    assert buckets[(NOP_QBO, "e1")] == "lost"


def test_an_unknown_sku_order_cancelled_after_its_dead_letter_is_a_drop_with_a_reason_or_lost() -> None:
    """Chaos seed 7, orders 700694 and 700938: order.placed dead-lettered (unmapped_product), then the cancel's
    execution found nothing to void and said nothing. Without a recorded drop the cancel is lost."""
    scenario = order(PLACED, NopChange("order.status_changed", 40, PAID, 0), poison="unknown_sku")
    letter = Letter(NOP_QBO, "e0", "unmapped_product", "permanent", "unmapped product CHAOS-NO-SUCH-SKU")
    record = record_for(scenario, flows=(NOP_QBO,), before=[letter], after=[letter])
    assert reconcile(record, [], qbo=receipt(kind="none")) == {(NOP_QBO, "e0"): "dead_lettered",
                                                              (NOP_QBO, "e1"): "lost"}
    record.deliveries.append(Delivery(0, 1, "new_id", "nopcommerce", "e1-again", 202, (NOP_QBO,)))
    buckets = reconcile(record, [], qbo=receipt(kind="none"), drops={(NOP_QBO, "e1"): "nothing_to_void"})
    assert buckets == {(NOP_QBO, "e0"): "dead_lettered", (NOP_QBO, "e1"): "dropped",
                       (NOP_QBO, "e1-again"): "dropped"}  # its twin's execution was the one that ran


def test_the_same_change_under_a_new_id_counts_with_its_twin_in_the_dlq() -> None:
    scenario = order(PLACED, poison="unknown_sku")
    record = record_for(scenario, flows=(NOP_QBO,))
    record.deliveries.append(Delivery(0, 0, "new_id", "nopcommerce", "e0-again", 202, (NOP_QBO,)))
    record.letters_before_redrive = [Letter(NOP_QBO, "e0", "unmapped_product", "permanent", ""),
                                     Letter(NOP_QBO, "e0-again", "unmapped_product", "permanent", "")]
    record.letters_after_redrive = [Letter(NOP_QBO, "e0", "unmapped_product", "permanent", "")]
    buckets = reconcile(record, [], qbo=receipt(kind="none"))
    assert buckets == {(NOP_QBO, "e0"): "dead_lettered", (NOP_QBO, "e0-again"): "dead_lettered"}


def test_the_report_names_each_bucket_and_each_defect_with_its_sequence() -> None:
    scenario = order(PLACED, NopChange("order.status_changed", 20, PAID, 0))
    record = record_for(scenario, flows=(NOP_STREAK,))
    report = Reconciler(record, streak={"boxes": [box("5001")]}, quickbooks=receipt(), notes={}, stock={},
                        clarity_orders={}, outcomes=[{"flow": NOP_STREAK, "event_id": "e1", "outcome": "stale"}]
                        ).reconcile()
    out = io.StringIO()
    render(report, record, out=out)
    text = out.getvalue()
    assert re.search(r"lost \(must be 0\) +1 ", text)
    assert "[lost] nopcommerce-to-streak: nopCommerce order 700001 (nop_order_b2b): status 20: logged stale" in text
    assert "order.status_changed (status 20, payment 30) at 2026-12-01T08:00:00Z id=e1 [first] → HTTP 202" in text
    assert report.failed


# --------------------------------------------------------------------------- Clarity: what the poison event said

def clarity_poison(template: str) -> tuple[RunRecord, str]:
    scenario = ClarityScenario(n=0, template=template, customer_id="C-CHAOS-7-0", statuses=(), same_second=(),
                               sends=(Send(0),), poison="unmapped_payment_status")
    record = RunRecord(config=ChaosConfig(orders=1, seed=7), scenarios=[scenario])
    record.sent_scenarios = {0}
    record.clarity_orders = {0: "CL-CHAOS-7-0"}
    record.deliveries = [Delivery(0, 0, "first", "clarity", "msg_chaos7_CL-CHAOS-7-0", 202, (CLARITY_STREAK,))]
    record.settled = record.settled_after_redrive = True
    return record, "msg_chaos7_CL-CHAOS-7-0"


def clarity_box(stage: str) -> dict[str, Any]:
    return {"key": "b1", "name": "Clarity CL-CHAOS-7-0 · Sam Lee", "stageKey": stage,
            "fields": {"Order number": "CL-CHAOS-7-0"},
            "tasks": [{"text": "Follow up on Clarity order CL-CHAOS-7-0"}], "comments": ["Payment: captured"]}


@pytest.mark.parametrize(("template", "stage", "other"), [("clarity_order_consumer", "5002", "5001"),
                                                           ("clarity_order_b2b", "5001", "5002")])
def test_a_clarity_poison_order_is_expected_in_the_stage_its_event_states(template: str, stage: str,
                                                                          other: str) -> None:
    """Chaos run seed 7 (2,000 orders) reported six consumer poison orders lost, 'box in stage 5002, the
    newest change says 5001': the poison event is the consumer sample, whose order is already processing
    (stage 5002); the checker took every order.created as pending. The b2b sample is pending."""
    record, event_id = clarity_poison(template)
    sent = clarity_poison_event(record.scenarios[0], 7)  # type: ignore[arg-type]
    assert sent["data"]["paymentInfo"]["status"] == "captured"

    def bucket(box_stage: str) -> str:
        report = Reconciler(record, streak={"boxes": [clarity_box(box_stage)]}, quickbooks=receipt(), notes={},
                            stock={}, clarity_orders={}, outcomes=[]).reconcile()
        return {r.event_id: r.bucket for r in report.results}[event_id]

    assert bucket(stage) == "delivered_once"
    assert bucket(other) == "lost"


def test_a_clarity_poison_order_in_salesforce_has_the_lines_its_event_has() -> None:
    """The consumer sample the poison event is made of has one line (a placed chaos order has two)."""
    record, event_id = clarity_poison("clarity_order_consumer")
    record.deliveries[0].flows = (CLARITY_SALESFORCE,)
    orders = [{"Id": "801", "ExternalID__c": "CL-CHAOS-7-0"}]

    def bucket(lines: int) -> str:
        items = [{"Id": f"802{i}", "OrderId": "801"} for i in range(lines)]
        report = Reconciler(record, streak={"boxes": []}, quickbooks=receipt(), notes={}, stock={},
                            clarity_orders={}, outcomes=[],
                            salesforce={"Order": orders, "OrderItem": items}).reconcile()
        return {r.event_id: r.bucket for r in report.results}[event_id]

    assert bucket(1) == "delivered_once"
    assert bucket(2) == "wrong"


def test_a_bng_order_the_shop_cancelled_before_booking_is_a_drop_only_with_its_recorded_reasons() -> None:
    """Chaos seed 7, order 700938 after the BNG checker came: unknown SKU and cancelled in the same second. BNG's
    placed execution saw the shop's cancellation before its sales order step and recorded cancelled_before_booking
    (no dead letter); the cancel's execution recorded nothing_to_cancel. Both are drops; without the records, lost."""
    from switchyard_local.chaos.reconcile import NOP_BNG

    scenario = order(PLACED, NopChange("order.status_changed", 40, PAID, 0), poison="unknown_sku")
    record = record_for(scenario, flows=(NOP_BNG,))
    assert reconcile(record, []) == {(NOP_BNG, "e0"): "lost", (NOP_BNG, "e1"): "lost"}
    drops = {(NOP_BNG, "e0"): "cancelled_before_booking", (NOP_BNG, "e1"): "nothing_to_cancel"}
    assert reconcile(record, [], drops=drops) == {(NOP_BNG, "e0"): "dropped", (NOP_BNG, "e1"): "dropped"}
