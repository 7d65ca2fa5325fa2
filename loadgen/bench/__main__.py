"""``python -m loadgen.bench``: list the benchmarks (run one with ``python -m loadgen.bench.NAME [--quick]``)."""

from __future__ import annotations

import importlib.util
import sys

BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("signing", "CPU per request of RFC 9421 signing (PyNaCl, cryptography), verification, and the SDK's signer"),
    ("codecs", "CPU per call of the SDK codecs: dispatch-py inputs, 0.7.1/0.8.0 outputs, vs plain pickle"),
    ("sdkrun", "whole-system CPU per call of loadgen run against the example dispatch-py endpoint, per process"),
    ("endpoint", "CPU per request of the reference endpoint (h2load over h2c, httpx over HTTP/1.1)"),
    ("egress", "client CPU per signed RunRequest round trip: EndpointPool vs an h2 client, httpx, h2load"),
    ("stats", "cost of recording, snapshotting, shipping and merging statistics"),
    ("bridge", "cost of feeding the shards' statistics into Locust: the bridge's way vs one event per value"),
    ("ingress", "Dispatch calls accepted per shard CPU-second, batches of 1 and 100, vs a bare grpc.aio server"),
    ("scaling", "whole-engine throughput and CPU per call of every process, 1 shard vs 2 (closed loop)"),
    ("memory", "RSS per pending call with 100,000 calls in flight, loadgen vs the old mock"),
    ("oldmock", "the same echo workload through dispatch-py 0.7.1's mock and through loadgen (1 and 2 shards)"),
    ("master", "how many loadgen worker machines one master takes: reports/s, bytes/s, CPU per report"),
    ("system", "loadgen run as a user runs it: CPU per call of Locust, shards, supervisor, endpoint; vs the old mock"),
    ("instructions", "a shard's instructions per call under callgrind (repeatable on a noisy machine), by library"),
)


def main() -> int:
    print("benchmarks (python -m loadgen.bench.NAME --help; results go to results/bench/NAME.json):")
    width = max(len(name) for name, _ in BENCHMARKS)
    for name, what in BENCHMARKS:
        present = importlib.util.find_spec(f"loadgen.bench.{name}") is not None
        print(f"  {name:<{width}}  {what}" + ("" if present else "  (module missing)"))
    print("the engine benchmarks (ingress, scaling, memory, oldmock) take --quick (under a minute each); system too")
    return 0


if __name__ == "__main__":
    sys.exit(main())
