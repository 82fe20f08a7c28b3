"""People: the people API, and how people sign in to it (a Cognito user pool, or an external OIDC provider).

A browser cannot sign requests with SigV4, so people reach the job API's function through a second REST
API, the people API, with no authorization at the gateway: the function verifies every request itself
(bearer JWTs, the session cookie its sign-in flow sets, or a share link), with the same verifier the
local API uses in the tests. It has to be that way round: a signed-out person following a download link
must reach the function to be sent to sign in.

``PeopleAccess`` is the one construct the stack adds for it:

- the people API: the job API's routes (``infra.api.JOB_ROUTES``) plus ``GET /links/{token}`` (a share
  link), ``GET /auth/callback`` (the end of sign-in) and the web console (``infra.api.CONSOLE_ROUTES``),
  each a proxy to the API function; the same stage (``v1``), throttling, access logs and tracing as the
  IAM API. With ``peopleSignIn=none`` it serves share links only.
- with ``peopleSignIn=cognito`` (the default): a user pool (no self sign-up, e-mail sign-in, MFA, strong
  passwords), its hosted domain, a public app client (authorization code with PKCE; openid, email,
  profile; back to ``<people url>/auth/callback``) and one group per team;
- the API function's OIDC settings (``REPORTRELAY_OIDC_*``, read by ``reportrelay.people``) and
  ``REPORTRELAY_PEOPLE_URL``, on conclude too, so a ``Report Ready`` event links to the people API.

The URL is built from the RestApi's id, as ``JobApi.url`` is, so nothing depends on the deployment and
there is no cycle (client -> RestApi; function -> client; methods -> function).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from infra.api import (
    CONSOLE_ROUTES,
    JOB_ROUTES,
    STAGE_NAME,
    add_gateway_responses,
    add_job_routes,
    stage_options,
)
from infra.configuration import DeployedAccess
from infra.nag import acknowledge
from infra.settings import PREFIX, Settings, SettingsError
from reportrelay import names

CALLBACK_PATH = "/auth/callback"
SHARE_LINK_ROUTE = ("GET", "/links/{token}")
PEOPLE_ONLY_ROUTES = (SHARE_LINK_ROUTE, ("GET", CALLBACK_PATH))
SCOPES = (cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE)


def people_routes(settings: Settings) -> tuple[tuple[str, str], ...]:
    """Everything a signed-in person can do; without sign-in, only opening share links."""
    if settings.people_sign_in == "none":
        return (SHARE_LINK_ROUTE,)
    return (*JOB_ROUTES, *PEOPLE_ONLY_ROUTES, *CONSOLE_ROUTES)


class PeopleAccess(Construct):
    """The people API in front of the API function, and (by setting) the user pool people sign in with."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        access: DeployedAccess,
        teams: Iterable[str],
        function: lambda_.Function,
        conclude: lambda_.Function,
        after: IConstruct | None = None,
    ) -> None:
        """``after``: API Gateway's account settings (the IAM API's CloudWatch role) the stage logs with."""
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=settings.log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{settings.stack_name}-people",
            description="reportrelay: the job API for people (sign-in, download links, share links)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The function verifies every caller (docstring above); the gateway lets requests through.
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.NONE),
            cloud_watch_role=False,  # the account's API Gateway logging role comes with the IAM API
            deploy=True,
            deploy_options=stage_options(settings, self.access_logs),
        )
        self.api.node.try_remove_child("Endpoint")  # the stack's PeopleUrl output names it
        if after is not None:
            self.api.deployment_stage.node.add_dependency(after)
        self.url = (
            f"https://{self.api.rest_api_id}.execute-api.{Stack.of(self).region}."
            f"{Stack.of(self).url_suffix}/{STAGE_NAME}"
        )
        add_job_routes(self.api, function, people_routes(settings))
        add_gateway_responses(self.api)
        self._acknowledge()

        function.add_environment(names.PEOPLE_URL_ENV, self.url)
        self.user_pool: cognito.UserPool | None = None
        if settings.people_sign_in == "none":
            return  # events keep linking to the IAM API's download route: people cannot sign in here
        conclude.add_environment(names.PEOPLE_URL_ENV, self.url)
        if settings.people_sign_in == "cognito":
            pool = CognitoSignIn(
                self,
                "SignIn",
                settings=settings,
                callback_url=f"{self.url}{CALLBACK_PATH}",
                groups={f"{access.group_prefix}{team}": team for team in sorted(set(teams))},
            )
            self.user_pool = pool.user_pool
            environment = pool.environment
        else:
            environment = external_environment(settings)
        for name, value in environment.items():
            function.add_environment(name, value)

    def _acknowledge(self) -> None:
        reason = (
            "People's browsers cannot sign requests, and a signed-out person following a download link "
            "must reach the function to be sent to sign in; so the gateway authorizes nothing and the API "
            "function verifies every request (bearer JWT, session cookie or share link) with one verifier."
        )
        acknowledge(self.api, "AwsSolutions-APIG4", reason)
        acknowledge(self.api, "AwsSolutions-COG4", reason)
        acknowledge(
            self.api,
            "AwsSolutions-APIG3",
            "The stage is throttled and every request is verified by the function before it does anything; "
            "a WAF web ACL may be attached by the operator, it is not part of the stack (docs/deploy.md).",
        )


class CognitoSignIn(Construct):
    """A user pool for the people of this deployment, its hosted sign-in and the one app client."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        callback_url: str,
        groups: Mapping[str, str],
    ) -> None:
        """``groups``: group name -> the team its members act for (names carry the policy's group_prefix)."""
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"{settings.stack_name}-people",
            self_sign_up_enabled=False,  # an administrator invites people (docs/deploy.md)
            sign_in_aliases=cognito.SignInAliases(email=True, username=False),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.ESSENTIALS,
            deletion_protection=True,
            # The people and their MFA devices outlive a deployment mistake.
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG8",
            "The Plus plan's threat protection is billed per monthly active user; this pool admits only "
            "people an administrator invites, requires MFA (TOTP) and 14-character passwords. Raise the "
            "feature plan in the console if your policy requires it.",
        )
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=domain_prefix(settings)),
        )
        self.client = self.user_pool.add_client(
            "PeopleClient",
            user_pool_client_name=f"{settings.stack_name}-people",
            generate_secret=False,  # a public client: the code exchange is bound by PKCE
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True, implicit_code_grant=False),
                scopes=list(SCOPES),
                callback_urls=[callback_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(12),
        )
        # Sign-in happens on the hosted pages only: no password, SRP or custom flow through the API.
        client = self.client.node.default_child
        assert isinstance(client, cognito.CfnUserPoolClient)
        client.explicit_auth_flows = ["ALLOW_REFRESH_TOKEN_AUTH"]
        self.groups = [
            cognito.UserPoolGroup(
                self,
                f"Group-{team}",
                user_pool=self.user_pool,
                group_name=name,
                description=f"reportrelay: members act for team {team}",
            )
            for name, team in groups.items()
        ]
        stack = Stack.of(self)
        issuer = f"https://cognito-idp.{stack.region}.{stack.url_suffix}/{self.user_pool.user_pool_id}"
        hosted = self.domain.base_url()
        self.environment = {
            names.OIDC_ISSUER_ENV: issuer,
            names.OIDC_CLIENT_ID_ENV: self.client.user_pool_client_id,
            names.OIDC_JWKS_URL_ENV: f"{issuer}/.well-known/jwks.json",
            names.OIDC_AUTHORIZATION_URL_ENV: f"{hosted}/oauth2/authorize",
            names.OIDC_TOKEN_URL_ENV: f"{hosted}/oauth2/token",
        }


def domain_prefix(settings: Settings) -> str:
    """The hosted domain's prefix: the setting, or ``<stack name>-<account id>`` (unique per region)."""
    if settings.cognito_domain_prefix:
        return settings.cognito_domain_prefix
    name = re.sub(r"[^a-z0-9-]+", "-", settings.stack_name.lower()).strip("-")[:50] or "reportrelay"
    if any(word in name for word in ("aws", "amazon", "cognito")):
        raise SettingsError(
            f"the stack name {settings.stack_name!r} cannot prefix a Cognito domain (it may not contain "
            f"'aws', 'amazon' or 'cognito'): set {PREFIX}cognitoDomainPrefix"
        )
    return f"{name}-{Aws.ACCOUNT_ID}"


def external_environment(settings: Settings) -> dict[str, str]:
    """The external identity provider, as set (``Settings`` checked that the required ones are)."""
    assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_jwks
    assert settings.oidc_authorization_url and settings.oidc_token_url
    return {
        names.OIDC_ISSUER_ENV: settings.oidc_issuer.rstrip("/"),
        names.OIDC_CLIENT_ID_ENV: settings.oidc_client_id,
        names.OIDC_JWKS_URL_ENV: settings.oidc_jwks,
        names.OIDC_AUTHORIZATION_URL_ENV: settings.oidc_authorization_url,
        names.OIDC_TOKEN_URL_ENV: settings.oidc_token_url,
    }
