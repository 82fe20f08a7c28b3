"""Keys made from any accepted prefix and any provider file name work on a real S3 server (SeaweedFS):
stored by the transfer, fetched back through a SigV4 presigned URL, listed under exactly that key."""

from __future__ import annotations

from urllib.parse import unquote

import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reportrelay import workflow
from reportrelay.config import parse_job_request
from reportrelay.objectkeys import clean_filename
from reportrelay.transfer import _content_disposition, stream_to_s3
from tests.s3server import S3Server
from tests.unit.test_object_keys import file_names, good_prefixes, job_ids, teams


def disposition_name(header: str) -> str:
    """The name a browser would save as: ``filename*`` when there is one, else ``filename``."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "filename*":
            return unquote(value.removeprefix("UTF-8''"))
    return header.split('filename="', 1)[1].rsplit('"', 1)[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=good_prefixes, team=teams, job_id=job_ids, filename=file_names, body=st.binary(max_size=2048))
@example(
    prefix="Umsätze (Q1)/year=2025/" + "é" * 127,
    team="t" * 63,
    job_id="s" * 63 + "-20250301T060000Z",
    filename="invoice\u202efdp " + "€" * 100 + ".exe",
    body=b"%PDF-1.7",
)
def test_an_accepted_key_round_trips_through_a_presigned_url(
    s3_server: S3Server, prefix: str, team: str | None, job_id: str, filename: str, body: bytes
) -> None:
    # given a bucket and a job whose request has an accepted prefix
    s3 = s3_server.client()
    bucket = "object-keys"
    if bucket not in {known["Name"] for known in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
    document = {"connection": "c", "report": {}, "format": "pdf", "output": {"key_prefix": prefix}}
    request = parse_job_request({**document, **({"team": team} if team else {})})
    key = workflow.object_key(request, job_id, filename)
    try:
        # when the transfer stores the provider's report there
        stored = stream_to_s3(
            iter([body]),
            s3_client=s3,
            bucket=bucket,
            key=key,
            content_type="application/octet-stream",
            filename=filename,
        )
        # then the bucket holds exactly that key
        listed = s3.list_objects_v2(Bucket=bucket)
        assert [item["Key"] for item in listed.get("Contents", [])] == [key]
        # and a presigned GET (SigV4) serves the same bytes with the cleaned name to save them as
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.content == body
        assert stored.filename == clean_filename(filename) == key.rsplit("/", 1)[1]
        assert answer.headers["Content-Disposition"] == _content_disposition(stored.filename)
        assert disposition_name(answer.headers["Content-Disposition"]) == stored.filename
        # and the server did check the signature: the same URL with another signature is refused
        forged = requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=10)
        assert forged.status_code == 403
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
