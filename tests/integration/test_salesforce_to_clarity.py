"""salesforce-to-clarity: CDC events from the org sandbox reach the Clarity sandbox; no echoes either way."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from switchyard.echoes import EchoSuppressingTarget, InMemoryEchoLedger
from switchyard.entity_state import InMemoryEntityState
from switchyard.events import FlowEvent
from switchyard.pairs.clarity_salesforce import SalesforceToClarityTarget, load_change_mapping
from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
from switchyard.systems.salesforce import client as sf
from switchyard.systems.salesforce.client import SalesforceClient, SalesforceConnection
from switchyard.systems.salesforce.mapping import load_salesforce_mapping
from switchyard.systems.salesforce.target import SalesforceTarget
from switchyard_local.sandboxes.clarity import ClaritySandbox
from switchyard_local.sandboxes.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    ChangeEvent,
    SalesforceSandbox,
)

from tests.conftest import REPO_ROOT, FakeClock

CLIENT = "switchyard-clarity-salesforce"
MAPPINGS = REPO_ROOT / "shared" / "switchyard" / "config" / "mappings"


@pytest.fixture(autouse=True)
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "SESSIONS", sf._SessionCache())


class Pair:
    """Both sandboxes, both directions' targets sharing one echo ledger, and the events each side emitted."""

    def __init__(self) -> None:
        self.clock = FakeClock(1_790_000_000.0)
        self.cdc: list[ChangeEvent] = []
        self.webhooks: list[dict[str, Any]] = []
        self.org = SalesforceSandbox(instance_url="https://acme.my.salesforce.test", clock=self.clock,
                                     event_sink=self.cdc.append)
        self.shop = ClaritySandbox(clock=self.clock, webhook_url="http://receiver.test/",
                                   webhook_transport=httpx.MockTransport(self._receive), webhook_backoff=(0.01,))
        self.salesforce = SalesforceClient(
            SalesforceConnection(base_url="https://acme.my.salesforce.test", client_id=DEFAULT_CLIENT_ID,
                                 client_secret=DEFAULT_CLIENT_SECRET),
            call_options_client=CLIENT, transport=httpx.WSGITransport(app=self.org.wsgi_app))
        self.clarity = ClarityClient(ClarityConnection(base_url="http://clarity.test", api_key="clarity-key"),
                                     transport=httpx.WSGITransport(app=self.shop.wsgi_app))
        self.echoes = InMemoryEchoLedger(clock=self.clock)
        self.state = InMemoryEntityState()
        self.forward = EchoSuppressingTarget(
            SalesforceTarget(load_salesforce_mapping("clarity-to-salesforce.yaml"), self.salesforce, self.state),
            self.echoes)
        self.reverse = SalesforceToClarityTarget(load_change_mapping("salesforce-to-clarity.yaml"),
                                                 self.salesforce, self.clarity, self.state, self.echoes,
                                                 our_client=CLIENT)

    def _receive(self, request: httpx.Request) -> httpx.Response:
        import json

        self.webhooks.append({"id": request.headers["webhook-id"], **json.loads(request.content)})
        return httpx.Response(200)

    def shop_events(self) -> list[FlowEvent]:
        assert self.shop.wait_for_webhooks()
        events = [FlowEvent(flow="clarity-to-salesforce", event_id=w["id"], source="clarity", type=w["type"],
                            timestamp=datetime.fromisoformat(w["timestamp"]), data=w["data"]) for w in self.webhooks]
        self.webhooks.clear()
        return events

    def org_events(self) -> list[FlowEvent]:
        events = [FlowEvent(flow="salesforce-to-clarity", event_id=e.envelope["detail"]["id"], source="salesforce",
                            type=e.envelope["detail-type"], timestamp=datetime.fromisoformat(
                                e.envelope["time"].replace("Z", "+00:00")), data=e.payload) for e in self.cdc]
        self.cdc.clear()
        return events


@pytest.fixture
def pair() -> Pair:
    return Pair()


def registered(pair: Pair) -> tuple[str, str]:
    customer = pair.shop.register_customer({"customerId": "C-601", "firstName": "Ada", "lastName": "Byron",
                                            "email": "ada@example.org", "phone": "+44 1", "company": None})
    for event in pair.shop_events():
        pair.forward.deliver(event)
    pair.org_events()  # our own writes: dropped as echoes below, tested apart
    (contact,) = pair.org.records("Contact")
    return customer["customerId"], contact["Id"]


def test_a_reps_phone_change_reaches_clarity_and_its_webhook_is_not_sent_back(pair: Pair) -> None:
    customer_id, contact_id = registered(pair)
    pair.clock.advance(60)
    pair.org.update_record("Contact", contact_id, Phone="+44 20 7946 0999")
    (change,) = pair.org_events()
    result = pair.reverse.deliver(change)
    assert result.outcome == "updated"
    assert pair.shop.get_customer(customer_id)["phone"] == "+44 20 7946 0999"
    (webhook,) = pair.shop_events()  # customer.updated caused by our write
    assert pair.forward.deliver(webhook).outcome == "echo"
    assert pair.org_events() == []  # nothing written back to Salesforce


def test_our_own_writes_come_back_as_cdc_and_are_dropped_as_echoes(pair: Pair) -> None:
    pair.shop.register_customer({"customerId": "C-601", "lastName": "Byron", "email": "ada@example.org"})
    for event in pair.shop_events():
        pair.forward.deliver(event)
    changes = pair.org_events()
    assert {e.type for e in changes} == {"AccountChangeEvent", "ContactChangeEvent"}
    assert [pair.reverse.deliver(e).outcome for e in changes] == ["echo", "echo"]


def test_only_changed_fields_are_written_and_clarity_owned_fields_are_not(pair: Pair) -> None:
    customer_id, contact_id = registered(pair)
    pair.shop.update_customer(customer_id, firstName="Augusta")  # a change in the shop the org has not seen
    pair.shop_events()
    pair.clock.advance(60)
    pair.org.update_record("Contact", contact_id, Email="rep-typo@example.org", LastName="King")
    (change,) = pair.org_events()
    result = pair.reverse.deliver(change)
    customer = pair.shop.get_customer(customer_id)
    assert (customer["lastName"], customer["email"], customer["firstName"]) == ("King", "ada@example.org",
                                                                                "Augusta")
    assert result.detail["records"][contact_id]["not_master"] == ["Email"]


def test_a_change_of_only_clarity_owned_fields_is_a_not_master_drop(pair: Pair) -> None:
    _, contact_id = registered(pair)
    pair.org.update_record("Contact", contact_id, Email="x@example.org")
    (change,) = pair.org_events()
    assert pair.reverse.deliver(change).outcome == "not_master"


def test_a_gap_event_re_reads_each_record(pair: Pair) -> None:
    customer_id, contact_id = registered(pair)
    pair.org._state.records["Contact"][contact_id]["Phone"] = "+44 5"  # a change CDC could not report
    pair.org.emit_gap("Contact", [contact_id], "GAP_UPDATE")
    (gap,) = pair.org_events()
    assert pair.reverse.deliver(gap).outcome == "updated"
    assert pair.shop.get_customer(customer_id)["phone"] == "+44 5"


def test_one_change_to_several_contacts_updates_each_customer(pair: Pair) -> None:
    registered(pair)
    pair.shop.register_customer({"customerId": "C-602", "lastName": "Babbage", "email": "cb@example.org"})
    for event in pair.shop_events():
        pair.forward.deliver(event)
    pair.org_events()
    ids = [c["Id"] for c in pair.org.records("Contact")]
    pair.clock.advance(60)
    pair.org.bulk_update("Contact", ids, Phone="+44 800")
    (change,) = pair.org_events()
    assert len(change.data["ChangeEventHeader"]["recordIds"]) == 2
    pair.reverse.deliver(change)
    assert {pair.shop.get_customer(c)["phone"] for c in ("C-601", "C-602")} == {"+44 800"}


def test_delete_and_unsynced_objects_are_filtered(pair: Pair) -> None:
    _, contact_id = registered(pair)
    pair.org.delete_record("Contact", contact_id)
    (deleted,) = pair.org_events()
    assert pair.reverse.deliver(deleted).outcome == "filtered"
    account = pair.org.records("Account")[0]["Id"]
    pair.org.update_record("Account", account, Phone="+44 9")
    (account_change,) = pair.org_events()
    assert pair.reverse.deliver(account_change).outcome == "unchanged"


def test_a_contact_without_a_clarity_key_is_filtered(pair: Pair) -> None:
    pair.org.create_record("Contact", LastName="Walk-in")
    (created,) = pair.org_events()
    assert pair.reverse.deliver(created).outcome == "filtered"


def test_both_mapping_documents_declare_the_same_master_rules() -> None:
    forward = yaml.safe_load(Path(MAPPINGS / "clarity-to-salesforce.yaml").read_text())["master"]
    reverse = yaml.safe_load(Path(MAPPINGS / "salesforce-to-clarity.yaml").read_text())["master"]
    assert forward == reverse


def test_an_older_change_never_overwrites_a_newer_one(pair: Pair) -> None:
    customer_id, contact_id = registered(pair)
    pair.clock.advance(60)
    pair.org.update_record("Contact", contact_id, Phone="first")
    pair.clock.advance(1)
    pair.org.update_record("Contact", contact_id, Phone="second")
    first, second = pair.org_events()
    pair.reverse.deliver(second)
    assert pair.reverse.deliver(first).detail["records"][contact_id]["outcome"] == "stale"
    assert pair.shop.get_customer(customer_id)["phone"] == "second"
