"""Throughput and peak memory of streaming a report from HTTP into S3 with ``stream_to_s3``.

    python benchmarks/transfer.py [--sizes 128,1024]     # sizes in MiB

For every size, a loopback HTTP server (stdlib ``http.server`` in a thread, 127.0.0.1, a free port)
serves that many MiB of deterministic pseudo-random bytes with a Content-Length, written block by block
so the server never holds the body. The client reads it the way the providers do,
``requests.get(stream=True).iter_content(1 MiB)``, straight into ``stream_to_s3``. The server hashes
what it sent, and every run checks that the stored size and SHA-256 match.

Each size runs twice, each time in a fresh subprocess (``--one SIZE --s3 MODE``), so that no run's
memory colours another's (and, where the kernel's peak RSS cannot be reset, because ``ru_maxrss`` only
ever grows within a process):

* ``moto``: against moto's S3 inside ``mock_aws()``, through boto3 as in production. This gives the
  time and throughput of the whole path, but not a memory figure: moto keeps every uploaded part, and
  then the completed object, in the same process, so its memory grows with the file whatever the
  transfer code does.
* ``discard``: against a small fake S3 client that checks the upload like S3 does (part numbers,
  ETags, 5 MiB minimum for all but the last part) and then drops each part, keeping only its size. What
  is left in the process is the HTTP client, the transfer code and the server's blocks, so tracemalloc's
  peak (allocations traced from just before the request to the end of the upload) and the growth of
  peak RSS measure the memory the transfer needs. A real S3 client sends each part and lets go of it,
  just as the fake does.

The last line compares the peak traced memory of the largest size with that of the smallest: about
1x means memory is bounded by the part size, not by the file size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
BLOCK = MiB
"""The server writes and the client reads 1 MiB at a time."""
POOL = 8 * MiB
"""The server cuts its blocks out of one pool of random bytes, at pseudo-random offsets: generating
fresh random bytes for every block would make the server, not the transfer, the bottleneck."""
BOUNDED_RATIO = 1.5
MODES = ("moto", "discard")
BUCKET = "reportrelay-benchmark"


class ReportServer(ThreadingHTTPServer):
    """Serves ``GET /<bytes>``: that many deterministic pseudo-random bytes, and remembers their SHA-256."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReportHandler)
        self.pool = memoryview(random.Random(2024).randbytes(POOL + BLOCK))
        self.sent_sha256: str | None = None
        self.sent = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def blocks(self, size: int) -> Iterator[memoryview]:
        offsets = random.Random(size)
        remaining = size
        while remaining:
            length = min(BLOCK, remaining)
            start = offsets.randrange(POOL)
            yield self.pool[start : start + length]
            remaining -= length


class ReportHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReportServer

    def do_GET(self) -> None:
        size = int(self.path.strip("/"))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        digest = hashlib.sha256()
        for block in self.server.blocks(size):
            digest.update(block)
            self.wfile.write(block)
        self.wfile.flush()
        self.server.sent_sha256 = digest.hexdigest()
        self.server.sent.set()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would only clutter the figures."""


class DiscardingS3:
    """Enough of an S3 client for ``stream_to_s3``: checks the upload like S3, keeps only part sizes."""

    MIN_PART = 5 * MiB

    def __init__(self) -> None:
        self.uploads: dict[str, list[int]] = {}
        self.objects: dict[tuple[str, str], int] = {}
        self.tags: dict[tuple[str, str], list[dict[str, str]]] = {}

    def create_multipart_upload(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        upload_id = f"upload-{len(self.uploads) + 1}"
        self.uploads[upload_id] = []
        return {"UploadId": upload_id}

    def upload_part(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes | bytearray
    ) -> dict[str, Any]:
        parts = self.uploads[UploadId]
        if PartNumber != len(parts) + 1:
            raise AssertionError(f"part {PartNumber} uploaded after {len(parts)} parts")
        parts.append(len(Body))
        return {"ETag": f'"{PartNumber}-{len(Body)}"'}

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> dict[str, Any]:
        sizes = self.uploads.pop(UploadId)
        etags = [f'"{number}-{size}"' for number, size in enumerate(sizes, start=1)]
        if [part["ETag"] for part in MultipartUpload["Parts"]] != etags:
            raise AssertionError("the completed parts are not the uploaded parts")
        if any(size < self.MIN_PART for size in sizes[:-1]):
            raise AssertionError(f"a part other than the last is smaller than 5 MiB: {sizes}")
        self.objects[(Bucket, Key)] = sum(sizes)
        return {"Bucket": Bucket, "Key": Key}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self.uploads.pop(UploadId, None)
        return {}

    def put_object_tagging(self, *, Bucket: str, Key: str, Tagging: dict[str, Any]) -> dict[str, Any]:
        self.tags[(Bucket, Key)] = Tagging["TagSet"]
        return {}

    def delete_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        self.objects.pop((Bucket, Key), None)
        return {}


def run_one(size_mib: int, mode: str) -> dict[str, Any]:
    """Stream one file through ``stream_to_s3`` in this process and measure it."""
    functions = Path(__file__).resolve().parents[1] / "functions"
    if str(functions) not in sys.path:
        sys.path.insert(0, str(functions))
    import requests

    from reportrelay.transfer import stream_to_s3

    size = size_mib * MiB
    key = f"benchmark/{size_mib}.bin"
    server = ReportServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        if mode == "moto":
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                os.environ[name] = "benchmark"
            os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
            os.environ.pop("AWS_PROFILE", None)
            import boto3
            from moto import mock_aws

            with mock_aws():
                s3 = boto3.client("s3", region_name="us-east-1")
                s3.create_bucket(Bucket=BUCKET)
                result = _transfer(requests, stream_to_s3, s3, server, size, key, trace=False)
                head = s3.head_object(Bucket=BUCKET, Key=key)
                tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
                stored_size, tag = head["ContentLength"], tags[0]["Value"]
        else:
            s3 = DiscardingS3()
            result = _transfer(requests, stream_to_s3, s3, server, size, key, trace=True)
            stored_size, tag = s3.objects[(BUCKET, key)], s3.tags[(BUCKET, key)][0]["Value"]
    finally:
        server.shutdown()
        server.server_close()
    server.sent.wait(10)
    result["verified"] = stored_size == size and tag == result.pop("sha256") == server.sent_sha256
    return {"size_mib": size_mib, "mode": mode, **result}


def _transfer(
    requests: Any, stream_to_s3: Any, s3: Any, server: ReportServer, size: int, key: str, *, trace: bool
) -> dict[str, Any]:
    rss = PeakRss()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    with requests.get(f"{server.url}/{size}", stream=True, timeout=60) as response:
        response.raise_for_status()
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
    traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    return {
        "seconds": seconds,
        "mib_per_s": size / MiB / seconds,
        "traced_peak_mib": traced_peak / MiB if traced_peak is not None else None,
        "rss_growth_mib": rss.growth() / MiB,
        "sha256": stored.sha256,
    }


class PeakRss:
    """How far the process's resident set size rose above where it stood when this was created.

    On Linux the kernel's high-water mark is reset to the current RSS first (``/proc/self/clear_refs``),
    so start-up (imports, the server's pool) cannot hide the transfer's peak. Elsewhere it falls back to
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
        peak = _proc_status_bytes("VmHWM") if self.exact else _ru_maxrss()
        return max(0, peak - self.start)


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _ru_maxrss() -> int:
    """This process's peak resident set size so far, in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_in_subprocess(size_mib: int, mode: str) -> dict[str, Any]:
    """A fresh process per run, so its peak RSS belongs to that run alone."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", str(size_mib), "--s3", mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,1024", help="file sizes in MiB, comma-separated")
    parser.add_argument("--one", type=int, metavar="SIZE", help=argparse.SUPPRESS)
    parser.add_argument("--s3", choices=MODES, default="discard", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one is not None:
        print(json.dumps(run_one(args.one, args.s3)))
        return 0

    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    header = (
        f"{'size MiB':>8}  {'moto s':>7}  {'moto MiB/s':>10}  {'discard s':>9}  {'discard MiB/s':>13}"
        f"  {'peak traced MiB':>15}  {'peak RSS growth MiB':>19}  verified"
    )
    print(header)
    peaks: dict[int, float] = {}
    for size in sizes:
        moto = run_in_subprocess(size, "moto")
        discard = run_in_subprocess(size, "discard")
        peaks[size] = discard["traced_peak_mib"]
        print(
            f"{size:>8}  {moto['seconds']:>7.2f}  {moto['mib_per_s']:>10.1f}  {discard['seconds']:>9.2f}"
            f"  {discard['mib_per_s']:>13.1f}  {discard['traced_peak_mib']:>15.2f}"
            f"  {discard['rss_growth_mib']:>19.1f}  {moto['verified'] and discard['verified']}",
            flush=True,
        )

    if len(peaks) > 1:
        smallest, largest = min(peaks), max(peaks)
        ratio = peaks[largest] / peaks[smallest]
        verdict = "bounded" if ratio < BOUNDED_RATIO else "grows with file size"
        print(f"peak memory {largest} MiB / {smallest} MiB = {ratio:.2f}x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
