"""The key scheme of the shared table (switchyard.table_keys): what each store's keys look like, and which
prefixes a function of a flow is granted, for flows that are not in today's catalog too."""

from __future__ import annotations

import textwrap

import pytest
from switchyard.catalog import parse_catalog
from switchyard.table_keys import ConnectionKeys, Store, TableGrant, TableKeys, table_grants

CATALOG = parse_catalog(textwrap.dedent("""
    sources:
      shop: {signature: standard-webhooks, events: [order.placed]}
      crm: {signature: standard-webhooks, events: [deal.changed]}
    connections:
      crm: {system: streak}
      shop: {system: clarity}
      books: {system: quickbooks}
      stock: {system: nopcommerce}
    flows:
      shop-to-crm: {source: shop, events: [order.placed], target: streak, connection: crm}
      crm-to-shop: {source: crm, events: [deal.changed], target: clarity, connection: shop}
      shop-stock: {source: shop, events: [order.placed], target: nopcommerce, connection: stock, uses: [books]}
"""))


def test_each_store_builds_its_keys_under_its_store_and_scope():
    keys = TableKeys.for_flow(CATALOG.flows["crm-to-shop"])

    assert keys.idempotency_prefix == "idempotency#crm-to-shop"
    assert keys.entity("crm-to-shop#box#b1") == "state#crm+shop#entity#crm-to-shop#box#b1"
    assert keys.xref("streak:contact>clarity:customer", "c1") == \
        "state#crm+shop#xref#streak:contact>clarity:customer#c1"
    assert keys.synced("streak:contact", "c1") == "state#crm+shop#synced#streak:contact#c1"
    assert keys.echo("clarity", "order", "CL-1", "ab12") == "echo#crm+shop#clarity#order#CL-1#ab12"
    assert ConnectionKeys("books").token_lease("9130") == "lease#books#9130"
    assert ConnectionKeys("books").rate_limit("qbo#9130") == "ratelimit#books#qbo#9130"


def test_both_directions_of_a_new_pair_share_state_and_echoes_but_not_idempotency():
    forward = table_grants(CATALOG, CATALOG.flows["shop-to-crm"], "worker")
    reverse = table_grants(CATALOG, CATALOG.flows["crm-to-shop"], "worker")

    assert {g.prefix for g in forward} == {"idempotency#shop-to-crm#", "drop#shop-to-crm#", "audit#shop-to-crm#",
                                           "state#crm+shop#", "echo#crm+shop#", "connection#crm#", "breaker#crm#"}
    assert {g.prefix for g in reverse} == {"idempotency#crm-to-shop#", "drop#crm-to-shop#", "audit#crm-to-shop#",
                                           "state#crm+shop#", "echo#crm+shop#", "connection#shop#", "breaker#shop#"}


def test_a_flow_that_calls_quickbooks_gets_that_connections_lease_and_limiter_with_their_actions():
    grants = set(table_grants(CATALOG, CATALOG.flows["shop-stock"], "worker"))

    assert grants == {TableGrant(Store.IDEMPOTENCY, "shop-stock"), TableGrant(Store.DROPS, "shop-stock"),
                      TableGrant(Store.AUDIT, "shop-stock"), TableGrant(Store.STATE, "shop+stock"),
                      TableGrant(Store.TOKEN_LEASE, "books"), TableGrant(Store.RATE_LIMIT, "books"),
                      TableGrant(Store.CONNECTION_STATE, "stock"), TableGrant(Store.CONNECTION_STATE, "books"),
                      TableGrant(Store.CIRCUIT_BREAKER, "stock"), TableGrant(Store.CIRCUIT_BREAKER, "books")}
    assert TableGrant(Store.CONNECTION_STATE, "books").actions == ("GetItem", "UpdateItem")
    assert TableGrant(Store.CIRCUIT_BREAKER, "books").actions == ("GetItem", "UpdateItem")
    assert TableGrant(Store.TOKEN_LEASE, "books").actions == ("UpdateItem",)
    assert "Scan" not in {a for g in grants for a in g.actions}


def test_a_worker_flow_has_no_steps_function():
    with pytest.raises(ValueError, match="no steps function"):
        table_grants(CATALOG, CATALOG.flows["shop-stock"], "steps")


def test_an_audit_key_keeps_the_order_inside_its_flows_prefix():
    from switchyard.table_keys import audit_key

    assert audit_key("shop-to-crm", "1042") == "audit#shop-to-crm#1042"
    assert audit_key("shop-to-crm", "a#b") == "audit#shop-to-crm#a_b"  # an order cannot reach another scope
    assert TableGrant(Store.AUDIT, "shop-to-crm").actions == ("UpdateItem",)
