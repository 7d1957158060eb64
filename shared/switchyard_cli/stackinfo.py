"""Finding a stack's resources through its template's ``switchyard:*`` metadata (no hard-kept names)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from switchyard_cli.errors import CliError, ExitCode


@dataclass(frozen=True)
class StackResources:
    """One read of a stack: its template's resources with their metadata, and their physical ids."""

    name: str
    template: dict[str, Any]
    physical: dict[str, str]

    @classmethod
    def read(cls, cfn: Any, stack: str) -> StackResources:
        template = cfn.get_template(StackName=stack)["TemplateBody"]
        template = json.loads(template) if isinstance(template, str) else template
        physical: dict[str, str] = {}
        for page in _pages(cfn, stack):
            physical.update({r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
                             for r in page["StackResourceSummaries"]})
        return cls(stack, template, physical)

    def find(self, **metadata: str) -> list[tuple[str, dict[str, Any]]]:
        """(physical id, resource) of every resource whose ``switchyard:*`` metadata matches."""
        found = []
        for logical_id, resource in self.template.get("Resources", {}).items():
            meta = resource.get("Metadata") or {}
            matches = all(meta.get(f"switchyard:{key}") == value for key, value in metadata.items())
            if matches and logical_id in self.physical:
                found.append((self.physical[logical_id], resource))
        return found

    def one(self, **metadata: str) -> str:
        found = self.find(**metadata)
        if not found:
            raise CliError(f"stack {self.name} has no resource with {metadata}", ExitCode.CONFIGURATION)
        return found[0][0]

    def flow_queues(self, flow: str) -> tuple[str, str]:
        """(queue URL, DLQ URL) of a flow."""
        queues = {resource.get("Metadata", {}).get("switchyard:role"): physical
                  for physical, resource in self.find(flow=flow) if resource["Type"] == "AWS::SQS::Queue"}
        if "queue" not in queues or "dlq" not in queues:
            raise CliError(f"stack {self.name} has no queues for flow {flow!r}", ExitCode.CONFIGURATION)
        return queues["queue"], queues["dlq"]

    def secrets(self, secretsmanager: Any) -> dict[str, str]:
        """``{"source:nopcommerce": ARN, "connection:streak": ARN, ...}``: from the template's metadata or, where
        the template has none (the local stack creates its secrets beside CloudFormation), from their tags."""
        found = {str(resource["Metadata"]["switchyard:secret"]): physical
                 for physical, resource in self.find() if (resource.get("Metadata") or {}).get("switchyard:secret")}
        if found:
            return found
        pages = secretsmanager.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "tag-key", "Values": ["switchyard:stack"]}, {"Key": "tag-value", "Values": [self.name]}])
        for page in pages:
            for secret in page["SecretList"]:
                tags = {tag["Key"]: tag["Value"] for tag in secret.get("Tags", [])}
                if tags.get("switchyard:stack") == self.name and tags.get("switchyard:secret"):
                    found[tags["switchyard:secret"]] = secret["ARN"]
        return found

    def secret(self, secretsmanager: Any, tag: str) -> str:
        arn = self.secrets(secretsmanager).get(tag)
        if arn is None:
            raise CliError(f"stack {self.name} has no secret {tag!r}", ExitCode.CONFIGURATION)
        return arn

    def flows(self) -> list[str]:
        """The flows this stack deploys (a stage may enable only some), in template order."""
        names: list[str] = []
        for resource in self.template.get("Resources", {}).values():
            meta = resource.get("Metadata") or {}
            flow = meta.get("switchyard:flow")
            if resource.get("Type") == "AWS::SQS::Queue" and meta.get("switchyard:role") == "queue" and flow:
                names.append(flow)
        return names


def _pages(cfn: Any, stack: str) -> list[dict[str, Any]]:
    pages = [cfn.list_stack_resources(StackName=stack)]
    while pages[-1].get("NextToken"):
        pages.append(cfn.list_stack_resources(StackName=stack, NextToken=pages[-1]["NextToken"]))
    return pages


def flow_queue_urls(cfn: Any, stack: str, flow: str) -> tuple[str, str]:
    return StackResources.read(cfn, stack).flow_queues(flow)


def tagged_resource(cfn: Any, stack: str, **metadata: str) -> str:
    """The physical id of the one resource whose ``switchyard:*`` metadata matches (``role="idempotency-table"``,
    ``secret="connection:quickbooks"``)."""
    return StackResources.read(cfn, stack).one(**metadata)


def idempotency_table(cfn: Any, stack: str) -> str:
    """The physical name of the stack's table (idempotency records, entity state, pairs, drops)."""
    return tagged_resource(cfn, stack, role="idempotency-table")
