"""Least privilege: each role may do what its step does, on its own resources, and nothing else."""

from __future__ import annotations

import pytest

from infra.storage import KMS_WRITE_ACTIONS, RECOGNISE_REPORT_ACTIONS, WRITE_REPORT_ACTIONS
from tests.infra.conftest import (
    HOLDER_SECRET_ARN,
    Synthesized,
    claims_table,
    environment,
    job_table,
    references,
)
from tests.infra.policies import (
    function_id,
    function_role,
    grantees,
    grants,
    role_actions,
    role_grants,
)

SUBMIT = "reportrelay.handlers.submit.handler"
CHECK = "reportrelay.handlers.check.handler"
FETCH = "reportrelay.handlers.fetch.handler"
CONCLUDE = "reportrelay.handlers.conclude.handler"
HOLD = "reportrelay.handlers.hold.handler"
CANCEL = "reportrelay.handlers.cancel.handler"
START_SCHEDULED = "reportrelay.handlers.start_scheduled.handler"
API = "reportrelay.handlers.api.handler"
ANNOUNCE_PENDING = "reportrelay.handlers.announce_pending.handler"
WAIT_FOR_SLOT = "reportrelay.handlers.wait_for_slot.handler"
WORKFLOW_HANDLERS = (SUBMIT, CHECK, FETCH, CONCLUDE, WAIT_FOR_SLOT)
LINE = frozenset({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"})
ALL_HANDLERS = (*WORKFLOW_HANDLERS, CANCEL, START_SCHEDULED, API, ANNOUNCE_PENDING)
BASELINE = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SECRET_READ = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}


def bucket_id(synthesized: Synthesized) -> str:
    (reports,) = [
        logical_id
        for logical_id, bucket in synthesized.resources("AWS::S3::Bucket").items()
        if "LifecycleConfiguration" in bucket["Properties"]
        and any(
            rule["Id"] == "expire-reports" for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        )
    ]
    return reports


def key_described(synthesized: Synthesized, words: str) -> str:
    (key,) = [
        logical_id
        for logical_id, key in synthesized.resources("AWS::KMS::Key").items()
        if words in key["Properties"]["Description"]
    ]
    return key


def state_machine_role(synthesized: Synthesized) -> str:
    _, machine = synthesized.resource("AWS::StepFunctions::StateMachine")
    (role,) = references(machine["Properties"]["RoleArn"])
    return role


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_every_function_has_its_own_role_without_managed_policies(
    synthesized: Synthesized, handler: str
) -> None:
    # given the synthesized app / when a function's role is read
    role_id = function_role(synthesized, handler)
    role = synthesized.template["Resources"][role_id]["Properties"]

    # then no managed policy (AWSLambdaBasicExecutionRole would open every log group) and no sharing
    assert "ManagedPolicyArns" not in role
    # (Fetch's role is the container task's too: ECS tasks may assume it, tests/infra/test_container.py)
    services = "lambda.amazonaws.com"
    if handler == "reportrelay.handlers.fetch.handler":
        services = ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": services}}
    ]
    others = {function_role(synthesized, other) for other in ALL_HANDLERS}
    assert len(others) == len(ALL_HANDLERS)


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_every_function_writes_only_its_own_log_group(synthesized: Synthesized, handler: str) -> None:
    # given a function and the log group it logs to
    function = synthesized.template["Resources"][function_id(synthesized, handler)]["Properties"]
    (log_group,) = references(function["LoggingConfig"]["LogGroup"])

    # when its logging grants are read
    logging = [
        grant
        for grant in role_grants(synthesized, function_role(synthesized, handler))
        if any(action.startswith("logs:") for action in grant.actions)
    ]

    # then it may write streams of that one log group, and nothing else in CloudWatch Logs
    assert [grant.actions for grant in logging] == [frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})]
    assert logging[0].resource_ids == {log_group}


def test_fetch_writes_reports_but_cannot_delete_list_tag_or_touch_other_buckets(
    synthesized: Synthesized,
) -> None:
    # given the fetch function's role
    role = function_role(synthesized, FETCH)
    s3_grants = [
        grant for grant in role_grants(synthesized, role) if any(a.startswith("s3:") for a in grant.actions)
    ]

    # then its S3 rights are: put objects (multipart included), abort an upload, list one upload's parts
    # (to go on from a checkpoint), and read an object's attributes (S3 asks for GetObject with
    # GetObjectAttributes) to recognise what an earlier run stored
    assert {action for grant in s3_grants for action in grant.actions} == {
        *WRITE_REPORT_ACTIONS,
        *RECOGNISE_REPORT_ACTIONS,
    }
    assert "s3:PutObjectTagging" not in WRITE_REPORT_ACTIONS
    # and only on the objects of the reports bucket
    reports = bucket_id(synthesized)
    for grant in s3_grants:
        assert grant.resource_ids == {reports}
        for resource in grant.resources:
            assert resource == {"Fn::Join": ["", [{"Fn::GetAtt": [reports, "Arn"]}, "/*"]]}
    # and nothing that lists the bucket's keys, deletes or reads another version
    assert {
        a for a in role_actions(synthesized, role) if a.startswith(("s3:Get", "s3:List", "s3:Delete"))
    } == {
        "s3:GetObject",
        "s3:GetObjectAttributes",
        "s3:ListMultipartUploadParts",
    }


@pytest.mark.parametrize("handler", [SUBMIT, CHECK, CONCLUDE, CANCEL, START_SCHEDULED])
def test_only_fetch_may_touch_s3(synthesized: Synthesized, handler: str) -> None:
    # given a function other than fetch / then its role has no S3 action at all, except that conclude and
    # cancel may abort the upload a failed or cancelled job left open, on the reports bucket's objects only
    s3_actions = {
        a for a in role_actions(synthesized, function_role(synthesized, handler)) if a.startswith("s3:")
    }
    if handler in (CONCLUDE, CANCEL):
        assert s3_actions == {"s3:AbortMultipartUpload"}
        role = function_role(synthesized, handler)
        (grant,) = [g for g in role_grants(synthesized, role) if "s3:AbortMultipartUpload" in g.actions]
        assert grant.resource_ids == {bucket_id(synthesized)}
    else:
        assert not s3_actions


def test_conclude_needs_nothing_but_logs_traces_its_slot_the_jobs_outcome_and_its_event(
    synthesized: Synthesized,
) -> None:
    # given the conclude function (its metrics go out as EMF log lines: no PutMetricData)
    # then its role holds the baseline, plus giving back the job's concurrency slot and handing it to the
    # job first in line (its task token), recording the job's outcome with its event (and reading it back
    # when run again), and announcing it, and nothing more
    assert role_actions(synthesized, function_role(synthesized, CONCLUDE)) == BASELINE | LINE | {
        "states:SendTaskSuccess",
        "events:PutEvents",
        "s3:AbortMultipartUpload",  # a failed job's upload left open for its next Fetch
    }


def test_the_wait_for_slot_step_may_only_join_the_line_and_hand_slots_over(synthesized: Synthesized) -> None:
    # given the function the WaitForSlot task invokes with its token
    table, _ = claims_table(synthesized)
    role = function_role(synthesized, WAIT_FOR_SLOT)
    jobs, _ = job_table(synthesized)
    # then it may change the line and the slots in the claims table, record the job's place in line (one
    # conditional UpdateItem on the job table), and tell a waiting job its slot, and nothing more: no
    # provider secret, no S3, no events
    assert dynamodb_grants(synthesized, WAIT_FOR_SLOT) == {
        (LINE, table),
        (frozenset({"dynamodb:UpdateItem"}), jobs),
    }
    assert role_actions(synthesized, role) == BASELINE | LINE | {"states:SendTaskSuccess"}
    (send,) = [grant for grant in role_grants(synthesized, role) if "states:SendTaskSuccess" in grant.actions]
    assert send.resources == ("*",)  # the action has no resource-level permissions


def test_the_announce_pending_function_may_query_the_outbox_update_jobs_and_put_events(
    synthesized: Synthesized,
) -> None:
    # given the sweep of the job table's outbox
    role = function_role(synthesized, ANNOUNCE_PENDING)
    jobs, _ = job_table(synthesized)
    bus, _ = synthesized.resource("AWS::Events::EventBus")
    # then it may query the outbox index (and no other), update a job's announcement, put events on the
    # bus, and nothing more: no GetItem, no PutItem, no secrets, no S3
    assert role_actions(synthesized, role) == BASELINE | {
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "events:PutEvents",
    }
    by_action = {action: grant for grant in role_grants(synthesized, role) for action in grant.actions}
    assert by_action["dynamodb:Query"].resources == (
        {"Fn::Join": ["", [{"Fn::GetAtt": [jobs, "Arn"]}, "/index/outbox"]]},
    )
    assert by_action["dynamodb:UpdateItem"].resources == ({"Fn::GetAtt": [jobs, "Arn"]},)
    assert by_action["events:PutEvents"].resources == ({"Fn::GetAtt": [bus, "Arn"]},)


def test_the_announce_pending_function_runs_every_five_minutes(synthesized: Synthesized) -> None:
    function = function_id(synthesized, ANNOUNCE_PENDING)
    (rule,) = [
        rule
        for rule in synthesized.resources("AWS::Events::Rule").values()
        if any(target["Arn"] == {"Fn::GetAtt": [function, "Arn"]} for target in rule["Properties"]["Targets"])
    ]
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["Properties"]["Targets"][0]["RetryPolicy"] == {"MaximumRetryAttempts": 0}


@pytest.mark.parametrize("handler", [SUBMIT, CHECK, FETCH, CANCEL])
def test_provider_steps_read_exactly_the_configured_secret(synthesized: Synthesized, handler: str) -> None:
    # given config/connections.json, whose one connection names the secret "reportrelay/acme-dx"
    secret_grants = [
        grant
        for grant in role_grants(synthesized, function_role(synthesized, handler))
        if any(action.startswith("secretsmanager:") for action in grant.actions)
    ]
    # then the function may read that secret (any version suffix), and no other
    assert [grant.actions for grant in secret_grants] == [frozenset(SECRET_READ)]
    (resource,) = secret_grants[0].resources
    assert resource["Fn::Join"][1][-1] == ":secret:reportrelay/acme-dx-??????"


@pytest.mark.parametrize("handler", ALL_HANDLERS)
def test_only_the_functions_that_need_connections_read_them_and_only_this_stacks(
    synthesized: Synthesized, handler: str
) -> None:
    # given the connections, one SSM parameter each under the stack's own path (infra.connections)
    path = f":parameter/reportrelay/{synthesized.stack_name}/connections"
    # when the function's grants of SSM actions are listed, each resource as the end of its ARN
    ssm_grants = {
        (grant.actions, tuple(resource["Fn::Join"][1][-1] for resource in grant.resources))
        for grant in role_grants(synthesized, function_role(synthesized, handler))
        if any(action.startswith("ssm:") for action in grant.actions)
    }
    # then the provider steps read one parameter at a time, under that path only; the API may also list
    # the path (GetParametersByPath is authorized on the path itself); String parameters, so no kms
    expected: set[tuple[frozenset[str], tuple[str, ...]]] = set()
    if handler in (SUBMIT, CHECK, FETCH, CANCEL, API):
        expected.add((frozenset({"ssm:GetParameter"}), (f"{path}/*",)))
    if handler == API:
        expected.add((frozenset({"ssm:GetParametersByPath"}), (path, f"{path}/*")))
    assert ssm_grants == expected


@pytest.mark.parametrize("handler", [CONCLUDE, START_SCHEDULED])
def test_steps_that_never_meet_a_provider_cannot_read_secrets(synthesized: Synthesized, handler: str) -> None:
    actions = role_actions(synthesized, function_role(synthesized, handler))
    assert not {action for action in actions if action.startswith(("secretsmanager:", "kms:"))}


def test_only_the_state_machine_invokes_the_workflow_functions(synthesized: Synthesized) -> None:
    # given the five functions the ASL invokes
    machine_role = state_machine_role(synthesized)
    invoked = {function_id(synthesized, handler) for handler in WORKFLOW_HANDLERS}

    # then the state machine's role, and no other, may invoke each of them
    for function in invoked:
        assert grantees(synthesized, "lambda:InvokeFunction", function) == {machine_role}
    # and it may invoke exactly those, by unqualified ARN (no versions, no aliases, no wildcard)
    (invoke,) = [
        grant for grant in role_grants(synthesized, machine_role) if "lambda:InvokeFunction" in grant.actions
    ]
    assert invoke.actions == {"lambda:InvokeFunction"}
    assert sorted(invoke.resources, key=str) == sorted(
        ({"Fn::GetAtt": [function, "Arn"]} for function in invoked), key=str
    )


def test_only_conclude_the_api_and_the_sweep_put_events_on_the_bus(synthesized: Synthesized) -> None:
    # given the event bus
    bus, _ = synthesized.resource("AWS::Events::EventBus")
    # when every role allowed events:PutEvents is listed
    putters = [grant for grant in grants(synthesized) if "events:PutEvents" in grant.actions]
    # then it is the roles of those that announce from the job table's outbox (reportrelay.outbox):
    # conclude (a job's outcome), the API (a cancelled execution announces nothing itself, so the API
    # sends its Report Failed) and the announce-pending sweep; each on this bus only. The state machine
    # puts no events.
    assert sorted((grant.role, grant.resources) for grant in putters) == sorted(
        [
            (function_role(synthesized, CONCLUDE), ({"Fn::GetAtt": [bus, "Arn"]},)),
            (function_role(synthesized, API), ({"Fn::GetAtt": [bus, "Arn"]},)),
            (function_role(synthesized, ANNOUNCE_PENDING), ({"Fn::GetAtt": [bus, "Arn"]},)),
        ]
    )


def test_the_state_machine_role_does_only_invoke_log_delivery_tracing_continue_and_its_task(
    synthesized: Synthesized,
) -> None:
    role = state_machine_role(synthesized)
    actions = role_actions(synthesized, role)
    assert {a for a in actions if not a.startswith(("logs:", "xray:"))} == {
        "lambda:InvokeFunction",
        "states:StartExecution",  # ContinueAsNew: a job near the history limit goes on in a new execution
        # FetchInContainer, each scoped to this task (tests/infra/test_container.py)
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "iam:PassRole",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    }
    # and it may start executions of itself only: its own ARN, from its fixed name
    _, machine = synthesized.resource("AWS::StepFunctions::StateMachine")
    name = machine["Properties"]["StateMachineName"]
    (start,) = [grant for grant in role_grants(synthesized, role) if "states:StartExecution" in grant.actions]
    assert start.actions == {"states:StartExecution"}
    (arn,) = start.resources
    assert arn == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":states:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":stateMachine:{name}",
            ],
        ]
    }


def test_the_scheduler_starts_jobs_only_through_the_start_function(synthesized: Synthesized) -> None:
    # given the schedule's role and the start function's role
    _, schedule = next(iter(synthesized.resources("AWS::Scheduler::Schedule").items()))
    (scheduler_role,) = references(schedule["Properties"]["Target"]["RoleArn"])
    start_role = function_role(synthesized, START_SCHEDULED)
    start_function = function_id(synthesized, START_SCHEDULED)
    machine, _ = synthesized.resource("AWS::StepFunctions::StateMachine")

    dead_letters, _ = synthesized.resource("AWS::SQS::Queue")

    # then Scheduler may invoke that function and send what it cannot deliver to the dead-letter queue,
    # and nothing else
    assert [(g.actions, g.resources) for g in role_grants(synthesized, scheduler_role)] == [
        (frozenset({"lambda:InvokeFunction"}), ({"Fn::GetAtt": [start_function, "Arn"]},)),
        (frozenset({"sqs:SendMessage"}), ({"Fn::GetAtt": [dead_letters, "Arn"]},)),
    ]
    # and only Scheduler, from this account's schedule group, may assume that role
    trust = synthesized.template["Resources"][scheduler_role]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert set(statement["Condition"]["StringEquals"]) == {"aws:SourceAccount", "aws:SourceArn"}
    # and the function may start executions of this state machine, list them in the job table and
    # send a run it failed to the dead-letter queue
    assert role_actions(synthesized, start_role) == BASELINE | {
        "states:StartExecution",
        "dynamodb:UpdateItem",
        "sqs:SendMessage",
    }
    # and besides it, only the job API starts executions
    assert grantees(synthesized, "states:StartExecution", machine) == {
        start_role,
        function_role(synthesized, API),
    }


def test_no_role_is_granted_a_wildcard_action(synthesized: Synthesized, with_holder: Synthesized) -> None:
    for deployment in (synthesized, with_holder):
        wildcards = {a for grant in grants(deployment) for a in grant.actions if "*" in a}
        assert wildcards == set()


def test_a_kms_bucket_lets_fetch_encrypt_with_its_key_and_the_api_decrypt(hardened: Synthesized) -> None:
    # given the stack with reportrelay:bucketEncryption=kms
    key = key_described(hardened, "stored reports")
    # then fetch may generate data keys and decrypt (to complete multipart uploads) with that key only
    fetch_role = function_role(hardened, FETCH)
    kms_grants = [
        g for g in role_grants(hardened, fetch_role) if any(a.startswith("kms:") for a in g.actions)
    ]
    assert [(g.actions, g.resource_ids) for g in kms_grants] == [(frozenset(KMS_WRITE_ACTIONS), {key})]
    # and no other role may encrypt with it; only the job API may decrypt too (S3 decrypts with the
    # signer's rights when a presigned download is fetched)
    assert grantees(hardened, "kms:GenerateDataKey", key) == {fetch_role}
    assert grantees(hardened, "kms:Decrypt", key) == {fetch_role, function_role(hardened, API)}


def test_a_holding_provider_brings_a_holder_that_only_submit_may_start(with_holder: Synthesized) -> None:
    # given a connection whose provider holds its request open
    holder = function_id(with_holder, HOLD)
    submit = function_id(with_holder, SUBMIT)
    environment = with_holder.template["Resources"][submit]["Properties"]["Environment"]["Variables"]

    # then submit knows the holder and may invoke it (asynchronously), and no one else may
    assert references(environment["REPORTRELAY_HOLDER_FUNCTION"]) == {holder}
    assert grantees(with_holder, "lambda:InvokeFunction", holder) == {function_role(with_holder, SUBMIT)}
    # and a retried hold would generate the report twice, so Lambda never retries it
    (config,) = with_holder.resources("AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["MaximumRetryAttempts"] == 0
    # and the holder reads the connection's secret like the other provider steps
    assert role_actions(with_holder, function_role(with_holder, HOLD)) >= SECRET_READ


def test_sealed_handles_use_one_key_each_step_as_far_as_it_needs(with_holder: Synthesized) -> None:
    # given a provider that seals a session token into its handle
    key = key_described(with_holder, "provider handles")
    expected = {
        SUBMIT: {"kms:Encrypt"},  # seals the handle it creates
        CHECK: {"kms:Encrypt", "kms:Decrypt"},  # opens it, seals the updated one
        FETCH: {"kms:Decrypt"},
        HOLD: {"kms:Decrypt"},
        CANCEL: {"kms:Decrypt"},  # opens the handle to cancel what it names
        CONCLUDE: set(),
        START_SCHEDULED: set(),
        API: set(),  # the API never opens a handle: it asks cancel to
    }
    for handler, actions in expected.items():
        role = function_role(with_holder, handler)
        kms_grants = [
            g for g in role_grants(with_holder, role) if any(a.startswith("kms:") for a in g.actions)
        ]
        # then each step gets only the operations it performs, on that key, bound to a job
        assert {a for g in kms_grants for a in g.actions} == actions, handler
        for grant in kms_grants:
            assert grant.resource_ids == {key}
            assert grant.conditions == {"StringLike": {"kms:EncryptionContext:reportrelay:job": "*"}}
        function = with_holder.template["Resources"][function_id(with_holder, handler)]["Properties"]
        if actions:
            assert references(function["Environment"]["Variables"]["REPORTRELAY_HANDLE_KEY"]) == {key}
        else:
            assert "REPORTRELAY_HANDLE_KEY" not in function["Environment"]["Variables"], handler


def test_a_secret_given_by_complete_arn_is_granted_by_that_arn(with_holder: Synthesized) -> None:
    role = function_role(with_holder, SUBMIT)
    (secret_grant,) = [
        g for g in role_grants(with_holder, role) if "secretsmanager:GetSecretValue" in g.actions
    ]
    assert secret_grant.resources == (HOLDER_SECRET_ARN,)


def test_the_default_deployment_has_no_holder_and_no_handle_key(synthesized: Synthesized) -> None:
    # given only DevExpress connections, which neither hold requests nor seal handles
    handlers = {f["Properties"]["Handler"] for f in synthesized.resources("AWS::Lambda::Function").values()}
    # then neither the holder nor the handle key is deployed
    assert HOLD not in handlers
    assert not [
        key
        for key in synthesized.resources("AWS::KMS::Key").values()
        if "provider handles" in key["Properties"]["Description"]
    ]


def dynamodb_grants(synthesized: Synthesized, handler: str) -> set[tuple[frozenset[str], str]]:
    role = function_role(synthesized, handler)
    return {
        (grant.actions, table)
        for grant in role_grants(synthesized, role)
        if any(action.startswith("dynamodb:") for action in grant.actions)
        for table in grant.resource_ids
    }


@pytest.mark.parametrize("handler", [SUBMIT, CHECK, FETCH])
def test_provider_steps_may_only_put_claims_and_record_progress(
    synthesized: Synthesized, handler: str
) -> None:
    # given the claims table (which job owns which entry of a shared provider queue) and the job table
    table, _ = claims_table(synthesized)
    jobs, _ = job_table(synthesized)
    # then a provider step may make a claim (one conditional PutItem) on the claims table, and record the
    # job's progress (one conditional UpdateItem) in the job table, and nothing else
    expected = {table: {"dynamodb:PutItem"}, jobs: {"dynamodb:UpdateItem"}}
    if handler == SUBMIT:
        # Submit also looks for the slot handed to it, and whether anyone waits in line before it
        expected[table].add("dynamodb:GetItem")
    if handler == FETCH:
        # but Fetch, which also reads its job: the object key it fixed, the uploads it was completing
        expected[jobs].add("dynamodb:GetItem")
    if handler == SUBMIT:
        # and Submit, which reads how long the same report took the last times (its first wait)
        expected[jobs].add("dynamodb:GetItem")
    granted: dict[str, set[str]] = {}
    for actions, resource in dynamodb_grants(synthesized, handler):
        granted.setdefault(resource, set()).update(actions)
    assert granted == expected
    function = synthesized.template["Resources"][function_id(synthesized, handler)]["Properties"]
    assert references(function["Environment"]["Variables"]["REPORTRELAY_CLAIMS_TABLE"]) == {table}


def test_the_conclude_step_may_only_release_claims(synthesized: Synthesized) -> None:
    # given the claims table, which also holds the connections' concurrency slots
    table, _ = claims_table(synthesized)
    jobs, _ = job_table(synthesized)
    # then concluding a job may give its slot (or its place in line) back and hand slots to the line,
    # record the outcome and read back what waits in its outbox
    assert dynamodb_grants(synthesized, CONCLUDE) == {
        (LINE, table),
        (frozenset({"dynamodb:UpdateItem", "dynamodb:GetItem"}), jobs),
    }


def test_cancel_may_put_claims_like_check_and_read_jobs(synthesized: Synthesized) -> None:
    # given the cancel function, which opens the provider as check does (claims included) and reads the
    # job's sealed handle from the job table
    table, _ = claims_table(synthesized)
    jobs, _ = job_table(synthesized)
    # then it may make a claim, give the stopped job's slot or place in line back and hand slots to the
    # line, and read one job, and nothing else: it records nothing
    assert dynamodb_grants(synthesized, CANCEL) == {
        (LINE, table),
        (frozenset({"dynamodb:GetItem"}), jobs),
    }
    # and beyond that it may read the connection and its secret, abort the job's open upload and tell the
    # next job in line its slot: no other S3 action, no executions, no events
    assert role_actions(synthesized, function_role(synthesized, CANCEL)) == BASELINE | SECRET_READ | LINE | {
        "ssm:GetParameter",
        "states:SendTaskSuccess",
        "s3:AbortMultipartUpload",
    }


def test_only_the_api_may_invoke_cancel_and_it_may_invoke_nothing_else(synthesized: Synthesized) -> None:
    # given the cancel function
    cancel = function_id(synthesized, CANCEL)
    api_role = function_role(synthesized, API)
    # then the API function's role, and no other, may invoke it (the state machine does not)
    assert grantees(synthesized, "lambda:InvokeFunction", cancel) == {api_role}
    # and the API may invoke that one function, by its unqualified ARN, and no other
    (invoke,) = [g for g in role_grants(synthesized, api_role) if "lambda:InvokeFunction" in g.actions]
    assert (invoke.actions, invoke.resources) == (
        frozenset({"lambda:InvokeFunction"}),
        ({"Fn::GetAtt": [cancel, "Arn"]},),
    )


@pytest.mark.parametrize("handler", [START_SCHEDULED, API])
def test_other_functions_cannot_touch_the_claims(synthesized: Synthesized, handler: str) -> None:
    table, _ = claims_table(synthesized)
    assert not {grant for grant in dynamodb_grants(synthesized, handler) if grant[1] == table}


def test_the_scheduler_may_only_record_its_jobs_in_the_job_table(synthesized: Synthesized) -> None:
    jobs, _ = job_table(synthesized)
    assert dynamodb_grants(synthesized, START_SCHEDULED) == {(frozenset({"dynamodb:UpdateItem"}), jobs)}


def link_key_id(synthesized: Synthesized) -> str:
    (secret, _) = synthesized.resource("AWS::SecretsManager::Secret")
    return secret


def test_the_api_does_what_its_routes_do_and_nothing_more(synthesized: Synthesized) -> None:
    # given the job API's function
    role = function_role(synthesized, API)
    jobs, _ = job_table(synthesized)
    machine, _ = synthesized.resource("AWS::StepFunctions::StateMachine")
    bucket = bucket_id(synthesized)
    # then beyond the baseline it may: create, read and update jobs and query their indexes; start, stop
    # and describe executions; announce a cancellation; read reports (to presign GETs); ask the cancel
    # function to cancel at the provider; read its callers' IAM tags (their teams); read the link key; read
    # the connections (one, or all of them)
    assert role_actions(synthesized, role) == BASELINE | {
        "ssm:GetParameter",
        "ssm:GetParametersByPath",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "states:StartExecution",
        "states:StopExecution",
        "states:DescribeExecution",
        "events:PutEvents",
        "s3:GetObject",
        "lambda:InvokeFunction",
        "iam:ListRoleTags",
        "iam:ListUserTags",
        "secretsmanager:GetSecretValue",
    }
    # and on its own resources only: the job table (and its indexes), this state machine, the reports
    by_action = {action: grant for grant in role_grants(synthesized, role) for action in grant.actions}
    assert by_action["dynamodb:PutItem"].resource_ids == {jobs}
    assert by_action["dynamodb:Query"].resources == (
        {"Fn::Join": ["", [{"Fn::GetAtt": [jobs, "Arn"]}, "/index/*"]]},
    )
    assert by_action["states:StartExecution"].resource_ids == {machine}
    assert by_action["s3:GetObject"].resources == (
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]},
    )
    # and the tags of this account's roles and users, nothing else of IAM
    for action, kind in (("iam:ListRoleTags", "role"), ("iam:ListUserTags", "user")):
        assert by_action[action].actions == {action}
        (resource,) = by_action[action].resources
        assert resource == {
            "Fn::Join": [
                "",
                ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, f":{kind}/*"],
            ]
        }
    # and it can neither write nor delete reports
    assert not {a for a in role_actions(synthesized, role) if a.startswith(("s3:Put", "s3:Delete"))}


def test_the_api_can_read_no_vendor_secret_and_open_no_handle(
    synthesized: Synthesized, with_holder: Synthesized, with_rotation: Synthesized
) -> None:
    for deployment in (synthesized, with_holder, with_rotation):
        role = function_role(deployment, API)
        secret_grants = [
            grant
            for grant in role_grants(deployment, role)
            if any(action.startswith("secretsmanager:") for action in grant.actions)
        ]
        # given any deployment / then the API function may read one secret, the share-link key, which the
        # stack creates; no connection's secret, by name or ARN, and it may write none
        assert [(grant.actions, grant.resources) for grant in secret_grants] == [
            (frozenset({"secretsmanager:GetSecretValue"}), ({"Ref": link_key_id(deployment)},))
        ]
        # and no KMS right on the handle key (with_holder has one): it cannot open a sealed handle
        kms = {a for a in role_actions(deployment, role) if a.startswith("kms:")}
        assert kms == set(), deployment.stack_name
        # and its environment does not name the handle key
        assert "REPORTRELAY_HANDLE_KEY" not in environment(deployment, API)


def test_the_link_key_is_generated_and_only_the_api_reads_it(synthesized: Synthesized) -> None:
    # given the share-link key
    secret = link_key_id(synthesized)
    properties = synthesized.template["Resources"][secret]["Properties"]
    # then Secrets Manager generates it (64 characters), so it is in no template, and no other role reads it
    assert properties["GenerateSecretString"]["PasswordLength"] == 64
    assert "SecretString" not in properties
    assert grantees(synthesized, "secretsmanager:GetSecretValue", secret) == {function_role(synthesized, API)}
    assert environment(synthesized, API)["REPORTRELAY_LINK_KEY_SECRET"] == {"Ref": secret}


@pytest.mark.parametrize("handler", [SUBMIT, CHECK, FETCH, CANCEL])
def test_a_rotating_refresh_token_may_be_written_back_to_its_own_secret_only(
    with_rotation: Synthesized, synthesized: Synthesized, handler: str
) -> None:
    # given a refresh-token connection whose login host may rotate the token (reportrelay.auth)
    grants = role_grants(with_rotation, function_role(with_rotation, handler))
    writes = [grant for grant in grants if "secretsmanager:PutSecretValue" in grant.actions]
    # then every function that signs in (the steps, and cancel at the provider) may put a new value
    # into the refresh token's secret, nothing else of it
    (write,) = writes
    assert write.actions == frozenset({"secretsmanager:PutSecretValue"})
    (resource,) = write.resources
    assert resource["Fn::Join"][1][-1] == ":secret:reportrelay/calls-refresh-??????"
    # and a deployment without refresh tokens writes no secret at all
    default_actions = role_actions(synthesized, function_role(synthesized, handler))
    assert "secretsmanager:PutSecretValue" not in default_actions
