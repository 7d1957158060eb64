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


def idempotency_table(cfn: Any, stack: str) -> str:
    """The physical name of the stack's table (idempotency records, entity state, pairs, drops)."""
    template = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(template) if isinstance(template, str) else template
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}
    for logical_id, resource in template["Resources"].items():
        if (resource.get("Metadata") or {}).get("switchyard:role") == "idempotency-table":
            return physical[logical_id]
    raise SystemExit(f"stack {stack} has no idempotency table")
