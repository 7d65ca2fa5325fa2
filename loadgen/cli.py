"""The ``loadgen`` command: ``run``, ``serve``, ``endpoint`` and ``keygen``."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.keys import (
    KeyMaterialError,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_base64,
    public_key_base64,
)

EXIT_OK = 0
EXIT_USAGE = 2

DESCRIPTION = """\
loadgen: a load-testing tool for Dispatch endpoints.

It plays the Dispatch service: it accepts Dispatch gRPC calls, drives your
endpoint with signed RunRequests (retries, tail calls, fan-out) and measures
what happens. Everything binds to 127.0.0.1 unless told otherwise.
"""

EPILOG = "Run 'loadgen COMMAND --help' for the options of a command."


def _signing_key_from(value: str | None) -> tuple[Ed25519PrivateKey, bool]:
    if value is None:
        value = os.environ.get("LOADGEN_SIGNING_KEY")
    if value is None:
        return generate_private_key(), True
    return load_private_key(value, "--signing-key"), False


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
    """``loadgen serve``: the Dispatch service in front of one endpoint."""
    from loadgen.client import EndpointClient
    from loadgen.scheduler import RetryPolicy
    from loadgen.server import DispatchServer
    from loadgen.service import DispatchService

    signing_key, generated_key = _signing_key_from(args.signing_key)
    api_key = args.api_key or os.environ.get("DISPATCH_API_KEY")
    generated_api_key = not api_key
    api_key = api_key or secrets.token_hex(16)
    client = EndpointClient.from_url(args.endpoint_url, signing_key)
    service = DispatchService(
        client,
        api_key=api_key,
        retry_policy=RetryPolicy(base_delay=args.backoff, max_delay=args.max_backoff),
        default_expiration=args.expiration,
        concurrency=args.concurrency,
    )
    stop = _StopSignal()
    try:
        server = DispatchServer(service, hostname=args.host, port=args.port)
    except OSError as exc:
        print(f"loadgen serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    service.start()
    server.start()
    print(f"loadgen: Dispatch API on {server.url}, dispatching to {client.url}", file=sys.stderr)
    if generated_key:
        print("loadgen: generated a signing key for this run (pass --signing-key to keep one)", file=sys.stderr)
    print(f'export DISPATCH_API_URL="{server.url}"')
    if generated_api_key:
        print(f'export DISPATCH_API_KEY="{api_key}"')
    print(f'export DISPATCH_ENDPOINT_URL="{client.url}"')
    print(f'export DISPATCH_VERIFICATION_KEY="{public_key_base64(signing_key.public_key())}"', flush=True)
    stop.wait()
    print(f"loadgen: {stop.signal_name}, closing down", file=sys.stderr)
    server.stop(grace=1.0)
    service.stop()
    client.close()
    counters = service.counters
    print(
        f"loadgen: accepted {counters.accepted}, completed {counters.completed}, "
        f"failed {sum(counters.failed.values())} {dict(counters.failed) or ''}, expired {counters.expired}, "
        f"in flight {counters.in_flight}; attempts {counters.attempts}, retries {sum(counters.retries.values())}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_endpoint(args: argparse.Namespace) -> int:
    """``loadgen endpoint``: the built-in reference endpoint."""
    from loadgen.endpoint import serve_forever

    value = args.verification_key
    if value is None:
        value = os.environ.get("DISPATCH_VERIFICATION_KEY")
    key = None
    if value is not None:
        key = load_public_key(value, "verification key")
    serve_forever(args.host, args.port, key)
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    """``loadgen keygen``: a fresh key pair, as environment lines."""
    key = generate_private_key()
    print("# Private half: for 'loadgen serve --signing-key' (or LOADGEN_SIGNING_KEY). Keep it secret.")
    print(f"LOADGEN_SIGNING_KEY={private_key_base64(key)}")
    print("# Public half: for your endpoint.")
    print(f"DISPATCH_VERIFICATION_KEY={public_key_base64(key.public_key())}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``loadgen run``: the quickstart burst."""
    from loadgen.quickstart import run_quickstart

    return run_quickstart(calls=args.calls, concurrency=args.concurrency, batch=args.batch, timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadgen", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version="loadgen 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="quickstart: reference endpoint + service + a burst of calls + summary",
        description="Start the reference endpoint and the Dispatch service on 127.0.0.1, dispatch a burst of "
        "calls (echo, fanout, chain, fail-then-succeed) over gRPC, wait for every result and print a summary.",
    )
    run.add_argument("--calls", type=int, default=2000, help="calls to dispatch (default: %(default)s)")
    run.add_argument("--batch", type=int, default=10, help="calls per Dispatch RPC (default: %(default)s)")
    run.add_argument("--concurrency", type=int, default=16, help="attempts in flight (default: %(default)s)")
    run.add_argument(
        "--timeout", type=float, default=120, help="give up after this many seconds (default: %(default)s)"
    )
    run.set_defaults(handler=cmd_run)

    serve = commands.add_parser(
        "serve",
        help="run the Dispatch service in front of an endpoint",
        description="Run the Dispatch API (gRPC) and drive ENDPOINT_URL with signed RunRequests. Prints the "
        "environment an SDK client and endpoint need, then runs until SIGINT/SIGTERM.",
    )
    serve.add_argument(
        "endpoint_url", metavar="ENDPOINT_URL", help="base URL of the endpoint, e.g. http://127.0.0.1:8000"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=4450, help="port to bind, 0 for any free one (default: %(default)s)")
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
    serve.add_argument("--concurrency", type=int, default=16, help="attempts in flight (default: %(default)s)")
    serve.add_argument(
        "--expiration", type=float, default=60.0, help="default call expiration in seconds (default: %(default)s)"
    )
    serve.add_argument(
        "--backoff", type=float, default=0.05, help="first retry delay in seconds (default: %(default)s)"
    )
    serve.add_argument("--max-backoff", type=float, default=2.0, help="longest retry delay (default: %(default)s)")
    serve.set_defaults(handler=cmd_serve)

    endpoint = commands.add_parser(
        "endpoint",
        help="run the built-in reference endpoint",
        description="Serve POST /dispatch.sdk.v1.FunctionService/Run over HTTP/1.1 and h2c (prior knowledge) "
        "with the built-in functions echo, sleep, fail, fanout, chain and payload. Runs until SIGINT/SIGTERM.",
    )
    endpoint.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    endpoint.add_argument("--port", type=int, default=8000, help="port to bind, 0 for any (default: %(default)s)")
    endpoint.add_argument(
        "--verification-key",
        help="Ed25519 public key (base64 raw or PEM) to verify request signatures with (default: "
        "DISPATCH_VERIFICATION_KEY; unset disables verification)",
    )
    endpoint.set_defaults(handler=cmd_endpoint)

    keygen = commands.add_parser(
        "keygen",
        help="print a new Ed25519 key pair",
        description="Print a new key pair: LOADGEN_SIGNING_KEY (private, for loadgen serve) and "
        "DISPATCH_VERIFICATION_KEY (public, for the endpoint).",
    )
    keygen.set_defaults(handler=cmd_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
