"""Cost-allocation tags, written into the template on every resource that takes tags.

Stack-level tags reach resources only through ``cdk deploy`` (CloudFormation propagates them); tags in the
template hold whichever tool deploys it. Activate the keys once per account under Billing > Cost allocation
tags to see them in Cost Explorer.

- ``project``: ``switchyard``; ``stage``: the stage name
- ``component``: ``ingress``, ``flow``, ``monitoring`` or ``shared`` (table, secrets, layer)
- ``flow`` and ``integration`` on a flow's resources: its name, and its pair (``clarity+streak``, the scope
  its items have in the shared table), so both directions of a pair add up to one integration's cost
"""

from __future__ import annotations

from aws_cdk import Tags
from constructs import IConstruct
from switchyard.catalog import FlowConfig
from switchyard.table_keys import pair_scope

PROJECT = "switchyard"


def stack_tags(stage: str) -> dict[str, str]:
    return {"project": PROJECT, "stage": stage}


def tag_stack(stack: IConstruct, stage: str) -> None:
    for key, value in stack_tags(stage).items():
        Tags.of(stack).add(key, value)


def tag_component(scope: IConstruct, component: str) -> None:
    Tags.of(scope).add("component", component)


def tag_flow(scope: IConstruct, flow: FlowConfig) -> None:
    tag_component(scope, "flow")
    Tags.of(scope).add("flow", flow.name)
    Tags.of(scope).add("integration", integration(flow))


def integration(flow: FlowConfig) -> str:
    """The integration a flow belongs to: both directions of a two-way pair share one."""
    return pair_scope(flow)
