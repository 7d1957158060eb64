"""Least privilege on the shared table: a function reaches only the items whose keys start with its prefixes.

The prefixes and the actions per prefix come from ``switchyard.table_keys`` (the module that builds every
key), derived from the catalog, so a new flow gets its grants with no change here. Each statement allows only
item actions, on the table only, under ``ForAllValues:StringLike`` on ``dynamodb:LeadingKeys``; the ``Null``
condition makes a request that carries no partition key at all (Scan, DescribeTable) fail too, because
``ForAllValues`` alone is true for an empty set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from switchyard.table_keys import TableGrant

LEADING_KEYS = "dynamodb:LeadingKeys"


def leading_key_pattern(grant: TableGrant) -> str:
    return f"{grant.prefix}*"


def grant_table_items(grantee: iam.IGrantable, table: dynamodb.ITable, grants: Iterable[TableGrant]) -> None:
    """One statement per set of actions, naming every prefix granted those actions."""
    patterns_by_actions: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for grant in sorted(set(grants)):
        patterns_by_actions[grant.actions].append(leading_key_pattern(grant))
    for actions, patterns in sorted(patterns_by_actions.items()):
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"dynamodb:{action}" for action in actions],
                resources=[table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {LEADING_KEYS: patterns},
                    "Null": {LEADING_KEYS: "false"},
                },
            )
        )
