"""Finding a deployed flow's queues from the stack's resources (the template's metadata)."""

from __future__ import annotations

import json
from typing import Any


def flow_queue_urls(cfn: Any, stack: str, flow: str) -> tuple[str, str]:
    template = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(template) if isinstance(template, str) else template
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}
    queue = dlq = None
    for logical_id, resource in template["Resources"].items():
        meta = resource.get("Metadata") or {}
        if meta.get("switchyard:flow") == flow and resource["Type"] == "AWS::SQS::Queue":
            if meta.get("switchyard:role") == "queue":
                queue = physical[logical_id]
            elif meta.get("switchyard:role") == "dlq":
                dlq = physical[logical_id]
    if not queue or not dlq:
        raise SystemExit(f"stack {stack} has no queues for flow {flow!r}")
    return queue, dlq


def tagged_resource(cfn: Any, stack: str, **metadata: str) -> str:
    """The physical id of the one resource whose ``switchyard:*`` metadata matches (``role="idempotency-table"``,
    ``secret="connection:quickbooks"``)."""
    template = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(template) if isinstance(template, str) else template
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}
    for logical_id, resource in template["Resources"].items():
        meta = resource.get("Metadata") or {}
        if all(meta.get(f"switchyard:{key}") == value for key, value in metadata.items()):
            return physical[logical_id]
    raise SystemExit(f"stack {stack} has no resource with {metadata}")


def idempotency_table(cfn: Any, stack: str) -> str:
    """The physical name of the stack's table (idempotency records, entity state, pairs, drops)."""
    return tagged_resource(cfn, stack, role="idempotency-table")
