"""The job API's front door on one laptop: API Gateway REST proxy events, and a WSGI app that makes them.

``rest_event`` builds the event API Gateway hands the API function (AWS_IAM authorization, so the
caller's IAM identity is in ``requestContext.identity``). ``JobApiApp`` is a WSGI application that turns
HTTP requests into such events for a handler, as API Gateway would: it lets a fuzzer (schemathesis),
``curl`` or a browser speak HTTP to the in-process API. Like API Gateway with AWS_IAM, it refuses requests
without a SigV4 ``Authorization`` header (403); unlike it, it does not check the signature, and takes the
caller's identity from the access key id in the credential scope.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT = "123456789012"
DEFAULT_IDENTITY = f"arn:aws:iam::{ACCOUNT}:user/local-tester"
_CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/")

Handler = Callable[[dict[str, Any]], Mapping[str, Any]]


def rest_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str | list[str]] | None = None,
    identity: str | None = DEFAULT_IDENTITY,
    domain: str = "api.reportrelay.localhost",
    stage: str = "v1",
) -> dict[str, Any]:
    """An API Gateway REST proxy event; a dict or list ``body`` is sent as JSON, bytes as base64."""
    all_headers = {"Host": domain, **(headers or {})}
    is_base64 = False
    if isinstance(body, dict | list):
        text: str | None = json.dumps(body)
        all_headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, bytes):
        text, is_base64 = base64.b64encode(body).decode(), True
    else:
        text = body
    user = identity.rsplit("/", 1)[-1] if identity else None
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
                "accountId": ACCOUNT if identity else None,
                "caller": user,
                "userArn": identity,
                "user": user,
                "sourceIp": "127.0.0.1",
                "userAgent": all_headers.get("User-Agent", "reportrelay-local"),
            },
        },
    }


@dataclass(frozen=True)
class ApiAnswer:
    """What API Gateway would send back for a proxy integration's result."""

    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> ApiAnswer:
        headers = {name: str(value) for name, value in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(value) for value in values)
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return cls(int(result["statusCode"]), headers, body)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


class JobApiApp:
    """WSGI application: HTTP in, REST proxy event to ``handler``, its answer out."""

    def __init__(self, handler: Handler, *, stage: str = "v1") -> None:
        self._handler = handler
        self._stage = stage

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        authorization = headers.get("Authorization", "")
        credential = _CREDENTIAL.search(authorization)
        if not authorization.startswith("AWS4-HMAC-SHA256 ") or credential is None:
            # API Gateway's own answer to an unsigned request on an AWS_IAM method.
            answer = ApiAnswer(
                403, {"Content-Type": "application/json"}, b'{"message":"Missing Authentication Token"}'
            )
            return _respond(answer, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            query.setdefault(name, []).append(value)
        path = environ.get("PATH_INFO") or "/"
        prefix = f"/{self._stage}"
        if path == prefix or path.startswith(prefix + "/"):
            path = path[len(prefix) :] or "/"
        event = rest_event(
            environ["REQUEST_METHOD"],
            path,
            body=_text_or_bytes(body),
            headers=headers,
            query=query,
            identity=f"arn:aws:iam::{ACCOUNT}:user/{credential.group(1)}",
            domain=headers.get("Host", "localhost"),
            stage=self._stage,
        )
        return _respond(ApiAnswer.from_result(self._handler(event)), start_response)


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
    headers.append(("Content-Length", str(len(answer.body))))
    start_response(status, headers)
    return [answer.body]
