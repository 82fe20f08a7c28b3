"""HTTP plumbing the tests share: a WSGI app served on loopback, and requests signed as AWS clients sign."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextmanager
def serve(app: Any, handler_class: type[WSGIRequestHandler] = QuietHandler, path: str = "") -> Iterator[str]:
    """``app`` on http://127.0.0.1:<port><path>, answering requests in threads, until the block ends."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sigv4_headers(
    method: str,
    url: str,
    credentials: Credentials,
    *,
    data: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus botocore's SigV4 signature for execute-api (as awscurl)."""
    request = AWSRequest(method, url, data=data, headers=dict(headers or {}))
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return dict(request.headers)
