"""People in the stack: the people API in front of the API function, and how people sign in to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import constants
from infra.api import CONSOLE_ROUTES, JOB_ROUTES, STAGE_NAME
from infra.configuration import ConfigError, load_access
from infra.people import domain_prefix
from infra.settings import Settings, SettingsError
from tests.infra.conftest import (
    OIDC_ISSUER,
    OIDC_SETTINGS,
    Synthesized,
    environment,
    references,
    rest_api,
    routes,
)
from tests.infra.policies import function_id

API = "reportrelay.handlers.api.handler"
CONCLUDE = "reportrelay.handlers.conclude.handler"
BROWSER_ROUTES = {("GET", "/links/{token}"), ("GET", "/auth/callback"), *CONSOLE_ROUTES}
OIDC_ENV = (
    "REPORTRELAY_OIDC_ISSUER",
    "REPORTRELAY_OIDC_CLIENT_ID",
    "REPORTRELAY_OIDC_JWKS_URL",
    "REPORTRELAY_OIDC_AUTHORIZATION_URL",
    "REPORTRELAY_OIDC_TOKEN_URL",
)


def joined(value: Any) -> list[Any]:
    """The parts of an ``Fn::Join`` with the empty separator."""
    separator, parts = value["Fn::Join"]
    assert separator == ""
    return list(parts)


def test_the_people_api_has_the_job_routes_and_the_browser_routes(synthesized: Synthesized) -> None:
    # given the people API's deployed methods
    deployed = routes(synthesized, "people")
    # then it answers every job route, and opening share links, and the end of sign-in
    assert set(deployed) == set(JOB_ROUTES) | BROWSER_ROUTES
    # and the gateway authorizes none of them: the API function verifies every caller itself (a browser
    # cannot sign, and a signed-out one must reach the function to be sent to sign in)
    for method in deployed.values():
        assert method["AuthorizationType"] == "NONE"
        assert method["RequestValidatorId"]
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert function_id(synthesized, API) in references(integration["Uri"])


def test_the_api_function_is_invoked_only_by_its_two_rest_apis(synthesized: Synthesized) -> None:
    # given the permissions on the API function / then each is API Gateway's, for one method of one API
    function = function_id(synthesized, API)
    apis = {rest_api(synthesized, "jobs")[0]: "jobs", rest_api(synthesized, "people")[0]: "people"}
    permissions = [
        permission["Properties"]
        for permission in synthesized.resources("AWS::Lambda::Permission").values()
        if references(permission["Properties"]["FunctionName"]) == {function}
    ]
    by_api: dict[str, int] = {}
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        (api,) = references(permission["SourceArn"]) & set(apis)
        by_api[apis[api]] = by_api.get(apis[api], 0) + 1
    assert by_api == {"jobs": len(JOB_ROUTES), "people": len(JOB_ROUTES) + len(BROWSER_ROUTES)}


def test_the_people_stage_logs_with_the_accounts_api_gateway_role(synthesized: Synthesized) -> None:
    # given the account-wide API Gateway logging role, which the IAM API sets up
    (account, _) = synthesized.resource("AWS::ApiGateway::Account")
    people, _ = rest_api(synthesized, "people")
    (stage,) = [
        (logical_id, stage)
        for logical_id, stage in synthesized.resources("AWS::ApiGateway::Stage").items()
        if references(stage["Properties"]["RestApiId"]) == {people}
    ]
    # then the people stage (which logs errors) is created after it, and sets up no second one
    # (synthesized.resource found exactly one AWS::ApiGateway::Account)
    assert account in stage[1]["DependsOn"]


def test_people_sign_in_at_a_cognito_user_pool_by_default(synthesized: Synthesized) -> None:
    # given the default deployment (reportrelay:peopleSignIn=cognito)
    _, pool = synthesized.resource("AWS::Cognito::UserPool")
    properties = pool["Properties"]
    # then only an administrator adds people, who sign in with their e-mail address, a strong password
    # and a second factor (TOTP)
    assert properties["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert properties["UsernameAttributes"] == ["email"]
    policy = properties["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    required = ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    assert all(policy[key] is True for key in required)
    assert properties["MfaConfiguration"] == "ON"
    assert properties["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    # and the pool (its people, their devices) outlives the stack
    assert pool["DeletionPolicy"] == "Retain"
    assert properties["DeletionProtection"] == "ACTIVE"


def test_the_app_client_is_public_with_the_code_flow_back_to_the_people_api(synthesized: Synthesized) -> None:
    pool_id, _ = synthesized.resource("AWS::Cognito::UserPool")
    _, client = synthesized.resource("AWS::Cognito::UserPoolClient")
    properties = client["Properties"]
    people, _ = rest_api(synthesized, "people")
    # a public client (no secret: the browser flow's code exchange is bound by PKCE), authorization code
    # only, OpenID scopes, hosted sign-in only
    assert properties["UserPoolId"] == {"Ref": pool_id}
    assert properties["GenerateSecret"] is False
    assert properties["AllowedOAuthFlows"] == ["code"]
    assert properties["AllowedOAuthFlowsUserPoolClient"] is True
    assert sorted(properties["AllowedOAuthScopes"]) == ["email", "openid", "profile"]
    assert properties["SupportedIdentityProviders"] == ["COGNITO"]
    assert properties["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    # and it sends people back to the people API's /auth/callback, nowhere else
    (callback,) = properties["CallbackURLs"]
    parts = joined(callback)
    assert {"Ref": people} in parts and parts[-1] == f"/{STAGE_NAME}/auth/callback"


def test_the_hosted_domain_is_named_after_the_stack_and_account(synthesized: Synthesized) -> None:
    pool_id, _ = synthesized.resource("AWS::Cognito::UserPool")
    _, domain = synthesized.resource("AWS::Cognito::UserPoolDomain")
    assert domain["Properties"]["UserPoolId"] == {"Ref": pool_id}
    assert joined(domain["Properties"]["Domain"]) == ["reportrelay-", {"Ref": "AWS::AccountId"}]


def test_the_domain_prefix_is_a_setting() -> None:
    assert domain_prefix(Settings(cognito_domain_prefix="acme-reports")) == "acme-reports"
    with pytest.raises(SettingsError, match="cognitoDomainPrefix"):
        domain_prefix(Settings(stack_name="ReportRelay-AWS"))
    with pytest.raises(SettingsError, match="'aws', 'amazon' or 'cognito'"):
        Settings.from_mapping({"cognitoDomainPrefix": "my-cognito"})


def test_each_team_the_configuration_names_is_a_user_pool_group(synthesized: Synthesized) -> None:
    # given the teams of config/connections.json (finance, sales), config/schedules.json (sales) and the
    # admin team of config/access.json (platform)
    pool_id, _ = synthesized.resource("AWS::Cognito::UserPool")
    groups = synthesized.resources("AWS::Cognito::UserPoolGroup").values()
    # then each is a group of the pool: a person in group "sales" acts for team sales
    assert sorted(group["Properties"]["GroupName"] for group in groups) == ["finance", "platform", "sales"]
    for group in groups:
        assert group["Properties"]["UserPoolId"] == {"Ref": pool_id}


def test_the_api_function_verifies_tokens_of_the_user_pool(synthesized: Synthesized) -> None:
    # given the API function's OIDC settings (read by reportrelay.people)
    api = environment(synthesized, API)
    pool_id, _ = synthesized.resource("AWS::Cognito::UserPool")
    client_id, _ = synthesized.resource("AWS::Cognito::UserPoolClient")
    domain_id, _ = synthesized.resource("AWS::Cognito::UserPoolDomain")
    # then the issuer is the pool's, the audience its client, the keys the pool's JWKS
    assert joined(api["REPORTRELAY_OIDC_ISSUER"]) == [
        "https://cognito-idp.",
        {"Ref": "AWS::Region"},
        ".",
        {"Ref": "AWS::URLSuffix"},
        "/",
        {"Ref": pool_id},
    ]
    assert api["REPORTRELAY_OIDC_CLIENT_ID"] == {"Ref": client_id}
    assert joined(api["REPORTRELAY_OIDC_JWKS_URL"]) == [
        *joined(api["REPORTRELAY_OIDC_ISSUER"]),
        "/.well-known/jwks.json",
    ]
    # and browsers sign in (and codes are exchanged) at the pool's hosted domain
    for name, path in (("AUTHORIZATION", "/oauth2/authorize"), ("TOKEN", "/oauth2/token")):
        parts = joined(api[f"REPORTRELAY_OIDC_{name}_URL"])
        assert parts[:2] == ["https://", {"Ref": domain_id}]
        assert parts[-1] == f".amazoncognito.com{path}"
    # and a person's teams are their Cognito groups, in the access policy too
    assert json.loads(api["REPORTRELAY_ACCESS"])["groups_claim"] == "cognito:groups"


def test_an_external_identity_provider_replaces_the_user_pool(hardened: Synthesized) -> None:
    # given reportrelay:peopleSignIn=external with the provider's issuer, client and endpoints
    # then no user pool is deployed
    assert not [r for r in hardened.template["Resources"].values() if r["Type"].startswith("AWS::Cognito::")]
    # and the API function verifies that provider's tokens, its JWKS where OIDC providers publish it
    api = environment(hardened, API)
    assert {name: api[name] for name in OIDC_ENV} == {
        "REPORTRELAY_OIDC_ISSUER": OIDC_ISSUER,
        "REPORTRELAY_OIDC_CLIENT_ID": OIDC_SETTINGS["oidcClientId"],
        "REPORTRELAY_OIDC_JWKS_URL": f"{OIDC_ISSUER}/.well-known/jwks.json",
        "REPORTRELAY_OIDC_AUTHORIZATION_URL": OIDC_SETTINGS["oidcAuthorizationUrl"],
        "REPORTRELAY_OIDC_TOKEN_URL": OIDC_SETTINGS["oidcTokenUrl"],
    }
    assert json.loads(api["REPORTRELAY_ACCESS"])["groups_claim"] == "groups"
    # and the people API still has every route
    assert set(routes(hardened, "people")) == set(JOB_ROUTES) | BROWSER_ROUTES


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"peopleSignIn": "external"}, "needs reportrelay:oidcIssuer, reportrelay:oidcClientId"),
        ({**OIDC_SETTINGS, "oidcTokenUrl": ""}, "needs reportrelay:oidcTokenUrl"),
        ({**OIDC_SETTINGS, "oidcIssuer": "http://login.example.com"}, "expected an https:// URL"),
        ({"oidcIssuer": OIDC_ISSUER}, "only apply with reportrelay:peopleSignIn=external"),
        ({"peopleSignIn": "none", "cognitoDomainPrefix": "acme"}, "only applies with"),
        ({"peopleSignIn": "saml"}, "expected one of cognito, external, none"),
        ({"apiAllowedAccounts": "1111,2222"}, "'1111' is not an AWS account id"),
        ({"apiOrganizationId": "org-1"}, "expected an AWS Organizations id"),
    ],
)
def test_sign_in_settings_that_do_not_fit_together_name_the_setting(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_mapping(values)


def test_an_access_file_naming_another_groups_claim_than_cognitos_stops_synthesis(tmp_path: Path) -> None:
    path = tmp_path / "access.json"
    path.write_text(json.dumps({"admin_team": "platform", "groups_claim": "groups"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"access\.json\.groups_claim: 'groups' is not .*'cognito:groups'"):
        load_access(path, sign_in="cognito")
    # while with an external provider the file's claim is the one used, unless the setting says otherwise
    assert load_access(path, sign_in="external").groups_claim == "groups"
    assert load_access(path, sign_in="external", groups_claim="groups").groups_claim == "groups"
    with pytest.raises(ConfigError, match="oidcGroupsClaim"):
        load_access(path, sign_in="external", groups_claim="roles")
    # and the repository's file leaves it to the provider
    assert load_access(constants.ACCESS_FILE, sign_in="external").groups_claim == "groups"


def test_without_sign_in_the_people_api_serves_share_links_only(without_sign_in: Synthesized) -> None:
    # given reportrelay:peopleSignIn=none
    # then there is no user pool and the API function has no identity provider to verify
    assert not without_sign_in.resources("AWS::Cognito::UserPool")
    api = environment(without_sign_in, API)
    assert not {name for name in api if name.startswith("REPORTRELAY_OIDC_")}
    # and the people API opens share links (its URL is in the API function's links), nothing else
    assert set(routes(without_sign_in, "people")) == {("GET", "/links/{token}")}
    people, _ = rest_api(without_sign_in, "people")
    assert people in references(api["REPORTRELAY_PEOPLE_URL"])
    # and the events keep linking to the IAM API's download route
    assert "REPORTRELAY_PEOPLE_URL" not in environment(without_sign_in, CONCLUDE)
    # and the IAM API still mints and revokes share links
    assert set(routes(without_sign_in, "jobs")) == set(JOB_ROUTES)
