"""``python -m loadgen.endpoint``: run the reference endpoint until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loadgen.endpoint.functions import ReferenceFunctions
from loadgen.endpoint.server import serve_forever
from loadgen.protocol.keys import KeyMaterialError, load_public_key
from loadgen.protocol.status import parse_failure_status

ENV_KEY = "DISPATCH_VERIFICATION_KEY"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the built-in Dispatch reference functions (HTTP/1.1 and h2c on one port).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one (default: 8000)")
    parser.add_argument(
        "--verification-key",
        metavar="KEY",
        default=None,
        help=f"Ed25519 public key (base64 raw, PEM, or PEM file path) to verify request signatures; "
        f"defaults to ${ENV_KEY}; verification is off when neither is set",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the RNG of 'fail' and failure injection")
    parser.add_argument(
        "--inject-failure-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="fail every attempt of every function with probability P (0..1) before it runs (default: 0)",
    )
    parser.add_argument(
        "--inject-failure-status",
        default="TEMPORARY_ERROR",
        metavar="STATUS",
        help="status of injected failures, e.g. TEMPORARY_ERROR, THROTTLED (default: %(default)s)",
    )
    return parser


def _status(parser: argparse.ArgumentParser, name: str) -> int:
    try:
        return parse_failure_status(name)
    except ValueError as exc:
        parser.error(f"--inject-failure-status: {exc}")


def _verification_key(parser: argparse.ArgumentParser, flag: str | None) -> Ed25519PublicKey | None:
    source = "--verification-key" if flag is not None else ENV_KEY
    value = flag if flag is not None else os.environ.get(ENV_KEY)
    if value is None:
        return None
    if not value.strip():
        parser.error(f"invalid {source}: empty value")
    try:
        return load_public_key(value, source)
    except KeyMaterialError as exc:
        parser.error(f"invalid verification key: {exc}")
    except ValueError:  # e.g. 32 bytes that are not a curve point; never echo the key
        parser.error(f"invalid verification key: {source} is not a usable Ed25519 public key")


def main(argv: Sequence[str] | None = None, prog: str = "python -m loadgen.endpoint") -> int:
    """Parse arguments, then serve until interrupted; returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if not 0.0 <= args.inject_failure_rate <= 1.0:
        parser.error("--inject-failure-rate must be between 0 and 1")
    key = _verification_key(parser, args.verification_key)
    functions = ReferenceFunctions(
        seed=args.seed,
        inject_rate=args.inject_failure_rate,
        inject_status=_status(parser, args.inject_failure_status),
    )
    try:
        serve_forever(args.host, args.port, key, functions=functions)
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
