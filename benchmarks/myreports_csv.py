"""Throughput and peak memory of turning a MyReports results document into CSV as it arrives.

    python benchmarks/myreports_csv.py [--rows 100000,1000000] [--formats csv,json]

A MyReports result is one JSON document of up to a million records (seed 002). For every row count, a
loopback HTTP server in its own process (127.0.0.1, a free port) writes such a document record by
record, never holding it whole: the seed's head (``request.displayFields`` first), ``data[]`` with the
simulator's generated call records (fields missing at random, names with commas, quotes, line breaks
and non-Latin letters; a pool of 10,000 cycled), then the tail with ``status: 1``. The adapter reads
it exactly as a job does, ``MyReports.open_result`` over ``requests`` with ``stream=True``, and the
chunks it hands on (the ones ``stream_to_s3`` would upload) are counted and hashed, then dropped.
Every run checks that the CSV has one line per record plus the header (JSON: that the bytes are the
server's, by SHA-256).

Each row count and format runs twice, each time in a fresh subprocess, so no run's memory colours another:

* ``time``: no tracing. Throughput (records and MB of JSON per second) and the growth of peak RSS
  from just before the download to its end. The server's memory is in another process and not counted.
* ``trace``: the same under ``tracemalloc``, which slows Python down several times, for the peak of
  traced allocations from the download's start to its end.

The last line compares the largest run's traced peak with the smallest's: about 1x means memory is
bounded by the read buffers, not by the number of records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
REQUEST_ID = "00000000-0000-0000-0000-00000000be4c"
RECORDS_PER_WRITE = 500
POOL_RECORDS = 10_000  # a multiple of RECORDS_PER_WRITE
BOUNDED_RATIO = 1.5
MODES = ("time", "trace")


def _use_package() -> None:
    for folder in (FUNCTIONS, FUNCTIONS.parent / "cli"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


# --------------------------------------------------------------------------------------------------
# The server (its own process): one results document of N records, written as it is made


def document_parts(rows: int) -> Iterator[bytes]:
    """The seed-shaped document in pieces: head, records a few hundred at a time, tail.

    The records are the simulator's, made once into a pool of ``POOL_RECORDS`` and then cycled:
    making a fresh record for each of a million (about 33,000 a second here) would make the server,
    not the conversion, the bottleneck.
    """
    _use_package()
    from reportrelay_cli.sandbox.myreports import CALL_LIST_FIELDS, TENANT_ID, _call_records

    head = {
        "requestId": REQUEST_ID,
        "tenantId": TENANT_ID,
        "request": {
            "requestId": REQUEST_ID,
            "reportTemplateName": "CallListByUserSegmented",
            "displayFields": [{"fieldName": name, "mandatory": False} for name in CALL_LIST_FIELDS],
            "rowLimit": 1_000_000,
        },
        "rowLimitExceeded": False,
        "totalCount": rows,
    }
    yield json.dumps(head, ensure_ascii=False).encode()[:-1] + b', "data": ['
    pool = [json.dumps(record, ensure_ascii=False) for record in _call_records(REQUEST_ID, POOL_RECORDS)]
    batches = [
        ", ".join(pool[start : start + RECORDS_PER_WRITE]).encode()
        for start in range(0, POOL_RECORDS, RECORDS_PER_WRITE)
    ]
    written = 0
    while written < rows:
        count = min(RECORDS_PER_WRITE, rows - written)
        batch = batches[(written // RECORDS_PER_WRITE) % len(batches)]
        if count < RECORDS_PER_WRITE:
            start = (written // RECORDS_PER_WRITE) % len(batches) * RECORDS_PER_WRITE
            batch = ", ".join(pool[start : start + count]).encode()
        yield (b", " if written else b"") + batch
        written += count
    tail = {"summary": [], "status": 1, "statusMessage": "Report processing complete", "rowLimit": 1_000_000}
    yield b"], " + json.dumps(tail).encode()[1:]


def serve(rows: int) -> None:
    """Serve GET (any path) with the document; print the port, then size and SHA-256 once served."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Connection", "close")  # HTTP/1.0: the body ends when the connection does
            self.end_headers()
            digest, size = hashlib.sha256(), 0
            for part in document_parts(rows):
                self.wfile.write(part)
                digest.update(part)
                size += len(part)
            self.wfile.flush()
            print(json.dumps({"size": size, "sha256": digest.hexdigest()}), flush=True)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.handle_request()
    server.server_close()


# --------------------------------------------------------------------------------------------------
# One measured run (its own process)


def run_one(rows: int, format: str, mode: str) -> dict[str, Any]:
    _use_package()
    from reportrelay.config import Connections, SecretResolver, parse_job_request
    from reportrelay.providers import open_provider
    from reportrelay_cli.sandbox.myreports import DEFAULT_REPORT, DEFAULT_WORKSPACE

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(rows)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        connection = Connections.from_document(
            {"connections": {"bench": {
                "provider": "myreports", "base_url": f"http://127.0.0.1:{port}",
                "auth": {"type": "bearer", "token": {"env": "BENCH_TOKEN"}},
                "timeouts": {"read_seconds": 300},
            }}}
        ).get("bench")  # fmt: skip
        provider = open_provider(connection, SecretResolver({"BENCH_TOKEN": "bench"}))
        request = parse_job_request(
            {
                "connection": "bench",
                "report": {
                    "workspace_id": DEFAULT_WORKSPACE,
                    "report_id": DEFAULT_REPORT,
                    "date_filter": {"preset": "ThisYear"},
                },
                "format": format,
            }
        )
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if mode == "trace":
            tracemalloc.start()
        started = time.perf_counter()
        digest, size, lines, previous = hashlib.sha256(), 0, 0, b""
        with provider.open_result(request, {"request_id": REQUEST_ID}) as result:
            for chunk in result.chunks:
                size += len(chunk)
                digest.update(chunk)
                if format == "csv":  # records end in CRLF; a line break inside a cell is a bare LF
                    lines += chunk.count(b"\r\n") + (previous == b"\r" and chunk[:1] == b"\n")
                    previous = chunk[-1:]
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if mode == "trace" else None
        if mode == "trace":
            tracemalloc.stop()
        rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        served = json.loads(server.stdout.readline())
    finally:
        server.wait(timeout=60)
    if format == "csv" and lines != rows + 1:
        raise AssertionError(f"{rows} records gave {lines} CSV lines, not {rows + 1}")
    if format == "json" and (digest.hexdigest(), size) != (served["sha256"], served["size"]):
        raise AssertionError("the JSON handed on is not the document served")
    return {
        "rows": rows,
        "format": format,
        "mode": mode,
        "json_bytes": served["size"],
        "out_bytes": size,
        "seconds": seconds,
        "traced_peak": peak,
        "rss_growth": rss_growth_kib * 1024,
    }


# --------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated record counts")
    parser.add_argument("--formats", default="csv", help="comma-separated: csv, json")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: time, trace")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=3, metavar=("ROWS", "FORMAT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), args.one[1], args.one[2])))
        return 0

    counts = [int(value) for value in args.rows.split(",")]
    formats = args.formats.split(",")
    modes = args.modes.split(",")
    python = sys.version.split()[0]
    print(f"MyReports results -> {'/'.join(formats)}, streamed (Python {python}, {os.cpu_count()} CPUs)")
    print(
        f"{'records':>9} {'fmt':>4} {'mode':>5} {'JSON in':>9} {'out':>9} {'time':>7} {'records/s':>10} "
        f"{'MB/s in':>8} {'peak':>16}"
    )
    peaks: dict[str, list[tuple[int, int]]] = {}
    for format in formats:
        for rows in counts:
            for mode in modes:
                finished = subprocess.run(
                    [sys.executable, __file__, "--one", str(rows), format, mode],
                    stdout=subprocess.PIPE, text=True, check=True,
                    env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"},  # figures only, no adapter notes
                )  # fmt: skip
                run = json.loads(finished.stdout.strip().splitlines()[-1])
                if mode == "trace":
                    peak = f"{run['traced_peak'] / 2**20:.2f} MiB"
                    peaks.setdefault(format, []).append((rows, run["traced_peak"]))
                else:
                    peak = f"+{run['rss_growth'] / 2**20:.1f} MiB RSS"
                print(
                    f"{rows:>9,} {format:>4} {mode:>5} {run['json_bytes'] / 1e6:>7.1f}MB "
                    f"{run['out_bytes'] / 1e6:>7.1f}MB {run['seconds']:>6.1f}s "
                    f"{rows / run['seconds']:>10,.0f} "
                    f"{run['json_bytes'] / 1e6 / run['seconds']:>8.1f} {peak:>16}",
                    flush=True,
                )
    for format, measured in peaks.items():
        if len(measured) > 1:
            (small_rows, small), (large_rows, large) = min(measured), max(measured)
            ratio = large / small
            verdict = "bounded" if ratio <= BOUNDED_RATIO else "GROWS WITH THE RESULT"
            print(
                f"{format}: traced peak at {large_rows:,} records is {ratio:.2f}x that at {small_rows:,} "
                f"({verdict})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
