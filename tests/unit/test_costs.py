"""What a job costs: its drivers added up as it runs, and their price (reportrelay.costs)."""

from __future__ import annotations

import contextvars
import threading

import boto3
import pytest
from moto import mock_aws

from reportrelay import costs


def test_usage_adds_up_and_refuses_a_driver_it_does_not_know() -> None:
    # given a job that has used some, when more is added, then the drivers add up
    job = costs.add({"job_id": "j"}, state_transitions=4, lambda_invocations=1, lambda_gb_seconds=0.25)
    job = costs.add(job, state_transitions=3, lambda_invocations=1, lambda_gb_seconds=0.5, s3_put_requests=0)
    assert job["usage"] == {"state_transitions": 7, "lambda_invocations": 2, "lambda_gb_seconds": 0.75}
    # and a name that is no driver is an error, not a silent zero
    with pytest.raises(ValueError, match="unknown cost driver 'dynamodb_writes'"):
        costs.add(job, dynamodb_writes=1)


def test_the_estimate_prices_each_driver_at_the_list_price_and_names_the_prices() -> None:
    # given a job that took 1,000 transitions, 1,000,000 invocations of 1 GB-second each in all, 1,000 PUT
    # and 1,000 GET requests, and stored 1 GiB
    usage = {
        "state_transitions": 1000,
        "lambda_invocations": 1_000_000,
        "lambda_gb_seconds": 1_000_000,
        "s3_put_requests": 1000,
        "s3_get_requests": 1000,
        "s3_bytes_stored": 1024**3,
    }
    # when it is priced
    estimate = costs.estimate(usage)
    # then each driver is priced as the pricing pages say (US East), and the total is their sum
    assert estimate["usd_by_driver"] == {
        "state_transitions": 0.025,
        "lambda_invocations": 0.2,
        "lambda_gb_seconds": 13.3334,
        "s3_put_requests": 0.005,
        "s3_get_requests": 0.0004,
        "s3_bytes_stored": 0.023,
    }
    assert estimate["usd"] == pytest.approx(13.5868)
    assert estimate["prices"] == {
        "region": "us-east-1",
        "read_on": costs.PRICES.read_on,
        "source": costs.PRICES.source,
    }
    # and a job that used nothing costs nothing, every driver shown
    assert costs.estimate({})["usd"] == 0 and set(costs.DRIVERS) <= set(costs.estimate({}))


def test_s3_requests_are_counted_by_price_class_for_this_job_only() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="cost-test")
        # given another job making S3 calls on the same client at the same time
        other_started, other_done = threading.Event(), threading.Event()

        def other_job() -> None:
            with costs.counting_s3(s3):
                other_started.set()
                for _ in range(5):
                    s3.head_bucket(Bucket="cost-test")
                other_done.set()

        thread = threading.Thread(target=other_job)
        # when this job uploads an object in parts and reads it back, one part from a thread run in a copy
        # of its context (as the transfer's upload threads are)
        with costs.counting_s3(s3) as calls:
            thread.start()
            other_started.wait(5)
            upload = s3.create_multipart_upload(Bucket="cost-test", Key="k")["UploadId"]
            etags: list[str] = []

            def upload_part() -> None:
                answer = s3.upload_part(Bucket="cost-test", Key="k", UploadId=upload, PartNumber=1, Body=b"x")
                etags.append(answer["ETag"])

            worker = threading.Thread(target=contextvars.copy_context().run, args=(upload_part,))
            worker.start()
            worker.join()
            s3.complete_multipart_upload(
                Bucket="cost-test",
                Key="k",
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}]},
            )
            s3.head_object(Bucket="cost-test", Key="k")
            other_done.wait(5)
        thread.join()
        # then only its own calls were counted, PUT-class and GET-class apart
        assert dict(calls) == {
            "CreateMultipartUpload": 1,
            "UploadPart": 1,
            "CompleteMultipartUpload": 1,
            "HeadObject": 1,
        }
        assert costs.s3_usage(calls) == {"s3_put_requests": 3, "s3_get_requests": 1}
        assert costs.s3_usage({"AbortMultipartUpload": 2}) == {}  # S3 does not charge for it
