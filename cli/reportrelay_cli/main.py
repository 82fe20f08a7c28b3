"""The ``reportrelay`` command: run a job locally, serve the provider simulators, replay failed schedules.

Exit codes: 0 the report is ready, 1 the report failed, 2 bad input (with a one-line message),
130 interrupted (Ctrl-C). ``jobs`` adds 3: not found or not allowed (reportrelay_cli.jobs).
``schedules replay``: 0 every start replayed, 1 some kept in the queue, 2 AWS refused or is unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from reportrelay import __version__
from reportrelay.config import Connections, SecretResolver, parse_job_request
from reportrelay.errors import ReportRelayError

EXIT_READY, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class BadInput(Exception):
    """Input the user must fix before anything runs."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except BadInput as error:
        print(f"reportrelay: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reportrelay", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"reportrelay {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run one job through the state machine on emulated AWS")
    run.add_argument("--connections", required=True, type=Path, help="connections JSON file")
    run.add_argument("--request", required=True, type=Path, help="job request JSON file")
    run.add_argument("--out", required=True, type=Path, help="folder the report file is copied to")
    run.add_argument("--json", action="store_true", help="print only the completion event's detail as JSON")
    run.add_argument("--verbose", action="store_true", help="show the functions' logs on stderr")
    run.set_defaults(command=command_run)

    validate = commands.add_parser(
        "validate",
        help="check connections, job requests, schedules, the access policy and a local identities file; "
        "run nothing",
    )
    validate.add_argument("--connections", type=Path, help="connections JSON file")
    validate.add_argument(
        "--request", type=Path, action="append", default=[], help="job request JSON file (repeatable)"
    )
    validate.add_argument("--schedules", type=Path, help="schedules JSON file (config/schedules.json)")
    validate.add_argument("--access", type=Path, help="access policy JSON file (config/access.json)")
    validate.add_argument("--identities", type=Path, help="local identities JSON file (the local IAM API)")
    validate.set_defaults(command=command_validate)

    _add_schedules_commands(commands)

    from reportrelay_cli.jobs import add_jobs_commands
    from reportrelay_cli.local.serve import add_serve_command
    from reportrelay_cli.sandbox.cli import add_sandbox_commands
    from reportrelay_cli.vendorcheck import add_vendor_commands

    add_jobs_commands(commands)
    add_serve_command(commands)
    add_sandbox_commands(commands)
    add_vendor_commands(commands)
    return parser


def _add_schedules_commands(commands: Any) -> None:
    from reportrelay_cli import replay

    schedules = commands.add_parser("schedules", help="the deployed schedules: replay their failed starts")
    actions = schedules.add_subparsers(required=True, metavar="ACTION")
    command = actions.add_parser(
        "replay",
        help="start again the scheduled runs waiting in the dead-letter queue (docs/deploy.md)",
    )
    command.add_argument(
        "--queue-url", help=f"the dead-letter queue (default: the stack's {replay.QUEUE_URL_OUTPUT} output)"
    )
    command.add_argument(
        "--function", help=f"the function to invoke (default: the stack's {replay.FUNCTION_OUTPUT} output)"
    )
    command.add_argument(
        "--stack", default=replay.DEFAULT_STACK, help="the stack whose outputs fill in the two above"
    )
    command.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    command.add_argument("--dry-run", action="store_true", help="say what would be replayed; change nothing")
    command.add_argument(
        "--max", type=_positive, default=replay.DEFAULT_LIMIT, help="replay at most N messages (default 100)"
    )
    command.set_defaults(command=command_schedules_replay)


def writable_folder(path: Path, flag: str) -> Path:
    """``path`` as a folder files can be written to (made if missing); BadInput saying what is wrong."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"{flag} {path} is a file, not a folder: give a folder for the report")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise BadInput(f"{flag} {path} cannot be written to: {error.strerror or error}") from None
    return path


#: Libraries whose own logs are for debugging them, not for a user's terminal: moto's Step Functions
#: interpreter logs its internals at ERROR on every failed execution.
_LIBRARY_LOGGERS = ("moto",)


def quiet_libraries(verbose: bool) -> None:
    """Keep the libraries' logs off the terminal unless ``--verbose`` asks for them."""
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def load_job(connections_path: Path, request_path: Path) -> tuple[Connections, dict[str, Any]]:
    """Read and check everything the job needs before any AWS emulation starts; BadInput otherwise."""
    from reportrelay.providers import open_provider, provider_class

    try:
        connections = Connections.from_file(connections_path)
        document = _read_json(request_path, "request")
        request = parse_job_request(document)
        connection = connections.get(request.connection)
        provider_class(connection.provider).validate(request)
        open_provider(connection, SecretResolver())  # resolves the secrets: a missing one fails here
    except ReportRelayError as error:
        raise BadInput(str(error)) from None
    return connections, document


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BadInput(f"cannot read {what} file {path}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(
            f"{what} file {path} is not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
        ) from None


def command_validate(args: argparse.Namespace) -> int:
    """Each file given, checked as the system would read it; one line per file, exit 2 on the first fault.

    Requests and schedules are checked against ``--connections`` as Submit would check them (the report,
    its format and fields, for the connection's provider), and a schedule's team against the teams its
    connection is shared with (``--access`` names the admin team, who may use any). No secret is read
    and no provider is called.
    """
    from reportrelay.access import AccessPolicy
    from reportrelay.providers import provider_class
    from reportrelay_cli.local.identities import LocalIdentities
    from reportrelay_cli.schedulefile import load_schedules

    if not (args.connections or args.access or args.identities or args.request or args.schedules):
        raise BadInput(
            "name at least one file: --connections, --request, --schedules, --access or --identities"
        )
    if (args.request or args.schedules) and not args.connections:
        raise BadInput("--request and --schedules are checked against connections: give --connections too")
    try:
        policy = AccessPolicy.from_file(args.access) if args.access else None
        if args.connections:
            connections = Connections.from_file(args.connections)
            print(f"{args.connections}: {len(connections.names())} connection(s) valid")
        for path in args.request:
            document = _read_json(path, "request")
            try:
                request = parse_job_request(document)
                provider = connections.get(request.connection).provider
                provider_class(provider).validate(request)
            except ReportRelayError as error:
                raise BadInput(f"{path}: {error}") from None
            print(f"{path}: valid; {request.format} from connection {request.connection} ({provider})")
        if args.schedules:
            if not args.schedules.exists():
                raise BadInput(f"cannot read schedules file {args.schedules}: no such file")
            admin = policy.admin_team if policy is not None else None
            schedules = load_schedules(args.schedules, connections, admin)
            enabled = sum(schedule.enabled for schedule in schedules)
            print(f"{args.schedules}: {len(schedules)} schedule(s) valid, {enabled} enabled")
        if policy is not None:
            admin_team = policy.admin_team or "(none)"
            print(f"{args.access}: valid; admin team {admin_team}, {len(policy.roles)} role mapping(s)")
        if args.identities:
            identities = LocalIdentities.from_file(args.identities)
            print(f"{args.identities}: {len(identities)} identit(y/ies) valid")
    except ReportRelayError as error:
        raise BadInput(str(error)) from None
    return EXIT_READY


def command_run(args: argparse.Namespace) -> int:
    from reportrelay_cli.local.aws import LocalAws
    from reportrelay_cli.local.runner import JobInterrupted, run_job

    os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO" if args.verbose else "ERROR"
    writable_folder(args.out, "--out")  # before anything runs: a report fetched must have somewhere to go
    load_job(args.connections, args.request)
    quiet_libraries(args.verbose)
    request = json.loads(args.request.read_text(encoding="utf-8"))
    environment = {
        "REPORTRELAY_CONNECTIONS_FILE": str(args.connections.resolve()),
        "POWERTOOLS_LOG_LEVEL": "INFO" if args.verbose else "ERROR",
    }
    progress = None if args.json else _print_progress
    try:
        # No job API here: the event's download_url is null, and the file is copied to --out instead.
        with LocalAws(environment, job_api=False) as aws:
            outcome = run_job(aws, request, out_dir=args.out, on_progress=progress)
    except JobInterrupted as interrupted:
        _print_interrupted(interrupted.job_id, request["connection"])
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(outcome_detail(outcome), sort_keys=True))
    else:
        _print_outcome(outcome)
    return EXIT_READY if outcome.ready else EXIT_FAILED


def outcome_detail(outcome: Any) -> dict[str, Any]:
    """The completion event's detail; for an execution that ended without one, a detail saying so."""
    if outcome.detail is not None:
        return dict(outcome.detail)
    return {
        "job_id": outcome.execution_arn.rsplit(":", 1)[-1],
        "status": "FAILED",
        "error": {
            "code": "NoCompletionEvent",
            "message": f"the execution ended {outcome.execution_status} without announcing an outcome",
        },
        "object": None,
        "download_url": None,
    }


def _print_interrupted(job_id: str, connection: str) -> None:
    """What Ctrl-C leaves behind: the emulation is gone, the provider may still be at work on the report."""
    print(
        f"reportrelay: interrupted: job {job_id} may still be queued or generating at the provider "
        f"of connection {connection!r}",
        file=sys.stderr,
    )
    print(
        "reportrelay: the local emulation stopped with this command, so nothing here can cancel it; "
        "the provider may still finish it (cancel it there if it must not run)",
        file=sys.stderr,
        flush=True,
    )


def command_schedules_replay(args: argparse.Namespace) -> int:
    """Each message: what schedule and due time, why it failed, and the replay's outcome."""
    from reportrelay_cli import replay

    try:
        aws = replay.clients(args.region)
        queue_url, function = args.queue_url, args.function
        if queue_url is None or (function is None and not args.dry_run):
            outputs = replay.stack_outputs(aws.cloudformation, args.stack)
            queue_url = queue_url or _output(outputs, replay.QUEUE_URL_OUTPUT, args.stack)
            function = function or outputs.get(replay.FUNCTION_OUTPUT)
            if function is None and not args.dry_run:
                function = _output(outputs, replay.FUNCTION_OUTPUT, args.stack)
        summary = replay.replay(
            aws.sqs,
            queue_url,
            invoke=None if args.dry_run else replay.lambda_invoker(aws.lambda_),
            function=function or "the start function",
            out=sys.stdout,
            dry_run=args.dry_run,
            limit=args.max,
        )
    except replay.ReplayError as error:
        raise BadInput(str(error)) from None
    if args.dry_run:
        print(f"dry run: {summary.read} message(s) read; nothing invoked or deleted", file=sys.stderr)
        return EXIT_READY
    print(f"{len(summary.replayed)} replayed, {len(summary.kept)} kept in the queue", file=sys.stderr)
    return EXIT_FAILED if summary.kept else EXIT_READY


def _output(outputs: dict[str, str], name: str, stack: str) -> str:
    if name not in outputs:
        raise BadInput(
            f"stack {stack} has no {name} output (no schedules deployed, or deployed before the dead-letter "
            f"queue): pass --{'queue-url' if 'Queue' in name else 'function'}"
        )
    return outputs[name]


def _print_progress(progress: Any) -> None:
    parts = [f"[{progress.elapsed_seconds:6.1f}s]", f"{progress.state:<16}"]
    if progress.status:
        parts.append(progress.status)
    if progress.progress is not None:
        parts.append(f"{progress.progress:.0f}%")
    if progress.polls:
        parts.append(f"polls={progress.polls}")
    print(" ".join(parts), file=sys.stderr, flush=True)


def _print_outcome(outcome: Any) -> None:
    """The completion event on stdout, then one line on stderr that says how it ended: READY or FAILED."""
    if outcome.detail_type is not None:
        event = {"source": "reportrelay", "detail-type": outcome.detail_type, "detail": outcome.detail}
        print(json.dumps(event, indent=2), flush=True)
    print(outcome_line(outcome), file=sys.stderr, flush=True)


def outcome_line(outcome: Any) -> str:
    """``READY <key> -> <file>`` or ``FAILED <code>: <message>``: the last line a run prints."""
    if outcome.ready:
        stored = outcome.detail["object"]["key"]
        return f"READY {stored} -> {outcome.local_file}" if outcome.local_file else f"READY {stored}"
    error = outcome_detail(outcome).get("error") or {}
    return f"FAILED {error.get('code', 'Unknown')}: {error.get('message', 'no error was reported')}"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # The module's own copy, not __main__'s: BadInput raised by the other modules is reportrelay_cli.main's.
    from reportrelay_cli.main import main as package_main

    sys.exit(package_main())
