"""``reportrelay jobs`` over real HTTP against the job API as the tests deploy it (tests/api/access.py).

The IAM API is ``JobApiApp`` on loopback checking every SigV4 signature against generated identities
(their teams are IAM tags in moto); the people API takes bearer tokens from the sandbox's OIDC issuer.
The jobs run through the real state machine on moto against the DevExpress simulator. The command runs
in this process, signing with the credentials in its environment as it would in a shell.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.api.access import Deployment, deployment
from tests.cli.conftest import reportrelay, schema_problems, signed_as


@pytest.fixture
def deployed(tmp_path) -> Iterator[Deployment]:
    """Finance's machine alice signs in the environment; jobs take about a second."""
    with deployment(tmp_path, generation_seconds=0.3) as deployed, signed_as(deployed.machine("alice")):
        yield deployed


def api(deployed: Deployment) -> list[str]:
    return ["--api", deployed.iam_url]


def request_file(tmp_path, deployed: Deployment, **overrides) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(deployed.request("finance", **overrides)), encoding="utf-8")
    return str(path)


def start(capsys, deployed: Deployment, tmp_path, **overrides) -> str:
    ran = reportrelay(
        capsys,
        "jobs",
        "start",
        *api(deployed),
        "--request",
        request_file(tmp_path, deployed, **overrides),
        "--json",
    )
    assert ran.code == 0, ran.err
    return str(ran.json()["job_id"])


def test_start_watch_get_list_events_download_and_rerun_a_report(deployed, tmp_path, capsys):
    # given a request file for finance's connection, with parameters
    request = request_file(tmp_path, deployed, parameters={"Year": 2025})
    # when it is started with --json
    started = reportrelay(capsys, "jobs", "start", *api(deployed), "--request", request, "--json")
    # then the answer is the API's acceptance, as the schema says, and exit 0
    assert started.code == 0, started.err
    assert schema_problems(started.json(), "cli-job-started.json") == []
    job_id = started.json()["job_id"]
    assert started.json()["state"] == "queued" and started.json()["replayed"] is False

    # when it is watched with --jsonl until it ends
    watched = reportrelay(capsys, "jobs", "watch", *api(deployed), job_id, "--jsonl", "--interval", "0.2")
    # then every line follows the schema, events came as they happened, and the last line is the ready job
    assert watched.code == 0, watched.err
    lines = watched.lines()
    assert [problem for line in lines for problem in schema_problems(line, "cli-watch-line.json")] == []
    assert lines[-1]["type"] == "job" and lines[-1]["job"]["state"] == "ready"
    kinds = {line["event"]["kind"] for line in lines if line["type"] == "event"}
    assert {"state", "wait"} <= kinds, kinds

    # when it is asked for with get --json
    got = reportrelay(capsys, "jobs", "get", *api(deployed), job_id, "--json")
    # then it is the ready job with its file, as the schema says
    assert got.code == 0 and schema_problems(got.json(), "cli-job.json") == []
    stored = got.json()["object"]
    assert stored["sha256"] in deployed.simulator.served.values()

    # when the jobs are listed
    listed = reportrelay(capsys, "jobs", "list", *api(deployed), "--json", "--state", "ready")
    assert listed.code == 0 and schema_problems(listed.json(), "cli-job-list.json") == []
    assert [job["job_id"] for job in listed.json()["jobs"]] == [job_id]
    # and as lines, one job a line
    as_lines = reportrelay(capsys, "jobs", "list", *api(deployed), "--jsonl")
    assert [line["job_id"] for line in as_lines.lines()] == [job_id]
    assert schema_problems(as_lines.lines()[0], "cli-job.json") == []
    # and a --since after it lists none
    later = reportrelay(capsys, "jobs", "list", *api(deployed), "--since", "2999-01-01")
    assert (later.code, later.out.strip()) == (0, "no jobs matching")

    # when its events are asked for
    events = reportrelay(capsys, "jobs", "events", *api(deployed), job_id, "--json")
    # then they are the job's own, oldest first, and the plain form says the same in words
    assert events.code == 0 and schema_problems(events.json(), "cli-events.json") == []
    assert events.json()["job_id"] == job_id and events.json()["events"][0]["step"] == "Submit"
    in_words = reportrelay(capsys, "jobs", "events", *api(deployed), job_id)
    assert [line.split(None, 2)[2] for line in in_words.out.splitlines()] == [
        event["message"] for event in events.json()["events"]
    ]

    # when it is downloaded into a folder
    folder = tmp_path / "reports"
    downloaded = reportrelay(
        capsys, "jobs", "download", *api(deployed), job_id, "--out", f"{folder}/", "--json"
    )
    # then the file is there, its SHA-256 checked against the job's
    assert downloaded.code == 0, downloaded.err
    saved = downloaded.json()
    assert schema_problems(saved, "cli-download.json") == []
    assert saved["verified"] is True and saved["sha256"] == stored["sha256"]
    assert hashlib.sha256((folder / stored["filename"]).read_bytes()).hexdigest() == stored["sha256"]

    # when it is run again
    rerun = reportrelay(
        capsys, "jobs", "rerun", *api(deployed), job_id, "--watch", "--json", "--interval", "0.2"
    )
    # then a new job ran with the very request the API shows, parameters included, and is ready
    assert rerun.code == 0, rerun.err
    again = rerun.json()
    assert schema_problems(again, "cli-job.json") == []
    assert again["job_id"] != job_id and again["state"] == "ready"
    assert again["request"] == got.json()["request"] and again["request"]["parameters"] == {"Year": 2025}
    assert "not carried over" not in rerun.err


def test_watch_shows_plain_words_each_event_and_a_last_line_saying_ready(deployed, tmp_path, capsys):
    # given a started job
    job_id = start(capsys, deployed, tmp_path)
    # when it is watched on a terminal-less output
    watched = reportrelay(capsys, "jobs", "watch", *api(deployed), job_id, "--interval", "0.2")
    # then it says where the job stands in plain words, never the workflow's state names
    assert watched.code == 0, watched.err
    assert "being generated at the provider" in watched.out or "queued at the provider" in watched.out
    assert "WaitForReport" not in watched.out and "DescribeReady" not in watched.out
    assert "elapsed" in watched.out and "check(s)" in watched.out
    # and the events' own words are printed as they came
    assert "Submit" in watched.out and "Fetch" in watched.out
    # and the last line says it is ready and how to get the file
    assert watched.out.splitlines()[-1].startswith("READY Sales.pdf")
    assert f"reportrelay jobs download {job_id}" in watched.out.splitlines()[-1]


def test_a_failed_report_exits_1_and_says_why(deployed, tmp_path, capsys):
    # given a provider that fails every report
    deployed.simulator.fail_reports = "Parameter 'Year' is out of range"
    job_id = start(capsys, deployed, tmp_path)
    # when it is watched to the end
    watched = reportrelay(capsys, "jobs", "watch", *api(deployed), job_id, "--interval", "0.2")
    # then the exit code is 1 and the last line says FAILED with the provider's words
    assert watched.code == 1
    last = watched.out.splitlines()[-1]
    assert last.startswith("FAILED ") and "Parameter 'Year' is out of range" in last
    # and get --json says the same, as the schema says, also with exit 1
    got = reportrelay(capsys, "jobs", "get", *api(deployed), job_id, "--json")
    assert got.code == 1 and got.json()["state"] == "failed"
    assert schema_problems(got.json(), "cli-job.json") == []
    # and a failed job has nothing to download: the API's 409 is bad input, exit 2, its message shown
    download = reportrelay(capsys, "jobs", "download", *api(deployed), job_id, "--out", str(tmp_path))
    assert download.code == 2 and "failed" in download.err and "Traceback" not in download.err


def test_cancel_a_running_job_then_cancelling_it_again_is_refused(deployed, tmp_path, capsys):
    # given a job that takes a while to generate
    deployed.simulator.generation_seconds = 30
    job_id = start(capsys, deployed, tmp_path)
    # when it is cancelled
    cancelled = reportrelay(capsys, "jobs", "cancel", *api(deployed), job_id, "--json")
    # then it is cancelled, as the schema says
    assert cancelled.code == 0, cancelled.err
    assert (
        cancelled.json()["state"] == "cancelled" and schema_problems(cancelled.json(), "cli-job.json") == []
    )
    # and a watch of it ends at once with exit 1, saying CANCELLED
    watched = reportrelay(capsys, "jobs", "watch", *api(deployed), job_id, "--interval", "0.2")
    assert watched.code == 1 and watched.out.splitlines()[-1].startswith("CANCELLED Cancelled")
    # when it is cancelled again, the API's 409 is one line with its message, exit 2
    again = reportrelay(capsys, "jobs", "cancel", *api(deployed), job_id)
    assert again.code == 2
    assert again.err.startswith("reportrelay: error: ") and "cancelled" in again.err
    assert len(again.err.strip().splitlines()) == 1


def test_not_found_and_another_teams_job_exit_3(deployed, tmp_path, capsys):
    # given a finance job
    job_id = start(capsys, deployed, tmp_path)
    # when an id no job has is asked for
    missing = reportrelay(capsys, "jobs", "get", *api(deployed), "0b7e1f3c-0000-4000-8000-000000000000")
    # then exit 3, with the API's message on one line
    assert missing.code == 3 and "404" in missing.err and len(missing.err.strip().splitlines()) == 1
    # when sales' machine asks for finance's job, it does not exist for it either
    with signed_as(deployed.machine("bob")):
        other_team = reportrelay(capsys, "jobs", "get", *api(deployed), job_id)
        events = reportrelay(capsys, "jobs", "events", *api(deployed), job_id)
    assert other_team.code == 3 and events.code == 3
    # when sales starts a job on finance's connection, the API's 403 is exit 3 naming the connection
    with signed_as(deployed.machine("bob")):
        refused = reportrelay(
            capsys, "jobs", "start", *api(deployed), "--request", request_file(tmp_path, deployed)
        )
    assert refused.code == 3 and "dx-finance" in refused.err
    # when the request is signed with a secret IAM does not know, API Gateway's 403 is exit 3
    alice = deployed.machine("alice")
    forged = type(alice)(
        alice.access_key_id, "not-the-secret", alice.principal, alice.teams, alice.session_token
    )
    with signed_as(forged):
        unsigned = reportrelay(capsys, "jobs", "list", *api(deployed))
    assert unsigned.code == 3 and "signature" in unsigned.err


def test_bad_input_exits_2_with_one_line_before_anything_is_started(deployed, tmp_path, capsys):
    # given requests that cannot be started
    cases = [
        (["--connection", "dx-finance", "--format", "pdf"], "no report"),
        (["--request", str(tmp_path / "missing.json")], "cannot read request file"),
        (
            ["--connection", "dx-finance", "--report", '{"document_id": 10}', "--format", "csv"],
            "request.format",
        ),
        (
            ["--connection", "dx-finance", "--report", "[1]", "--format", "pdf"],
            "--report must be a JSON object",
        ),
    ]
    for flags, words in cases:
        # when each is started
        ran = reportrelay(capsys, "jobs", "start", *api(deployed), *flags)
        # then exit 2, one line naming the problem, no traceback
        assert ran.code == 2, (flags, ran.err)
        assert words in ran.err and "Traceback" not in ran.err, ran.err
    # and no job was started
    assert reportrelay(capsys, "jobs", "list", *api(deployed), "--json").json()["jobs"] == []


def test_no_api_and_an_unreachable_api_exit_2(deployed, capsys, unused_port):
    # given no API named anywhere
    nowhere = reportrelay(capsys, "jobs", "list")
    # then exit 2 saying how to name one
    assert nowhere.code == 2 and "--api URL, --stack NAME, or set REPORTRELAY_API" in nowhere.err
    # when the API named does not answer
    down = reportrelay(capsys, "jobs", "list", "--api", f"http://127.0.0.1:{unused_port}/v1")
    # then exit 2 saying it cannot be reached
    assert down.code == 2 and "cannot reach the job API" in down.err


def test_a_person_lists_and_gets_their_teams_jobs_with_a_bearer_token(deployed, tmp_path, capsys):
    # given a job finance's machine started
    job_id = start(capsys, deployed, tmp_path)
    # when carol (a finance person) lists jobs on the people API with her token
    token = deployed.token("carol")
    listed = reportrelay(capsys, "jobs", "list", "--api", deployed.people_url, "--token", token, "--json")
    # then she sees her team's job
    assert listed.code == 0, listed.err
    assert [job["job_id"] for job in listed.json()["jobs"]] == [job_id]
    # when dave (sales) asks for it with his, it is not found for him
    other = reportrelay(
        capsys, "jobs", "get", job_id, "--api", deployed.people_url, "--token", deployed.token("dave")
    )
    assert other.code == 3
    # and a token that does not verify is exit 3 with the API's reason
    bad = reportrelay(capsys, "jobs", "list", "--api", deployed.people_url, "--token", "not-a-jwt")
    assert bad.code == 3 and "401" in bad.err


def test_events_follow_prints_events_as_they_come_until_the_job_ends(deployed, tmp_path, capsys):
    # given a started job
    job_id = start(capsys, deployed, tmp_path)
    # when its events are followed as lines
    followed = reportrelay(
        capsys, "jobs", "events", *api(deployed), job_id, "--follow", "--jsonl", "--interval", "0.2"
    )
    # then each line is an event, as the schema says, and the job had ended when the command did
    assert followed.code == 0, followed.err
    lines = followed.lines()
    assert [problem for line in lines for problem in schema_problems(line, "cli-event.json")] == []
    assert lines[0]["step"] == "Submit" and lines[-1]["step"] in ("Fetch", "Conclude")
    assert len({json.dumps(line, sort_keys=True) for line in lines}) == len(lines)  # none twice


def test_a_stack_named_gives_its_api_url_output_and_with_a_token_its_people_url(deployed, tmp_path, capsys):
    # given a stack whose outputs name the two APIs, as infra/stack.py's ApiUrl and PeopleUrl do
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiUrl": {"Value": deployed.iam_url}, "PeopleUrl": {"Value": deployed.people_url}},
    }
    deployed.aws.client("cloudformation").create_stack(
        StackName="ReportRelay", TemplateBody=json.dumps(template)
    )
    job_id = start(capsys, deployed, tmp_path)
    # when the jobs are listed by the stack's name, signed with SigV4
    signed = reportrelay(capsys, "jobs", "list", "--stack", "ReportRelay", "--json")
    # and by a person with a token (the people API)
    person = reportrelay(
        capsys, "jobs", "list", "--stack", "ReportRelay", "--token", deployed.token("carol"), "--json"
    )
    # then both find the API and list the job
    assert signed.code == 0 and person.code == 0, (signed.err, person.err)
    assert (
        [job["job_id"] for job in signed.json()["jobs"]]
        == [job_id]
        == [j["job_id"] for j in person.json()["jobs"]]
    )
    # and a stack that does not exist is one line, exit 2
    missing = reportrelay(capsys, "jobs", "list", "--stack", "NoSuchStack")
    assert missing.code == 2 and "cannot read stack NoSuchStack" in missing.err
