"""The job API's front door on one laptop: API Gateway REST proxy events, and a WSGI app that makes them.

``rest_event`` builds the event API Gateway hands the API function (AWS_IAM authorization, so the
caller's IAM identity is in ``requestContext.identity``). ``JobApiApp`` is a WSGI application that turns
HTTP requests into such events for a handler, as API Gateway would: it lets a fuzzer (schemathesis),
``curl``, a signing client or a browser speak HTTP to the in-process API.

Machine mode (the default) is API Gateway's ``AWS_IAM`` authorization. Each request's SigV4
``Authorization`` header is verified against a local identities file
(``reportrelay_cli.local.identities.LocalIdentities``), with API Gateway's answers (403 and its wording):

- no ``Authorization`` header: ``Missing Authentication Token``; a malformed one: the missing parts;
- the credential scope: its date must be the request's date, its region the app's, its service
  ``execute-api``, its terminator ``aws4_request``;
- ``X-Amz-Date`` (or ``Date``) within 5 minutes of now; ``host`` among the signed headers;
- the access key must be known, and the session token sent must be the identity's (none for none);
- the signature, recomputed with botocore's own SigV4 code over the method, the path as sent
  (stage included), the query, exactly the signed headers and the SHA-256 of the body; an
  ``X-Amz-Content-Sha256`` header, if sent, must be that hash (so ``UNSIGNED-PAYLOAD`` is refused).

Not verified: IAM policies (any known identity may call every route; ``execute-api:Invoke``
permissions and the API's resource policy are not evaluated), SigV4 in the query string (presigned
URLs) and SigV4a. The path is taken from ``REQUEST_URI``/``RAW_URI`` when the server gives one; plain
``wsgiref`` does not, and then the path is re-encoded from ``PATH_INFO``, which cannot tell an encoded
``%2F`` (or another encoded reserved character) from the character itself.

People mode (``people=True``) is the API for people, with no IAM at the gateway: no signature check,
no IAM identity in the event, and every header (``Authorization: Bearer``, ``Cookie``) passed through
for the function to authenticate the person itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders

from reportrelay_cli.local.identities import LocalIdentities, LocalIdentity, PrincipalArn

ACCOUNT = "123456789012"
DEFAULT_IDENTITY = f"arn:aws:iam::{ACCOUNT}:user/local-tester"
SERVICE = "execute-api"
MAX_CLOCK_SKEW = timedelta(minutes=5)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# What a client may leave unencoded in a path (RFC 3986 pchar and "/"): used to rebuild the path it
# sent from a decoded PATH_INFO when the server does not say what arrived.
_PATH_SAFE = "/~!$&'()*+,;=:@"

Handler = Callable[[dict[str, Any]], Mapping[str, Any]]


def rest_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str | list[str]] | None = None,
    identity: str | None = DEFAULT_IDENTITY,
    access_key: str | None = None,
    domain: str = "api.reportrelay.localhost",
    stage: str = "v1",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway REST proxy event; a dict or list ``body`` is sent as JSON, bytes as base64.

    ``identity`` is the caller's principal ARN as API Gateway saw it (None: no IAM identity, as for the
    people API); ``caller`` and ``user`` are filled the way API Gateway fills them for that principal.
    """
    all_headers = {"Host": domain, **(headers or {})}
    is_base64 = False
    if isinstance(body, dict | list):
        text: str | None = json.dumps(body)
        all_headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, bytes):
        text, is_base64 = base64.b64encode(body).decode(), True
    else:
        text = body
    multi_query = {
        name: value if isinstance(value, list) else [value] for name, value in (query or {}).items()
    }
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": is_base64,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "resourcePath": path,
            "stage": stage,
            "identity": {
                **iam_identity(identity, access_key),
                "sourceIp": source_ip,
                "userAgent": all_headers.get("User-Agent", "reportrelay-local"),
            },
        },
    }


def iam_identity(principal: str | None, access_key: str | None = None) -> dict[str, Any]:
    """``requestContext.identity``'s IAM fields for ``principal``, as API Gateway fills them.

    An IAM user is ``caller`` = ``user`` = its user id (``AIDA...``); a role session is
    ``<role id>:<session>`` (``AROA...:alice``); ``userArn`` is the principal exactly, session included.
    """
    parsed = PrincipalArn.parse(principal) if principal else None
    if parsed is None:  # no identity, or a string that is no IAM ARN (a test's shorthand)
        caller = principal.rsplit("/", 1)[-1] if principal else None
        account = ACCOUNT if principal else None
    else:
        caller = f"{parsed.unique_id}:{parsed.session}" if parsed.session else parsed.unique_id
        account = parsed.account_id
    return {
        "accountId": account,
        "accessKey": access_key,
        "caller": caller,
        "user": caller,
        "userArn": principal,
        "principalOrgId": None,
        "apiKey": None,
        "apiKeyId": None,
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
    }


@dataclass(frozen=True)
class ApiAnswer:
    """What API Gateway would send back for a proxy integration's result."""

    status: int
    headers: dict[str, str]
    body: bytes
    #: Each ``Set-Cookie`` value, sent on a line of its own: cookies cannot be folded (RFC 6265 section 3).
    cookies: tuple[str, ...] = ()

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> ApiAnswer:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in (result.get("headers") or {}).items():
            if name.lower() == "set-cookie":
                cookies = [str(value)]
            else:
                headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            if name.lower() == "set-cookie":
                cookies = [str(value) for value in values]  # as API Gateway: these win over ``headers``
            else:
                headers[name] = ", ".join(str(value) for value in values)
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return cls(int(result["statusCode"]), headers, body, tuple(cookies))

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


@dataclass(frozen=True)
class ArrivedRequest:
    """An HTTP request as the client sent it: what a SigV4 signature covers."""

    method: str
    raw_path: str  # percent-encoded as on the wire, stage included
    query: str  # the raw query string
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class SigV4Refused(Exception):
    """API Gateway's 403 for a request whose SigV4 authentication fails; ``error_type`` is its code."""

    def __init__(self, message: str, error_type: str = "InvalidSignatureException") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type

    def answer(self) -> ApiAnswer:
        body = json.dumps({"message": self.message}, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": self.error_type,
            "x-amzn-RequestId": str(uuid.uuid4()),
        }
        return ApiAnswer(403, headers, body)


MISSING_TOKEN = "Missing Authentication Token"
INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


def verify_sigv4(
    request: ArrivedRequest, identities: LocalIdentities, *, region: str, now: datetime
) -> LocalIdentity:
    """The identity that signed ``request``, or SigV4Refused with API Gateway's words for why not."""
    authorization = request.header("authorization")
    if not authorization:
        raise SigV4Refused(MISSING_TOKEN, "MissingAuthenticationTokenException")
    params = _authorization_parameters(authorization)
    amz_date = _request_date(request)
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if amz_date is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise SigV4Refused(
            " ".join([*missing, f"Authorization={authorization}"]), "IncompleteSignatureException"
        )
    algorithm = authorization.split(None, 1)[0]
    if algorithm != "AWS4-HMAC-SHA256":
        raise SigV4Refused(
            f"Unsupported AWS 'algorithm': '{algorithm}'; this API takes AWS4-HMAC-SHA256",
            "IncompleteSignatureException",
        )
    scope = params["Credential"].split("/")
    if len(scope) != 5:
        raise SigV4Refused(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{params['Credential']}'",
            "IncompleteSignatureException",
        )
    access_key, scope_date, scope_region, scope_service, terminator = scope
    problems = []
    if scope_region != region:
        problems.append(f"Credential should be scoped to a valid region, not '{scope_region}'. ")
    if scope_service != SERVICE:
        problems.append(f"Credential should be scoped to correct service: '{SERVICE}'. ")
    if terminator != "aws4_request":
        problems.append(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )
    if problems:
        raise SigV4Refused("".join(problems))
    assert amz_date is not None
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SigV4Refused(
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601",
            "IncompleteSignatureException",
        ) from None
    if scope_date != amz_date[:8]:
        raise SigV4Refused(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if signed_at < now - MAX_CLOCK_SKEW:
        raise SigV4Refused(
            f"Signature expired: {amz_date} is now earlier than {_amz(now - MAX_CLOCK_SKEW)} "
            f"({_amz(now)} - 5 min.)"
        )
    if signed_at > now + MAX_CLOCK_SKEW:
        raise SigV4Refused(
            f"Signature not yet current: {amz_date} is still later than {_amz(now + MAX_CLOCK_SKEW)} "
            f"({_amz(now)} + 5 min.)"
        )
    signed_headers = [name.strip().lower() for name in params["SignedHeaders"].split(";") if name.strip()]
    if "host" not in signed_headers:
        raise SigV4Refused("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")

    identity = identities.get(access_key)
    if identity is None:
        raise SigV4Refused(INVALID_TOKEN, "UnrecognizedClientException")
    token = request.header("x-amz-security-token")
    if (token is None) != (identity.session_token is None) or (
        token is not None and not hmac.compare_digest(token.encode(), str(identity.session_token).encode())
    ):
        raise SigV4Refused(INVALID_TOKEN, "UnrecognizedClientException")

    content_sha256 = request.header("x-amz-content-sha256")
    if content_sha256 is not None and content_sha256.lower() != hashlib.sha256(request.body).hexdigest():
        raise SigV4Refused(SIGNATURE_MISMATCH)
    expected = _signature(request, identity, signed_headers, amz_date, scope_region, scope_service)
    if not hmac.compare_digest(expected.encode(), params["Signature"].strip().encode()):
        raise SigV4Refused(SIGNATURE_MISMATCH)
    return identity


class _SignedHeadersOnly(SigV4Auth):
    """botocore's SigV4 signer, made to sign exactly the headers the client says it signed."""

    def __init__(self, identity: LocalIdentity, region: str, service: str, signed: list[str]) -> None:
        super().__init__(identity.credentials(), service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed:
            headers[name] = request.headers.get(name, "")
        return headers


def _signature(
    request: ArrivedRequest,
    identity: LocalIdentity,
    signed_headers: list[str],
    amz_date: str,
    region: str,
    service: str,
) -> str:
    """The signature the client should have sent, computed by botocore as its signer computes it."""
    host = request.header("host") or "localhost"
    url = f"http://{host}{request.raw_path}" + (f"?{request.query}" if request.query else "")
    headers = {name: request.header(name) or "" for name in signed_headers}
    aws_request = AWSRequest(method=request.method, url=url, headers=headers, data=request.body or None)
    aws_request.context["timestamp"] = amz_date
    signer = _SignedHeadersOnly(identity, region, service, signed_headers)
    canonical = signer.canonical_request(aws_request)
    return str(signer.signature(signer.string_to_sign(aws_request, canonical), aws_request))


def _authorization_parameters(authorization: str) -> dict[str, str]:
    """``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` -> its parameters."""
    parts = authorization.split(None, 1)
    params: dict[str, str] = {}
    for item in (parts[1] if len(parts) > 1 else "").split(","):
        name, equals, value = item.strip().partition("=")
        if not item.strip():
            continue
        if not equals:
            raise SigV4Refused(
                f"'{item.strip()}' not a valid key=value pair (missing equal-sign) in Authorization header: "
                f"'{authorization}'.",
                "IncompleteSignatureException",
            )
        params[name.strip()] = value.strip()
    return params


def _request_date(request: ArrivedRequest) -> str | None:
    """The signing time as SigV4 writes it: ``X-Amz-Date``, else the ``Date`` header converted."""
    amz_date = request.header("x-amz-date")
    if amz_date:
        return amz_date.strip()
    date = request.header("date")
    if not date:
        return None
    try:
        return _amz(parsedate_to_datetime(date))
    except (TypeError, ValueError):
        return date


def _amz(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(AMZ_DATE_FORMAT)


class JobApiApp:
    """WSGI application: HTTP in, REST proxy event to ``handler``, its answer out.

    ``identities`` are the callers machine mode accepts (none: every signed request is refused);
    ``people`` serves the people API instead (no IAM, headers passed through); ``region`` is the one
    signatures must be scoped to; ``clock`` is "now" for the 5-minute window.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        identities: LocalIdentities | None = None,
        people: bool = False,
        stage: str = "v1",
        region: str = "us-east-1",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._handler = handler
        self._identities = identities if identities is not None else LocalIdentities([])
        self._people = people
        self._stage = stage
        self._region = region
        self._clock = clock or (lambda: datetime.now(UTC))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        arrived = _arrived(environ)
        principal: str | None = None
        access_key: str | None = None
        if not self._people:
            try:
                signer = verify_sigv4(arrived, self._identities, region=self._region, now=self._clock())
            except SigV4Refused as refusal:
                return _respond(refusal.answer(), start_response)
            principal, access_key = signer.principal, signer.access_key_id
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            query.setdefault(name, []).append(value)
        path = _decoded_path(environ.get("PATH_INFO") or "/")
        prefix = f"/{self._stage}"
        if path == prefix or path.startswith(prefix + "/"):
            path = path[len(prefix) :] or "/"
        event = rest_event(
            environ["REQUEST_METHOD"],
            path,
            body=_text_or_bytes(arrived.body),
            headers=headers,
            query=query,
            identity=principal,
            access_key=access_key,
            domain=headers.get("Host", "localhost"),
            stage=self._stage,
            source_ip=environ.get("REMOTE_ADDR") or "127.0.0.1",
        )
        return _respond(ApiAnswer.from_result(self._handler(event)), start_response)


def _arrived(environ: Mapping[str, Any]) -> ArrivedRequest:
    """The request as the client sent it, rebuilt from the WSGI environ."""
    headers = {
        key[5:].lower().replace("_", "-"): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = str(environ[key])
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    return ArrivedRequest(
        method=str(environ["REQUEST_METHOD"]).upper(),
        raw_path=_raw_path(environ),
        query=str(environ.get("QUERY_STRING") or ""),
        headers=headers,
        body=body,
    )


def _decoded_path(path_info: str) -> str:
    """PATH_INFO as text: PEP 3333 servers decode the bytes as latin-1, API Gateway as UTF-8."""
    try:
        return path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path_info


def _raw_path(environ: Mapping[str, Any]) -> str:
    """The path as it was on the wire: the server's REQUEST_URI/RAW_URI, else PATH_INFO re-encoded."""
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if uri:
        target = str(uri).split("?", 1)[0]
        if "://" in target:  # absolute-form request target
            target = urlsplit(target).path
        return target or "/"
    decoded = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}" or "/"
    try:
        raw = decoded.encode("latin-1")  # PEP 3333: the bytes as received, decoded as latin-1
    except UnicodeEncodeError:
        raw = decoded.encode("utf-8")
    return quote(raw, safe=_PATH_SAFE)


def _text_or_bytes(body: bytes) -> str | bytes | None:
    if not body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def _respond(answer: ApiAnswer, start_response: Callable[..., Any]) -> list[bytes]:
    try:
        status = f"{answer.status} {HTTPStatus(answer.status).phrase}"
    except ValueError:
        status = f"{answer.status} Status"
    headers = [(name, value) for name, value in answer.headers.items() if name.lower() != "content-length"]
    headers += [("Set-Cookie", cookie) for cookie in answer.cookies]
    headers.append(("Content-Length", str(len(answer.body))))
    start_response(status, headers)
    return [answer.body]
