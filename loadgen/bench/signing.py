"""Signing and verification cost per request, side by side in one run.

``python -m loadgen.bench.signing [--requests N] [--rounds R]``

Rows (CPU µs per request, median of interleaved rounds):

* loadgen ``Signer.headers`` with each Ed25519 backend (PyNaCl, cryptography);
* loadgen ``verify_request`` (what the reference endpoint pays);
* the real SDK's ``dispatch.signature.sign_request`` (http_message_signatures), run in
  ``.venv-sdk`` when it exists: the cost the old mock paid per request.

Writes ``results/bench/signing.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.protocol.signing import SignedRequest, Signer, verify_request

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"
BODY = b"\x0a\x04echo" + b"\x00" * 120
PATH = "/dispatch.sdk.v1.FunctionService/Run"

_SDK_SCRIPT = """
import sys, time, datetime
from dispatch.signature import sign_request, Request, CaseInsensitiveDict
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = Ed25519PrivateKey.generate()
body = b"\\x0a\\x04echo" + b"\\x00" * 120
n = int(sys.argv[1])
def one():
    request = Request(method="POST", url="http://127.0.0.1:8000/dispatch.sdk.v1.FunctionService/Run",
                      headers=CaseInsensitiveDict({"Content-Type": "application/grpc+proto"}), body=body)
    sign_request(request, key, datetime.datetime.now())
for _ in range(200):
    one()
start = time.process_time()
for _ in range(n):
    one()
print((time.process_time() - start) / n * 1e6)
"""


def _per_call(function: Callable[[], object], requests: int) -> float:
    start = time.process_time()
    for _ in range(requests):
        function()
    return (time.process_time() - start) / requests * 1e6


def _sdk_row(requests: int) -> float | None:
    if not SDK_PYTHON.exists():
        return None
    done = subprocess.run(
        [str(SDK_PYTHON), "-c", _SDK_SCRIPT, str(requests)], capture_output=True, text=True, timeout=300
    )
    return float(done.stdout.strip()) if done.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="requests per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench" / "signing.json"))
    args = parser.parse_args(argv)

    key = Ed25519PrivateKey.generate()
    signers = {name: Signer(key, backend=name) for name in ("nacl", "cryptography")}
    headers = {k.lower(): v for k, v in signers["nacl"].headers(
        method="POST", path=PATH, authority="127.0.0.1:8000", content_type="application/grpc+proto", body=BODY
    ).items()} | {"content-type": "application/grpc+proto"}  # fmt: skip
    signed = SignedRequest("POST", PATH, "127.0.0.1:8000", headers, BODY)
    public = key.public_key()

    def sign_with(name: str) -> Callable[[], object]:
        signer = signers[name]
        return lambda: signer.headers(
            method="POST", path=PATH, authority="127.0.0.1:8000", content_type="application/grpc+proto", body=BODY
        )

    rows: dict[str, list[float]] = {
        "loadgen Signer (PyNaCl)": [],
        "loadgen Signer (cryptography)": [],
        "loadgen verify_request": [],
        "dispatch-py 0.7.1 sign_request": [],
    }
    for _ in range(args.rounds):
        rows["loadgen Signer (PyNaCl)"].append(_per_call(sign_with("nacl"), args.requests))
        rows["loadgen Signer (cryptography)"].append(_per_call(sign_with("cryptography"), args.requests))
        rows["loadgen verify_request"].append(_per_call(lambda: verify_request(signed, public), args.requests))
        sdk = _sdk_row(max(200, args.requests // 5))
        if sdk is not None:
            rows["dispatch-py 0.7.1 sign_request"].append(sdk)
    medians = {name: statistics.median(values) for name, values in rows.items() if values}
    base = medians["loadgen Signer (PyNaCl)"]
    print(f"{'what':<34} {'µs/request':>11} {'vs loadgen Signer':>18}   runs")
    for name, value in medians.items():
        runs = " ".join(f"{v:.0f}" for v in rows[name])
        print(f"{name:<34} {value:>11.1f} {value / base:>17.2f}x   {runs}")
    if "dispatch-py 0.7.1 sign_request" not in medians:
        print("(no .venv-sdk: run `make sdk` for the dispatch-py baseline)")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "signing", "unit": "CPU µs per request", "requests": args.requests, "medians": medians}
    output.write_bytes(orjson.dumps(report | {"runs": rows}, option=orjson.OPT_INDENT_2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
