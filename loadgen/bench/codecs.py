"""CPU per call of the SDK codecs: encoding a call's input, decoding its output, side by side in one run.

``python -m loadgen.bench.codecs [--calls N] [--rounds R]``

Rows (CPU µs per call, median of interleaved rounds), for ``greet("bob", punct="!")`` returning
``"hello bob!"`` and ``squares(4)`` returning ``[0, 1, 4, 9]``:

* encode: dispatch-py ``args``/``kwargs`` (a pickled ``Arguments``, written without the SDK) vs
  the reference codec (a ``Struct`` of the same values) vs a bare ``pickle.dumps`` of them;
* decode: 0.7.1 outputs (``BytesValue(pickle)``) through the restricted unpickler vs a bare
  (unsafe) ``pickle.loads``; 0.8.0 outputs (``StringValue``, ``Value``, ``Pickled``); the
  reference codec's ``Struct``;
* per call: encode + decode + the ``expect`` comparison, as the scenario runner pays it when it
  encodes each input anew (``loadgen run`` encodes a workload item's input once, so it pays the
  decode and the comparison only).

Ratios are against the bare ``pickle`` baseline of the same direction. Writes
``results/bench/codecs.json``.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import any_pb2, wrappers_pb2

from loadgen.protocol import values
from loadgen.protocol.codecs import CallInput, get_codec, matches
from loadgen.protocol.codecs.wellknown import pack

ROOT = Path(__file__).resolve().parents[2]
PICKLED_URL = "buf.build/stealthrocket/dispatch-proto/dispatch.sdk.python.v1.Pickled"


def _bytes_any(data: bytes, url: str = "type.googleapis.com/google.protobuf.BytesValue") -> any_pb2.Any:
    return any_pb2.Any(type_url=url, value=wrappers_pb2.BytesValue(value=data).SerializeToString())


def _per_call(function: Callable[[], object], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - start) / calls * 1e6


def cases() -> dict[str, tuple[str, Callable[[], object]]]:
    """``{row: (baseline row, function)}``: every measured operation, ready to call."""
    py, ref = get_codec("dispatch-py"), get_codec("reference")
    greet_call = CallInput(args=("bob",), kwargs={"punct": "!"})
    squares_call = CallInput(args=(4,))
    greet_ref = CallInput({"name": "bob", "punct": "!"})
    state = {"args": ("bob",), "kwargs": {"punct": "!"}}
    out_071 = _bytes_any(pickle.dumps("hello bob!"))
    out_071_list = _bytes_any(pickle.dumps([0, 1, 4, 9]))
    out_080 = pack(wrappers_pb2.StringValue(value="hello bob!"))
    out_080_list = pack(values.to_value([0, 1, 4, 9]))
    out_080_pickled = _bytes_any(pickle.dumps((1, 2)), PICKLED_URL)
    out_ref = values.encode({"message": "hello bob!"})
    raw_071 = wrappers_pb2.BytesValue.FromString(out_071.value).value

    def unsafe_071() -> object:
        return pickle.loads(wrappers_pb2.BytesValue.FromString(out_071.value).value)

    def full_071() -> object:
        message = py.encode(greet_call)
        got = py.decode(out_071)
        return message, matches("hello bob!", got)

    def full_080() -> object:
        message = py.encode(squares_call)
        got = py.decode(out_080_list)
        return message, matches([0, 1, 4, 9], got)

    def checked_071() -> object:  # what loadgen run pays per call: the input is encoded once per item
        return matches("hello bob!", py.decode(out_071))

    return {
        "encode: pickle.dumps of the arguments (baseline)": ("", lambda: pickle.dumps(state, protocol=3)),
        "encode: dispatch-py greet(bob, punct=!)": (
            "encode: pickle.dumps of the arguments (baseline)",
            lambda: py.encode(greet_call),
        ),
        "encode: dispatch-py squares(4)": (
            "encode: pickle.dumps of the arguments (baseline)",
            lambda: py.encode(squares_call),
        ),
        "encode: reference Struct {name, punct}": (
            "encode: pickle.dumps of the arguments (baseline)",
            lambda: ref.encode(greet_ref),
        ),
        "decode: pickle.loads, unsafe (baseline)": ("", lambda: pickle.loads(raw_071)),
        "decode: 0.7.1 str, BytesValue(pickle)": (
            "decode: pickle.loads, unsafe (baseline)",
            lambda: py.decode(out_071),
        ),
        "decode: 0.7.1 str, unsafe pickle.loads + unwrap": ("decode: pickle.loads, unsafe (baseline)", unsafe_071),
        "decode: 0.7.1 list, BytesValue(pickle)": (
            "decode: pickle.loads, unsafe (baseline)",
            lambda: py.decode(out_071_list),
        ),
        "decode: 0.8.0 str, StringValue": ("decode: pickle.loads, unsafe (baseline)", lambda: py.decode(out_080)),
        "decode: 0.8.0 list, Value": (
            "decode: pickle.loads, unsafe (baseline)",
            lambda: py.decode(out_080_list),
        ),
        "decode: 0.8.0 tuple, Pickled": (
            "decode: pickle.loads, unsafe (baseline)",
            lambda: py.decode(out_080_pickled),
        ),
        "decode: reference Struct": ("decode: pickle.loads, unsafe (baseline)", lambda: ref.decode(out_ref)),
        "per call: 0.7.1 encode + decode + compare": ("", full_071),
        "per call: 0.8.0 encode + decode + compare (list)": ("", full_080),
        "per call in loadgen run: 0.7.1 decode + compare": ("", checked_071),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round and row (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench" / "codecs.json"))
    args = parser.parse_args(argv)
    table = cases()
    runs: dict[str, list[float]] = {name: [] for name in table}
    for name, (_, function) in table.items():  # warm up
        _per_call(function, 500)
        del name
    for _ in range(args.rounds):
        for name, (_, function) in table.items():
            runs[name].append(_per_call(function, args.calls))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(f"{'what':<52} {'µs/call':>8} {'vs baseline':>12}")
    for name, (baseline, _) in table.items():
        ratio = f"{medians[name] / medians[baseline]:.2f}x" if baseline else ""
        print(f"{name:<52} {medians[name]:>8.2f} {ratio:>12}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"benchmark": "codecs", "unit": "CPU µs per call", "calls": args.calls}
    report |= {"medians": medians, "baselines": {name: base for name, (base, _) in table.items()}, "runs": runs}
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
