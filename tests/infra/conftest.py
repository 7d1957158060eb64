"""Infra tests share one synthesized dev stack (the jsii kernel and a synth cost seconds, not ms)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from switchyard.catalog import Catalog, load_catalog

# Before the first aws_cdk import starts the jsii kernel (Node 20 prints an end-of-life banner).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def render(value: Any) -> Any:
    """CloudFormation value -> plain text, references shown as ``${Logical}`` / ``${Logical.Attr}``."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            return "${" + ".".join(arg) + "}"
        if key == "Fn::Join":
            separator, parts = arg
            rendered = (render(part) for part in parts)  # other intrinsics (Fn::Select) stay as JSON text
            return separator.join(part if isinstance(part, str) else json.dumps(part) for part in rendered)
    if isinstance(value, list):
        return [render(item) for item in value]
    if isinstance(value, dict):
        return {key: render(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any]
    metadata: dict[str, Any]
    raw: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"${{{self.logical_id}}}"

    def att(self, attribute: str) -> str:
        return f"${{{self.logical_id}.{attribute}}}"


class Cfn:
    """Queries over one synthesized template, by type and by ``switchyard:*`` metadata."""

    render = staticmethod(render)

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.all = [
            Resource(lid, r["Type"], r.get("Properties", {}), r.get("Metadata", {}), r)
            for lid, r in template["Resources"].items()
        ]

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.all if r.type == resource_type]

    def tagged(self, **keys: str) -> list[Resource]:
        wanted = {f"switchyard:{key}": value for key, value in keys.items()}
        return [r for r in self.all if all(r.metadata.get(k) == v for k, v in wanted.items())]

    def one(self, **keys: str) -> Resource:
        (found,) = self.tagged(**keys)
        return found

    def by_ref(self, reference: str) -> Resource:
        logical_id = reference.strip("${}").split(".")[0]
        return next(r for r in self.all if r.logical_id == logical_id)

    def statements_for_role(self, role_ref: str) -> Iterator[dict[str, Any]]:
        """Statements of every IAM policy attached to the role (``role_ref`` = ``${RoleLogicalId}``)."""
        for policy in self.of_type("AWS::IAM::Policy"):
            if role_ref in render(policy.properties["Roles"]):
                yield from render(policy.properties["PolicyDocument"]["Statement"])

    def actions_on(self, role_ref: str) -> dict[str, set[str]]:
        """Rendered resource -> actions the role may perform on it."""
        granted: dict[str, set[str]] = {}
        for statement in self.statements_for_role(role_ref):
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                granted.setdefault(resource, set()).update(actions)
        return granted


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def dev_synth(tmp_path_factory):
    from infra.synth import synthesize

    return synthesize("dev", outdir=str(tmp_path_factory.mktemp("cdk-dev")))


@pytest.fixture(scope="session")
def dev(dev_synth) -> Cfn:
    return Cfn(dev_synth.template)


@pytest.fixture(scope="session")
def dev_stage():
    from infra.application import project_context
    from infra.settings import STAGES_CONTEXT, stages_from_context

    return stages_from_context(project_context()[STAGES_CONTEXT])["dev"]


@pytest.fixture(scope="session")
def prod(tmp_path_factory) -> Cfn:
    """The prod stack (retain policies, alarm email): one more synth, for the few tests that need it."""
    from infra.synth import synthesize

    return Cfn(synthesize("prod", outdir=str(tmp_path_factory.mktemp("cdk-prod"))).template)
