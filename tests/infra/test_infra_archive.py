"""The archive of accepted webhooks: an encrypted, TLS-only, private bucket expiring per stage, written by ingest
only, with the synthesized configuration in its metadata (switchyard replay)."""

from __future__ import annotations

import pytest
from switchyard.archive import config_digest, config_files
from switchyard.catalog import config_dir
from switchyard.settings import IngestSettings

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


@pytest.fixture(scope="module")
def bucket(dev):
    return dev.one(role="archive")


def _expiration_days(resource) -> int:
    (rule,) = resource.properties["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Prefix"] == "deliveries/"
    return int(rule["ExpirationInDays"])


def test_archive_bucket_encrypted_private_and_tls_only(bucket, dev):
    assert bucket.type == "AWS::S3::Bucket"
    (encryption,) = bucket.properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert bucket.properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    (policy,) = [p for p in dev.of_type("AWS::S3::BucketPolicy") if dev.render(p.properties["Bucket"]) == bucket.ref]
    denies = [s for s in dev.render(policy.properties["PolicyDocument"]["Statement"]) if s["Effect"] == "Deny"]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_archive_lifecycle_follows_each_stage_context(bucket, prod, dev_stage):
    assert _expiration_days(bucket) == dev_stage.archive_retention_days == 14
    assert _expiration_days(prod.one(role="archive")) == 400


def test_archive_retention_kept_or_destroyed_with_the_stage(bucket, prod):
    assert bucket.raw["DeletionPolicy"] == "Delete"  # dev: removal_policy destroy
    assert prod.one(role="archive").raw["DeletionPolicy"] == "Retain"


def test_ingest_may_only_put_archived_deliveries(bucket, dev):
    ingest = dev.one(role="ingest")
    granted = dev.actions_on(dev.by_ref(dev.render(ingest.properties["Role"])).ref)
    on_bucket = {resource: actions for resource, actions in granted.items() if bucket.logical_id in str(resource)}
    assert on_bucket == {f"{bucket.att('Arn')}/deliveries/*": {"s3:PutObject"}}


def test_ingest_environment_names_the_bucket_and_the_config_digest(bucket, dev):
    ingest = dev.one(role="ingest")
    settings = IngestSettings.from_env(dev.render(ingest.properties["Environment"]["Variables"]))
    assert settings.archive_bucket == bucket.ref
    assert settings.config_digest == config_digest(config_files(config_dir()))


def test_archive_metadata_holds_the_synthesized_mappings(bucket):
    snapshot = bucket.metadata["switchyard:config"]
    assert snapshot["files"] == config_files(config_dir())
    assert "flows.yaml" in snapshot["files"]
    assert any(name.startswith("mappings/") for name in snapshot["files"])
    assert snapshot["digest"] == config_digest(snapshot["files"])


def test_archive_bucket_tagged_for_cost(bucket):
    tags = {tag["Key"]: tag["Value"] for tag in bucket.properties["Tags"]}
    assert tags["project"] == "switchyard" and tags["stage"] == "dev" and tags["component"] == "shared"
