"""The ``loadgen`` command: ``run``, ``worker``, ``serve``, ``endpoint`` and ``keygen``."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.children import stop_resource_tracker
from loadgen.core.units import format_size
from loadgen.engine.settings import SETTINGS, EngineSetup, Setting, SettingError, settings_from
from loadgen.protocol.keys import (
    KeyMaterialError,
    generate_private_key,
    load_private_key,
    private_key_base64,
    public_key_base64,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DESCRIPTION = """\
loadgen: a load-testing tool for Dispatch endpoints.

It plays the Dispatch service: it accepts Dispatch gRPC calls, drives your
endpoint with signed RunRequests (retries, tail calls, fan-out) and measures
what happens. Everything binds to 127.0.0.1 unless told otherwise.
"""

EPILOG = "Run 'loadgen COMMAND --help' for the options of a command."


def _signing_key_from(value: str | None) -> tuple[Ed25519PrivateKey, bool]:
    source = "--signing-key"
    if value is None:
        value, source = os.environ.get("LOADGEN_SIGNING_KEY"), "LOADGEN_SIGNING_KEY"
    if value is None:
        return generate_private_key(), True
    return load_private_key(value, source), False


class _StopSignal:
    """Turns SIGINT/SIGTERM into an event the main thread waits on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def wait(self) -> None:
        while not self.event.wait(0.5):
            pass


def cmd_serve(args: argparse.Namespace) -> int:
    """``loadgen serve``: the sharded Dispatch service in front of one endpoint."""
    from loadgen.engine.supervisor import ShardFailed, Supervisor

    try:
        settings = settings_from(
            {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name) is not None},
            _flag_of,
            flags=True,
        )
    except SettingError as exc:
        print(f"loadgen serve: {_flag_of(exc.name)}: {exc.problem}", file=sys.stderr)
        return EXIT_USAGE
    signing_key, generated_key = _signing_key_from(args.signing_key)
    api_key = args.api_key or os.environ.get("DISPATCH_API_KEY")
    generated_api_key = not api_key
    api_key = api_key or secrets.token_hex(16)
    setup = EngineSetup(
        endpoint_url=args.endpoint_url.rstrip("/"),
        api_key=api_key,
        signing_key=private_key_base64(signing_key),
        host=args.host,
        port=args.port,
        connect_port=None if args.connect_port < 0 else args.connect_port,
        settings=settings,
    )
    stop = _StopSignal()
    supervisor = Supervisor(setup)
    try:
        supervisor.start()
    except (ShardFailed, ValueError) as exc:
        print(f"loadgen serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(
            f"loadgen: {supervisor.shards} shard(s) serve the Dispatch API on {supervisor.url} (gRPC), "
            f"dispatching to {setup.endpoint_url}",
            file=sys.stderr,
        )
        print(f"loadgen: shard addresses {' '.join(supervisor.shard_addresses)}", file=sys.stderr)
        if supervisor.connect_url:
            print(f"loadgen: Connect ingress (dispatch-py 0.8) on {supervisor.connect_url}", file=sys.stderr)
        if generated_key:
            print("loadgen: generated a signing key for this run (pass --signing-key to keep one)", file=sys.stderr)
        print(f'export DISPATCH_API_URL="{supervisor.url}"')
        if generated_api_key:
            print(f'export DISPATCH_API_KEY="{api_key}"')
        print(f'export DISPATCH_ENDPOINT_URL="{setup.endpoint_url}"')
        print(f'export DISPATCH_VERIFICATION_KEY="{public_key_base64(signing_key.public_key())}"', flush=True)
        while not stop.event.wait(1.0):
            for index in supervisor.check():
                print(
                    f"loadgen: shard {index} died and was restarted (lost so far: {supervisor.lost})", file=sys.stderr
                )
        print(f"loadgen: {stop.signal_name}, draining (up to {args.drain_timeout:g}s)", file=sys.stderr)
        final = supervisor.drain(
            args.drain_timeout,
            f"loadgen serve stopped ({stop.signal_name}) before the call finished"
            f" (drain timeout {args.drain_timeout:g}s)",
        )
    finally:
        supervisor.close()
        stop_resource_tracker()  # the shards are joined: nothing of serve outlives it
    print(final.table(), file=sys.stderr)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """``loadgen stats``: the merged statistics of a running engine."""
    from loadgen.engine.client import EngineClient, EngineUnavailable

    api_key = args.api_key or os.environ.get("DISPATCH_API_KEY")
    if not api_key:
        print("loadgen stats: an API key is needed (--api-key or DISPATCH_API_KEY)", file=sys.stderr)
        return EXIT_USAGE
    with EngineClient(api_key, timeout=args.timeout) as client:
        try:
            snapshot = client.stats(args.url, local=args.local)
        except EngineUnavailable as exc:
            print(f"loadgen stats: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(snapshot.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(snapshot.table())
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    """``loadgen keygen``: a fresh key pair, as shell lines: ``eval "$(loadgen keygen)"`` exports both."""
    key = generate_private_key()
    print('# Private half, for loadgen: serve --signing-key, or signing_key = "env:LOADGEN_SIGNING_KEY" in a scenario.')
    print("# Keep it secret.")
    print(f"export LOADGEN_SIGNING_KEY={private_key_base64(key)}")
    print("# Public half: for your endpoint (the SDK reads DISPATCH_VERIFICATION_KEY).")
    print(f"export DISPATCH_VERIFICATION_KEY={public_key_base64(key.public_key())}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``loadgen run``: a scenario end to end (see :mod:`loadgen.runs.run`)."""
    from loadgen.runs.run import RunOptions, run

    options = RunOptions(
        scenario=args.scenario,
        web=args.web,
        web_port=args.web_port,
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=args.duration,
        shards=args.shards,
        processes=args.processes,
        stop_timeout=args.stop_timeout,
        results=args.results,
        master=_master_setup(args),
        find_capacity=args.find_capacity,
    )
    try:
        return run(options)
    finally:
        stop_resource_tracker()  # its shards are joined: nothing of the run outlives it


def _master_setup(args: argparse.Namespace) -> Any:
    """``--master`` and its options, or ``None`` for a run on this machine alone."""
    if not args.master:
        return None
    from loadgen.runs.locust_process import MasterSetup

    return MasterSetup(
        expect_workers=args.expect_workers,
        bind_host=args.master_bind_host,
        bind_port=args.master_bind_port,
        worker_timeout=args.worker_timeout,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    """``loadgen worker``: one load machine of a ``loadgen run --master`` (see :mod:`loadgen.runs.worker`)."""
    from loadgen.runs.worker import WorkerOptions, work

    try:
        return work(WorkerOptions(master=args.master, bind_host=args.bind_host, connect_timeout=args.timeout))
    finally:
        stop_resource_tracker()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _duration(text: str) -> float:
    from loadgen.core.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown_default(setting: Setting) -> str:
    if setting.name == "shards":
        return f"one per core, {os.cpu_count() or 1}"
    if setting.name == "max_backoff":
        return "2s, at least --backoff"
    if setting.kind == "duration":
        return f"{setting.default:g}s"
    if setting.kind == "size":
        return format_size(setting.default)
    return str(setting.default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadgen", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version="loadgen 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a scenario: target, shards and Locust, then results and gates",
        description="Start what SCENARIO needs (the reference endpoint or its URL, the shards, Locust), run it "
        "headless with live progress (or with the Locust web UI on 127.0.0.1), tear everything down, and write "
        "results/<UTC time>-<scenario>/ (summary.json, report.html, gates.json, junit.xml, Locust CSVs). Without "
        "SCENARIO: the quickstart, about 20 s against the reference endpoint. A scenario without [gates] passes "
        "only if no call failed, expired, was cancelled at the end, was lost or was wrong. Exit code: 0 every "
        "gate passed, 1 a gate failed, 2 usage or scenario error, 3 the run itself failed.",
    )
    run.add_argument("scenario", metavar="SCENARIO", nargs="?", help="a scenario file (scenarios/*.toml)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true", help="no web UI, live progress in the terminal (default)")
    mode.add_argument("--web", action="store_true", help="serve the Locust web UI on 127.0.0.1:--web-port")
    run.add_argument("--web-port", type=int, default=8089, help="web UI port (default: %(default)s)")
    run.add_argument("--users", type=int, help="closed model: Locust users (overrides the scenario)")
    run.add_argument("--spawn-rate", type=float, help="closed model: users started per second")
    run.add_argument("--duration", type=_duration, help="closed model: how long, e.g. 30s or 5m")
    run.add_argument("--shards", type=int, help="engine worker processes (overrides the scenario)")
    run.add_argument("--processes", type=int, help="Locust worker processes (-1: one per core)")
    run.add_argument(
        "--stop-timeout",
        type=_duration,
        help="after the load stops, how long calls in flight may take to end before the run ends and reports "
        "them in flight (overrides the scenario's load.stop_timeout; default 10s)",
    )
    run.add_argument(
        "--find-capacity",
        action="store_true",
        help='search for the highest arrival rate that passes the scenario\'s gates (as [load] model = "search"): '
        "open-model steps from [load.search] start_rate, doubling until a step fails, then bisecting to the "
        "precision (default 5%%); each step is a warm-up (default 4s) plus a judged hold (default 10s). Prints "
        "the knee table and the capacity; exit 0 when it meets [load.search] min_capacity (without one: a "
        "rate passed), else 1",
    )
    run.add_argument("--results", default="results", help="folder for run folders (default: %(default)s)")
    several = run.add_argument_group(
        "several machines",
        "With --master this machine runs no load: it waits for --expect-workers 'loadgen worker' machines, sends "
        "each the scenario and keys (over Locust's connection, never printed), starts the load once every worker's "
        "shards serve, and writes the one results folder with every worker's shard statistics merged. A worker that "
        "dies mid-run: its calls in flight count as lost (the verdict fails) and the run goes on. Workers reach this "
        "machine on --master-bind-port, and the endpoint (the reference endpoint runs here, on --master-bind-host). "
        "Whoever reaches --master-bind-port gets the run's keys: open it to the load machines only.",
    )
    several.add_argument("--master", action="store_true", help="be the master of 'loadgen worker' machines")
    several.add_argument(
        "--expect-workers",
        type=_positive,
        default=1,
        metavar="N",
        help="workers to wait for before the start (default: 1)",
    )
    several.add_argument(
        "--master-bind-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address workers connect to, and the reference endpoint's; 0.0.0.0 for every interface "
        "(default: %(default)s)",
    )
    several.add_argument(
        "--master-bind-port", type=int, default=5557, metavar="PORT", help="Locust's master port (default: %(default)s)"
    )
    several.add_argument(
        "--worker-timeout",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="give up (exit code 3) when fewer than --expect-workers are ready this long after the start "
        "(default: 60s)",
    )
    run.set_defaults(handler=cmd_run)

    worker = commands.add_parser(
        "worker",
        help="be one load machine of a 'loadgen run --master'",
        description="Connect to a 'loadgen run --master' and take part in its run: receive the scenario and keys "
        "from the master (no scenario file needed here), start this machine's own shards (the scenario's [engine]) "
        "and a Locust worker that drives them, and report their statistics to the master until its run ends. Start "
        "workers before the master's run starts: a worker that comes later is turned away. Exit code: 0 the master "
        "ended the run, 2 usage error, 3 no run (master unreachable, turned away, shards failed).",
    )
    worker.add_argument(
        "--master", required=True, metavar="HOST[:PORT]", help="the master's address (port default: 5557)"
    )
    worker.add_argument(
        "--bind-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address this machine's shards bind (default: %(default)s)",
    )
    worker.add_argument(
        "--timeout",
        type=_duration,
        default=600.0,
        metavar="DURATION",
        help="give up (exit code 3) when no run came from the master this long after the start (default: 10m)",
    )
    worker.set_defaults(handler=cmd_worker)

    commands.add_parser(
        "compare",
        help="gate on regressions between two runs (BASELINE CURRENT --max-regression 10%%)",
        add_help=False,  # 'loadgen compare ...' is handed to its own parser, see main()
    )

    serve = commands.add_parser(
        "serve",
        help="run the sharded Dispatch service in front of an endpoint",
        description="Run the Dispatch API (gRPC) in --shards worker processes that share one address, and drive "
        "ENDPOINT_URL with signed RunRequests over pooled HTTP/2 (or HTTP/1.1). Prints the environment an SDK "
        "client and endpoint need once every shard serves, then runs until SIGINT/SIGTERM, drains and prints the "
        "final statistics.",
    )
    serve.add_argument(
        "endpoint_url", metavar="ENDPOINT_URL", help="base URL of the endpoint, e.g. http://127.0.0.1:8000"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=4450, help="gRPC port, 0 for any free one (default: %(default)s)")
    serve.add_argument(
        "--api-key",
        help="API key clients must send as 'authorization: Bearer KEY' (default: DISPATCH_API_KEY, else a random "
        "key, printed once)",
    )
    serve.add_argument(
        "--signing-key",
        help="Ed25519 private key: base64 of the raw 32-byte seed, or a PEM file (default: LOADGEN_SIGNING_KEY, "
        "else a new key; its public half is printed)",
    )
    serve.add_argument(
        "--connect-port",
        type=int,
        default=-1,
        help="also serve the Connect protocol (dispatch-py 0.8) on this port, 0 for any (default: off)",
    )
    for setting in SETTINGS:  # the engine's settings: the names, kinds and bounds of a scenario's [engine]
        serve.add_argument(
            setting.flag,
            metavar=None if setting.choices else setting.name.upper(),
            choices=setting.choices or None,
            help=f"{setting.help} (default: {_shown_default(setting)})",
        )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="on SIGINT/SIGTERM, seconds to let in-flight calls finish; the rest end as cancelled "
        "(default: %(default)s)",
    )
    serve.set_defaults(handler=cmd_serve)

    stats = commands.add_parser(
        "stats",
        help="print the merged statistics of a running 'loadgen serve'",
        description="Ask a running engine for its statistics, merged exactly across shards.",
    )
    stats.add_argument("url", metavar="URL", help="the DISPATCH_API_URL that 'loadgen serve' printed")
    stats.add_argument("--api-key", help="the API key (default: DISPATCH_API_KEY)")
    stats.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    stats.add_argument("--local", action="store_true", help="only the shard that answers, not the merge")
    stats.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default: %(default)s)")
    stats.set_defaults(handler=cmd_stats)

    commands.add_parser(
        "endpoint",
        help="run the built-in reference endpoint",
        add_help=False,  # 'loadgen endpoint ...' is handed to the endpoint's own parser, see main()
    )

    keygen = commands.add_parser(
        "keygen",
        help="print a new Ed25519 key pair",
        description="Print a new key pair as shell export lines: LOADGEN_SIGNING_KEY (private, for loadgen) and "
        'DISPATCH_VERIFICATION_KEY (public, for the endpoint). eval "$(loadgen keygen)" sets both.',
    )
    keygen.set_defaults(handler=cmd_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["endpoint"]:
        from loadgen.endpoint.__main__ import main as endpoint_main

        return endpoint_main(argv[1:], prog="loadgen endpoint")
    if argv[:1] == ["compare"]:
        from loadgen.runs.compare import compare_main

        return compare_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
    except KeyMaterialError as exc:
        print(f"loadgen {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
