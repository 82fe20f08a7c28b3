"""The README's session over real HTTP: SigV4-signed requests start a job, watch it and download the file.

The job API runs in-process on emulated AWS behind reportrelay_cli.local.apigateway.JobApiApp, served on
loopback, which verifies each signature against generated local identities as API Gateway's AWS_IAM
authorization would. The caller is a session of a role whose IAM tag gives it the team of the
connection used. The client signs each request with botocore's SigV4 signer, as docs/api.md shows
("Calling it from code"), and follows the download redirect to S3 unsigned, as awscurl -L does.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from reportrelay_cli.local.apigateway import JobApiApp
from reportrelay_cli.local.aws import REGION, LocalAws
from reportrelay_cli.local.identities import LocalIdentities, LocalIdentity, register_in_iam
from tests.http import serve, sigv4_headers

CI = "arn:aws:sts::123456789012:assumed-role/finance-reports/ci"


@pytest.fixture
def ci(api_aws: LocalAws) -> LocalIdentity:
    """A CI job's role session, in the team the connections are shared with (its role's IAM tag)."""
    identities = LocalIdentities.generate({CI: ["finance"]})
    register_in_iam(api_aws.client("iam"), identities)
    return identities.for_principal(CI)


@pytest.fixture
def api_url(api_aws: LocalAws, ci: LocalIdentity) -> Iterator[str]:
    """The job API on http://127.0.0.1:<port>/v1, as API Gateway would serve it."""
    with serve(JobApiApp(api_aws.api, identities=LocalIdentities([ci]), region=REGION), path="/v1") as url:
        yield url


def call(method: str, url: str, identity: LocalIdentity, body: Any = None) -> requests.Response:
    """docs/api.md's signer: any SigV4 signer works, botocore's here."""
    data = json.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    signed = sigv4_headers(method, url, identity.credentials(), data=data, headers=headers)
    return requests.request(method, url, headers=signed, data=data, allow_redirects=False, timeout=30)


def test_start_watch_and_download_over_signed_http(api_url, ci, devexpress_sim):
    # given the README's request, with a client token, from a caller in the connection's team
    request = {
        "connection": "dx",
        "report": {"document_id": 10},
        "format": "pdf",
        "client_token": "sales-2025",
    }
    # when the job is started
    started = call("POST", f"{api_url}/reports", ci, request)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert started.headers["Location"].endswith(f"/reports/{job_id}")
    # and started again with the same token: the same job, not a second report
    again = call("POST", f"{api_url}/reports", ci, request)
    assert (again.status_code, again.json()["job_id"], again.json()["replayed"]) == (202, job_id, True)

    # when it is watched until it finishes
    deadline = time.monotonic() + 30
    while (job := call("GET", f"{api_url}/reports/{job_id}", ci).json())["state"] not in ("ready", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    # then it is ready, with the stored file's size and SHA-256
    assert job["state"] == "ready", job
    assert job["object"]["size"] > 0 and len(job["object"]["sha256"]) == 64

    # when it is downloaded: the API redirects, the redirect is followed without signing
    redirect = call("GET", f"{api_url}/reports/{job_id}/download", ci)
    assert redirect.status_code == 302, redirect.text
    file = requests.get(redirect.headers["Location"], timeout=30)
    # then the bytes are the ones stored, which are the ones the provider served
    assert file.status_code == 200
    assert hashlib.sha256(file.content).hexdigest() == job["object"]["sha256"]
    assert set(devexpress_sim.served.values()) == {job["object"]["sha256"]}

    # and an unsigned request is refused, as API Gateway refuses it
    unsigned = requests.get(f"{api_url}/reports/{job_id}", timeout=30)
    assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Missing Authentication Token"})
    # and so is one signed with a secret the identities do not hold
    forged = LocalIdentity(ci.access_key_id, "not-the-secret", ci.principal, ci.teams, ci.session_token)
    assert call("GET", f"{api_url}/reports/{job_id}", forged).status_code == 403
