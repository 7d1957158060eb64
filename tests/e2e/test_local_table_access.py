"""The local stack enforces each function's grants on the shared table (moto alone enforces no IAM), so an
end-to-end run proves that every key the library really builds, through every flow, is one its function is
granted, and that a key of another scope is refused as AWS would refuse it."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError
from switchyard_local.demo import Demo
from switchyard_local.stack import LocalStack
from switchyard_local.table_access import acting_as

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-own")]


@pytest.fixture(scope="module")
def stack(own_stack: LocalStack) -> LocalStack:
    return own_stack  # the demo this module runs expects a fresh stack (the name keeps the pool's hook honest)


def function_id(stack: LocalStack, role: str, flow: str) -> str:
    """The logical id of a flow's worker or steps function (the resources' switchyard:* metadata)."""
    (found,) = [lid for lid, fn in stack.functions.items() if fn.environment.get("SWITCHYARD_FLOW") == flow
                and ("SWITCHYARD_QUEUE_URL" in fn.environment) == (role == "worker")]
    return found


def test_every_flow_of_the_demo_reaches_only_items_its_function_is_granted(stack):
    # When the demo runs every built flow end to end (duplicates, retries, echoes, QuickBooks tokens and limits)
    out = io.StringIO()
    assert Demo(stack, out=out).run() == 0, out.getvalue()

    # Then no function made a table call its role does not allow
    check = stack.table_access
    assert check is not None
    assert [str(denial) for denial in check.denied] == []
    # And every worker and the steps function did use the table (so the check was exercised, not idle)
    used = {lid for lid, calls in check.allowed.items() if calls}
    for flow in stack.flows:
        assert function_id(stack, "worker", flow) in used, flow
    assert function_id(stack, "steps", "nopcommerce-to-quickbooks") in used


@pytest.mark.parametrize(("key", "operation"), [
    ("idempotency#clarity-to-streak#0cc175b9c0f1b6a831c399e269772661", "get_item"),  # another flow's records
    ("ratelimit#quickbooks#qbo#9130", "get_item"),  # a connection it does not call
    ("entity#streak-to-clarity#box#b1", "get_item"),  # the old unscoped keys
    ("echo#nopcommerce+streak#streak#box#b1#ffff", "delete_item"),  # another pair's echoes
])
def test_a_key_outside_the_functions_scopes_is_refused_as_aws_would(stack, key, operation):
    client = stack.client("dynamodb")
    table = stack.table_access.table_name
    with acting_as(function_id(stack, "worker", "streak-to-clarity")), pytest.raises(ClientError) as refused:
        getattr(client, operation)(TableName=table, Key={"id": {"S": key}})
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


def test_scan_is_refused_and_own_keys_are_allowed(stack):
    client = stack.client("dynamodb")
    table = stack.table_access.table_name
    with acting_as(function_id(stack, "worker", "streak-to-clarity")):
        with pytest.raises(ClientError) as refused:
            client.scan(TableName=table)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        client.get_item(TableName=table, Key={"id": {"S": "state#clarity+streak#xref#streak:contact>x#1"}})
    # outside any function (test code, the operator CLI) nothing is checked
    client.scan(TableName=table, Limit=1)
