"""``make demo``: signed webhooks through the local stack: nopCommerce → Streak, then Clarity ⇄ Streak, then
nopCommerce ⇄ QuickBooks, then Clarity ⇄ Salesforce, then nopCommerce ⇄ BNG (orders, then BNG's products and
stock); then, on a second stack, a nopCommerce shop that is polled instead.

It checks what it shows: the exit code is 0 only if every step did what the invariants promise.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from switchyard_local.sandboxes.clarity import DEMO_ORDERS
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

FLOW = "nopcommerce-to-streak"


class Demo:
    def __init__(self, stack: LocalStack, out: Any = sys.stdout) -> None:
        self.stack = stack
        self.out = out
        self.http = httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local")
        self.problems: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def expect(self, ok: bool, what: str) -> None:
        self.say(f"    {'ok ' if ok else 'FAIL'} {what}")
        if not ok:
            self.problems.append(what)

    def send(self, label: str, body: bytes, *, expect: int, secret: str | None = None,
             event_id: str | None = None) -> dict[str, Any]:
        headers = signed_headers(secret or self.stack.signing_secret, body, event_id=event_id)
        status, answer = post_webhook(self.http, "nopcommerce", body, headers)
        brief = answer if isinstance(answer, dict) else {"body": answer}
        self.say(f"  → {label:<58} {status} {json.dumps(brief)[:110]}")
        self.expect(status == expect, f"{label}: HTTP {expect}")
        return {"headers": headers, "answer": answer}

    def run(self) -> int:
        stack, streak = self.stack, self.stack.streak
        self.say("Switchyard demo: nopCommerce → Streak on the embedded local stack (moto, no AWS account)")
        self.say(f"  stack {stack.stage}: flows {', '.join(stack.flows)}; Streak sandbox at {streak.base_url}\n")

        self.say("1. Webhooks, signed with the Standard Webhooks scheme")
        self.send("order 1042 status → Processing (arrives before its order)",
                  sample("nop_status_processing"), expect=202)
        placed = self.send("order 1042 placed (B2B, Acme Corp)", sample("nop_order_b2b"), expect=202)
        self.send("order 1042 placed again (same webhook-id: a duplicate)", sample("nop_order_b2b"),
                  expect=202, event_id=placed["headers"]["webhook-id"])
        streak.faults.fail_next(2, status=503)
        self.say("     (the Streak sandbox will answer the next two calls with 503)")
        self.send("order 1043 placed (consumer)", sample("nop_order_consumer"), expect=202)
        self.send("order 1044 placed (€25, no company: below the deal rule)", sample("nop_order_small"), expect=202)
        invalid = json.loads(sample("nop_order_small"))
        del invalid["data"]["Customer"]["Email"]
        invalid["data"]["Order"]["OrderTotal"] = "a lot"
        self.send("an invalid order (no e-mail, total not a number)", json.dumps(invalid).encode(), expect=422)
        self.send("order 1042 with a forged signature", sample("nop_order_b2b"), expect=401,
                  secret="whsec_Zm9yZ2VkLXNpZ25pbmcta2V5LW5vdC10aGUtcmVhbC1vbmU=")

        self.say("\n2. Workers drain the queue (retries with backoff, out-of-order wait, idempotency)")
        self.drain()

        self.say("\n3. Streak rejects a write (400): the event goes to the DLQ with its reason")
        self.send_rejected_order()
        self.drain()

        self.say("\n3b. The deal keeps up: a later payment change (1043 authorized), delivered twice")
        self.send_payment_change()
        self.drain()

        self.say("\n4. What Streak now holds")
        self.show_streak()
        self.show_deal_details()
        self.show_names_resolved()
        self.say("\n5. What sits in the dead-letter queue")
        self.show_dead_letters()

        ClarityPairDemo(self).run()
        QuickBooksPairDemo(self).run()
        QuickBooksChoicesDemo(self).run()
        SalesforcePairDemo(self).run()
        BngPairDemo(self).run()
        BngProductsDemo(self).run()

        self.say("")
        if self.problems:
            self.say(f"Demo FAILED: {len(self.problems)} expectation(s) not met: {self.problems}")
            return 1
        self.say("Demo passed: every event reached its target exactly once in effect, or sits in the DLQ "
                 "with its reason; no echo was written back.")
        return 0

    def drain(self) -> None:
        started = time.monotonic()
        drained = self.stack.drain(timeout=90)
        self.expect(drained, f"flow queue empty after {time.monotonic() - started:.1f}s")

    def send_rejected_order(self) -> None:
        order = json.loads(sample("nop_order_consumer"))
        order["data"]["Order"].update(Id=1045, CustomOrderNumber="1045", OrderGuid=GUID_1045)
        self.stack.seed_shop_order(order["data"])  # the shop has it: the QuickBooks flow writes back to it
        # nothing else is in flight, so the sandbox's next answer is this order's
        self.stack.streak.faults.fail_next(1, status=400)
        self.say("     (the Streak sandbox will refuse the next call with 400)")
        self.send("order 1045 placed", json.dumps(order).encode(), expect=202)

    def send_payment_change(self) -> None:
        change = json.loads(sample("nop_order_consumer"))
        change.update(type="order.status_changed", timestamp="2026-11-20T11:00:00Z")
        change["data"] = {"Order": {**change["data"]["Order"], "PaymentStatusId": 20}}  # Pending → Authorized
        body = json.dumps(change).encode()
        first = self.send("order 1043 payment → Authorized", body, expect=202)
        self.drain()
        # the same delivery again, as a retry after a lost answer: the worker's idempotency and the target's
        # own check (the timeline line is keyed by the event) both stand in its way
        self.send("order 1043 payment → Authorized again (same webhook-id)", body, expect=202,
                  event_id=first["headers"]["webhook-id"])

    def show_deal_details(self) -> None:
        """Addresses, the rep, contact and organization fields, the timeline: what issue 11 added."""
        snapshot = self.stack.streak.snapshot()
        by_order = {b["fields"].get("Order number"): b for b in snapshot["boxes"]}
        b2b, consumer = by_order.get("1042", {}), by_order.get("1043", {})
        for box in (b2b, consumer):
            self.say(f"  box {box.get('key')}: assigned to {box.get('assignees')}, "
                     f"task for {[t['assignee'] for t in box.get('tasks', [])]}, timeline {box.get('comments')}")
        org = next((o for o in snapshot["organizations"] if o.get("name") == "Acme Corp"), {})
        self.say(f"  organization Acme Corp: addresses {org.get('addresses')}")
        fields = b2b.get("fields", {})
        self.expect((fields.get("Billing street"), fields.get("Billing city"), fields.get("Billing postal code"),
                     fields.get("Billing country")) == ("1 Main St", "Springfield", "12345", "US"),
                    "1042's billing address parsed into its fields; the shipping address into its own")
        self.expect(org.get("addresses") == ["1 Main St, Springfield, 12345, US"],
                    "Acme Corp's organization carries the billing address")
        self.expect(b2b.get("assignees") == ["kim.accounts@example.com"]
                    and [t["assignee"] for t in b2b.get("tasks", [])] == ["kim.accounts@example.com"],
                    "1042 (Acme Corp) and its task go to the key-account rep (a rule in the mapping)")
        reps = consumer.get("assignees", [])
        self.expect(len(reps) == 1 and reps[0].endswith(".europe@example.com"),
                    "1043 (billed in France) goes to a rep of the European team, picked by the order's hash")
        contact = next((c for c in snapshot["contacts"] if c.get("emailAddresses") == ["sam.lee@gmail.com"]), {})
        self.expect(contact.get("other") == "nopCommerce customer 78", "the contact's fields from the mapping")
        self.expect(consumer.get("fields", {}).get("Payment status") == "9002",
                    "1043's payment field follows to Authorized")
        lines = [c for c in consumer.get("comments", []) if c.startswith("Order status")]
        self.expect(len(lines) == 1 and "Payment: Authorized" in lines[0],
                    "one timeline line for the payment change, none for its redelivery")

    def show_names_resolved(self) -> None:
        """nopcommerce-to-streak.yaml names the pipeline's stages, fields and dropdown items; the worker found
        their keys in the pipeline Streak answered (read once, not per event)."""
        streak = self.stack.streak
        fields = {f.name: f for f in streak.pipeline.fields}
        paid = dict((name, key) for key, name in fields["Payment status"].items)["Paid"]
        processing = next(s.key for s in streak.pipeline.stages if s.name == "Processing")
        box = next((b for b in streak.snapshot()["boxes"] if b["fields"].get("Order number") == "1042"), {})
        reads = sum(1 for method, path, status in streak.requests  # answered: a 503 (act 1's) is read again
                    if method == "GET" and path == f"/api/v1/pipelines/{streak.pipeline.key}" and status == 200)
        self.say(f"  the mapping names stage \"Processing\", field \"Payment status\", item \"Paid\": in this pipeline "
                 f"{processing}, {fields['Payment status'].key}, {paid}; the pipeline was read {reads} time(s)")
        self.expect(box.get("stageKey") == processing and box.get("fields", {}).get("Payment status") == paid
                    and 1 <= reads <= 2,  # the cache lasts five minutes: a slow machine may read it twice
                    "the mapping's names became this pipeline's keys (1042: Processing, Paid), not read per event")

    def show_streak(self) -> None:
        snapshot = self.stack.streak.snapshot()
        boxes = snapshot["boxes"]
        for box in boxes:
            fields = box["fields"]
            self.say(f"  box {box['key']}: {box['name']!r} stage={box['stage']!r}")
            self.say(f"      fields: {json.dumps(fields, ensure_ascii=False)}")
            self.say(f"      contacts={box['contacts']} organizations={box['organizations']} "
                     f"tasks={[t['text'] for t in box['tasks']]}")
        self.say(f"  contacts: {[c['emailAddresses'] for c in snapshot['contacts']]}")
        by_order = {b["fields"].get("Order number"): b for b in boxes}
        self.expect(len(boxes) == 2, "two boxes: 1042 and 1043 (1044 filtered, 1045 rejected, no duplicates)")
        self.expect(len(snapshot["contacts"]) == 2, "two contacts (e-mails normalised)")
        self.expect(by_order.get("1042", {}).get("stage") == "Processing",
                    "1042 moved to Processing once its box existed")
        self.expect(by_order.get("1043", {}).get("stage") == "Processing", "1043 delivered after two 503s")
        self.expect(all(len(b["tasks"]) == 1 for b in boxes), "one follow-up task per box")

    def show_dead_letters(self) -> None:
        letters = self.stack.dead_letters(FLOW)
        for letter in letters:
            self.say(f"  {letter.get('flow')} event {letter.get('event_id')}: {letter.get('error_class')} / "
                     f"{letter.get('reason')} (target HTTP {letter.get('target_status')}, "
                     f"attempts {letter.get('attempts')})")
        self.expect(len(letters) == 1 and letters[0].get("reason") == "target_rejected",
                    "order 1045 in the DLQ with reason target_rejected")


class ClarityPairDemo:
    """Clarity eCommerce ⇄ Streak: orders become deals, stages flow back, and no echo loops."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.clarity = demo.stack.clarity
        self.streak = demo.stack.streak

    def run(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("\n6. Clarity eCommerce ⇄ Streak (Clarity's webhooks, signed; Streak's, with a shared token)")
        say("  → two shoppers complete purchases in Clarity")
        b2b = self.clarity.place_order(DEMO_ORDERS[0])
        consumer = self.clarity.place_order(DEMO_ORDERS[1])
        self.drain()
        boxes = self.boxes()
        expect(boxes.get(b2b["orderId"], {}).get("stage") == "Processing",
               f"{b2b['orderId']} is a deal in Processing, with contact, task and payment note")
        box = boxes.get(b2b["orderId"], {})
        expect(box.get("comments") == ["Payment: card, paid"] and len(box.get("tasks", [])) == 1,
               "payment logged as a box comment without card digits; one follow-up task")
        expect(boxes.get(consumer["orderId"], {}).get("stage") == "New Order", f"{consumer['orderId']} in New Order")

        say(f"  → an admin marks {consumer['orderId']} shipped in Clarity")
        self.clarity.set_order_status(consumer["orderId"], "shipped")
        self.drain()
        expect(self.boxes()[consumer["orderId"]]["stage"] == "Processing", "its box follows to Processing")
        expect(self.api_status_changes(consumer["orderId"]) == [],
               "Streak's webhook for that move is recognised as Switchyard's own: nothing written back")

        say(f"  → a sales rep drags {b2b['orderId']}'s box to Complete in Streak")
        self.streak.move_box(box["key"], "5003")
        self.drain()
        expect(self.clarity.get_order(b2b["orderId"])["status"] == "delivered",
               "Clarity learns it: the order is now delivered")
        expect(self.api_status_changes(b2b["orderId"]) == ["delivered"], "written once, by Switchyard")
        expect(self.boxes()[b2b["orderId"]]["stage"] == "Complete",
               "Clarity's webhook for that change is recognised as an echo: the box is left alone")

        contact_key = self.contact_key("jane.doe@acme-corp.example")
        shop = self.demo.stack.nopcommerce  # she has an account in the nopCommerce shop too, without a phone
        shopper = shop.seed_customer("jane.doe@acme-corp.example", FirstName="Jane", LastName="Doe")
        say("  → the rep edits the contact in Streak: first name Janet, a new phone number")
        self.streak.edit_contact(contact_key, givenName="Janet", phoneNumbers=["+1 555 0123"])
        self.drain()
        customer = self.clarity.get_customer(b2b["customerId"])
        expect(customer["firstName"] == "Janet", "the name reaches Clarity (master: both)")
        expect(customer.get("phone") != "+1 555 0123", "the phone does not (master: Clarity)")
        in_shop = shop.customer(shopper["id"])
        expect((in_shop["first_name"], in_shop["phone"]) == ("Janet", "+1 555 0123"),
               "and the nopCommerce customer with that e-mail (streak-to-nopcommerce): name, and the phone "
               "the shop lacked (master: nopcommerce_if_set)")

        say("  → the customer changes their e-mail in Clarity")
        self.clarity.update_customer(b2b["customerId"], email="jane@acme-corp.example")
        self.drain()
        contact = next(c for c in self.streak.snapshot()["contacts"] if c["key"] == contact_key)
        expect(contact["emailAddresses"][0] == "jane@acme-corp.example", "the Streak contact follows")

        say("\n7. What each flow did (from the workers' logs)")
        for flow in ("clarity-to-streak", "streak-to-clarity", "streak-to-nopcommerce"):
            counts: dict[str, int] = {}
            for outcome in self.stack.outcomes(flow):
                counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
            say(f"  {flow}: {json.dumps(counts, sort_keys=True)}")
        echoes = [o for o in self.stack.outcomes() if o["outcome"] == "echo"]
        expect(len(echoes) >= 3, f"{len(echoes)} echoes suppressed, none written back")
        nop_echoes = [o for o in self.stack.outcomes("streak-to-nopcommerce") if o["outcome"] == "echo"]
        expect(bool(nop_echoes), "the contact writes of act 1 (nopcommerce-to-streak) came back to "
                                 f"streak-to-nopcommerce as {len(nop_echoes)} echo(es): the shop was not written")
        letters = [*self.stack.dead_letters("clarity-to-streak"), *self.stack.dead_letters("streak-to-clarity"),
                   *self.stack.dead_letters("streak-to-nopcommerce")]
        expect(letters == [], "nothing in the pair's dead-letter queues")

    def drain(self) -> None:
        started = time.monotonic()
        self.demo.expect(self.stack.drain(timeout=90), f"settled after {time.monotonic() - started:.1f}s")

    def boxes(self) -> dict[str, dict[str, Any]]:
        return {b["fields"].get("Order number"): b for b in self.streak.snapshot()["boxes"]}

    def api_status_changes(self, order_id: str) -> list[str]:
        history = self.clarity.get_order(order_id).get("statusHistory", [])
        return [entry["status"] for entry in history if entry.get("by") == "api"]

    def contact_key(self, email: str) -> str:
        return next(c["key"] for c in self.streak.snapshot()["contacts"] if email in c["emailAddresses"])


QBO_FLOW = "nopcommerce-to-quickbooks"
STOCK_FLOW = "quickbooks-to-nopcommerce"
ITEM_FLOW = "nopcommerce-products-to-quickbooks"


class QuickBooksPairDemo:
    """nopCommerce ⇄ QuickBooks Online: the order-to-cash state machine, and stock levels back to the shop.

    Act 1's nopCommerce orders went to this flow too: 1042 and 1044 were paid (SalesReceipts), 1043
    (in EUR) and 1045 were not (Invoices)."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.qbo = demo.stack.quickbooks
        self.shop = demo.stack.nopcommerce
        self.realm = demo.stack.qbo_realm

    def run(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("\n8. nopCommerce ⇄ QuickBooks Online (order-to-cash in Step Functions, inside 500/min and 10/s)")
        say("  act 1's orders each ran through the state machine:")
        for execution in self.stack.executions(QBO_FLOW):
            say(f"    {execution['name'][len(QBO_FLOW) + 1:]:<52} {execution['status']}")
        receipts, invoices = self.documents("SalesReceipt"), self.documents("Invoice")
        expect(set(receipts) == {"1042", "1044"}, "paid orders 1042 and 1044 became SalesReceipts")
        expect(set(invoices) == {"1043", "1045"}, "unpaid orders 1043 and 1045 became Invoices")
        euro = invoices.get("1043", {})
        expect(euro.get("CurrencyRef", {}).get("value") == "EUR" and "rate" in euro.get("PrivateNote", "").lower(),
               "1043 is in EUR, converted with the order's CurrencyRate, the rate recorded")
        notes = [n["note"] for n in self.shop.notes(1042)]
        expect(any(n.startswith("Sent to QuickBooks: SalesReceipt 1042") for n in notes),
               f"nopCommerce learns it: {notes[-1] if notes else 'no note'!r}")
        customers = self.qbo.snapshot()["realms"][self.realm]["customers"]
        expect(len(customers) == len({c["DisplayName"] for c in customers}) == 3,
               "three customers (1043 and 1045 are one shopper; each DisplayName once)")

        say("  → order 1043 is paid (order.paid)")
        paid = json.loads(sample("nop_order_consumer"))
        paid["type"] = "order.paid"
        paid["data"] = {"Order": {**paid["data"]["Order"], "PaymentStatusId": 30}, "Customer": paid["data"]["Customer"]}
        self.demo.send("order 1043 paid", json.dumps(paid).encode(), expect=202)
        say("  → order 1047 is placed unpaid, then cancelled (order.status_changed → Cancelled)")
        unpaid = self.small_order(1047, GUID_1047, PaymentStatusId=10)
        self.stack.seed_shop_order(unpaid["data"])
        self.demo.send("order 1047 placed (payment pending)", json.dumps(unpaid).encode(), expect=202)
        self.demo.drain()
        expect(self.documents("Invoice").get("1047", {}).get("status") == "Open", "1047 is an open Invoice")
        self.demo.send("order 1047 cancelled", self.changed_order(1047, "1047", GUID_1047, OrderStatusId=40),
                       expect=202)
        say("  → an order for a product QuickBooks does not know")
        unmapped = self.small_order(1046, GUID_1046)
        unmapped["data"]["OrderItems"][0]["Product"]["Sku"] = "GIFT-CARD-99"
        self.stack.seed_shop_order(unmapped["data"])
        self.demo.send("order 1046 placed (SKU GIFT-CARD-99)", json.dumps(unmapped).encode(), expect=202)
        say("  → an accountant counts the chairs in QuickBooks: 3 left (Item webhook, intuit-signature)")
        chair = next(i for i in self.qbo.snapshot()["realms"][self.realm]["items"] if i.get("Sku") == "CHAIR-ERG-07")
        self.qbo.set_item_quantity(self.realm, chair["Id"], 3)
        self.demo.drain()

        invoice = self.documents("Invoice").get("1043", {})
        payments = self.qbo.snapshot()["realms"][self.realm]["payments"]
        linked = [p for p in payments if any(link.get("TxnId") == invoice.get("Id")
                                             for line in p.get("Line", []) for link in line.get("LinkedTxn", []))]
        expect(len(linked) == 1 and invoice.get("Balance") == 0, "a Payment linked to invoice 1043; balance 0")
        voided = self.documents("Invoice").get("1047", {})
        expect(voided.get("status") == "Voided", "invoice 1047 voided (compensation)")
        notes = [n["note"] for n in self.shop.notes(1047)]
        expect(bool(notes) and notes[-1].startswith("Voided in QuickBooks"), f"nopCommerce note: {notes[-1:]}")
        stock = self.shop.product_by_sku("CHAIR-ERG-07")["stock_quantity"]
        expect(stock == 3, f"nopCommerce stock for CHAIR-ERG-07 is {stock} (QuickBooks: 3)")
        say("  → an admin renames and reprices the chair in nopCommerce (product.updated, from the shop's sender)")
        product = self.shop.product_by_sku("CHAIR-ERG-07")
        chair_before = self.qbo.get_entity(self.realm, "Item", chair["Id"])
        edit = {"type": "product.updated", "timestamp": "2026-11-21T10:04:12Z", "data": {"Product": {
            "Id": product["id"], "Name": "Ergonomic chair: mesh back", "Sku": "CHAIR-ERG-07", "Price": 289.0}}}
        self.demo.send("product CHAIR-ERG-07 edited", json.dumps(edit).encode(), expect=202)
        self.demo.drain()
        chair_now = self.qbo.get_entity(self.realm, "Item", chair["Id"])
        expect((chair_now["Name"], chair_now["UnitPrice"]) == ("Ergonomic chair- mesh back", 289)
               and int(chair_now["SyncToken"]) == int(chair_before["SyncToken"]) + 1,
               "its QuickBooks Item is renamed (':' is QuickBooks' sub-item separator) and repriced: one sparse "
               "update with the SyncToken (nopcommerce-products-to-quickbooks)")
        expect(self.shop.product_by_sku("CHAIR-ERG-07")["stock_quantity"] == 3,
               "QuickBooks' Item notification for that update changes no stock in the shop")
        letters = self.stack.dead_letters(QBO_FLOW)
        for letter in letters:
            say(f"  DLQ {letter.get('flow')}: {letter.get('reason')}: {letter.get('message')}")
        expect([letter.get("reason") for letter in letters] == ["unmapped_product"]
               and "unmapped product GIFT-CARD-99" in letters[0].get("message", ""),
               "order 1046 in the DLQ: \"unmapped product GIFT-CARD-99\", no document created")
        expect("1046" not in self.documents("Invoice") and "1046" not in self.documents("SalesReceipt"),
               "no partial document for 1046")
        told = [n["note"] for n in self.shop.notes(1046)]
        expect(len(told) == 1 and told[0].startswith("Not sent to QuickBooks: unmapped product GIFT-CARD-99."),
               f"nopCommerce note on 1046 says why and what to do: {told[:1]}")
        used = self.qbo.requests_per_realm(self.realm)
        say(f"  QuickBooks API calls for realm {self.realm}: {json.dumps(used)}")
        expect(self.stack.dead_letters(STOCK_FLOW) == [] and self.stack.dead_letters(ITEM_FLOW) == [],
               "nothing in the stock or item flows' DLQs")

    def documents(self, entity: str) -> dict[str, dict[str, Any]]:
        key = {"SalesReceipt": "salesReceipts", "Invoice": "invoices"}[entity]
        return {d.get("DocNumber"): d for d in self.qbo.snapshot()["realms"][self.realm][key]}

    def changed_order(self, order_id: int, number: str, guid: str, **changes: Any) -> bytes:
        event = json.loads(sample("nop_status_processing"))
        event["data"]["Order"].update(Id=order_id, CustomOrderNumber=number, OrderGuid=guid, **changes)
        return json.dumps(event).encode()

    def small_order(self, order_id: int, guid: str, **changes: Any) -> dict[str, Any]:
        """A variant of act 1's small order (which the Streak flow filters, so it only concerns QuickBooks)."""
        event = json.loads(sample("nop_order_small"))
        event["data"]["Order"].update(Id=order_id, CustomOrderNumber=str(order_id), OrderGuid=guid, **changes)
        return event


@contextmanager
def deployed_mapping(stack: LocalStack, file_name: str, change: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """An operator's change to a flow's mapping document, deployed: the flow's functions start cold and read the
    changed document; afterwards (a rollback) the shipped one again. The local stack runs the functions in this
    process, so deploying is the loader reading the document from a folder of its own, then a cold start."""
    from switchyard.systems.quickbooks import order_mapping

    shipped = order_mapping.mapping_path
    document = yaml.safe_load(shipped(file_name).read_text())
    change(document)
    folder = Path(tempfile.mkdtemp(prefix="switchyard-demo-mappings-"))
    (folder / file_name).write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))

    def cold_start() -> None:
        order_mapping._load.cache_clear()  # the per-process (cold start) cache of loaded documents
        for function in stack.functions.values():
            function._module = None  # the next invocation loads the handler again: a cold start

    order_mapping.mapping_path = lambda name: folder / name if name == file_name else shipped(name)
    cold_start()
    try:
        yield
    finally:
        order_mapping.mapping_path = shipped
        cold_start()


class QuickBooksChoicesDemo:
    """What nopCommerce ⇄ QuickBooks does once its operator chooses it in the flow's mapping document (the shipped
    one leaves it off: the ids are the company's own): payment methods on the SalesReceipt and the Payment, and
    unknown products created as Items; then a partial refund (the shipped document books refunds)."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.qbo = demo.stack.quickbooks
        self.shop = demo.stack.nopcommerce
        self.realm = demo.stack.qbo_realm

    def run(self) -> None:
        say = self.demo.say
        card = self.qbo.seed_payment_method(self.realm, "Credit Card", "CREDIT_CARD")["Id"]
        paypal = self.qbo.seed_payment_method(self.realm, "PayPal", "NON_CREDIT_CARD")["Id"]
        say("\n8b. The operator chooses, in nopcommerce-to-quickbooks.yaml, and deploys:")
        say(f"  lookups.payment_methods: Payments.Manual → {card} (Credit Card), Payments.PayPalCommerce.Standard → "
            f"{paypal} (PayPal); items.unknown: create (income account {NEW_ITEM_INCOME_ACCOUNT})")

        def choose(document: dict[str, Any]) -> None:
            document["lookups"]["payment_methods"] = {"Payments.Manual": card,
                                                      "Payments.PayPalCommerce.Standard": paypal, "*": None}
            document["items"]["unknown"] = "create"
            document["items"]["create"]["income_account_id"] = NEW_ITEM_INCOME_ACCOUNT

        with deployed_mapping(self.stack, QBO_MAPPING, choose):
            self.payment_details(card, paypal)
            self.unknown_product()
        self.partial_refund()

    def payment_details(self, card: str, paypal: str) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("  → order 1060 placed, paid by card (capture ch_3QyS9eMleJxIv8jy1toO1C60)")
        self.place(self.order(1060, GUID_1060, PaymentMethodSystemName="Payments.Manual",
                              CaptureTransactionId=CAPTURE_1060))
        say("  → order 1061 placed by PayPal, payment pending; then paid (capture 8AB12345CD6789012)")
        self.place(self.order(1061, GUID_1061, PaymentStatusId=10, PaymentMethodSystemName=PAYPAL))
        self.demo.drain()
        paid = self.order(1061, GUID_1061, PaymentStatusId=30, PaymentMethodSystemName=PAYPAL,
                          CaptureTransactionId="8AB12345CD6789012")
        paid.update(type="order.paid", timestamp="2026-11-20T12:30:00Z", data={"Order": paid["data"]["Order"]})
        self.demo.send("order 1061 paid", json.dumps(paid).encode(), expect=202)
        self.demo.drain()
        receipt = self.documents("salesReceipts").get("1060", {})
        say(f"    SalesReceipt 1060: PaymentMethodRef {receipt.get('PaymentMethodRef')}, "
            f"PaymentRefNum {receipt.get('PaymentRefNum')!r}")
        expect(receipt.get("PaymentMethodRef") == {"value": card} and receipt.get("PaymentRefNum") == CAPTURE_1060[-21:]
               and CAPTURE_1060 in receipt.get("PrivateNote", ""),
               "SalesReceipt 1060 names the card method and the capture id (its last 21 characters; whole in the "
               "PrivateNote), for the bank statement")
        invoice = self.documents("invoices").get("1061", {})
        payments = [p for p in self.qbo.snapshot()["realms"][self.realm]["payments"]
                    if any(link.get("TxnId") == invoice.get("Id")
                           for line in p.get("Line", []) for link in line.get("LinkedTxn", []))]
        shown = [(p.get("PaymentMethodRef"), p.get("PaymentRefNum")) for p in payments]
        say(f"    Payment of invoice 1061: {shown}")
        expect(shown == [({"value": paypal}, "8AB12345CD6789012")] and "PaymentMethodRef" not in invoice,
               "invoice 1061's Payment names PayPal and the capture id (the Invoice itself names no payment)")

    def unknown_product(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("  → order 1062 for a product QuickBooks does not know (SKU LAMP-DESK-12), with items.unknown: create")
        order = self.order(1062, GUID_1062)
        order["data"]["OrderItems"][0].update(UnitPriceExclTax=24.99, PriceExclTax=24.99,
                                              Product={"Id": 120, "Name": "Desk lamp", "Sku": "LAMP-DESK-12"})
        self.place(order)
        self.demo.drain()
        items = [i for i in self.qbo.snapshot()["realms"][self.realm]["items"] if i.get("Sku") == "LAMP-DESK-12"]
        shown = [(i["Id"], i["Name"], i["Type"], i.get("UnitPrice")) for i in items]
        say(f"    QuickBooks Items with SKU LAMP-DESK-12: {shown}")
        expect(len(items) == 1 and (items[0]["Name"], items[0]["Type"], items[0].get("UnitPrice"),
                                    items[0].get("IncomeAccountRef")) == (
                   "Desk lamp", "NonInventory", 24.99, {"value": NEW_ITEM_INCOME_ACCOUNT}),
               "the Item is created from the nopCommerce product: name, SKU, price, income account, type")
        receipt = self.documents("salesReceipts").get("1062", {})
        lines = [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in receipt.get("Line", [])
                 if line.get("DetailType") == "SalesItemLineDetail"]
        expect(bool(items) and items[0]["Id"] in lines, "order 1062 is booked: its SalesReceipt sells the new Item")
        ours = [letter for letter in self.stack.dead_letters(QBO_FLOW) if GUID_1062 in json.dumps(letter)
                or "LAMP-DESK-12" in json.dumps(letter)]
        expect(ours == [], "nothing of 1062 in the DLQ")

    def partial_refund(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("\n8c. A partial refund (the shipped document again): $10.00 of order 1060 goes back to the card")
        refund = self.order(1060, GUID_1060, PaymentStatusId=35, RefundedAmount=10.00,
                            PaymentMethodSystemName="Payments.Manual", CaptureTransactionId=CAPTURE_1060)
        refund.update(type="order.refunded", timestamp="2026-11-23T10:00:00Z", data={"Order": refund["data"]["Order"]})
        body = json.dumps(refund).encode()
        self.demo.send("order 1060 refunded 10.00 (PaymentStatus PartiallyRefunded)", body, expect=202)
        self.demo.drain()
        self.demo.send("the same refund again (a re-poll: a new webhook-id)", body, expect=202)
        self.demo.drain()
        receipt = self.documents("salesReceipts").get("1060", {})
        refunds = [r for r in self.qbo.snapshot()["realms"][self.realm]["refundReceipts"]
                   if r.get("CustomerRef") == receipt.get("CustomerRef")]
        say(f"    RefundReceipts of 1060's customer: {[(r['Id'], r['TotalAmt']) for r in refunds]}")
        expect([r["TotalAmt"] for r in refunds] == [10.0],
               "one RefundReceipt of exactly 10.00 for the SalesReceipt; the re-poll books nothing twice")
        notes = [n["note"] for n in self.shop.notes(1060)]
        expect(bool(refunds) and any(n.startswith(f"Refund recorded in QuickBooks: RefundReceipt {refunds[0]['Id']}, "
                                                  "10.00 USD") for n in notes),
               f"nopCommerce learns it: {notes[-1:]}")

    def place(self, order: dict[str, Any]) -> None:
        self.stack.seed_shop_order(order["data"])  # checkout stored it before the webhook is sent
        number = order["data"]["Order"]["CustomOrderNumber"]
        self.demo.send(f"order {number} placed", json.dumps(order).encode(), expect=202)

    def order(self, number: int, guid: str, **changes: Any) -> dict[str, Any]:
        """A variant of act 1's small order (which the Streak flow filters, so it concerns the accounting only)."""
        event = json.loads(sample("nop_order_small"))
        event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=guid, **changes)
        return event

    def documents(self, kind: str) -> dict[str, dict[str, Any]]:
        return {d.get("DocNumber"): d for d in self.qbo.snapshot()["realms"][self.realm][kind]}


QBO_MAPPING = "nopcommerce-to-quickbooks.yaml"
NEW_ITEM_INCOME_ACCOUNT = "79"  # the demo company's "Sales of Product Income" account
PAYPAL = "Payments.PayPalCommerce.Standard"
CAPTURE_1060 = "ch_3QyS9eMleJxIv8jy1toO1C60"
GUID_1060 = "2d6c1b7e-5a4f-4c3d-8b2a-1e0f9d8c7b60"
GUID_1061 = "6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d61"
GUID_1062 = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c62"


class SalesforcePairDemo:
    """Clarity eCommerce ⇄ Salesforce: registrations, orders, products and stock in; a rep's change out
    through Change Data Capture, Event Relay and the EventBridge partner bus; no echo either way."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.clarity = demo.stack.clarity
        self.org = demo.stack.salesforce

    def run(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("\n9. Clarity eCommerce ⇄ Salesforce (Clarity's webhooks; Salesforce CDC through an EventBridge bus)")
        say("  → a shopper registers in Clarity (customer.created)")
        customer = self.clarity.register_customer({
            "customerId": "C-800", "firstName": "Ada", "lastName": "Byron", "email": "ada@analytical-engines.example",
            "phone": "+44 20 7946 0000", "company": "Analytical Engines Ltd"})
        self.demo.drain()
        contacts = self.org.find("Contact", ExternalID__c=customer["customerId"])
        accounts = self.org.find("Account", ExternalID__c=customer["customerId"])
        expect(len(contacts) == len(accounts) == 1 and contacts[0]["AccountId"] == accounts[0]["Id"],
               f"an Account ({accounts[0]['Name'] if accounts else '-'}) and its Contact, in one composite call")
        if not contacts:
            return
        say("  → a sales rep changes the contact's phone in Salesforce (ContactChangeEvent → partner bus → rule)")
        changes_before = len(self.org.change_events)
        self.org.update_record("Contact", contacts[0]["Id"], Phone="+44 20 7946 0999")
        self.demo.drain()
        phone = self.clarity.get_customer(customer["customerId"])["phone"]
        expect(phone == "+44 20 7946 0999", f"Clarity's customer has the new phone: {phone}")
        expect(len(self.org.change_events) == changes_before + 1,
               "no echo: Clarity's customer.updated was recognised, nothing written back to Salesforce")
        say("  → a shopper orders (order.created); a merchandiser adds a lamp and counts 25")
        order = self.clarity.place_order({**DEMO_ORDERS[0], "customerId": "C-800", "customer": {"customerId": "C-800"}})
        self.clarity.put_product("LAMP-LED-01", name="LED desk lamp", price=49.9, currency="USD")
        self.clarity.set_stock("LAMP-LED-01", 25)
        self.demo.drain()
        orders = self.org.find("Order", ExternalID__c=order["orderId"])
        items = [i for i in self.org.records("OrderItem") if orders and i["OrderId"] == orders[0]["Id"]]
        expect(len(orders) == 1 and len(items) == 2 and orders[0]["TotalAmount"] == 1299.0,
               f"{order['orderId']} is a Draft Order with {len(items)} items from the price book")
        products = self.org.find("Product2", ExternalID__c="LAMP-LED-01")
        expect(len(products) == 1 and products[0].get("StockOnHand__c") == 25,
               "the lamp is a Product2 with its standard price and stock 25")
        origins = {e.header["changeOrigin"].rpartition(";")[2] for e in self.org.change_events}
        say(f"  Salesforce change origins seen: {sorted(origins)}; API usage {self.org.api_usage}/"
            f"{self.org.daily_api_limit}")
        for flow in ("clarity-to-salesforce", "salesforce-to-clarity"):
            expect(self.stack.dead_letters(flow) == [], f"nothing in {flow}'s DLQ")


BNG_FLOW = "nopcommerce-to-bng"
BNG_WEBHOOKS = "bng-to-nopcommerce"
BNG_PRODUCTS = {"DESK-STD-01": ("Standing desk", "450.00"), "ARM-MON-02": ("Monitor arm", "90.00")}


class BngPairDemo:
    """nopCommerce ⇄ BNG: order-to-cash waits in Step Functions for BNG's shipment, whose signed webhook ends
    the wait; a cancellation ends a waiting execution; BNG's stock reaches the shop.

    Act 1's orders reached BNG before its products existed there, so they sit in its DLQ with their reasons;
    this act adds the products first, as BNG (master for products) would have them."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.bng = demo.stack.bng
        self.shop = demo.stack.nopcommerce

    def run(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("\n10. nopCommerce ⇄ BNG (order-to-cash waits in Step Functions for the shipment)")
        for sku, (name, price) in BNG_PRODUCTS.items():
            self.bng.add_product(sku, name, on_hand=100, unit_price=price)
        shipped, cancelled = self.order(1048, GUID_1048), self.order(1049, GUID_1049)
        for order in (shipped, cancelled):
            self.stack.seed_shop_order(order["data"])
            self.demo.send(f"order {order['data']['Order']['Id']} placed (B2B)", json.dumps(order).encode(),
                           expect=202)
        waiting = self.until(lambda: all(self.waits(guid) for guid in (GUID_1048, GUID_1049)), 90)
        expect(waiting, "1048 and 1049 are BNG sales orders; both executions wait for their shipment")
        first = self.bng.order_by_external_id(GUID_1048) or {}
        say(f"  → BNG ships sales order {first.get('SalesOrderID')} (UPS 1Z999AA10123456784): shipment.created")
        self.bng.ship_order(first["SalesOrderID"], carrier="UPS", tracking_number="1Z999AA10123456784")
        cancel = json.loads(sample("nop_status_processing"))
        cancel["data"]["Order"].update(Id=1049, CustomOrderNumber="1049", OrderGuid=GUID_1049, OrderStatusId=40)
        self.demo.send("order 1049 cancelled before it shipped", json.dumps(cancel).encode(), expect=202)
        say("  → BNG receives 20 monitor arms (inventory.changed)")
        try:
            arms = self.shop.product_by_sku("ARM-MON-02")
        except KeyError:
            arms = self.shop.seed_product("Monitor arm", "ARM-MON-02", 0)
        self.bng.record_inventory("ARM-MON-02", 20)
        self.demo.drain()

        tracking = [s["tracking_number"] for s in self.shop.shipments(1048)]
        expect(tracking == ["1Z999AA10123456784"], f"nopCommerce order 1048 has the shipment: tracking {tracking}")
        statuses = {e["name"][len(BNG_FLOW) + 1:]: e["status"] for e in self.stack.executions(BNG_FLOW)
                    if GUID_1048 in e["name"] or GUID_1049 in e["name"]}
        for name, status in statuses.items():
            say(f"    {name:<52} {status}")
        expect(statuses.get(GUID_1048) == "SUCCEEDED", "1048's execution went on from its wait and succeeded")
        expect((self.bng.order_by_external_id(GUID_1049) or {}).get("Status") == "Cancelled"
               and statuses.get(f"{GUID_1049}-cancel") == "SUCCEEDED" and statuses.get(GUID_1049) != "RUNNING",
               "1049 cancelled in BNG and its waiting execution ended")
        on_hand = self.bng.product("ARM-MON-02")["OnHand"]
        stock = self.shop.product(arms["id"])["stock_quantity"]
        expect(stock == on_hand, f"nopCommerce stock for ARM-MON-02 is {stock} (BNG on hand: {on_hand})")
        ours = [letter for letter in self.stack.dead_letters(BNG_FLOW)
                if GUID_1048 in json.dumps(letter) or GUID_1049 in json.dumps(letter)]
        expect(ours == [] and self.stack.dead_letters(BNG_WEBHOOKS) == [],
               "nothing of 1048, 1049 or BNG's webhooks in a DLQ")

    def order(self, number: int, guid: str) -> dict[str, Any]:
        event = json.loads(sample("nop_order_b2b"))
        event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=guid)
        return event

    def waits(self, guid: str) -> bool:
        running = any(e["name"] == f"{BNG_FLOW}-{guid}" and e["status"] == "RUNNING"
                      for e in self.stack.executions(BNG_FLOW))
        return running and self.bng.order_by_external_id(guid) is not None

    def until(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.stack.poll_all()
            if predicate():
                return True
            time.sleep(0.2)
        return False


class BngProductsDemo:
    """BNG is master for products: an attribute edited in BNG becomes the shop product's specification attribute
    (``product.changed``), and a stock change whose webhook was lost is found by the sweep of BNG's changed-since
    lists (the bng source's poller, run every minute by its EventBridge schedule; here on demand)."""

    SKU = "DESK-STD-01"

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.bng = demo.stack.bng
        self.shop = demo.stack.nopcommerce

    def run(self) -> None:
        say, expect = self.demo.say, self.demo.expect
        say("\n10b. BNG products → nopCommerce: a product attribute, and stock the sweep recovers")
        try:
            desk = self.shop.product_by_sku(self.SKU)
        except KeyError:
            desk = self.shop.seed_product("Standing desk", self.SKU, 0)
        say(f"  → BNG's product manager sets {self.SKU}: Material Bamboo, width 160 cm (product.changed)")
        self.bng.set_product_attributes(self.SKU, Material="Bamboo", WidthCm=160, Internal="not mapped")
        self.demo.drain()
        specifications = self.shop.specifications(desk["id"])
        expect(specifications == {"Material": "Bamboo", "Width (cm)": "160"},
               f"nopCommerce specification attributes of {self.SKU}: {specifications}")
        expect(self.stock(desk) == self.bng.product(self.SKU)["OnHand"], f"and its stock: {self.stock(desk)}")

        say("  → BNG receives 12 desks, but its inventory.changed webhook never arrives (sent to a wrong URL)")
        url = self.bng.webhook_url
        self.bng.webhook_url = f"{url}-misconfigured"
        try:
            self.bng.record_inventory(self.SKU, 12)
            self.bng.wait_for_webhooks(timeout=30)
        finally:
            self.bng.webhook_url = url
        self.demo.drain()
        on_hand = self.bng.product(self.SKU)["OnHand"]
        expect(self.stock(desk) != on_hand, f"nopCommerce still has {self.stock(desk)}, BNG {on_hand}")
        report = self.stack.poll_source("bng", grace_seconds=0)  # the schedule's runs wait the sweep's grace
        say(f"  → sweep of BNG's changed-since lists: pages {report['pages_read']}, items {report['items_seen']}, "
            f"recovered {report['recovered']} (already delivered by webhook {report['already_pushed']})")
        self.demo.drain()
        expect(report["recovered"] >= 1 and self.stock(desk) == on_hand,
               f"the sweep recovered the change: nopCommerce stock {self.stock(desk)} = BNG on hand {on_hand}")
        again = self.stack.poll_source("bng", grace_seconds=0)
        expect(again["events_queued"] == 0, "the next sweep finds nothing new")
        expect(self.stack.dead_letters(BNG_WEBHOOKS) == [], "nothing in bng-to-nopcommerce's DLQ")

    def stock(self, product: dict[str, Any]) -> int:
        return int(self.shop.product(product["id"])["stock_quantity"])


GUID_1045 = "5e1f0c4b-9d1e-4a7b-8c55-2f6e1d3c4b45"
GUID_1046 = "0c9d3b9e-4f55-4a43-9e0b-3f0a6e2d1c46"
GUID_1047 = "7a2e4c1d-8b3f-4e6a-9c5d-1f0e2d3c4b47"
GUID_1048 = "3b8d2f6a-1c4e-4d7b-9a2f-6e5c4b3a2d48"
GUID_1049 = "9f4e3d2c-7b6a-4c5d-8e1f-0a9b8c7d6e49"


POLLED_ORDERS = {"1042", "1043", "1044", "1050", "1051"}  # the orders acts 11 and 12 place and check


class PollingDemo:
    """A shop with no webhook sender (issue 10): the poller reads nopCommerce through the Web API plugin.

    Runs on a stack of its own: the first acts' webhooks carry ids of their own, which a sweep cannot
    recognise (a real sender uses the poll's ids, docs/sources.md)."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.stack = demo.stack
        self.shop = demo.stack.nopcommerce

    def poll(self, label: str) -> dict[str, Any]:
        report = self.stack.poll_source("nopcommerce", grace_seconds=0)  # the schedule's runs wait the grace
        self.demo.say(f"  → poll: {label:<44} pages {report['pages_read']}, queued {report['events_queued']} "
                      f"(already pushed {report['already_pushed']}), lag {report['lag_seconds']:.0f}s")
        self.demo.drain()
        return report

    def run(self) -> int:
        say, expect = self.demo.say, self.demo.expect
        say("11. A shop with no webhook sender: nopCommerce polled through the Web API plugin, every minute")
        say("   (locally run on demand, with no sweep grace; the shop's checkout and admin send nothing)")
        first = self.poll("the shop's three orders")
        expect(first["events_queued"] >= 5, "placed for 1042, 1043, 1044; paid for 1042 and 1044")
        receipts, invoices = self.documents("salesReceipts"), self.documents("invoices")
        expect(set(receipts) == {"1042", "1044"} and set(invoices) == {"1043"},
               "QuickBooks: SalesReceipts 1042 and 1044, Invoice 1043")
        expect(sorted(self.box_numbers()) == ["1042", "1043"], "Streak: deals 1042 and 1043 (1044 below the rule)")
        self.poll("the write-back's status changes")
        say("  → the admin marks 1043 paid and ships it; 1042 is partially refunded (nothing is sent)")
        self.shop.mark_paid(1043)
        self.shop.ship(1043)
        self.shop.refund(1042, 99.0)
        changed = self.poll("what changed")
        kinds = sorted(i.split(":")[3] for i in changed["event_ids"])
        expect("paid" in kinds and "refunded" in kinds, f"order.paid and order.refunded polled: {kinds}")
        invoice = self.documents("invoices")["1043"]
        expect(float(invoice.get("Balance", -1)) == 0, "invoice 1043 paid (balance 0)")
        self.poll("the write-back's echoes")
        quiet = self.poll("nothing changed")
        expect(quiet["events_queued"] == 0, "nothing is queued twice")
        expect(len(self.documents("salesReceipts")) == 2 and len(self.box_numbers()) == 2,
               "still one document and one deal per order")

        say("\n12. A shop that does send webhooks, one of them lost: the sweep recovers it")
        sent, lost = self.checkout(1050), self.checkout(1051)
        body = json.dumps({"type": "order.placed", "timestamp": sent["Order"]["CreatedOnUtc"], "data": sent}).encode()
        self.demo.send("order 1050 placed (webhook-id = the poll's id)", body, expect=202,
                       event_id=f"nopcommerce:order:{sent['Order']['OrderGuid']}:placed")
        say("  → order 1051's webhook is lost (the sender gave up)")
        self.demo.drain()
        swept = self.poll("the sweep")
        recovered = sorted(i.split(":")[3] for i in swept["event_ids"] if lost["Order"]["OrderGuid"] in i)
        expect(swept["already_pushed"] >= 1, "1050's placed event was pushed: not queued again")
        expect(recovered == ["paid", "placed"], f"1051 recovered once: {recovered}")
        expect(set(self.documents("salesReceipts")) >= {"1050", "1051"}
               and len(self.documents("salesReceipts")) == 4, "1050 and 1051 each one SalesReceipt")
        self.clarity_sweep()
        return len(self.demo.problems)

    def clarity_sweep(self) -> None:
        """Act 13: Clarity pushes, and a poll of the orders changed since its last run sweeps what it lost."""
        say, expect, clarity = self.demo.say, self.demo.expect, self.stack.clarity
        say("\n13. Clarity sends webhooks, one status change's never leaves: the sweep of changed orders finds it")
        self.stack.poll_source("clarity", grace_seconds=0)  # what the stack holds already
        order = json.loads(json.dumps(DEMO_ORDERS[0]))
        order["customerId"] = order["customer"]["customerId"] = "C-913"
        order["customer"].update(email="ops@sweep-demo.example", company="Sweep Demo Inc")
        placed = clarity.place_order(order)
        self.demo.drain()
        expect(self.clarity_stages(placed["orderId"]) == ["Processing"], f"{placed['orderId']}: a deal in Processing")
        say(f"  → the admin marks {placed['orderId']} delivered; Clarity's sender crashes before sending it")
        clarity.lose_next_webhooks(1)
        clarity.set_order_status(placed["orderId"], "delivered")
        self.demo.drain()
        expect(self.clarity_stages(placed["orderId"]) == ["Processing"], "Streak has not heard of it")
        time.sleep(1.1)  # a scan reads changes up to the last whole second before it starts
        swept = self.stack.poll_source("clarity", grace_seconds=0)
        self.demo.say(f"  → poll: {'Clarity orders changed since the last run':<44} pages {swept['pages_read']}, "
                      f"queued {swept['events_queued']} (already pushed {swept['already_pushed']})")
        self.demo.drain()
        expect(swept["event_ids"] == [f"clarity:order:{placed['orderId']}:v2"], "only the lost change is queued")
        expect(self.clarity_stages(placed["orderId"]) == ["Complete"], "the deal moved to Complete, once")
        again = self.stack.poll_source("clarity", grace_seconds=0)
        expect(again["events_queued"] == 0, "the next sweep queues nothing")

    def clarity_stages(self, order_id: str) -> list[str]:
        boxes = self.stack.streak.snapshot()["boxes"]
        return [b["stage"] for b in boxes if b["fields"].get("Order number") == order_id]

    def checkout(self, number: int) -> dict[str, Any]:
        data = json.loads(sample("nop_order_b2b"))["data"]
        data["Order"].update(Id=number, CustomOrderNumber=str(number), CustomerId=number,
                             OrderGuid=f"00000000-0000-4000-8000-00000000{number}",
                             CreatedOnUtc=self.shop.order(1042)["created_on_utc"] + "Z")
        data["Customer"].update(Id=number, Email=f"buyer{number}@example.com", Company=f"Buyer {number} Ltd")
        for item in data["OrderItems"]:
            item["Id"] = 0  # numbered by the shop
        self.shop.place_order(data)
        return data

    def documents(self, kind: str) -> dict[str, dict[str, Any]]:
        """The documents of this act's orders (the shop also holds the sample orders the stack seeds, which
        the poll books too)."""
        realm = self.stack.quickbooks.snapshot()["realms"][self.stack.qbo_realm]
        return {d.get("DocNumber"): d for d in realm[kind] if d.get("DocNumber") in POLLED_ORDERS}

    def box_numbers(self) -> list[str]:
        numbers = [b["fields"].get("Order number") for b in self.stack.streak.snapshot()["boxes"]]
        return [number for number in numbers if number in POLLED_ORDERS]


def main(argv: list[str] | None = None) -> int:
    log = Path(".local-stack") / "functions.log"
    log.parent.mkdir(exist_ok=True)
    with LocalStack(log_path=log) as stack:
        code = Demo(stack).run()
    with LocalStack(log_path=log.with_name("functions-polling.log")) as stack:
        print("\n(a second local stack: a shop polled instead of pushing)\n")
        polling = Demo(stack)
        problems = PollingDemo(polling).run()
        print(f"Polling acts {'FAILED: ' + str(polling.problems) if problems else 'passed'}.")
    print(f"(function logs: {log})")
    return code or (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
