"""The job API: a REST API (AWS_IAM on every method), its function, and the job table it answers from.

``JobApi`` is the one construct the stack adds for it. It holds:

- ``JobTable``: the DynamoDB table of jobs (layout in ``reportrelay.jobs``). The workflow's steps record
  progress in it (``grant_record``), the scheduler records the jobs it starts, and the conclude step
  records outcomes and links its events to the download route.
- API Gateway (REST, regional) in front of ``reportrelay.handlers.api``, with request validation, JSON
  access logs, stage throttling, X-Ray, and gateway errors in the API's own ``{"code", "message"}``
  shape; its function's role is granted exactly what the routes do.

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
from constructs import Construct

from infra import constants
from infra.configuration import DeployedConnections
from infra.events import ReportEvents
from infra.functions import python_function
from infra.nag import acknowledge
from infra.schedules import ReportSchedules
from infra.settings import Settings
from infra.storage import ReportStorage
from infra.workflow import CHECK, CONCLUDE, FETCH, SUBMIT, Workflow
from reportrelay import jobs

STAGE_NAME = "v1"
ENV_API_URL = "REPORTRELAY_API_URL"
ENV_EVENT_BUS = "REPORTRELAY_EVENT_BUS"
ENV_DOWNLOAD_URL_SECONDS = "REPORTRELAY_DOWNLOAD_URL_SECONDS"
# The workflow steps that record progress in the job table (reportrelay.workflow.records_progress);
# Conclude records the outcome and is configured apart, Hold records nothing.
RECORDING_STEPS = (SUBMIT.name, CHECK.name, FETCH.name)
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
            partition_key=dynamodb.Attribute(name=jobs.KEY_ATTRIBUTE, type=string),
            time_to_live_attribute=jobs.TTL_ATTRIBUTE,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The jobs' history outlives a deployment mistake; items expire by themselves (TTL).
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index, partition in jobs.INDEXES.items():
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=partition, type=string),
                sort_key=dynamodb.Attribute(name=jobs.CREATED_ATTRIBUTE, type=string),
                projection_type=dynamodb.ProjectionType.ALL,
            )

    def grant_record(self, function: lambda_.Function) -> None:
        """For the workflow's steps and the scheduler: update job items (a conditional UpdateItem only)."""
        function.add_environment(jobs.JOBS_TABLE_ENV, self.table.table_name)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[self.table.table_arn])
        )

    def grant_api(self, function: lambda_.Function) -> None:
        """For the API: create jobs and tokens (a transaction of conditional puts), read, update, list."""
        function.add_environment(jobs.JOBS_TABLE_ENV, self.table.table_name)
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
            "The listing queries the job table's two indexes (recent, by-connection), and only those: "
            "'index/*' names the indexes of this one table.",
        )


class JobApi(Construct):
    """POST/GET /reports, GET/DELETE /reports/{job_id}, GET /reports/{job_id}/download; AWS_IAM on each.

    Also the job table the API answers from, and the workflow's (and scheduler's) right to record jobs
    in it: everything the job API adds to the stack, in one construct.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        code: lambda_.Code,
        connections: DeployedConnections,
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
            deploy_options=self._stage_options(settings),
        )
        # The stack's ApiUrl output names the URL; RestApi's own auto-named output would repeat it.
        self.api.node.try_remove_child("Endpoint")
        self.url = (
            f"https://{self.api.rest_api_id}.execute-api.{Stack.of(self).region}."
            f"{Stack.of(self).url_suffix}/{STAGE_NAME}"
        )
        self.function = self._build_function(settings, code, workflow, storage, events, connections)
        self.function.add_environment(ENV_DOWNLOAD_URL_SECONDS, str(settings.download_url_seconds))
        self._build_routes()
        self._build_gateway_responses()
        self._acknowledge()
        self._configure_conclude(workflow.functions[CONCLUDE.name])

    def _configure_conclude(self, conclude: lambda_.Function) -> None:
        """The conclude step links events to the download route, and records outcomes in the job table.

        The URL is built from the RestApi's id, not its deployment: conclude -> RestApi only, so there is
        no cycle through the API function (which knows the state machine, which invokes conclude).
        """
        conclude.add_environment(ENV_API_URL, self.url)
        self.job_table.grant_record(conclude)

    # ---- the function

    def _build_function(
        self,
        settings: Settings,
        code: lambda_.Code,
        workflow: Workflow,
        storage: ReportStorage,
        events: ReportEvents,
        connections: DeployedConnections,
    ) -> lambda_.Function:
        state_machine, bucket, bucket_key = workflow.state_machine, storage.bucket, storage.key
        environment = {
            constants.ENV_CONNECTIONS: connections.env_value(),
            constants.ENV_STATE_MACHINE_ARN: state_machine.state_machine_arn,
            ENV_EVENT_BUS: events.bus.event_bus_name,
            ENV_API_URL: self.url,
        }
        if workflow.handle_key is not None:
            environment[constants.ENV_HANDLE_KEY] = workflow.handle_key.key_arn
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
            "Report keys are '<key prefix><job id>/<file name>', chosen per job; the download route reads "
            "(and presigns GETs for) any report of this bucket, and of no other.",
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
        # Cancelling at the provider signs in with the connection's credentials and opens sealed handles.
        workflow.grant_connection_secrets(function)
        workflow.grant_handle_key(function, encrypt=False, decrypt=True)
        return function

    # ---- API Gateway

    def _stage_options(self, settings: Settings) -> apigw.StageOptions:
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=settings.log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        return apigw.StageOptions(
            stage_name=STAGE_NAME,
            access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
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

    def _build_routes(self) -> None:
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        request_model = self.api.add_model(
            "JobRequest", content_type="application/json", schema=_REQUEST_MODEL
        )
        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False)
        reports = self.api.root.add_resource("reports")
        reports.add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": request_model},
            request_parameters={"method.request.header.Idempotency-Key": False},
        )
        reports.add_method(
            "GET",
            integration,
            request_validator=validator,
            request_parameters={
                f"method.request.querystring.{name}": False
                for name in ("connection", "state", "limit", "cursor")
            },
        )
        job = reports.add_resource("{job_id}")
        for method in ("GET", "DELETE"):
            job.add_method(method, integration, request_validator=validator)
        job.add_resource("download").add_method("GET", integration, request_validator=validator)

    def _build_gateway_responses(self) -> None:
        for kind, template in (
            (apigw.ResponseType.DEFAULT_4_XX, _ERROR_TEMPLATE),
            (apigw.ResponseType.DEFAULT_5_XX, _ERROR_TEMPLATE),
            (apigw.ResponseType.BAD_REQUEST_BODY, _INVALID_TEMPLATE),
            (apigw.ResponseType.BAD_REQUEST_PARAMETERS, _INVALID_TEMPLATE),
        ):
            self.api.add_gateway_response(
                f"Gateway{kind.response_type.replace('_', '')}",
                type=kind,
                templates={"application/json": template},
            )

    def _acknowledge(self) -> None:
        acknowledge(
            self.api,
            "AwsSolutions-APIG3",
            "Every method requires AWS_IAM (SigV4) authorization and the stage is throttled; the API is for "
            "IAM principals of this account, so a WAF web ACL would add cost without a threat to stop.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-COG4",
            "Callers are IAM principals (services, CI, operators with SSO roles), authorized with AWS_IAM on "
            "every method; there are no Cognito user pools in this system.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role (execution logging at ERROR) uses the AWS managed "
            "policy made for exactly that; it is the documented way to let API Gateway write its logs.",
        )


def _logical_id(construct: Construct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag names it in findings."""
    resource = construct.node.default_child
    assert resource is not None, construct.node.path
    return str(Stack.of(construct).resolve(resource.logical_id))  # type: ignore[attr-defined]
