"""The dispatch-py codec against the real SDKs: 0.7.1 (``.venv-sdk``) and 0.8.0 (``.venv-sdk08``).

* inputs written here (without the SDK) are what each SDK reads: its ``Input`` for a
  ``RunRequest`` carrying them holds a ``dispatch.proto.Arguments`` with these args and kwargs;
* outputs each SDK writes (0.7.1: ``BytesValue(pickle)``, 0.8.0: ``marshal_any``) decode here
  to the values the function returned, without ``pickle.loads``.

One child process per SDK and direction, every case in one go.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2

from loadgen.pb import function_pb2
from loadgen.protocol.codecs import CallInput, get_codec, matches

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]

ARGUMENT_CASES: list[tuple[list[Any], dict[str, Any]]] = [
    (["bob"], {"punct": "!"}),
    ([], {}),
    ([1, 2.5, None, True, False, -(2**63), 2**70, "é€", b"\x00\xff"], {}),
    ([[1, [2, [3]]], {"a": {"b": [None]}}, (1, 2)], {"k": [1, "x"], "empty": {}}),
]

READ_INPUTS = """
import base64, json, sys
from dispatch.proto import Arguments, Input
from dispatch.sdk.v1 import function_pb2
out = []
for raw in json.load(sys.stdin):
    request = function_pb2.RunRequest.FromString(base64.b64decode(raw))
    arguments = Input(request).input
    assert isinstance(arguments, Arguments), type(arguments)
    args, kwargs = Input(request).input_arguments()
    out.append(repr((tuple(args), kwargs)))
print(json.dumps(out))
"""

# Values a function returns, as Python source: evaluated in the SDK's process (which encodes them)
# and here (what the decoded output must match).
OUTPUT_CASES = [
    "'hello bob!'",
    "3",
    "-(2**63)",
    "2**70",
    "1.5",
    "True",
    "None",
    "b'\\x00raw'",
    "[0, 1, 4, 9]",
    "(1, 'two')",
    "{'a': [1, 2.5, None, 'x'], 'b': {'c': True}}",
    "{1: 'int key'}",
    "{1, 2, 3}",
    "frozenset({'x'})",
    "1 + 2j",
    "bytearray(b'ba')",
]
OUTPUTS_071 = """
import base64, json, sys
from dispatch.proto import _pb_any_pickle
print(json.dumps([base64.b64encode(_pb_any_pickle(eval(case)).SerializeToString()).decode()
                  for case in json.load(sys.stdin)]))
"""
OUTPUTS_080 = """
import base64, datetime, json, sys
from dispatch.any import marshal_any
print(json.dumps([base64.b64encode(marshal_any(eval(case)).SerializeToString()).decode()
                  for case in json.load(sys.stdin)]))
"""
OUTPUT_CASES_080 = [
    *OUTPUT_CASES,
    "datetime.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=datetime.timezone.utc)",
    "datetime.timedelta(seconds=90, microseconds=5)",
]


def _in_sdk(python: Path, code: str, payload: Any) -> Any:
    done = subprocess.run(
        [str(python), "-c", code],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "LOADGEN_", "PYTHONPATH"))},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _requests() -> list[str]:
    codec = get_codec("dispatch-py")
    out = []
    for args, kwargs in ARGUMENT_CASES:
        request = function_pb2.RunRequest(
            function="f", input=codec.encode(CallInput(args=args, kwargs=kwargs)), dispatch_id="a" * 32
        )
        out.append(base64.b64encode(request.SerializeToString()).decode())
    return out


@pytest.mark.parametrize("venv", ["sdk_python", "sdk08_python"])
def test_the_sdk_reads_our_arguments(venv: str, request: pytest.FixtureRequest) -> None:
    python: Path = request.getfixturevalue(venv)
    got = _in_sdk(python, READ_INPUTS, _requests())
    assert got == [repr((tuple(args), kwargs)) for args, kwargs in ARGUMENT_CASES]


@pytest.mark.parametrize(
    ("venv", "code", "cases"),
    [("sdk_python", OUTPUTS_071, OUTPUT_CASES), ("sdk08_python", OUTPUTS_080, OUTPUT_CASES_080)],
)
def test_we_read_the_sdks_outputs(venv: str, code: str, cases: list[str], request: pytest.FixtureRequest) -> None:
    python: Path = request.getfixturevalue(venv)
    codec = get_codec("dispatch-py")
    encoded = _in_sdk(python, code, cases)
    for case, raw in zip(cases, encoded, strict=True):
        output = any_pb2.Any.FromString(base64.b64decode(raw))
        expected = eval(case, {"datetime": datetime})
        got = codec.decode(output)
        assert matches(expected, got) or got == expected, (case, output.type_url, got)
