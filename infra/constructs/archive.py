"""The archive of accepted webhooks (``switchyard.archive``): one encrypted bucket, expiring per stage.

Its resource's metadata holds the configuration (flows.yaml and the mapping documents) the stack was
synthesized with, under ``switchyard:config``: ``switchyard replay --dry-run`` compares what that mapping
sends with what a changed one would, and the digest ingest stamps on each archived delivery says whether the
stack still runs the mapping the event met.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct
from switchyard.archive import PREFIX, config_digest, config_files
from switchyard.catalog import config_dir

from infra.metadata import annotate
from infra.nag import acknowledge

CONFIG_METADATA = "switchyard:config"


class EventArchive(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal_policy,
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-archived-deliveries", prefix=PREFIX, expiration=Duration.days(retention_days),
                abort_incomplete_multipart_upload_after=Duration.days(1))],
        )
        annotate(self.bucket, role="archive")
        files = config_files(config_dir())
        self.config_digest = config_digest(files)
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.add_metadata(CONFIG_METADATA, {"digest": self.config_digest, "files": files})
        acknowledge(self.bucket, "S1", "Only the ingest function writes here and only operators read (replay): "
                                       "CloudTrail records both; server access logs would need a second bucket "
                                       "that logs nothing of use.")

    def grant_archive(self, grantee: iam.IGrantable, scope: Construct) -> None:
        """Write archived deliveries, nothing else (no reads, no deletes, no other prefix). ``scope``: where the
        grantee's policy lives, for the acknowledgement of its one prefix wildcard."""
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects(f"{PREFIX}*")]))
        resource = Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        acknowledge(scope, f"IAM5[Resource::<{resource}.Arn>/{PREFIX}*]",
                    "Ingest writes one new object per accepted delivery, named by its source and hour: "
                    "PutObject on the archive's deliveries/ prefix only, no read, list or delete.")
