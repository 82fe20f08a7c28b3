"""The job API: a REST API (AWS_IAM on every method), its function, and the job table it answers from.

``JobApi`` is the one construct the stack adds for it. It holds:

- ``JobTable``: the DynamoDB table of jobs (layout in ``reportrelay.jobs``), with an index per listing
  (``recent``, ``by-connection``, ``by-team``) and the sparse ``outbox`` index of outcomes whose event
  waits to be announced (``infra.announcements`` sweeps it). The workflow's steps record progress in it
  (``grant_record``), the scheduler records the jobs it starts, the conclude step records outcomes and
  links its events to the download route, and the cancel function reads a job's sealed handle.
- API Gateway (REST, regional) in front of ``reportrelay.handlers.api``, with request validation, JSON
  access logs, stage throttling, X-Ray, and gateway errors in the API's own ``{"code", "message"}``
  shape; by setting, a resource policy admitting only principals of listed accounts or an organization.
- The API function, granted exactly what the routes do and no more: it holds no vendor credential and
  cannot open sealed handles (cancelling at the provider is the workflow's cancel function, which it
  may invoke), it reads the callers' IAM tags (their teams) and the share-link key.

The people API (``infra.people``) routes to the same function; its routes are built by the same
``add_job_routes``.

``JobApi.url`` is built from the RestApi's id and the stage name, not from its deployment, so the
workflow's conclude function can link to ``/reports/{id}/download`` without a dependency cycle
(conclude -> API -> API function -> state machine -> conclude).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.configuration import DeployedAccess
from infra.connections import ConnectionParameters
from infra.events import ReportEvents
from infra.functions import python_function
from infra.nag import acknowledge
from infra.schedules import ReportSchedules
from infra.settings import Settings
from infra.storage import ReportStorage
from infra.workflow import CHECK, CONCLUDE, FETCH, SUBMIT, WAIT_FOR_SLOT, Workflow
from reportrelay import names

STAGE_NAME = "v1"
LINK_KEY_LENGTH = 64
# (method, path) of every route the job API's function answers on the IAM API; the people API has them
# too, plus the routes a browser needs (infra.people.PEOPLE_ONLY_ROUTES).
JOB_ROUTES = (
    ("POST", "/reports"),
    ("GET", "/reports"),
    ("GET", "/reports/{job_id}"),
    ("GET", "/reports/{job_id}/events"),
    ("DELETE", "/reports/{job_id}"),
    ("GET", "/reports/{job_id}/download"),
    ("POST", "/reports/{job_id}/links"),
    ("DELETE", "/reports/{job_id}/links/{link_id}"),
)
# The web console's pages, forms and files (reportrelay.console): on the people API only, where people
# sign in; the function answers them as HTML.
CONSOLE_ROUTES = (
    ("GET", "/console"),
    ("GET", "/console/reports/{job_id}"),
    ("POST", "/console/reports"),
    ("POST", "/console/reports/{job_id}/cancel"),
    ("POST", "/console/reports/{job_id}/rerun"),
    ("GET", "/console/static/{name}"),
)
# The workflow steps that record progress in the job table (reportrelay.workflow.records_progress), and
# WaitForSlot its place in line; Conclude records the outcome and is configured apart, Hold records nothing.
RECORDING_STEPS = (SUBMIT.name, CHECK.name, FETCH.name, WAIT_FOR_SLOT.name)
# The job request, roughly (API Gateway speaks JSON Schema draft 4); the function checks it fully.
_REQUEST_MODEL = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="JobRequest",
    type=apigw.JsonSchemaType.OBJECT,
    required=["connection", "report", "format"],
    properties={
        "connection": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=128),
        "report": apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT),
        "format": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=32),
    },
)
# Gateway errors (throttling, bad bodies, IAM refusals) in the API's ApiError shape: {"code", "message"}.
_ERROR_TEMPLATE = '{"code": "$context.error.responseType", "message": $context.error.messageString}'
# A body or parameter API Gateway's own validation refuses: the message is the validator's detail, which
# names the field (e.g. 'object has missing required properties (["format"])'), as the function's 400s do.
_INVALID_TEMPLATE = '{"code": "BadRequest", "message": $context.error.validationErrorString}'


class JobTable(Construct):
    """Jobs by id, with the ``recent`` and ``by-connection`` indexes the listing reads; items expire."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        string = dynamodb.AttributeType.STRING
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=names.JOB_KEY_ATTRIBUTE, type=string),
            time_to_live_attribute=names.JOB_TTL_ATTRIBUTE,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The jobs' history outlives a deployment mistake; items expire by themselves (TTL).
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index, partition in names.JOB_INDEXES.items():
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=partition, type=string),
                sort_key=dynamodb.Attribute(name=names.JOB_CREATED_ATTRIBUTE, type=string),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        # Sparse: only jobs whose outcome waits to be announced (reportrelay.outbox) are in it.
        self.table.add_global_secondary_index(
            index_name=names.OUTBOX_INDEX,
            partition_key=dynamodb.Attribute(name=names.OUTBOX_ATTRIBUTE, type=string),
            sort_key=dynamodb.Attribute(name=names.ANNOUNCE_SINCE_ATTRIBUTE, type=string),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(names.OUTBOX_PROJECTED),
        )

    @property
    def outbox_index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{names.OUTBOX_INDEX}"

    def grant_record(self, function: lambda_.Function) -> None:
        """For the workflow's steps and the scheduler: update job items (a conditional UpdateItem only)."""
        function.add_environment(names.JOBS_TABLE_ENV, self.table.table_name)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[self.table.table_arn])
        )

    def grant_read(self, function: lambda_.Function) -> None:
        """Read one item by its key (a job: its sealed handle, its object key; a report's durations)."""
        function.add_environment(names.JOBS_TABLE_ENV, self.table.table_name)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[self.table.table_arn])
        )

    def grant_sweep(self, function: lambda_.Function) -> None:
        """For the announce-pending function: query the outbox index, and update a job's announcement."""
        function.add_environment(names.JOBS_TABLE_ENV, self.table.table_name)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[self.outbox_index_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[self.table.table_arn])
        )

    def grant_api(self, function: lambda_.Function) -> None:
        """For the API: create jobs and tokens (a transaction of conditional puts), read, update, list."""
        function.add_environment(names.JOBS_TABLE_ENV, self.table.table_name)
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[f"{self.table.table_arn}/index/*"])
        )
        acknowledge(
            function.role,  # type: ignore[arg-type]
            f"AwsSolutions-IAM5[Resource::<{_logical_id(self.table)}.Arn>/index/*]",
            f"The listing queries the job table's indexes ({', '.join(names.JOB_INDEXES)}), and only those: "
            "'index/*' names the indexes of this one table.",
        )


class JobApi(Construct):
    """The routes of ``JOB_ROUTES``, AWS_IAM on each.

    Also the job table the API answers from, the workflow's (and scheduler's) right to record jobs in it,
    and the share-link key: everything the job API adds to the stack, in one construct.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        code: lambda_.Code,
        parameters: ConnectionParameters,
        access: DeployedAccess,
        storage: ReportStorage,
        events: ReportEvents,
        workflow: Workflow,
        schedules: ReportSchedules | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.job_table = JobTable(self, "Jobs")
        for name in RECORDING_STEPS:
            self.job_table.grant_record(workflow.functions[name])
        if schedules is not None:
            self.job_table.grant_record(schedules.function)
        self.job_table.grant_read(workflow.canceller)
        # Fetch reads its job's fixed object key and the uploads it was completing (reportrelay.workflow);
        # Submit reads how long the same report took the last times (reportrelay.poll_policy).
        self.job_table.grant_read(workflow.functions["Fetch"])
        self.job_table.grant_read(workflow.functions["Submit"])
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=settings.log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{settings.stack_name}-jobs",
            description="reportrelay: start, watch, download and cancel report jobs (docs/openapi.json)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy=True,
            deploy_options=stage_options(settings, self.access_logs),
            policy=_resource_policy(settings),
        )
        # The stack's ApiUrl output names the URL; RestApi's own auto-named output would repeat it.
        self.api.node.try_remove_child("Endpoint")
        self.url = (
            f"https://{self.api.rest_api_id}.execute-api.{Stack.of(self).region}."
            f"{Stack.of(self).url_suffix}/{STAGE_NAME}"
        )
        self.link_key = self._build_link_key()
        self.function = self._build_function(settings, code, workflow, storage, events, parameters)
        self.function.add_environment(names.DOWNLOAD_URL_SECONDS_ENV, str(settings.download_url_seconds))
        self.function.add_environment(names.ACCESS_ENV, access.env_value())
        self._grant_cancel(workflow.canceller)
        self._grant_link_key()
        self._grant_principal_tags()
        add_job_routes(self.api, self.function)
        add_gateway_responses(self.api)
        self._acknowledge()
        self._configure_conclude(workflow.functions[CONCLUDE.name])

    def _configure_conclude(self, conclude: lambda_.Function) -> None:
        """The conclude step links events to the download route, and records outcomes in the job table.

        The URL is built from the RestApi's id, not its deployment: conclude -> RestApi only, so there is
        no cycle through the API function (which knows the state machine, which invokes conclude).
        """
        conclude.add_environment(names.API_URL_ENV, self.url)
        self.job_table.grant_record(conclude)
        # Run again after it recorded the outcome, it reads what still waits in the job's outbox.
        self.job_table.grant_read(conclude)

    # ---- the function

    def _build_function(
        self,
        settings: Settings,
        code: lambda_.Code,
        workflow: Workflow,
        storage: ReportStorage,
        events: ReportEvents,
        parameters: ConnectionParameters,
    ) -> lambda_.Function:
        state_machine, bucket, bucket_key = workflow.state_machine, storage.bucket, storage.key
        environment = {
            **parameters.environment(),
            names.STATE_MACHINE_ARN_ENV: state_machine.state_machine_arn,
            names.EVENT_BUS_ENV: events.bus.event_bus_name,
            names.API_URL_ENV: self.url,
        }
        function = python_function(
            self,
            "ApiFunction",
            code=code,
            handler="reportrelay.handlers.api.handler",
            description="reportrelay: the job API (start, watch, download, cancel)",
            timeout=Duration.seconds(29),  # API Gateway's integration timeout
            memory_size=512,
            settings=settings,
            environment=environment,
        )
        self.job_table.grant_api(function)
        # It reads the connection a request names, and lists them all to name the caller's own.
        parameters.grant_read(function, list_all=True)
        state_machine.grant_start_execution(function)
        state_machine.grant_execution(function, "states:StopExecution", "states:DescribeExecution")
        events.grant_put_events(function)  # Report Failed (Cancelled): a stopped execution announces nothing
        # Presigned GETs are signed with this role: it reads report objects (HeadObject is GetObject).
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects("*")])
        )
        acknowledge(
            function.role,  # type: ignore[arg-type]
            f"AwsSolutions-IAM5[Resource::<{_logical_id(bucket)}.Arn>/*]",
            "Report keys are '<team>/<key prefix><job id>/<file name>', chosen per job; the download route "
            "reads (and presigns GETs for) any report of this bucket, and of no other.",
        )
        machine = _logical_id(state_machine)
        acknowledge(
            function.role,  # type: ignore[arg-type]
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine}"}}]}}]}}:*]',
            "Cancelling stops (and describes) executions of this one state machine; execution names are job "
            "ids chosen at start, so the grant names the state machine's executions, not each execution.",
        )
        if bucket_key is not None:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[bucket_key.key_arn])
            )
        # No vendor secret and no handle key: cancelling at the provider is the cancel function's.
        return function

    def _grant_cancel(self, canceller: lambda_.Function) -> None:
        """The cancel route asks the workflow's cancel function (by name), the one function it may invoke."""
        self.function.add_environment(names.CANCEL_FUNCTION_ENV, canceller.function_name)
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[canceller.function_arn])
        )

    def _build_link_key(self) -> secretsmanager.Secret:
        """The key share links are signed with (reportrelay.links): generated once, never in the template."""
        secret = secretsmanager.Secret(
            self,
            "LinkKey",
            description="reportrelay: signs share links; replacing its value revokes every link at once",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=LINK_KEY_LENGTH, exclude_punctuation=True, include_space=False
            ),
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "The share-link key is not rotated on a schedule: a new value invalidates every live share link "
            "(docs/deploy.md). Rotating it by hand is the documented way to revoke all links at once.",
        )
        return secret

    def _grant_link_key(self) -> None:
        self.function.add_environment(names.LINK_KEY_SECRET_ENV, self.link_key.secret_arn)
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[self.link_key.secret_arn]
            )
        )

    def _grant_principal_tags(self) -> None:
        """Machine callers' teams may come from their IAM tags (reportrelay.access), read per caller."""
        stack = Stack.of(self)
        entities = {
            kind: stack.format_arn(service="iam", region="", resource=kind, resource_name="*")
            for kind in ("role", "user")
        }
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["iam:ListRoleTags"], resources=[entities["role"]])
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["iam:ListUserTags"], resources=[entities["user"]])
        )
        for kind in ("role", "user"):
            acknowledge(
                self.function.role,  # type: ignore[arg-type]
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:{kind}/*]",
                f"Any IAM {kind} of this account may call the API; its teams are its principal tag, read "
                f"with iam:List{kind.capitalize()}Tags on the caller (a read of tags only, nothing else).",
            )

    def _acknowledge(self) -> None:
        acknowledge(
            self.api,
            "AwsSolutions-APIG3",
            "Every method requires AWS_IAM (SigV4) authorization and the stage is throttled; the API is for "
            "IAM principals (of listed accounts, by setting), so a WAF web ACL would add cost, not safety.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-COG4",
            "This API is for machines: IAM principals (services, CI, operators with SSO roles), authorized "
            "with AWS_IAM on every method. People use the people API, whose function verifies their tokens.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role (execution logging at ERROR) uses the AWS managed "
            "policy made for exactly that; it is the documented way to let API Gateway write its logs.",
        )


def stage_options(settings: Settings, access_logs: logs.ILogGroup) -> apigw.StageOptions:
    """One stage, ``v1``, the same for both APIs: JSON access logs, errors logged, throttled, traced."""
    return apigw.StageOptions(
        stage_name=STAGE_NAME,
        access_log_destination=apigw.LogGroupLogDestination(access_logs),
        access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
            caller=True,
            http_method=True,
            ip=True,
            protocol=True,
            request_time=True,
            resource_path=True,
            response_length=True,
            status=True,
            user=True,
        ),
        logging_level=apigw.MethodLoggingLevel.ERROR,
        data_trace_enabled=False,  # would log request and response bodies
        metrics_enabled=True,
        tracing_enabled=True,
        throttling_rate_limit=settings.api_throttle_rate,
        throttling_burst_limit=settings.api_throttle_burst,
    )


def add_job_routes(
    api: apigw.RestApi, function: lambda_.IFunction, routes: tuple[tuple[str, str], ...] = JOB_ROUTES
) -> None:
    """``routes`` on ``api``, each a proxy to ``function``, with the request validated first."""
    validator = api.add_request_validator(
        "Validator", validate_request_body=True, validate_request_parameters=True
    )
    integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
    options: dict[tuple[str, str], dict[str, object]] = {
        ("GET", "/reports"): {
            "request_parameters": {
                f"method.request.querystring.{name}": False
                for name in ("connection", "state", "limit", "cursor")
            }
        },
        ("GET", "/reports/{job_id}/events"): {
            "request_parameters": {"method.request.querystring.after": False}
        },
        ("GET", "/console"): {
            "request_parameters": {
                f"method.request.querystring.{name}": False
                for name in ("state", "connection", "since", "until", "cursor")
            }
        },
    }
    if ("POST", "/reports") in routes:
        options[("POST", "/reports")] = {
            "request_models": {
                "application/json": api.add_model(
                    "JobRequest", content_type="application/json", schema=_REQUEST_MODEL
                )
            },
            "request_parameters": {"method.request.header.Idempotency-Key": False},
        }
    for method, path in routes:
        api.root.resource_for_path(path).add_method(
            method, integration, request_validator=validator, **options.get((method, path), {})
        )


def add_gateway_responses(api: apigw.RestApi) -> None:
    """API Gateway's own answers (throttling, bad bodies, refusals) in the API's ``{"code", "message"}``."""
    for kind, template in (
        (apigw.ResponseType.DEFAULT_4_XX, _ERROR_TEMPLATE),
        (apigw.ResponseType.DEFAULT_5_XX, _ERROR_TEMPLATE),
        (apigw.ResponseType.BAD_REQUEST_BODY, _INVALID_TEMPLATE),
        (apigw.ResponseType.BAD_REQUEST_PARAMETERS, _INVALID_TEMPLATE),
    ):
        api.add_gateway_response(
            f"Gateway{kind.response_type.replace('_', '')}",
            type=kind,
            templates={"application/json": template},
        )


def _resource_policy(settings: Settings) -> iam.PolicyDocument | None:
    """By setting: only principals of the listed accounts, or of the organization, may invoke the API.

    An Allow per kind (account ids, organization) and one Deny for every principal that is neither: the
    Deny's conditions must all hold, so a principal matching either kind is let through.
    """
    if not settings.api_allowed_accounts and not settings.api_organization_id:
        return None
    invoke = "execute-api:Invoke"
    anyone = [iam.AnyPrincipal()]
    allowed: dict[str, dict[str, object]] = {}
    if settings.api_allowed_accounts:
        allowed["aws:PrincipalAccount"] = {"aws:PrincipalAccount": list(settings.api_allowed_accounts)}
    if settings.api_organization_id:
        allowed["aws:PrincipalOrgID"] = {"aws:PrincipalOrgID": settings.api_organization_id}
    statements = [
        iam.PolicyStatement(
            sid=f"Allow{key.split(':')[1]}",
            principals=anyone,
            actions=[invoke],
            resources=["execute-api:/*"],
            conditions={"StringEquals": condition},
        )
        for key, condition in allowed.items()
    ]
    not_allowed = {key: value for condition in allowed.values() for key, value in condition.items()}
    statements.append(
        iam.PolicyStatement(
            sid="DenyOthers",
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=[invoke],
            resources=["execute-api:/*"],
            conditions={"StringNotEquals": not_allowed},
        )
    )
    return iam.PolicyDocument(statements=statements)


def _logical_id(construct: Construct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag names it in findings."""
    resource = construct.node.default_child
    assert resource is not None, construct.node.path
    return str(Stack.of(construct).resolve(resource.logical_id))  # type: ignore[attr-defined]
