"""DevExpress jobs executed through statemachines/report.asl.json on moto, against the simulator over HTTP.

What every vendor must do (a report end to end, a failure in the vendor's words, a download that always
breaks or breaks once, a 429, a token revoked mid-job, a request it cannot serve, no secret anywhere) is
the vendor contract (tests/contract) and the fault matrix (tests/faults), run for DevExpress too; here is
what is DevExpress' own."""

from __future__ import annotations

import hashlib

from reportrelay.transfer import same_checksum
from reportrelay_cli.local.runner import run_job


def report_request(**overrides):
    request = {
        "connection": "dx",
        "report": {"document_id": 10},
        "format": "pdf",
        "parameters": {"Year": 2025},
    }
    request.update(overrides)
    return request


def stored_bytes(aws, detail):
    stored = detail["object"]
    return aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()


def test_a_report_export_is_queued_polled_fetched_and_announced(local_aws, devexpress_sim, tmp_path):
    # given a report that takes half a second to generate
    # when the job runs through the state machine
    outcome = run_job(local_aws, report_request(output={"key_prefix": "finance/"}), out_dir=tmp_path / "out")
    # then the Report Ready event describes the stored object
    assert outcome.detail_type == "Report Ready"
    detail = outcome.detail
    assert detail["status"] == "READY" and detail["error"] is None
    assert detail["provider"] == "devexpress" and detail["connection"] == "dx"
    assert detail["polls"] >= 1
    (export_id,) = devexpress_sim.exports
    stored = detail["object"]
    assert stored["key"] == f"finance/{detail['job_id']}/Sales.pdf"
    assert stored["content_type"] == "application/pdf"
    # and the bytes in S3 and in the output folder are exactly what the simulator served
    content = stored_bytes(local_aws, detail)
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] == devexpress_sim.served[export_id]
    assert outcome.local_file.read_bytes() == content
    # and S3's own checksum of the object (checked part by part as it arrived) is the event's
    attributes = local_aws.client("s3").get_object_attributes(
        Bucket=stored["bucket"], Key=stored["key"], ObjectAttributes=["Checksum"]
    )
    assert same_checksum(attributes["Checksum"]["ChecksumCRC64NVME"], stored["checksum_crc64nvme"])
    # and the report parameters reached the provider
    assert devexpress_sim.exports[export_id]["parameters"] == [{"name": "Year", "value": 2025}] or (
        devexpress_sim.exports[export_id]["parameters"] == {"Year": 2025}
    )
    # and the execution output is the event detail
    assert outcome.execution_status == "SUCCEEDED"


def test_a_dashboard_export_answers_with_the_file_and_needs_no_polling(local_aws, devexpress_sim):
    # given a dashboard, which DevExpress exports synchronously
    request = report_request(report={"dashboard_id": 20, "export_options": {"format": "png"}}, format="image")
    # when the job runs
    outcome = run_job(local_aws, request)
    # then the image is stored and no status was ever polled
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.detail["object"]["filename"] == "Operations.png"
    assert outcome.detail["object"]["content_type"] == "image/png"
    assert outcome.detail["object"]["sha256"] == devexpress_sim.served_last_dashboard
    assert outcome.detail["polls"] == 0
    assert devexpress_sim.calls("GET", "/api/documents/export/status/{id}") == []


def test_a_token_about_to_expire_is_renewed_before_use(local_aws, devexpress_sim):
    # given tokens that live one second, and a report that takes three
    devexpress_sim.token_lifetime_seconds = 1
    devexpress_sim.generation_seconds = 3
    # when the job runs
    outcome = run_job(local_aws, report_request())
    # then new tokens were obtained along the way, before the server had to refuse an expired one
    assert outcome.detail_type == "Report Ready"
    assert devexpress_sim.tokens_issued >= 3
    assert devexpress_sim.tokens_refused == 0


def test_wrong_credentials_fail_with_an_actionable_message(local_aws, devexpress_sim, monkeypatch):
    # given a password the server does not accept
    monkeypatch.setenv("TEST_DX_PASSWORD", "not-the-password")
    # when the job runs
    outcome = run_job(local_aws, report_request())
    # then it fails once, without retrying, telling the user to check the credentials
    assert outcome.detail["error"]["code"] == "ProviderAuthFailed"
    assert "check the connection's credentials" in outcome.detail["error"]["message"]
    assert devexpress_sim.exports == {}
