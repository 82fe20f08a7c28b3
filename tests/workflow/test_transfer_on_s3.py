"""Streaming into a real S3 server (SeaweedFS): S3 checks every part's CRC64NVME and the whole object's."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from reportrelay.transfer import stream_to_s3

MiB = 1024 * 1024
PART = 5 * MiB


def store(s3: Any, bucket: str, data: bytes) -> Any:
    chunks = (data[start : start + MiB] for start in range(0, len(data), MiB))
    return stream_to_s3(
        chunks, s3_client=s3, bucket=bucket, key="k/report.bin", content_type="application/pdf",
        filename="report.bin", part_size=PART, expected_size=len(data),
    )  # fmt: skip


def assert_nothing_stored(s3: Any, bucket: str) -> None:
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_the_object_checksum_is_the_one_s3_computed_and_reports(s3_server, s3_bucket):
    # given a report of three parts
    data = random.Random(5).randbytes(2 * PART + 123)
    s3 = s3_server.client()
    # when it is streamed into S3
    stored = store(s3, s3_bucket, data)
    # then S3 holds those bytes and reports the same full-object CRC64NVME
    head = s3.head_object(Bucket=s3_bucket, Key="k/report.bin", ChecksumMode="ENABLED")
    assert (head["ChecksumType"], head["ChecksumCRC64NVME"]) == ("FULL_OBJECT", stored.checksum_crc64nvme)
    assert s3.get_object(Bucket=s3_bucket, Key="k/report.bin")["Body"].read() == data


@pytest.mark.parametrize("operation", ["upload_part", "complete_multipart_upload"])
def test_a_wrong_checksum_is_refused_by_s3_and_leaves_nothing(s3_server, s3_bucket, monkeypatch, operation):
    # given bytes that change on the way to S3 after their checksum was taken (here: the checksum changes)
    s3 = s3_server.client()
    send = getattr(s3, operation)

    def corrupted(**kwargs: Any) -> Any:
        if kwargs.get("PartNumber", 2) == 2:
            kwargs["ChecksumCRC64NVME"] = "AAAAAAAAAAA="
        return send(**kwargs)

    monkeypatch.setattr(s3, operation, corrupted)
    # when a report is streamed into S3
    with pytest.raises(ClientError) as raised:
        store(s3, s3_bucket, random.Random(6).randbytes(PART + 10))
    # then S3 refused it, and there is no object and no open upload
    assert raised.value.response["Error"]["Code"] == "BadDigest"
    assert_nothing_stored(s3, s3_bucket)


def test_over_https_each_part_is_sent_as_it_arrives_and_s3_checks_it(s3_server, s3_bucket):
    # given S3 over HTTPS, as in AWS, and a download of announced size that, after 2 MiB, waits until the
    # first part's upload has been sent on its way (over HTTP the SDK would first read the whole part to
    # put its checksum in a header; over HTTPS it sends the checksum as a trailer after the bytes)
    s3 = s3_server.client(https=True)
    data = random.Random(7).randbytes(2 * PART + 99)
    first_part_on_its_way = threading.Event()

    def sending(request: Any, **kwargs: Any) -> None:
        if "partNumber=1" in request.url:
            first_part_on_its_way.set()

    s3.meta.events.register("before-send.s3.UploadPart", sending)

    def source() -> Any:
        for number, start in enumerate(range(0, len(data), MiB)):
            if number == 2:
                assert first_part_on_its_way.wait(timeout=10), "part 1 waited to be full before it was sent"
            yield data[start : start + MiB]

    # when it is streamed into S3
    stored = stream_to_s3(
        source(), s3_client=s3, bucket=s3_bucket, key="k/streamed.bin", content_type="application/pdf",
        filename="streamed.bin", part_size=PART, expected_size=len(data),
    )  # fmt: skip
    # then S3 took each part with the checksum the SDK computed as it sent, and holds exactly the bytes,
    # with the full-object CRC64NVME reportrelay computed
    head = s3.head_object(Bucket=s3_bucket, Key="k/streamed.bin", ChecksumMode="ENABLED")
    assert (head["ChecksumType"], head["ChecksumCRC64NVME"]) == ("FULL_OBJECT", stored.checksum_crc64nvme)
    assert s3.get_object(Bucket=s3_bucket, Key="k/streamed.bin")["Body"].read() == data
