"""Cost-allocation tags in the template, on every resource whose CloudFormation type takes tags."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def taggable(resource_type: str) -> bool:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    except Exception:  # CDK's own AWS::CDK::Metadata
        return False
    return bool(schema.get("tagging", {}).get("taggable"))


def tags_of(resource) -> dict[str, str]:
    tags = resource.properties.get("Tags", {})
    return {t["Key"]: t["Value"] for t in tags} if isinstance(tags, list) else dict(tags)


def test_every_taggable_resource_carries_project_stage_and_component(dev):
    resources = [r for r in dev.all if taggable(r.type)]
    assert len(resources) > 50
    for resource in resources:
        tags = tags_of(resource)
        assert tags.get("project") == "switchyard", resource.logical_id
        assert tags.get("stage") == "dev", resource.logical_id
        assert tags.get("component") in {"ingress", "flow", "monitoring", "shared", "poller"}, resource.logical_id


def test_a_flows_resources_carry_its_flow_and_integration(dev, catalog):
    from switchyard.table_keys import pair_scope

    for flow in catalog.flows.values():
        mine = [r for r in dev.tagged(flow=flow.name) if taggable(r.type)]
        assert {r.metadata["switchyard:role"] for r in mine} >= {"worker", "queue", "dlq"}
        for resource in mine:
            tags = tags_of(resource)
            assert (tags["component"], tags["flow"], tags["integration"]) == ("flow", flow.name, pair_scope(flow))


def test_both_directions_of_a_pair_add_up_to_one_integration(dev):
    def integration(flow: str) -> str:
        return tags_of(dev.one(role="worker", flow=flow))["integration"]

    assert integration("clarity-to-streak") == integration("streak-to-clarity") == "clarity+streak"
    assert integration("nopcommerce-to-quickbooks") == integration("quickbooks-to-nopcommerce")
    steps = dev.one(role="steps", flow="nopcommerce-to-quickbooks")
    assert tags_of(steps)["integration"] == "nopcommerce+quickbooks"


def test_shared_and_edge_resources_carry_their_component(dev):
    assert tags_of(dev.one(role="idempotency-table"))["component"] == "shared"
    (ingest,) = dev.tagged(role="ingest")
    assert tags_of(ingest)["component"] == "ingress"
    (topic,) = dev.of_type("AWS::SNS::Topic")
    assert tags_of(topic)["component"] == "monitoring"
    assert all(tags_of(secret)["component"] == "shared" for secret in dev.of_type("AWS::SecretsManager::Secret"))


def test_the_stack_itself_is_tagged_too(dev_synth):
    import json

    manifest = json.loads((dev_synth.assembly_dir / "manifest.json").read_text())
    assert manifest["artifacts"][dev_synth.stack_name]["properties"]["tags"] == {"project": "switchyard",
                                                                                 "stage": "dev"}
