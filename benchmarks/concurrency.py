"""N jobs at once on a connection capped at C concurrent jobs, through the executed state machine.

    python benchmarks/concurrency.py [--jobs 20,50,200] [--cap 5] [--generation 2]

The project's local deployment (``LocalAws``: moto's Step Functions interpreter running the real ASL, the
functions in-process) against the bundled DevExpress simulator, which refuses (429) more than ``--cap``
exports per account at once and takes ``--generation`` seconds to generate each. The connection has
``max_concurrent_jobs`` = cap. First one job alone (its time is the unit of the ideal makespan), then, for
each N, N jobs started at once. For each run it prints: failures, exports queued at the vendor (duplicates
= queued - N), the peak of concurrent exports at the vendor, the makespan (first start to last end) and
its ratio to the ideal, ceil(N / cap) x one job alone; and whether slots went in arrival order: the order
jobs joined the connection's line against the order the line handed them slots (``reportrelay.slots``),
as the number of jobs handed a slot before one that joined earlier.

Goals (issue 15): 50 and 200 jobs with a cap of 5: makespan <= 1.1 x ideal, 0 failures, 0 duplicates, the
cap never exceeded, slots in arrival order.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "cli"), str(ROOT)]
os.environ.setdefault("AWS_REGION", "us-east-1")

from reportrelay import slots  # noqa: E402
from reportrelay_cli.local.aws import LocalAws  # noqa: E402
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator  # noqa: E402

PASSWORD = "bench-password-7Qx"
GOAL_RATIO = 1.1
REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}


@dataclass
class Run:
    jobs: int
    failures: int
    queued: int
    peak: int
    makespan: float
    out_of_order: int
    joined: int


class LineRecorder:
    """Who joined the line, and who was handed a slot, in order (wrapping the real slots module)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.joined: list[str] = []
        self.handed: list[str] = []
        self._join = slots.ConcurrencySlots.join_line
        self._hand_over = slots.ConcurrencySlots.hand_over

    def install(self) -> None:
        recorder = self

        def join_line(self: slots.ConcurrencySlots, connection: str, waiter: slots.Waiter) -> int:
            # Joins are serialised here (every function runs in this process), so the order recorded is
            # the order of the line itself.
            with recorder.lock:
                place = recorder._join(self, connection, waiter)
                if waiter.job_id not in recorder.joined:
                    recorder.joined.append(waiter.job_id)
            return place

        def hand_over(self: slots.ConcurrencySlots, *args: Any, **kwargs: Any) -> list[tuple[str, int]]:
            with recorder.lock:  # likewise: the order recorded is the order slots were handed
                handed = recorder._hand_over(self, *args, **kwargs)
                recorder.handed.extend(job_id for job_id, _ in handed)
            return handed

        slots.ConcurrencySlots.join_line = join_line  # type: ignore[method-assign]
        slots.ConcurrencySlots.hand_over = hand_over  # type: ignore[method-assign]

    def reset(self) -> None:
        with self.lock:
            self.joined.clear()
            self.handed.clear()

    def out_of_order(self) -> int:
        """Jobs handed a slot while one that joined the line before them still waited."""
        with self.lock:
            place = {job_id: index for index, job_id in enumerate(self.joined)}
            handed = [job_id for job_id in self.handed if job_id in place]
        return sum(1 for before, after in itertools.pairwise(handed) if place[after] < place[before])


def run_jobs(aws: LocalAws, simulator: DevExpressSimulator, count: int, timeout: float) -> Run:
    simulator.exports.clear()
    simulator.peak_active_exports = 0
    started = time.monotonic()
    arns = [aws.start(REQUEST) for _ in range(count)]
    sfn = aws.client("stepfunctions")
    ended: dict[str, dict[str, Any]] = {}
    while len(ended) < count and time.monotonic() - started < timeout:
        # One listing a round, then a description of each execution that ended since: asking about every
        # running one twice a second would load the emulation the jobs share (the makespan comes from the
        # executions' own start and stop dates, not from when this loop saw them).
        running = {
            execution["executionArn"]
            for page in sfn.get_paginator("list_executions").paginate(
                stateMachineArn=aws.state_machine_arn, statusFilter="RUNNING"
            )
            for execution in page["executions"]
        }
        for arn in arns:
            if arn not in ended and arn not in running:
                ended[arn] = sfn.describe_execution(executionArn=arn)
        time.sleep(1.0)
    stops = [described["stopDate"].timestamp() for described in ended.values()]
    starts = [described["startDate"].timestamp() for described in ended.values()]
    makespan = (max(stops) - min(starts)) if ended else float("inf")
    failures = count - sum(1 for described in ended.values() if described["status"] == "SUCCEEDED")
    return Run(count, failures, len(simulator.exports), simulator.peak_active_exports, makespan, 0, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="20,50,200", help="job counts, comma-separated")
    parser.add_argument("--cap", type=int, default=5, help="concurrent exports the vendor allows")
    parser.add_argument("--generation", type=float, default=2.0, help="seconds each report takes")
    args = parser.parse_args()
    counts = [int(value) for value in args.jobs.split(",") if value.strip()]
    logging.disable(logging.CRITICAL)  # moto logs an error for every Choice on a path not present
    os.environ["TEST_DX_PASSWORD"] = PASSWORD
    recorder = LineRecorder()
    recorder.install()
    with DevExpressSimulator(users={"api": PASSWORD}, generation_seconds=args.generation) as simulator:
        simulator.max_active_exports = args.cap
        directory = Path(tempfile.mkdtemp(prefix="reportrelay-concurrency-"))
        connection = {
            "provider": "devexpress",
            "base_url": simulator.base_url,
            "auth": {"type": "oauth_password", "username": "api", "password": {"env": "TEST_DX_PASSWORD"}},
            "max_concurrent_jobs": args.cap,
        }
        connections = directory / "connections.json"
        connections.write_text(json.dumps({"connections": {"dx": connection}}), encoding="utf-8")
        environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "ERROR"}
        with LocalAws(environment) as aws:
            alone = run_jobs(aws, simulator, 1, timeout=120)
            one_job = alone.makespan
            print(
                f"DevExpress simulator: {args.generation:g} s generation, at most {args.cap} exports at "
                f"once; connection max_concurrent_jobs {args.cap}; the default poll policy",
                flush=True,
            )
            print(f"one job alone: {one_job:.1f} s (failures {alone.failures})\n", flush=True)
            header = (
                f"{'jobs':>5} {'failures':>8} {'queued':>6} {'dupl.':>5} {'peak':>4} {'makespan s':>10} "
                f"{'ideal s':>7} {'ratio':>5} {'waited':>6} {'out of order':>12}"
            )
            print(header, flush=True)
            met = alone.failures == 0
            for count in counts:
                recorder.reset()
                run = run_jobs(aws, simulator, count, timeout=max(600.0, 4 * count * one_job))
                run.out_of_order, run.joined = recorder.out_of_order(), len(recorder.joined)
                ideal = math.ceil(count / args.cap) * one_job
                ratio = run.makespan / ideal
                print(
                    f"{count:>5} {run.failures:>8} {run.queued:>6} {run.queued - count:>5} {run.peak:>4} "
                    f"{run.makespan:>10.1f} {ideal:>7.1f} {ratio:>5.2f} {run.joined:>6} "
                    f"{run.out_of_order:>12}",
                    flush=True,
                )
                if count >= 50:
                    met &= (
                        ratio <= GOAL_RATIO
                        and run.failures == 0
                        and run.queued == count
                        and run.peak <= args.cap
                        and run.out_of_order == 0
                    )
    print(
        f"\ngoals for 50 and more jobs: makespan <= {GOAL_RATIO} x ideal, 0 failures, 0 duplicates, peak <= "
        f"{args.cap}, slots in arrival order: {'PASS' if met else 'MISS'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
