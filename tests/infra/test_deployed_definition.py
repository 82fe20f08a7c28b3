"""The definition CloudFormation deploys is the one the tests execute: from the template, run on moto."""

from __future__ import annotations

import hashlib

from infra.definition import definition_from_template
from reportrelay_cli.local.aws import STATE_MACHINE_FILE, LocalAws
from reportrelay_cli.local.runner import run_job


def test_the_synthesized_definition_runs_a_report_end_to_end(
    template, dx_connections, devexpress_sim, tmp_path
):
    # given the state machine definition exactly as the synthesized template deploys it
    deployed = tmp_path / "deployed.asl.json"
    deployed.write_text(definition_from_template(template), encoding="utf-8")
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(dx_connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    # when a job runs through it on emulated AWS against the DevExpress simulator
    with LocalAws(environment, definition_file=deployed) as aws:
        outcome = run_job(aws, {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
        stored = outcome.detail["object"]
        content = aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()
    # then the report is fetched and announced, byte for byte what the simulator served
    assert outcome.detail_type == "Report Ready", outcome.detail
    (export_id,) = devexpress_sim.exports
    assert hashlib.sha256(content).hexdigest() == devexpress_sim.served[export_id] == stored["sha256"]


def test_the_deployed_definition_is_the_file_in_the_repo(template):
    # given the repo's ASL file and the template's definition / then they are the same document
    assert definition_from_template(template) == STATE_MACHINE_FILE.read_text(encoding="utf-8")
