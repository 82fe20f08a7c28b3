"""One boto3 client per service and region per process: warm Lambdas and parallel local steps share it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from reportrelay.awsclients import aws_client
from reportrelay_cli.local.aws import local_client


@pytest.fixture(autouse=True)
def region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_a_service_gets_the_same_client_on_every_call() -> None:
    # when the same client is asked for twice
    first, second = aws_client("dynamodb"), aws_client("dynamodb")
    # then it is one client, for the current region
    assert first is second
    assert first.meta.region_name == "eu-west-1"


def test_threads_asking_at_once_share_one_client() -> None:
    # when eight threads ask for a client no one has asked for yet
    with ThreadPoolExecutor(max_workers=8) as pool:
        clients = list(pool.map(lambda _: aws_client("sqs"), range(8)))
    # then they all get the same one
    assert len({id(client) for client in clients}) == 1


def test_another_region_endpoint_or_signature_gets_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the client for this region
    plain = aws_client("s3")
    # when the signature version, the region or the endpoint differs
    sigv4 = aws_client("s3", signature_version="s3v4")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    elsewhere = aws_client("s3")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:8333")
    local = aws_client("s3")
    # then each is a client of its own, made for those settings
    assert len({id(plain), id(sigv4), id(elsewhere), id(local)}) == 4
    assert elsewhere.meta.region_name == "ap-southeast-2"
    assert local.meta.endpoint_url == "http://127.0.0.1:8333"
    assert sigv4.meta.config.signature_version == "s3v4"


def test_the_local_emulations_client_follows_the_endpoint_it_was_made_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the emulation's S3 client made while S3 was aimed at a server of a test's own
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:8333")
    aimed = local_client("s3")
    # when that setting is gone again (the server with it)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    plain = local_client("s3")
    # then the next client is not the one aimed at the gone server, and each is kept for its endpoint
    assert aimed.meta.endpoint_url == "http://127.0.0.1:8333"
    assert plain.meta.endpoint_url == "https://s3.amazonaws.com"
    assert local_client("s3") is plain
