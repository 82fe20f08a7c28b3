"""``reportrelay sandbox`` (serve the provider simulators) and ``reportrelay demo`` (use them end to end)."""

from __future__ import annotations

import argparse
import errno
import hashlib
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportrelay.vendors import FIRST_SANDBOX_PORT, VENDORS, last_sandbox_port, sandbox_ports
from reportrelay_cli.sandbox.server import Faults, Simulator, run_simulators

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SANDBOX_SECRET = "sandbox-secret"


@dataclass(frozen=True)
class SandboxProvider:
    """One simulator as the sandbox serves it (from ``reportrelay.vendors``): default port, example
    connection and request.

    ``factory`` names a module-level ``sandbox_simulator(*, port, faults, secret, generation_seconds,
    token_lifetime_seconds, fail_reports)`` function in the simulator's module.
    """

    key: str
    port: int
    connection: str
    request_file: str
    factory: str
    #: Consecutive ports it serves from ``port`` (the API, then e.g. a file host of its own).
    ports: int = 1

    def build(self, port: int, faults: Faults, knobs: dict[str, Any] | None = None) -> Simulator:
        module_name, _, function_name = self.factory.partition(":")
        make = getattr(importlib.import_module(module_name), function_name)
        secret = os.environ.get(SANDBOX_SECRET_ENV, SANDBOX_SECRET)
        return make(port=port, faults=faults, secret=secret, **{**DEMO_KNOBS, **(knobs or {})})


SANDBOX_SECRET_ENV = "SANDBOX_SECRET"
DEMO_KNOBS: dict[str, Any] = {"generation_seconds": 3.0, "token_lifetime_seconds": 1199, "fail_reports": None}

#: One per vendor of the registry (reportrelay.vendors), in its order and on its ports.
SANDBOX_PROVIDERS = [
    SandboxProvider(
        vendor.key, port, vendor.sandbox_connection, vendor.example_request, vendor.simulator, vendor.ports
    )
    for vendor, port in zip(VENDORS, sandbox_ports().values(), strict=True)
]


def add_sandbox_commands(commands: Any) -> None:
    sandbox = commands.add_parser("sandbox", help="serve the provider simulators on loopback")
    sandbox.add_argument(
        "--port-offset", type=int, default=0, help=f"add to every default port ({FIRST_SANDBOX_PORT}...)"
    )
    sandbox.add_argument("--generation-seconds", type=float, default=5.0, help="time to generate a report")
    sandbox.add_argument("--token-lifetime", type=float, default=1199, help="token lifetime in seconds")
    sandbox.add_argument("--fail", metavar="MESSAGE", help="make every report fail with this message")
    sandbox.add_argument("--throttle", type=int, default=0, help="answer the next N API calls with 429")
    sandbox.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds sent with a 429 (0: none sent)"
    )
    sandbox.add_argument("--server-errors", type=int, default=0, help="answer the next N API calls with 5xx")
    sandbox.add_argument("--server-error-status", type=int, default=503, help="the 5xx status to answer")
    sandbox.add_argument("--stall", type=int, default=0, help="hold the next N API answers --stall-seconds")
    sandbox.add_argument("--stall-seconds", type=float, default=5.0, help="how long a stalled answer waits")
    sandbox.add_argument("--slow", type=float, default=0.0, help="delay every API answer (seconds)")
    sandbox.add_argument("--break-downloads", type=int, default=0, help="cut the next N downloads half-way")
    sandbox.add_argument(
        "--truncate-downloads", type=int, default=0, help="send the next N downloads short of Content-Length"
    )
    sandbox.add_argument("--reset-downloads", type=int, default=0, help="reset the next N downloads mid-body")
    sandbox.add_argument(
        "--expire-tokens-after", type=int, help="revoke issued tokens after this many more API answers"
    )
    sandbox.add_argument("--only-paths", metavar="REGEX", help="aim the request faults at matching paths")
    sandbox.set_defaults(command=command_sandbox)

    demo = commands.add_parser("demo", help="start the sandbox and fetch a report from each simulator")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the fetched files")
    demo.set_defaults(command=command_demo)


def command_sandbox(args: argparse.Namespace) -> int:
    simulators = []
    for provider in SANDBOX_PROVIDERS:
        faults = Faults(
            throttle_next=args.throttle,
            throttle_retry_after=args.retry_after or None,
            server_errors_next=args.server_errors,
            server_error_status=args.server_error_status,
            stall_next=args.stall,
            stall_seconds=args.stall_seconds,
            slow_seconds=args.slow,
            break_downloads_next=args.break_downloads,
            truncate_downloads_next=args.truncate_downloads,
            reset_downloads_next=args.reset_downloads,
            expire_tokens_after=args.expire_tokens_after,
            only_paths=args.only_paths,
        )
        knobs = {
            "generation_seconds": args.generation_seconds,
            "token_lifetime_seconds": args.token_lifetime,
            "fail_reports": args.fail,
        }
        simulators.append(provider.build(provider.port + args.port_offset, faults, knobs))
    # The identity provider goes on the next port, fault-free: the knobs are aimed at the report APIs.
    from reportrelay_cli.sandbox.oidc import sandbox_issuer  # here: only this command needs PyJWT

    secret = os.environ.get(SANDBOX_SECRET_ENV, SANDBOX_SECRET)
    simulators.append(sandbox_issuer(port=last_sandbox_port() + args.port_offset, secret=secret))
    for simulator in simulators:  # before anything is announced: a taken port is the user's to fix
        for server in (simulator, *simulator.companions()):
            _check_bindable(server.port, args.port_offset)

    binding: list[Simulator] = []  # the simulator being started, until it is announced

    def each() -> Iterator[Simulator]:  # run_simulators starts each in turn, then announces it
        for simulator in simulators:
            binding[:] = [simulator]
            yield simulator

    def announce(name: str, base_url: str) -> None:
        started = binding[:]
        binding.clear()
        print(f"{name:<16} {base_url}", flush=True)
        for companion in started[0].companions() if started else ():
            print(f"{companion.name:<16} {companion.base_url}", flush=True)

    print(
        "reportrelay sandbox: simulators on loopback (Ctrl-C to stop); every credential is "
        f"'{secret}' (set {SANDBOX_SECRET_ENV} to change it); the OIDC issuer signs in 'alice' "
        "(group finance) through the public client 'reportrelay-local'",
        flush=True,
    )
    try:
        run_simulators(each(), announce=announce)
    except OSError as error:  # a port taken since the check above
        if not binding:
            raise
        from reportrelay_cli.main import BadInput

        raise BadInput(_unbindable(binding[0].port, args.port_offset, error)) from None
    return 0


PORT_FLAG = "--port-offset N"


def _check_bindable(port: int, offset: int) -> None:
    """BadInput naming ``port`` and the flag that moves it, unless a simulator could listen on it now."""
    from reportrelay_cli.main import BadInput

    first, last = FIRST_SANDBOX_PORT, last_sandbox_port()
    if not 1 <= port <= 65535:
        raise BadInput(
            f"--port-offset {offset} puts port {port} out of range (1-65535): the sandbox serves "
            f"{first}+N to {last}+N; choose another with {PORT_FLAG}"
        )
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the simulators' servers bind
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise BadInput(_unbindable(port, offset, error)) from None


def _unbindable(port: int, offset: int, error: OSError) -> str:
    first, last = FIRST_SANDBOX_PORT + offset, last_sandbox_port() + offset
    if error.errno == errno.EADDRINUSE:
        why = "is in use (by another program)"
    elif error.errno == errno.EACCES:
        why = "cannot be listened on (permission denied)"
    else:
        why = f"cannot be listened on ({error.strerror or error})"
    return f"port {port} {why}: choose another with {PORT_FLAG} (the sandbox serves ports {first}-{last})"


def command_demo(args: argparse.Namespace) -> int:
    """Serve every simulator, then run each example request through ``reportrelay run``."""
    from reportrelay_cli.main import writable_folder

    out_dir = writable_folder(args.out, "--out")
    connections = json.loads((EXAMPLES / "connections.json").read_text(encoding="utf-8"))
    env = {**os.environ, SANDBOX_SECRET_ENV: os.environ.get(SANDBOX_SECRET_ENV, SANDBOX_SECRET)}
    simulators: dict[str, Simulator] = {}
    try:
        for provider in SANDBOX_PROVIDERS:
            simulator = provider.build(0, Faults()).start()
            simulators[provider.key] = simulator
            _point_at(connections["connections"][provider.connection], simulator.base_url)
        with tempfile.TemporaryDirectory(prefix="reportrelay-demo-") as scratch:
            connections_file = Path(scratch) / "connections.json"
            connections_file.write_text(json.dumps(connections, indent=2), encoding="utf-8")
            # One process per example, all at once (each simulator serves one of them); their transcripts
            # are printed in order as they finish.
            with ThreadPoolExecutor(len(SANDBOX_PROVIDERS)) as pool:
                runs = [
                    pool.submit(
                        _run_example,
                        provider,
                        simulators[provider.key],
                        connections_file,
                        out_dir,
                        env,
                    )
                    for provider in SANDBOX_PROVIDERS
                ]
                results = []
                for run in runs:
                    transcript, line = run.result()
                    print(transcript, flush=True)
                    results.append(line)
    finally:
        for simulator in simulators.values():
            simulator.stop()
    print()
    for line in results:
        print(line.text)
    failures = [line.failure for line in results if line.failure]
    if failures:  # the last line says it failed, and why
        print(f"FAILED {len(failures)} of {len(results)}: {'; '.join(failures)}", flush=True)
    return 0 if not failures else 1


@dataclass(frozen=True)
class DemoLine:
    text: str
    #: ``<provider> <code>: <message>`` when this example failed.
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _run_example(
    provider: SandboxProvider,
    simulator: Simulator,
    connections_file: Path,
    out_dir: Path,
    env: dict[str, str],
) -> tuple[str, DemoLine]:
    """Run one example through ``reportrelay run``: what it printed (after the command), and its line."""
    command = [
        sys.executable, "-m", "reportrelay_cli.main", "run",
        "--connections", str(connections_file),
        "--request", str(EXAMPLES / provider.request_file),
        "--out", str(out_dir / provider.key),
    ]  # fmt: skip
    started = time.monotonic()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    transcript = (
        f"$ reportrelay run --connections <sandbox> --request examples/{provider.request_file} "
        f"--out {out_dir / provider.key}\n{finished.stdout}{finished.stderr}"
    )
    try:
        event = json.loads(finished.stdout)
        detail = event["detail"]
    except (json.JSONDecodeError, KeyError):
        why = f"exit {finished.returncode}, no completion event"
        return transcript, DemoLine(f"{provider.key:<16} ERROR   {why}", f"{provider.key} {why}")
    if detail["status"] != "READY":
        error = detail["error"]
        why = f"{error['code']}: {error['message']}"
        return transcript, DemoLine(f"{provider.key:<16} FAILED  {why}", f"{provider.key} {why}")
    stored = detail["object"]
    local_file = out_dir / provider.key / stored["filename"]
    local_sha = hashlib.sha256(local_file.read_bytes()).hexdigest()
    matches = local_sha == stored["sha256"] and local_sha in simulator.served.values()
    verdict = "matches the simulator" if matches else "DOES NOT MATCH the simulator"
    return transcript, DemoLine(
        f"{provider.key:<16} READY   {local_file}  {stored['size']:,} bytes  sha256 {local_sha[:16]}… "
        f"({verdict})  {seconds:.1f}s  polls={detail['polls']}",
        None if matches else f"{provider.key} the file does not match what the simulator served",
    )


def _point_at(connection: dict[str, Any], base_url: str) -> None:
    """Aim an example connection at a simulator, including an identity service it also serves."""
    default_base = connection["base_url"].rstrip("/")
    connection["base_url"] = base_url
    token_url = connection.get("auth", {}).get("token_url")
    if isinstance(token_url, str) and token_url.startswith(default_base + "/"):
        connection["auth"]["token_url"] = base_url + token_url[len(default_base) :]
