"""The reports bucket: private, encrypted, TLS-only, expiring, logged, as its settings say."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synthesized, references

BLOCK_ALL = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


def buckets(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        logical_id: bucket["Properties"]
        for logical_id, bucket in synthesized.resources("AWS::S3::Bucket").items()
    }


def reports_bucket(synthesized: Synthesized) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical_id, properties)
        for logical_id, properties in buckets(synthesized).items()
        if any(rule["Id"] == "expire-reports" for rule in properties["LifecycleConfiguration"]["Rules"])
    ]
    return found


def bucket_policy(synthesized: Synthesized, bucket: str) -> list[dict[str, Any]]:
    (policy,) = [
        policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in synthesized.resources("AWS::S3::BucketPolicy").values()
        if references(policy["Properties"]["Bucket"]) == {bucket}
    ]
    return policy


def rule(properties: dict[str, Any], rule_id: str) -> dict[str, Any]:
    (found,) = [rule for rule in properties["LifecycleConfiguration"]["Rules"] if rule["Id"] == rule_id]
    return found


def test_every_bucket_blocks_all_public_access_and_enforces_its_owner(synthesized: Synthesized) -> None:
    for properties in buckets(synthesized).values():
        assert properties["PublicAccessBlockConfiguration"] == BLOCK_ALL
        assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_every_bucket_refuses_requests_without_tls(synthesized: Synthesized, hardened: Synthesized) -> None:
    for deployment in (synthesized, hardened):
        for bucket in buckets(deployment):
            # given the bucket's policy / then it denies every S3 action over plain HTTP, to everyone
            statements = bucket_policy(deployment, bucket)
            denials = [s for s in statements if s["Effect"] == "Deny"]
            assert any(
                s["Action"] == "s3:*"
                and s["Principal"] == {"AWS": "*"}
                and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                for s in denials
            ), statements


def test_the_reports_bucket_refuses_old_tls(synthesized: Synthesized) -> None:
    bucket, _ = reports_bucket(synthesized)
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"NumericLessThan": {"s3:TlsVersion": 1.2}}
        for s in bucket_policy(synthesized, bucket)
    )


def test_by_default_reports_are_sse_s3_encrypted_versioned_and_access_logged(
    synthesized: Synthesized,
) -> None:
    # given the default settings
    _, reports = reports_bucket(synthesized)
    # then S3-managed encryption, versioning on, and access logs into the separate log bucket
    assert reports["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert reports["VersioningConfiguration"] == {"Status": "Enabled"}
    (log_bucket,) = references(reports["LoggingConfiguration"]["DestinationBucketName"])
    assert log_bucket != reports_bucket(synthesized)[0]
    assert reports["LoggingConfiguration"]["LogFilePrefix"] == "reports/"
    log_properties = buckets(synthesized)[log_bucket]
    assert log_properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0] == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}
    }


def test_reports_expire_and_unfinished_uploads_are_aborted_after_a_day(synthesized: Synthesized) -> None:
    # given the default 90 days of retention and versioning
    _, reports = reports_bucket(synthesized)
    expire = rule(reports, "expire-reports")
    # then reports expire, their old versions too, and multipart leftovers go after one day
    assert expire["Status"] == "Enabled"
    assert expire["ExpirationInDays"] == 90
    assert expire["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert expire["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rule(reports, "remove-expired-delete-markers")["ExpiredObjectDeleteMarker"] is True


def test_the_settings_switch_to_kms_unversioned_unlogged_and_shorter_retention(hardened: Synthesized) -> None:
    # given bucketEncryption=kms, versioned=false, accessLogs=false, reportRetentionDays=30
    bucket, reports = reports_bucket(hardened)

    # then the bucket is encrypted with its own rotating key, with S3 bucket keys to keep KMS calls few
    (encryption,) = reports["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert encryption["BucketKeyEnabled"] is True
    (key,) = references(encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"])
    assert hardened.template["Resources"][key]["Properties"]["EnableKeyRotation"] is True
    # and versioning is off, no log bucket exists, reports expire after 30 days
    assert "VersioningConfiguration" not in reports
    assert "LoggingConfiguration" not in reports
    assert list(buckets(hardened)) == [bucket]
    expire = rule(reports, "expire-reports")
    assert expire["ExpirationInDays"] == 30
    assert expire["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "NoncurrentVersionExpiration" not in expire


def test_reports_outlive_the_stack(synthesized: Synthesized) -> None:
    # given `cdk destroy` / then the reports (and their logs) stay: they are the users' data
    for logical_id in buckets(synthesized):
        resource = synthesized.template["Resources"][logical_id]
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"
