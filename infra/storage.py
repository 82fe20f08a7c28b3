"""Where reports are stored: one private, encrypted, TLS-only bucket whose objects expire on their own."""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge
from infra.settings import Settings

# Everything fetch needs to stream a report in: CreateMultipartUpload, UploadPart and
# CompleteMultipartUpload are all authorised by s3:PutObject; ListParts (s3:ListMultipartUploadParts,
# the parts of one upload, not the bucket's keys) lets a Fetch go on with an upload from its checkpoint.
WRITE_REPORT_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
# GetObjectAttributes (which S3 allows only with GetObject too) lets a repeated Fetch recognise the object
# an earlier run of the same job stored, by S3's checksum of it, instead of downloading it again.
RECOGNISE_REPORT_ACTIONS = ("s3:GetObject", "s3:GetObjectAttributes")
# Multipart uploads to an SSE-KMS bucket need both: a data key per part, and Decrypt to complete.
KMS_WRITE_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


class ReportStorage(Construct):
    """The reports bucket, and (by setting) its access-log bucket and its KMS key."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.key = self._build_key() if settings.bucket_encryption == "kms" else None
        self.access_logs = self._build_access_log_bucket(settings) if settings.access_logs else None
        self.bucket = self._build_bucket(settings)

    def grant_write_reports(self, grantee: iam.IGrantable) -> None:
        """Write (abort, and go on with) report uploads and read a stored report's attributes; no deletes,
        no listing of keys, no tags, no other bucket."""
        self._grant_on_reports(
            grantee,
            [*WRITE_REPORT_ACTIONS, *RECOGNISE_REPORT_ACTIONS],
            "Report keys are '<team>/<key prefix><job id>/<file name>', chosen per job, so writing "
            "reports needs every key of the reports bucket (and only of that bucket).",
        )
        if self.key is not None:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=list(KMS_WRITE_ACTIONS), resources=[self.key.key_arn])
            )

    def grant_abort_uploads(self, grantee: iam.IGrantable) -> None:
        """Abort a report upload a failed or cancelled job left open for its next Fetch; nothing else."""
        self._grant_on_reports(
            grantee,
            ["s3:AbortMultipartUpload"],
            "A job's upload may be under any key of the reports bucket (its key is chosen per job); "
            "only aborting an upload is allowed.",
        )

    def _grant_on_reports(self, grantee: iam.IGrantable, actions: list[str], why: str) -> None:
        """``actions`` on every object of the reports bucket, with cdk-nag told why every key."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.bucket.arn_for_objects("*")])
        )
        bucket_id = Stack.of(self).resolve(cast(s3.CfnBucket, self.bucket.node.default_child).logical_id)
        if isinstance(grantee.grant_principal, Construct):
            acknowledge(grantee.grant_principal, f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]", why)

    def _build_key(self) -> kms.Key:
        return kms.Key(
            self,
            "ReportsKey",
            description="reportrelay: encrypts stored reports",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_access_log_bucket(self, settings: Settings) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging delivers only to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(settings.access_log_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "This is the access-log bucket of the reports bucket; logging its own access would log the log "
            "deliveries themselves.",
        )
        return bucket

    def _build_bucket(self, settings: Settings) -> s3.Bucket:
        lifecycle_rules = [
            s3.LifecycleRule(
                id="expire-reports",
                expiration=Duration.days(settings.report_retention_days),
                abort_incomplete_multipart_upload_after=Duration.days(1),
                noncurrent_version_expiration=(
                    Duration.days(settings.noncurrent_retention_days) if settings.versioned else None
                ),
            )
        ]
        if settings.versioned:
            lifecycle_rules.append(
                s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True)
            )
        bucket = s3.Bucket(
            self,
            "Reports",
            encryption=s3.BucketEncryption.KMS if self.key is not None else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.key,
            bucket_key_enabled=True if self.key is not None else None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=settings.versioned,
            lifecycle_rules=lifecycle_rules,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="reports/" if self.access_logs is not None else None,
            removal_policy=RemovalPolicy.RETAIN,
        )
        if self.access_logs is None:
            acknowledge(
                bucket,
                "AwsSolutions-S1",
                "Server access logging is switched off by the setting reportrelay:accessLogs=false; "
                "CloudTrail data events remain available for auditing if needed.",
            )
        return bucket
