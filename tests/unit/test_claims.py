"""Claims: the first job to claim an item owns it, claiming again is idempotent, on DynamoDB and in memory."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from reportrelay.claims import (
    CLAIMS_TABLE_ENV,
    KEY_ATTRIBUTE,
    TTL_ATTRIBUTE,
    ClaimsUnavailable,
    DynamoDbClaims,
    MemoryClaims,
    claims_from_env,
)

TABLE = "claims-under-test"


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def test_dynamodb_claims_first_writer_wins_and_repeats_are_idempotent(dynamodb) -> None:
    # given a claim store on a DynamoDB table
    claims = DynamoDbClaims(TABLE, lambda: dynamodb, clock=lambda: 1_000_000.0)
    # when two jobs claim the same item, one twice, and a third claims another item
    first = claims.claim("torus:host:tenant-69:run", "59398", "job-a")
    second = claims.claim("torus:host:tenant-69:run", "59398", "job-b")
    again = claims.claim("torus:host:tenant-69:run", "59398", "job-a")
    other = claims.claim("torus:host:tenant-69:run", "59399", "job-b")
    # then the first job owns the item, its repeat says so, and the other job got the other item
    assert (first, second, again, other) == (True, False, True, True)
    item = dynamodb.get_item(TableName=TABLE, Key={KEY_ATTRIBUTE: {"S": "torus:host:tenant-69:run#59398"}})
    assert item["Item"]["owner"]["S"] == "job-a"
    assert int(item["Item"][TTL_ATTRIBUTE]["N"]) > 1_000_000 + 7 * 24 * 3600


def test_a_missing_table_is_reported_as_unavailable_not_as_taken(dynamodb) -> None:
    # given a claim store pointing at a table that does not exist
    claims = DynamoDbClaims("no-such-table", lambda: dynamodb)
    # when a claim is made, then the caller learns nothing was decided
    with pytest.raises(ClaimsUnavailable, match="no-such-table"):
        claims.claim("ns", "1", "job-a")


def test_memory_claims_follow_the_same_contract() -> None:
    claims = MemoryClaims()
    assert claims.claim("ns", "1", "job-a") and claims.claim("ns", "1", "job-a")
    assert not claims.claim("ns", "1", "job-b")
    assert claims.owners == {"ns#1": "job-a"}


def test_claims_from_env_needs_the_table_name() -> None:
    assert claims_from_env({}) is None
    store = claims_from_env({CLAIMS_TABLE_ENV: TABLE})
    assert isinstance(store, DynamoDbClaims) and store.table_name == TABLE
