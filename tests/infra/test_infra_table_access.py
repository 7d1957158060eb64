"""Least privilege on the shared table: each function reaches only the items its keys start with.

The grants are derived from the catalog (``switchyard.table_keys.table_grants``), so these tests walk the
catalog too: a new flow is covered without a new test. The literal expectations pin today's catalog, so a
change to the derivation shows up here as a diff, not silently.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from switchyard.table_keys import (
    STORE_ACTIONS,
    ConnectionKeys,
    Store,
    TableKeyError,
    TableKeys,
    delivering_role,
    keeps_connection_state,
    pair_scope,
    records_echoes,
    table_grants,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

ITEM_ACTIONS = {f"dynamodb:{action}" for actions in STORE_ACTIONS.values() for action in actions}
# never needed by a function: whole-table reads and batch writes escape a per-item condition's intent
FORBIDDEN = {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:Query",
             "dynamodb:DescribeTable", "dynamodb:*"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def table_statements(dev, function) -> list[dict[str, Any]]:
    """The Allow statements of the function's role that could reach the table: a DynamoDB action (or any
    action) on the table, on a pattern containing it, or on every resource."""
    table = dev.one(role="idempotency-table")
    role = dev.by_ref(dev.render(function.properties["Role"]))
    return [s for s in dev.statements_for_role(role.ref)
            if s["Effect"] == "Allow"
            and any(a.startswith("dynamodb:") or a == "*" for a in _list(s["Action"]))
            and any(r == "*" or table.logical_id in str(r) for r in _list(s["Resource"]))]


def granted_patterns(dev, function) -> dict[str, set[str]]:
    """LeadingKeys pattern -> the actions granted on items matching it."""
    granted: dict[str, set[str]] = {}
    for statement in table_statements(dev, function):
        condition = statement.get("Condition", {})
        assert condition.get("Null") == {"dynamodb:LeadingKeys": "false"}, statement
        for pattern in _list(condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]):
            granted.setdefault(pattern, set()).update(_list(statement["Action"]))
    return granted


def functions_of(dev, catalog):
    """(flow, role, function resource) for every worker and steps function in the stack."""
    for flow in catalog.flows.values():
        yield flow, "worker", dev.one(role="worker", flow=flow.name)
        if flow.runs_as == "state-machine":
            yield flow, "steps", dev.one(role="steps", flow=flow.name)


def is_granted(granted: dict[str, set[str]], action: str, key: str) -> bool:
    """IAM's StringLike (``*`` any run, ``?`` one character; no ``[`` classes) over a single leading key."""
    def like(pattern: str) -> bool:
        return fnmatch.fnmatchcase(key, pattern.replace("[", "[[]"))
    return any(like(pattern) and f"dynamodb:{action}" in actions for pattern, actions in granted.items())


def test_every_table_statement_is_item_actions_under_a_leading_keys_condition(dev, catalog):
    for _flow, _role, function in functions_of(dev, catalog):
        statements = table_statements(dev, function)
        assert statements, function.logical_id
        for statement in statements:
            actions = set(_list(statement["Action"]))
            assert actions <= ITEM_ACTIONS, statement
            assert not actions & FORBIDDEN, statement
            assert _list(statement["Resource"]) == [dev.one(role="idempotency-table").att("Arn")], statement
            assert set(statement["Condition"]) == {"ForAllValues:StringLike", "Null"}, statement


def test_no_role_in_the_stack_may_scan_or_batch_write_the_table(dev):
    table = dev.one(role="idempotency-table")
    for policy in dev.of_type("AWS::IAM::Policy"):
        for statement in dev.render(policy.properties["PolicyDocument"]["Statement"]):
            if any(table.logical_id in str(r) for r in _list(statement["Resource"])):
                assert not set(_list(statement["Action"])) & FORBIDDEN, (policy.logical_id, statement)


def test_each_function_is_granted_exactly_its_prefixes_with_exactly_their_actions(dev, catalog):
    for flow, role, function in functions_of(dev, catalog):
        expected = {f"{grant.prefix}*": {f"dynamodb:{a}" for a in grant.actions}
                    for grant in table_grants(catalog, flow, role)}
        assert granted_patterns(dev, function) == expected, (flow.name, role)


def test_grants_of_todays_catalog_by_function(dev, catalog):
    patterns = {(flow.name, role): set(granted_patterns(dev, function))
                for flow, role, function in functions_of(dev, catalog)}

    assert patterns == {
        ("nopcommerce-to-streak", "worker"): {"idempotency#nopcommerce-to-streak#*", "drop#nopcommerce-to-streak#*",
                                              "audit#nopcommerce-to-streak#*",
                                              "state#nopcommerce+streak#*",
                                              "echo#nopcommerce+streak#*", "connection#streak#*", "breaker#streak#*"},
        # the two directions of the Clarity ⇄ Streak pair share cross-references, sync records and echoes
        ("clarity-to-streak", "worker"): {"idempotency#clarity-to-streak#*", "drop#clarity-to-streak#*",
                                          "audit#clarity-to-streak#*",
                                          "state#clarity+streak#*",
                                          "echo#clarity+streak#*", "connection#streak#*", "breaker#streak#*",
                                          "connection#clarity#*", "breaker#clarity#*"},
        ("streak-to-clarity", "worker"): {"idempotency#streak-to-clarity#*", "drop#streak-to-clarity#*",
                                          "audit#streak-to-clarity#*",
                                          "state#clarity+streak#*",
                                          "echo#clarity+streak#*", "connection#clarity#*", "breaker#clarity#*",
                                          "connection#streak#*", "breaker#streak#*"},
        # the worker starts executions: its own idempotency records, and whether its connections are usable
        ("nopcommerce-to-quickbooks", "worker"): {"idempotency#nopcommerce-to-quickbooks#*",
                                                  "drop#nopcommerce-to-quickbooks#*",
                                                  "audit#nopcommerce-to-quickbooks#*",
                                                  "connection#quickbooks#*", "breaker#quickbooks#*",
                                                  "connection#nopcommerce#*", "breaker#nopcommerce#*"},
        # a step that applies nothing on purpose (a cancel with nothing booked) records its drop
        ("nopcommerce-to-quickbooks", "steps"): {"drop#nopcommerce-to-quickbooks#*",
                                                 "state#nopcommerce+quickbooks#*", "lease#quickbooks#*",
                                                 "ratelimit#quickbooks#*", "connection#quickbooks#*",
                                                 "breaker#quickbooks#*",
                                                 "connection#nopcommerce#*", "breaker#nopcommerce#*"},
        # reads items from QuickBooks: the same connection's token lease and rate limiter as the steps
        ("quickbooks-to-nopcommerce", "worker"): {"idempotency#quickbooks-to-nopcommerce#*",
                                                  "drop#quickbooks-to-nopcommerce#*",
                                                  "audit#quickbooks-to-nopcommerce#*",
                                                  "state#nopcommerce+quickbooks#*", "lease#quickbooks#*",
                                                  "ratelimit#quickbooks#*", "connection#quickbooks#*",
                                                  "breaker#quickbooks#*",
                                                  "connection#nopcommerce#*", "breaker#nopcommerce#*"},
        # the two directions of the Clarity ⇄ Salesforce pair share entity state and echoes
        ("clarity-to-salesforce", "worker"): {"idempotency#clarity-to-salesforce#*", "drop#clarity-to-salesforce#*",
                                              "audit#clarity-to-salesforce#*",
                                              "state#clarity+salesforce#*", "echo#clarity+salesforce#*",
                                              "connection#salesforce#*", "breaker#salesforce#*"},
        ("salesforce-to-clarity", "worker"): {"idempotency#salesforce-to-clarity#*", "drop#salesforce-to-clarity#*",
                                              "audit#salesforce-to-clarity#*",
                                              "state#clarity+salesforce#*", "echo#clarity+salesforce#*",
                                              "connection#clarity#*", "connection#salesforce#*",
                                              "breaker#clarity#*", "breaker#salesforce#*"},
        ("nopcommerce-to-bng", "worker"): {"idempotency#nopcommerce-to-bng#*", "drop#nopcommerce-to-bng#*",
                                           "audit#nopcommerce-to-bng#*",
                                           "connection#bng#*", "breaker#bng#*",
                                           "connection#nopcommerce#*", "breaker#nopcommerce#*"},
        # the steps store the shipment wait's token against the order
        ("nopcommerce-to-bng", "steps"): {"drop#nopcommerce-to-bng#*",
                                          "state#bng+nopcommerce#*", "wait#nopcommerce-to-bng#*",
                                          "connection#bng#*", "breaker#bng#*",
                                          "connection#nopcommerce#*", "breaker#nopcommerce#*"},
        # BNG's webhooks: stock newer-wins per product, and the shipment completes order-to-cash's wait
        ("bng-to-nopcommerce", "worker"): {"idempotency#bng-to-nopcommerce#*", "drop#bng-to-nopcommerce#*",
                                           "audit#bng-to-nopcommerce#*",
                                           "state#bng+nopcommerce#*", "wait#nopcommerce-to-bng#*",
                                           "connection#nopcommerce#*", "breaker#nopcommerce#*",
                                           "connection#bng#*", "breaker#bng#*"},
        # a rep's contact edits: nopcommerce-to-streak's own contact writes come back here as echoes to drop
        ("streak-to-nopcommerce", "worker"): {"idempotency#streak-to-nopcommerce#*", "drop#streak-to-nopcommerce#*",
                                              "audit#streak-to-nopcommerce#*", "state#nopcommerce+streak#*",
                                              "echo#nopcommerce+streak#*",
                                              "connection#nopcommerce#*", "breaker#nopcommerce#*"},
        # product edits into Items: the QuickBooks connection's token lease and rate limiter like every caller
        ("nopcommerce-products-to-quickbooks", "worker"): {
            "idempotency#nopcommerce-products-to-quickbooks#*", "drop#nopcommerce-products-to-quickbooks#*",
            "audit#nopcommerce-products-to-quickbooks#*", "state#nopcommerce+quickbooks#*", "lease#quickbooks#*",
            "ratelimit#quickbooks#*", "connection#quickbooks#*", "breaker#quickbooks#*"},
    }


def test_ingest_function_may_only_record_the_pushed_ids_of_swept_sources(dev, catalog):
    (ingest,) = dev.tagged(role="ingest")
    swept = [name for name, source in catalog.sources.items() if source.delivery == "both"]
    assert granted_patterns(dev, ingest) == {f"pushed#{name}#*": {"dynamodb:PutItem"} for name in swept}


def test_every_key_the_library_builds_for_a_flow_is_granted_to_the_function_that_builds_it(dev, catalog):
    # keys with the characters a hostile or odd value brings: separators, IAM wildcards, a policy variable
    odd = "a#b*c?d${aws:username}"
    for flow, role, function in functions_of(dev, catalog):
        granted = granted_patterns(dev, function)
        keys = TableKeys.for_flow(flow)
        built: list[tuple[Store, str]] = []
        if role == "worker":
            # Powertools stores "<key_prefix>#<hash>"
            built.append((Store.IDEMPOTENCY, f"{keys.idempotency_prefix}#0cc175b9c0f1b6a831c399e269772661"))
        if role == delivering_role(flow):
            built += [(Store.STATE, keys.entity(f"{flow.name}#{odd}")), (Store.STATE, keys.xref(odd, odd)),
                      (Store.STATE, keys.synced(odd, odd)), (Store.STATE, keys.state("pair", odd))]
            if records_echoes(flow):
                built.append((Store.ECHOES, keys.echo(flow.target, "contact", odd, "f" * 24)))
            for name in flow.connections:
                if keeps_connection_state(catalog.connections[name].system):
                    built += [(Store.TOKEN_LEASE, ConnectionKeys(name).token_lease(odd)),
                              (Store.RATE_LIMIT, ConnectionKeys(name).rate_limit(f"qbo#{odd}"))]
        for store, key in built:
            for action in STORE_ACTIONS[store]:
                assert is_granted(granted, action, key), (flow.name, role, action, key)


def test_keys_of_one_scope_are_denied_to_functions_outside_it(dev, catalog):
    # Given two flows outside the Clarity ⇄ Streak pair
    outsiders = [("nopcommerce-to-streak", "worker"), ("nopcommerce-to-quickbooks", "worker"),
                 ("nopcommerce-to-quickbooks", "steps"), ("quickbooks-to-nopcommerce", "worker")]
    pair = TableKeys.for_flow(catalog.flows["clarity-to-streak"])
    clarity_keys = [pair.xref("clarity:customer>streak:contact", "C1"), pair.echo("streak", "box", "b1", "f" * 24),
                    pair.entity("clarity-to-streak#CL-1"), "idempotency#clarity-to-streak#0cc1"]
    for name, role in outsiders:
        granted = granted_patterns(dev, dev.one(role=role, flow=name))
        for key in clarity_keys:
            for action in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
                assert not is_granted(granted, action, key), (name, role, action, key)
    # And a flow's worker cannot touch another flow's idempotency records, even within its pair
    granted = granted_patterns(dev, dev.one(role="worker", flow="streak-to-clarity"))
    assert not is_granted(granted, "GetItem", "idempotency#clarity-to-streak#0cc1")
    # And a flow that does not call QuickBooks cannot take its permits or its token lease
    assert not is_granted(granted, "PutItem", ConnectionKeys("quickbooks").rate_limit("qbo#9130"))
    assert not is_granted(granted, "UpdateItem", ConnectionKeys("quickbooks").token_lease("9130"))


def test_both_directions_of_a_two_way_pair_share_one_state_scope(catalog):
    # a source and the connection of the same account share a name, so reverse flows meet in one scope
    for flow in catalog.flows.values():
        for other in catalog.flows.values():
            if (other.source, other.target) == (flow.target, flow.source):
                assert pair_scope(flow) == pair_scope(other), (flow.name, other.name)


@pytest.mark.parametrize("name", ["a#b", "a*", "a?", "${aws:username}", "A", "", "-a", "a b"])
def test_names_that_would_make_an_ambiguous_or_wildcard_prefix_are_refused(name):
    with pytest.raises(TableKeyError):
        TableKeys(flow=name, pair="x+y")
    with pytest.raises(TableKeyError):
        ConnectionKeys(name)
